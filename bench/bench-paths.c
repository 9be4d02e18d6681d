/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench-paths: the engine API's fork cost, memory and copy-on-write speed.
 *
 *   build/bench/bench-paths [--quick]
 *
 * Everything goes through the path set (block/paths.c), as an engine and
 * the QEMU glue use it: drives registered in a set, guest writes through
 * the current path's view, s2e_pathset_fork / switch / free.  Prints:
 *
 *   1. fork time per drive with 1 MiB, 1 GiB and 4 GiB of data in each
 *      drive's overlay (8 drives; median of batches of 1000 forks; the
 *      goal is flat and under 1 us per drive), and the time to free those
 *      forks;
 *   2. memory of 1000 paths forked from a path holding 1 GiB, each writing
 *      its own 4 KiB block, against the goal 1 GiB + 1000 x 4 KiB x 1.10 +
 *      the tree nodes of the 1000 paths, and against S2E's per-sector
 *      store (KLEE object states: about 800 bytes of heap per dirty
 *      512-byte sector);
 *   3. write throughput of 4 KiB writes in a freshly forked path (each the
 *      first write to a block shared with the parent) against the same
 *      writes in a path that owns its blocks.
 *
 * The 8 drives of table 1 share one overlay's data (each drive's view is a
 * fork of it), so 4 GiB per drive costs 4 GiB of memory, not 32.  Peak
 * memory is about 4.3 GiB; --quick stops at 1 GiB.  Not a test: the
 * numbers depend on the machine and its load.
 */
#include "s2e-block/paths.h"
#include "../block/overlay-internal.h"
#include "bench-util.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *bench_name = "bench-paths";

/* S2E's per-sector store: heap per dirty 512-byte sector (KLEE). */
#define S2E_KLEE_BYTES_PER_SECTOR 800

#define FORK_DRIVES 8
#define FORK_BATCH 1000
#define FORK_BATCHES 15
#define MEM_PATHS 1000

static double mib(uint64_t bytes)
{
    return (double)bytes / MIB;
}

/* Write @bytes from sector 0 of @ov in 1 MiB requests. */
static void fill_overlay(S2EOverlay *ov, uint64_t bytes)
{
    static unsigned char buf[MIB];
    uint64_t chunk = MIB / SECTOR;

    for (size_t k = 0; k < sizeof(buf); k++) {
        buf[k] = (unsigned char)(k * 131 + 7);
    }
    for (uint64_t s = 0; s < bytes / SECTOR; s += chunk) {
        buf[0]++;
        if (s2e_overlay_write(ov, s, chunk, buf) < 0) {
            die("write");
        }
    }
}

/* Write @bytes through the current path's view of @drive. */
static void fill_drive(S2EPathDrive *drive, uint64_t bytes)
{
    fill_overlay(s2e_path_drive_overlay(drive), bytes);
}

/* ---- 1. Fork time against the data held -------------------------------- */

typedef struct ForkRow {
    uint64_t data;              /* bytes in each drive's overlay */
    double fork_ns_per_drive;   /* median */
    double fork_ns_per_path;
    double free_ns_per_drive;
} ForkRow;

static void fork_row(uint64_t data, ForkRow *row)
{
    uint64_t disk_sectors = 8 * GIB / SECTOR;
    uint64_t fork_ns[FORK_BATCHES], free_ns[FORK_BATCHES];
    S2EPath **kids = malloc(FORK_BATCH * sizeof(*kids));
    S2EPathSet *set = s2e_pathset_new();
    S2EOverlay *filled = s2e_overlay_new(disk_sectors);

    if (!kids || !set || !filled) {
        die("setup");
    }
    fill_overlay(filled, data);
    for (int d = 0; d < FORK_DRIVES; d++) {
        S2EPathDrive *drive;
        if (s2e_pathset_register_drive(set, "d", disk_sectors, NULL,
                                       &drive) < 0 ||
            s2e_path_drive_replace_view(drive, s2e_overlay_fork(filled),
                                        NULL) < 0) {
            die("register");
        }
    }
    s2e_overlay_free(filled);

    for (int b = 0; b < FORK_BATCHES; b++) {
        uint64_t t0 = now_ns(), t1;
        for (int k = 0; k < FORK_BATCH; k++) {
            kids[k] = s2e_pathset_fork(set, NULL);
            if (!kids[k]) {
                die("fork");
            }
        }
        t1 = now_ns();
        for (int k = FORK_BATCH; k-- > 0;) {
            if (s2e_pathset_free_path(set, kids[k]) < 0) {
                die("free");
            }
        }
        fork_ns[b] = t1 - t0;
        free_ns[b] = now_ns() - t1;
    }
    row->data = data;
    row->fork_ns_per_path = (double)median(fork_ns, FORK_BATCHES) /
                            FORK_BATCH;
    row->fork_ns_per_drive = row->fork_ns_per_path / FORK_DRIVES;
    row->free_ns_per_drive = (double)median(free_ns, FORK_BATCHES) /
                             FORK_BATCH / FORK_DRIVES;
    s2e_pathset_free(set);
    free(kids);
}

