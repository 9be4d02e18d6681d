/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the snapshot module: round trips through the writer and
 * the reader, the writer's contract, base identity, path building,
 * listing and deleting.  The format's validation rules are tested in
 * test-snapshot-format.c, I/O failures in test-snapshot-faults.c.
 */
#include "snapshot-test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
    /* Compression is opt-in (level 0, raw chunks, is the default). */
    CU_ASSERT_EQUAL(s2e_snapshot_writer_set_zlib_level(w, 1, NULL), 0);
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

/* The default stores chunks raw, even highly compressible ones: savevm
 * must keep up with qcow2 (see bench/README.md). */
static void test_vmstate_default_is_raw(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    S2ESnapshotLayout l;
    S2ESnapshotWriter *w;
    S2ESnapshotInfo info = { .icount = UINT64_MAX };
    uint8_t *buf = g_malloc0(2 * 65536);
    uint8_t *back = g_malloc(2 * 65536);
    GError *err = NULL;

    g_unsetenv("S2E_SNAPSHOT_ZLIB_LEVEL");
    fixture_init(&f);
    path = snap_path(&f, "default");
    memset(buf, 'y', 2 * 65536);
    w = s2e_snapshot_writer_new(f.dir, &f.id, 100, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_set_chunk_size(w, 65536, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_put_vmstate(w, 0, buf, 2 * 65536,
                                                    NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, path, &info, NULL), 0);
    snap = open_ok(path, &f.id);
    s2e_snapshot_get_layout(snap, &l);
    CU_ASSERT_EQUAL(l.chunk_count, 2);
    CU_ASSERT_EQUAL(l.vm_state_stored, 2 * 65536);
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 0, back, 2 * 65536, NULL),
                    0);
    CU_ASSERT(memcmp(buf, back, 2 * 65536) == 0);
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

/*
 * Drop @fd's file from the page cache: true when none of it is resident
 * afterwards (mincore).  Freshly written pages may still sit in the
 * kernel's per-CPU batches, so it tries a few times.
 */
static bool evict_from_page_cache(int fd)
{
    struct stat st;
    long page = sysconf(_SC_PAGESIZE);

    if (fstat(fd, &st) < 0 || st.st_size == 0 || fdatasync(fd) < 0) {
        return false;
    }
    for (int attempt = 0; attempt < 50; attempt++) {
        size_t pages = (st.st_size + page - 1) / page;
        unsigned char *vec = g_malloc(pages);
        void *map;
        bool resident = false;

        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        map = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED || mincore(map, st.st_size, vec) < 0) {
            resident = true;
        }
        for (size_t i = 0; !resident && i < pages; i++) {
            resident = vec[i] & 1;
        }
        if (map != MAP_FAILED) {
            munmap(map, st.st_size);
        }
        g_free(vec);
        if (!resident) {
            return true;
        }
        g_usleep(20000);
    }
    return false;
}

/*
 * S2E_SNAPSHOT_READ_NOWAIT against the real page cache: with the file's
 * pages evicted it gives the data or -EAGAIN, never an error; the same
 * read without the flag fetches them, and then NOWAIT serves them.  (The
 * -EAGAIN path itself: test-snapshot-faults, nowait_gives_way.)
 */
static void test_readv_nowait(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    TuRun runs[] = { { 64, 256 } };
    TuSpec spec = { .vm_size = 0, .disk_sectors = 4096, .runs = runs,
                    .nruns = 1, .seed = 7, .zlib_level = -1 };
    uint8_t *got = g_malloc(256 * 512), *want = g_malloc(256 * 512);
    struct iovec iov = { .iov_base = got, .iov_len = 256 * 512 };
    GError *err = NULL;
    int fd, ret;

    fixture_init(&f);
    path = snap_path(&f, "nowait");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f.id));
    snap = open_ok(path, &f.id);
    fd = open(path, O_RDONLY);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(evict_from_page_cache(fd));
    /* The kernel starts reading ahead for a NOWAIT read it cannot serve,
     * and a fast disk may be done before it looks again: either way the
     * read did not wait long, and gives data or gives way. */
    ret = s2e_snapshot_readv(snap, 64, 256, &iov, 1,
                             S2E_SNAPSHOT_READ_NOWAIT, NULL, NULL, &err);
    CU_ASSERT(ret == 0 || ret == -EAGAIN);
    CU_ASSERT_PTR_NULL(err);
    CU_ASSERT_EQUAL(s2e_snapshot_readv(snap, 64, 256, &iov, 1, 0, NULL, NULL,
                                       NULL), 0);
    tu_sectors_fill(want, 64, 256, 7);
    CU_ASSERT(memcmp(got, want, 256 * 512) == 0);
    memset(got, 0, 256 * 512);
    CU_ASSERT_EQUAL(s2e_snapshot_readv(snap, 64, 256, &iov, 1,
                                       S2E_SNAPSHOT_READ_NOWAIT, NULL, NULL,
                                       NULL), 0);
    CU_ASSERT(memcmp(got, want, 256 * 512) == 0);
    close(fd);
    s2e_snapshot_close(snap);
    g_free(got);
    g_free(want);
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

/* ---- Zero extents ------------------------------------------------------- */

/* Expect @kind for the run at @sector with @max, of length @want. */
static void expect_kind(const S2ESnapshot *snap, uint64_t sector,
                        uint64_t max, S2EExtentKind kind,
                        uint64_t want)
{
    uint64_t n = 12345;
    S2EExtentKind got = s2e_snapshot_extent_kind(snap, sector, max, &n);

    if (got != kind || n != want) {
        fprintf(stderr, "\nsector %" G_GUINT64_FORMAT ": kind %d count %"
                G_GUINT64_FORMAT ", want kind %d count %" G_GUINT64_FORMAT
                "\n", sector, got, n, kind, want);
    }
    CU_ASSERT_EQUAL(got, kind);
    CU_ASSERT_EQUAL(n, want);
}

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

/* The runs s2e_snapshot_readv() reports as absent. */
typedef struct AbsentLog {
    uint64_t sector[256], count[256];
    int n;
} AbsentLog;

static int log_absent(void *opaque, uint64_t sector, uint64_t count,
                      GError **error)
{
    AbsentLog *log = opaque;

    CU_ASSERT_FATAL(log->n < 256);
    log->sector[log->n] = sector;
    log->count[log->n++] = count;
    return 0;
}

/* A vector over @buf of random element sizes (some empty, most not
 * multiples of a sector): the element count. */
static int random_vector(S2ETestRng *rng, uint8_t *buf, size_t len,
                         struct iovec *iov, int max)
{
    size_t off = 0;
    int n = 0;

    while (off < len && n < max - 1) {
        size_t piece = MIN(len - off, s2e_test_rng_below(rng, 5000));
        iov[n].iov_base = buf + off;
        iov[n++].iov_len = piece;
        off += piece;
    }
    iov[n].iov_base = buf + off;
    iov[n++].iov_len = len - off;
    return n;
}

/*
 * s2e_snapshot_readv() on a fresh handle (so every block is verified
 * through the vector), against the shadow model (0 absent, 1 data, 2
 * zero): data and zeroes where held, absent sectors untouched and
 * reported as maximal runs in order, whatever the vector's shape.
 */
