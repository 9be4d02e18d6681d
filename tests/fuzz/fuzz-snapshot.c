/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: the snapshot reader (header, indexes, regions, then every
 * read path) on arbitrary bytes.
 *
 * Each input becomes the contents of a memfd, opened by path through
 * /proc/self/fd so the real s2e_snapshot_open() runs: fstat, pread, the
 * codec's validation in its fixed order.  When the file is accepted, the
 * target exercises what QEMU would do with it (extent walks by kind,
 * sector reads (zero extents must read as zeroes), VM state reads around
 * the chunk boundaries and past the end, the base identity check, full
 * verification) and checks the API's promises; a
 * broken promise aborts, which libFuzzer reports.  A refused file must come
 * with an S2E_SNAPSHOT_ERROR naming the file.  Both format versions are
 * covered: version 2's block checksum table is resealed like the other
 * checksums, and once a file verifies, every stored sector must read, the
 * same through a fresh handle whatever piece of a block is read first.
 *
 * Built two ways (tests/fuzz/meson.build): with clang and -fsanitize=fuzzer
 * as a libFuzzer binary, and with any compiler plus fuzz-main.c as a plain
 * program that replays the seed corpus (meson test suite 'fuzz').
 */
#include "../../snapshot/snapshot-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define READ_MAX 65536

static void promise(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "broken promise: %s\n", what);
        abort();
    }
}

static const char *input_path(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];

    if (fd < 0) {
        fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
        promise(fd >= 0, "memfd_create");
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    promise(ftruncate(fd, 0) == 0, "ftruncate");
    promise(size == 0 || pwrite(fd, data, size, 0) == (ssize_t)size,
            "pwrite");
    return path;
}

static void walk_extents(S2ESnapshot *snap, uint8_t *buf)
{
    const S2ESnapshotInfo *info = s2e_snapshot_get_info(snap);
    uint64_t n, count, kcount, zero = 0;
    const S2ESnapExtent *e = s2e_snapshot_extents(snap, &n);
    uint64_t sector = 0;
    S2ESnapshotLayout l;

    s2e_snapshot_get_layout(snap, &l);
    for (uint64_t i = 0; i < n; i++) {
        zero += e[i].flags & S2E_SNAP_EXTENT_ZERO ? e[i].count : 0;
    }
    promise(zero == info->zero_sectors, "zero_sectors adds up");
    promise(zero <= info->dirty_sectors, "zero sectors are dirty sectors");
    promise(l.zero_extent_count <= l.extent_count, "zero extent count");
    promise(zero == 0 || (l.incompatible_features &
                          S2E_SNAP_INCOMPAT_ZERO_EXTENTS),
            "zero extents only with their feature bit");
    for (uint64_t i = 0; i < n && i < 16; i++) {
        bool is_zero = e[i].flags & S2E_SNAP_EXTENT_ZERO;
        uint64_t c = MIN(e[i].count, READ_MAX / 512);
        S2EExtentKind kind;

        promise(s2e_snapshot_extent(snap, e[i].sector, UINT64_MAX, &count),
                "an extent's first sector is stored");
        promise(count >= e[i].count, "stored run covers the extent");
        kind = s2e_snapshot_extent_kind(snap, e[i].sector, UINT64_MAX,
                                        &kcount);
        promise(kind == (is_zero ? S2E_EXTENT_ZERO
                                 : S2E_EXTENT_DATA),
                "an extent's kind is its flag");
        promise(kcount >= e[i].count && kcount <= count,
                "a run of one kind covers the extent, within the held run");
        /* May fail (data past a truncation is caught at open, but a
         * read can still meet an I/O error); must not crash. */
        memset(buf, 0x5a, c * 512);
        if (s2e_snapshot_read_sectors(snap, e[i].sector, c, buf, NULL) == 0 &&
            is_zero) {
            for (size_t k = 0; k < c * 512; k++) {
                promise(buf[k] == 0, "a zero extent reads as zeroes");
            }
        }
    }
    for (int i = 0; i < 32 && sector < info->disk_sectors; i++) {
        S2EExtentKind kind;
        bool held = s2e_snapshot_extent(snap, sector, 1000, &count);

        promise(count >= 1 && count <= 1000, "extent count in range");
        kind = s2e_snapshot_extent_kind(snap, sector, 1000, &kcount);
        promise(kcount >= 1 && kcount <= count, "kind count in range");
        promise(held == (kind != S2E_EXTENT_ABSENT),
                "held exactly when the kind is not NONE");
        sector += kcount;
    }
}

