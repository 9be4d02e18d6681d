/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench-checksum: the data checksum of snapshot files, and what checking
 * it costs a read of the snapshot layer.
 *
 *   build/bench/bench-checksum [--quick]
 *
 * Prints two tables:
 *   1. checksum throughput on 4 KiB blocks, for the three candidates of
 *      issue 9 (zlib crc32, CRC-32C with SSE4.2's crc32q, XXH3 -- both its
 *      baseline SSE2 build and s2e-block's, which uses AVX2 when the CPU
 *      has it), beside memcpy and a pread of 4 KiB from the page cache:
 *      what a layer read costs anyway.  The blocks are hot (a 256 KiB
 *      working set, in L2), as in the reader, which checks a block right
 *      after pread copied it;
 *   2. s2e_snapshot_read_sectors() on two files holding the same 64 MiB of
 *      sector data in runs of 64 KiB, one in format version 1 (no block
 *      checksums) and one in version 2, both in the page cache: 4 KiB reads
 *      in a scattered order visiting each block once, then whole 64 KiB
 *      runs.
 *      "first" uses a fresh handle, so every block is checked; "again"
 *      reads the same blocks through the same handle, already verified.
 *      The overhead is the version 2 time over the version 1 time.
 *
 * Each figure is the median of several repetitions (5; 3 with --quick)
 * with the versions alternating.  Not a test: the numbers depend on the
 * machine and its load.
 */
#include "../snapshot/snapshot-int.h"
#include "bench-util.h"

/* XXH3 as the compiler's baseline target builds it (SSE2 on x86-64), for
 * comparison with s2e_snap_data_csum(). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

const char *bench_name = "bench-checksum";

#define BLOCK 4096u
#define DATA_BYTES (64 * MIB)
#define RUN_SECTORS 128u          /* 64 KiB runs ... */
#define RUN_STRIDE 256u           /* ... every 128 KiB of the disk */

static volatile uint64_t sink;

/* ---- 1. Checksums -------------------------------------------------------- */

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t crc = 0xffffffffu;

    for (; len >= 8; p += 8, len -= 8) {
        uint64_t v;

        memcpy(&v, p, 8);
        crc = _mm_crc32_u64(crc, v);
    }
    for (; len > 0; p++, len--) {
        crc = _mm_crc32_u8((uint32_t)crc, *p);
    }
    return ~(uint32_t)crc;
}

static bool have_sse42(void)
{
    return __builtin_cpu_supports("sse4.2");
}
#else
static uint32_t crc32c_sse42(const void *buf, size_t len)
{
    return 0;
}

static bool have_sse42(void)
{
    return false;
}
#endif

static uint32_t zlib_crc32(const void *buf, size_t len)
{
    return (uint32_t)crc32_z(0, buf, len);
}

static uint32_t xxh3_baseline(const void *buf, size_t len)
{
    return (uint32_t)XXH3_64bits(buf, len);
}

static uint32_t copy_only(const void *buf, size_t len)
{
    static uint8_t dst[BLOCK];

    memcpy(dst, buf, len);
    return dst[len / 2];
}

typedef uint32_t (*BlockFn)(const void *buf, size_t len);

#define HOT_SET (256 * KIB)

/* GB/s over @bytes of 4 KiB blocks, cycling through the first HOT_SET
 * bytes of @buf. */
static double block_rate(BlockFn fn, const uint8_t *buf, size_t bytes)
{
    uint64_t t0 = now_ns();

    for (size_t off = 0; off < bytes; off += BLOCK) {
        sink += fn(buf + off % HOT_SET, BLOCK);
    }
    return (double)bytes / (double)(now_ns() - t0);
}

static double pread_rate(int fd, size_t bytes)
{
    uint8_t buf[BLOCK];
    uint64_t t0 = now_ns();

    for (size_t off = 0; off < bytes; off += BLOCK) {
        if (pread(fd, buf, BLOCK, (off_t)off) != BLOCK) {
            die("pread");
        }
        sink += buf[7];
    }
    return (double)bytes / (double)(now_ns() - t0);
}

static double median_rate(double *v, int n)
{
    uint64_t scaled[16];

    for (int i = 0; i < n; i++) {
        scaled[i] = (uint64_t)(v[i] * 1e6);
    }
    return (double)median(scaled, (size_t)n) / 1e6;
}

