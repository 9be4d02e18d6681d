/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The snapshot file codec: bytes <-> structs, and every validation rule.
 *
 * This file is the format (docs/snapshot-format.md) in code.  It does no
 * I/O: the reader hands it buffers it has read, the writer gets buffers to
 * write.  That keeps the rules in one place and lets the fuzz target and
 * the unit tests drive them directly.
 *
 * Fields are little-endian and encoded byte by byte with the get/put
 * helpers below; no struct is ever cast over file bytes, so the layout is
 * independent of the host's endianness, alignment and padding.
 *
 * Decoding validates in a fixed order, each step with its own error code,
 * and never trusts a later field before the earlier steps passed:
 *
 *   magic -> version -> incompatible features -> header lengths ->
 *   header checksum -> field ranges -> file size -> table offsets and
 *   lengths -> (reader reads the tables, checks their checksums) ->
 *   chunk entries -> extent entries -> regions pairwise disjoint
 *
 * Extents are of two kinds: data (stored at their offset) and zero (flag
 * S2E_SNAP_EXTENT_ZERO: nothing stored, offset and CRC 0, only in files
 * with the incompatible feature ZERO_EXTENTS).  Both count in
 * dirty_sectors; a zero extent occupies no region of the file.
 *
 * Two versions are read.  Version 1 checks sector data with one CRC-32 per
 * extent (only a full verification can check it).  Version 2 has a table of
 * one checksum per 4 KiB block of sector data (snapshot-checksum.c), which
 * the reader checks when a block is first read: each data extent owns the
 * next s2e_snap_extent_blocks() entries, and together they fill the table
 * exactly.  Its header is 16 bytes longer (the table's offset and count).
 *
 * Every count read from the file is bounded by the file's size before the
 * caller allocates anything from it (an index entry takes at least 24
 * bytes of the file), and every addition of file-supplied numbers is
 * checked against overflow by comparing with a remaining size instead of
 * adding.  Nothing here asserts on file contents.
 */
#include "snapshot-int.h"

#include <string.h>
#include <zlib.h>

/* Header field offsets (version 1). */
enum {
    H_MAGIC = 0,
    H_VERSION = 8,
    H_HEADER_LENGTH = 12,
    H_INCOMPAT = 16,
    H_COMPAT = 24,
    H_CRC = 32,
    H_NAME_LEN = 36,
    H_ID_LEN = 40,
    H_BASE_FLAGS = 44,
    H_BASE_SIZE = 48,
    H_BASE_MTIME_SEC = 56,
    H_BASE_MTIME_NSEC = 64,
    H_DATE_NSEC = 68,
    H_DATE_SEC = 72,
    H_VM_CLOCK = 80,
    H_ICOUNT = 88,
    H_DISK_SECTORS = 96,
    H_FILE_SIZE = 104,
    H_VM_STATE_SIZE = 112,
    H_CHUNK_SIZE = 120,
    H_CHUNK_INDEX_CRC = 124,
    H_CHUNK_COUNT = 128,
    H_CHUNK_INDEX_OFFSET = 136,
    H_EXTENT_COUNT = 144,
    H_EXTENT_INDEX_OFFSET = 152,
    H_DIRTY_SECTORS = 160,
    H_EXTENT_INDEX_CRC = 168,
    H_RESERVED = 172,
    /* Version 2 */
    H_BLOCK_CSUM_OFFSET = 176,
    H_BLOCK_CSUM_COUNT = 184,
};

G_STATIC_ASSERT(H_RESERVED + 4 == S2E_SNAP_HEADER_V1_LEN);
G_STATIC_ASSERT(H_BLOCK_CSUM_COUNT + 8 == S2E_SNAP_HEADER_V2_LEN);
G_STATIC_ASSERT(S2E_SNAP_HEADER_V2_LEN + S2E_SNAPSHOT_NAME_MAX +
                S2E_SNAPSHOT_ID_MAX <= S2E_SNAP_HEADER_AREA);

#define NSEC_PER_SEC 1000000000u

/* ---- Little-endian helpers ---------------------------------------------- */

uint16_t s2e_snap_get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t s2e_snap_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
           ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint64_t s2e_snap_get_le64(const uint8_t *p)
{
    return (uint64_t)s2e_snap_get_le32(p) |
           ((uint64_t)s2e_snap_get_le32(p + 4) << 32);
}

void s2e_snap_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void s2e_snap_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void s2e_snap_put_le64(uint8_t *p, uint64_t v)
{
    s2e_snap_put_le32(p, (uint32_t)v);
    s2e_snap_put_le32(p + 4, (uint32_t)(v >> 32));
}

uint32_t s2e_snap_crc32(uint32_t crc, const void *buf, size_t len)
{
    return (uint32_t)crc32_z(crc, buf, len);
}

/* ---- Small rules shared by writer and reader ---------------------------- */

bool s2e_snap_chunk_size_valid(uint64_t n)
{
    return n >= S2E_SNAP_CHUNK_MIN && n <= S2E_SNAP_CHUNK_MAX &&
           (n & (n - 1)) == 0;
}

uint32_t s2e_snap_chunk_len(const S2ESnapHeader *h, uint64_t i)
{
    uint64_t start = i * h->chunk_size;
    uint64_t left = h->info.vm_state_size - start;

    return left < h->chunk_size ? (uint32_t)left : h->chunk_size;
}

static uint64_t chunk_count_for(uint64_t vm_state_size, uint32_t chunk_size)
{
    return vm_state_size / chunk_size + (vm_state_size % chunk_size != 0);
}

size_t s2e_snap_header_total_len(const S2ESnapHeader *h)
{
    return (size_t)h->header_length + strlen(h->info.name) +
           strlen(h->info.id);
}

int s2e_snap_check_info(const S2ESnapshotInfo *info, GError **error)
{
    if (strnlen(info->name, sizeof(info->name)) >= sizeof(info->name)) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Snapshot name is longer than %d bytes",
                              S2E_SNAPSHOT_NAME_MAX);
    }
    if (strnlen(info->id, sizeof(info->id)) >= sizeof(info->id)) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Snapshot id is longer than %d bytes",
                              S2E_SNAPSHOT_ID_MAX);
    }
    if (info->date_nsec >= NSEC_PER_SEC) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Snapshot date has %u nanoseconds "
                              "(at most 999999999)", info->date_nsec);
    }
    return 0;
}

