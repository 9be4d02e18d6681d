/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Base image identity: what tells a snapshot's base image apart from any
 * other version of it.
 *
 * A snapshot stores only the sectors the guest changed; everything else is
 * read from the base image.  Loading it on a base whose contents changed
 * since would silently mix two disks, so the snapshot records the base's
 * identity and loading compares it:
 *
 *     recorded (file header)          current (stat of the base)
 *     size            ==?             st_size
 *     mtime sec.nsec  ==?             st_mtim           (when both have one)
 *
 * Sizes are compared always; modification times to the nanosecond when both
 * sides have one (a base that is not a local file has none).  Whole
 * seconds were not enough: an image rewritten within the same second kept
 * its identity in the format's first implementation.  The inode and the
 * device are deliberately not part of it: `cp -p` to another directory or
 * machine yields the same identity, and st_dev is not stable on network
 * filesystems.
 *
 * A refusal names the field that differs, both values (timestamps in local
 * time with nanoseconds) and the remedy, since the usual cause is a copy
 * that did not preserve timestamps.
 *
 * A drive takes the identity of its base from the descriptor it opened
 * (S2EBaseFile), not from the path at savevm time: the path may name
 * another file by then (`mv new disk.s2e`), or none, while the guest still
 * reads the old one.  savevm and loadvm check that the file is unchanged
 * and still the one the path names.
 */
#include "snapshot-int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void identity_from_stat(const struct stat *st, S2EBaseIdentity *id)
{
    memset(id, 0, sizeof(*id));
    id->size = (uint64_t)st->st_size;
    id->has_mtime = true;
    id->mtime_sec = (int64_t)st->st_mtim.tv_sec;
    id->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
    id->mode = (uint32_t)(st->st_mode & 07777);
}

int s2e_base_identity_from_path(const char *path, S2EBaseIdentity *id,
                                GError **error)
{
    struct stat st;

    memset(id, 0, sizeof(*id));
    if (stat(path, &st) < 0) {
        return s2e_snap_error_errno(error, errno, "Cannot stat base image "
                                    "'%s'", path);
    }
    identity_from_stat(&st, id);
    return 0;
}

/*
 * ---- The base image file, held open --------------------------------------
 *
 *   open:   path -> absolute -> open O_RDONLY -> fstat: identity, dev, ino
 *   check:  fstat(fd): size and mtime as at open?   (changed in place)
 *           stat(path): same dev and ino as fd?     (replaced, renamed,
 *                                                    deleted)
 */

struct S2EBaseFile {
    char *path;
    int fd;
    S2EBaseIdentity id;
    dev_t dev;
    ino_t ino;
};

char *s2e_path_absolute(const char *path)
{
    char *cwd;
    char *abs;

    if (g_path_is_absolute(path)) {
        return g_strdup(path);
    }
    cwd = g_get_current_dir();
    abs = g_build_filename(cwd, path, NULL);
    g_free(cwd);
    return abs;
}

S2EBaseFile *s2e_base_file_open(const char *path, GError **error)
{
    S2EBaseFile *bf = g_new0(S2EBaseFile, 1);
    struct stat st;

    bf->path = s2e_path_absolute(path);
    bf->fd = open(bf->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (bf->fd < 0 || fstat(bf->fd, &st) < 0) {
        s2e_snap_error_errno(error, errno, "Cannot open base image '%s'",
                             bf->path);
        s2e_base_file_close(bf);
        return NULL;
    }
    identity_from_stat(&st, &bf->id);
    bf->dev = st.st_dev;
    bf->ino = st.st_ino;
    return bf;
}

void s2e_base_file_close(S2EBaseFile *bf)
{
    if (bf) {
        if (bf->fd >= 0) {
            close(bf->fd);
        }
        g_free(bf->path);
        g_free(bf);
    }
}

const char *s2e_base_file_path(const S2EBaseFile *bf)
{
    return bf->path;
}

const S2EBaseIdentity *s2e_base_file_identity(const S2EBaseFile *bf)
{
    return &bf->id;
}

static int changed_in_use(const S2EBaseFile *bf, const S2EBaseIdentity *now,
                          GError **error)
{
    char *was = s2e_snapshot_format_time(bf->id.mtime_sec, bf->id.mtime_nsec);
    char *is = s2e_snapshot_format_time(now->mtime_sec, now->mtime_nsec);
    int ret = s2e_snap_error(error, S2E_SNAPSHOT_ERROR_BASE_CHANGED,
                             "Base image '%s' changed while in use (size %"
                             G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
                             " bytes, modified %s -> %s): what the guest read "
                             "no longer matches it, so no snapshot of it can "
                             "be taken or loaded", bf->path, bf->id.size,
                             now->size, was, is);
    g_free(was);
    g_free(is);
    return ret;
}

int s2e_base_file_check(const S2EBaseFile *bf, GError **error)
{
    struct stat st;
    S2EBaseIdentity now;

    if (fstat(bf->fd, &st) < 0) {
        return s2e_snap_error_errno(error, errno, "Cannot stat base image "
                                    "'%s'", bf->path);
    }
    identity_from_stat(&st, &now);
    if (now.size != bf->id.size || now.mtime_sec != bf->id.mtime_sec ||
        now.mtime_nsec != bf->id.mtime_nsec) {
        return changed_in_use(bf, &now, error);
    }
    if (stat(bf->path, &st) < 0) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_BASE_CHANGED,
                              "Base image '%s' was renamed or deleted while "
                              "in use (%s): the guest reads the file that was "
                              "opened, which that path no longer names, so no "
                              "snapshot of it can be taken or loaded",
                              bf->path, g_strerror(errno));
    }
    if (st.st_dev != bf->dev || st.st_ino != bf->ino) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_BASE_CHANGED,
                              "Base image '%s' was replaced while in use: "
                              "the path now names another file, the guest "
                              "still reads the one that was opened, so no "
                              "snapshot of it can be taken or loaded",
                              bf->path);
    }
    return 0;
}

