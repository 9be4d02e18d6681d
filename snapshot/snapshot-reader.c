/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The snapshot reader: a validated, read-only view of a snapshot file.
 *
 * Opening reads the header page and the two indexes, and nothing else;
 * sector data and VM state stay in the file and are read on demand:
 *
 *   open:   fstat -> size >= 4 KiB -> header page -> s2e_snap_header_decode
 *           -> chunk index (crc, entries) -> extent index (crc, entries)
 *           -> regions disjoint -> base identity (when asked)
 *   sectors: binary search of the extent index -> pread of the data, or
 *            zeroes for a zero extent (nothing stored) -> version 2: each
 *            4 KiB block not verified yet is checked against its entry in
 *            the block checksum table, then marked verified
 *   VM state: chunk = pos / chunk_size -> pread -> checksum -> inflate into
 *             a one-chunk cache -> copy; bytes past the end read as zeroes
 *
 * Sector data is stored uncompressed and placed so that guest pages are
 * file pages; reading it with pread through the page cache shares it
 * between every process that loaded the same snapshot.  pread keeps no
 * file offset, so the descriptor (O_CLOEXEC) is safe to share between
 * threads and across fork().
 *
 * Invariants after a successful open: every table entry was bounded by the
 * file size before anything was allocated from it; every region (header
 * page, chunks, data extents' data, indexes) lies inside the file and no
 * two overlap; extents of both kinds are sorted, disjoint, inside the disk,
 * and add up to the header's dirty sector count; zero extents (no data,
 * offset and checksum 0) appear only with their feature bit; the chunk
 * count matches the VM state size.  Later reads re-check what can still go
 * wrong: the file may be truncated or damaged under us (-> TRUNCATED,
 * CHECKSUM, CORRUPT, IO).
 *
 * Block verification (version 2): the first read of any part of a block
 * checks the whole block (reading the rest of it when the request covers
 * only a part) and sets the block's bit in a bitmap of verified blocks;
 * later reads of it skip the check.  The bitmap (1 bit per block, zeroed
 * memory the kernel maps on first touch) is updated with atomic ORs, so
 * reads from several threads need no lock.  A mismatch fails the read
 * (CHECKSUM, -EIO) and the caller's buffer must not be used.  Verifying
 * once per handle trusts the page cache afterwards; it catches what was
 * damaged on disk or in transit, which is what a lazy reader can afford
 * (bench/bench-checksum.c measures the cost).
 *
 * Limits: version 1 files have one checksum per extent, verified only by
 * s2e_snapshot_verify_all(): their sector data is read unverified.  The VM
 * state cache makes the VM state functions single-threaded per snapshot.
 */
#include "snapshot-int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define NO_CHUNK UINT64_MAX
#define VERIFY_STEP (1024u * 1024)
#define BLOCK_BYTES (S2E_SNAP_BLOCK_SECTORS * S2E_SNAP_SECTOR_SIZE)

/*
 * Version 2: what the reader learns about the blocks as it reads.  The
 * handle is const for readers (any number of threads), this is not.
 */
typedef struct S2EBlockChecks {
    /* the block checksums, read at the first data read; set once (atomic) */
    uint32_t *table;
    uint32_t verified[];      /* a bit per block checksum */
} S2EBlockChecks;

struct S2ESnapshot {
    S2ESnapIO io;
    char *path;
    int fd;
    S2ESnapHeader h;
    S2ESnapChunk *chunks;
    S2ESnapExtent *extents;
    uint64_t vm_state_stored;
    uint64_t zero_extents;
    S2EBlockChecks *checks;   /* version 2 */

    uint64_t cached;          /* chunk in cache, or NO_CHUNK */
    uint8_t *cache;           /* chunk_size bytes, allocated at first use */
    uint8_t *zbuf;            /* chunk_size bytes */
    z_stream zs;
    bool zs_ready;
};

/* ---- Reading helpers ---------------------------------------------------- */

static int read_error(const S2ESnapshot *snap, int ret, const char *what,
                      GError **error)
{
    if (ret == -EAGAIN) {
        return ret;     /* not cached, under nowait: not an error */
    }
    if (ret == -ENODATA) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_TRUNCATED,
                              "Snapshot file '%s' ended before its %s "
                              "(was it truncated?)", snap->path, what);
    }
    return s2e_snap_error_errno(error, -ret, "Cannot read the %s of "
                                "snapshot file '%s'", what, snap->path);
}

/*
 * Read all of @len at @off, or fail with the reason naming @what.  Sector
 * reads may be asked not to wait for the disk (S2E_SNAPSHOT_READ_NOWAIT):
 * then -EAGAIN, without an error, when the page cache does not hold it.
 */
static int read_at_mode(const S2ESnapshot *snap, void *buf, size_t len,
                        uint64_t off, bool nowait, const char *what,
                        GError **error)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    int ret = s2e_snap_preadv_full(&snap->io, snap->fd, &iov, 1, off,
                                   nowait);

    return ret < 0 ? read_error(snap, ret, what, error) : 0;
}