/* ---- Header encoding ---------------------------------------------------- */

static uint32_t header_crc(const uint8_t *page, size_t total)
{
    static const uint8_t zero[4];
    uint32_t crc = s2e_snap_crc32(0, page, H_CRC);

    crc = s2e_snap_crc32(crc, zero, sizeof(zero));
    return s2e_snap_crc32(crc, page + H_CRC + 4, total - (H_CRC + 4));
}

void s2e_snap_header_encode(S2ESnapHeader *h, uint8_t *page)
{
    size_t name_len = strlen(h->info.name);
    size_t id_len = strlen(h->info.id);
    uint32_t base_flags = h->base.has_mtime ? S2E_SNAP_BASE_HAS_MTIME : 0;

    memset(page, 0, S2E_SNAP_HEADER_AREA);
    memcpy(page + H_MAGIC, S2E_SNAP_MAGIC, S2E_SNAP_MAGIC_LEN);
    s2e_snap_put_le32(page + H_VERSION, h->version);
    s2e_snap_put_le32(page + H_HEADER_LENGTH, h->header_length);
    s2e_snap_put_le64(page + H_INCOMPAT, h->incompatible_features);
    s2e_snap_put_le64(page + H_COMPAT, h->compatible_features);
    s2e_snap_put_le32(page + H_NAME_LEN, (uint32_t)name_len);
    s2e_snap_put_le32(page + H_ID_LEN, (uint32_t)id_len);
    s2e_snap_put_le32(page + H_BASE_FLAGS, base_flags);
    s2e_snap_put_le64(page + H_BASE_SIZE, h->base.size);
    s2e_snap_put_le64(page + H_BASE_MTIME_SEC,
                      h->base.has_mtime ? (uint64_t)h->base.mtime_sec : 0);
    s2e_snap_put_le32(page + H_BASE_MTIME_NSEC,
                      h->base.has_mtime ? h->base.mtime_nsec : 0);
    s2e_snap_put_le32(page + H_DATE_NSEC, h->info.date_nsec);
    s2e_snap_put_le64(page + H_DATE_SEC, (uint64_t)h->info.date_sec);
    s2e_snap_put_le64(page + H_VM_CLOCK, (uint64_t)h->info.vm_clock_nsec);
    s2e_snap_put_le64(page + H_ICOUNT, h->info.icount);
    s2e_snap_put_le64(page + H_DISK_SECTORS, h->info.disk_sectors);
    s2e_snap_put_le64(page + H_FILE_SIZE, h->file_size);
    s2e_snap_put_le64(page + H_VM_STATE_SIZE, h->info.vm_state_size);
    s2e_snap_put_le32(page + H_CHUNK_SIZE, h->chunk_size);
    s2e_snap_put_le32(page + H_CHUNK_INDEX_CRC, h->chunk_index_crc);
    s2e_snap_put_le64(page + H_CHUNK_COUNT, h->chunk_count);
    s2e_snap_put_le64(page + H_CHUNK_INDEX_OFFSET, h->chunk_index_offset);
    s2e_snap_put_le64(page + H_EXTENT_COUNT, h->extent_count);
    s2e_snap_put_le64(page + H_EXTENT_INDEX_OFFSET, h->extent_index_offset);
    s2e_snap_put_le64(page + H_DIRTY_SECTORS, h->info.dirty_sectors);
    s2e_snap_put_le32(page + H_EXTENT_INDEX_CRC, h->extent_index_crc);
    if (h->version >= S2E_SNAP_VERSION_2) {
        s2e_snap_put_le64(page + H_BLOCK_CSUM_OFFSET, h->block_csum_offset);
        s2e_snap_put_le64(page + H_BLOCK_CSUM_COUNT, h->block_csum_count);
    }
    memcpy(page + h->header_length, h->info.name, name_len);
    memcpy(page + h->header_length + name_len, h->info.id, id_len);

    h->header_crc = header_crc(page, h->header_length + name_len + id_len);
    s2e_snap_put_le32(page + H_CRC, h->header_crc);
}

