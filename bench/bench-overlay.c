/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench-overlay: memory, fork time and write throughput of the overlay store.
 *
 *   build/bench/bench-overlay [--quick]
 *
 * Prints four tables:
 *   1. memory per written byte: the stats' data + metadata, and what glibc
 *      malloc really holds (mallinfo2), for 4 KiB aligned writes and for
 *      scattered 512-byte writes;
 *   2. fork time with 1 MiB .. 4 GiB of data in the overlay (median of
 *      batches of forks; it must not grow with the data);
 *   3. write throughput: first writes to shared blocks in a fresh fork
 *      against writes to blocks the overlay owns alone;
 *   4. memory of 1000 forks of a 1 GiB overlay, each writing its own 4 KiB.
 *
 * Peak memory is about 4.5 GiB (the 4 GiB fork row); --quick stops at
 * 1 GiB.  Not a test: the numbers depend on the machine.
 */
#include "s2e-block/overlay.h"
#include "../block/overlay-internal.h"
#include "bench-util.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *bench_name = "bench-overlay";

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void write_or_die(S2EOverlay *ov, uint64_t sector, uint64_t count,
                         const void *buf)
{
    if (s2e_overlay_write(ov, sector, count, buf) < 0) {
        die("write");
    }
}

/* Write @bytes sequentially from sector 0 in 1 MiB requests. */
static void fill_sequential(S2EOverlay *ov, uint64_t from, uint64_t bytes)
{
    static unsigned char buf[MIB];

    memset(buf, 0x5a, sizeof(buf));
    for (uint64_t off = from; off < from + bytes; off += MIB) {
        write_or_die(ov, off / SECTOR, MIB / SECTOR, buf);
    }
}

/* ---- 1. memory per written byte ----------------------------------------- */

static void memory_row(const char *what, uint64_t nb_sectors,
                       uint64_t writes, unsigned sectors, bool random)
{
    unsigned char buf[4096];
    uint64_t heap0 = heap_in_use();
    S2EOverlay *ov = s2e_overlay_new(nb_sectors);
    uint64_t slots = nb_sectors / sectors;
    uint64_t written;
    S2EOverlayStats st;
    uint64_t heap;
    unsigned char *seen = calloc((slots + 7) / 8, 1);
    uint64_t distinct = 0;

    if (!ov || !seen) {
        die("allocation");
    }
    memset(buf, 0x33, sizeof(buf));
    for (uint64_t w = 0; w < writes; w++) {
        uint64_t slot = random ? rng_next() % slots : w;
        write_or_die(ov, slot * sectors, sectors, buf);
        if (!(seen[slot / 8] & (1u << (slot % 8)))) {
            seen[slot / 8] |= 1u << (slot % 8);
            distinct++;
        }
    }
    free(seen);
    heap = heap_in_use() - heap0;
    written = distinct * sectors * SECTOR;
    s2e_overlay_get_stats(ov, &st);
    printf("  %-34s %9.1f MiB  %7.4f  %7.4f  %8.1f\n", what,
           (double)written / MIB,
           (double)(st.data_bytes + st.meta_bytes) / written,
           heap0 || heap ? (double)heap / written : 0.0,
           (double)st.meta_bytes / distinct);
    s2e_overlay_free(ov);
}

static void bench_memory(void)
{
    const uint64_t disk_1g = GIB / SECTOR;
    const uint64_t disk_4t = 4 * 1024 * GIB / SECTOR;

    printf("\n1. Memory per written byte (block size %zu bytes)\n",
           s2e_overlay_block_size());
    printf("  %-34s %13s  %7s  %7s  %8s\n", "writes", "written",
           "stats", "malloc", "meta B/w");
    memory_row("4 KiB aligned, sequential, 1 GiB", disk_1g, 65536, 8, false);
    memory_row("4 KiB aligned, random, 1 GiB", disk_1g, 16384, 8, true);
    memory_row("4 KiB aligned, random, 4 TiB", disk_4t, 4096, 8, true);
    memory_row("512 B scattered, 1 GiB", disk_1g, 65536, 1, true);
    memory_row("512 B scattered, 4 TiB", disk_4t, 16384, 1, true);
    printf("  (stats = (data + metadata) / written; malloc = heap growth / "
           "written;\n   meta B/w = metadata bytes per distinct write)\n");
}