static void check_readv_against_shadow(const char *path,
                                       const uint8_t *shadow, uint64_t disk,
                                       uint64_t seed, S2ETestRng *rng)
{
    S2ESnapshot *snap = s2e_snapshot_open(path, NULL, NULL, NULL);
    uint8_t *got = g_malloc(200 * 512), *want = g_malloc(200 * 512);
    struct iovec iov[100];

    CU_ASSERT_PTR_NOT_NULL_FATAL(snap);
    for (int i = 0; i < 300; i++) {
        uint64_t s = s2e_test_rng_below(rng, disk);
        uint64_t count = 1 + s2e_test_rng_below(rng, MIN(200, disk - s));
        int cnt = random_vector(rng, got, count * 512, iov, 100);
        AbsentLog log = { .n = 0 };
        int runs = 0;

        memset(got, 0xee, count * 512);
        tu_sectors_fill(want, s, count, seed);
        /* Just written, so cached: NOWAIT reads it too. */
        CU_ASSERT_EQUAL_FATAL(s2e_snapshot_readv(snap, s, count, iov, cnt,
                                                 i % 2 ? S2E_SNAPSHOT_READ_NOWAIT
                                                       : 0,
                                                 log_absent, &log, NULL), 0);
        for (uint64_t k = 0; k < count; k++) {
            uint64_t end = k;

            if (shadow[s + k] != 1) {
                memset(want + k * 512, shadow[s + k] ? 0 : 0xee, 512);
            }
            if (shadow[s + k] != 0 || (k > 0 && shadow[s + k - 1] == 0)) {
                continue;
            }
            while (end < count && shadow[s + end] == 0) {
                end++;
            }
            if (runs < log.n) {
                CU_ASSERT_EQUAL(log.sector[runs], s + k);
                CU_ASSERT_EQUAL(log.count[runs], end - k);
            }
            runs++;
        }
        CU_ASSERT_EQUAL(log.n, runs);
        CU_ASSERT(memcmp(got, want, count * 512) == 0);
    }
    /* A vector shorter than the range is refused. */
    iov[0] = (struct iovec){ .iov_base = got, .iov_len = 511 };
    CU_ASSERT_EQUAL(s2e_snapshot_readv(snap, 0, 1, iov, 1, 0, NULL, NULL,
                                       NULL), -EINVAL);
    s2e_snapshot_close(snap);
    g_free(got);
    g_free(want);
}

/* Data and zero runs, interleaved with VM state, against a shadow of the
 * disk: what each sector reads as (0 none, 1 data, 2 zero). */
static void test_zero_mixed_roundtrip(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    S2ESnapshotWriter *w;
    S2ESnapshotLayout l;
    S2ESnapshotInfo info = { .icount = 1 };
    const S2ESnapExtent *e;
    uint64_t disk = 100000, n, seed = s2e_test_seed();
    uint8_t *shadow = g_malloc0(disk);
    uint8_t *buf = g_malloc(64 * 512);
    uint8_t vm[3000];
    uint64_t pos = 0, sector = 0, data_total = 0, zero_total = 0;
    S2ETestRng rng;

    fixture_init(&f);
    path = snap_path(&f, "zeroes");
    w = s2e_snapshot_writer_new(f.dir, &f.id, disk, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_set_chunk_size(w, 4096, NULL), 0);
    s2e_test_rng_init(&rng, seed);
    while (sector < disk) {
        uint64_t gap = s2e_test_rng_below(&rng, 3) == 0
                       ? 0 : s2e_test_rng_below(&rng, 100);
        uint64_t count = 1 + s2e_test_rng_below(&rng, 64);
        bool zero = s2e_test_rng_below(&rng, 2);

        sector += gap;
        if (sector >= disk) {
            break;
        }
        count = MIN(count, disk - sector);
        if (zero) {
            CU_ASSERT_EQUAL_FATAL(s2e_snapshot_writer_add_zero_sectors(
                                      w, sector, count, NULL), 0);
            zero_total += count;
        } else {
            tu_sectors_fill(buf, sector, count, seed);
            CU_ASSERT_EQUAL_FATAL(s2e_snapshot_writer_add_sectors(
                                      w, sector, count, buf, NULL), 0);
            data_total += count;
        }
        memset(shadow + sector, zero ? 2 : 1, count);
        sector += count;
        if (s2e_test_rng_below(&rng, 8) == 0) {
            tu_vmstate_fill(vm, pos, sizeof(vm), seed);
            CU_ASSERT_EQUAL(s2e_snapshot_writer_put_vmstate(w, pos, vm,
                                                            sizeof(vm), NULL),
                            0);
            pos += sizeof(vm);
        }
    }
    CU_ASSERT_EQUAL_FATAL(s2e_snapshot_writer_commit(w, path, &info, NULL), 0);

    snap = open_ok(path, &f.id);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->dirty_sectors,
                    data_total + zero_total);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->zero_sectors, zero_total);
    s2e_snapshot_get_layout(snap, &l);
    CU_ASSERT_EQUAL(l.incompatible_features,
                    zero_total ? S2E_SNAP_INCOMPAT_ZERO_EXTENTS : 0);
    CU_ASSERT_EQUAL(l.compatible_features, 0);
    /* Only data takes file space: header, data, VM state, indexes. */
    CU_ASSERT(l.file_size < 4096 + data_total * 512 + pos + 4096 +
                            l.extent_count * (32 + 4096) +
                            l.chunk_count * 24);
    e = s2e_snapshot_extents(snap, &n);
    CU_ASSERT_EQUAL(n, l.extent_count);
    {
        uint64_t zeros = 0;
        for (uint64_t i = 0; i < n; i++) {
            bool z = e[i].flags & S2E_SNAP_EXTENT_ZERO;
            zeros += z;
            if (z) {
                CU_ASSERT_EQUAL(e[i].offset, 0);
                CU_ASSERT_EQUAL(e[i].crc, 0);
            }
            /* Adjacent zero runs were merged. */
            if (i > 0 && z && (e[i - 1].flags & S2E_SNAP_EXTENT_ZERO)) {
                CU_ASSERT(e[i - 1].sector + e[i - 1].count < e[i].sector);
            }
        }
        CU_ASSERT_EQUAL(zeros, l.zero_extent_count);
    }

    /* Walk the disk with extent_kind() and extent(); read every run. */
    for (uint64_t s = 0; s < disk;) {
        uint64_t max = 1 + s2e_test_rng_below(&rng, 200), k;
        S2EExtentKind kind = s2e_snapshot_extent_kind(snap, s, max, &n);
        bool held = s2e_snapshot_extent(snap, s, max, &k);

        CU_ASSERT_FATAL(n >= 1 && n <= max);
        CU_ASSERT_EQUAL(held, kind != S2E_EXTENT_ABSENT);
        CU_ASSERT(k >= n);        /* extent() also spans the other kind */
        for (uint64_t i = 0; i < n && s + i < disk; i++) {
            CU_ASSERT_EQUAL_FATAL(shadow[s + i], (uint8_t)kind);
        }
        if (s + n < disk && n < max) {
            CU_ASSERT_NOT_EQUAL(shadow[s + n], (uint8_t)kind);
        }
        for (uint64_t i = 0; i < k && s + i < disk; i++) {
            CU_ASSERT_EQUAL_FATAL(shadow[s + i] != 0, held);
        }
        if (kind == S2E_EXTENT_DATA) {
            check_sectors(snap, s, MIN(n, 64), seed);
        } else if (kind == S2E_EXTENT_ZERO) {
            memset(buf, 0xee, 64 * 512);
            CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, s, MIN(n, 64),
                                                      buf, NULL), 0);
            CU_ASSERT(all_zero(buf, MIN(n, 64) * 512));
        }
        s += n;
    }
    /* Reads across runs of both kinds. */
    for (int i = 0; i < 200; i++) {
        uint64_t s = s2e_test_rng_below(&rng, disk - 64);
        uint64_t held;
        uint8_t *want = g_malloc(64 * 512);

        s2e_snapshot_extent(snap, s, 64, &held);
        if (shadow[s] == 0) {
            g_free(want);
            continue;
        }
        tu_sectors_fill(want, s, held, seed);
        for (uint64_t k = 0; k < held; k++) {
            if (shadow[s + k] == 2) {
                memset(want + k * 512, 0, 512);
            }
        }
        memset(buf, 0xee, 64 * 512);
        CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, s, held, buf, NULL),
                        0);
        CU_ASSERT(memcmp(buf, want, held * 512) == 0);
        g_free(want);
    }
    check_readv_against_shadow(path, shadow, disk, seed, &rng);
    check_vmstate_at(snap, pos, seed, 0, (size_t)pos);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    s2e_snapshot_close(snap);
    g_free(shadow);
    g_free(buf);
    g_free(path);
    fixture_fini(&f);
}

