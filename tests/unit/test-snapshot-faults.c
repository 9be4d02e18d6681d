/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fault injection into the snapshot writer and reader.
 *
 * A dry run of a writer scenario counts how often each I/O step happens;
 * then every step is failed in turn (first and last occurrence) with each
 * errno a disk can return (EIO, ENOSPC, EACCES, EROFS, EDQUOT) and with a
 * short write followed by ENOSPC.  Each time: the call fails with a message
 * naming the file, no temporary file is left, and the snapshot that was
 * already at the final path is byte for byte as it was.  A short write
 * followed by success must produce a good snapshot.  The only step after
 * the rename, the directory fsync, leaves the new snapshot in place and
 * says so.  The reader is failed at open and at each read.
 */
#include "snapshot-test-util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define VM_SIZE 20000
#define SEED 77

typedef struct Fault {
    S2ESnapIOStep step;
    int nth;            /* which call of @step (1-based); 0: never */
    int err;            /* negative errno to fail with, 0: none */
    bool short_first;   /* make call nth short, fail call nth + 1 */
    int calls[S2E_SNAP_IO__MAX];
    bool fired;
} Fault;

static int fault_fn(void *opaque, S2ESnapIOStep step, size_t *len)
{
    Fault *f = opaque;
    int n = ++f->calls[step];

    if (step != f->step || f->nth == 0) {
        return 0;
    }
    if (f->short_first) {
        if (n == f->nth && *len > 1) {
            *len /= 2;
            f->fired = true;
            return 0;
        }
        return n == f->nth + 1 ? f->err : 0;
    }
    if (n == f->nth) {
        f->fired = true;
        return f->err;
    }
    return 0;
}

static const TuRun runs[] = { { 3, 5 }, { 8, 8 }, { 1000, 40 } };

/* The writer scenario; returns the commit's result. */
static int run_writer(const char *dir, const char *final, Fault *f,
                      GError **error)
{
    S2ESnapIO io = { .fault = fault_fn, .opaque = f };
    S2EBaseIdentity id = { .size = 1 << 20, .has_mtime = true,
                           .mtime_sec = 5, .mtime_nsec = 6 };
    S2ESnapshotInfo info = { .name = "new", .icount = 1 };
    S2ESnapshotWriter *w = s2e_snapshot_writer_new_io(dir, &id, 2048, &io,
                                                      error);
    uint8_t buf[4096];
    int ret;

    if (!w) {
        return -1;
    }
    CU_ASSERT_EQUAL(s2e_snapshot_writer_set_chunk_size(w, 4096, NULL), 0);
    for (uint64_t pos = 0; pos < VM_SIZE; pos += 3000) {
        size_t n = MIN(3000, VM_SIZE - pos);
        tu_vmstate_fill(buf, pos, n, SEED);
        ret = s2e_snapshot_writer_put_vmstate(w, pos, buf, n, error);
        if (ret < 0) {
            /* Dead: the temporary file is already gone. */
            CU_ASSERT_EQUAL(tu_count_prefix(dir, S2E_SNAP_TEMP_PREFIX), 0);
            CU_ASSERT(s2e_snapshot_writer_put_vmstate(w, pos, buf, n,
                                                      NULL) < 0);
            s2e_snapshot_writer_abort(w);
            return ret;
        }
    }
    for (size_t i = 0; i < G_N_ELEMENTS(runs); i++) {
        for (uint64_t s = 0; s < runs[i].count; s += 8) {
            uint64_t n = MIN(8, runs[i].count - s);
            tu_sectors_fill(buf, runs[i].sector + s, n, SEED);
            ret = s2e_snapshot_writer_add_sectors(w, runs[i].sector + s, n,
                                                  buf, error);
            if (ret < 0) {
                CU_ASSERT_EQUAL(tu_count_prefix(dir, S2E_SNAP_TEMP_PREFIX),
                                0);
                s2e_snapshot_writer_abort(w);
                return ret;
            }
        }
    }
    return s2e_snapshot_writer_commit(w, final, &info, error);
}

