/*
 * Unit tests of the snapshot module: round trips through the writer and
 * the reader, the writer's contract, base identity, path building,
 * listing and deleting.  The format's validation rules are tested in
 * test-snapshot-format.c, I/O failures in test-snapshot-faults.c.
 */
#include "snapshot-test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0_SEC 1700000000
#define T0_NSEC 100

/* A scratch directory with a 1 GiB base image "disk.raw.s2e". */
typedef struct Fixture {
    char *dir;
    char *image;
    S2EBaseIdentity id;
} Fixture;

static void fixture_init(Fixture *f)
{
    f->dir = tu_tmpdir();
    f->image = tu_make_base(f->dir, "disk.raw.s2e", UINT64_C(1) << 30,
                            T0_SEC, T0_NSEC);
    f->id = tu_identity(f->image);
}

static void fixture_fini(Fixture *f)
{
    tu_rmtree(f->dir);
    g_free(f->dir);
    g_free(f->image);
}

static char *snap_path(const Fixture *f, const char *name)
{
    char *p = s2e_snapshot_path(f->image, NULL, name, NULL);

    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    return p;
}

static S2ESnapshot *open_ok(const char *path, const S2EBaseIdentity *id)
{
    GError *err = NULL;
    S2ESnapshot *snap = s2e_snapshot_open(path, "image", id, &err);

    if (!snap) {
        fprintf(stderr, "\nopen %s: %s\n", path, err->message);
        g_error_free(err);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(snap);
    return snap;
}

/* Compare the VM state read at @pos with the pattern (zeroes past @size). */
static void check_vmstate_at(S2ESnapshot *snap, uint64_t size, uint64_t seed,
                             uint64_t pos, size_t len)
{
    uint8_t *got = g_malloc(len ? len : 1);
    uint8_t *want = g_malloc0(len ? len : 1);

    memset(got, 0xa5, len);
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, pos, got, len, NULL), 0);
    if (pos < size) {
        tu_vmstate_fill(want, pos, MIN(len, size - pos), seed);
    }
    CU_ASSERT(memcmp(got, want, len) == 0);
    g_free(got);
    g_free(want);
}

/* ---- VM state round trips ----------------------------------------------- */

static void vmstate_roundtrip(uint64_t size, uint32_t chunk, int level)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    S2ETestRng rng;
    uint64_t seed = s2e_test_seed() ^ size;
    TuSpec spec = { .vm_size = size, .chunk_size = chunk, .zlib_level = level,
                    .disk_sectors = 2097152, .seed = seed };

    fixture_init(&f);
    path = snap_path(&f, "vm");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f.id));
    snap = open_ok(path, &f.id);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->vm_state_size, size);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);

    /* Sequential reads in QEMU's 32 KiB steps, overrunning the end. */
    for (uint64_t pos = 0; pos < size + 32768; pos += 32768) {
        check_vmstate_at(snap, size, seed, pos, 32768);
    }
    /* Random positions and lengths, some past the end. */
    s2e_test_rng_init(&rng, seed);
    for (int i = 0; i < 200; i++) {
        uint64_t pos = s2e_test_rng_below(&rng, size + 10000);
        size_t len = (size_t)s2e_test_rng_below(&rng, 70000);
        check_vmstate_at(snap, size, seed, pos, len);
    }
    check_vmstate_at(snap, size, seed, UINT64_MAX - 10, 10);
    s2e_snapshot_close(snap);
    g_free(path);
    fixture_fini(&f);
}

static void test_vmstate_empty(void)
{
    vmstate_roundtrip(0, 0, -1);
}

static void test_vmstate_tiny(void)
{
    vmstate_roundtrip(1, 4096, -1);
    vmstate_roundtrip(4095, 4096, -1);
    vmstate_roundtrip(4096, 4096, -1);
    vmstate_roundtrip(4097, 4096, -1);
}

static void test_vmstate_multichunk_odd(void)
{
    vmstate_roundtrip(3 * 8192 + 17, 8192, -1);
    vmstate_roundtrip(65536 * 5 + 4093, 65536, 6);
}

static void test_vmstate_default_chunk(void)
{
    vmstate_roundtrip(2 * 1024 * 1024 + 512 * 1024 + 3, 0, -1);
}

static void test_vmstate_levels(void)
{
    vmstate_roundtrip(100000, 16384, 0);
    vmstate_roundtrip(100000, 16384, 9);
}

