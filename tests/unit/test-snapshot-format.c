/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Validation tests of the snapshot format: one test per rule, each made by
 * changing one field of a good file (resealing the checksums where the
 * rule lies behind them), plus truncation at every region boundary and at
 * random offsets, and damage found only when the data is read.
 *
 * The reference file: 3 full VM state chunks of 4 KiB and a partial one,
 * three dirty extents, in format version 1 (which must stay readable);
 * field offsets come from docs/snapshot-format.md.  A second reference
 * adds zero extents (incompatible feature bit 0).  A third, in version 2,
 * has a checksum per 4 KiB block of sector data: suite "v2".
 */
#include "snapshot-test-util.h"

#include <errno.h>
/* An independent XXH3, the baseline build, to check the format's one. */
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct Ref {
    char *dir;
    char *path;       /* the good file */
    char *bad;        /* where corrupted copies go */
    uint8_t *bytes;
    size_t len;
    S2EBaseIdentity id;
} Ref;

static Ref ref;

/* The zero extent reference: data, zero, data, zero, data, zero (to the
 * disk end); written beside ref, same base identity. */
#define ZREF_DISK (UINT64_C(1) << 20)
static const TuRun zref_runs[] = {
    { 0, 8, false }, { 8, 100, true }, { 200, 3, false },
    { 1000, 3000, true }, { 4000, 16, false }, { 5000, ZREF_DISK - 5000, true },
};
#define ZREF_ZERO (100 + 3000 + ZREF_DISK - 5000)
#define ZREF_DIRTY (ZREF_ZERO + 8 + 3 + 16)

/* A reference file other than ref: written once, beside ref, with the same
 * base identity. */
typedef struct RefFile {
    const char *file;
    TuSpec spec;
    uint8_t *bytes;
    size_t len;
} RefFile;

static RefFile zref = {
    "disk.zero",
    { .vm_size = 4096 + 100, .chunk_size = 4096, .zlib_level = -1,
      .disk_sectors = ZREF_DISK, .runs = zref_runs,
      .nruns = G_N_ELEMENTS(zref_runs), .seed = 4321, .name = "zeroes",
      .version = 1 },
};

static const TuRun ref_runs[] = { { 0, 8 }, { 100, 3 }, { 4000, 16 } };

/* Runs with whole blocks, partial blocks at either end, and a block filled
 * by two writer calls (200+4, then 204+6: one extent, the writer's
 * checksum stream).  Blocks: 1 + 1 + 2 + 2 + 3 = 9. */
static const TuRun ref2_runs[] = {
    { 0, 8 }, { 100, 3 }, { 200, 4 }, { 204, 6 }, { 4000, 16 }, { 5003, 19 },
};
#define REF2_EXTENTS 5
#define REF2_BLOCKS 9
#define REF2_SEED 777

/* The version 2 reference (suite "v2"). */
static RefFile ref2 = {
    "disk.two",
    { .vm_size = 2 * 4096 + 10, .chunk_size = 4096, .zlib_level = 1,
      .disk_sectors = 8192, .runs = ref2_runs,
      .nruns = G_N_ELEMENTS(ref2_runs), .seed = REF2_SEED, .name = "two" },
};

static void ref_cleanup(void)
{
    if (ref.dir) {
        tu_rmtree(ref.dir);
    }
    g_free(ref.dir);
    g_free(ref.path);
    g_free(ref.bad);
    g_free(ref.bytes);
    memset(&ref, 0, sizeof(ref));
    g_clear_pointer(&zref.bytes, g_free);
    g_clear_pointer(&ref2.bytes, g_free);
}

static void ref_build(void)
{
    /* Level 1, so the reference holds compressed chunks to damage. */
    TuSpec spec = { .vm_size = 3 * 4096 + 1000, .chunk_size = 4096,
                    .zlib_level = 1, .disk_sectors = 8192, .runs = ref_runs,
                    .nruns = G_N_ELEMENTS(ref_runs), .seed = 1234,
                    .name = "ready", .version = 1 };

    if (ref.bytes) {
        return;
    }
    ref.dir = tu_tmpdir();
    atexit(ref_cleanup);
    ref.path = g_build_filename(ref.dir, "disk.good", NULL);
    ref.bad = g_build_filename(ref.dir, "disk.bad", NULL);
    ref.id = (S2EBaseIdentity){ .size = 4194304, .has_mtime = true,
                                .mtime_sec = 1600000000, .mtime_nsec = 7 };
    CU_ASSERT_FATAL(tu_write_snapshot(ref.path, &spec, &ref.id));
    ref.bytes = tu_read_file(ref.path, &ref.len);
}

static uint8_t *ref_copy(size_t *len)
{
    ref_build();
    *len = ref.len;
    return memcpy(g_malloc(ref.len), ref.bytes, ref.len);
}

static void ref_file_build(RefFile *r)
{
    char *path;

    ref_build();
    if (r->bytes) {
        return;
    }
    path = g_build_filename(ref.dir, r->file, NULL);
    CU_ASSERT_FATAL(tu_write_snapshot(path, &r->spec, &ref.id));
    r->bytes = tu_read_file(path, &r->len);
    g_free(path);
}

static uint8_t *ref_file_copy(RefFile *r, size_t *len)
{
    ref_file_build(r);
    *len = r->len;
    return memcpy(g_malloc(r->len), r->bytes, r->len);
}

static uint8_t *zref_copy(size_t *len)
{
    return ref_file_copy(&zref, len);
}

static uint64_t chunk_index(const uint8_t *b)
{
    return s2e_snap_get_le64(b + HDR_CHUNK_INDEX_OFFSET);
}

static uint64_t extent_index(const uint8_t *b)
{
    return s2e_snap_get_le64(b + HDR_EXTENT_INDEX_OFFSET);
}

/* Write @b as the bad file and expect @code (message names the file and
 * contains @needle when not NULL). */
static void expect(uint8_t *b, size_t len, int code, const char *needle)
{
    GError *err = NULL;
    S2ESnapshot *snap;

    tu_write_file(ref.bad, b, len);
    g_free(b);
    snap = s2e_snapshot_open(ref.bad, "base", &ref.id, &err);
    CU_ASSERT_PTR_NULL(snap);
    s2e_snapshot_close(snap);
    tu_check_error(err, code, ref.bad, needle, NULL);
}

static void expect_ok(uint8_t *b, size_t len)
{
    GError *err = NULL;
    S2ESnapshot *snap;

    tu_write_file(ref.bad, b, len);
    g_free(b);
    snap = s2e_snapshot_open(ref.bad, "base", &ref.id, &err);
    if (!snap) {
        fprintf(stderr, "\n%s\n", err->message);
        g_error_free(err);
    }
    CU_ASSERT_PTR_NOT_NULL(snap);
    if (snap) {
        CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    }
    s2e_snapshot_close(snap);
}

/* Set a header field and reseal the header checksum. */
static void expect_field32(size_t off, uint32_t v, int code,
                           const char *needle)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    s2e_snap_put_le32(b + off, v);
    tu_reseal_header(b);
    expect(b, len, code, needle);
}