static int read_at(const S2ESnapshot *snap, void *buf, size_t len,
                   uint64_t off, const char *what, GError **error)
{
    return read_at_mode(snap, buf, len, off, false, what, error);
}

/* ---- Open --------------------------------------------------------------- */

static int open_file(S2ESnapshot *snap, uint64_t *size, GError **error)
{
    struct stat st;
    bool regular = true;
    int ret = s2e_snap_io_fault(&snap->io, S2E_SNAP_IO_OPEN, NULL);

    if (ret == 0) {
        ret = s2e_snap_open_regular(snap->path, &snap->fd, &regular);
    }
    if (ret == 0 && regular && fstat(snap->fd, &st) < 0) {
        ret = -errno;
    }
    if (ret < 0) {
        return s2e_snap_error_errno(error, -ret, "Cannot open snapshot file "
                                    "'%s'", snap->path);
    }
    if (!regular) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_BAD_MAGIC,
                              "'%s' is not an s2e snapshot file (not a "
                              "regular file)", snap->path);
    }
    *size = (uint64_t)st.st_size;
    if (*size < S2E_SNAP_HEADER_AREA) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_TRUNCATED,
                              "Snapshot file '%s' is truncated: %"
                              G_GUINT64_FORMAT " bytes, less than its %u-byte "
                              "header", snap->path, *size,
                              S2E_SNAP_HEADER_AREA);
    }
    return 0;
}

static int read_header(S2ESnapshot *snap, uint64_t size, GError **error)
{
    uint8_t *page = g_malloc(S2E_SNAP_HEADER_AREA);
    int ret = read_at(snap, page, S2E_SNAP_HEADER_AREA, 0, "header", error);

    if (ret == 0) {
        ret = s2e_snap_header_decode(page, size, snap->path, &snap->h, error);
    }
    g_free(page);
    return ret;
}

/*
 * Read an index of @count entries of @entry_size bytes (bounded by the
 * file size by the header checks) and verify its checksum.
 */
static uint8_t *read_index(S2ESnapshot *snap, uint64_t offset, uint64_t count,
                           uint32_t entry_size, uint32_t crc,
                           const char *what, GError **error)
{
    size_t len = (size_t)(count * entry_size);
    uint8_t *buf = g_try_malloc(len ? len : 1);
    uint32_t got;

    if (!buf) {
        s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT, "Not enough memory "
                       "for the %s of snapshot file '%s'", what, snap->path);
        return NULL;
    }
    if (read_at(snap, buf, len, offset, what, error) < 0) {
        g_free(buf);
        return NULL;
    }
    got = s2e_snap_crc32(0, buf, len);
    if (got != crc) {
        s2e_snap_error(error, S2E_SNAPSHOT_ERROR_CHECKSUM, "Snapshot file "
                       "'%s' has a damaged %s (checksum 0x%08x, expected "
                       "0x%08x)", snap->path, what, got, crc);
        g_free(buf);
        return NULL;
    }
    return buf;
}

static int load_chunks(S2ESnapshot *snap, GError **error)
{
    const S2ESnapHeader *h = &snap->h;
    const char *what = "VM state chunk index";
    uint8_t *buf = read_index(snap, h->chunk_index_offset, h->chunk_count,
                              S2E_SNAP_CHUNK_ENTRY_SIZE, h->chunk_index_crc,
                              what, error);
    int ret;

    if (!buf) {
        return -EINVAL;
    }
    snap->chunks = g_try_new(S2ESnapChunk, h->chunk_count ? h->chunk_count
                                                          : 1);
    ret = snap->chunks ? s2e_snap_chunks_decode(buf, h, snap->path,
                                                snap->chunks, error)
                       : s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                                        "Not enough memory for the %s of "
                                        "snapshot file '%s'", what,
                                        snap->path);
    g_free(buf);
    for (uint64_t i = 0; ret == 0 && i < h->chunk_count; i++) {
        snap->vm_state_stored += snap->chunks[i].stored_len;
    }
    return ret;
}

static int load_extents(S2ESnapshot *snap, GError **error)
{
    S2ESnapHeader *h = &snap->h;
    const char *what = "dirty sector index";
    uint8_t *buf = read_index(snap, h->extent_index_offset, h->extent_count,
                              S2E_SNAP_EXTENT_ENTRY_SIZE,
                              h->extent_index_crc, what, error);
    int ret;

    if (!buf) {
        return -EINVAL;
    }
    snap->extents = g_try_new(S2ESnapExtent, h->extent_count
                                             ? h->extent_count : 1);
    ret = snap->extents ? s2e_snap_extents_decode(buf, h, snap->path,
                                                  snap->extents, error)
                        : s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                                         "Not enough memory for the %s of "
                                         "snapshot file '%s'", what,
                                         snap->path);
    g_free(buf);
    for (uint64_t i = 0; ret == 0 && i < h->extent_count; i++) {
        snap->zero_extents += !!(snap->extents[i].flags &
                                 S2E_SNAP_EXTENT_ZERO);
    }
    return ret;
}