/* Exact merging and splitting of runs, and the kind queries at edges. */
static void test_zero_merge_rules(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    S2ESnapshotWriter *w;
    S2ESnapshotInfo info = { 0 };
    const S2ESnapExtent *e;
    uint8_t data[16 * 512];
    uint64_t n;

    fixture_init(&f);
    path = snap_path(&f, "merge0");
    w = s2e_snapshot_writer_new(f.dir, &f.id, 1000, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    /* The file's data ends at 4096 + 8 * 512: a zero extent with offset 0
     * and 8 sectors would "continue" it if kinds were not compared. */
    tu_sectors_fill(data, 0, 16, 3);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 0, 4, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 4, 4, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, 8, 8, data, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 16, 0, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 16, 4, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, 20, 4, data, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 30, 10, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 40, 960, NULL),
                    0);                                /* to the disk end */
    CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, path, &info, NULL), 0);

    snap = open_ok(path, &f.id);
    e = s2e_snapshot_extents(snap, &n);
    CU_ASSERT_EQUAL_FATAL(n, 5);
    CU_ASSERT(e[0].sector == 0 && e[0].count == 8 && e[0].flags == 1);
    CU_ASSERT(e[1].sector == 8 && e[1].count == 8 && e[1].flags == 0);
    CU_ASSERT(e[2].sector == 16 && e[2].count == 4 && e[2].flags == 1);
    CU_ASSERT(e[3].sector == 20 && e[3].count == 4 && e[3].flags == 0);
    CU_ASSERT(e[4].sector == 30 && e[4].count == 970 && e[4].flags == 1);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->dirty_sectors, 994);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->zero_sectors, 982);

    expect_kind(snap, 0, 100, S2E_EXTENT_ZERO, 8);
    expect_kind(snap, 3, 100, S2E_EXTENT_ZERO, 5);
    expect_kind(snap, 3, 2, S2E_EXTENT_ZERO, 2);
    expect_kind(snap, 8, 100, S2E_EXTENT_DATA, 8);
    expect_kind(snap, 15, 100, S2E_EXTENT_DATA, 1);
    expect_kind(snap, 16, 100, S2E_EXTENT_ZERO, 4);
    expect_kind(snap, 20, 100, S2E_EXTENT_DATA, 4);
    expect_kind(snap, 24, 100, S2E_EXTENT_ABSENT, 6);
    expect_kind(snap, 24, 3, S2E_EXTENT_ABSENT, 3);
    expect_kind(snap, 30, UINT64_MAX, S2E_EXTENT_ZERO, 970);
    expect_kind(snap, 999, 5, S2E_EXTENT_ZERO, 1);
    expect_kind(snap, 1000, 5, S2E_EXTENT_ABSENT, 5);
    expect_kind(snap, UINT64_MAX, 5, S2E_EXTENT_ABSENT, 5);
    expect_kind(snap, 0, 0, S2E_EXTENT_ABSENT, 0);
    /* The bool query spans both kinds: sectors 0..23 are all held. */
    CU_ASSERT(s2e_snapshot_extent(snap, 0, 100, &n));
    CU_ASSERT_EQUAL(n, 24);
    CU_ASSERT(s2e_snapshot_extent(snap, 30, 100, &n));
    CU_ASSERT_EQUAL(n, 100);
    CU_ASSERT(!s2e_snapshot_extent(snap, 24, 100, &n));
    CU_ASSERT_EQUAL(n, 6);
    {
        /* read_sectors over zero, data, zero, data. */
        uint8_t got[24 * 512], want[24 * 512];
        memset(want, 0, sizeof(want));
        memcpy(want + 8 * 512, data, 8 * 512);
        memcpy(want + 20 * 512, data, 4 * 512);
        memset(got, 0xee, sizeof(got));
        CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, 0, 24, got, NULL), 0);
        CU_ASSERT(memcmp(got, want, sizeof(got)) == 0);
        /* A hole is still refused. */
        CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, 20, 5, got, NULL),
                        -EINVAL);
    }
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    s2e_snapshot_close(snap);
    g_free(path);
    fixture_fini(&f);
}

/* Zero runs of 2^40 sectors (512 TiB) on a disk of 2^50 sectors cost an
 * index entry, not 512 TiB; queries and reads inside them work. */