void s2e_snap_chunk_encode(const S2ESnapChunk *c, uint8_t *p)
{
    s2e_snap_put_le64(p, c->offset);
    s2e_snap_put_le32(p + 8, c->stored_len);
    s2e_snap_put_le32(p + 12, c->crc);
    s2e_snap_put_le32(p + 16, c->flags);
    s2e_snap_put_le32(p + 20, 0);
}

void s2e_snap_extent_encode(const S2ESnapExtent *e, uint8_t *p)
{
    s2e_snap_put_le64(p, e->sector);
    s2e_snap_put_le64(p + 8, e->count);
    s2e_snap_put_le64(p + 16, e->offset);
    s2e_snap_put_le32(p + 24, e->crc);
    s2e_snap_put_le32(p + 28, e->flags);
}

/* ---- Header decoding ---------------------------------------------------- */

static int corrupt(GError **error, const char *path, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static int corrupt(GError **error, const char *path, const char *fmt, ...)
{
    va_list ap;
    char *what;
    int ret;

    va_start(ap, fmt);
    what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    ret = s2e_snap_error(error, S2E_SNAPSHOT_ERROR_CORRUPT,
                         "Snapshot file '%s' is corrupt: %s", path, what);
    g_free(what);
    return ret;
}

static int check_identification(const uint8_t *page, const char *path,
                                GError **error)
{
    uint32_t version;
    uint64_t incompat;

    if (memcmp(page + H_MAGIC, S2E_SNAP_MAGIC, S2E_SNAP_MAGIC_LEN) != 0) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_BAD_MAGIC,
                              "'%s' is not an s2e snapshot file "
                              "(no snapshot magic at its start)", path);
    }
    version = s2e_snap_get_le32(page + H_VERSION);
    if (version != S2E_SNAP_VERSION_1 && version != S2E_SNAP_VERSION_2) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_BAD_VERSION,
                              "Snapshot file '%s' has format version %u; "
                              "this s2e-block reads versions %u and %u only",
                              path, version, S2E_SNAP_VERSION_1,
                              S2E_SNAP_VERSION_2);
    }
    incompat = s2e_snap_get_le64(page + H_INCOMPAT);
    if (incompat & ~S2E_SNAP_INCOMPAT_KNOWN) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_FEATURES,
                              "Snapshot file '%s' needs features this "
                              "s2e-block does not know (incompatible "
                              "feature bits 0x%" G_GINT64_MODIFIER "x); "
                              "open it with a newer s2e-block",
                              path, incompat & ~S2E_SNAP_INCOMPAT_KNOWN);
    }
    return 0;
}

/* The fixed part of the header a version has at least. */
static uint32_t header_min_len(uint32_t version)
{
    return version >= S2E_SNAP_VERSION_2 ? S2E_SNAP_HEADER_V2_LEN
                                         : S2E_SNAP_HEADER_V1_LEN;
}

