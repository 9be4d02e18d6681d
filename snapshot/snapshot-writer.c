/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The snapshot writer: streams VM state and dirty sectors into a temporary
 * file, then makes it a snapshot in one atomic rename.
 *
 * QEMU's savevm streams the VM state before it tells the snapshot's name,
 * so the writer starts with a directory, not a path:
 *
 *   writer_new(dir)       open dir (kept as dir_fd), remove temporary
 *                         files left there by dead processes of this host
 *                         (snapshot-temp.c), create
 *                         dir/.s2e-snapshot.HOST.PIDNS.PID.RANDOM
 *                         (O_EXCL, the base image's permission bits, or
 *                         0600 when unknown, & ~umask)
 *   put_vmstate() ...     fill a one-chunk buffer; each full chunk is
 *                         deflated and appended (raw when it does not shrink)
 *   add_sectors() ...     appended at an offset congruent to sector * 512
 *                         modulo 4 KiB; runs that continue the previous one
 *                         extend its extent; each 4 KiB block of the disk
 *                         they fill gets its checksum (one still open at
 *                         the end of a call is finished by the next)
 *   add_zero_sectors() .. an index entry only (flag ZERO, no data): O(1)
 *                         whatever the count; a zero run that continues
 *                         the previous zero extent extends it
 *   commit(final_path)    last chunk, chunk index, extent index, block
 *                         checksum table, header page at offset 0, fsync,
 *                         close, check what final_path names now, rename
 *                         into place, fsync dir
 *
 *   file: [header page][chunk|sectors|...][chunk idx][extent idx][csums]
 *          0          4096                                          EOF
 *
 * Only a snapshot of the same base image is ever replaced: an existing
 * final_path that is anything else (another image that happens to be named
 * IMAGE.NAME, a backup, a damaged or foreign file, a snapshot of another
 * base) makes the commit fail, naming the file, and stays as it was.  When
 * final_path does not exist, the rename does not replace a file created in
 * the meantime either (RENAME_NOREPLACE where the filesystem has it).
 *
 * The header is written last: until the rename the file is only a
 * temporary, and nothing ever reads a file without a valid header.  A crash
 * at any point leaves the old snapshot (or none) plus possibly a hidden
 * temporary file (removed by the next writer in that directory once its
 * creator is gone), never a torn snapshot.
 *
 * Memory is bounded by one chunk (buffer + deflate output + zlib state) plus
 * the index arrays (24 bytes per MiB of VM state, 32 bytes per run of
 * dirty or zero sectors, 4 bytes per 4 KiB block of sector data); the
 * indexes are written through a small bounce buffer.  The header's
 * incompatible feature ZERO_EXTENTS is set exactly when a zero extent was
 * added, so files without one stay readable by readers that predate zero
 * extents.
 *
 * Failure handling: any I/O error kills the writer at once: the temporary
 * file is closed and unlinked, the error (naming the file) is kept and
 * returned again by every later call.  Argument errors leave the writer
 * usable.  Every system call goes through snapshot-io.c, whose fault hook
 * the tests use to fail each step in turn.
 */
#include "snapshot-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define TEMP_TRIES 100
#define INDEX_BOUNCE 65536u
#define NO_BLOCK UINT64_MAX

struct S2ESnapshotWriter {
    S2ESnapIO io;
    char *dir;
    int dir_fd;
    char *temp_name;        /* in dir; NULL once removed or renamed */
    char *temp_path;        /* for messages */
    int fd;
    GError *failure;        /* set when dead */

    S2EBaseIdentity base;
    uint64_t disk_sectors;
    int zlib_level;
    uint32_t chunk_size;
    uint64_t pos;           /* where the next region is appended */

    uint64_t vm_size;       /* bytes of VM state received */
    uint8_t *chunk_buf;     /* chunk_size bytes, allocated at first use */
    uint32_t chunk_fill;
    uint8_t *zbuf;
    size_t zbuf_size;
    z_stream zs;
    bool zs_ready;
    GArray *chunks;         /* S2ESnapChunk */

    GArray *extents;        /* S2ESnapExtent */
    uint64_t next_sector;   /* first sector the next run may start at */
    uint64_t dirty_sectors; /* data and zero */
    uint64_t zero_sectors;

    uint32_t version;       /* S2E_SNAP_VERSION; 1 only for tests */
    GArray *block_csums;    /* uint32_t, version 2 */
    S2ESnapCsumStream *csum;
    uint64_t open_block;    /* block being summed in csum, or NO_BLOCK */
};