static void expect_field64(size_t off, uint64_t v, int code,
                           const char *needle)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    s2e_snap_put_le64(b + off, v);
    tu_reseal_header(b);
    expect(b, len, code, needle);
}

/* ---- The good file ------------------------------------------------------ */

static void test_reference_is_valid(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    expect_ok(b, len);
    CU_ASSERT_EQUAL(ref.len, s2e_snap_get_le64(ref.bytes + HDR_FILE_SIZE));
    CU_ASSERT(memcmp(ref.bytes, "\x89S2ESNAP", 8) == 0);
    CU_ASSERT_EQUAL(s2e_snap_get_le32(ref.bytes + HDR_HEADER_LENGTH), 176);
    CU_ASSERT_EQUAL(s2e_snap_get_le64(ref.bytes + HDR_CHUNK_COUNT), 4);
    CU_ASSERT_EQUAL(s2e_snap_get_le64(ref.bytes + HDR_EXTENT_COUNT), 3);
    CU_ASSERT_EQUAL(s2e_snap_get_le64(ref.bytes + HDR_DIRTY_SECTORS), 27);
    CU_ASSERT(memcmp(ref.bytes + 176, "ready7", 6) == 0);
    /* The indexes close the file. */
    CU_ASSERT_EQUAL(extent_index(ref.bytes) + 3 * 32, ref.len);
    CU_ASSERT_EQUAL(chunk_index(ref.bytes) + 4 * 24, extent_index(ref.bytes));
}

/* ---- Steps 1-5: size, magic, version, features, checksum ---------------- */

static void test_too_small(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    expect(b, 0, S2E_SNAPSHOT_ERROR_TRUNCATED, "truncated");
    b = ref_copy(&len);
    expect(b, 4095, S2E_SNAPSHOT_ERROR_TRUNCATED, "4095");
}

static void test_bad_magic(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    b[1] = 's';
    expect(b, len, S2E_SNAPSHOT_ERROR_BAD_MAGIC, "not an s2e snapshot");
    b = g_malloc0(8192);
    memcpy(b, "QFI\xfb", 4);                 /* a qcow2 file */
    expect(b, 8192, S2E_SNAPSHOT_ERROR_BAD_MAGIC, NULL);
}

static void test_bad_version(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    s2e_snap_put_le32(b + HDR_VERSION, 3);   /* no reseal: checked before */
    expect(b, len, S2E_SNAPSHOT_ERROR_BAD_VERSION, "version 3");
    expect_field32(HDR_VERSION, 0, S2E_SNAPSHOT_ERROR_BAD_VERSION, "0");
    /* A version 1 header is too short for version 2. */
    expect_field32(HDR_VERSION, 2, S2E_SNAPSHOT_ERROR_CORRUPT, "outside 192");
}

static void test_unknown_features(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    s2e_snap_put_le64(b + HDR_INCOMPAT, UINT64_C(1) << 5);
    expect(b, len, S2E_SNAPSHOT_ERROR_FEATURES, "0x20");
    /* Unknown compatible features are ignored. */
    b = ref_copy(&len);
    s2e_snap_put_le64(b + HDR_COMPAT, UINT64_C(1) << 63);
    tu_reseal_header(b);
    expect_ok(b, len);
}

static void test_header_checksum(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    b[HDR_DATE_SEC] ^= 1;
    expect(b, len, S2E_SNAPSHOT_ERROR_CHECKSUM, "header");
    b = ref_copy(&len);
    b[176 + 2] ^= 0x20;                       /* the name */
    expect(b, len, S2E_SNAPSHOT_ERROR_CHECKSUM, NULL);
    b = ref_copy(&len);
    b[HDR_CRC + 3] ^= 0x80;
    expect(b, len, S2E_SNAPSHOT_ERROR_CHECKSUM, NULL);
}

/* ---- Header fields ------------------------------------------------------ */

static void test_header_length(void)
{
    size_t len;
    uint8_t *b;

    expect_field32(HDR_HEADER_LENGTH, 100, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "header length");
    expect_field32(HDR_HEADER_LENGTH, 5000, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "header length");
    expect_field32(HDR_HEADER_LENGTH, 4093, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "header page");
    /* A longer fixed part (a later compatible revision) is skipped. */
    b = ref_copy(&len);
    memmove(b + 184, b + 176, 6);
    memset(b + 176, 0xee, 8);
    s2e_snap_put_le32(b + HDR_HEADER_LENGTH, 184);
    tu_reseal_header(b);
    expect_ok(b, len);
}

static void test_name_fields(void)
{
    size_t len;
    uint8_t *b;

    expect_field32(HDR_NAME_LEN, 300, S2E_SNAPSHOT_ERROR_CORRUPT, "name");
    expect_field32(HDR_ID_LEN, 128, S2E_SNAPSHOT_ERROR_CORRUPT, "id");
    b = ref_copy(&len);
    b[176 + 1] = '\0';
    tu_reseal_header(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_CORRUPT, "NUL");
}

static void test_timestamps_and_flags(void)
{
    expect_field32(HDR_BASE_MTIME_NSEC, 1000000000, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "nanoseconds");
    expect_field32(HDR_DATE_NSEC, UINT32_MAX, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "nanoseconds");
    expect_field32(HDR_BASE_FLAGS, 3, S2E_SNAPSHOT_ERROR_CORRUPT, "flags");
}

static void test_file_size_field(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    s2e_snap_put_le64(b + HDR_FILE_SIZE, len + 1);
    tu_reseal_header(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_TRUNCATED, "truncated");
    /* Bytes appended after the end. */
    b = ref_copy(&len);
    b = g_realloc(b, len + 10);
    memset(b + len, 0, 10);
    expect(b, len + 10, S2E_SNAPSHOT_ERROR_CORRUPT, "10 bytes after");
}

static void test_disk_and_dirty(void)
{
    expect_field64(HDR_DISK_SECTORS, (UINT64_C(1) << 54) + 1,
                   S2E_SNAPSHOT_ERROR_LIMIT, "sectors");
    expect_field64(HDR_DISK_SECTORS, 26, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "dirty sectors");
    expect_field64(HDR_DIRTY_SECTORS, 2, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "extents hold");
    /* Index and header disagree on the dirty count. */
    expect_field64(HDR_DIRTY_SECTORS, 28, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "holds 27 sectors");
    /* An extent past a shrunken disk. */
    expect_field64(HDR_DISK_SECTORS, 4015, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "outside the disk");
}

static void test_chunking(void)
{
    expect_field32(HDR_CHUNK_SIZE, 32 * 1024 * 1024, S2E_SNAPSHOT_ERROR_LIMIT,
                   "chunks");
    expect_field32(HDR_CHUNK_SIZE, 5000, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "power of two");
    expect_field32(HDR_CHUNK_SIZE, 2048, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "power of two");
    expect_field32(HDR_CHUNK_SIZE, 0, S2E_SNAPSHOT_ERROR_CORRUPT, NULL);
    expect_field64(HDR_CHUNK_COUNT, 5, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "cannot hold");
    expect_field64(HDR_VM_STATE_SIZE, 4 * 4096 + 1,
                   S2E_SNAPSHOT_ERROR_CORRUPT, "cannot hold");
    expect_field64(HDR_VM_STATE_SIZE, UINT64_MAX,
                   S2E_SNAPSHOT_ERROR_CORRUPT, NULL);
}