/*
 * Version 2: the bitmap of verified blocks, all clear.  Its size is bounded
 * by the table, which the header checks bounded by the file size.
 */
static int alloc_checks(S2ESnapshot *snap, GError **error)
{
    uint64_t words = snap->h.block_csum_count / 32 + 1;

    if (snap->h.version < S2E_SNAP_VERSION_2) {
        return 0;
    }
    snap->checks = g_try_malloc0(sizeof(*snap->checks) +
                                 words * sizeof(uint32_t));
    if (!snap->checks) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "Not enough memory for the block checksums of "
                              "snapshot file '%s'", snap->path);
    }
    return 0;
}

static int snapshot_load(S2ESnapshot *snap, const char *image_label,
                         const S2EBaseIdentity *base, GError **error)
{
    uint64_t size = 0;
    int ret;

    ret = open_file(snap, &size, error);
    if (ret == 0) {
        ret = read_header(snap, size, error);
    }
    if (ret == 0) {
        ret = load_chunks(snap, error);
    }
    if (ret == 0) {
        ret = load_extents(snap, error);
    }
    if (ret == 0) {
        ret = s2e_snap_check_regions(&snap->h, snap->chunks, snap->extents,
                                     snap->path, error);
    }
    if (ret == 0) {
        ret = alloc_checks(snap, error);
    }
    if (ret < 0) {
        return ret;
    }
    if (base) {
        return s2e_snapshot_check_base(snap, image_label, base, error);
    }
    return 0;
}

S2ESnapshot *s2e_snapshot_open_io(const char *path, const char *image_label,
                                  const S2EBaseIdentity *base,
                                  const S2ESnapIO *io, GError **error)
{
    S2ESnapshot *snap;

    if (!path || !*path) {
        s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                       "No snapshot file name given");
        return NULL;
    }
    snap = g_new0(S2ESnapshot, 1);
    snap->io = io ? *io : (S2ESnapIO){ 0 };
    snap->path = g_strdup(path);
    snap->fd = -1;
    snap->cached = NO_CHUNK;
    if (snapshot_load(snap, image_label, base, error) < 0) {
        s2e_snapshot_close(snap);
        return NULL;
    }
    return snap;
}

S2ESnapshot *s2e_snapshot_open(const char *path, const char *image_label,
                               const S2EBaseIdentity *base, GError **error)
{
    return s2e_snapshot_open_io(path, image_label, base, NULL, error);
}

void s2e_snapshot_close(S2ESnapshot *snap)
{
    if (!snap) {
        return;
    }
    if (snap->fd >= 0) {
        close(snap->fd);
    }
    if (snap->zs_ready) {
        inflateEnd(&snap->zs);
    }
    g_free(snap->cache);
    g_free(snap->zbuf);
    g_free(snap->chunks);
    g_free(snap->extents);
    if (snap->checks) {
        g_free(snap->checks->table);
        g_free(snap->checks);
    }
    g_free(snap->path);
    g_free(snap);
}

/* ---- Accessors ---------------------------------------------------------- */

const S2ESnapshotInfo *s2e_snapshot_get_info(const S2ESnapshot *snap)
{
    return &snap->h.info;
}

const S2EBaseIdentity *s2e_snapshot_get_base(const S2ESnapshot *snap)
{
    return &snap->h.base;
}

const char *s2e_snapshot_get_path(const S2ESnapshot *snap)
{
    return snap->path;
}

void s2e_snapshot_get_layout(const S2ESnapshot *snap,
                             S2ESnapshotLayout *layout)
{
    *layout = (S2ESnapshotLayout){
        .version = snap->h.version,
        .header_length = (uint32_t)s2e_snap_header_total_len(&snap->h),
        .incompatible_features = snap->h.incompatible_features,
        .compatible_features = snap->h.compatible_features,
        .file_size = snap->h.file_size,
        .chunk_size = snap->h.chunk_size,
        .chunk_count = snap->h.chunk_count,
        .vm_state_stored = snap->vm_state_stored,
        .extent_count = snap->h.extent_count,
        .zero_extent_count = snap->zero_extents,
        .block_checksums = snap->h.version >= S2E_SNAP_VERSION_2,
    };
}

const S2ESnapExtent *s2e_snapshot_extents(const S2ESnapshot *snap,
                                          uint64_t *count)
{
    *count = snap->h.extent_count;
    return snap->extents;
}

int s2e_snapshot_check_base(const S2ESnapshot *snap, const char *image_label,
                            const S2EBaseIdentity *base, GError **error)
{
    if (!base) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "No base image identity to check snapshot "
                              "'%s' against", snap->path);
    }
    return s2e_snap_compare_base(snap->path, image_label, &snap->h.base, base,
                                 error);
}

/* ---- Sectors ------------------------------------------------------------ */