static void bench_fork(bool quick)
{
    static const uint64_t sizes[] = { MIB, GIB, 4 * GIB };
    size_t n = quick ? 2 : 3;

    printf("1. Fork time per drive (%d drives, each holding the data; "
           "median of %d batches of %d forks)\n\n",
           FORK_DRIVES, FORK_BATCHES, FORK_BATCH);
    printf("   %-14s %16s %16s %16s\n", "data per drive", "fork ns/drive",
           "fork ns/path", "free ns/drive");
    for (size_t k = 0; k < n; k++) {
        ForkRow row;
        fork_row(sizes[k], &row);
        printf("   %10.0f MiB %16.1f %16.1f %16.1f\n", mib(row.data),
               row.fork_ns_per_drive, row.fork_ns_per_path,
               row.free_ns_per_drive);
    }
    printf("\n   goal: flat, under 1000 ns per drive\n\n");
}

/* ---- 2. Memory of 1000 forks each writing 4 KiB ------------------------ */

static uint64_t union_stats(S2EPathSet *set, S2EPathDrive *drive,
                            S2EOverlayStats *st)
{
    size_t n = s2e_pathset_ids(set, NULL, 0);
    uint64_t *ids = malloc(n * sizeof(*ids));
    S2EOverlay **ovs = malloc(n * sizeof(*ovs));

    if (!ids || !ovs || s2e_pathset_ids(set, ids, n) != n) {
        die("listing paths");
    }
    for (size_t k = 0; k < n; k++) {
        if (s2e_pathset_get_view(set, s2e_pathset_lookup(set, ids[k]), drive,
                                 &ovs[k], NULL) < 0) {
            die("get_view");
        }
    }
    if (s2e_overlay_get_union_stats(ovs, n, st) < 0) {
        die("union stats");
    }
    free(ids);
    free(ovs);
    return st->data_bytes + st->meta_bytes;
}