static void test_table_bounds(void)
{
    ref_build();
    expect_field64(HDR_CHUNK_INDEX_OFFSET, 100, S2E_SNAPSHOT_ERROR_CORRUPT,
                   "chunk index");
    expect_field64(HDR_CHUNK_INDEX_OFFSET, ref.len - 10,
                   S2E_SNAPSHOT_ERROR_CORRUPT, "chunk index");
    expect_field64(HDR_CHUNK_INDEX_OFFSET, UINT64_MAX - 8,
                   S2E_SNAPSHOT_ERROR_CORRUPT, "chunk index");
    expect_field64(HDR_EXTENT_INDEX_OFFSET, ref.len,
                   S2E_SNAPSHOT_ERROR_CORRUPT, "dirty sector index");
    expect_field64(HDR_EXTENT_COUNT, UINT64_C(1) << 60,
                   S2E_SNAPSHOT_ERROR_CORRUPT, NULL);
    {
        /* Huge counts are bounded by the file before any allocation. */
        size_t len;
        uint8_t *b = ref_copy(&len);
        s2e_snap_put_le64(b + HDR_EXTENT_COUNT, ref.len / 32 + 1);
        s2e_snap_put_le64(b + HDR_DIRTY_SECTORS, UINT64_C(1) << 40);
        s2e_snap_put_le64(b + HDR_DISK_SECTORS, UINT64_C(1) << 41);
        tu_reseal_header(b);
        expect(b, len, S2E_SNAPSHOT_ERROR_CORRUPT, "more than the file");
    }
}

/* ---- Indexes ------------------------------------------------------------ */

static void test_index_checksums(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    b[chunk_index(b) + 5] ^= 1;
    expect(b, len, S2E_SNAPSHOT_ERROR_CHECKSUM, "chunk index");
    b = ref_copy(&len);
    b[extent_index(b) + 40] ^= 1;
    expect(b, len, S2E_SNAPSHOT_ERROR_CHECKSUM, "dirty sector index");
}

/* Change chunk entry @i's field at @off, reseal everything, expect. */
static void expect_chunk_field(int i, size_t off, uint64_t v, bool wide,
                               int code, const char *needle)
{
    size_t len;
    uint8_t *b = ref_copy(&len);
    uint8_t *e = b + chunk_index(b) + i * 24 + off;

    if (wide) {
        s2e_snap_put_le64(e, v);
    } else {
        s2e_snap_put_le32(e, (uint32_t)v);
    }
    tu_reseal_all(b);
    expect(b, len, code, needle);
}

static void test_chunk_entries(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);
    uint64_t c0 = s2e_snap_get_le64(b + chunk_index(b));
    uint32_t l0 = s2e_snap_get_le32(b + chunk_index(b) + 8);

    g_free(b);
    expect_chunk_field(0, 16, 4, false, S2E_SNAPSHOT_ERROR_CORRUPT,
                       "unknown flags");
    expect_chunk_field(1, 8, 0, false, S2E_SNAPSHOT_ERROR_CORRUPT, "stores");
    expect_chunk_field(1, 8, 4097, false, S2E_SNAPSHOT_ERROR_CORRUPT,
                       "stores");
    expect_chunk_field(3, 8, 1001, false, S2E_SNAPSHOT_ERROR_CORRUPT,
                       "stores");
    if (l0 < 4096) {
        /* A compressed chunk claimed to be raw. */
        expect_chunk_field(0, 16, 1, false, S2E_SNAPSHOT_ERROR_CORRUPT,
                           "stores");
    }
    expect_chunk_field(0, 0, 100, true, S2E_SNAPSHOT_ERROR_CORRUPT,
                       "outside");
    expect_chunk_field(2, 0, ref.len - 1, true, S2E_SNAPSHOT_ERROR_CORRUPT,
                       "outside");
    expect_chunk_field(2, 0, UINT64_MAX, true, S2E_SNAPSHOT_ERROR_CORRUPT,
                       "outside");
    /* Two chunks in the same place. */
    expect_chunk_field(1, 0, c0, true, S2E_SNAPSHOT_ERROR_CORRUPT,
                       "overlaps");
    /* A chunk over sector data. */
    expect_chunk_field(1, 0, s2e_snap_get_le64(ref.bytes +
                                               extent_index(ref.bytes) +
                                               2 * 32 + 16),
                       true, S2E_SNAPSHOT_ERROR_CORRUPT, "overlaps");
}

static void expect_extent_field(int i, size_t off, uint64_t v, int code,
                                const char *needle)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    s2e_snap_put_le64(b + extent_index(b) + i * 32 + off, v);
    tu_reseal_all(b);
    expect(b, len, code, needle);
}

static void test_extent_entries(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);
    uint8_t *e = b + extent_index(b);
    uint64_t off0 = s2e_snap_get_le64(e + 16);
    uint8_t tmp[32];

    expect_extent_field(1, 8, 0, S2E_SNAPSHOT_ERROR_CORRUPT, "empty");
    expect_extent_field(2, 0, 8192, S2E_SNAPSHOT_ERROR_CORRUPT,
                        "outside the disk");
    expect_extent_field(2, 8, UINT64_MAX - 3998, S2E_SNAPSHOT_ERROR_CORRUPT,
                        "outside the disk");
    expect_extent_field(1, 0, 4, S2E_SNAPSHOT_ERROR_CORRUPT, "overlaps the "
                        "one before");
    expect_extent_field(1, 16, off0 + 4096 * 8 + 1,
                        S2E_SNAPSHOT_ERROR_CORRUPT, "misaligned");
    expect_extent_field(2, 16, ref.len - 512, S2E_SNAPSHOT_ERROR_CORRUPT,
                        "outside the file");
    expect_extent_field(0, 16, 512, S2E_SNAPSHOT_ERROR_CORRUPT, "outside");
    /* Data of two extents in one place. */
    expect_extent_field(1, 16, off0, S2E_SNAPSHOT_ERROR_CORRUPT, "overlaps");

    /* Out of order: swap the first two entries. */
    memcpy(tmp, e, 32);
    memcpy(e, e + 32, 32);
    memcpy(e + 32, tmp, 32);
    tu_reseal_all(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_CORRUPT, "out of order");
}

/* ---- Zero extents ------------------------------------------------------- */

static S2ESnapshot *open_bad(uint8_t *b, size_t len);

static uint8_t *zref_entry(uint8_t *b, int i)
{
    return b + extent_index(b) + i * 32;
}

/* Change field @off of zero-reference extent @i, reseal, expect @code (0:
 * the file must open and verify). */
static void expect_zref_entry(int i, size_t off, uint64_t v, int code,
                              const char *needle)
{
    size_t len;
    uint8_t *b = zref_copy(&len);
    uint8_t *e = zref_entry(b, i) + off;

    if (off == EXT_CRC || off == EXT_FLAGS) {
        s2e_snap_put_le32(e, (uint32_t)v);
    } else {
        s2e_snap_put_le64(e, v);
    }
    tu_reseal_all(b);
    if (code) {
        expect(b, len, code, needle);
    } else {
        expect_ok(b, len);
    }
}