/* Lengths of the header, needed before its checksum can be computed. */
static int check_header_lengths(const uint8_t *page, const char *path,
                                size_t *total, GError **error)
{
    uint64_t hlen = s2e_snap_get_le32(page + H_HEADER_LENGTH);
    uint64_t name_len = s2e_snap_get_le32(page + H_NAME_LEN);
    uint64_t id_len = s2e_snap_get_le32(page + H_ID_LEN);
    uint32_t min = header_min_len(s2e_snap_get_le32(page + H_VERSION));

    if (hlen < min || hlen > S2E_SNAP_HEADER_AREA) {
        return corrupt(error, path, "header length %" G_GUINT64_FORMAT
                       " is outside %u..%u", hlen, min, S2E_SNAP_HEADER_AREA);
    }
    if (name_len > S2E_SNAPSHOT_NAME_MAX || id_len > S2E_SNAPSHOT_ID_MAX) {
        return corrupt(error, path, "snapshot name (%" G_GUINT64_FORMAT
                       " bytes) or id (%" G_GUINT64_FORMAT " bytes) is too "
                       "long", name_len, id_len);
    }
    if (hlen + name_len + id_len > S2E_SNAP_HEADER_AREA) {
        return corrupt(error, path, "header, name and id (%" G_GUINT64_FORMAT
                       " bytes) do not fit in the %u-byte header page",
                       hlen + name_len + id_len, S2E_SNAP_HEADER_AREA);
    }
    *total = (size_t)(hlen + name_len + id_len);
    return 0;
}

static int decode_string(const uint8_t *p, size_t len, char *out,
                         const char *what, const char *path, GError **error)
{
    if (memchr(p, 0, len)) {
        return corrupt(error, path, "the snapshot %s contains a NUL byte",
                       what);
    }
    memcpy(out, p, len);
    out[len] = '\0';
    return 0;
}

static int decode_fields(const uint8_t *page, const char *path,
                         S2ESnapHeader *h, GError **error)
{
    uint32_t base_flags = s2e_snap_get_le32(page + H_BASE_FLAGS);
    size_t name_len = s2e_snap_get_le32(page + H_NAME_LEN);
    size_t id_len = s2e_snap_get_le32(page + H_ID_LEN);
    int ret;

    h->version = s2e_snap_get_le32(page + H_VERSION);
    h->header_length = s2e_snap_get_le32(page + H_HEADER_LENGTH);
    h->incompatible_features = s2e_snap_get_le64(page + H_INCOMPAT);
    h->compatible_features = s2e_snap_get_le64(page + H_COMPAT);
    h->header_crc = s2e_snap_get_le32(page + H_CRC);

    if (base_flags & ~S2E_SNAP_BASE_HAS_MTIME) {
        return corrupt(error, path, "unknown base image flags 0x%x",
                       base_flags);
    }
    h->base.size = s2e_snap_get_le64(page + H_BASE_SIZE);
    h->base.has_mtime = base_flags & S2E_SNAP_BASE_HAS_MTIME;
    h->base.mtime_sec = (int64_t)s2e_snap_get_le64(page + H_BASE_MTIME_SEC);
    h->base.mtime_nsec = s2e_snap_get_le32(page + H_BASE_MTIME_NSEC);
    h->info.date_sec = (int64_t)s2e_snap_get_le64(page + H_DATE_SEC);
    h->info.date_nsec = s2e_snap_get_le32(page + H_DATE_NSEC);
    if (h->base.mtime_nsec >= NSEC_PER_SEC ||
        h->info.date_nsec >= NSEC_PER_SEC) {
        return corrupt(error, path, "a timestamp has more than 999999999 "
                       "nanoseconds");
    }
    h->info.vm_clock_nsec = (int64_t)s2e_snap_get_le64(page + H_VM_CLOCK);
    h->info.icount = s2e_snap_get_le64(page + H_ICOUNT);
    h->info.disk_sectors = s2e_snap_get_le64(page + H_DISK_SECTORS);
    h->info.vm_state_size = s2e_snap_get_le64(page + H_VM_STATE_SIZE);
    h->info.dirty_sectors = s2e_snap_get_le64(page + H_DIRTY_SECTORS);
    h->file_size = s2e_snap_get_le64(page + H_FILE_SIZE);
    h->chunk_size = s2e_snap_get_le32(page + H_CHUNK_SIZE);
    h->chunk_index_crc = s2e_snap_get_le32(page + H_CHUNK_INDEX_CRC);
    h->chunk_count = s2e_snap_get_le64(page + H_CHUNK_COUNT);
    h->chunk_index_offset = s2e_snap_get_le64(page + H_CHUNK_INDEX_OFFSET);
    h->extent_count = s2e_snap_get_le64(page + H_EXTENT_COUNT);
    h->extent_index_offset = s2e_snap_get_le64(page + H_EXTENT_INDEX_OFFSET);
    h->extent_index_crc = s2e_snap_get_le32(page + H_EXTENT_INDEX_CRC);
    if (h->version >= S2E_SNAP_VERSION_2) {
        h->block_csum_offset = s2e_snap_get_le64(page + H_BLOCK_CSUM_OFFSET);
        h->block_csum_count = s2e_snap_get_le64(page + H_BLOCK_CSUM_COUNT);
    }

    ret = decode_string(page + h->header_length, name_len, h->info.name,
                        "name", path, error);
    if (ret < 0) {
        return ret;
    }
    return decode_string(page + h->header_length + name_len, id_len,
                         h->info.id, "id", path, error);
}