/* Index of the first extent ending after @sector (extent_count if none). */
static uint64_t extent_search(const S2ESnapshot *snap, uint64_t sector)
{
    uint64_t lo = 0, hi = snap->h.extent_count;

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const S2ESnapExtent *e = &snap->extents[mid];

        if (e->sector + e->count <= sector) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static S2EExtentKind kind_of(const S2ESnapExtent *e)
{
    return (e->flags & S2E_SNAP_EXTENT_ZERO) ? S2E_EXTENT_ZERO
                                             : S2E_EXTENT_DATA;
}

/*
 * The run at @sector: ABSENT up to the next extent, or the extents directly
 * following each other from the one holding @sector, of the same kind
 * only when @same_kind.
 */
static S2EExtentKind run_at(const S2ESnapshot *snap, uint64_t sector,
                            uint64_t max_count, bool same_kind,
                            uint64_t *count)
{
    uint64_t i, end, n = snap->h.extent_count;
    S2EExtentKind kind;

    *count = max_count;
    if (max_count == 0 || sector >= snap->h.info.disk_sectors) {
        return S2E_EXTENT_ABSENT;
    }
    i = extent_search(snap, sector);
    if (i == n || snap->extents[i].sector > sector) {
        uint64_t next = i == n ? snap->h.info.disk_sectors
                               : snap->extents[i].sector;
        *count = MIN(max_count, next - sector);
        return S2E_EXTENT_ABSENT;
    }
    /* Held: extend over directly following extents. */
    kind = kind_of(&snap->extents[i]);
    end = snap->extents[i].sector + snap->extents[i].count;
    while (++i < n && snap->extents[i].sector == end &&
           end - sector < max_count &&
           (!same_kind || kind_of(&snap->extents[i]) == kind)) {
        end += snap->extents[i].count;
    }
    *count = MIN(max_count, end - sector);
    return kind;
}

bool s2e_snapshot_extent(const S2ESnapshot *snap, uint64_t sector,
                         uint64_t max_count, uint64_t *count)
{
    return run_at(snap, sector, max_count, false, count) !=
           S2E_EXTENT_ABSENT;
}

S2EExtentKind s2e_snapshot_extent_kind(const S2ESnapshot *snap,
                                       uint64_t sector, uint64_t max_count,
                                       uint64_t *count)
{
    return run_at(snap, sector, max_count, true, count);
}

/* ---- Block verification (version 2) ------------------------------------- */

static bool block_verified(const S2ESnapshot *snap, uint64_t idx)
{
    return __atomic_load_n(&snap->checks->verified[idx / 32],
                           __ATOMIC_ACQUIRE) & (1u << (idx % 32));
}

static void mark_verified(const S2ESnapshot *snap, uint64_t idx)
{
    __atomic_fetch_or(&snap->checks->verified[idx / 32], 1u << (idx % 32),
                      __ATOMIC_RELEASE);
}

/* Sectors [*lo, *hi) of block @b (sectors 8b .. 8b+7) that @e holds. */
static void block_span(const S2ESnapExtent *e, uint64_t b, uint64_t *lo,
                       uint64_t *hi)
{
    *lo = MAX(e->sector, b * S2E_SNAP_BLOCK_SECTORS);
    *hi = MIN(e->sector + e->count, (b + 1) * S2E_SNAP_BLOCK_SECTORS);
}

/*
 * The whole block checksum table (4 bytes per 4 KiB of data), read at the
 * first data read rather than at open: listing opens every snapshot, and a
 * lookup per read would cost a pread each.  Threads racing here both read
 * it; one copy wins.
 */
static int block_csums(const S2ESnapshot *snap, const uint32_t **csums,
                       bool nowait, GError **error)
{
    uint32_t *table = __atomic_load_n(&snap->checks->table, __ATOMIC_ACQUIRE);
    uint64_t n = snap->h.block_csum_count;
    uint32_t *none = NULL;
    uint8_t *raw;
    int ret;

    if (table) {
        *csums = table;
        return 0;
    }
    table = g_try_new(uint32_t, n ? n : 1);
    raw = g_try_malloc(n ? n * S2E_SNAP_BLOCK_CSUM_SIZE : 1);
    ret = !table || !raw
          ? s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT, "Not enough "
                           "memory for the block checksums of snapshot file "
                           "'%s'", snap->path)
          : read_at_mode(snap, raw, n * S2E_SNAP_BLOCK_CSUM_SIZE,
                         snap->h.block_csum_offset, nowait,
                         "block checksum table", error);
    for (uint64_t i = 0; ret == 0 && i < n; i++) {
        table[i] = s2e_snap_get_le32(raw + i * S2E_SNAP_BLOCK_CSUM_SIZE);
    }
    g_free(raw);
    if (ret < 0) {
        g_free(table);
        return ret;
    }
    if (!__atomic_compare_exchange_n(&snap->checks->table, &none, table,
                                     false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        g_free(table);
        table = none;
    }
    *csums = table;
    return 0;
}

static int block_damaged(const S2ESnapshot *snap, const S2ESnapExtent *e,
                         uint64_t lo, uint64_t hi, uint32_t got,
                         uint32_t want, GError **error)
{
    return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_CHECKSUM,
                          "Snapshot file '%s' is damaged: data of sectors %"
                          G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT " (dirty "
                          "extent %" G_GUINT64_FORMAT ", offset %"
                          G_GUINT64_FORMAT ") has checksum 0x%08x, expected "
                          "0x%08x", snap->path, lo, hi - lo,
                          (uint64_t)(e - snap->extents),
                          e->offset + (lo - e->sector) * S2E_SNAP_SECTOR_SIZE,
                          got, want);
}