/* ---- 2. fork time -------------------------------------------------------- */

enum { FORK_BATCH = 100, FORK_BATCHES = 301 };

/* Median time of one fork (and of freeing an unmodified fork). */
static void fork_row(S2EOverlay *ov, uint64_t data_bytes)
{
    static S2EOverlay *forks[FORK_BATCH];
    uint64_t fork_ns[FORK_BATCHES], free_ns[FORK_BATCHES];

    for (int b = 0; b < FORK_BATCHES; b++) {
        uint64_t t0 = now_ns(), t1, t2;
        for (int k = 0; k < FORK_BATCH; k++) {
            forks[k] = s2e_overlay_fork(ov);
        }
        t1 = now_ns();
        for (int k = 0; k < FORK_BATCH; k++) {
            if (!forks[k]) {
                die("fork");
            }
            s2e_overlay_free(forks[k]);
        }
        t2 = now_ns();
        fork_ns[b] = (t1 - t0) / FORK_BATCH;
        free_ns[b] = (t2 - t1) / FORK_BATCH;
    }
    printf("  %10.0f MiB  %8" PRIu64 " ns  %8" PRIu64 " ns\n",
           (double)data_bytes / MIB, median(fork_ns, FORK_BATCHES),
           median(free_ns, FORK_BATCHES));
}

static void bench_forks(bool quick)
{
    static const uint64_t sizes[] = { MIB, 64 * MIB, GIB, 4 * GIB };
    S2EOverlay *ov = s2e_overlay_new(8 * GIB / SECTOR);
    uint64_t filled = 0;

    printf("\n2. Fork time (8 GiB disk; median of %d batches of %d forks)\n",
           FORK_BATCHES, FORK_BATCH);
    printf("  %14s  %11s  %11s\n", "overlay data", "fork", "free fork");
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        if (quick && sizes[k] > GIB) {
            break;
        }
        fill_sequential(ov, filled, sizes[k] - filled);
        filled = sizes[k];
        fork_row(ov, filled);
    }
    s2e_overlay_free(ov);
}

/* ---- 3. write throughput ------------------------------------------------- */

/* MB/s of @count writes of @sectors sectors at the given block indices. */
static double timed_writes(S2EOverlay *ov, const uint64_t *blocks,
                           uint64_t count, unsigned sectors)
{
    unsigned char buf[4096];
    uint64_t t0, t1;

    memset(buf, 0xc3, sizeof(buf));
    t0 = now_ns();
    for (uint64_t k = 0; k < count; k++) {
        write_or_die(ov, blocks[k] * 8, sectors, buf);
    }
    t1 = now_ns();
    return (double)(count * sectors * SECTOR) / ((double)(t1 - t0) / 1e9) /
           1e6;
}