static void test_zero_huge(void)
{
    Fixture f;
    char *path;
    S2ESnapshot *snap;
    S2ESnapshotWriter *w;
    S2ESnapshotInfo info = { 0 };
    S2ESnapshotLayout l;
    uint64_t disk = UINT64_C(1) << 50, big = UINT64_C(1) << 40;
    uint64_t at = (UINT64_C(1) << 41) + 3, n;
    uint8_t data[8 * 512], got[8 * 512];
    struct stat st;
    gint64 t0;

    fixture_init(&f);
    path = snap_path(&f, "huge");
    tu_sectors_fill(data, at - 8, 8, 9);
    w = s2e_snapshot_writer_new(f.dir, &f.id, disk, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    t0 = g_get_monotonic_time();
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 0, big, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, at - 8, 8, data, NULL),
                    0);
    /* Two adjacent halves merge into one 2^40 extent. */
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, at, big / 2,
                                                         NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, at + big / 2,
                                                         big / 2, NULL), 0);
    /* And the rest of the disk. */
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(
                        w, at + big + 1, disk - (at + big + 1), NULL), 0);
    CU_ASSERT(g_get_monotonic_time() - t0 < 1000000);   /* no data loop */
    CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, path, &info, NULL), 0);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT(st.st_size <= 4096 + 8192 + 4 * 32);

    snap = open_ok(path, &f.id);
    s2e_snapshot_get_layout(snap, &l);
    CU_ASSERT_EQUAL(l.extent_count, 4);
    CU_ASSERT_EQUAL(l.zero_extent_count, 3);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->disk_sectors, disk);
    /* Holes: [big, at - 8) and at + big. */
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->dirty_sectors,
                    disk - (at - 8 - big) - 1);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->zero_sectors,
                    disk - (at - 8 - big) - 1 - 8);
    expect_kind(snap, 0, UINT64_MAX, S2E_EXTENT_ZERO, big);
    expect_kind(snap, big - 1, UINT64_MAX, S2E_EXTENT_ZERO, 1);
    expect_kind(snap, big, UINT64_MAX, S2E_EXTENT_ABSENT,
                at - 8 - big);
    expect_kind(snap, at - 8, UINT64_MAX, S2E_EXTENT_DATA, 8);
    expect_kind(snap, at, UINT64_MAX, S2E_EXTENT_ZERO, big);
    expect_kind(snap, at + 12345, 10, S2E_EXTENT_ZERO, 10);
    expect_kind(snap, at + big, UINT64_MAX, S2E_EXTENT_ABSENT, 1);
    expect_kind(snap, at + big + 1, UINT64_MAX, S2E_EXTENT_ZERO,
                disk - (at + big + 1));
    CU_ASSERT(s2e_snapshot_extent(snap, at - 8, UINT64_MAX, &n));
    CU_ASSERT_EQUAL(n, 8 + big);
    memset(got, 0xee, sizeof(got));
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, at + big - 8, 8, got,
                                              NULL), 0);
    CU_ASSERT(all_zero(got, sizeof(got)));
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, disk - 8, 8, got, NULL),
                    0);
    CU_ASSERT(all_zero(got, sizeof(got)));
    check_sectors(snap, at - 8, 8, 9);
    t0 = g_get_monotonic_time();
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    CU_ASSERT(g_get_monotonic_time() - t0 < 1000000);
    s2e_snapshot_close(snap);
    g_free(path);
    fixture_fini(&f);
}