/* Incompressible data is stored raw; compressible data shrinks. */
static void test_vmstate_raw_and_compressed(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    S2ESnapshotLayout l;
    GError *err = NULL;
    S2ESnapshotWriter *w;
    S2ESnapshotInfo info = { .icount = UINT64_MAX };
    uint8_t *buf = g_malloc(3 * 65536);
    uint8_t *back = g_malloc(3 * 65536);
    S2ETestRng rng;

    fixture_init(&f);
    path = snap_path(&f, "raw");
    s2e_test_rng_init(&rng, 7);
    for (size_t i = 0; i < 65536; i++) {
        buf[i] = (uint8_t)s2e_test_rng_next(&rng);   /* random: raw */
    }
    memset(buf + 65536, 'x', 2 * 65536);             /* compresses */
    w = s2e_snapshot_writer_new(f.dir, &f.id, 100, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_set_chunk_size(w, 65536, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_put_vmstate(w, 0, buf, 3 * 65536,
                                                    NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, path, &info, NULL), 0);

    snap = open_ok(path, &f.id);
    s2e_snapshot_get_layout(snap, &l);
    CU_ASSERT_EQUAL(l.chunk_count, 3);
    CU_ASSERT(l.vm_state_stored >= 65536);
    CU_ASSERT(l.vm_state_stored < 65536 + 2000);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->icount, UINT64_MAX);
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 0, back, 3 * 65536, NULL),
                    0);
    CU_ASSERT(memcmp(buf, back, 3 * 65536) == 0);
    s2e_snapshot_close(snap);
    g_free(buf);
    g_free(back);
    g_free(path);
    fixture_fini(&f);
}

/* ---- Sector round trips ------------------------------------------------- */

static void check_sectors(const S2ESnapshot *snap, uint64_t sector,
                          uint64_t count, uint64_t seed)
{
    uint8_t *got = g_malloc(count * 512);
    uint8_t *want = g_malloc(count * 512);
    GError *err = NULL;

    tu_sectors_fill(want, sector, count, seed);
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, sector, count, got, &err),
                    0);
    if (err) {
        fprintf(stderr, "\n%s\n", err->message);
        g_clear_error(&err);
    }
    CU_ASSERT(memcmp(got, want, count * 512) == 0);
    g_free(got);
    g_free(want);
}

/* Sectors above 2^32 keep their number (32-bit truncation was a defect). */
static void test_sectors_high(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    uint64_t disk = UINT64_C(1) << 40;
    TuRun runs[] = {
        { 0, 1 },
        { (UINT64_C(1) << 32) - 1, 3 },           /* crosses 2^32 */
        { (UINT64_C(1) << 32) + 100, 8 },
        { disk - 9, 9 },                          /* disk end */
    };
    TuSpec spec = { .vm_size = 5000, .disk_sectors = disk, .runs = runs,
                    .nruns = G_N_ELEMENTS(runs), .seed = 99,
                    .zlib_level = -1 };
    uint64_t n;

    fixture_init(&f);
    path = snap_path(&f, "high");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f.id));
    snap = open_ok(path, &f.id);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->disk_sectors, disk);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->dirty_sectors, 21);
    for (size_t i = 0; i < G_N_ELEMENTS(runs); i++) {
        check_sectors(snap, runs[i].sector, runs[i].count, 99);
        CU_ASSERT(s2e_snapshot_extent(snap, runs[i].sector, 100, &n));
        CU_ASSERT_EQUAL(n, runs[i].count);
    }
    CU_ASSERT(s2e_snapshot_extent(snap, UINT64_C(1) << 32, 1000, &n));
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT(!s2e_snapshot_extent(snap, (UINT64_C(1) << 32) + 2, 1000, &n));
    CU_ASSERT_EQUAL(n, 98);
    CU_ASSERT(!s2e_snapshot_extent(snap, 1, UINT64_MAX, &n));
    CU_ASSERT_EQUAL(n, (UINT64_C(1) << 32) - 2);
    CU_ASSERT(!s2e_snapshot_extent(snap, disk, 5, &n));
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT(!s2e_snapshot_extent(snap, 0, 0, &n));
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    s2e_snapshot_close(snap);
    g_free(path);
    fixture_fini(&f);
}