const char *s2e_snapshot_writer_temp_path(const S2ESnapshotWriter *w)
{
    return w->temp_name ? w->temp_path : NULL;
}

/* ---- Teardown ----------------------------------------------------------- */

static void remove_temp(S2ESnapshotWriter *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    if (w->temp_name) {
        unlinkat(w->dir_fd, w->temp_name, 0);
        g_clear_pointer(&w->temp_name, g_free);
    }
}

static void writer_free(S2ESnapshotWriter *w)
{
    remove_temp(w);
    if (w->dir_fd >= 0) {
        close(w->dir_fd);
    }
    if (w->zs_ready) {
        deflateEnd(&w->zs);
    }
    g_free(w->chunk_buf);
    g_free(w->zbuf);
    g_array_free(w->chunks, TRUE);
    g_array_free(w->extents, TRUE);
    g_array_free(w->block_csums, TRUE);
    s2e_snap_csum_stream_free(w->csum);
    g_clear_error(&w->failure);
    g_free(w->temp_path);
    g_free(w->dir);
    g_free(w);
}

/*
 * An I/O step failed: remove the temporary file, remember the error, make
 * every later call fail with it.
 */
static int writer_fail(S2ESnapshotWriter *w, int err, GError **error,
                       const char *fmt, ...) G_GNUC_PRINTF(4, 5);

static int writer_fail(S2ESnapshotWriter *w, int err, GError **error,
                       const char *fmt, ...)
{
    va_list ap;
    char *what;

    va_start(ap, fmt);
    what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    s2e_snap_error_errno(&w->failure, -err, "%s", what);
    g_free(what);
    remove_temp(w);
    if (error && !*error) {
        *error = g_error_copy(w->failure);
    }
    return err;
}

static int writer_check_alive(S2ESnapshotWriter *w, GError **error)
{
    if (!w) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "No snapshot writer");
    }
    if (w->failure) {
        if (error && !*error) {
            *error = g_error_copy(w->failure);
        }
        return -EIO;
    }
    return 0;
}

/* ---- Creation ----------------------------------------------------------- */

static int zlib_level_from_env(int *level, GError **error)
{
    const char *env = g_getenv(S2E_SNAP_ZLIB_LEVEL_ENV);
    char *end;
    gint64 v;

    *level = S2E_SNAP_ZLIB_LEVEL_DEFAULT;
    if (!env || !*env) {
        return 0;
    }
    errno = 0;
    v = g_ascii_strtoll(env, &end, 10);
    if (errno || *end || v < 0 || v > 9) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "%s=%s is not a zlib compression level (0-9)",
                              S2E_SNAP_ZLIB_LEVEL_ENV, env);
    }
    *level = (int)v;
    return 0;
}

static int open_dir(S2ESnapshotWriter *w, GError **error)
{
    int ret = s2e_snap_io_fault(&w->io, S2E_SNAP_IO_OPEN_DIR, NULL);

    if (ret == 0) {
        w->dir_fd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ret = w->dir_fd < 0 ? -errno : 0;
    }
    if (ret < 0) {
        return s2e_snap_error_errno(error, -ret, "Cannot open directory "
                                    "'%s' to write a snapshot in it",
                                    w->dir);
    }
    return 0;
}

/*
 * A snapshot holds the guest's RAM: never let it be read by more users
 * than the base image is (its read/write bits; 0600 when unknown).
 */
static mode_t snapshot_mode(const S2EBaseIdentity *base)
{
    return base->mode ? (mode_t)(base->mode & 0666) : 0600;
}

static int create_temp(S2ESnapshotWriter *w, GError **error)
{
    int ret = -EEXIST;

    for (int i = 0; i < TEMP_TRIES && ret == -EEXIST; i++) {
        g_free(w->temp_name);
        w->temp_name = s2e_snap_temp_name_new();
        ret = s2e_snap_io_fault(&w->io, S2E_SNAP_IO_CREATE, NULL);
        if (ret == 0) {
            w->fd = openat(w->dir_fd, w->temp_name,
                           O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                           snapshot_mode(&w->base));
            ret = w->fd < 0 ? -errno : 0;
        }
    }
    if (ret < 0) {
        g_clear_pointer(&w->temp_name, g_free);
        return s2e_snap_error_errno(error, -ret, "Cannot create a snapshot "
                                    "file in directory '%s'", w->dir);
    }
    w->temp_path = g_build_filename(w->dir, w->temp_name, NULL);
    return 0;
}