/* The new snapshot at @path is complete and correct. */
static void check_new_snapshot(const char *path)
{
    GError *err = NULL;
    S2ESnapshot *snap = s2e_snapshot_open(path, NULL, NULL, &err);
    uint8_t got[VM_SIZE], want[VM_SIZE];

    if (!snap) {
        fprintf(stderr, "\n%s\n", err->message);
        g_error_free(err);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(snap);
    CU_ASSERT_STRING_EQUAL(s2e_snapshot_get_info(snap)->name, "new");
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 0, got, VM_SIZE, NULL),
                    0);
    tu_vmstate_fill(want, 0, VM_SIZE, SEED);
    CU_ASSERT(memcmp(got, want, VM_SIZE) == 0);
    for (size_t i = 0; i < G_N_ELEMENTS(runs); i++) {
        uint8_t *a = g_malloc(runs[i].count * 512);
        uint8_t *b = g_malloc(runs[i].count * 512);
        tu_sectors_fill(b, runs[i].sector, runs[i].count, SEED);
        CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, runs[i].sector,
                                                  runs[i].count, a, NULL), 0);
        CU_ASSERT(memcmp(a, b, runs[i].count * 512) == 0);
        g_free(a);
        g_free(b);
    }
    s2e_snapshot_close(snap);
}

typedef struct Scene {
    char *dir;
    char *final;
    uint8_t *old;
    size_t old_len;
} Scene;

/* A directory with an old snapshot at the final path. */
static void scene_init(Scene *s)
{
    S2EBaseIdentity id = { .size = 1 << 20 };
    TuSpec spec = { .vm_size = 5000, .disk_sectors = 64, .seed = 1,
                    .zlib_level = -1, .name = "old" };

    s->dir = tu_tmpdir();
    s->final = g_build_filename(s->dir, "disk.img.snap", NULL);
    CU_ASSERT_FATAL(tu_write_snapshot(s->final, &spec, &id));
    s->old = tu_read_file(s->final, &s->old_len);
}

static void scene_fini(Scene *s)
{
    tu_rmtree(s->dir);
    g_free(s->dir);
    g_free(s->final);
    g_free(s->old);
}

static void check_old_intact(const Scene *s)
{
    size_t len;
    uint8_t *now = tu_read_file(s->final, &len);

    CU_ASSERT_EQUAL(len, s->old_len);
    CU_ASSERT(len == s->old_len && memcmp(now, s->old, len) == 0);
    g_free(now);
}

static const char *const dir_steps_msg = "may not survive a crash";

/* Fail call @nth of @step with @err (after a short write when @shrt). */
static void inject(S2ESnapIOStep step, int nth, int err, bool shrt)
{
    Scene s;
    Fault f = { .step = step, .nth = nth, .err = err, .short_first = shrt };
    GError *error = NULL;
    int ret;

    scene_init(&s);
    ret = run_writer(s.dir, s.final, &f, &error);
    CU_ASSERT(f.fired);
    CU_ASSERT_EQUAL(tu_count_prefix(s.dir, S2E_SNAP_TEMP_PREFIX), 0);
    if (shrt && err == 0) {
        /* A short write that is then completed: a good snapshot. */
        CU_ASSERT_EQUAL(ret, 0);
        g_clear_error(&error);
        check_new_snapshot(s.final);
    } else if (step == S2E_SNAP_IO_FSYNC_DIR) {
        CU_ASSERT_EQUAL(ret, err);
        tu_check_error(error, S2E_SNAPSHOT_ERROR_IO, s.final, dir_steps_msg,
                       g_strerror(-err), NULL);
        check_new_snapshot(s.final);
    } else {
        CU_ASSERT(ret < 0);
        if (ret < 0) {
            tu_check_error(error, S2E_SNAPSHOT_ERROR_IO, s.dir,
                           g_strerror(-err), NULL);
        }
        check_old_intact(&s);
    }
    scene_fini(&s);
}

static const S2ESnapIOStep writer_steps[] = {
    S2E_SNAP_IO_OPEN_DIR, S2E_SNAP_IO_CREATE, S2E_SNAP_IO_WRITE_VMSTATE,
    S2E_SNAP_IO_WRITE_SECTORS, S2E_SNAP_IO_WRITE_INDEX,
    S2E_SNAP_IO_WRITE_HEADER, S2E_SNAP_IO_FSYNC, S2E_SNAP_IO_CLOSE,
    S2E_SNAP_IO_RENAME, S2E_SNAP_IO_FSYNC_DIR,
};

static bool is_write(S2ESnapIOStep step)
{
    return step == S2E_SNAP_IO_WRITE_VMSTATE ||
           step == S2E_SNAP_IO_WRITE_SECTORS ||
           step == S2E_SNAP_IO_WRITE_INDEX ||
           step == S2E_SNAP_IO_WRITE_HEADER;
}