/* ---- I/O vectors -------------------------------------------------------- */

/*
 * A position in a caller's vector, moving forward only: element k, byte
 * off inside it (never at an element's end but the vector's).
 */
typedef struct VecPos {
    const struct iovec *iov;
    int cnt, k;
    size_t off;
} VecPos;

static void vec_advance(VecPos *v, size_t bytes)
{
    bytes += v->off;
    while (v->k < v->cnt && bytes >= v->iov[v->k].iov_len) {
        bytes -= v->iov[v->k].iov_len;
        v->k++;
    }
    v->off = bytes;
}

static void vec_init(VecPos *v, const struct iovec *iov, int cnt)
{
    *v = (VecPos){ .iov = iov, .cnt = cnt };
    vec_advance(v, 0);
}

static uint8_t *vec_at(const VecPos *v)
{
    return (uint8_t *)v->iov[v->k].iov_base + v->off;
}

/* Bytes from the position to the end of its element. */
static size_t vec_room(const VecPos *v)
{
    return v->k < v->cnt ? v->iov[v->k].iov_len - v->off : 0;
}

/* The @len bytes at @v in one piece, or NULL when they span elements. */
static const uint8_t *vec_contiguous(const VecPos *v, size_t len)
{
    return vec_room(v) >= len ? vec_at(v) : NULL;
}

/*
 * Copy @len bytes at @v out to @buf, or in from @buf (zeroes when NULL);
 * @v does not move.
 */
static void vec_copy(VecPos v, uint8_t *buf, size_t len, bool in)
{
    while (len > 0 && v.k < v.cnt) {
        size_t n = MIN(len, vec_room(&v));

        if (!in) {
            memcpy(buf, vec_at(&v), n);
        } else if (buf) {
            memcpy(vec_at(&v), buf, n);
        } else {
            memset(vec_at(&v), 0, n);
        }
        buf = buf ? buf + n : NULL;
        len -= n;
        vec_advance(&v, n);
    }
}

/*
 * The @len bytes at @v as elements of @out (room for all of v's): their
 * count.
 */
static int vec_slice(VecPos v, size_t len, struct iovec *out)
{
    int n = 0;

    while (len > 0 && v.k < v.cnt) {
        size_t take = MIN(len, vec_room(&v));

        out[n].iov_base = vec_at(&v);
        out[n++].iov_len = take;
        len -= take;
        vec_advance(&v, take);
    }
    return n;
}

/* ---- Sector data -------------------------------------------------------- */

/*
 * Check block @b of extent @e, part of whose data the caller read into
 * the vector (sectors [sector, sector + n)); @at is the vector's position
 * of the block's first sector in the request.  A block inside the request
 * is checked where it lies (gathered first when it spans elements); one
 * the request covers only partly is read whole into a bounce buffer,
 * checked, and its part copied into the vector, so what the caller gets is
 * what was checked.
 */
static int check_block(const S2ESnapshot *snap, const S2ESnapExtent *e,
                       uint64_t b, uint32_t want, uint64_t sector,
                       uint64_t n, const VecPos *at, bool nowait,
                       GError **error)
{
    uint8_t bounce[BLOCK_BYTES];
    const uint8_t *data = bounce;
    uint64_t lo, hi, from, to;
    size_t len;
    bool inside;
    uint32_t got;

    block_span(e, b, &lo, &hi);
    len = (hi - lo) * S2E_SNAP_SECTOR_SIZE;
    inside = lo >= sector && hi <= sector + n;
    if (inside) {
        data = vec_contiguous(at, len);
        if (!data) {
            vec_copy(*at, bounce, len, false);
            data = bounce;
        }
    } else {
        int ret = read_at_mode(snap, bounce, len, e->offset +
                               (lo - e->sector) * S2E_SNAP_SECTOR_SIZE,
                               nowait, "sector data", error);
        if (ret < 0) {
            return ret;
        }
    }
    got = s2e_snap_data_csum(data, len);
    if (got != want) {
        return block_damaged(snap, e, lo, hi, got, want, error);
    }
    if (!inside) {
        from = MAX(lo, sector);
        to = MIN(hi, sector + n);
        vec_copy(*at, bounce + (from - lo) * S2E_SNAP_SECTOR_SIZE,
                 (to - from) * S2E_SNAP_SECTOR_SIZE, true);
    }
    return 0;
}