static void test_zero_reference_is_valid(void)
{
    size_t len;
    uint8_t *b = zref_copy(&len);
    S2ESnapshot *snap;
    const S2ESnapshotInfo *info;
    S2ESnapshotLayout l;

    CU_ASSERT_EQUAL(s2e_snap_get_le64(b + HDR_INCOMPAT),
                    S2E_SNAP_INCOMPAT_ZERO_EXTENTS);
    CU_ASSERT_EQUAL(s2e_snap_get_le64(b + HDR_EXTENT_COUNT), 6);
    CU_ASSERT_EQUAL(s2e_snap_get_le64(b + HDR_DIRTY_SECTORS), ZREF_DIRTY);
    CU_ASSERT_EQUAL(s2e_snap_get_le32(b + HDR_HEADER_LENGTH), 176);
    for (int i = 0; i < 6; i++) {
        const uint8_t *e = zref_entry(b, i);
        bool zero = i % 2 == 1;

        CU_ASSERT_EQUAL(s2e_snap_get_le64(e + EXT_SECTOR),
                        zref_runs[i].sector);
        CU_ASSERT_EQUAL(s2e_snap_get_le64(e + EXT_COUNT), zref_runs[i].count);
        CU_ASSERT_EQUAL(s2e_snap_get_le32(e + EXT_FLAGS), zero ? 1 : 0);
        if (zero) {
            CU_ASSERT_EQUAL(s2e_snap_get_le64(e + EXT_OFFSET), 0);
            CU_ASSERT_EQUAL(s2e_snap_get_le32(e + EXT_CRC), 0);
        } else {
            CU_ASSERT(s2e_snap_get_le64(e + EXT_OFFSET) >= 4096);
        }
    }
    /* Only data is stored: 27 sectors (with page alignment) and VM state. */
    CU_ASSERT(zref.len < 4096 + 4096 + 27 * 512 + 3 * 4096 + 6 * 32 + 48);
    snap = open_bad(b, len);
    info = s2e_snapshot_get_info(snap);
    s2e_snapshot_get_layout(snap, &l);
    CU_ASSERT_EQUAL(info->dirty_sectors, ZREF_DIRTY);
    CU_ASSERT_EQUAL(info->zero_sectors, ZREF_ZERO);
    CU_ASSERT_EQUAL(l.extent_count, 6);
    CU_ASSERT_EQUAL(l.zero_extent_count, 3);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    s2e_snapshot_close(snap);
}

/* The feature bit: required by zero extents, harmless without them; an
 * unknown bit beside it is still refused. */
static void test_zero_feature_bit(void)
{
    size_t len;
    uint8_t *b = zref_copy(&len);

    s2e_snap_put_le64(b + HDR_INCOMPAT, 0);
    tu_reseal_header(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_CORRUPT, "feature bit");

    b = zref_copy(&len);
    s2e_snap_put_le64(b + HDR_INCOMPAT, 3);
    tu_reseal_header(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_FEATURES, "0x2");

    /* What a reader that predates zero extents sees: an unknown bit. */
    b = zref_copy(&len);
    s2e_snap_put_le64(b + HDR_INCOMPAT, UINT64_C(1) << 1);
    tu_reseal_header(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_FEATURES, "incompatible");

    b = ref_copy(&len);
    s2e_snap_put_le64(b + HDR_INCOMPAT, S2E_SNAP_INCOMPAT_ZERO_EXTENTS);
    tu_reseal_header(b);
    expect_ok(b, len);
}

static void test_zero_entries(void)
{
    size_t len;
    uint8_t *b = zref_copy(&len);
    uint64_t data_off = s2e_snap_get_le64(zref_entry(b, 2) + EXT_OFFSET);

    g_free(b);
    /* A zero extent stores nothing: no offset, no checksum. */
    expect_zref_entry(1, EXT_OFFSET, data_off, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "offset or checksum");
    expect_zref_entry(1, EXT_OFFSET, 8192, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "dirty extent 1 (");
    expect_zref_entry(3, EXT_CRC, 1, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "offset or checksum");
    /* Unknown flags, on either kind. */
    expect_zref_entry(0, EXT_FLAGS, 2, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "unknown flags 0x2");
    expect_zref_entry(1, EXT_FLAGS, 0x80000001u, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "unknown flags");
    b = ref_copy(&len);
    s2e_snap_put_le32(b + extent_index(b) + EXT_FLAGS, 4);
    tu_reseal_all(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_CORRUPT, "unknown flags 0x4");
    /* A data extent flagged zero still has its offset and checksum. */
    expect_zref_entry(2, EXT_FLAGS, 1, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "offset or checksum");
    /* A zero extent unflagged has no data in the file. */
    expect_zref_entry(1, EXT_FLAGS, 0, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "outside the file");
    /* Order, overlap and disk bounds apply to zero extents too. */
    expect_zref_entry(1, EXT_SECTOR, 7, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "overlaps the one before");
    expect_zref_entry(3, EXT_COUNT, 3001, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "overlaps the one before");
    expect_zref_entry(5, EXT_COUNT, ZREF_DISK - 5000 + 1,
                      S2E_SNAPSHOT_ERROR_CORRUPT, "outside the disk");
    expect_zref_entry(5, EXT_COUNT, UINT64_MAX, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "outside the disk");
    expect_zref_entry(3, EXT_COUNT, 0, S2E_SNAPSHOT_ERROR_CORRUPT, "empty");
    /* Shrinking a zero run is fine for the entry, not for the total. */
    expect_zref_entry(3, EXT_COUNT, 2999, S2E_SNAPSHOT_ERROR_CORRUPT,
                      "holds");
}

static void test_zero_header_counts(void)
{
    size_t len;
    uint8_t *b = zref_copy(&len);

    s2e_snap_put_le64(b + HDR_DIRTY_SECTORS, ZREF_DIRTY - ZREF_ZERO);
    tu_reseal_header(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_CORRUPT, "holds");
    b = zref_copy(&len);
    s2e_snap_put_le64(b + HDR_DISK_SECTORS, ZREF_DIRTY - 1);
    tu_reseal_header(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_CORRUPT, "dirty sectors on a disk");
    /* A zero run as large as the largest disk is accepted. */
    b = zref_copy(&len);
    s2e_snap_put_le64(b + HDR_DISK_SECTORS, UINT64_C(1) << 54);
    s2e_snap_put_le64(b + HDR_DIRTY_SECTORS,
                      ZREF_DIRTY + (UINT64_C(1) << 54) - ZREF_DISK);
    s2e_snap_put_le64(zref_entry(b, 5) + EXT_COUNT,
                      (UINT64_C(1) << 54) - 5000);
    tu_reseal_all(b);
    expect_ok(b, len);
}