static int check_new_args(const char *dir, const S2EBaseIdentity *base,
                          uint64_t disk_sectors, GError **error)
{
    if (!dir || !*dir || !base) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "A snapshot writer needs a directory and a "
                              "base identity");
    }
    if (base->has_mtime && base->mtime_nsec >= 1000000000u) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Base image mtime has %u nanoseconds",
                              base->mtime_nsec);
    }
    if (disk_sectors > S2E_SNAP_MAX_SECTORS) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "A disk of %" G_GUINT64_FORMAT " sectors is "
                              "larger than snapshots support (%"
                              G_GUINT64_FORMAT ")", disk_sectors,
                              S2E_SNAP_MAX_SECTORS);
    }
    return 0;
}

S2ESnapshotWriter *s2e_snapshot_writer_new_io(const char *dir,
                                              const S2EBaseIdentity *base,
                                              uint64_t disk_sectors,
                                              const S2ESnapIO *io,
                                              GError **error)
{
    S2ESnapshotWriter *w;
    int level;

    if (check_new_args(dir, base, disk_sectors, error) < 0 ||
        zlib_level_from_env(&level, error) < 0) {
        return NULL;
    }
    w = g_new0(S2ESnapshotWriter, 1);
    w->io = io ? *io : (S2ESnapIO){ 0 };
    w->dir = g_strdup(dir);
    w->dir_fd = -1;
    w->fd = -1;
    w->base = *base;
    if (!w->base.has_mtime) {
        w->base.mtime_sec = 0;
        w->base.mtime_nsec = 0;
    }
    w->disk_sectors = disk_sectors;
    w->zlib_level = level;
    w->chunk_size = S2E_SNAP_CHUNK_DEFAULT;
    w->pos = S2E_SNAP_HEADER_AREA;
    w->chunks = g_array_new(FALSE, FALSE, sizeof(S2ESnapChunk));
    w->extents = g_array_new(FALSE, FALSE, sizeof(S2ESnapExtent));
    w->version = S2E_SNAP_VERSION;
    w->block_csums = g_array_new(FALSE, FALSE, sizeof(uint32_t));
    w->csum = s2e_snap_csum_stream_new();
    w->open_block = NO_BLOCK;

    if (!w->csum) {
        s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT, "Not enough memory "
                       "for a snapshot writer");
        writer_free(w);
        return NULL;
    }
    if (open_dir(w, error) < 0) {
        writer_free(w);
        return NULL;
    }
    s2e_snap_remove_stale_temps(w->dir_fd);
    if (create_temp(w, error) < 0) {
        writer_free(w);
        return NULL;
    }
    return w;
}

S2ESnapshotWriter *s2e_snapshot_writer_new(const char *dir,
                                           const S2EBaseIdentity *base,
                                           uint64_t disk_sectors,
                                           GError **error)
{
    return s2e_snapshot_writer_new_io(dir, base, disk_sectors, NULL, error);
}

/* ---- Options ------------------------------------------------------------ */

static int check_not_started(S2ESnapshotWriter *w, const char *what,
                             GError **error)
{
    int ret = writer_check_alive(w, error);

    if (ret == 0 && (w->vm_size > 0 || w->zs_ready)) {
        ret = s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                             "The %s of snapshot '%s' cannot change once VM "
                             "state was written", what, w->temp_path);
    }
    return ret;
}

int s2e_snapshot_writer_set_zlib_level(S2ESnapshotWriter *w, int level,
                                       GError **error)
{
    int ret = check_not_started(w, "compression level", error);

    if (ret < 0) {
        return ret;
    }
    if (level < 0 || level > 9) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "%d is not a zlib compression level (0-9)",
                              level);
    }
    w->zlib_level = level;
    return 0;
}

int s2e_snapshot_writer_set_chunk_size(S2ESnapshotWriter *w,
                                       uint32_t chunk_size, GError **error)
{
    int ret = check_not_started(w, "chunk size", error);

    if (ret < 0) {
        return ret;
    }
    if (!s2e_snap_chunk_size_valid(chunk_size)) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "VM state chunk size %u is not a power of two "
                              "from %u to %u", chunk_size, S2E_SNAP_CHUNK_MIN,
                              S2E_SNAP_CHUNK_MAX);
    }
    w->chunk_size = chunk_size;
    return 0;
}

int s2e_snapshot_writer_set_version(S2ESnapshotWriter *w, uint32_t version,
                                    GError **error)
{
    int ret = check_not_started(w, "format version", error);

    if (ret == 0 && (w->extents->len > 0 ||
                     (version != S2E_SNAP_VERSION_1 &&
                      version != S2E_SNAP_VERSION_2))) {
        ret = s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                             "Cannot write snapshot '%s' in format version "
                             "%u", w->temp_path, version);
    }
    if (ret == 0) {
        w->version = version;
    }
    return ret;
}

