/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Stands in for a cold page cache in tests: preadv() of one file waits
 * until the test lets it go, as a read of a snapshot on a slow or remote
 * disk waits for the device, and preadv2(RWF_NOWAIT) of it answers
 * EAGAIN, as it does for data the page cache does not hold.  Everything
 * else reads as usual.
 *
 * Environment:
 *   S2E_HOLD_READS_OF     the file whose preadv() calls are held
 *   S2E_HOLD_READS_UNTIL  a path: reads are held once PATH.armed exists
 *                         (so QEMU can start and -loadvm read the file
 *                         first); a held call creates PATH.held, then
 *                         waits until PATH exists
 */
/* Both symbols are defined below: no redirection of one to the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

typedef ssize_t PreadvFn(int fd, const struct iovec *iov, int iovcnt,
                         off_t offset);
typedef ssize_t Preadv2Fn(int fd, const struct iovec *iov, int iovcnt,
                          off_t offset, int flags);

/* Whether @fd is open on the file @path names. */
static int fd_is_file(int fd, const char *path)
{
    struct stat a, b;

    return fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int held_file(int fd)
{
    const char *path = getenv("S2E_HOLD_READS_OF");
    const char *gate = getenv("S2E_HOLD_READS_UNTIL");
    char armed[PATH_MAX];

    if (!path || !gate || !fd_is_file(fd, path)) {
        return 0;
    }
    snprintf(armed, sizeof(armed), "%s.armed", gate);
    return access(armed, F_OK) == 0;
}

static void hold(int fd)
{
    const char *gate = getenv("S2E_HOLD_READS_UNTIL");
    char held[PATH_MAX];

    if (!held_file(fd)) {
        return;
    }
    snprintf(held, sizeof(held), "%s.held", gate);
    close(open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    while (access(gate, F_OK) != 0) {
        usleep(10000);
    }
}

static ssize_t forward(const char *name, int fd, const struct iovec *iov,
                       int iovcnt, off_t offset)
{
    PreadvFn *real = (PreadvFn *)dlsym(RTLD_NEXT, name);

    hold(fd);
    return real(fd, iov, iovcnt, offset);
}

ssize_t preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    return forward("preadv", fd, iov, iovcnt, offset);
}

ssize_t preadv64(int fd, const struct iovec *iov, int iovcnt, off64_t offset)
{
    return forward("preadv64", fd, iov, iovcnt, offset);
}

static ssize_t forward2(const char *name, int fd, const struct iovec *iov,
                        int iovcnt, off_t offset, int flags)
{
    Preadv2Fn *real = (Preadv2Fn *)dlsym(RTLD_NEXT, name);

    if (flags & RWF_NOWAIT && held_file(fd)) {
        errno = EAGAIN;
        return -1;
    }
    hold(fd);
    return real(fd, iov, iovcnt, offset, flags);
}

ssize_t preadv2(int fd, const struct iovec *iov, int iovcnt, off_t offset,
                int flags)
{
    return forward2("preadv2", fd, iov, iovcnt, offset, flags);
}

ssize_t preadv64v2(int fd, const struct iovec *iov, int iovcnt,
                   off64_t offset, int flags)
{
    return forward2("preadv64v2", fd, iov, iovcnt, offset, flags);
}