static void table_checksums(const char *dir, int reps)
{
    static const struct {
        const char *name;
        BlockFn fn;
    } fns[] = {
        { "zlib crc32", zlib_crc32 },
        { "CRC-32C (SSE4.2 crc32q)", crc32c_sse42 },
        { "XXH3, baseline build (SSE2)", xxh3_baseline },
        { "XXH3, s2e-block's (AVX2 if any)", s2e_snap_data_csum },
        { "memcpy of the block", copy_only },
    };
    size_t bytes = 256 * MIB;
    uint8_t *buf = g_malloc(bytes);
    char *path = g_build_filename(dir, "data", NULL);
    double rates[G_N_ELEMENTS(fns) + 1][16];
    int fd;

    for (size_t i = 0; i < bytes; i++) {
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    }
    g_file_set_contents(path, (char *)buf, (gssize)(64 * MIB), NULL);
    fd = open(path, O_RDONLY);
    if (fd < 0) {
        die("open");
    }
    for (int r = 0; r < reps; r++) {
        for (size_t f = 0; f < G_N_ELEMENTS(fns); f++) {
            bool skip = fns[f].fn == crc32c_sse42 && !have_sse42();
            rates[f][r] = skip ? 0 : block_rate(fns[f].fn, buf, bytes);
        }
        rates[G_N_ELEMENTS(fns)][r] = pread_rate(fd, 64 * MIB);
    }
    printf("1. Checksum throughput on 4 KiB blocks (GB/s, median of %d)\n\n",
           reps);
    printf("  %-34s %8s %12s\n", "", "GB/s", "ns / 4 KiB");
    for (size_t f = 0; f <= G_N_ELEMENTS(fns); f++) {
        double gbs = median_rate(rates[f], reps);
        const char *name = f < G_N_ELEMENTS(fns) ? fns[f].name
                                                  : "pread 4 KiB (page cache)";

        printf("  %-34s %8.2f %12.0f\n", name, gbs, gbs ? BLOCK / gbs : 0);
    }
    printf("\n");
    close(fd);
    g_free(path);
    g_free(buf);
}

/* ---- 2. Snapshot-layer reads --------------------------------------------- */

static char *write_snapshot(const char *dir, const char *name,
                            uint32_t version)
{
    S2EBaseIdentity id = { .size = 2 * DATA_BYTES };
    uint64_t runs = DATA_BYTES / (RUN_SECTORS * SECTOR);
    S2ESnapshotInfo info = { 0 };
    char *path = g_build_filename(dir, name, NULL);
    uint8_t *data = g_malloc(RUN_SECTORS * SECTOR);
    S2ESnapshotWriter *w = s2e_snapshot_writer_new(dir, &id,
                                                   2 * DATA_BYTES / SECTOR,
                                                   NULL);

    if (!w || s2e_snapshot_writer_set_version(w, version, NULL) < 0) {
        die("snapshot writer");
    }
    for (uint64_t r = 0; r < runs; r++) {
        for (size_t i = 0; i < RUN_SECTORS * SECTOR; i++) {
            data[i] = (uint8_t)((r * 131 + i) * 2654435761u >> 11);
        }
        if (s2e_snapshot_writer_add_sectors(w, r * RUN_STRIDE, RUN_SECTORS,
                                            data, NULL) < 0) {
            die("add sectors");
        }
    }
    if (s2e_snapshot_writer_commit(w, path, &info, NULL) < 0) {
        die("commit");
    }
    g_free(data);
    return path;
}

/* The first sector of each 4 KiB block of data, in a scattered order. */
static uint64_t *scattered_blocks(uint64_t *n)
{
    uint64_t blocks = DATA_BYTES / BLOCK;
    uint64_t per_run = RUN_SECTORS * SECTOR / BLOCK;
    uint64_t *s = g_new(uint64_t, blocks);

    for (uint64_t i = 0; i < blocks; i++) {
        s[i] = (i / per_run) * RUN_STRIDE + (i % per_run) * (BLOCK / SECTOR);
    }
    for (uint64_t i = blocks - 1; i > 0; i--) {     /* Fisher-Yates */
        uint64_t j = (i * 0x9e3779b97f4a7c15ull >> 17) % (i + 1);
        uint64_t t = s[i];

        s[i] = s[j];
        s[j] = t;
    }
    *n = blocks;
    return s;
}

typedef struct LayerTimes {
    uint64_t first_4k, again_4k;     /* ns per read */
    uint64_t first_1m, again_1m;
} LayerTimes;