/* ---- VM state ----------------------------------------------------------- */

static int start_compression(S2ESnapshotWriter *w, GError **error)
{
    if (deflateInit(&w->zs, w->zlib_level) != Z_OK) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "Cannot start compression for snapshot '%s'",
                              w->temp_path);
    }
    w->zs_ready = true;
    w->zbuf_size = deflateBound(&w->zs, w->chunk_size);
    w->chunk_buf = g_try_malloc(w->chunk_size);
    w->zbuf = g_try_malloc(w->zbuf_size);
    if (!w->chunk_buf || !w->zbuf) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "Not enough memory for a VM state chunk of "
                              "snapshot '%s'", w->temp_path);
    }
    return 0;
}

/* Deflate the buffered chunk into zbuf; returns the stored form. */
static const uint8_t *compress_chunk(S2ESnapshotWriter *w, S2ESnapChunk *c)
{
    uint32_t len = w->chunk_fill;

    c->flags = S2E_SNAP_CHUNK_RAW;
    c->stored_len = len;
    if (w->zlib_level == 0) {
        /*
         * Level 0 would only wrap the bytes in deflate's stored blocks and
         * an adler32 the chunk CRC makes redundant: store the chunk raw.
         */
        return w->chunk_buf;
    }
    if (deflateReset(&w->zs) != Z_OK) {
        return w->chunk_buf;
    }
    w->zs.next_in = w->chunk_buf;
    w->zs.avail_in = len;
    w->zs.next_out = w->zbuf;
    w->zs.avail_out = (uInt)w->zbuf_size;
    if (deflate(&w->zs, Z_FINISH) != Z_STREAM_END ||
        w->zs.total_out >= len) {
        return w->chunk_buf;    /* incompressible: store it raw */
    }
    c->flags = 0;
    c->stored_len = (uint32_t)w->zs.total_out;
    return w->zbuf;
}

static int flush_chunk(S2ESnapshotWriter *w, GError **error)
{
    S2ESnapChunk c = { .offset = w->pos };
    const uint8_t *data;
    int ret;

    if (w->chunk_fill == 0) {
        return 0;
    }
    data = compress_chunk(w, &c);
    c.crc = s2e_snap_chunk_csum(w->version, data, c.stored_len);
    ret = s2e_snap_pwrite_full(&w->io, S2E_SNAP_IO_WRITE_VMSTATE, w->fd, data,
                               c.stored_len, c.offset);
    if (ret < 0) {
        return writer_fail(w, ret, error, "Cannot write VM state to "
                           "snapshot file '%s'", w->temp_path);
    }
    g_array_append_val(w->chunks, c);
    w->pos += c.stored_len;
    w->chunk_fill = 0;
    return 0;
}

int s2e_snapshot_writer_put_vmstate(S2ESnapshotWriter *w, uint64_t pos,
                                    const void *buf, size_t len,
                                    GError **error)
{
    const uint8_t *p = buf;
    int ret = writer_check_alive(w, error);

    if (ret < 0) {
        return ret;
    }
    if (pos != w->vm_size) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "VM state for snapshot '%s' written at "
                              "position %" G_GUINT64_FORMAT ", expected %"
                              G_GUINT64_FORMAT " (it must be sequential)",
                              w->temp_path, pos, w->vm_size);
    }
    if (len > UINT64_MAX - w->vm_size || (len > 0 && !buf)) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Invalid VM state buffer for snapshot '%s'",
                              w->temp_path);
    }
    if (len > 0 && !w->zs_ready) {
        ret = start_compression(w, error);
        if (ret < 0) {
            return ret;
        }
    }
    while (len > 0) {
        size_t n = MIN(len, (size_t)(w->chunk_size - w->chunk_fill));

        memcpy(w->chunk_buf + w->chunk_fill, p, n);
        w->chunk_fill += (uint32_t)n;
        w->vm_size += n;
        p += n;
        len -= n;
        if (w->chunk_fill == w->chunk_size) {
            ret = flush_chunk(w, error);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

/* ---- Sectors ------------------------------------------------------------ */

/* Range and order of a run of sectors (data or zero). */
static int check_run_args(S2ESnapshotWriter *w, uint64_t sector,
                          uint64_t count, GError **error)
{
    if (sector >= w->disk_sectors || count > w->disk_sectors - sector) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Sectors %" G_GUINT64_FORMAT "+%"
                              G_GUINT64_FORMAT " are outside the disk of %"
                              G_GUINT64_FORMAT " sectors", sector, count,
                              w->disk_sectors);
    }
    if (sector < w->next_sector) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Sectors for snapshot '%s' added out of order "
                              "(sector %" G_GUINT64_FORMAT " after sector %"
                              G_GUINT64_FORMAT ")", w->temp_path, sector,
                              w->next_sector - 1);
    }
    return 0;
}

