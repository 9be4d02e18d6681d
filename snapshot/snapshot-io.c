/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * I/O primitives of the snapshot module, with a fault hook.
 *
 * The writer and the reader do every system call that can fail through
 * this file.  Each call is one "step" (S2ESnapIOStep): before running it,
 * the optional hook of the S2ESnapIO given at creation time is asked
 * whether to fail it (with any errno) or to make it short.  In normal
 * operation the hook is NULL and this is a thin layer over preadv (preadv2
 * when told not to wait), pwrite, fsync and close that retries EINTR and
 * short transfers.
 *
 * There is no global state: the hook travels with each writer or reader,
 * so tests inject faults into one writer while others run undisturbed.
 *
 *   caller ---> s2e_snap_pwrite_full(io, step, ...)
 *                 loop: io->fault(step, &len) -> 0 | -errno (stop)
 *                       pwrite(fd, buf, len)  -> n | -1 (EINTR: again)
 *
 * A write that makes no progress (pwrite returning 0) is an error (-EIO):
 * the loop never spins.  A read that reaches end of file returns -ENODATA
 * so the reader can tell "truncated while open" from an I/O error.
 *
 * Files are opened for reading with s2e_snap_open_regular(), which never
 * opens anything but a regular file (a FIFO would block the open).
 */
#include "snapshot-int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *const step_names[S2E_SNAP_IO__MAX] = {
    [S2E_SNAP_IO_OPEN_DIR] = "open-dir",
    [S2E_SNAP_IO_CREATE] = "create",
    [S2E_SNAP_IO_WRITE_VMSTATE] = "write-vmstate",
    [S2E_SNAP_IO_WRITE_SECTORS] = "write-sectors",
    [S2E_SNAP_IO_WRITE_INDEX] = "write-index",
    [S2E_SNAP_IO_WRITE_HEADER] = "write-header",
    [S2E_SNAP_IO_FSYNC] = "fsync",
    [S2E_SNAP_IO_CLOSE] = "close",
    [S2E_SNAP_IO_RENAME] = "rename",
    [S2E_SNAP_IO_FSYNC_DIR] = "fsync-dir",
    [S2E_SNAP_IO_OPEN] = "open",
    [S2E_SNAP_IO_READ] = "read",
};

const char *s2e_snap_io_step_name(S2ESnapIOStep step)
{
    if ((unsigned)step >= S2E_SNAP_IO__MAX) {
        return "?";
    }
    return step_names[step];
}

int s2e_snap_io_fault(const S2ESnapIO *io, S2ESnapIOStep step, size_t *len)
{
    size_t dummy = 0;
    int ret;

    if (!io || !io->fault) {
        return 0;
    }
    ret = io->fault(io->opaque, step, len ? len : &dummy);
    return ret < 0 ? ret : 0;
}