static void read_vmstate(S2ESnapshot *snap, uint8_t *buf)
{
    const S2ESnapshotInfo *info = s2e_snapshot_get_info(snap);
    S2ESnapshotLayout l;
    uint64_t size = info->vm_state_size;
    uint64_t pos[6];

    s2e_snapshot_get_layout(snap, &l);
    pos[0] = 0;
    pos[1] = size ? size - 1 : 0;
    pos[2] = size;
    pos[3] = size + 100;
    pos[4] = l.chunk_size - 1;     /* across the first chunk boundary */
    pos[5] = UINT64_MAX - 5;
    for (size_t i = 0; i < G_N_ELEMENTS(pos); i++) {
        size_t len = 4096;
        memset(buf, 0x5a, len);
        if (s2e_snapshot_read_vmstate(snap, pos[i], buf, len, NULL) == 0 &&
            pos[i] >= size) {
            for (size_t k = 0; k < len; k++) {
                promise(buf[k] == 0, "VM state past the end reads zero");
            }
        }
    }
}

/* After a successful full verification, every stored run reads, and a
 * fresh handle (nothing verified yet) returns the same bytes when it reads
 * the run's second half before its first (partial blocks first). */
static void reads_after_verify(S2ESnapshot *snap, const char *path,
                               uint8_t *buf)
{
    uint64_t n;
    const S2ESnapExtent *e = s2e_snapshot_extents(snap, &n);
    S2ESnapshot *fresh = s2e_snapshot_open(path, "img", NULL, NULL);
    uint8_t *again = g_malloc(READ_MAX);

    promise(fresh != NULL, "a verified file opens again");
    for (uint64_t i = 0; i < n && i < 16; i++) {
        uint64_t c = MIN(e[i].count, READ_MAX / 512);
        uint64_t half = c / 2;

        promise(s2e_snapshot_read_sectors(snap, e[i].sector, c, buf,
                                          NULL) == 0,
                "a verified run reads");
        promise(s2e_snapshot_read_sectors(fresh, e[i].sector + half, c - half,
                                          again + half * 512, NULL) == 0 &&
                s2e_snapshot_read_sectors(fresh, e[i].sector, half, again,
                                          NULL) == 0,
                "a verified run reads in pieces");
        promise(memcmp(buf, again, c * 512) == 0,
                "pieces read the same bytes");
    }
    g_free(again);
    s2e_snapshot_close(fresh);
}

static void exercise(S2ESnapshot *snap, const char *path)
{
    S2EBaseIdentity other = { .size = 1, .has_mtime = true,
                              .mtime_sec = INT64_MIN, .mtime_nsec = 1 };
    GError *err = NULL;
    uint8_t *buf = g_malloc(READ_MAX);

    promise(s2e_snapshot_check_base(snap, "img", s2e_snapshot_get_base(snap),
                                    NULL) == 0, "own identity matches");
    if (s2e_snapshot_check_base(snap, "img", &other, &err) < 0) {
        promise(err && err->code == S2E_SNAPSHOT_ERROR_BASE_CHANGED,
                "base refusal code");
        g_clear_error(&err);
    }
    walk_extents(snap, buf);
    read_vmstate(snap, buf);
    if (s2e_snapshot_verify_all(snap, &err) < 0) {
        promise(err != NULL, "verify sets an error");
        g_clear_error(&err);
    } else {
        reads_after_verify(snap, path, buf);
    }
    g_free(buf);
}

/* ---- Resealing ---------------------------------------------------------
 *
 * Random mutations almost never keep a CRC right, so on their own they stop
 * at the first checksum.  Each input is therefore also tried "resealed":
 * every checksum the file's own (possibly nonsensical) offsets reach is
 * recomputed, which lets the fuzzer explore every rule behind them. */

static bool in_file(uint64_t off, uint64_t len, size_t size)
{
    return off <= size && len <= size - off;
}