static void test_dry_run(void)
{
    Scene s;
    Fault f = { 0 };

    scene_init(&s);
    CU_ASSERT_EQUAL(run_writer(s.dir, s.final, &f, NULL), 0);
    check_new_snapshot(s.final);
    for (size_t i = 0; i < G_N_ELEMENTS(writer_steps); i++) {
        if (f.calls[writer_steps[i]] == 0) {
            fprintf(stderr, "\nstep %s never ran\n",
                    s2e_snap_io_step_name(writer_steps[i]));
        }
        CU_ASSERT(f.calls[writer_steps[i]] > 0);
    }
    CU_ASSERT_EQUAL(f.calls[S2E_SNAP_IO_OPEN], 0);
    CU_ASSERT_EQUAL(tu_count_prefix(s.dir, S2E_SNAP_TEMP_PREFIX), 0);
    scene_fini(&s);
}

static void test_every_step(void)
{
    static const int errs[] = { -EIO, -ENOSPC, -EACCES, -EROFS, -EDQUOT };
    Fault dry = { 0 };
    Scene s;

    scene_init(&s);
    CU_ASSERT_EQUAL_FATAL(run_writer(s.dir, s.final, &dry, NULL), 0);
    scene_fini(&s);

    for (size_t i = 0; i < G_N_ELEMENTS(writer_steps); i++) {
        S2ESnapIOStep step = writer_steps[i];
        int last = dry.calls[step];

        for (size_t e = 0; e < G_N_ELEMENTS(errs); e++) {
            inject(step, 1, errs[e], false);
            if (last > 1) {
                inject(step, last, errs[e], false);
            }
        }
        if (is_write(step)) {
            inject(step, 1, -ENOSPC, true);     /* short, then full disk */
            inject(step, last, -ENOSPC, true);
            inject(step, 1, 0, true);           /* short, then completed */
            inject(step, last, 0, true);
        }
    }
}

/* CREATE meeting an existing name retries with another. */
static void test_create_retries(void)
{
    Scene s;
    Fault f = { .step = S2E_SNAP_IO_CREATE, .nth = 1, .err = -EEXIST };

    scene_init(&s);
    CU_ASSERT_EQUAL(run_writer(s.dir, s.final, &f, NULL), 0);
    CU_ASSERT_EQUAL(f.calls[S2E_SNAP_IO_CREATE], 2);
    check_new_snapshot(s.final);
    scene_fini(&s);
}

/* ---- Reader ------------------------------------------------------------- */

static char *good_snapshot(Scene *s)
{
    Fault none = { 0 };

    scene_init(s);
    CU_ASSERT_EQUAL_FATAL(run_writer(s->dir, s->final, &none, NULL), 0);
    return s->final;
}

static void test_reader_open_faults(void)
{
    Scene s;
    char *path = good_snapshot(&s);
    Fault dry = { 0 };
    S2ESnapIO io = { .fault = fault_fn, .opaque = &dry };
    S2ESnapshot *snap = s2e_snapshot_open_io(path, NULL, NULL, &io, NULL);
    int reads = dry.calls[S2E_SNAP_IO_READ];
    GError *err = NULL;

    CU_ASSERT_PTR_NOT_NULL_FATAL(snap);
    s2e_snapshot_close(snap);
    CU_ASSERT_EQUAL(reads, 3);    /* header, chunk index, extent index */

    for (int nth = 1; nth <= reads; nth++) {
        Fault f = { .step = S2E_SNAP_IO_READ, .nth = nth, .err = -EIO };
        io.opaque = &f;
        CU_ASSERT_PTR_NULL(s2e_snapshot_open_io(path, NULL, NULL, &io, &err));
        tu_check_error(err, S2E_SNAPSHOT_ERROR_IO, path, g_strerror(EIO),
                       NULL);
        err = NULL;
        /* Short reads are completed. */
        f = (Fault){ .step = S2E_SNAP_IO_READ, .nth = nth,
                     .short_first = true };
        io.opaque = &f;
        snap = s2e_snapshot_open_io(path, NULL, NULL, &io, NULL);
        CU_ASSERT_PTR_NOT_NULL(snap);
        CU_ASSERT(f.fired);
        s2e_snapshot_close(snap);
    }
    {
        Fault f = { .step = S2E_SNAP_IO_OPEN, .nth = 1, .err = -EACCES };
        io.opaque = &f;
        CU_ASSERT_PTR_NULL(s2e_snapshot_open_io(path, NULL, NULL, &io, &err));
        tu_check_error(err, S2E_SNAPSHOT_ERROR_IO, path, g_strerror(EACCES),
                       NULL);
    }
    scene_fini(&s);
}