int s2e_snap_pwrite_full(const S2ESnapIO *io, S2ESnapIOStep step, int fd,
                         const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;

    while (len > 0) {
        size_t n = len;
        ssize_t done;
        int ret = s2e_snap_io_fault(io, step, &n);

        if (ret < 0) {
            return ret;
        }
        if (n > len) {
            n = len;
        }
        if (off > (uint64_t)INT64_MAX - n) {
            return -EFBIG;
        }
        done = n ? pwrite(fd, p, n, (off_t)off) : 0;
        if (done < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (done == 0) {
            return -EIO;
        }
        p += done;
        off += (uint64_t)done;
        len -= (size_t)done;
    }
    return 0;
}

/*
 * How many leading elements of @iov hold the first @len bytes, the last
 * of them trimmed to end there (*trimmed: its full length, to restore).
 */
static int iov_prefix(struct iovec *iov, int iovcnt, size_t len,
                      size_t *trimmed)
{
    int k = 0;

    while (k < iovcnt && k < IOV_MAX && len > iov[k].iov_len) {
        len -= iov[k++].iov_len;
    }
    if (k == iovcnt || k == IOV_MAX) {
        *trimmed = 0;
        return k;
    }
    *trimmed = iov[k].iov_len;
    iov[k].iov_len = len;
    return k + 1;
}

/* Drop the first @done bytes from the vector. */
static void iov_consume(struct iovec **iov, int *iovcnt, size_t done)
{
    while (*iovcnt > 0 && done >= (*iov)->iov_len) {
        done -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + done;
        (*iov)->iov_len -= done;
    }
}

/*
 * Under @nowait, a read the page cache cannot serve whole is not waited
 * for: preadv2(RWF_NOWAIT) answers EAGAIN, or a short count for a range
 * cached in part, and a file system without RWF_NOWAIT EOPNOTSUPP.  All
 * three are -EAGAIN here, for the caller to read again the usual way.
 */
static ssize_t preadv_once(int fd, const struct iovec *iov, int cnt,
                           uint64_t off, size_t n, bool nowait)
{
    ssize_t done;

    if (!nowait) {
        return preadv(fd, iov, cnt, (off_t)off);
    }
    done = preadv2(fd, iov, cnt, (off_t)off, RWF_NOWAIT);
    if (done < 0 && (errno == EAGAIN || errno == EOPNOTSUPP)) {
        errno = EAGAIN;
    } else if (done > 0 && (size_t)done < n) {
        errno = EAGAIN;
        done = -1;
    }
    return done;
}

int s2e_snap_preadv_full(const S2ESnapIO *io, int fd, struct iovec *iov,
                         int iovcnt, uint64_t off, bool nowait)
{
    size_t len = 0;

    for (int k = 0; k < iovcnt; k++) {
        len += iov[k].iov_len;
    }
    while (len > 0) {
        size_t n = len, trimmed;
        ssize_t done;
        int cnt, ret = s2e_snap_io_fault(io, S2E_SNAP_IO_READ, &n);

        if (ret < 0) {
            return ret;
        }
        n = MIN(n, len);
        if (n == 0 || off > (uint64_t)INT64_MAX - n) {
            return -ENODATA;
        }
        cnt = iov_prefix(iov, iovcnt, n, &trimmed);
        done = preadv_once(fd, iov, cnt, off, n, nowait);
        if (trimmed) {
            iov[cnt - 1].iov_len = trimmed;
        }
        if (done < 0 && errno == EINTR) {
            continue;
        }
        if (done <= 0) {
            return done < 0 ? -errno : -ENODATA;
        }
        iov_consume(&iov, &iovcnt, (size_t)done);
        off += (uint64_t)done;
        len -= (size_t)done;
    }
    return 0;
}

int s2e_snap_io_fsync(const S2ESnapIO *io, S2ESnapIOStep step, int fd)
{
    int ret = s2e_snap_io_fault(io, step, NULL);

    if (ret < 0) {
        return ret;
    }
    while (fsync(fd) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

/*
 * The descriptor is released whatever the outcome (also when the hook
 * makes the step fail): a failed close must not leak it.
 */
int s2e_snap_io_close(const S2ESnapIO *io, int fd)
{
    int ret = s2e_snap_io_fault(io, S2E_SNAP_IO_CLOSE, NULL);

    if (close(fd) < 0 && ret == 0 && errno != EINTR) {
        ret = -errno;
    }
    return ret;
}

/*
 * Open @path read-only when it names a regular file.  Opening is not
 * harmless for everything else: a FIFO blocks the open until a writer
 * comes (forever, for `info` on a FIFO named IMAGE.NAME), and a device may
 * act on being opened.  So first look at what the path names with O_PATH
 * (which opens nothing), then open it without blocking, and check that the
 * descriptor is that same regular file (the name may have been swapped in
 * between).
 */
int s2e_snap_open_regular(const char *path, int *fd, bool *regular)
{
    struct stat named, opened;
    int probe = open(path, O_PATH | O_CLOEXEC);
    int err;

    *fd = -1;
    *regular = false;
    if (probe < 0) {
        return -errno;
    }
    err = fstat(probe, &named) < 0 ? errno : 0;
    close(probe);
    if (err) {
        return -err;
    }
    if (!S_ISREG(named.st_mode)) {
        return 0;
    }
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (*fd < 0) {
        return -errno;
    }
    if (fstat(*fd, &opened) < 0) {
        err = errno;
        close(*fd);
        *fd = -1;
        return -err;
    }
    *regular = S_ISREG(opened.st_mode) && opened.st_dev == named.st_dev &&
               opened.st_ino == named.st_ino;
    if (!*regular) {
        close(*fd);
        *fd = -1;
    }
    return 0;
}