static void bench_memory(void)
{
    uint64_t data = GIB;
    uint64_t heap0 = heap_in_use(), heap_base, heap_all;
    S2EOverlayStats base_st, all_st;
    S2EPathSet *set = s2e_pathset_new();
    S2EPathDrive *drive;
    S2EPath *p0;
    S2EPathStats own0;
    static unsigned char block[4 * KIB];
    uint64_t step_blocks = data / (4 * KIB) / MEM_PATHS;
    uint64_t nodes, fork_data, fork_goal, goal, klee, dirty_sectors;

    if (!set || s2e_pathset_register_drive(set, "hd", 2 * GIB / SECTOR, NULL,
                                           &drive) < 0) {
        die("setup");
    }
    p0 = s2e_pathset_current(set);
    fill_drive(drive, data);
    heap_base = heap_in_use() - heap0;
    union_stats(set, drive, &base_st);

    memset(block, 0x5a, sizeof(block));
    for (int k = 0; k < MEM_PATHS; k++) {
        S2EPath *child = s2e_pathset_fork(set, p0);
        uint64_t sector = (uint64_t)k * step_blocks * (4 * KIB / SECTOR);
        if (!child || s2e_pathset_switch(set, child) < 0 ||
            s2e_overlay_write(s2e_path_drive_overlay(drive), sector,
                              4 * KIB / SECTOR, block) < 0) {
            die("fork and write");
        }
    }
    if (s2e_pathset_switch(set, p0) < 0 ||
        s2e_pathset_get_stats(set, p0, NULL, &own0) < 0) {
        die("switch back");
    }
    heap_all = heap_in_use() - heap0;
    union_stats(set, drive, &all_st);

    /* What the forks added: their blocks, their copies of the nodes on
     * the way to them, and those blocks' headers. */
    nodes = all_st.meta_bytes - base_st.meta_bytes;
    fork_data = all_st.data_bytes - base_st.data_bytes;
    fork_goal = (uint64_t)(MEM_PATHS * 4 * KIB * 1.10) + nodes;
    goal = data + (uint64_t)(MEM_PATHS * 4 * KIB * 1.10) +
           all_st.meta_bytes;
    dirty_sectors = data / SECTOR + MEM_PATHS * (4 * KIB / SECTOR);
    klee = dirty_sectors * S2E_KLEE_BYTES_PER_SECTOR;

    printf("2. Memory: one path holding 1 GiB, then %d forks of it, each "
           "writing its own 4 KiB block\n\n", MEM_PATHS);
    printf("   %-52s %12s %12s\n", "", "heap MiB", "stats MiB");
    printf("   %-52s %12.2f %12.2f\n", "path 0 alone (1 GiB of data)",
           mib(heap_base), mib(base_st.data_bytes + base_st.meta_bytes));
    printf("   %-52s %12.2f %12.2f\n", "added by the 1000 forks",
           mib(heap_all - heap_base),
           mib(all_st.data_bytes + all_st.meta_bytes -
               base_st.data_bytes - base_st.meta_bytes));
    printf("   %-52s %12s %12.2f\n", "  data blocks", "",
           mib(fork_data));
    printf("   %-52s %12s %12.2f\n", "  tree nodes and block headers", "",
           mib(nodes));
    printf("   %-52s %12.2f %12.2f\n", "total", mib(heap_all),
           mib(all_st.data_bytes + all_st.meta_bytes));
    printf("\n");
    printf("   %-52s %12.2f  %s\n",
           "goal for the forks: 1000 x 4 KiB x 1.10 + their nodes",
           mib(fork_goal),
           heap_all - heap_base <= fork_goal ? "heap within" : "heap OVER");
    printf("   %-52s %12.2f  stats %s, heap %+.2f MiB\n",
           "goal in total: 1 GiB + 4.30 MiB + every node", mib(goal),
           all_st.data_bytes + all_st.meta_bytes <= goal ? "within" : "OVER",
           mib(heap_all) - mib(goal));
    printf("   %-52s\n", "   (nodes: all tree nodes and block headers, "
           "path 0's too; the heap");
    printf("   %-52s\n", "    adds malloc's chunk headers, ~16 B per "
           "allocation)");
    printf("   %-52s %12.2f\n", "heap per fork, KiB",
           (double)(heap_all - heap_base) / MEM_PATHS / KIB);
    printf("   %-52s %12.2f\n", "path 0 after the forks: own MiB",
           mib(own0.own_bytes));
    printf("   %-52s %12.2f\n", "path 0 after the forks: shared MiB",
           mib(own0.shared_bytes));
    printf("\n");
    printf("   S2E's per-sector store (KLEE object states, ~%d B of heap per "
           "dirty sector):\n", S2E_KLEE_BYTES_PER_SECTOR);
    printf("   %-52s %12" PRIu64 "\n", "dirty sectors", dirty_sectors);
    printf("   %-52s %12.2f\n", "S2E per-sector store, MiB", mib(klee));
    printf("   %-52s %12.2f\n", "ours, heap bytes per dirty sector",
           (double)heap_all / dirty_sectors);
    printf("   %-52s %12.2f\n", "ratio S2E / ours", (double)klee / heap_all);
    printf("\n");
    s2e_pathset_free(set);
}

/* ---- 3. Copy-on-write throughput -------------------------------------- */