/*
 * Verify the blocks of @e that sectors [sector, sector + n), read into
 * the vector at @at, touch: those not verified yet, or all when @again.
 */
static int verify_read(const S2ESnapshot *snap, const S2ESnapExtent *e,
                       uint64_t sector, uint64_t n, const VecPos *at,
                       bool again, bool nowait, GError **error)
{
    uint64_t first = sector / S2E_SNAP_BLOCK_SECTORS;
    uint64_t last = (sector + n - 1) / S2E_SNAP_BLOCK_SECTORS;
    uint64_t base = e->first_csum - e->sector / S2E_SNAP_BLOCK_SECTORS;
    const uint32_t *want = NULL;
    VecPos w = *at;
    uint64_t w_sector = sector;

    for (uint64_t b = first; b <= last; b++) {
        uint64_t idx = base + b;
        uint64_t from = MAX(b * S2E_SNAP_BLOCK_SECTORS, sector);
        int ret;

        if (!again && block_verified(snap, idx)) {
            continue;
        }
        vec_advance(&w, (from - w_sector) * S2E_SNAP_SECTOR_SIZE);
        w_sector = from;
        ret = want ? 0 : block_csums(snap, &want, nowait, error);
        if (ret == 0) {
            ret = check_block(snap, e, b, want[idx], sector, n, &w, nowait,
                              error);
        }
        if (ret < 0) {
            return ret;
        }
        mark_verified(snap, idx);
    }
    return 0;
}

/*
 * Sectors [sector, sector + n) of data extent @e into the vector at @at,
 * checked; @part has room for the vector's elements.
 */
static int read_data(const S2ESnapshot *snap, const S2ESnapExtent *e,
                     uint64_t sector, uint64_t n, const VecPos *at,
                     struct iovec *part, bool nowait, GError **error)
{
    int cnt = vec_slice(*at, n * S2E_SNAP_SECTOR_SIZE, part);
    int ret = s2e_snap_preadv_full(&snap->io, snap->fd, part, cnt,
                                   e->offset + (sector - e->sector) *
                                   S2E_SNAP_SECTOR_SIZE, nowait);

    if (ret < 0) {
        return read_error(snap, ret, "sector data", error);
    }
    if (snap->h.version < S2E_SNAP_VERSION_2) {
        return 0;
    }
    return verify_read(snap, e, sector, n, at, false, nowait, error);
}

static int check_read_args(const S2ESnapshot *snap, uint64_t sector,
                           uint64_t count, const struct iovec *iov,
                           int iovcnt, GError **error)
{
    uint64_t have = 0;

    if (sector >= snap->h.info.disk_sectors ||
        count > snap->h.info.disk_sectors - sector ||
        count > SIZE_MAX / S2E_SNAP_SECTOR_SIZE) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Sectors %" G_GUINT64_FORMAT "+%"
                              G_GUINT64_FORMAT " are outside the disk of "
                              "snapshot file '%s'", sector, count,
                              snap->path);
    }
    for (int k = 0; k < iovcnt && have < count * S2E_SNAP_SECTOR_SIZE; k++) {
        have += iov[k].iov_len;
    }
    if (iovcnt < 0 || have < count * S2E_SNAP_SECTOR_SIZE) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "A read of %" G_GUINT64_FORMAT " sectors from "
                              "snapshot file '%s' was given a buffer of %"
                              G_GUINT64_FORMAT " bytes", count, snap->path,
                              have);
    }
    return 0;
}

/*
 * The next run at @sector of at most @count sectors, from extent *i on:
 * ABSENT up to the next extent, else the part of extent *i, which *held
 * then points to (and *i moves on).
 */
static S2EExtentKind next_run(const S2ESnapshot *snap, uint64_t *i,
                              uint64_t sector, uint64_t count, uint64_t *n,
                              const S2ESnapExtent **held)
{
    const S2ESnapExtent *e;

    if (*i == snap->h.extent_count) {
        *n = count;
        return S2E_EXTENT_ABSENT;
    }
    e = &snap->extents[*i];
    if (e->sector > sector) {
        *n = MIN(count, e->sector - sector);
        return S2E_EXTENT_ABSENT;
    }
    *n = MIN(count, e->sector + e->count - sector);
    (*i)++;
    *held = e;
    return kind_of(e);
}