/* Many random extents against a shadow bitmap. */
static void test_sectors_many_extents(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    uint64_t disk = 200000;
    uint8_t *shadow = g_malloc0(disk);
    GArray *runs = g_array_new(FALSE, FALSE, sizeof(TuRun));
    uint64_t seed = s2e_test_seed();
    S2ETestRng rng;
    uint64_t sector = 0;
    TuSpec spec = { .vm_size = 70000, .chunk_size = 4096, .zlib_level = -1,
                    .disk_sectors = disk, .seed = seed };

    s2e_test_rng_init(&rng, seed);
    while (sector < disk) {
        uint64_t gap = s2e_test_rng_below(&rng, 4) == 0
                       ? 0 : s2e_test_rng_below(&rng, 200);
        uint64_t count = 1 + s2e_test_rng_below(&rng, 40);
        TuRun r = { sector + gap, count };

        if (r.sector >= disk) {
            break;
        }
        r.count = MIN(r.count, disk - r.sector);
        memset(shadow + r.sector, 1, r.count);
        g_array_append_val(runs, r);
        sector = r.sector + r.count;
    }
    spec.runs = (const TuRun *)runs->data;
    spec.nruns = runs->len;
    fixture_init(&f);
    path = snap_path(&f, "many");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f.id));
    snap = open_ok(path, &f.id);

    /* Walk the whole disk with extent() and compare with the shadow. */
    for (uint64_t s = 0; s < disk;) {
        uint64_t n, max = 1 + s2e_test_rng_below(&rng, 300);
        bool stored = s2e_snapshot_extent(snap, s, max, &n);

        CU_ASSERT_FATAL(n >= 1 && n <= max);
        for (uint64_t k = 0; k < n && s + k < disk; k++) {
            CU_ASSERT_EQUAL_FATAL(shadow[s + k], stored);
        }
        if (s + n < disk && n < max) {
            CU_ASSERT_NOT_EQUAL(shadow[s + n], stored);
        }
        if (stored) {
            check_sectors(snap, s, n, seed);
        }
        s += n;
    }
    /* Reading a range with a hole fails cleanly. */
    for (uint64_t s = 1; s < disk; s++) {
        if (shadow[s - 1] && !shadow[s]) {
            uint8_t buf[1024];
            GError *err = NULL;
            CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, s - 1, 2, buf,
                                                      &err), -EINVAL);
            tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "not stored",
                           NULL);
            break;
        }
    }
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    s2e_snapshot_close(snap);
    g_array_free(runs, TRUE);
    g_free(shadow);
    g_free(path);
    fixture_fini(&f);
}

/* Adjacent adds merge; extents are placed so guest pages are file pages. */
static void test_sectors_merge_and_alignment(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    TuRun runs[] = {
        { 8, 8 }, { 16, 8 }, { 24, 1 },     /* one extent of 17 */
        { 35, 5 },                          /* starts mid-page */
        { 64, 16 },
    };
    TuSpec spec = { .vm_size = 1234, .disk_sectors = 1000, .runs = runs,
                    .nruns = G_N_ELEMENTS(runs), .seed = 5, .zlib_level = -1 };
    const S2ESnapExtent *e;
    uint64_t n;

    fixture_init(&f);
    path = snap_path(&f, "merge");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f.id));
    snap = open_ok(path, &f.id);
    e = s2e_snapshot_extents(snap, &n);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_EQUAL(e[0].sector, 8);
    CU_ASSERT_EQUAL(e[0].count, 17);
    for (uint64_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(e[i].offset % 4096, (e[i].sector % 8) * 512);
    }
    check_sectors(snap, 8, 17, 5);
    check_sectors(snap, 35, 5, 5);
    check_sectors(snap, 64, 16, 5);
    s2e_snapshot_close(snap);
    g_free(path);
    fixture_fini(&f);
}

/* VM state and sectors may interleave; info fields round trip. */
static void test_interleaved_and_info(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    S2ESnapshotWriter *w;
    S2ESnapshotInfo info = { .date_sec = -5, .date_nsec = 999999999,
                             .vm_clock_nsec = 3600000000123, .icount = 7,
                             .vm_state_size = 1, .dirty_sectors = 1 };
    const S2ESnapshotInfo *got;
    uint8_t vm[10000], sec[4096];
    uint64_t pos = 0;

    fixture_init(&f);
    path = snap_path(&f, "inter");
    memset(info.name, 'n', S2E_SNAPSHOT_NAME_MAX);
    memset(info.id, 'i', S2E_SNAPSHOT_ID_MAX);
    w = s2e_snapshot_writer_new(f.dir, &f.id, 1 << 20, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_set_chunk_size(w, 4096, NULL), 0);
    for (uint64_t s = 0; s < 40; s += 8) {
        tu_vmstate_fill(vm, pos, 3000, 1);
        CU_ASSERT_EQUAL(s2e_snapshot_writer_put_vmstate(w, pos, vm, 3000,
                                                        NULL), 0);
        pos += 3000;
        tu_sectors_fill(sec, s * 3, 8, 1);
        CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, s * 3, 8, sec,
                                                        NULL), 0);
    }
    CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, path, &info, NULL), 0);

    snap = open_ok(path, &f.id);
    got = s2e_snapshot_get_info(snap);
    CU_ASSERT_EQUAL(strlen(got->name), S2E_SNAPSHOT_NAME_MAX);
    CU_ASSERT_EQUAL(strlen(got->id), S2E_SNAPSHOT_ID_MAX);
    CU_ASSERT_EQUAL(got->date_sec, -5);
    CU_ASSERT_EQUAL(got->date_nsec, 999999999);
    CU_ASSERT_EQUAL(got->vm_clock_nsec, 3600000000123);
    CU_ASSERT_EQUAL(got->icount, 7);
    CU_ASSERT_EQUAL(got->vm_state_size, 15000);  /* filled by the writer */
    CU_ASSERT_EQUAL(got->dirty_sectors, 40);
    CU_ASSERT_EQUAL(got->disk_sectors, 1 << 20);
    CU_ASSERT_EQUAL(s2e_snapshot_get_base(snap)->size, f.id.size);
    CU_ASSERT_EQUAL(s2e_snapshot_get_base(snap)->mtime_nsec, T0_NSEC);
    CU_ASSERT_STRING_EQUAL(s2e_snapshot_get_path(snap), path);
    for (uint64_t s = 0; s < 40; s += 8) {
        check_sectors(snap, s * 3, 8, 1);
    }
    check_vmstate_at(snap, 15000, 1, 0, 15000);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    s2e_snapshot_close(snap);
    g_free(path);
    fixture_fini(&f);
}