typedef struct Rate {
    double mb_s;                /* bytes written per second, 10^6 */
    double ns_per_write;
} Rate;

/*
 * Write @sectors sectors at the start of every 4 KiB block of
 * [@first, @first + @bytes) through @drive's current view.
 */
static Rate write_rate(S2EPathDrive *drive, uint64_t first, uint64_t bytes,
                       uint64_t sectors)
{
    static unsigned char block[4 * KIB];
    S2EOverlay *ov = s2e_path_drive_overlay(drive);
    uint64_t step = 4 * KIB / SECTOR;
    uint64_t writes = bytes / (4 * KIB);
    uint64_t t0, ns;
    Rate r;

    memset(block, 0xc3, sizeof(block));
    t0 = now_ns();
    for (uint64_t s = first / SECTOR; s < (first + bytes) / SECTOR;
         s += step) {
        if (s2e_overlay_write(ov, s, sectors, block) < 0) {
            die("write");
        }
    }
    ns = now_ns() - t0;
    r.mb_s = (double)(writes * sectors * SECTOR) / ((double)ns / 1e9) / 1e6;
    r.ns_per_write = (double)ns / writes;
    return r;
}

static void print_rate_row(const char *what, Rate a, Rate b)
{
    printf("   %-44s %9.0f %9.0f %9.0f %9.0f\n", what, a.mb_s,
           a.ns_per_write, b.mb_s, b.ns_per_write);
}

static void bench_throughput(bool quick)
{
    uint64_t bytes = quick ? 256 * MIB : GIB;
    S2EPathSet *set = s2e_pathset_new();
    S2EPath *p0, *child;
    S2EPathDrive *drive;
    Rate fresh[2], owned[2], absent[2];
    static const uint64_t sizes[2] = { 4 * KIB / SECTOR, 1 };

    if (!set || s2e_pathset_register_drive(set, "hd", 2 * GIB / SECTOR, NULL,
                                           &drive) < 0) {
        die("setup");
    }
    p0 = s2e_pathset_current(set);
    /* Path 0 writes [0, bytes) in whole blocks: the shared data. */
    absent[0] = write_rate(drive, 0, bytes, sizes[0]);
    /* And single sectors into blocks beyond, not yet in the overlay. */
    absent[1] = write_rate(drive, bytes, bytes, sizes[1]);
    for (int k = 0; k < 2; k++) {
        child = s2e_pathset_fork(set, p0);
        if (!child || s2e_pathset_switch(set, child) < 0) {
            die("fork");
        }
        fresh[k] = write_rate(drive, 0, bytes, sizes[k]);  /* shared */
        owned[k] = write_rate(drive, 0, bytes, sizes[k]);  /* its own */
        if (s2e_pathset_switch(set, p0) < 0 ||
            s2e_pathset_free_path(set, child) < 0) {
            die("free");
        }
    }

    printf("3. Write throughput over %.0f MiB, one write per 4 KiB block\n\n",
           mib(bytes));
    printf("   %-44s %19s %19s\n", "", "4 KiB writes", "512 B writes");
    printf("   %-44s %9s %9s %9s %9s\n", "", "MB/s", "ns/write", "MB/s",
           "ns/write");
    print_rate_row("fresh fork: first write to a shared block",
                   fresh[0], fresh[1]);
    print_rate_row("unshared path: a block it owns", owned[0], owned[1]);
    print_rate_row("a block not yet in the overlay", absent[0], absent[1]);
    printf("   %-44s %9.2f %9s %9.2f\n", "fresh fork / unshared (MB/s)",
           fresh[0].mb_s / owned[0].mb_s, "", fresh[1].mb_s / owned[1].mb_s);
    printf("\n   (a 512 B first write to a shared block copies the block's "
           "other 7 sectors)\n\n");
    s2e_pathset_free(set);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");

    if (argc > 2 || (argc == 2 && !quick)) {
        fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
        return 2;
    }
    printf("bench-paths: the engine API (block/paths.c) over the overlay "
           "store; block size %zu bytes\n\n", s2e_overlay_block_size());
    bench_fork(quick);
    bench_memory();
    bench_throughput(quick);
    return 0;
}