int s2e_snapshot_readv(const S2ESnapshot *snap, uint64_t sector,
                       uint64_t count, const struct iovec *iov, int iovcnt,
                       unsigned flags, S2ESnapshotAbsentFn *absent,
                       void *opaque, GError **error)
{
    bool nowait = flags & S2E_SNAPSHOT_READ_NOWAIT;
    struct iovec stack[16], *part = stack;
    uint64_t i;
    VecPos v;
    int ret;

    if (count == 0) {
        return 0;
    }
    ret = check_read_args(snap, sector, count, iov, iovcnt, error);
    if (ret < 0) {
        return ret;
    }
    if (iovcnt > (int)G_N_ELEMENTS(stack)) {
        part = g_try_new(struct iovec, iovcnt);
        if (!part) {
            return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                                  "Not enough memory to read snapshot file "
                                  "'%s'", snap->path);
        }
    }
    vec_init(&v, iov, iovcnt);
    i = extent_search(snap, sector);
    while (ret == 0 && count > 0) {
        const S2ESnapExtent *e = NULL;
        uint64_t n;

        switch (next_run(snap, &i, sector, count, &n, &e)) {
        case S2E_EXTENT_ABSENT:
            ret = absent ? absent(opaque, sector, n, error) : 0;
            break;
        case S2E_EXTENT_ZERO:
            vec_copy(v, NULL, n * S2E_SNAP_SECTOR_SIZE, true);
            break;
        case S2E_EXTENT_DATA:
            ret = read_data(snap, e, sector, n, &v, part, nowait, error);
            break;
        }
        vec_advance(&v, n * S2E_SNAP_SECTOR_SIZE);
        sector += n;
        count -= n;
    }
    if (part != stack) {
        g_free(part);
    }
    return ret;
}

static int refuse_absent(void *opaque, uint64_t sector, uint64_t count,
                         GError **error)
{
    const S2ESnapshot *snap = opaque;

    return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                          "Sector %" G_GUINT64_FORMAT " is not stored in "
                          "snapshot file '%s'", sector, snap->path);
}

int s2e_snapshot_read_sectors(const S2ESnapshot *snap, uint64_t sector,
                              uint64_t count, void *buf, GError **error)
{
    struct iovec iov = {
        .iov_base = buf,
        .iov_len = count <= SIZE_MAX / S2E_SNAP_SECTOR_SIZE
                   ? (size_t)count * S2E_SNAP_SECTOR_SIZE : 0,
    };

    return s2e_snapshot_readv(snap, sector, count, &iov, 1, 0, refuse_absent,
                              (void *)snap, error);
}

/* ---- VM state ----------------------------------------------------------- */

static int alloc_cache(S2ESnapshot *snap, GError **error)
{
    if (!snap->cache) {
        snap->cache = g_try_malloc(snap->h.chunk_size);
        snap->zbuf = g_try_malloc(snap->h.chunk_size);
    }
    if (!snap->zs_ready && inflateInit(&snap->zs) == Z_OK) {
        snap->zs_ready = true;
    }
    if (!snap->cache || !snap->zbuf || !snap->zs_ready) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "Not enough memory to read the VM state of "
                              "snapshot file '%s'", snap->path);
    }
    return 0;
}

static int inflate_chunk(S2ESnapshot *snap, uint64_t i, uint32_t len,
                         GError **error)
{
    const S2ESnapChunk *c = &snap->chunks[i];
    int zret;

    if (inflateReset(&snap->zs) != Z_OK) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "Cannot decompress the VM state of snapshot "
                              "file '%s'", snap->path);
    }
    snap->zs.next_in = snap->zbuf;
    snap->zs.avail_in = c->stored_len;
    snap->zs.next_out = snap->cache;
    snap->zs.avail_out = len;
    zret = inflate(&snap->zs, Z_FINISH);
    if (zret != Z_STREAM_END || snap->zs.avail_out != 0 ||
        snap->zs.avail_in != 0) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_CORRUPT,
                              "Snapshot file '%s' is corrupt: VM state chunk "
                              "%" G_GUINT64_FORMAT " does not decompress to "
                              "%u bytes", snap->path, i, len);
    }
    return 0;
}

/*
 * Read chunk @i's stored bytes into the cache (raw) or zbuf (compressed)
 * and check their checksum; the cache holds no chunk afterwards.
 */
static int read_stored_chunk(S2ESnapshot *snap, uint64_t i, GError **error)
{
    const S2ESnapChunk *c = &snap->chunks[i];
    uint8_t *dst;
    uint32_t crc;
    int ret = alloc_cache(snap, error);

    if (ret < 0) {
        return ret;
    }
    snap->cached = NO_CHUNK;
    dst = (c->flags & S2E_SNAP_CHUNK_RAW) ? snap->cache : snap->zbuf;
    ret = read_at(snap, dst, c->stored_len, c->offset, "VM state", error);
    if (ret < 0) {
        return ret;
    }
    crc = s2e_snap_chunk_csum(snap->h.version, dst, c->stored_len);
    if (crc != c->crc) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_CHECKSUM,
                              "Snapshot file '%s' is damaged: VM state chunk "
                              "%" G_GUINT64_FORMAT " (offset %"
                              G_GUINT64_FORMAT ") has checksum 0x%08x, "
                              "expected 0x%08x", snap->path, i, c->offset,
                              crc, c->crc);
    }
    return 0;
}