/* A snapshot with neither VM state nor sectors, on a 0-sector disk. */
static void test_empty_snapshot(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    TuSpec spec = { .disk_sectors = 0, .zlib_level = -1 };
    uint8_t buf[16];
    uint64_t n;
    struct stat st;

    fixture_init(&f);
    path = snap_path(&f, "empty");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f.id));
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_size, 4096);
    snap = open_ok(path, &f.id);
    CU_ASSERT(!s2e_snapshot_extent(snap, 0, 10, &n));
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 0, buf, sizeof(buf),
                                              NULL), 0);
    CU_ASSERT_EQUAL(buf[0] | buf[15], 0);
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, 0, 1, buf, NULL),
                    -EINVAL);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    s2e_snapshot_close(snap);
    g_free(path);
    fixture_fini(&f);
}

/* ---- The writer's contract ---------------------------------------------- */

static void test_writer_argument_errors(void)
{
    Fixture f;
    char *path, *other_dir;
    S2ESnapshotWriter *w;
    S2ESnapshotInfo info = { 0 };
    GError *err = NULL;
    uint8_t buf[1024] = { 1 };

    fixture_init(&f);
    path = snap_path(&f, "args");
    w = s2e_snapshot_writer_new(f.dir, &f.id, 100, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_set_chunk_size(w, 5000, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "5000", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_set_zlib_level(w, 10, &err), -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "10", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_put_vmstate(w, 0, buf, 10, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_put_vmstate(w, 5, buf, 10, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "sequential", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_set_chunk_size(w, 4096, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, 10, 2, buf, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, 11, 1, buf, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "order", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, 99, 2, buf, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "outside", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, 50, 0, buf, NULL), 0);
    /* Still usable after argument errors. */
    CU_ASSERT_EQUAL(s2e_snapshot_writer_put_vmstate(w, 10, buf, 10, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, 99, 1, buf, NULL), 0);

    /* A final path outside the writer's directory: refused, cleaned up. */
    other_dir = tu_tmpdir();
    {
        char *elsewhere = g_build_filename(other_dir, "disk.raw.s2e.x", NULL);
        CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, elsewhere, &info, &err),
                        -EINVAL);
        tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, elsewhere, f.dir,
                       NULL);
        CU_ASSERT(!g_file_test(elsewhere, G_FILE_TEST_EXISTS));
        g_free(elsewhere);
    }
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, "."), 0);

    /* An unterminated name in the info: refused. */
    err = NULL;
    w = s2e_snapshot_writer_new(f.dir, &f.id, 100, NULL);
    memset(info.name, 'a', sizeof(info.name));
    CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, path, &info, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "name", NULL);
    CU_ASSERT(!g_file_test(path, G_FILE_TEST_EXISTS));
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, "."), 0);

    /* Bad arguments to writer_new. */
    err = NULL;
    CU_ASSERT_PTR_NULL(s2e_snapshot_writer_new(f.dir, &f.id,
                                               (UINT64_C(1) << 54) + 1,
                                               &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_LIMIT, NULL);
    err = NULL;
    CU_ASSERT_PTR_NULL(s2e_snapshot_writer_new("/nonexistent/dir", &f.id, 1,
                                               &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_NOT_FOUND, "/nonexistent/dir",
                   NULL);
    s2e_snapshot_writer_abort(NULL);

    tu_rmtree(other_dir);
    g_free(other_dir);
    g_free(path);
    fixture_fini(&f);
}

/* The temporary file is hidden, in the directory, and gone after abort;
 * the committed file honours the umask. */
static void test_writer_temp_and_mode(void)
{
    Fixture f;
    char *path;
    S2ESnapshotWriter *w;
    S2ESnapshotInfo info = { 0 };
    const char *temp;
    struct stat st;
    mode_t old;

    fixture_init(&f);
    path = snap_path(&f, "mode");
    w = s2e_snapshot_writer_new(f.dir, &f.id, 100, NULL);
    temp = s2e_snapshot_writer_temp_path(w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(temp);
    CU_ASSERT(g_str_has_prefix(temp, f.dir));
    CU_ASSERT(strstr(temp, "/" S2E_SNAP_TEMP_PREFIX) != NULL);
    CU_ASSERT(g_file_test(temp, G_FILE_TEST_IS_REGULAR));
    s2e_snapshot_writer_abort(w);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, S2E_SNAP_TEMP_PREFIX), 0);

    old = umask(027);
    w = s2e_snapshot_writer_new(f.dir, &f.id, 100, NULL);
    umask(old);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, path, &info, NULL), 0);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0640);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, S2E_SNAP_TEMP_PREFIX), 0);
    g_free(path);
    fixture_fini(&f);
}