/* add_zero_sectors() follows the rules of add_sectors(). */
static void test_zero_writer_errors(void)
{
    Fixture f;
    char *path;
    S2ESnapshotWriter *w;
    S2ESnapshotInfo info = { 0 };
    GError *err = NULL;
    uint8_t buf[512] = { 0 };
    S2ESnapshot *snap;
    S2ESnapshotLayout l;

    fixture_init(&f);
    path = snap_path(&f, "zargs");
    w = s2e_snapshot_writer_new(f.dir, &f.id, 100, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 10, 5, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 14, 1, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "order", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, 12, 1, buf, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "order", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_sectors(w, 15, 1, buf, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 15, 1, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "order", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 99, 2, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "outside", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 100, 1, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "outside", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 20, UINT64_MAX,
                                                         &err), -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "outside", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 5, 0, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(NULL, 5, 1, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, NULL);
    /* Still usable after argument errors. */
    CU_ASSERT_EQUAL(s2e_snapshot_writer_add_zero_sectors(w, 99, 1, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, path, &info, NULL), 0);
    snap = open_ok(path, &f.id);
    s2e_snapshot_get_layout(snap, &l);
    CU_ASSERT_EQUAL(l.extent_count, 3);
    CU_ASSERT_EQUAL(s2e_snapshot_get_info(snap)->zero_sectors, 6);
    s2e_snapshot_close(snap);
    g_free(path);
    fixture_fini(&f);
}

/* Without zero extents the file is what readers before them accept:
 * no incompatible feature bit, extent flags all 0. */
static void test_zero_absent_keeps_format(void)
{
    Fixture f;
    char *path;
    TuRun runs[] = { { 1, 3 }, { 9, 1 } };
    TuSpec spec = { .vm_size = 100, .disk_sectors = 64, .runs = runs,
                    .nruns = 2, .seed = 4, .zlib_level = -1 };
    uint8_t *b;
    size_t len;
    uint64_t ei;

    fixture_init(&f);
    path = snap_path(&f, "plain");
    CU_ASSERT_FATAL(tu_write_snapshot(path, &spec, &f.id));
    b = tu_read_file(path, &len);
    CU_ASSERT_EQUAL(s2e_snap_get_le64(b + HDR_INCOMPAT), 0);
    ei = s2e_snap_get_le64(b + HDR_EXTENT_INDEX_OFFSET);
    CU_ASSERT_EQUAL(s2e_snap_get_le32(b + ei + 28), 0);
    CU_ASSERT_EQUAL(s2e_snap_get_le32(b + ei + 32 + 28), 0);
    g_free(b);
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

/* A snapshot holds guest RAM: its file never grants more than the base's
 * read/write bits (0600 when they are unknown), less the umask. */
static void expect_mode(Fixture *f, uint32_t base_mode, mode_t mask,
                        mode_t want)
{
    char *path = snap_path(f, "mode");
    S2EBaseIdentity id = f->id;
    TuSpec spec = { .vm_size = 100, .disk_sectors = 8, .zlib_level = -1 };
    struct stat st;
    mode_t old;

    id.mode = base_mode;
    unlink(path);
    old = umask(mask);
    CU_ASSERT(tu_write_snapshot(path, &spec, &id));
    umask(old);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    if ((st.st_mode & 07777) != want) {
        fprintf(stderr, "\nbase %o umask %o: snapshot %o, want %o\n",
                base_mode, mask, st.st_mode & 07777, want);
    }
    CU_ASSERT_EQUAL(st.st_mode & 07777, want);
    g_free(path);
}

static void test_writer_mode_follows_base(void)
{
    Fixture f;
    struct stat st;

    fixture_init(&f);
    CU_ASSERT_EQUAL(stat(f.image, &st), 0);
    CU_ASSERT_EQUAL(f.id.mode, st.st_mode & 07777);
    expect_mode(&f, 0600, 0, 0600);
    expect_mode(&f, 0640, 0, 0640);
    expect_mode(&f, 0400, 0, 0400);
    expect_mode(&f, 04755, 0, 0644);    /* no execute or special bits */
    expect_mode(&f, 0666, 022, 0644);
    expect_mode(&f, 0, 0, 0600);        /* unknown: a remote base */
    fixture_fini(&f);
}

/* ---- Temporary files of dead writers ------------------------------------ */

static char *write_small(Fixture *f, const char *name);

/* A pid that no longer exists: a child that exited and was reaped. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();

    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        _exit(0);
    }
    CU_ASSERT_EQUAL_FATAL(waitpid(pid, NULL, 0), pid);
    return pid;
}

static char *touch_in(const char *dir, const char *name)
{
    char *path = g_build_filename(dir, name, NULL);

    tu_write_file(path, "partial", 7);
    return path;
}

/* The writer's temporary file names its creator: host, PID namespace, pid. */
static void test_temp_names(void)
{
    Fixture f;
    S2ESnapshotWriter *w;
    char *base, *host = NULL, *host2 = NULL, *name;
    uint64_t ns = 0, ns2;
    pid_t pid = 0, pid2;
    char longname[300];

    fixture_init(&f);
    w = s2e_snapshot_writer_new(f.dir, &f.id, 8, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    base = g_path_get_basename(s2e_snapshot_writer_temp_path(w));
    CU_ASSERT(g_str_has_prefix(base, ".s2e-snapshot."));
    CU_ASSERT(strlen(base) <= S2E_SNAP_TEMP_NAME_MAX);
    CU_ASSERT_FATAL(s2e_snap_temp_name_parse(base, &host, &ns, &pid));
    CU_ASSERT_EQUAL(pid, getpid());
    CU_ASSERT(ns > 0);
    {
        char h[256] = "";
        gethostname(h, sizeof(h) - 1);
        /* Plain host names are kept as they are. */
        if (strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789._-") == strlen(h) && strlen(h) <= 64 &&
            h[0]) {
            CU_ASSERT_STRING_EQUAL(host, h);
        }
    }
    CU_ASSERT(s2e_snap_is_temp_name(base));
    CU_ASSERT(s2e_snap_is_temp_name(".s2e-snapshot-AbC123"));
    CU_ASSERT(!s2e_snap_is_temp_name("disk.raw.s2e.ready"));
    s2e_snapshot_writer_abort(w);

    /* Another name for another pid differs only in pid and random part. */
    name = s2e_snap_temp_name_for_pid(12345);
    CU_ASSERT_FATAL(s2e_snap_temp_name_parse(name, &host2, &ns2, &pid2));
    CU_ASSERT_STRING_EQUAL(host, host2);
    CU_ASSERT_EQUAL(ns, ns2);
    CU_ASSERT_EQUAL(pid2, 12345);
    g_free(name);
    g_free(host2);

    /* Host names with dots and hex-encoded ones split from the right. */
    CU_ASSERT_FATAL(s2e_snap_temp_name_parse(
        ".s2e-snapshot.node1.example.org.4026531836.77.aB3dE9", &host2,
        &ns2, &pid2));
    CU_ASSERT_STRING_EQUAL(host2, "node1.example.org");
    CU_ASSERT_EQUAL(ns2, UINT64_C(4026531836));
    CU_ASSERT_EQUAL(pid2, 77);
    g_free(host2);
    CU_ASSERT_FATAL(s2e_snap_temp_name_parse(".s2e-snapshot.=2f61.1.2.abcdef",
                                             &host2, &ns2, &pid2));
    CU_ASSERT_STRING_EQUAL(host2, "=2f61");
    g_free(host2);
    /* Not temporary file names of this scheme. */
    {
        static const char *const bad[] = {
            ".s2e-snapshot-AbC123",               /* the old scheme */
            ".s2e-snapshot.h.1.0.abcdef",         /* pid 0 */
            ".s2e-snapshot.h.1.-1.abcdef",
            ".s2e-snapshot.h.1.2147483648.abcdef", /* > INT_MAX */
            ".s2e-snapshot.h.1.99999999999.abcdef",
            ".s2e-snapshot.h.0.5.abcdef",         /* PID namespace 0 */
            ".s2e-snapshot.h.99999999999999999999.5.abcdef",
            ".s2e-snapshot..1.5.abcdef",          /* no host */
            ".s2e-snapshot.1.5.abcdef",
            ".s2e-snapshot.h.1.5.abcde",          /* random part size */
            ".s2e-snapshot.h.1.5.abcdefg",
            ".s2e-snapshot.h.1.5.abc.ef",
            ".s2e-snapshot.h.1.5x.abcdef",
            "s2e-snapshot.h.1.5.abcdef",
            "",
        };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
            bool ok = s2e_snap_temp_name_parse(bad[i], &host2, &ns2, &pid2);
            if (ok) {
                fprintf(stderr, "\naccepted '%s'\n", bad[i]);
                g_free(host2);
            }
            CU_ASSERT_FALSE(ok);
        }
    }
    memset(longname, 'h', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    memcpy(longname, ".s2e-snapshot.", 14);
    memcpy(longname + sizeof(longname) - 1 - 11, ".1.5.abcdef", 11);
    CU_ASSERT_FALSE(s2e_snap_temp_name_parse(longname, &host2, &ns2, &pid2));

    g_free(host);
    g_free(base);
    fixture_fini(&f);
}

/* A new writer removes the temporary files of dead processes of this host
 * and PID namespace, and nothing else. */
static void test_temp_stale_removed(void)
{
    Fixture f;
    S2ESnapshotWriter *w;
    pid_t dead = dead_pid();
    char *host = NULL, *probe = s2e_snap_temp_name_for_pid(dead);
    uint64_t ns = 0;
    pid_t p;
    char *stale, *stale2, *live_self, *live_parent, *other_host, *other_ns,
         *legacy, *link, *dirname, *target, *n;

    CU_ASSERT_FATAL(s2e_snap_temp_name_parse(probe, &host, &ns, &p));
    fixture_init(&f);
    stale = touch_in(f.dir, probe);
    n = s2e_snap_temp_name_for_pid(dead);
    stale2 = touch_in(f.dir, n);
    g_free(n);
    n = s2e_snap_temp_name_for_pid(getpid());
    live_self = touch_in(f.dir, n);
    g_free(n);
    n = s2e_snap_temp_name_for_pid(getppid());
    live_parent = touch_in(f.dir, n);
    g_free(n);
    n = g_strdup_printf(".s2e-snapshot.other-host.example.%" G_GUINT64_FORMAT
                        ".%d.abcdef", ns, (int)dead);
    other_host = touch_in(f.dir, n);
    g_free(n);
    n = g_strdup_printf(".s2e-snapshot.%s.%" G_GUINT64_FORMAT ".%d.abcdef",
                        host, ns + 1, (int)dead);
    other_ns = touch_in(f.dir, n);
    g_free(n);
    legacy = touch_in(f.dir, ".s2e-snapshot-AbC123");
    /* A symbolic link and a directory named like stale files. */
    target = touch_in(f.dir, "target");
    n = s2e_snap_temp_name_for_pid(dead);
    link = g_build_filename(f.dir, n, NULL);
    CU_ASSERT_EQUAL_FATAL(symlink(target, link), 0);
    g_free(n);
    n = s2e_snap_temp_name_for_pid(dead);
    dirname = g_build_filename(f.dir, n, NULL);
    CU_ASSERT_EQUAL_FATAL(mkdir(dirname, 0755), 0);
    g_free(n);

    w = s2e_snapshot_writer_new(f.dir, &f.id, 8, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_FALSE(g_file_test(stale, G_FILE_TEST_EXISTS));
    CU_ASSERT_FALSE(g_file_test(stale2, G_FILE_TEST_EXISTS));
    CU_ASSERT(g_file_test(live_self, G_FILE_TEST_IS_REGULAR));
    CU_ASSERT(g_file_test(live_parent, G_FILE_TEST_IS_REGULAR));
    CU_ASSERT(g_file_test(other_host, G_FILE_TEST_IS_REGULAR));
    CU_ASSERT(g_file_test(other_ns, G_FILE_TEST_IS_REGULAR));
    CU_ASSERT(g_file_test(legacy, G_FILE_TEST_IS_REGULAR));
    CU_ASSERT(g_file_test(link, G_FILE_TEST_IS_SYMLINK));
    CU_ASSERT(g_file_test(target, G_FILE_TEST_IS_REGULAR));
    CU_ASSERT(g_file_test(dirname, G_FILE_TEST_IS_DIR));
    CU_ASSERT(g_file_test(s2e_snapshot_writer_temp_path(w),
                          G_FILE_TEST_IS_REGULAR));
    /* 8 left: live_self, live_parent, other host and namespace, link,
     * directory, the writer's own; legacy uses the old prefix. */
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, S2E_SNAP_TEMP_PREFIX), 7);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, S2E_SNAP_TEMP_PREFIX_OLD), 1);
    /* A live writer's file is not removed by another writer. */
    {
        S2ESnapshotWriter *w2 = s2e_snapshot_writer_new(f.dir, &f.id, 8,
                                                        NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w2);
        CU_ASSERT(g_file_test(s2e_snapshot_writer_temp_path(w),
                              G_FILE_TEST_IS_REGULAR));
        s2e_snapshot_writer_abort(w2);
    }
    s2e_snapshot_writer_abort(w);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, S2E_SNAP_TEMP_PREFIX), 6);

    g_free(stale);
    g_free(stale2);
    g_free(live_self);
    g_free(live_parent);
    g_free(other_host);
    g_free(other_ns);
    g_free(legacy);
    g_free(link);
    g_free(dirname);
    g_free(target);
    g_free(probe);
    g_free(host);
    fixture_fini(&f);
}