static int check_sector_args(S2ESnapshotWriter *w, uint64_t sector,
                             uint64_t count, const void *data, GError **error)
{
    int ret = check_run_args(w, sector, count, error);

    if (ret < 0) {
        return ret;
    }
    if (count > SIZE_MAX / S2E_SNAP_SECTOR_SIZE || !data) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Invalid sector buffer for snapshot '%s'",
                              w->temp_path);
    }
    return 0;
}

/* The first offset >= pos congruent to sector * 512 modulo 4 KiB. */
static uint64_t place_sectors(uint64_t pos, uint64_t sector)
{
    uint64_t want = (sector * S2E_SNAP_SECTOR_SIZE) % S2E_SNAP_DATA_ALIGN;
    uint64_t off = pos - pos % S2E_SNAP_DATA_ALIGN + want;

    return off < pos ? off + S2E_SNAP_DATA_ALIGN : off;
}

/* The last extent, or NULL. */
static S2ESnapExtent *last_extent(S2ESnapshotWriter *w)
{
    if (w->extents->len == 0) {
        return NULL;
    }
    return &g_array_index(w->extents, S2ESnapExtent, w->extents->len - 1);
}

/* ---- Block checksums (version 2) ---------------------------------------- */

static void push_block_csum(S2ESnapshotWriter *w, uint32_t csum)
{
    g_array_append_val(w->block_csums, csum);
}

/* The last data extent ended inside a block: that block is complete. */
static void close_open_block(S2ESnapshotWriter *w)
{
    if (w->open_block != NO_BLOCK) {
        push_block_csum(w, s2e_snap_csum_stream_digest(w->csum));
        w->open_block = NO_BLOCK;
    }
}

/*
 * Checksum @count sectors of @data at @sector, which continue the last
 * data extent: whole blocks at once, pieces of one through the stream
 * until the block (or the extent) ends.
 */
static void sum_sectors(S2ESnapshotWriter *w, uint64_t sector,
                        uint64_t count, const uint8_t *data)
{
    while (count > 0) {
        uint64_t block = sector / S2E_SNAP_BLOCK_SECTORS;
        uint64_t block_end = (block + 1) * S2E_SNAP_BLOCK_SECTORS;
        uint64_t n = MIN(count, block_end - sector);
        size_t len = (size_t)n * S2E_SNAP_SECTOR_SIZE;

        if (n == S2E_SNAP_BLOCK_SECTORS) {
            push_block_csum(w, s2e_snap_data_csum(data, len));
        } else {
            if (w->open_block != block) {
                s2e_snap_csum_stream_reset(w->csum);
                w->open_block = block;
            }
            s2e_snap_csum_stream_update(w->csum, data, len);
            if (sector + n == block_end) {
                close_open_block(w);
            }
        }
        data += len;
        sector += n;
        count -= n;
    }
}

/*
 * The extent these sectors go to: the last one when it is a data extent
 * they continue in the disk and in the file, else a new one.
 */
static S2ESnapExtent *extent_for(S2ESnapshotWriter *w, uint64_t sector)
{
    S2ESnapExtent e = { .sector = sector };
    S2ESnapExtent *last = last_extent(w);

    if (last && !(last->flags & S2E_SNAP_EXTENT_ZERO) &&
        last->sector + last->count == sector &&
        last->offset + last->count * S2E_SNAP_SECTOR_SIZE == w->pos) {
        return last;
    }
    close_open_block(w);
    e.offset = place_sectors(w->pos, sector);
    g_array_append_val(w->extents, e);
    return &g_array_index(w->extents, S2ESnapExtent, w->extents->len - 1);
}