/* A table of @count entries of @entry_size bytes at @offset. */
static int check_table(uint64_t offset, uint64_t count, uint32_t entry_size,
                       uint64_t file_size, const char *what,
                       const char *path, GError **error)
{
    if (count > file_size / entry_size) {
        return corrupt(error, path, "the %s claims %" G_GUINT64_FORMAT
                       " entries, more than the file can hold", what, count);
    }
    if (count > SIZE_MAX / 2 / sizeof(S2ESnapExtent)) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "Snapshot file '%s': the %s is too large for "
                              "this machine", path, what);
    }
    if (offset < S2E_SNAP_HEADER_AREA || offset > file_size ||
        count * entry_size > file_size - offset) {
        return corrupt(error, path, "the %s (offset %" G_GUINT64_FORMAT
                       ", %" G_GUINT64_FORMAT " bytes) lies outside the "
                       "file's data (%u..%" G_GUINT64_FORMAT ")", what,
                       offset, count * entry_size, S2E_SNAP_HEADER_AREA,
                       file_size);
    }
    return 0;
}

static int check_sizes(const S2ESnapHeader *h, uint64_t file_size,
                       const char *path, GError **error)
{
    if (file_size < h->file_size) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_TRUNCATED,
                              "Snapshot file '%s' is truncated: it has "
                              "%" G_GUINT64_FORMAT " bytes, its header says "
                              "%" G_GUINT64_FORMAT, path, file_size,
                              h->file_size);
    }
    if (file_size > h->file_size) {
        return corrupt(error, path, "it has %" G_GUINT64_FORMAT " bytes "
                       "after the end its header gives (%" G_GUINT64_FORMAT
                       " bytes)", file_size - h->file_size, h->file_size);
    }
    if (h->info.disk_sectors > S2E_SNAP_MAX_SECTORS) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "Snapshot file '%s' describes a disk of "
                              "%" G_GUINT64_FORMAT " sectors, more than "
                              "the %" G_GUINT64_FORMAT " supported", path,
                              h->info.disk_sectors, S2E_SNAP_MAX_SECTORS);
    }
    if (h->info.dirty_sectors > h->info.disk_sectors) {
        return corrupt(error, path, "%" G_GUINT64_FORMAT " dirty sectors "
                       "on a disk of %" G_GUINT64_FORMAT, h->info.dirty_sectors,
                       h->info.disk_sectors);
    }
    if (h->extent_count > h->info.dirty_sectors) {
        return corrupt(error, path, "%" G_GUINT64_FORMAT " extents hold "
                       "only %" G_GUINT64_FORMAT " sectors", h->extent_count,
                       h->info.dirty_sectors);
    }
    return 0;
}

static int check_chunking(const S2ESnapHeader *h, const char *path,
                          GError **error)
{
    if (h->chunk_size > S2E_SNAP_CHUNK_MAX) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "Snapshot file '%s' uses VM state chunks of "
                              "%u bytes, more than the %u supported", path,
                              h->chunk_size, S2E_SNAP_CHUNK_MAX);
    }
    if (!s2e_snap_chunk_size_valid(h->chunk_size)) {
        return corrupt(error, path, "VM state chunk size %u is not a power "
                       "of two of at least %u", h->chunk_size,
                       S2E_SNAP_CHUNK_MIN);
    }
    if (h->chunk_count != chunk_count_for(h->info.vm_state_size,
                                          h->chunk_size)) {
        return corrupt(error, path, "%" G_GUINT64_FORMAT " VM state chunks "
                       "of %u bytes cannot hold %" G_GUINT64_FORMAT
                       " bytes", h->chunk_count, h->chunk_size,
                       h->info.vm_state_size);
    }
    return 0;
}