static void test_zero_truncation(void)
{
    size_t len;
    uint8_t *b = zref_copy(&len);
    uint64_t ei = extent_index(b);
    S2ETestRng rng;

    g_free(b);
    for (int i = 0; i < 6; i += 2) {
        uint64_t off = s2e_snap_get_le64(zref.bytes + ei + i * 32 +
                                         EXT_OFFSET);
        uint64_t count = zref_runs[i].count;
        uint64_t at[] = { off, off + count * 512 - 1 };
        for (size_t k = 0; k < G_N_ELEMENTS(at); k++) {
            b = zref_copy(&len);
            expect(b, at[k], S2E_SNAPSHOT_ERROR_TRUNCATED, NULL);
        }
    }
    for (uint64_t at = ei; at < zref.len; at += 13) {
        b = zref_copy(&len);
        expect(b, at, S2E_SNAPSHOT_ERROR_TRUNCATED, NULL);
    }
    s2e_test_rng_init(&rng, s2e_test_seed() ^ 0x2e70);
    for (uint64_t i = 0; i < s2e_test_scale(100); i++) {
        b = zref_copy(&len);
        expect(b, s2e_test_rng_below(&rng, zref.len),
               S2E_SNAPSHOT_ERROR_TRUNCATED, NULL);
    }
}

/* Damage and truncation after open: data reads fail, zero runs still read
 * as zeroes (they need no I/O), and verify checks data extents only. */
static void test_zero_damage_and_truncation_while_open(void)
{
    size_t len;
    uint8_t *b = zref_copy(&len);
    uint64_t off = s2e_snap_get_le64(zref_entry(b, 2) + EXT_OFFSET);
    S2ESnapshot *snap;
    GError *err = NULL;
    uint8_t buf[16 * 512];

    b[off + 5] ^= 1;
    snap = open_bad(b, len);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, &err), -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CHECKSUM, "sectors 200+3", NULL);
    s2e_snapshot_close(snap);

    b = zref_copy(&len);
    snap = open_bad(b, len);
    CU_ASSERT_EQUAL(truncate(ref.bad, 4096), 0);
    memset(buf, 0xee, sizeof(buf));
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, 1500, 16, buf, NULL), 0);
    for (size_t i = 0; i < sizeof(buf); i++) {
        CU_ASSERT_EQUAL_FATAL(buf[i], 0);
    }
    err = NULL;
    CU_ASSERT(s2e_snapshot_read_sectors(snap, 0, 16, buf, &err) < 0);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_TRUNCATED, ref.bad, NULL);
    s2e_snapshot_close(snap);
}

/* ---- Truncation --------------------------------------------------------- */

static void expect_truncated_at(uint64_t at)
{
    size_t len;
    uint8_t *b = ref_copy(&len);

    if (at >= len) {
        g_free(b);
        return;
    }
    expect(b, at, S2E_SNAPSHOT_ERROR_TRUNCATED, NULL);
}

static void test_truncation_boundaries(void)
{
    const uint8_t *b;
    uint64_t ci, ei;
    uint64_t fixed[] = { 0, 1, 7, 8, 175, 176, 4095, 4096, 4097 };

    ref_build();
    b = ref.bytes;
    ci = chunk_index(b);
    ei = extent_index(b);
    for (size_t i = 0; i < G_N_ELEMENTS(fixed); i++) {
        expect_truncated_at(fixed[i]);
    }
    for (int i = 0; i < 4; i++) {
        uint64_t off = s2e_snap_get_le64(b + ci + i * 24);
        uint32_t slen = s2e_snap_get_le32(b + ci + i * 24 + 8);
        expect_truncated_at(off);
        expect_truncated_at(off + 1);
        expect_truncated_at(off + slen - 1);
        expect_truncated_at(off + slen);
    }
    for (int i = 0; i < 3; i++) {
        uint64_t off = s2e_snap_get_le64(b + ei + i * 32 + 16);
        uint64_t count = s2e_snap_get_le64(b + ei + i * 32 + 8);
        expect_truncated_at(off);
        expect_truncated_at(off + count * 512 - 1);
        expect_truncated_at(off + count * 512);
    }
    expect_truncated_at(ci);
    expect_truncated_at(ci + 24);
    expect_truncated_at(ei);
    expect_truncated_at(ei + 31);
    expect_truncated_at(ref.len - 1);
}

static void test_truncation_random(void)
{
    S2ETestRng rng;
    uint64_t n = s2e_test_scale(200);

    ref_build();
    s2e_test_rng_init(&rng, s2e_test_seed());
    for (uint64_t i = 0; i < n; i++) {
        expect_truncated_at(s2e_test_rng_below(&rng, ref.len));
    }
}

/* Truncated after it was opened: reads fail cleanly. */
static void test_truncated_while_open(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);
    S2ESnapshot *snap;
    GError *err = NULL;
    uint8_t buf[16 * 512];

    tu_write_file(ref.bad, b, len);
    g_free(b);
    snap = s2e_snapshot_open(ref.bad, "base", &ref.id, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(snap);
    CU_ASSERT_EQUAL(truncate(ref.bad, 4096), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 0, buf, 100, &err),
                    -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_TRUNCATED, ref.bad, NULL);
    err = NULL;
    /* An I/O error for the guest, not "invalid argument". */
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, 4000, 16, buf, &err),
                    -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_TRUNCATED, ref.bad, NULL);
    err = NULL;
    CU_ASSERT(s2e_snapshot_verify_all(snap, &err) < 0);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_TRUNCATED, ref.bad, NULL);
    s2e_snapshot_close(snap);
}

/* ---- Damage found on reading -------------------------------------------- */

static S2ESnapshot *open_bad(uint8_t *b, size_t len)
{
    S2ESnapshot *snap;

    tu_write_file(ref.bad, b, len);
    g_free(b);
    snap = s2e_snapshot_open(ref.bad, "base", &ref.id, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(snap);
    return snap;
}

static void test_chunk_data_damaged(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);
    uint64_t c1 = s2e_snap_get_le64(b + chunk_index(b) + 24);
    S2ESnapshot *snap;
    GError *err = NULL;
    uint8_t buf[4096];

    b[c1 + 3] ^= 0x40;
    snap = open_bad(b, len);
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 0, buf, 4096, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 5000, buf, 10, &err),
                    -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CHECKSUM, ref.bad, "chunk 1",
                   NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, &err), -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CHECKSUM, "chunk 1", NULL);
    /* The other chunks still read. */
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 8192, buf, 4096, NULL), 0);
    s2e_snapshot_close(snap);
}

/* Damaged compressed data with a matching checksum: inflate refuses. */
static void test_chunk_data_undecompressable(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);
    uint8_t *e;
    S2ESnapshot *snap;
    GError *err = NULL;
    uint8_t buf[64];
    int victim = -1;

    for (int i = 0; i < 4 && victim < 0; i++) {
        e = b + chunk_index(b) + i * 24;
        if (!(s2e_snap_get_le32(e + 16) & 1)) {
            victim = i;
        }
    }
    CU_ASSERT_FATAL(victim >= 0);
    e = b + chunk_index(b) + victim * 24;
    memset(b + s2e_snap_get_le64(e), 0xff, 8);
    s2e_snap_put_le32(e + 12, s2e_snap_crc32(0, b + s2e_snap_get_le64(e),
                                             s2e_snap_get_le32(e + 8)));
    tu_reseal_all(b);
    snap = open_bad(b, len);
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, victim * 4096, buf, 64,
                                              &err), -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CORRUPT, "decompress", NULL);
    s2e_snapshot_close(snap);
}