int s2e_snapshot_writer_add_sectors(S2ESnapshotWriter *w, uint64_t sector,
                                    uint64_t count, const void *data,
                                    GError **error)
{
    S2ESnapExtent *e;
    size_t bytes;
    uint64_t off;
    int ret = writer_check_alive(w, error);

    if (ret < 0 || count == 0) {
        return ret;
    }
    ret = check_sector_args(w, sector, count, data, error);
    if (ret < 0) {
        return ret;
    }
    bytes = (size_t)count * S2E_SNAP_SECTOR_SIZE;
    e = extent_for(w, sector);
    off = e->offset + e->count * S2E_SNAP_SECTOR_SIZE;
    ret = s2e_snap_pwrite_full(&w->io, S2E_SNAP_IO_WRITE_SECTORS, w->fd, data,
                               bytes, off);
    if (ret < 0) {
        return writer_fail(w, ret, error, "Cannot write disk sectors to "
                           "snapshot file '%s'", w->temp_path);
    }
    if (w->version == S2E_SNAP_VERSION_1) {
        e->crc = s2e_snap_crc32(e->count ? e->crc : 0, data, bytes);
    } else {
        sum_sectors(w, sector, count, data);
    }
    e->count += count;
    w->pos = off + bytes;
    w->next_sector = sector + count;
    w->dirty_sectors += count;
    return 0;
}

int s2e_snapshot_writer_add_zero_sectors(S2ESnapshotWriter *w,
                                         uint64_t sector, uint64_t count,
                                         GError **error)
{
    S2ESnapExtent *last;
    int ret = writer_check_alive(w, error);

    if (ret < 0 || count == 0) {
        return ret;
    }
    ret = check_run_args(w, sector, count, error);
    if (ret < 0) {
        return ret;
    }
    close_open_block(w);
    last = last_extent(w);
    if (last && (last->flags & S2E_SNAP_EXTENT_ZERO) &&
        last->sector + last->count == sector) {
        last->count += count;
    } else {
        S2ESnapExtent e = { .sector = sector, .count = count,
                            .flags = S2E_SNAP_EXTENT_ZERO };
        g_array_append_val(w->extents, e);
    }
    w->next_sector = sector + count;
    w->dirty_sectors += count;
    w->zero_sectors += count;
    return 0;
}

/* ---- Commit ------------------------------------------------------------- */

typedef void (*EncodeFn)(const void *entry, uint8_t *p);

static void encode_chunk(const void *entry, uint8_t *p)
{
    s2e_snap_chunk_encode(entry, p);
}

static void encode_extent(const void *entry, uint8_t *p)
{
    s2e_snap_extent_encode(entry, p);
}

static void encode_csum(const void *entry, uint8_t *p)
{
    s2e_snap_put_le32(p, *(const uint32_t *)entry);
}

/* Write @arr's entries at w->pos through a bounce buffer; fill *crc. */
static int write_index(S2ESnapshotWriter *w, GArray *arr, size_t entry_size,
                       EncodeFn encode, uint32_t *crc, GError **error)
{
    uint8_t *bounce = g_malloc(INDEX_BOUNCE);
    size_t per = INDEX_BOUNCE / entry_size;
    int ret = 0;

    *crc = 0;
    for (size_t i = 0; i < arr->len && ret == 0; i += per) {
        size_t n = MIN(per, arr->len - i);

        for (size_t j = 0; j < n; j++) {
            encode(arr->data + (i + j) * g_array_get_element_size(arr),
                   bounce + j * entry_size);
        }
        *crc = s2e_snap_crc32(*crc, bounce, n * entry_size);
        ret = s2e_snap_pwrite_full(&w->io, S2E_SNAP_IO_WRITE_INDEX, w->fd,
                                   bounce, n * entry_size, w->pos);
        w->pos += n * entry_size;
    }
    g_free(bounce);
    if (ret < 0) {
        return writer_fail(w, ret, error, "Cannot write the index of "
                           "snapshot file '%s'", w->temp_path);
    }
    return 0;
}

