#pragma once
#include <archive.h>
#include <archive_entry.h>

// syncfs(2) is a GNU extension that Swift's Glibc module does not export; the extractor uses it to make a whole
// extracted tree durable in one call.
int syncfs(int fd);
static inline int fleet_syncfs(int fd) { return syncfs(fd); }
