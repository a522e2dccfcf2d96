#pragma once
#include <libssh/libssh.h>
#include <libssh/sftp.h>

/* syncfs(2): glibc declares it only under _GNU_SOURCE, which Swift's Glibc module does not define.
   SFTPTransport flushes a batch of downloaded files with one call instead of one fsync per file. */
int syncfs(int fd);