/* Committing over an existing snapshot replaces it whole. */
static void test_writer_replaces(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    TuSpec a = { .vm_size = 10000, .disk_sectors = 100, .seed = 1,
                 .zlib_level = -1, .name = "first" };
    TuSpec b = { .vm_size = 20000, .disk_sectors = 100, .seed = 2,
                 .zlib_level = -1, .name = "second" };

    fixture_init(&f);
    path = snap_path(&f, "ready");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &a, &f.id));
    snap = open_ok(path, &f.id);   /* an open reader keeps the old file */
    CU_ASSERT_FATAL(tu_write_snapshot(path, &b, &f.id));
    check_vmstate_at(snap, 10000, 1, 0, 10000);
    s2e_snapshot_close(snap);
    snap = open_ok(path, &f.id);
    CU_ASSERT_STRING_EQUAL(s2e_snapshot_get_info(snap)->name, "second");
    check_vmstate_at(snap, 20000, 2, 0, 20000);
    s2e_snapshot_close(snap);
    g_free(path);
    fixture_fini(&f);
}

/* The zlib level comes from S2E_SNAPSHOT_ZLIB_LEVEL; a bad one is refused. */
static void test_writer_zlib_env(void)
{
    Fixture f;
    GError *err = NULL;
    S2ESnapshotWriter *w;

    fixture_init(&f);
    g_setenv(S2E_SNAP_ZLIB_LEVEL_ENV, "9x", TRUE);
    CU_ASSERT_PTR_NULL(s2e_snapshot_writer_new(f.dir, &f.id, 1, &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, S2E_SNAP_ZLIB_LEVEL_ENV,
                   NULL);
    g_setenv(S2E_SNAP_ZLIB_LEVEL_ENV, "6", TRUE);
    w = s2e_snapshot_writer_new(f.dir, &f.id, 1, NULL);
    CU_ASSERT_PTR_NOT_NULL(w);
    s2e_snapshot_writer_abort(w);
    g_unsetenv(S2E_SNAP_ZLIB_LEVEL_ENV);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, "."), 0);
    fixture_fini(&f);
}

/* ---- Base identity ------------------------------------------------------ */

static char *write_small(Fixture *f, const char *name)
{
    char *path = snap_path(f, name);
    TuSpec spec = { .vm_size = 3000, .disk_sectors = 64, .seed = 3,
                    .zlib_level = -1 };

    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f->id));
    return path;
}