char *s2e_snapshot_format_time(int64_t sec, uint32_t nsec)
{
    GDateTime *dt = g_date_time_new_from_unix_local(sec);
    char *date;
    char *zone;
    char *out;

    if (!dt || nsec >= 1000000000u) {
        if (dt) {
            g_date_time_unref(dt);
        }
        return g_strdup_printf("@%" G_GINT64_FORMAT ".%09u", sec, nsec);
    }
    date = g_date_time_format(dt, "%Y-%m-%d %H:%M:%S");
    zone = g_date_time_format(dt, "%z");
    out = g_strdup_printf("%s.%09u %s", date ? date : "?", nsec,
                          zone ? zone : "");
    g_free(date);
    g_free(zone);
    g_date_time_unref(dt);
    return out;
}

static int refuse_size(const char *snapshot, const char *image,
                       const S2EBaseIdentity *rec, const S2EBaseIdentity *cur,
                       GError **error)
{
    return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_BASE_CHANGED,
                          "Snapshot '%s' was taken on another version of "
                          "base image '%s': the image now has %"
                          G_GUINT64_FORMAT " bytes, the snapshot recorded "
                          "%" G_GUINT64_FORMAT " bytes. Its contents "
                          "changed: recreate the snapshot on this image "
                          "(copy images together with their snapshots "
                          "using 'cp -p')", snapshot, image, cur->size,
                          rec->size);
}

static int refuse_mtime(const char *snapshot, const char *image,
                        const S2EBaseIdentity *rec,
                        const S2EBaseIdentity *cur, GError **error)
{
    char *now = s2e_snapshot_format_time(cur->mtime_sec, cur->mtime_nsec);
    char *then = s2e_snapshot_format_time(rec->mtime_sec, rec->mtime_nsec);
    int ret;

    ret = s2e_snap_error(error, S2E_SNAPSHOT_ERROR_BASE_CHANGED,
                         "Snapshot '%s' was taken on another version of "
                         "base image '%s': the image was modified %s, the "
                         "snapshot recorded %s. Copy images together with "
                         "their snapshots using 'cp -p'; if the image's "
                         "contents did not change (a copy without -p), "
                         "restore its timestamp with 'touch -r ORIGINAL "
                         "IMAGE' or 'touch -d @%" G_GINT64_FORMAT ".%09u "
                         "IMAGE'; otherwise recreate the snapshot",
                         snapshot, image, now, then, rec->mtime_sec,
                         rec->mtime_nsec);
    g_free(now);
    g_free(then);
    return ret;
}

int s2e_snap_compare_base(const char *snapshot, const char *image,
                          const S2EBaseIdentity *rec,
                          const S2EBaseIdentity *cur, GError **error)
{
    if (!image) {
        image = "(unnamed)";
    }
    if (rec->size != cur->size) {
        return refuse_size(snapshot, image, rec, cur, error);
    }
    if (rec->has_mtime && cur->has_mtime &&
        (rec->mtime_sec != cur->mtime_sec ||
         rec->mtime_nsec != cur->mtime_nsec)) {
        return refuse_mtime(snapshot, image, rec, cur, error);
    }
    return 0;
}

int s2e_snap_probe_magic(const char *path)
{
    uint8_t magic[S2E_SNAP_MAGIC_LEN];
    ssize_t n;
    bool regular;
    int fd;
    int err = -s2e_snap_open_regular(path, &fd, &regular);

    if (err || !regular) {
        return -err;
    }
    do {
        n = pread(fd, magic, sizeof(magic), 0);
    } while (n < 0 && errno == EINTR);
    err = errno;
    close(fd);
    if (n < 0) {
        return -err;
    }
    return n == (ssize_t)sizeof(magic) &&
           memcmp(magic, S2E_SNAP_MAGIC, sizeof(magic)) == 0;
}