static void bench_throughput(void)
{
    const uint64_t disk = GIB / SECTOR;
    const uint64_t count = 65536;       /* 256 MiB of 4 KiB writes */
    uint64_t *seq = malloc(count * sizeof(*seq));
    uint64_t *rnd = malloc(count * sizeof(*rnd));
    S2EOverlay *parent = s2e_overlay_new(disk);
    S2EOverlay *child, *empty;
    double first, again, fresh, owned, small_first, small_owned;

    if (!seq || !rnd || !parent) {
        die("allocation");
    }
    for (uint64_t k = 0; k < count; k++) {
        seq[k] = k;
        rnd[k] = k;
    }
    for (uint64_t k = count - 1; k > 0; k--) {    /* a permutation */
        uint64_t j = rng_next() % (k + 1), t = rnd[k];
        rnd[k] = rnd[j];
        rnd[j] = t;
    }
    fill_sequential(parent, 0, GIB);

    printf("\n3. Write throughput (1 GiB overlay, 256 MiB of writes)\n");
    printf("  %-44s %10s %10s\n", "", "sequential", "random");

    empty = s2e_overlay_new(disk);
    fresh = timed_writes(empty, seq, count, 8);
    s2e_overlay_free(empty);
    empty = s2e_overlay_new(disk);
    printf("  %-44s %7.0f MB/s %7.0f MB/s\n",
           "4 KiB, empty overlay (allocate)", fresh,
           timed_writes(empty, rnd, count, 8));
    s2e_overlay_free(empty);

    child = s2e_overlay_fork(parent);
    first = timed_writes(child, seq, count, 8);
    again = timed_writes(child, seq, count, 8);
    s2e_overlay_free(child);
    child = s2e_overlay_fork(parent);
    printf("  %-44s %7.0f MB/s %7.0f MB/s\n",
           "4 KiB, fresh fork (first write, shared)", first,
           timed_writes(child, rnd, count, 8));
    printf("  %-44s %7.0f MB/s %7.0f MB/s\n",
           "4 KiB, same blocks again (owned, in place)", again,
           timed_writes(child, rnd, count, 8));
    s2e_overlay_free(child);

    owned = timed_writes(parent, rnd, count, 8);
    printf("  %-44s %10s %7.0f MB/s\n", "4 KiB, unshared parent (in place)",
           "", owned);

    child = s2e_overlay_fork(parent);
    small_first = timed_writes(child, rnd, count, 1);
    small_owned = timed_writes(child, rnd, count, 1);
    printf("  %-44s %10s %7.0f MB/s\n", "512 B, fresh fork (copies 4 KiB)",
           "", small_first);
    printf("  %-44s %10s %7.0f MB/s\n", "512 B, owned block (in place)",
           "", small_owned);
    s2e_overlay_free(child);
    s2e_overlay_free(parent);
    free(seq);
    free(rnd);
}

/* ---- 4. many forks ------------------------------------------------------- */

static void bench_many_forks(void)
{
    enum { FORKS = 1000 };
    const uint64_t disk = GIB / SECTOR;
    S2EOverlay **ovs = calloc(FORKS + 1, sizeof(*ovs));
    S2EOverlayStats u0, u1;
    unsigned char buf[4096];
    uint64_t heap0, heap1, t0, t1;

    if (!ovs) {
        die("allocation");
    }
    ovs[0] = s2e_overlay_new(disk);
    fill_sequential(ovs[0], 0, GIB);
    if (s2e_overlay_get_union_stats(ovs, 1, &u0) < 0) {
        die("stats");
    }
    memset(buf, 0x77, sizeof(buf));
    heap0 = heap_in_use();
    t0 = now_ns();
    for (int k = 1; k <= FORKS; k++) {
        ovs[k] = s2e_overlay_fork(ovs[0]);
        if (!ovs[k]) {
            die("fork");
        }
        write_or_die(ovs[k], (rng_next() % (disk / 8)) * 8, 8, buf);
    }
    t1 = now_ns();
    heap1 = heap_in_use();
    if (s2e_overlay_get_union_stats(ovs, FORKS + 1, &u1) < 0) {
        die("stats");
    }
    printf("\n4. %d forks of a 1 GiB overlay, each writing its own 4 KiB\n",
           FORKS);
    printf("  parent: %.1f MiB; all %d forks together: %.2f MiB by stats, "
           "%.2f MiB by malloc\n", (double)(u0.data_bytes + u0.meta_bytes) /
           MIB, FORKS, (double)(u1.data_bytes + u1.meta_bytes -
                                u0.data_bytes - u0.meta_bytes) / MIB,
           (double)(heap1 - heap0) / MIB);
    printf("  per fork: %.0f bytes by stats (%" PRIu64 " new nodes), "
           "%.0f by malloc; fork + write %.2f us\n",
           (double)(u1.data_bytes + u1.meta_bytes - u0.data_bytes -
                    u0.meta_bytes) / FORKS,
           (u1.node_count - u0.node_count) / FORKS,
           (double)(heap1 - heap0) / FORKS,
           (double)(t1 - t0) / FORKS / 1000.0);
    for (int k = 0; k <= FORKS; k++) {
        s2e_overlay_free(ovs[k]);
    }
    free(ovs);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");

    if (argc > 1 && !quick) {
        fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
        return 2;
    }
    printf("s2e overlay store benchmark (block %zu bytes, fan-out %d)\n",
           s2e_overlay_block_size(), S2E_OVERLAY_FANOUT);
    bench_memory();
    bench_forks(quick);
    bench_throughput();
    bench_many_forks();
    return 0;
}
