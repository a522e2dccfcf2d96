#pragma once
/* Linux calls that glibc does not wrap, or that Swift's Glibc module does not import (it does not define
   _GNU_SOURCE), as a few inline functions; FleetFiles is the only module that imports them.

   User disk quotas through quotactl_fd(2) (Linux 5.14+): it names the filesystem by an open file on it, so no
   block device has to be found, and it is the only form tmpfs answers. glibc has no wrapper for it, and Swift
   imports neither syscall(2) (variadic) nor QCMD (a macro with arguments). */
#include <errno.h>
#include <stdint.h>
#include <sys/quota.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/dqblk_xfs.h>

#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443 /* the same number on every architecture */
#endif

/* Whether user quotas are accounted and enforced on the filesystem of fd (Q_XGETQSTAT answers for ext4 and xfs
   alike). 0, or -1 with errno. */
static inline int fleet_user_quota_state(int fd, int *accounting, int *enforcing) {
    struct fs_quota_stat state = {0};
    if (syscall(SYS_quotactl_fd, fd, QCMD(Q_XGETQSTAT, USRQUOTA), 0, &state) == -1) return -1;
    *accounting = (state.qs_flags & FS_QUOTA_UDQ_ACCT) != 0;
    *enforcing = (state.qs_flags & FS_QUOTA_UDQ_ENFD) != 0;
    return 0;
}

/* The user's hard limits (bytes, inodes; 0 = none) and usage. 0, or -1 with errno. */
static inline int fleet_user_quota_get(
    int fd, uint32_t uid, uint64_t *byte_limit, uint64_t *inode_limit, uint64_t *bytes_used, uint64_t *inodes_used) {
    struct dqblk quota = {0};
    if (syscall(SYS_quotactl_fd, fd, QCMD(Q_GETQUOTA, USRQUOTA), uid, &quota) == -1) return -1;
    *byte_limit = quota.dqb_bhardlimit * QIF_DQBLKSIZE;
    *inode_limit = quota.dqb_ihardlimit;
    *bytes_used = quota.dqb_curspace;
    *inodes_used = quota.dqb_curinodes;
    return 0;
}

/* Sets the user's hard limits (byte_limit rounded up to the quota block; 0 = none) and clears its soft ones.
   0, or -1 with errno. */
static inline int fleet_user_quota_set(int fd, uint32_t uid, uint64_t byte_limit, uint64_t inode_limit) {
    struct dqblk quota = {0};
    quota.dqb_bhardlimit = (byte_limit + QIF_DQBLKSIZE - 1) / QIF_DQBLKSIZE;
    quota.dqb_ihardlimit = inode_limit;
    quota.dqb_valid = QIF_LIMITS;
    return (int)syscall(SYS_quotactl_fd, fd, QCMD(Q_SETQUOTA, USRQUOTA), uid, &quota);
}

/* syncfs(2): flushes every dirty page and inode of the filesystem holding fd, at once. 0, or -1 with errno. */
int syncfs(int fd);
static inline int fleet_syncfs(int fd) { return syncfs(fd); }