/* The real case: a process killed with SIGKILL in the middle of a savevm
 * leaves its temporary file; the next writer in the directory removes it,
 * and listing never shows it. */
static void test_temp_killed_writer(void)
{
    Fixture f;
    S2ESnapshotWriter *w;
    GPtrArray *list;
    int fds[2];
    pid_t child;
    char c;

    fixture_init(&f);
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    child = fork();
    CU_ASSERT_FATAL(child >= 0);
    if (child == 0) {
        uint8_t buf[4096] = { 1 };
        S2ESnapshotWriter *cw = s2e_snapshot_writer_new(f.dir, &f.id, 64,
                                                        NULL);
        if (!cw || s2e_snapshot_writer_put_vmstate(cw, 0, buf, sizeof(buf),
                                                   NULL) < 0 ||
            s2e_snapshot_writer_add_sectors(cw, 0, 8, buf, NULL) < 0 ||
            write(fds[1], "x", 1) != 1) {
            _exit(1);
        }
        for (;;) {
            pause();
        }
    }
    close(fds[1]);
    CU_ASSERT_EQUAL_FATAL(read(fds[0], &c, 1), 1);
    close(fds[0]);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, S2E_SNAP_TEMP_PREFIX), 1);
    /* While it lives, its file stays. */
    w = s2e_snapshot_writer_new(f.dir, &f.id, 64, NULL);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, S2E_SNAP_TEMP_PREFIX), 2);
    s2e_snapshot_writer_abort(w);
    list = s2e_snapshot_list(f.image, NULL, NULL);
    CU_ASSERT_EQUAL(list->len, 0);
    g_ptr_array_unref(list);

    CU_ASSERT_EQUAL(kill(child, SIGKILL), 0);
    CU_ASSERT_EQUAL(waitpid(child, NULL, 0), child);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, S2E_SNAP_TEMP_PREFIX), 1);
    w = s2e_snapshot_writer_new(f.dir, &f.id, 64, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, S2E_SNAP_TEMP_PREFIX), 1);
    CU_ASSERT(g_file_test(s2e_snapshot_writer_temp_path(w),
                          G_FILE_TEST_IS_REGULAR));
    s2e_snapshot_writer_abort(w);
    CU_ASSERT_EQUAL(tu_count_prefix(f.dir, "."), 0);
    fixture_fini(&f);
}

/* Temporary files are never listed, even complete ones whose name matches
 * an image's prefix; snapshot file names may not look like them. */