static void reseal_chunks(uint8_t *f, size_t size, uint32_t version)
{
    uint64_t off = s2e_snap_get_le64(f + 136);
    uint64_t n = s2e_snap_get_le64(f + 128);

    if (n > size / 24 || !in_file(off, n * 24, size)) {
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *e = f + off + i * 24;
        uint64_t coff = s2e_snap_get_le64(e);
        uint32_t clen = s2e_snap_get_le32(e + 8);
        if (in_file(coff, clen, size)) {
            s2e_snap_put_le32(e + 12, s2e_snap_chunk_csum(version, f + coff,
                                                          clen));
        }
    }
    s2e_snap_put_le32(f + 124, s2e_snap_crc32(0, f + off, n * 24));
}

/* Version 2: the table entries of a data extent's blocks, from entry
 * *next on; returns false when the table ends. */
static bool reseal_blocks(uint8_t *f, size_t size, const uint8_t *e,
                          uint64_t *next)
{
    uint64_t table = s2e_snap_get_le64(f + 176);
    uint64_t entries = s2e_snap_get_le64(f + 184);
    uint64_t sector = s2e_snap_get_le64(e);
    uint64_t end = sector + s2e_snap_get_le64(e + 8);
    uint64_t doff = s2e_snap_get_le64(e + 16);

    if (entries > size / 4 || !in_file(table, entries * 4, size) ||
        end < sector || end - sector > size / 512) {
        return false;
    }
    for (uint64_t lo = sector; lo < end; (*next)++) {
        uint64_t hi = MIN(end, (lo / 8 + 1) * 8);
        uint64_t at = doff + (lo - sector) * 512;

        if (*next >= entries) {
            return false;
        }
        if (in_file(at, (hi - lo) * 512, size)) {
            s2e_snap_put_le32(f + table + *next * 4,
                              s2e_snap_data_csum(f + at, (hi - lo) * 512));
        }
        lo = hi;
    }
    return true;
}

static void reseal_extents(uint8_t *f, size_t size, uint32_t version)
{
    uint64_t off = s2e_snap_get_le64(f + 152);
    uint64_t n = s2e_snap_get_le64(f + 144);
    uint64_t next_block = 0;
    bool blocks = version == S2E_SNAP_VERSION_2;

    if (n > size / 32 || !in_file(off, n * 32, size)) {
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *e = f + off + i * 32;
        uint64_t count = s2e_snap_get_le64(e + 8);
        uint64_t doff = s2e_snap_get_le64(e + 16);
        if (s2e_snap_get_le32(e + 28) & S2E_SNAP_EXTENT_ZERO) {
            continue;   /* stores nothing: its crc must stay 0 */
        }
        if (blocks) {
            blocks = reseal_blocks(f, size, e, &next_block);
        } else if (version == S2E_SNAP_VERSION_1 && count <= size / 512 &&
                   in_file(doff, count * 512, size)) {
            s2e_snap_put_le32(e + 24, s2e_snap_crc32(0, f + doff,
                                                     count * 512));
        }
    }
    s2e_snap_put_le32(f + 168, s2e_snap_crc32(0, f + off, n * 32));
}

static void reseal(uint8_t *f, size_t size)
{
    uint64_t total = (uint64_t)s2e_snap_get_le32(f + 12) +
                     s2e_snap_get_le32(f + 36) + s2e_snap_get_le32(f + 40);
    uint32_t version = s2e_snap_get_le32(f + 8);

    reseal_chunks(f, size, version);
    reseal_extents(f, size, version);
    if (total >= 36 && total <= S2E_SNAP_HEADER_AREA) {
        s2e_snap_put_le32(f + 32, 0);
        s2e_snap_put_le32(f + 32, s2e_snap_crc32(0, f, total));
    }
}

static void run_one(const uint8_t *data, size_t size)
{
    const char *path = input_path(data, size);
    GError *err = NULL;
    S2ESnapshot *snap = s2e_snapshot_open(path, "img", NULL, &err);

    if (!snap) {
        promise(err && err->domain == S2E_SNAPSHOT_ERROR,
                "a refusal has an error");
        promise(strstr(err->message, path) != NULL,
                "the message names the file");
        g_error_free(err);
        return;
    }
    promise(!err, "success sets no error");
    exercise(snap, path);
    s2e_snapshot_close(snap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;

    run_one(data, size);
    if (size >= S2E_SNAP_HEADER_AREA) {
        copy = memcpy(g_malloc(size), data, size);
        reseal(copy, size);
        if (memcmp(copy, data, size) != 0) {
            run_one(copy, size);
        }
        g_free(copy);
    }
    return 0;
}