static void expect_base_changed(const char *path, const char *image,
                                const char *s1, const char *s2)
{
    S2EBaseIdentity now = tu_identity(image);
    GError *err = NULL;

    CU_ASSERT_PTR_NULL(s2e_snapshot_open(path, image, &now, &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_BASE_CHANGED, path, image,
                   "cp -p", s1, s2, NULL);
}

/* Rewritten within the same second: only the nanoseconds differ. */
static void test_identity_same_second(void)
{
    Fixture f;
    char *path;

    fixture_init(&f);
    path = write_small(&f, "ns");
    tu_set_mtime(f.image, T0_SEC, T0_NSEC + 1);
    expect_base_changed(path, f.image, ".000000100", ".000000101");
    {
        /* The message also offers touch -r and the exact touch -d. */
        S2EBaseIdentity now = tu_identity(f.image);
        GError *err = NULL;
        CU_ASSERT_PTR_NULL(s2e_snapshot_open(path, f.image, &now, &err));
        tu_check_error(err, S2E_SNAPSHOT_ERROR_BASE_CHANGED, "touch -r",
                       "touch -d @1700000000.000000100", NULL);
    }
    g_free(path);
    fixture_fini(&f);
}

static void test_identity_size(void)
{
    Fixture f;
    char *path;

    fixture_init(&f);
    path = write_small(&f, "size");
    CU_ASSERT_EQUAL(truncate(f.image, (off_t)f.id.size + 512), 0);
    tu_set_mtime(f.image, T0_SEC, T0_NSEC);  /* same mtime, other size */
    expect_base_changed(path, f.image, "1073742336", "1073741824");
    g_free(path);
    fixture_fini(&f);
}

/* Restoring the timestamp (touch -r) makes the snapshot load again. */
static void test_identity_touch_restore(void)
{
    Fixture f;
    char *path;
    S2EBaseIdentity now;

    fixture_init(&f);
    path = write_small(&f, "touch");
    tu_set_mtime(f.image, T0_SEC + 3600, 5);
    expect_base_changed(path, f.image, ".000000005", ".000000100");
    tu_set_mtime(f.image, T0_SEC, T0_NSEC);
    now = tu_identity(f.image);
    s2e_snapshot_close(open_ok(path, &now));
    g_free(path);
    fixture_fini(&f);
}

/* A cp -p style copy of image and snapshot to another directory loads;
 * a copy without -p does not. */
static void test_identity_copy(void)
{
    Fixture f;
    char *path, *dir2, *image2, *snap2;
    S2EBaseIdentity id2;
    struct stat st;

    fixture_init(&f);
    path = write_small(&f, "copy");
    dir2 = tu_tmpdir();
    image2 = g_build_filename(dir2, "disk.raw.s2e", NULL);
    snap2 = g_build_filename(dir2, "disk.raw.s2e.copy", NULL);
    /* The image is sparse: copy its size, then its timestamps (cp -p). */
    CU_ASSERT_EQUAL(stat(f.image, &st), 0);
    g_free(tu_make_base(dir2, "disk.raw.s2e", (uint64_t)st.st_size,
                        st.st_mtim.tv_sec, (uint32_t)st.st_mtim.tv_nsec));
    tu_copy_file(path, snap2);
    id2 = tu_identity(image2);
    s2e_snapshot_close(open_ok(snap2, &id2));

    /* Without -p the copy gets a new mtime. */
    tu_set_mtime(image2, T0_SEC + 10, 0);
    expect_base_changed(snap2, image2, ".000000000", ".000000100");

    tu_rmtree(dir2);
    g_free(dir2);
    g_free(image2);
    g_free(snap2);
    g_free(path);
    fixture_fini(&f);
}

/* Bases without an mtime compare by size only. */
static void test_identity_no_mtime(void)
{
    Fixture f;
    char *path;
    S2EBaseIdentity rec = { .size = 1 << 20, .has_mtime = false,
                            .mtime_sec = 99, .mtime_nsec = 99 };
    S2EBaseIdentity cur = { .size = 1 << 20, .has_mtime = true,
                            .mtime_sec = 5, .mtime_nsec = 6 };
    TuSpec spec = { .vm_size = 10, .disk_sectors = 8, .zlib_level = -1 };
    S2ESnapshot *snap;
    GError *err = NULL;

    fixture_init(&f);
    path = snap_path(&f, "nomtime");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &rec));
    snap = open_ok(path, &cur);
    CU_ASSERT_FALSE(s2e_snapshot_get_base(snap)->has_mtime);
    CU_ASSERT_EQUAL(s2e_snapshot_get_base(snap)->mtime_sec, 0);
    cur.has_mtime = false;
    CU_ASSERT_EQUAL(s2e_snapshot_check_base(snap, "img", &cur, NULL), 0);
    cur.size++;
    CU_ASSERT_EQUAL(s2e_snapshot_check_base(snap, "img", &cur, &err),
                    -ESTALE);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_BASE_CHANGED, "img", NULL);
    s2e_snapshot_close(snap);

    /* Recorded with an mtime, checked against a base without one. */
    g_free(path);
    path = write_small(&f, "cur-nomtime");
    cur = f.id;
    cur.has_mtime = false;
    cur.mtime_sec = 1;
    s2e_snapshot_close(open_ok(path, &cur));
    g_free(path);
    fixture_fini(&f);
}

static void test_identity_errors_and_time(void)
{
    S2EBaseIdentity id;
    GError *err = NULL;
    char *s;

    CU_ASSERT_EQUAL(s2e_base_identity_from_path("/nonexistent/image", &id,
                                                &err), -ENOENT);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_NOT_FOUND, "/nonexistent/image",
                   NULL);
    s = s2e_snapshot_format_time(0, 5);
    CU_ASSERT(strstr(s, ".000000005 ") != NULL);
    g_free(s);
    s = s2e_snapshot_format_time(INT64_MAX, 1);
    CU_ASSERT_STRING_EQUAL(s, "@9223372036854775807.000000001");
    g_free(s);
    s = s2e_snapshot_format_time(1, 1000000000u);
    CU_ASSERT_STRING_EQUAL(s, "@1.1000000000");
    g_free(s);
}

/* ---- Paths -------------------------------------------------------------- */