static void test_sector_data_damaged(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);
    uint64_t off = s2e_snap_get_le64(b + extent_index(b) + 32 + 16);
    S2ESnapshot *snap;
    GError *err = NULL;
    uint8_t buf[3 * 512];

    b[off + 700] ^= 1;
    snap = open_bad(b, len);
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, 100, 3, buf, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, &err), -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CHECKSUM, "sectors 100+3", NULL);
    s2e_snapshot_close(snap);
}

static void test_not_a_file(void)
{
    GError *err = NULL;
    char *missing;

    ref_build();
    CU_ASSERT_PTR_NULL(s2e_snapshot_open(ref.dir, NULL, NULL, &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_BAD_MAGIC, ref.dir, NULL);
    missing = g_build_filename(ref.dir, "missing", NULL);
    tu_expect_open_error(missing, S2E_SNAPSHOT_ERROR_NOT_FOUND);
    g_free(missing);
    err = NULL;
    CU_ASSERT_PTR_NULL(s2e_snapshot_open("", NULL, NULL, &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, NULL);
    CU_ASSERT_PTR_NULL(s2e_snapshot_open(NULL, NULL, NULL, NULL));
}

/* The base check is the last step: a corrupt file on a changed base
 * reports the corruption. */
static void test_order_base_last(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);
    S2EBaseIdentity other = ref.id;
    GError *err = NULL;

    other.size++;
    b[extent_index(b)] ^= 1;
    tu_write_file(ref.bad, b, len);
    g_free(b);
    CU_ASSERT_PTR_NULL(s2e_snapshot_open(ref.bad, "base", &other, &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CHECKSUM, NULL);
    b = ref_copy(&len);
    tu_write_file(ref.bad, b, len);
    g_free(b);
    err = NULL;
    CU_ASSERT_PTR_NULL(s2e_snapshot_open(ref.bad, "base", &other, &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_BASE_CHANGED, "base", NULL);
}


/* ---- Version 2: block checksums ------------------------------------------ */


static uint8_t *ref2_copy(size_t *len)
{
    return ref_file_copy(&ref2, len);
}

static uint64_t csum_table(const uint8_t *b)
{
    return s2e_snap_get_le64(b + HDR_BLOCK_CSUM_OFFSET);
}

/* File offset of sector @sector of reference-2 extent @i. */
static uint64_t ref2_data(const uint8_t *b, int i, uint64_t sector)
{
    const uint8_t *e = b + extent_index(b) + i * 32;

    return s2e_snap_get_le64(e + EXT_OFFSET) +
           (sector - s2e_snap_get_le64(e + EXT_SECTOR)) * 512;
}

/* Read sectors from @snap and compare with the pattern the writer got. */
static void check_sectors(S2ESnapshot *snap, uint64_t sector, uint64_t count)
{
    uint8_t *got = g_malloc(count * 512);
    uint8_t *want = g_malloc(count * 512);

    tu_sectors_fill(want, sector, count, REF2_SEED);
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, sector, count, got,
                                              NULL), 0);
    CU_ASSERT(memcmp(got, want, count * 512) == 0);
    g_free(got);
    g_free(want);
}

/* Expect a read of @count sectors at @sector to fail: the block checksum
 * naming @block_sectors ("S+N"). */
static void expect_read_damaged(S2ESnapshot *snap, uint64_t sector,
                                uint64_t count, const char *block_sectors)
{
    uint8_t *buf = g_malloc(count * 512);
    GError *err = NULL;

    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, sector, count, buf, &err),
                    -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CHECKSUM, ref.bad, block_sectors,
                   "damaged", NULL);
    g_free(buf);
}

/* The same read through s2e_snapshot_readv() into a vector whose
 * elements split every 4 KiB block (odd sizes), so blocks are checked
 * gathered from several elements. */
static int readv_split(S2ESnapshot *snap, uint64_t sector, uint64_t count,
                       uint8_t *buf, GError **err)
{
    struct iovec iov[64];
    size_t total = count * 512, off = 0;
    int n = 0;

    while (off < total && n < 63) {
        size_t len = MIN(total - off, (size_t)(700 + 1300 * (n % 3)));
        iov[n].iov_base = buf + off;
        iov[n++].iov_len = len;
        off += len;
    }
    iov[n].iov_base = buf + off;
    iov[n++].iov_len = total - off;
    return s2e_snapshot_readv(snap, sector, count, iov, n, 0, NULL, NULL,
                              err);
}

static void test_v2_block_damaged_split_vector(void)
{
    size_t len;
    uint8_t *b = ref2_copy(&len);
    uint8_t got[19 * 512], want[19 * 512];
    S2ESnapshot *snap;
    GError *err = NULL;

    b[ref2_data(b, 4, 5010) + 77] ^= 0x10;      /* block 5008..5015 */
    snap = open_bad(b, len);
    CU_ASSERT_EQUAL(readv_split(snap, 5003, 19, got, &err), -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CHECKSUM, ref.bad,
                   "sectors 5008+8", "damaged", NULL);
    /* The blocks before and after it check out, gathered. */
    CU_ASSERT_EQUAL(readv_split(snap, 5003, 5, got, NULL), 0);
    tu_sectors_fill(want, 5003, 5, REF2_SEED);
    CU_ASSERT(memcmp(got, want, 5 * 512) == 0);
    CU_ASSERT_EQUAL(readv_split(snap, 5016, 6, got, NULL), 0);
    tu_sectors_fill(want, 5016, 6, REF2_SEED);
    CU_ASSERT(memcmp(got, want, 6 * 512) == 0);
    s2e_snapshot_close(snap);
}

static void test_v2_reference_is_valid(void)
{
    size_t len;
    uint8_t *b = ref2_copy(&len);
    uint64_t table = csum_table(b);
    uint64_t k = 0;
    S2ESnapshot *snap;
    S2ESnapshotLayout l;

    CU_ASSERT_EQUAL(s2e_snap_get_le32(b + HDR_VERSION), 2);
    CU_ASSERT_EQUAL(s2e_snap_get_le32(b + HDR_HEADER_LENGTH), 192);
    CU_ASSERT(memcmp(b + 192, "two7", 4) == 0);
    CU_ASSERT_EQUAL(s2e_snap_get_le64(b + HDR_EXTENT_COUNT), REF2_EXTENTS);
    CU_ASSERT_EQUAL(s2e_snap_get_le64(b + HDR_BLOCK_CSUM_COUNT), REF2_BLOCKS);
    /* The table closes the file, after the extent index. */
    CU_ASSERT_EQUAL(table, extent_index(b) + REF2_EXTENTS * 32);
    CU_ASSERT_EQUAL(table + REF2_BLOCKS * 4, len);
    /* Entry by entry: the checksum of the extent's part of each 4 KiB
     * stretch of the disk, in disk order; data extents carry no CRC. */
    for (int i = 0; i < REF2_EXTENTS; i++) {
        const uint8_t *e = b + extent_index(b) + i * 32;
        uint64_t first = s2e_snap_get_le64(e + EXT_SECTOR);
        uint64_t end = first + s2e_snap_get_le64(e + EXT_COUNT);

        CU_ASSERT_EQUAL(s2e_snap_get_le32(e + EXT_CRC), 0);
        for (uint64_t lo = first; lo < end; k++) {
            uint64_t hi = MIN(end, (lo / 8 + 1) * 8);

            CU_ASSERT_EQUAL(s2e_snap_get_le32(b + table + k * 4),
                            s2e_snap_data_csum(b + ref2_data(b, i, lo),
                                               (hi - lo) * 512));
            lo = hi;
        }
    }
    CU_ASSERT_EQUAL(k, REF2_BLOCKS);
    snap = open_bad(b, len);
    s2e_snapshot_get_layout(snap, &l);
    CU_ASSERT(l.block_checksums);
    CU_ASSERT_EQUAL(l.version, 2);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    for (size_t i = 0; i < G_N_ELEMENTS(ref2_runs); i++) {
        check_sectors(snap, ref2_runs[i].sector, ref2_runs[i].count);
    }
    check_sectors(snap, 5005, 13);      /* partial blocks at both ends */
    s2e_snapshot_close(snap);
}