static int load_chunk(S2ESnapshot *snap, uint64_t i, GError **error)
{
    int ret;

    if (snap->cached == i) {
        return 0;
    }
    ret = read_stored_chunk(snap, i, error);
    if (ret == 0 && !(snap->chunks[i].flags & S2E_SNAP_CHUNK_RAW)) {
        ret = inflate_chunk(snap, i, s2e_snap_chunk_len(&snap->h, i), error);
    }
    if (ret == 0) {
        snap->cached = i;
    }
    return ret;
}

int s2e_snapshot_read_vmstate(S2ESnapshot *snap, uint64_t pos, void *buf,
                              size_t len, GError **error)
{
    uint64_t size = snap->h.info.vm_state_size;
    uint8_t *p = buf;

    while (len > 0 && pos < size) {
        uint64_t i = pos / snap->h.chunk_size;
        uint32_t off = (uint32_t)(pos % snap->h.chunk_size);
        size_t n = MIN(len, (size_t)(s2e_snap_chunk_len(&snap->h, i) - off));
        int ret = load_chunk(snap, i, error);

        if (ret < 0) {
            return ret;
        }
        memcpy(p, snap->cache + off, n);
        p += n;
        pos += n;
        len -= n;
    }
    if (len > 0) {
        memset(p, 0, len);
    }
    return 0;
}

/* ---- Verification ------------------------------------------------------- */

int s2e_snapshot_verify_vmstate(S2ESnapshot *snap, GError **error)
{
    int ret = 0;

    for (uint64_t i = 0; i < snap->h.chunk_count && ret == 0; i++) {
        ret = read_stored_chunk(snap, i, error);
    }
    return ret;
}

/* Every chunk read and, when compressed, inflated. */
static int verify_chunks_inflate(S2ESnapshot *snap, GError **error)
{
    int ret = 0;

    for (uint64_t i = 0; i < snap->h.chunk_count && ret == 0; i++) {
        snap->cached = NO_CHUNK;
        ret = load_chunk(snap, i, error);
    }
    return ret;
}

/* Version 1: the extent's CRC-32 over all its data. */
static int verify_extent_crc(const S2ESnapshot *snap, uint64_t i,
                             uint8_t *buf, GError **error)
{
    const S2ESnapExtent *e = &snap->extents[i];
    uint64_t left = e->count * S2E_SNAP_SECTOR_SIZE;
    uint64_t off = e->offset;
    uint32_t crc = 0;

    while (left > 0) {
        size_t n = (size_t)MIN(left, (uint64_t)VERIFY_STEP);
        int ret = read_at(snap, buf, n, off, "sector data", error);

        if (ret < 0) {
            return ret;
        }
        crc = s2e_snap_crc32(crc, buf, n);
        off += n;
        left -= n;
    }
    if (crc != e->crc) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_CHECKSUM,
                              "Snapshot file '%s' is damaged: data of "
                              "sectors %" G_GUINT64_FORMAT "+%"
                              G_GUINT64_FORMAT " (offset %" G_GUINT64_FORMAT
                              ") has checksum 0x%08x, expected 0x%08x",
                              snap->path, e->sector, e->count, e->offset, crc,
                              e->crc);
    }
    return 0;
}

/*
 * Version 2: every block of the extent, in steps ending on block
 * boundaries so that no block needs a second read.
 */
static int verify_extent_blocks(const S2ESnapshot *snap, uint64_t i,
                                uint8_t *buf, GError **error)
{
    const S2ESnapExtent *e = &snap->extents[i];
    uint64_t end = e->sector + e->count;
    uint64_t step = VERIFY_STEP / S2E_SNAP_SECTOR_SIZE;

    for (uint64_t s = e->sector; s < end;) {
        uint64_t next = MIN(end, s - s % S2E_SNAP_BLOCK_SECTORS + step);
        int ret = read_at(snap, buf, (next - s) * S2E_SNAP_SECTOR_SIZE,
                          e->offset + (s - e->sector) * S2E_SNAP_SECTOR_SIZE,
                          "sector data", error);

        if (ret == 0) {
            struct iovec iov = { .iov_base = buf, .iov_len = VERIFY_STEP };
            VecPos at;

            vec_init(&at, &iov, 1);
            ret = verify_read(snap, e, s, next - s, &at, true, false,
                              error);
        }
        if (ret < 0) {
            return ret;
        }
        s = next;
    }
    return 0;
}

int s2e_snapshot_verify_all(S2ESnapshot *snap, GError **error)
{
    uint8_t *buf;
    int ret = verify_chunks_inflate(snap, error);

    if (ret < 0 || snap->h.extent_count == 0) {
        return ret;
    }
    buf = g_malloc(VERIFY_STEP);
    for (uint64_t i = 0; i < snap->h.extent_count && ret == 0; i++) {
        if (snap->extents[i].flags & S2E_SNAP_EXTENT_ZERO) {
            continue;           /* nothing stored, nothing to check */
        }
        ret = snap->h.version < S2E_SNAP_VERSION_2
              ? verify_extent_crc(snap, i, buf, error)
              : verify_extent_blocks(snap, i, buf, error);
    }
    g_free(buf);
    return ret;
}