static void expect_bad_path(const char *image, const char *name)
{
    GError *err = NULL;

    CU_ASSERT_PTR_NULL(s2e_snapshot_path(image, NULL, name, &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, NULL);
}

static void test_path_building(void)
{
    char *p;
    char long_name[S2E_SNAPSHOT_NAME_MAX + 2];

    p = s2e_snapshot_path("/a/b/disk.raw.s2e", NULL, "ready", NULL);
    CU_ASSERT_STRING_EQUAL(p, "/a/b/disk.raw.s2e.ready");
    g_free(p);
    p = s2e_snapshot_path("/a/b/disk.raw.s2e", "/snaps", "ready", NULL);
    CU_ASSERT_STRING_EQUAL(p, "/snaps/disk.raw.s2e.ready");
    g_free(p);
    p = s2e_snapshot_path("disk", NULL, "x.y", NULL);
    CU_ASSERT_STRING_EQUAL(p, "disk.x.y");
    g_free(p);
    p = s2e_snapshot_path("./disk", NULL, "a b", NULL);
    CU_ASSERT_STRING_EQUAL(p, "./disk.a b");
    g_free(p);

    expect_bad_path("/a/disk", "");
    expect_bad_path("/a/disk", NULL);
    expect_bad_path("/a/disk", "a/b");
    expect_bad_path("/a/disk", "/");
    expect_bad_path("/a/disk", ".");
    expect_bad_path("/a/disk", "..");
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    expect_bad_path("/a/disk", long_name);             /* 256 bytes */
    long_name[S2E_SNAPSHOT_NAME_MAX] = '\0';
    expect_bad_path("/a/disk", long_name);             /* file name > 255 */
    long_name[255 - strlen("disk.")] = '\0';
    p = s2e_snapshot_path("/a/disk", NULL, long_name, NULL);
    CU_ASSERT_PTR_NOT_NULL(p);                         /* exactly 255 */
    g_free(p);
    expect_bad_path("", "x");
    expect_bad_path("/a/dir/", "x");
    expect_bad_path("/", "x");
    expect_bad_path("..", "x");
}

/* ---- Listing and deleting ----------------------------------------------- */

static void test_list_and_delete(void)
{
    Fixture f;
    char *a, *b, *bad, *notes, *other, *sub;
    S2ESnapshotWriter *live;
    GPtrArray *list;
    GError *err = NULL;
    S2ESnapshotEntry *e;

    fixture_init(&f);
    a = write_small(&f, "a");
    b = write_small(&f, "b.2");
    bad = snap_path(&f, "bad");
    tu_copy_file(a, bad);
    CU_ASSERT_EQUAL(truncate(bad, 5000), 0);           /* magic, truncated */
    notes = snap_path(&f, "notes");
    tu_write_file(notes, "not a snapshot\n", 15);
    other = g_build_filename(f.dir, "other.img.c", NULL);
    tu_copy_file(a, other);
    sub = snap_path(&f, "dir");
    CU_ASSERT_EQUAL(mkdir(sub, 0755), 0);
    live = s2e_snapshot_writer_new(f.dir, &f.id, 10, NULL);  /* temp file */
    CU_ASSERT_PTR_NOT_NULL(live);

    list = s2e_snapshot_list(f.image, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(list);
    CU_ASSERT_EQUAL_FATAL(list->len, 3);
    e = g_ptr_array_index(list, 0);
    CU_ASSERT_STRING_EQUAL(e->name, "a");
    CU_ASSERT_STRING_EQUAL(e->path, a);
    CU_ASSERT(e->valid);
    CU_ASSERT_PTR_NULL(e->problem);
    CU_ASSERT_EQUAL(e->info.vm_state_size, 3000);
    e = g_ptr_array_index(list, 1);
    CU_ASSERT_STRING_EQUAL(e->name, "b.2");
    CU_ASSERT(e->valid);
    e = g_ptr_array_index(list, 2);
    CU_ASSERT_STRING_EQUAL(e->name, "bad");
    CU_ASSERT_FALSE(e->valid);
    CU_ASSERT_PTR_NOT_NULL(e->problem);
    CU_ASSERT(e->problem && strstr(e->problem, "truncated"));
    g_ptr_array_unref(list);

    /* Deleting: refuses non-snapshots, reports missing ones. */
    CU_ASSERT_EQUAL(s2e_snapshot_delete(f.image, NULL, "notes", &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, notes, NULL);
    CU_ASSERT(g_file_test(notes, G_FILE_TEST_EXISTS));
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_delete(f.image, NULL, "dir", &err), -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_delete(f.image, NULL, "missing", &err),
                    -ENOENT);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_NOT_FOUND, "missing", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_delete(f.image, NULL, "../x", &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, NULL);
    CU_ASSERT_EQUAL(s2e_snapshot_delete(f.image, NULL, "bad", NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_delete(f.image, NULL, "a", NULL), 0);
    CU_ASSERT(!g_file_test(a, G_FILE_TEST_EXISTS));

    list = s2e_snapshot_list(f.image, NULL, NULL);
    CU_ASSERT_EQUAL(list->len, 1);
    g_ptr_array_unref(list);
    s2e_snapshot_writer_abort(live);

    /* Listing a missing directory fails with a message. */
    err = NULL;
    CU_ASSERT_PTR_NULL(s2e_snapshot_list(f.image, "/nonexistent/snaps",
                                         &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_NOT_FOUND, f.image, NULL);

    g_free(a);
    g_free(b);
    g_free(bad);
    g_free(notes);
    g_free(other);
    g_free(sub);
    fixture_fini(&f);
}

/* Snapshots kept in a separate directory. */
static void test_list_snapshot_dir(void)
{
    Fixture f;
    char *sdir = tu_tmpdir();
    char *path = s2e_snapshot_path(NULL, NULL, "x", NULL);
    GPtrArray *list;
    TuSpec spec = { .vm_size = 100, .disk_sectors = 8, .zlib_level = -1 };

    CU_ASSERT_PTR_NULL(path);
    fixture_init(&f);
    path = s2e_snapshot_path(f.image, sdir, "s1", NULL);
    CU_ASSERT(g_str_has_prefix(path, sdir));
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f.id));
    list = s2e_snapshot_list(f.image, NULL, NULL);
    CU_ASSERT_EQUAL(list->len, 0);
    g_ptr_array_unref(list);
    list = s2e_snapshot_list(f.image, sdir, NULL);
    CU_ASSERT_EQUAL(list->len, 1);
    g_ptr_array_unref(list);
    CU_ASSERT_EQUAL(s2e_snapshot_delete(f.image, sdir, "s1", NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_delete(f.image, sdir, "s1", NULL), -ENOENT);
    g_free(path);
    tu_rmtree(sdir);
    g_free(sdir);
    fixture_fini(&f);
}

/* Many readers of one snapshot at once, each with its own descriptor. */
static void test_many_readers(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snaps[16];
    TuRun runs[] = { { 0, 64 } };
    TuSpec spec = { .vm_size = 50000, .chunk_size = 4096, .disk_sectors = 64,
                    .runs = runs, .nruns = 1, .seed = 11, .zlib_level = -1 };

    fixture_init(&f);
    path = write_small(&f, "unused");
    g_free(path);
    path = snap_path(&f, "shared");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f.id));
    for (int i = 0; i < 16; i++) {
        snaps[i] = open_ok(path, &f.id);
    }
    for (int i = 0; i < 16; i++) {
        check_vmstate_at(snaps[i], 50000, 11, (uint64_t)i * 3000, 5000);
        check_sectors(snaps[i], (uint64_t)i, 4, 11);
    }
    for (int i = 0; i < 16; i++) {
        s2e_snapshot_close(snaps[i]);
    }
    s2e_snapshot_close(NULL);
    g_free(path);
    fixture_fini(&f);
}

void s2e_test_register(void)
{
    CU_pSuite s;

    s = s2e_test_suite("vmstate");
    s2e_test_add(s, "empty", test_vmstate_empty);
    s2e_test_add(s, "tiny", test_vmstate_tiny);
    s2e_test_add(s, "multichunk_odd", test_vmstate_multichunk_odd);
    s2e_test_add(s, "default_chunk", test_vmstate_default_chunk);
    s2e_test_add(s, "levels", test_vmstate_levels);
    s2e_test_add(s, "raw_and_compressed", test_vmstate_raw_and_compressed);

    s = s2e_test_suite("sectors");
    s2e_test_add(s, "high", test_sectors_high);
    s2e_test_add(s, "many_extents", test_sectors_many_extents);
    s2e_test_add(s, "merge_and_alignment", test_sectors_merge_and_alignment);
    s2e_test_add(s, "interleaved_and_info", test_interleaved_and_info);
    s2e_test_add(s, "empty_snapshot", test_empty_snapshot);
    s2e_test_add(s, "many_readers", test_many_readers);

    s = s2e_test_suite("writer");
    s2e_test_add(s, "argument_errors", test_writer_argument_errors);
    s2e_test_add(s, "temp_and_mode", test_writer_temp_and_mode);
    s2e_test_add(s, "replaces", test_writer_replaces);
    s2e_test_add(s, "zlib_env", test_writer_zlib_env);

    s = s2e_test_suite("identity");
    s2e_test_add(s, "same_second", test_identity_same_second);
    s2e_test_add(s, "size", test_identity_size);
    s2e_test_add(s, "touch_restore", test_identity_touch_restore);
    s2e_test_add(s, "copy", test_identity_copy);
    s2e_test_add(s, "no_mtime", test_identity_no_mtime);
    s2e_test_add(s, "errors_and_time", test_identity_errors_and_time);

    s = s2e_test_suite("names");
    s2e_test_add(s, "path_building", test_path_building);
    s2e_test_add(s, "list_and_delete", test_list_and_delete);
    s2e_test_add(s, "list_snapshot_dir", test_list_snapshot_dir);
}