/* The one-shot checksum (AVX2 kernels where the CPU has them) and the
 * writer's streaming one (baseline code) agree, at every length a block or
 * chunk can have, fed in pieces of any size. */
static void test_v2_checksum_paths_agree(void)
{
    S2ETestRng rng;
    uint8_t *buf = g_malloc(65536);
    S2ESnapCsumStream *st = s2e_snap_csum_stream_new();

    s2e_test_rng_init(&rng, s2e_test_seed() ^ 0xc5);
    for (size_t i = 0; i < 65536; i++) {
        buf[i] = (uint8_t)s2e_test_rng_next(&rng);
    }
    for (int k = 0; k < 400; k++) {
        size_t len = k < 8 ? (size_t)(k + 1) * 512
                           : 1 + s2e_test_rng_below(&rng, 65536);
        size_t fed = 0;

        s2e_snap_csum_stream_reset(st);
        while (fed < len) {
            size_t piece = 1 + s2e_test_rng_below(&rng, 5000);

            piece = MIN(piece, len - fed);
            s2e_snap_csum_stream_update(st, buf + fed, piece);
            fed += piece;
        }
        CU_ASSERT_EQUAL_FATAL(s2e_snap_data_csum(buf, len),
                              s2e_snap_csum_stream_digest(st));
    }
    /* The low 32 bits of XXH3-64: the format's algorithm. */
    for (size_t len = 512; len <= 65536; len *= 2) {
        CU_ASSERT_EQUAL(s2e_snap_data_csum(buf, len),
                        (uint32_t)XXH3_64bits(buf, len));
    }
    s2e_snap_csum_stream_free(st);
    g_free(buf);
}

/* Version 1 files still open, and say their data is not verified. */
static void test_v1_is_unverified(void)
{
    size_t len;
    uint8_t *b = ref_copy(&len);
    S2ESnapshot *snap = open_bad(b, len);
    S2ESnapshotLayout l;

    s2e_snapshot_get_layout(snap, &l);
    CU_ASSERT_EQUAL(l.version, 1);
    CU_ASSERT_FALSE(l.block_checksums);
    s2e_snapshot_close(snap);
}

static void test_v2_header(void)
{
    size_t len;
    uint8_t *b = ref2_copy(&len);

    s2e_snap_put_le32(b + HDR_HEADER_LENGTH, 184);
    tu_reseal_header(b);
    expect(b, len, S2E_SNAPSHOT_ERROR_CORRUPT, "outside 192");
    /* A longer fixed part (a later compatible revision) is skipped. */
    b = ref2_copy(&len);
    memmove(b + 200, b + 192, 4);
    memset(b + 192, 0xee, 8);
    s2e_snap_put_le32(b + HDR_HEADER_LENGTH, 200);
    tu_reseal_header(b);
    expect_ok(b, len);
}

static void expect_ref2_field64(size_t off, uint64_t v, int code,
                                const char *needle)
{
    size_t len;
    uint8_t *b = ref2_copy(&len);

    s2e_snap_put_le64(b + off, v);
    tu_reseal_header(b);
    expect(b, len, code, needle);
}

static void test_v2_table(void)
{
    ref_file_build(&ref2);
    expect_ref2_field64(HDR_BLOCK_CSUM_OFFSET, 100,
                        S2E_SNAPSHOT_ERROR_CORRUPT, "block checksum table");
    expect_ref2_field64(HDR_BLOCK_CSUM_OFFSET, ref2.len - 1,
                        S2E_SNAPSHOT_ERROR_CORRUPT, "outside");
    expect_ref2_field64(HDR_BLOCK_CSUM_OFFSET, UINT64_MAX - 3,
                        S2E_SNAPSHOT_ERROR_CORRUPT, "outside");
    expect_ref2_field64(HDR_BLOCK_CSUM_COUNT, UINT64_C(1) << 62,
                        S2E_SNAPSHOT_ERROR_CORRUPT, "more than the file");
    /* One entry too few for the extents' blocks. */
    expect_ref2_field64(HDR_BLOCK_CSUM_COUNT, REF2_BLOCKS - 1,
                        S2E_SNAPSHOT_ERROR_CORRUPT, "has 8 entries");
    /* The table over the extent index. */
    expect_ref2_field64(HDR_BLOCK_CSUM_OFFSET, extent_index(ref2.bytes),
                        S2E_SNAPSHOT_ERROR_CORRUPT, "overlaps");
}

/* A damaged block fails the first read that touches any part of it, and
 * only reads touching it; verify finds it too. */
static void test_v2_block_damaged(void)
{
    size_t len;
    uint8_t *b = ref2_copy(&len);
    S2ESnapshot *snap;
    GError *err = NULL;

    b[ref2_data(b, 4, 5010) + 77] ^= 0x10;      /* block 5008..5015 */
    snap = open_bad(b, len);
    check_sectors(snap, 5003, 5);
    check_sectors(snap, 5016, 6);
    expect_read_damaged(snap, 5012, 1, "sectors 5008+8");
    expect_read_damaged(snap, 5003, 19, "sectors 5008+8");
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, &err), -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CHECKSUM, "sectors 5008+8", NULL);
    s2e_snapshot_close(snap);

    /* A partial block at an extent's edge: damage outside the sectors
     * asked for still fails the read. */
    b = ref2_copy(&len);
    b[ref2_data(b, 1, 102)] ^= 1;
    snap = open_bad(b, len);
    expect_read_damaged(snap, 100, 1, "sectors 100+3");
    s2e_snapshot_close(snap);

    /* The block filled by two writer calls. */
    b = ref2_copy(&len);
    b[ref2_data(b, 2, 207) + 511] ^= 0x80;
    snap = open_bad(b, len);
    check_sectors(snap, 208, 2);
    expect_read_damaged(snap, 201, 2, "sectors 200+8");
    s2e_snapshot_close(snap);
}

static void test_v2_table_damaged(void)
{
    size_t len;
    uint8_t *b = ref2_copy(&len);
    S2ESnapshot *snap;

    b[csum_table(b) + 4 * 4 + 2] ^= 4;          /* extent 3's first block */
    snap = open_bad(b, len);
    check_sectors(snap, 4008, 8);
    expect_read_damaged(snap, 4000, 16, "sectors 4000+8");
    s2e_snapshot_close(snap);
}