int s2e_snap_header_decode(const uint8_t *page, uint64_t file_size,
                           const char *path, S2ESnapHeader *h,
                           GError **error)
{
    size_t total = 0;
    uint32_t crc;
    int ret;

    memset(h, 0, sizeof(*h));
    ret = check_identification(page, path, error);
    if (ret < 0) {
        return ret;
    }
    ret = check_header_lengths(page, path, &total, error);
    if (ret < 0) {
        return ret;
    }
    crc = header_crc(page, total);
    if (crc != s2e_snap_get_le32(page + H_CRC)) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_CHECKSUM,
                              "Snapshot file '%s' has a damaged header "
                              "(checksum 0x%08x, expected 0x%08x)", path, crc,
                              s2e_snap_get_le32(page + H_CRC));
    }
    ret = decode_fields(page, path, h, error);
    if (ret < 0) {
        return ret;
    }
    ret = check_sizes(h, file_size, path, error);
    if (ret < 0) {
        return ret;
    }
    ret = check_chunking(h, path, error);
    if (ret < 0) {
        return ret;
    }
    ret = check_table(h->chunk_index_offset, h->chunk_count,
                      S2E_SNAP_CHUNK_ENTRY_SIZE, file_size,
                      "VM state chunk index", path, error);
    if (ret < 0) {
        return ret;
    }
    ret = check_table(h->extent_index_offset, h->extent_count,
                      S2E_SNAP_EXTENT_ENTRY_SIZE, file_size,
                      "dirty sector index", path, error);
    if (ret < 0 || h->version < S2E_SNAP_VERSION_2) {
        return ret;
    }
    return check_table(h->block_csum_offset, h->block_csum_count,
                       S2E_SNAP_BLOCK_CSUM_SIZE, file_size,
                       "block checksum table", path, error);
}

/* ---- Index decoding ----------------------------------------------------- */

static int check_chunk(const S2ESnapChunk *c, uint64_t i, uint32_t len,
                       uint64_t file_size, const char *path, GError **error)
{
    if (c->flags & ~S2E_SNAP_CHUNK_FLAGS_KNOWN) {
        return corrupt(error, path, "VM state chunk %" G_GUINT64_FORMAT
                       " has unknown flags 0x%x", i, c->flags);
    }
    if (c->stored_len == 0 || c->stored_len > len ||
        ((c->flags & S2E_SNAP_CHUNK_RAW) && c->stored_len != len)) {
        return corrupt(error, path, "VM state chunk %" G_GUINT64_FORMAT
                       " stores %u bytes for %u", i, c->stored_len, len);
    }
    if (c->offset < S2E_SNAP_HEADER_AREA || c->offset > file_size ||
        c->stored_len > file_size - c->offset) {
        return corrupt(error, path, "VM state chunk %" G_GUINT64_FORMAT
                       " (offset %" G_GUINT64_FORMAT ", %u bytes) lies "
                       "outside the file's data", i, c->offset,
                       c->stored_len);
    }
    return 0;
}