static uint64_t read_pass(S2ESnapshot *snap, const uint64_t *sectors,
                          uint64_t n, uint64_t count, uint8_t *buf)
{
    uint64_t t0 = now_ns();

    for (uint64_t i = 0; i < n; i++) {
        if (s2e_snapshot_read_sectors(snap, sectors[i], count, buf,
                                      NULL) < 0) {
            die("read_sectors");
        }
        sink += buf[count * SECTOR - 1];
    }
    return (now_ns() - t0) / n;
}

static LayerTimes layer_reads(const char *path, const uint64_t *blocks,
                              uint64_t n, const uint64_t *runs,
                              uint64_t n_runs)
{
    uint8_t *buf = g_malloc(RUN_SECTORS * SECTOR);
    LayerTimes t;
    S2ESnapshot *snap = s2e_snapshot_open(path, NULL, NULL, NULL);

    if (!snap) {
        die("open snapshot");
    }
    t.first_4k = read_pass(snap, blocks, n, BLOCK / SECTOR, buf);
    t.again_4k = read_pass(snap, blocks, n, BLOCK / SECTOR, buf);
    s2e_snapshot_close(snap);
    snap = s2e_snapshot_open(path, NULL, NULL, NULL);
    t.first_1m = read_pass(snap, runs, n_runs, RUN_SECTORS, buf);
    t.again_1m = read_pass(snap, runs, n_runs, RUN_SECTORS, buf);
    s2e_snapshot_close(snap);
    g_free(buf);
    return t;
}

/* Read the whole file once, so every later read hits the page cache. */
static void warm(const char *path)
{
    gchar *data;
    gsize len;

    if (!g_file_get_contents(path, &data, &len, NULL)) {
        die("warm");
    }
    sink += (uint8_t)data[len - 1];
    g_free(data);
}

static void print_layer_row(const char *what, uint64_t *v1, uint64_t *v2,
                            int reps)
{
    uint64_t a = median(v1, (size_t)reps), b = median(v2, (size_t)reps);

    printf("  %-28s %10" PRIu64 " %10" PRIu64 " %+9.1f%%\n", what, a, b,
           100.0 * ((double)b - (double)a) / (double)a);
}

static void table_layer(const char *dir, int reps)
{
    char *v1 = write_snapshot(dir, "disk.v1", S2E_SNAP_VERSION_1);
    char *v2 = write_snapshot(dir, "disk.v2", S2E_SNAP_VERSION_2);
    uint64_t n, n_runs = DATA_BYTES / (RUN_SECTORS * SECTOR);
    uint64_t *blocks = scattered_blocks(&n);
    uint64_t *runs = g_new(uint64_t, n_runs);
    uint64_t t[2][4][16];

    for (uint64_t r = 0; r < n_runs; r++) {
        runs[r] = r * RUN_STRIDE;
    }
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < 2; k++) {
            int v = (r + k) % 2;            /* alternate the order */
            LayerTimes lt;

            warm(v ? v2 : v1);
            lt = layer_reads(v ? v2 : v1, blocks, n, runs, n_runs);
            t[v][0][r] = lt.first_4k;
            t[v][1][r] = lt.again_4k;
            t[v][2][r] = lt.first_1m;
            t[v][3][r] = lt.again_1m;
        }
    }
    printf("2. Snapshot-layer reads from the page cache "
           "(s2e_snapshot_read_sectors, ns per read, median of %d)\n\n",
           reps);
    printf("  %-28s %10s %10s %10s\n", "", "version 1", "version 2",
           "overhead");
    print_layer_row("4 KiB, first read", t[0][0], t[1][0], reps);
    print_layer_row("4 KiB, read again", t[0][1], t[1][1], reps);
    print_layer_row("64 KiB, first read", t[0][2], t[1][2], reps);
    print_layer_row("64 KiB, read again", t[0][3], t[1][3], reps);
    printf("\n  (64 MiB of sector data in %" PRIu64 " runs of 64 KiB; "
           "first: a fresh handle, every block checked)\n", n_runs);
    g_free(runs);
    g_free(blocks);
    g_free(v1);
    g_free(v2);
}

static void remove_dir(char *dir)
{
    static const char *const files[] = { "data", "disk.v1", "disk.v2" };

    for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
        char *path = g_build_filename(dir, files[i], NULL);

        unlink(path);
        g_free(path);
    }
    rmdir(dir);
    g_free(dir);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    int reps = quick ? 3 : 5;
    char *dir = g_dir_make_tmp("bench-checksum-XXXXXX", NULL);

    if (!dir) {
        die("temporary directory");
    }
    table_checksums(dir, reps);
    table_layer(dir, reps);
    remove_dir(dir);
    return 0;
}