static void test_temp_not_listed(void)
{
    Fixture f;
    char *snap, *image, *temp, *n;
    GPtrArray *list;
    GError *err = NULL;

    fixture_init(&f);
    snap = write_small(&f, "real");
    /* An image named so that temporary files start with its name. */
    image = tu_make_base(f.dir, ".s2e-snapshot", 4096, T0_SEC, T0_NSEC);
    n = s2e_snap_temp_name_for_pid(getpid());
    temp = g_build_filename(f.dir, n, NULL);
    tu_copy_file(snap, temp);                   /* header complete */
    list = s2e_snapshot_list(image, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(list);
    CU_ASSERT_EQUAL(list->len, 0);
    g_ptr_array_unref(list);
    list = s2e_snapshot_list(f.image, NULL, NULL);
    CU_ASSERT_EQUAL(list->len, 1);
    g_ptr_array_unref(list);
    CU_ASSERT_PTR_NULL(s2e_snapshot_path(image, NULL, "x", &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, "reserved", NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_delete(image, NULL, n + 14, &err), -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, NULL);
    CU_ASSERT(g_file_test(temp, G_FILE_TEST_IS_REGULAR));
    g_free(n);
    g_free(temp);
    g_free(image);
    g_free(snap);
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

/* Commit a small snapshot over @path; expect EXISTS naming @path, and
 * @path unchanged (same contents, same kind). */
static void expect_not_replaced(Fixture *f, const char *path,
                                const S2EBaseIdentity *id,
                                const char *needle)
{
    S2ESnapshotWriter *w = s2e_snapshot_writer_new(f->dir, id, 8, NULL);
    S2ESnapshotInfo info = { 0 };
    GError *err = NULL;
    struct stat before, after;

    CU_ASSERT_EQUAL_FATAL(lstat(path, &before), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(s2e_snapshot_writer_commit(w, path, &info, &err),
                    -EEXIST);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_EXISTS, path, "Refusing to "
                   "replace", needle, NULL);
    CU_ASSERT_EQUAL_FATAL(lstat(path, &after), 0);
    CU_ASSERT_EQUAL(after.st_ino, before.st_ino);
    CU_ASSERT_EQUAL(after.st_size, before.st_size);
    CU_ASSERT_EQUAL(after.st_mode, before.st_mode);
    CU_ASSERT_EQUAL(tu_count_prefix(f->dir, S2E_SNAP_TEMP_PREFIX), 0);
}

/* savevm NAME replaces only a snapshot of the same base image: never
 * another image that happens to be called IMAGE.NAME, a backup, a damaged
 * snapshot, a snapshot of another base, a link or a FIFO. */
static void test_writer_refuses_to_replace(void)
{
    Fixture f;
    char *path, *other_base;
    S2EBaseIdentity other;
    TuSpec spec = { .vm_size = 100, .disk_sectors = 8, .zlib_level = -1 };
    size_t len;
    uint8_t *data;

    fixture_init(&f);
    path = snap_path(&f, "v2");
    tu_write_file(path, "second VM base image v2\n", 24);
    expect_not_replaced(&f, path, &f.id, "not an s2e snapshot");
    data = tu_read_file(path, &len);
    CU_ASSERT(len == 24 && memcmp(data, "second VM", 9) == 0);
    g_free(data);

    /* A snapshot of another base (the same name in a shared directory). */
    unlink(path);
    other = f.id;
    other.mtime_nsec++;
    CU_ASSERT(tu_write_snapshot(path, &spec, &other));
    expect_not_replaced(&f, path, &f.id, "another base image");

    /* A damaged snapshot of this base. */
    unlink(path);
    CU_ASSERT(tu_write_snapshot(path, &spec, &f.id));
    CU_ASSERT_EQUAL(truncate(path, 4100), 0);
    expect_not_replaced(&f, path, &f.id, "truncated");

    /* A symbolic link to a snapshot of this base, and a FIFO. */
    unlink(path);
    other_base = snap_path(&f, "target");
    CU_ASSERT(tu_write_snapshot(other_base, &spec, &f.id));
    CU_ASSERT_EQUAL(symlink(other_base, path), 0);
    expect_not_replaced(&f, path, &f.id, "not a regular file");
    unlink(path);
    CU_ASSERT_EQUAL(mkfifo(path, 0644), 0);
    expect_not_replaced(&f, path, &f.id, "not a regular file");

    /* A snapshot of this base is replaced. */
    unlink(path);
    CU_ASSERT(tu_write_snapshot(path, &spec, &f.id));
    CU_ASSERT(tu_write_snapshot(path, &spec, &f.id));
    g_free(path);
    g_free(other_base);
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

/* The base identity comes from the file opened, and later checks catch
 * the file changed in place, replaced by another (mv), or renamed away. */
static void expect_base_file_stale(const S2EBaseFile *bf, const char *what)
{
    GError *err = NULL;

    CU_ASSERT_EQUAL(s2e_base_file_check(bf, &err), -ESTALE);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_BASE_CHANGED,
                   s2e_base_file_path(bf), what, NULL);
}

static S2EBaseFile *base_file_in(const Fixture *f)
{
    char *cwd = g_get_current_dir();
    S2EBaseFile *bf;

    /* Opened by a relative name: the path kept is absolute. */
    CU_ASSERT_EQUAL_FATAL(chdir(f->dir), 0);
    bf = s2e_base_file_open("disk.raw.s2e", NULL);
    CU_ASSERT_EQUAL(chdir(cwd), 0);
    g_free(cwd);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bf);
    CU_ASSERT_STRING_EQUAL(s2e_base_file_path(bf), f->image);
    return bf;
}

static void test_base_file(void)
{
    Fixture f;
    S2EBaseFile *bf;
    S2EBaseIdentity opened;
    char *other, *away;
    GError *err = NULL;

    fixture_init(&f);
    other = g_build_filename(f.dir, "new.raw", NULL);
    away = g_build_filename(f.dir, "old.raw", NULL);
    bf = base_file_in(&f);
    opened = *s2e_base_file_identity(bf);
    CU_ASSERT_EQUAL(opened.size, f.id.size);
    CU_ASSERT_EQUAL(opened.mtime_sec, f.id.mtime_sec);
    CU_ASSERT_EQUAL(opened.mtime_nsec, f.id.mtime_nsec);
    CU_ASSERT_EQUAL(s2e_base_file_check(bf, NULL), 0);

    /* mv new.raw disk.raw.s2e: same size and mtime, another file. */
    g_free(tu_make_base(f.dir, "new.raw", f.id.size, T0_SEC, T0_NSEC));
    CU_ASSERT_EQUAL(rename(other, f.image), 0);
    expect_base_file_stale(bf, "replaced while in use");
    CU_ASSERT_EQUAL(s2e_base_file_identity(bf)->size, opened.size);
    s2e_base_file_close(bf);

    /* Renamed away, then truncated in place, then touched. */
    bf = base_file_in(&f);
    CU_ASSERT_EQUAL(rename(f.image, away), 0);
    expect_base_file_stale(bf, "renamed or deleted");
    CU_ASSERT_EQUAL(rename(away, f.image), 0);
    CU_ASSERT_EQUAL(s2e_base_file_check(bf, NULL), 0);
    CU_ASSERT_EQUAL(truncate(f.image, f.id.size / 2), 0);
    tu_set_mtime(f.image, T0_SEC, T0_NSEC);
    expect_base_file_stale(bf, "changed while in use (size 1073741824 -> "
                           "536870912");
    s2e_base_file_close(bf);
    bf = base_file_in(&f);
    tu_set_mtime(f.image, T0_SEC, T0_NSEC + 1);
    expect_base_file_stale(bf, "changed while in use");
    s2e_base_file_close(bf);

    CU_ASSERT_PTR_NULL(s2e_base_file_open(other, &err));
    tu_check_error(err, S2E_SNAPSHOT_ERROR_NOT_FOUND, other, NULL);
    g_free(other);
    g_free(away);
    fixture_fini(&f);
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

/* Setting a snapshot aside: out of the listing and of its name, same
 * refusals as delete, put back on demand unless the name was taken. */
static void test_set_aside_and_restore(void)
{
    Fixture f;
    char *a = NULL, *path, *notes, *aside = NULL;
    GError *err = NULL;
    GPtrArray *list;

    fixture_init(&f);
    path = write_small(&f, "ready");
    notes = snap_path(&f, "notes");
    tu_write_file(notes, "not a snapshot\n", 15);
    CU_ASSERT_EQUAL(s2e_snapshot_set_aside(f.image, NULL, "notes", &a, &err),
                    -EINVAL);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_INVALID, notes, NULL);
    CU_ASSERT_PTR_NULL(a);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_set_aside(f.image, NULL, "none", &a, &err),
                    -ENOENT);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_NOT_FOUND, NULL);

    CU_ASSERT_EQUAL(s2e_snapshot_set_aside(f.image, NULL, "ready", &aside,
                                           NULL), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(aside);
    CU_ASSERT(strstr(aside, "/" S2E_SNAP_TEMP_PREFIX) != NULL);
    CU_ASSERT_FALSE(g_file_test(path, G_FILE_TEST_EXISTS));
    list = s2e_snapshot_list(f.image, NULL, NULL);
    CU_ASSERT_EQUAL(list->len, 0);
    g_ptr_array_unref(list);
    CU_ASSERT_EQUAL(s2e_snapshot_restore_aside(aside, f.image, NULL, "ready",
                                               NULL), 0);
    s2e_snapshot_close(open_ok(path, &f.id));
    g_free(aside);

    /* A new snapshot took the name: the old one stays aside. */
    CU_ASSERT_EQUAL(s2e_snapshot_set_aside(f.image, NULL, "ready", &aside,
                                           NULL), 0);
    g_free(write_small(&f, "ready"));
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_restore_aside(aside, f.image, NULL, "ready",
                                               &err), -EEXIST);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_EXISTS, aside, NULL);
    CU_ASSERT(g_file_test(aside, G_FILE_TEST_IS_REGULAR));
    g_free(aside);
    g_free(notes);
    g_free(path);
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

/* Opening a FIFO named like a snapshot must not block (it would until a
 * writer came): a child tries, with an alarm as a watchdog. */