/* A failed read leaves the snapshot usable: the next read succeeds. */
static void test_reader_read_faults(void)
{
    Scene s;
    char *path = good_snapshot(&s);
    Fault f = { .step = S2E_SNAP_IO_READ, .nth = 4, .err = -EIO };
    S2ESnapIO io = { .fault = fault_fn, .opaque = &f };
    S2ESnapshot *snap = s2e_snapshot_open_io(path, NULL, NULL, &io, NULL);
    GError *err = NULL;
    uint8_t buf[40 * 512], want[4096];

    CU_ASSERT_PTR_NOT_NULL_FATAL(snap);
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 5000, buf, 4096, &err),
                    -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_IO, path, NULL);
    err = NULL;
    CU_ASSERT_EQUAL(s2e_snapshot_read_vmstate(snap, 5000, buf, 4096, NULL),
                    0);
    tu_vmstate_fill(want, 5000, 4096, SEED);
    CU_ASSERT(memcmp(buf, want, 4096) == 0);

    f.nth = f.calls[S2E_SNAP_IO_READ] + 1;
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, 1000, 40, buf, &err),
                    -EIO);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_IO, path, NULL);
    err = NULL;
    f.nth = f.calls[S2E_SNAP_IO_READ] + 1;
    f.err = -ENOSPC;
    CU_ASSERT(s2e_snapshot_verify_all(snap, &err) < 0);
    tu_check_error(err, S2E_SNAPSHOT_ERROR_IO, path, NULL);
    CU_ASSERT_EQUAL(s2e_snapshot_read_sectors(snap, 1000, 40, buf, NULL), 0);
    CU_ASSERT_EQUAL(s2e_snapshot_verify_all(snap, NULL), 0);
    s2e_snapshot_close(snap);
    scene_fini(&s);
}

/*
 * A read told not to wait (S2E_SNAPSHOT_READ_NOWAIT) that the page cache
 * cannot serve gives way with -EAGAIN and no error, at whichever read it
 * meets that: the data or the block checksum table.  The same read
 * without the flag then returns the data.
 */
static void test_reader_nowait_gives_way(void)
{
    Scene s;
    char *path = good_snapshot(&s);
    Fault f = { .step = S2E_SNAP_IO_READ, .err = -EAGAIN };
    S2ESnapIO io = { .fault = fault_fn, .opaque = &f };
    S2ESnapshot *snap = s2e_snapshot_open_io(path, NULL, NULL, &io, NULL);
    uint8_t buf[40 * 512], want[40 * 512];
    struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
    GError *err = NULL;

    CU_ASSERT_PTR_NOT_NULL_FATAL(snap);
    tu_sectors_fill(want, 1000, 40, SEED);
    for (int k = 1; k <= 2; k++) {
        /* k = 1: the data's read; k = 2: the checksum table's. */
        f.nth = f.calls[S2E_SNAP_IO_READ] + k;
        CU_ASSERT_EQUAL(s2e_snapshot_readv(snap, 1000, 40, &iov, 1,
                                           S2E_SNAPSHOT_READ_NOWAIT, NULL,
                                           NULL, &err), -EAGAIN);
        CU_ASSERT_PTR_NULL(err);
    }
    f.nth = 0;
    CU_ASSERT_EQUAL(s2e_snapshot_readv(snap, 1000, 40, &iov, 1, 0, NULL,
                                       NULL, NULL), 0);
    CU_ASSERT(memcmp(buf, want, sizeof(buf)) == 0);
    s2e_snapshot_close(snap);
    scene_fini(&s);
}

void s2e_test_register(void)
{
    CU_pSuite s;

    s = s2e_test_suite("writer");
    s2e_test_add(s, "dry_run", test_dry_run);
    s2e_test_add(s, "every_step", test_every_step);
    s2e_test_add(s, "create_retries", test_create_retries);

    s = s2e_test_suite("reader");
    s2e_test_add(s, "open_faults", test_reader_open_faults);
    s2e_test_add(s, "read_faults", test_reader_read_faults);
    s2e_test_add(s, "nowait_gives_way", test_reader_nowait_gives_way);
}