int s2e_snap_chunks_decode(const uint8_t *buf, const S2ESnapHeader *h,
                           const char *path, S2ESnapChunk *chunks,
                           GError **error)
{
    for (uint64_t i = 0; i < h->chunk_count; i++) {
        const uint8_t *p = buf + i * S2E_SNAP_CHUNK_ENTRY_SIZE;
        S2ESnapChunk *c = &chunks[i];
        int ret;

        c->offset = s2e_snap_get_le64(p);
        c->stored_len = s2e_snap_get_le32(p + 8);
        c->crc = s2e_snap_get_le32(p + 12);
        c->flags = s2e_snap_get_le32(p + 16);
        ret = check_chunk(c, i, s2e_snap_chunk_len(h, i), h->file_size, path,
                          error);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* The fields of a zero extent: allowed by the header, nothing stored. */
static int check_zero_extent(const S2ESnapExtent *e, uint64_t i,
                             const S2ESnapHeader *h, const char *path,
                             GError **error)
{
    if (!(h->incompatible_features & S2E_SNAP_INCOMPAT_ZERO_EXTENTS)) {
        return corrupt(error, path, "dirty extent %" G_GUINT64_FORMAT
                       " is a zero extent but the header lacks the zero "
                       "extent feature bit", i);
    }
    if (e->offset != 0 || e->crc != 0) {
        return corrupt(error, path, "dirty extent %" G_GUINT64_FORMAT
                       " (sectors %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                       ") is a zero extent with a data offset or checksum",
                       i, e->sector, e->count);
    }
    return 0;
}

static int check_extent(const S2ESnapExtent *e, uint64_t i, uint64_t prev_end,
                        const S2ESnapHeader *h, const char *path,
                        GError **error)
{
    uint64_t disk = h->info.disk_sectors;

    if (e->flags & ~S2E_SNAP_EXTENT_FLAGS_KNOWN) {
        return corrupt(error, path, "dirty extent %" G_GUINT64_FORMAT
                       " has unknown flags 0x%x", i, e->flags);
    }
    if (e->count == 0 || e->sector >= disk || e->count > disk - e->sector) {
        return corrupt(error, path, "dirty extent %" G_GUINT64_FORMAT
                       " (sectors %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                       ") is empty or outside the disk of %" G_GUINT64_FORMAT
                       " sectors", i, e->sector, e->count, disk);
    }
    if (e->sector < prev_end) {
        return corrupt(error, path, "dirty extent %" G_GUINT64_FORMAT
                       " (sector %" G_GUINT64_FORMAT ") is out of order or "
                       "overlaps the one before", i, e->sector);
    }
    if (e->flags & S2E_SNAP_EXTENT_ZERO) {
        return check_zero_extent(e, i, h, path, error);
    }
    if (e->offset % S2E_SNAP_SECTOR_SIZE != 0 ||
        e->offset < S2E_SNAP_HEADER_AREA || e->offset > h->file_size ||
        e->count > (h->file_size - e->offset) / S2E_SNAP_SECTOR_SIZE) {
        return corrupt(error, path, "data of dirty extent %" G_GUINT64_FORMAT
                       " (offset %" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                       " sectors) is misaligned or outside the file's data",
                       i, e->offset, e->count);
    }
    return 0;
}

/*
 * Version 2: give each data extent its first block checksum; together they
 * must use the whole table.
 */
static int number_block_csums(S2ESnapHeader *h, S2ESnapExtent *extents,
                              const char *path, GError **error)
{
    uint64_t next = 0;

    if (h->version < S2E_SNAP_VERSION_2) {
        return 0;
    }
    for (uint64_t i = 0; i < h->extent_count; i++) {
        S2ESnapExtent *e = &extents[i];

        if (!(e->flags & S2E_SNAP_EXTENT_ZERO)) {
            e->first_csum = next;
            next += s2e_snap_extent_blocks(e->sector, e->count);
        }
    }
    if (next != h->block_csum_count) {
        return corrupt(error, path, "the block checksum table has %"
                       G_GUINT64_FORMAT " entries, the data extents have %"
                       G_GUINT64_FORMAT " blocks", h->block_csum_count,
                       next);
    }
    return 0;
}

int s2e_snap_extents_decode(const uint8_t *buf, S2ESnapHeader *h,
                            const char *path, S2ESnapExtent *extents,
                            GError **error)
{
    uint64_t prev_end = 0;
    uint64_t total = 0;
    uint64_t zero = 0;

    for (uint64_t i = 0; i < h->extent_count; i++) {
        const uint8_t *p = buf + i * S2E_SNAP_EXTENT_ENTRY_SIZE;
        S2ESnapExtent *e = &extents[i];
        int ret;

        e->sector = s2e_snap_get_le64(p);
        e->count = s2e_snap_get_le64(p + 8);
        e->offset = s2e_snap_get_le64(p + 16);
        e->crc = s2e_snap_get_le32(p + 24);
        e->flags = s2e_snap_get_le32(p + 28);
        e->first_csum = 0;
        ret = check_extent(e, i, prev_end, h, path, error);
        if (ret < 0) {
            return ret;
        }
        prev_end = e->sector + e->count;
        total += e->count;   /* <= disk_sectors: extents are disjoint */
        if (e->flags & S2E_SNAP_EXTENT_ZERO) {
            zero += e->count;
        }
    }
    if (total != h->info.dirty_sectors) {
        return corrupt(error, path, "the dirty sector index holds %"
                       G_GUINT64_FORMAT " sectors, the header says %"
                       G_GUINT64_FORMAT, total, h->info.dirty_sectors);
    }
    h->info.zero_sectors = zero;
    return number_block_csums(h, extents, path, error);
}