static void test_fifo_never_blocks(void)
{
    Fixture f;
    char *path;
    GPtrArray *list;
    pid_t pid;
    int status;

    fixture_init(&f);
    path = snap_path(&f, "fifo");
    CU_ASSERT_EQUAL_FATAL(mkfifo(path, 0644), 0);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        GError *err = NULL;
        S2ESnapshot *snap;

        alarm(5);
        snap = s2e_snapshot_open(path, NULL, NULL, &err);
        _exit(!snap && err->code == S2E_SNAPSHOT_ERROR_BAD_MAGIC &&
              strstr(err->message, "not a regular file") ? 0 : 1);
    }
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    list = s2e_snapshot_list(f.image, NULL, NULL);
    CU_ASSERT_EQUAL(list->len, 0);
    g_ptr_array_unref(list);
    CU_ASSERT_EQUAL(s2e_snapshot_delete(f.image, NULL, "fifo", NULL),
                    -EINVAL);
    g_free(path);
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

/* ---- Errors ------------------------------------------------------------- */

/* The errno of each code, as snapshot.h documents it; the glue passes it
 * to QEMU, which shows it after "Failed to load snapshot: ". */
static void test_error_errno_table(void)
{
    static const struct {
        S2ESnapshotErrorCode code;
        int err;
    } table[] = {
        { S2E_SNAPSHOT_ERROR_IO, -EIO },
        { S2E_SNAPSHOT_ERROR_NOT_FOUND, -ENOENT },
        { S2E_SNAPSHOT_ERROR_TRUNCATED, -EIO },
        { S2E_SNAPSHOT_ERROR_BAD_MAGIC, -EINVAL },
        { S2E_SNAPSHOT_ERROR_BAD_VERSION, -ENOTSUP },
        { S2E_SNAPSHOT_ERROR_FEATURES, -ENOTSUP },
        { S2E_SNAPSHOT_ERROR_CHECKSUM, -EIO },
        { S2E_SNAPSHOT_ERROR_CORRUPT, -EINVAL },
        { S2E_SNAPSHOT_ERROR_BASE_CHANGED, -ESTALE },
        { S2E_SNAPSHOT_ERROR_INVALID, -EINVAL },
        { S2E_SNAPSHOT_ERROR_LIMIT, -EFBIG },
        { S2E_SNAPSHOT_ERROR_EXISTS, -EEXIST },
    };
    GError *other = g_error_new_literal(G_FILE_ERROR, G_FILE_ERROR_NOENT,
                                        "not ours");

    for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
        GError *e = g_error_new_literal(S2E_SNAPSHOT_ERROR, table[i].code,
                                        "x");
        CU_ASSERT_EQUAL(s2e_snapshot_error_errno(e), table[i].err);
        g_error_free(e);
    }
    CU_ASSERT_EQUAL(s2e_snapshot_error_errno(other), -EIO);
    CU_ASSERT_EQUAL(s2e_snapshot_error_errno(NULL), -EIO);
    g_error_free(other);
}

/* A function's return and the errno of the GError it sets agree. */
static void test_error_errno_matches_returns(void)
{
    char *dir = tu_tmpdir();
    char *image = g_build_filename(dir, "disk.s2e", NULL);
    char *missing = g_build_filename(dir, "disk.s2e.none", NULL);
    GError *err = NULL;
    int ret;

    CU_ASSERT_PTR_NULL(s2e_snapshot_open(missing, image, NULL, &err));
    CU_ASSERT_EQUAL(s2e_snapshot_error_errno(err), -ENOENT);
    g_clear_error(&err);
    ret = s2e_snapshot_delete(image, dir, "none", &err);
    CU_ASSERT_EQUAL(ret, -ENOENT);
    CU_ASSERT_EQUAL(s2e_snapshot_error_errno(err), ret);
    g_clear_error(&err);
    ret = s2e_snapshot_delete(image, dir, "a/b", &err);
    CU_ASSERT(ret < 0);
    CU_ASSERT_EQUAL(s2e_snapshot_error_errno(err), ret);
    g_clear_error(&err);
    g_free(missing);
    g_free(image);
    tu_rmtree(dir);
    g_free(dir);
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
    s2e_test_add(s, "default_is_raw", test_vmstate_default_is_raw);

    s = s2e_test_suite("sectors");
    s2e_test_add(s, "high", test_sectors_high);
    s2e_test_add(s, "readv_nowait", test_readv_nowait);
    s2e_test_add(s, "many_extents", test_sectors_many_extents);
    s2e_test_add(s, "merge_and_alignment", test_sectors_merge_and_alignment);
    s2e_test_add(s, "interleaved_and_info", test_interleaved_and_info);
    s2e_test_add(s, "empty_snapshot", test_empty_snapshot);
    s2e_test_add(s, "many_readers", test_many_readers);

    s = s2e_test_suite("zero");
    s2e_test_add(s, "mixed_roundtrip", test_zero_mixed_roundtrip);
    s2e_test_add(s, "merge_rules", test_zero_merge_rules);
    s2e_test_add(s, "huge", test_zero_huge);
    s2e_test_add(s, "writer_errors", test_zero_writer_errors);
    s2e_test_add(s, "absent_keeps_format", test_zero_absent_keeps_format);

    s = s2e_test_suite("writer");
    s2e_test_add(s, "argument_errors", test_writer_argument_errors);
    s2e_test_add(s, "temp_and_mode", test_writer_temp_and_mode);
    s2e_test_add(s, "mode_follows_base", test_writer_mode_follows_base);
    s2e_test_add(s, "replaces", test_writer_replaces);
    s2e_test_add(s, "refuses_to_replace", test_writer_refuses_to_replace);
    s2e_test_add(s, "zlib_env", test_writer_zlib_env);

    s = s2e_test_suite("temp");
    s2e_test_add(s, "names", test_temp_names);
    s2e_test_add(s, "stale_removed", test_temp_stale_removed);
    s2e_test_add(s, "killed_writer", test_temp_killed_writer);
    s2e_test_add(s, "not_listed", test_temp_not_listed);

    s = s2e_test_suite("identity");
    s2e_test_add(s, "same_second", test_identity_same_second);
    s2e_test_add(s, "size", test_identity_size);
    s2e_test_add(s, "touch_restore", test_identity_touch_restore);
    s2e_test_add(s, "copy", test_identity_copy);
    s2e_test_add(s, "no_mtime", test_identity_no_mtime);
    s2e_test_add(s, "errors_and_time", test_identity_errors_and_time);
    s2e_test_add(s, "base_file", test_base_file);

    s = s2e_test_suite("names");
    s2e_test_add(s, "path_building", test_path_building);
    s2e_test_add(s, "list_and_delete", test_list_and_delete);
    s2e_test_add(s, "list_snapshot_dir", test_list_snapshot_dir);
    s2e_test_add(s, "set_aside_and_restore", test_set_aside_and_restore);
    s2e_test_add(s, "fifo_never_blocks", test_fifo_never_blocks);

    s = s2e_test_suite("errors");
    s2e_test_add(s, "errno_table", test_error_errno_table);
    s2e_test_add(s, "errno_matches_returns", test_error_errno_matches_returns);
}
