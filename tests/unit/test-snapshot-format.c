/*
 * Validation tests of the snapshot format: one test per rule, each made by
 * changing one field of a good file (resealing the checksums where the
 * rule lies behind them), plus truncation at every region boundary and at
 * random offsets, and damage found only when the data is read.
 *
 * The reference file: 3 full VM state chunks of 4 KiB and a partial one,
 * three dirty extents; field offsets come from docs/snapshot-format.md.
 */
#include "snapshot-test-util.h"

#include <errno.h>
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

static const TuRun ref_runs[] = { { 0, 8 }, { 100, 3 }, { 4000, 16 } };

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
}

static void ref_build(void)
{
    TuSpec spec = { .vm_size = 3 * 4096 + 1000, .chunk_size = 4096,
                    .zlib_level = -1, .disk_sectors = 8192, .runs = ref_runs,
                    .nruns = G_N_ELEMENTS(ref_runs), .seed = 1234,
                    .name = "ready" };

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

    s2e_snap_put_le32(b + HDR_VERSION, 2);   /* no reseal: checked before */
    expect(b, len, S2E_SNAPSHOT_ERROR_BAD_VERSION, "version 2");
    expect_field32(HDR_VERSION, 0, S2E_SNAPSHOT_ERROR_BAD_VERSION, "0");
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
    CU_ASSERT(s2e_snapshot_read_vmstate(snap, 0, buf, 100, &err) < 0);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_TRUNCATED, ref.bad, NULL);
    err = NULL;
    CU_ASSERT(s2e_snapshot_read_sectors(snap, 4000, 16, buf, &err) < 0);
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

    s = s2e_test_suite("truncation");
    s2e_test_add(s, "boundaries", test_truncation_boundaries);
    s2e_test_add(s, "random", test_truncation_random);
    s2e_test_add(s, "while_open", test_truncated_while_open);

    s = s2e_test_suite("data");
    s2e_test_add(s, "chunk_damaged", test_chunk_data_damaged);
    s2e_test_add(s, "chunk_undecompressable",
                 test_chunk_data_undecompressable);
    s2e_test_add(s, "sector_damaged", test_sector_data_damaged);
}