/* ---- Regions ------------------------------------------------------------ */

typedef enum RegionKind {
    REGION_HEADER,
    REGION_CHUNK_INDEX,
    REGION_EXTENT_INDEX,
    REGION_BLOCK_CSUMS,
    REGION_CHUNK,
    REGION_EXTENT,
} RegionKind;

typedef struct Region {
    uint64_t offset;
    uint64_t len;
    RegionKind kind;
    uint64_t index;
} Region;

static int region_cmp(const void *a, const void *b)
{
    const Region *x = a;
    const Region *y = b;

    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static char *region_describe(const Region *r)
{
    static const char *const names[] = {
        [REGION_HEADER] = "the header page",
        [REGION_CHUNK_INDEX] = "the VM state chunk index",
        [REGION_EXTENT_INDEX] = "the dirty sector index",
        [REGION_BLOCK_CSUMS] = "the block checksum table",
        [REGION_CHUNK] = "VM state chunk",
        [REGION_EXTENT] = "data of dirty extent",
    };

    if (r->kind == REGION_CHUNK || r->kind == REGION_EXTENT) {
        return g_strdup_printf("%s %" G_GUINT64_FORMAT " (offset %"
                               G_GUINT64_FORMAT ")", names[r->kind],
                               r->index, r->offset);
    }
    return g_strdup_printf("%s (offset %" G_GUINT64_FORMAT ")",
                           names[r->kind], r->offset);
}

static void region_add(Region *r, size_t *n, RegionKind kind, uint64_t index,
                       uint64_t offset, uint64_t len)
{
    if (len > 0) {
        r[*n] = (Region){ .offset = offset, .len = len, .kind = kind,
                          .index = index };
        (*n)++;
    }
}

static int regions_overlap(const Region *a, const Region *b, const char *path,
                           GError **error)
{
    char *da = region_describe(a);
    char *db = region_describe(b);
    int ret = corrupt(error, path, "%s overlaps %s", db, da);

    g_free(da);
    g_free(db);
    return ret;
}

/*
 * The header checks bounded chunk_count and extent_count by the file size,
 * so this allocation is bounded too.
 */
int s2e_snap_check_regions(const S2ESnapHeader *h, const S2ESnapChunk *chunks,
                           const S2ESnapExtent *extents, const char *path,
                           GError **error)
{
    size_t max = (size_t)h->chunk_count + (size_t)h->extent_count + 4;
    Region *r = g_try_new(Region, max);
    size_t n = 0;
    int ret = 0;

    if (!r) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_LIMIT,
                              "Snapshot file '%s': not enough memory to "
                              "check its layout", path);
    }
    region_add(r, &n, REGION_HEADER, 0, 0, S2E_SNAP_HEADER_AREA);
    region_add(r, &n, REGION_CHUNK_INDEX, 0, h->chunk_index_offset,
               h->chunk_count * S2E_SNAP_CHUNK_ENTRY_SIZE);
    region_add(r, &n, REGION_EXTENT_INDEX, 0, h->extent_index_offset,
               h->extent_count * S2E_SNAP_EXTENT_ENTRY_SIZE);
    region_add(r, &n, REGION_BLOCK_CSUMS, 0, h->block_csum_offset,
               h->block_csum_count * S2E_SNAP_BLOCK_CSUM_SIZE);
    for (uint64_t i = 0; i < h->chunk_count; i++) {
        region_add(r, &n, REGION_CHUNK, i, chunks[i].offset,
                   chunks[i].stored_len);
    }
    for (uint64_t i = 0; i < h->extent_count; i++) {
        if (!(extents[i].flags & S2E_SNAP_EXTENT_ZERO)) {
            region_add(r, &n, REGION_EXTENT, i, extents[i].offset,
                       extents[i].count * S2E_SNAP_SECTOR_SIZE);
        }
    }
    qsort(r, n, sizeof(*r), region_cmp);
    for (size_t i = 1; i < n; i++) {
        /* Each region lies inside the file: no overflow in offset + len. */
        if (r[i].offset < r[i - 1].offset + r[i - 1].len) {
            ret = regions_overlap(&r[i - 1], &r[i], path, error);
            break;
        }
    }
    g_free(r);
    return ret;
}