static int write_header(S2ESnapshotWriter *w, const S2ESnapshotInfo *info,
                        GError **error)
{
    S2ESnapHeader h = {
        .version = w->version,
        .header_length = w->version == S2E_SNAP_VERSION_1
                         ? S2E_SNAP_HEADER_V1_LEN : S2E_SNAP_HEADER_V2_LEN,
        .base = w->base,
        .info = *info,
        .chunk_size = w->chunk_size,
        .chunk_count = w->chunks->len,
        .extent_count = w->extents->len,
        .incompatible_features = w->zero_sectors > 0
                                 ? S2E_SNAP_INCOMPAT_ZERO_EXTENTS : 0,
    };
    uint8_t *page;
    int ret;

    h.info.vm_state_size = w->vm_size;
    h.info.disk_sectors = w->disk_sectors;
    h.info.dirty_sectors = w->dirty_sectors;
    h.info.zero_sectors = w->zero_sectors;

    h.chunk_index_offset = w->pos;
    ret = write_index(w, w->chunks, S2E_SNAP_CHUNK_ENTRY_SIZE, encode_chunk,
                      &h.chunk_index_crc, error);
    if (ret < 0) {
        return ret;
    }
    h.extent_index_offset = w->pos;
    ret = write_index(w, w->extents, S2E_SNAP_EXTENT_ENTRY_SIZE,
                      encode_extent, &h.extent_index_crc, error);
    if (ret < 0) {
        return ret;
    }
    if (w->version >= S2E_SNAP_VERSION_2) {
        uint32_t unused;

        close_open_block(w);
        h.block_csum_offset = w->pos;
        h.block_csum_count = w->block_csums->len;
        ret = write_index(w, w->block_csums, S2E_SNAP_BLOCK_CSUM_SIZE,
                          encode_csum, &unused, error);
        if (ret < 0) {
            return ret;
        }
    }
    h.file_size = w->pos;

    page = g_malloc(S2E_SNAP_HEADER_AREA);
    s2e_snap_header_encode(&h, page);
    ret = s2e_snap_pwrite_full(&w->io, S2E_SNAP_IO_WRITE_HEADER, w->fd, page,
                               S2E_SNAP_HEADER_AREA, 0);
    g_free(page);
    if (ret < 0) {
        return writer_fail(w, ret, error, "Cannot write the header of "
                           "snapshot file '%s'", w->temp_path);
    }
    return 0;
}

/*
 * @final_path must name an entry of the writer's directory: the rename is
 * done relative to dir_fd, so compare directories by identity.
 */
static int check_final_path(S2ESnapshotWriter *w, const char *final_path,
                            char **final_name, GError **error)
{
    char *dirname = g_path_get_dirname(final_path);
    char *name = g_path_get_basename(final_path);
    struct stat a, b;
    bool same;

    same = stat(dirname, &a) == 0 && fstat(w->dir_fd, &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    g_free(dirname);
    if (!same || g_str_has_suffix(final_path, "/") || !strcmp(name, ".") ||
        !strcmp(name, "..") || !strcmp(name, "/")) {
        g_free(name);
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Cannot commit snapshot to '%s': it must be a "
                              "file in directory '%s'", final_path, w->dir);
    }
    *final_name = name;
    return 0;
}

static int finish_file(S2ESnapshotWriter *w, const char *final_path,
                       GError **error)
{
    int ret = s2e_snap_io_fsync(&w->io, S2E_SNAP_IO_FSYNC, w->fd);

    if (ret < 0) {
        return writer_fail(w, ret, error, "Cannot sync snapshot file '%s' "
                           "(for '%s')", w->temp_path, final_path);
    }
    ret = s2e_snap_io_close(&w->io, w->fd);
    w->fd = -1;
    if (ret < 0) {
        return writer_fail(w, ret, error, "Cannot close snapshot file '%s' "
                           "(for '%s')", w->temp_path, final_path);
    }
    return 0;
}

static int refuse_replace(const char *final_path, const char *why,
                          GError **error)
{
    return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_EXISTS,
                          "Refusing to replace '%s' with a new snapshot: %s; "
                          "it was left as it is (move it away or choose "
                          "another snapshot name)", final_path, why);
}

static bool same_base(const S2EBaseIdentity *a, const S2EBaseIdentity *b)
{
    return a->size == b->size &&
           (!a->has_mtime || !b->has_mtime ||
            (a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec));
}

static int refuse_other_base(S2ESnapshotWriter *w, const char *final_path,
                             const S2EBaseIdentity *old, GError **error)
{
    char *then = s2e_snapshot_format_time(old->mtime_sec, old->mtime_nsec);
    char *now = s2e_snapshot_format_time(w->base.mtime_sec,
                                         w->base.mtime_nsec);
    char *why = g_strdup_printf("it is a snapshot of another base image (%"
                                G_GUINT64_FORMAT " bytes, modified %s; this "
                                "image: %" G_GUINT64_FORMAT " bytes, "
                                "modified %s)", old->size,
                                old->has_mtime ? then : "(unknown)",
                                w->base.size,
                                w->base.has_mtime ? now : "(unknown)");
    int ret = refuse_replace(final_path, why, error);

    g_free(why);
    g_free(then);
    g_free(now);
    return ret;
}

/*
 * What @final_name names now: nothing (*replace false), or a valid snapshot
 * of the same base image, which the rename may replace (*replace true).
 * Anything else is refused, so savevm never destroys a file it did not
 * write: an image named IMAGE.NAME, a backup, a damaged snapshot.
 */