/* A block read once is not checked again through that handle; a fresh
 * handle checks it again. */
static void test_v2_verified_once(void)
{
    size_t len;
    uint8_t *b = ref2_copy(&len);
    uint64_t at = ref2_data(b, 3, 4009);
    S2ESnapshot *snap = open_bad(b, len);
    S2ESnapshot *fresh;
    uint8_t byte;
    FILE *f;

    check_sectors(snap, 4008, 8);
    f = fopen(ref.bad, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fseek(f, (long)at, SEEK_SET), 0);
    CU_ASSERT_EQUAL(fread(&byte, 1, 1, f), 1);
    byte ^= 1;
    CU_ASSERT_EQUAL(fseek(f, (long)at, SEEK_SET), 0);
    CU_ASSERT_EQUAL(fwrite(&byte, 1, 1, f), 1);
    fclose(f);
    fresh = s2e_snapshot_open(ref.bad, "base", &ref.id, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fresh);
    expect_read_damaged(fresh, 4008, 8, "sectors 4008+8");
    s2e_snapshot_close(fresh);
    s2e_snapshot_close(snap);
}

/* Version 2 chunks carry the data checksum: a chunk resealed with the
 * version 1 CRC-32 is damaged, and verify_vmstate (checksums only) finds
 * it; one resealed with XXH3 that does not inflate is corrupt, which
 * reading it or a full verify finds. */
static void test_v2_chunks(void)
{
    size_t len;
    uint8_t *b;
    uint8_t *e;
    S2ESnapshot *snap;
    GError *err = NULL;
    uint8_t buf[64];

    b = ref2_copy(&len);
    e = b + chunk_index(b) + 24;
    b[s2e_snap_get_le64(e) + 9] ^= 1;
    s2e_snap_put_le32(e + 12, s2e_snap_crc32(0, b + s2e_snap_get_le64(e),
                                             s2e_snap_get_le32(e + 8)));
    tu_reseal_all(b);
    snap = open_bad(b, len);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_vmstate(snap, &err), -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CHECKSUM, "chunk 1", NULL);
    s2e_snapshot_close(snap);

    b = ref2_copy(&len);
    e = b + chunk_index(b);
    CU_ASSERT_EQUAL(s2e_snap_get_le32(e + 16), 0);      /* compressed */
    memset(b + s2e_snap_get_le64(e), 0xff, 8);
    s2e_snap_put_le32(e + 12, s2e_snap_data_csum(b + s2e_snap_get_le64(e),
                                                 s2e_snap_get_le32(e + 8)));
    tu_reseal_all(b);
    snap = open_bad(b, len);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 0, buf, 64, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CORRUPT, "decompress", NULL);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_vmstate(snap, NULL), 0);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, &err), -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_CORRUPT, "decompress", NULL);
    s2e_snapshot_close(snap);
}

static void test_v2_truncation(void)
{
    uint64_t table;

    ref_file_build(&ref2);
    table = csum_table(ref2.bytes);
    for (uint64_t at = extent_index(ref2.bytes); at < ref2.len; at++) {
        size_t len;
        uint8_t *b = ref2_copy(&len);
        expect(b, at, S2E_SNAPSHOT_ERROR_TRUNCATED, NULL);
    }
    CU_ASSERT(table < ref2.len);
}

/* Truncated after open: the data and the table are gone, reads are I/O
 * errors (not "invalid argument"). */
static void test_v2_truncated_while_open(void)
{
    size_t len;
    uint8_t *b = ref2_copy(&len);
    S2ESnapshot *snap = open_bad(b, len);
    GError *err = NULL;
    uint8_t buf[8 * 512];

    CU_ASSERT_EQUAL(truncate(ref.bad, 4096), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, 0, 8, buf, &err), -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_TRUNCATED, ref.bad, NULL);
    s2e_snapshot_close(snap);
}

void s2e_test_register(void)
{
    CU_pSuite s;

    s = s2e_test_suite("header");
    s2e_test_add(s, "reference_is_valid", test_reference_is_valid);
    s2e_test_add(s, "too_small", test_too_small);
    s2e_test_add(s, "bad_magic", test_bad_magic);
    s2e_test_add(s, "bad_version", test_bad_version);
    s2e_test_add(s, "unknown_features", test_unknown_features);
    s2e_test_add(s, "header_checksum", test_header_checksum);
    s2e_test_add(s, "header_length", test_header_length);
    s2e_test_add(s, "name_fields", test_name_fields);
    s2e_test_add(s, "timestamps_and_flags", test_timestamps_and_flags);
    s2e_test_add(s, "file_size_field", test_file_size_field);
    s2e_test_add(s, "disk_and_dirty", test_disk_and_dirty);
    s2e_test_add(s, "chunking", test_chunking);
    s2e_test_add(s, "table_bounds", test_table_bounds);
    s2e_test_add(s, "not_a_file", test_not_a_file);
    s2e_test_add(s, "order_base_last", test_order_base_last);

    s = s2e_test_suite("index");
    s2e_test_add(s, "checksums", test_index_checksums);
    s2e_test_add(s, "chunk_entries", test_chunk_entries);
    s2e_test_add(s, "extent_entries", test_extent_entries);

    s = s2e_test_suite("zero");
    s2e_test_add(s, "reference_is_valid", test_zero_reference_is_valid);
    s2e_test_add(s, "feature_bit", test_zero_feature_bit);
    s2e_test_add(s, "entries", test_zero_entries);
    s2e_test_add(s, "header_counts", test_zero_header_counts);
    s2e_test_add(s, "truncation", test_zero_truncation);
    s2e_test_add(s, "damage_and_truncation_while_open",
                 test_zero_damage_and_truncation_while_open);

    s = s2e_test_suite("truncation");
    s2e_test_add(s, "boundaries", test_truncation_boundaries);
    s2e_test_add(s, "random", test_truncation_random);
    s2e_test_add(s, "while_open", test_truncated_while_open);

    s = s2e_test_suite("v2");
    s2e_test_add(s, "reference_is_valid", test_v2_reference_is_valid);
    s2e_test_add(s, "v1_is_unverified", test_v1_is_unverified);
    s2e_test_add(s, "checksum_paths_agree", test_v2_checksum_paths_agree);
    s2e_test_add(s, "header", test_v2_header);
    s2e_test_add(s, "table", test_v2_table);
    s2e_test_add(s, "block_damaged", test_v2_block_damaged);
    s2e_test_add(s, "block_damaged_split_vector",
                 test_v2_block_damaged_split_vector);
    s2e_test_add(s, "table_damaged", test_v2_table_damaged);
    s2e_test_add(s, "verified_once", test_v2_verified_once);
    s2e_test_add(s, "chunks", test_v2_chunks);
    s2e_test_add(s, "truncation", test_v2_truncation);
    s2e_test_add(s, "truncated_while_open", test_v2_truncated_while_open);

    s = s2e_test_suite("data");
    s2e_test_add(s, "chunk_damaged", test_chunk_data_damaged);
    s2e_test_add(s, "chunk_undecompressable",
                 test_chunk_data_undecompressable);
    s2e_test_add(s, "sector_damaged", test_sector_data_damaged);
}