static int check_replaceable(S2ESnapshotWriter *w, const char *final_path,
                             const char *final_name, bool *replace,
                             GError **error)
{
    struct stat st;
    S2ESnapshot *old;
    GError *why = NULL;
    int ret = 0;

    *replace = false;
    if (fstatat(w->dir_fd, final_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) {
            return 0;
        }
        return s2e_snap_error_errno(error, errno, "Cannot look at '%s' "
                                    "before writing a snapshot there",
                                    final_path);
    }
    if (!S_ISREG(st.st_mode)) {
        return refuse_replace(final_path, "it is not a regular file", error);
    }
    if (s2e_snap_probe_magic(final_path) == 0) {
        return refuse_replace(final_path, "it is not an s2e snapshot file",
                              error);
    }
    old = s2e_snapshot_open(final_path, NULL, NULL, &why);
    if (!old) {
        ret = refuse_replace(final_path, why->message, error);
        g_error_free(why);
        return ret;
    }
    if (!same_base(s2e_snapshot_get_base(old), &w->base)) {
        ret = refuse_other_base(w, final_path, s2e_snapshot_get_base(old),
                                error);
    }
    s2e_snapshot_close(old);
    *replace = ret == 0;
    return ret;
}

/*
 * Rename the temporary file to @final_name: over the snapshot it replaces,
 * or only if nothing took the name meanwhile.  Filesystems without
 * RENAME_NOREPLACE get a plain rename.
 */
static int rename_temp(S2ESnapshotWriter *w, const char *final_name,
                       bool replace)
{
    if (!replace &&
        renameat2(w->dir_fd, w->temp_name, w->dir_fd, final_name,
                  RENAME_NOREPLACE) == 0) {
        return 0;
    }
    if (!replace && errno != EINVAL && errno != ENOSYS) {
        return -errno;
    }
    return renameat(w->dir_fd, w->temp_name, w->dir_fd, final_name) < 0
           ? -errno : 0;
}

static int rename_into_place(S2ESnapshotWriter *w, const char *final_path,
                             const char *final_name, bool replace,
                             GError **error)
{
    int ret = s2e_snap_io_fault(&w->io, S2E_SNAP_IO_RENAME, NULL);

    if (ret == 0) {
        ret = rename_temp(w, final_name, replace);
    }
    if (ret == -EEXIST) {
        remove_temp(w);
        return refuse_replace(final_path, "it appeared while the snapshot "
                              "was being written", error);
    }
    if (ret < 0) {
        return writer_fail(w, ret, error, "Cannot rename snapshot file '%s' "
                           "to '%s'", w->temp_path, final_path);
    }
    g_clear_pointer(&w->temp_name, g_free);
    ret = s2e_snap_io_fsync(&w->io, S2E_SNAP_IO_FSYNC_DIR, w->dir_fd);
    if (ret < 0) {
        return s2e_snap_error_errno(error, -ret, "Snapshot '%s' was written "
                                    "but its directory '%s' could not be "
                                    "synced, so it may not survive a crash",
                                    final_path, w->dir);
    }
    return 0;
}

static int commit(S2ESnapshotWriter *w, const char *final_path,
                  const S2ESnapshotInfo *info, GError **error)
{
    char *final_name = NULL;
    bool replace = false;
    int ret = writer_check_alive(w, error);

    if (ret < 0) {
        return ret;
    }
    if (!final_path || !info) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Cannot commit snapshot '%s' without a path "
                              "and info", w->temp_path);
    }
    ret = s2e_snap_check_info(info, error);
    if (ret == 0) {
        ret = check_final_path(w, final_path, &final_name, error);
    }
    if (ret == 0) {
        ret = check_replaceable(w, final_path, final_name, &replace, error);
    }
    if (ret == 0) {
        ret = flush_chunk(w, error);
    }
    if (ret == 0) {
        ret = write_header(w, info, error);
    }
    if (ret == 0) {
        ret = finish_file(w, final_path, error);
    }
    if (ret == 0) {
        ret = rename_into_place(w, final_path, final_name, replace, error);
    }
    g_free(final_name);
    return ret;
}

int s2e_snapshot_writer_commit(S2ESnapshotWriter *w, const char *final_path,
                               const S2ESnapshotInfo *info, GError **error)
{
    int ret = commit(w, final_path, info, error);

    if (w) {
        writer_free(w);
    }
    return ret;
}

void s2e_snapshot_writer_abort(S2ESnapshotWriter *w)
{
    if (w) {
        writer_free(w);
    }
}
