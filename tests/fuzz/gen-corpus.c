/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Writes the seed corpus of the snapshot fuzz target:
 *
 *   gen-corpus OUTDIR
 *
 * A few small valid snapshot files made with the real writer (empty,
 * VM state only, sectors only with sector numbers above 2^32, mixed raw
 * and compressed chunks, data and zero extents with zero runs of 2^40
 * sectors on a 2^50-sector disk, runs with partial 4 KiB blocks), in
 * format version 2 and, named v1-*, version 1; then copies with one field
 * changed and every index and header checksum recomputed, so the fuzzer
 * starts past the checksums and deep in each validation step, and copies
 * with a damaged block, table entry or version 1 run.  Deterministic: the
 * same files every run.
 */
#include "../../snapshot/snapshot-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Seed {
    const char *name;
    uint64_t vm_size;
    bool random_vm;
    uint64_t disk_sectors;
    uint64_t sectors[4][3];     /* sector, count, 1 for a zero run */
    uint32_t version;           /* 0: the writer's (2), or 1 */
} Seed;

static const Seed seeds[] = {
    { "valid-empty", 0, false, 0, { { 0 } } },
    { "valid-vmstate", 9000, false, 16, { { 0 } } },
    { "valid-sectors", 0, false, UINT64_C(1) << 36,
      { { 3, 2 }, { 8, 8 }, { UINT64_C(1) << 33, 1 }, { 0 } } },
    { "valid-mixed", 4096 * 2 + 100, true, 4096,
      { { 0, 1 }, { 1, 1 }, { 100, 9 }, { 0 } } },
    { "valid-zero", 5000, false, UINT64_C(1) << 50,
      { { 0, 8, 0 }, { 8, UINT64_C(1) << 40, 1 },
        { UINT64_C(1) << 41, 9, 0 },
        { (UINT64_C(1) << 41) + 9, (UINT64_C(1) << 50) -
                                   (UINT64_C(1) << 41) - 9, 1 } } },
    /* Version 2 block checksums: partial blocks at both ends of a run. */
    { "valid-blocks", 100, false, 64,
      { { 3, 2 }, { 5, 9 }, { 14, 5 }, { 40, 9 } } },
    /* Version 1 files stay readable: one CRC per run, no table. */
    { "v1-valid-sectors", 0, false, UINT64_C(1) << 36,
      { { 3, 2 }, { 8, 8 }, { UINT64_C(1) << 33, 1 }, { 0 } }, 1 },
    { "v1-valid-mixed", 4096 * 2 + 100, true, 4096,
      { { 0, 1 }, { 1, 1 }, { 100, 9 }, { 0 } }, 1 },
    { "v1-valid-zero", 5000, false, UINT64_C(1) << 50,
      { { 0, 8, 0 }, { 8, UINT64_C(1) << 40, 1 }, { 0 } }, 1 },
};

static void die(const char *what, GError *err)
{
    fprintf(stderr, "gen-corpus: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

static void write_seed(const char *dir, const Seed *s)
{
    S2EBaseIdentity id = { .size = 1 << 20, .has_mtime = true,
                           .mtime_sec = 1700000000, .mtime_nsec = 5 };
    S2ESnapshotInfo info = { .date_sec = 1700000001, .icount = UINT64_MAX };
    GError *err = NULL;
    S2ESnapshotWriter *w = s2e_snapshot_writer_new(dir, &id, s->disk_sectors,
                                                   &err);
    char *path = g_build_filename(dir, s->name, NULL);
    uint8_t buf[9 * 512];

    /* Level 1: compressed chunks (and a raw one in valid-mixed), so the
     * corpus reaches the inflate paths; the writer's default stores raw. */
    if (!w || s2e_snapshot_writer_set_chunk_size(w, 4096, &err) < 0 ||
        s2e_snapshot_writer_set_zlib_level(w, 1, &err) < 0 ||
        (s->version &&
         s2e_snapshot_writer_set_version(w, s->version, &err) < 0)) {
        die(s->name, err);
    }
    uint32_t rnd = 12345;

    for (uint64_t pos = 0; pos < s->vm_size; pos++) {
        uint8_t b = (uint8_t)"seed"[pos % 4];

        rnd = rnd * 1103515245u + 12345u;
        if (s->random_vm && pos < 4096) {
            b = (uint8_t)(rnd >> 23);    /* incompressible: a raw chunk */
        }
        if (s2e_snapshot_writer_put_vmstate(w, pos, &b, 1, &err) < 0) {
            die(s->name, err);
        }
    }
    for (int i = 0; i < 4 && s->sectors[i][1]; i++) {
        int ret;

        memset(buf, 0x40 + i, sizeof(buf));
        if (s->sectors[i][2]) {
            ret = s2e_snapshot_writer_add_zero_sectors(w, s->sectors[i][0],
                                                       s->sectors[i][1], &err);
        } else {
            ret = s2e_snapshot_writer_add_sectors(w, s->sectors[i][0],
                                                  s->sectors[i][1], buf, &err);
        }
        if (ret < 0) {
            die(s->name, err);
        }
    }
    g_strlcpy(info.name, s->name, sizeof(info.name));
    if (s2e_snapshot_writer_commit(w, path, &info, &err) < 0) {
        die(s->name, err);
    }
    g_free(path);
}

static void reseal(uint8_t *f)
{
    uint64_t co = s2e_snap_get_le64(f + 136), cn = s2e_snap_get_le64(f + 128);
    uint64_t eo = s2e_snap_get_le64(f + 152), en = s2e_snap_get_le64(f + 144);
    size_t total = s2e_snap_get_le32(f + 12) + s2e_snap_get_le32(f + 36) +
                   s2e_snap_get_le32(f + 40);

    s2e_snap_put_le32(f + 124, s2e_snap_crc32(0, f + co, cn * 24));
    s2e_snap_put_le32(f + 168, s2e_snap_crc32(0, f + eo, en * 32));
    s2e_snap_put_le32(f + 32, 0);
    s2e_snap_put_le32(f + 32, s2e_snap_crc32(0, f, MIN(total, 4096)));
}

typedef struct Mutation {
    const char *name;
    const char *from;
    int kind;           /* 0: le32 at off, 1: le64 at off, 2: truncate,
                           3: flip the bits of value in the byte at off */
    uint64_t off;       /* header offset, or from the index when >= 1000 */
    uint64_t value;
} Mutation;

/* Offsets >= 1000: 1000 + n is byte n of the chunk index, 2000 + n of the
 * extent index, 3000 + n of the block checksum table, 4000 + n of the
 * data of the first extent. */
static const Mutation mutations[] = {
    { "mut-version", "valid-vmstate", 0, 8, 3 },
    { "mut-incompat", "valid-vmstate", 1, 16, 2 },
    { "mut-header-length", "valid-mixed", 0, 12, 184 },
    { "mut-chunk-size", "valid-vmstate", 0, 120, 8192 },
    { "mut-vm-size", "valid-vmstate", 1, 112, 9001 },
    { "mut-disk-sectors", "valid-sectors", 1, 96, 9 },
    { "mut-chunk-raw", "valid-mixed", 0, 1000 + 24 + 16, 1 },
    { "mut-chunk-len", "valid-mixed", 0, 1000 + 8, 4000 },
    { "mut-extent-order", "valid-sectors", 1, 2000 + 32, 2 },
    { "mut-extent-offset", "valid-sectors", 1, 2000 + 16, 4608 },
    { "mut-truncated", "valid-mixed", 2, 0, 5000 },
    { "mut-extent-flags", "valid-sectors", 0, 2000 + 28, 2 },
    { "mut-zero-feature", "valid-zero", 1, 16, 0 },
    { "mut-zero-offset", "valid-zero", 1, 2000 + 32 + 16, 8192 },
    { "mut-zero-flag-on-data", "valid-zero", 0, 2000 + 64 + 28, 1 },
    { "mut-zero-count", "valid-zero", 1, 2000 + 96 + 8,
      UINT64_C(1) << 50 },
    { "mut-zero-truncated", "valid-zero", 2, 0, 4096 + 1000 },
    { "mut-csum-count", "valid-blocks", 1, 184, 7 },
    { "mut-csum-offset", "valid-blocks", 1, 176, 4096 },
    { "mut-csum-entry", "valid-blocks", 3, 3000 + 9, 0x20 },
    { "mut-block-data", "valid-blocks", 3, 4000 + 600, 0x01 },
    { "mut-v1-as-v2", "v1-valid-sectors", 0, 8, 2 },
    { "mut-v1-extent-data", "v1-valid-sectors", 3, 4000 + 5, 0x04 },
};

static void write_mutation(const char *dir, const Mutation *m)
{
    char *from = g_build_filename(dir, m->from, NULL);
    char *to = g_build_filename(dir, m->name, NULL);
    gchar *data;
    gsize len;
    uint8_t *f;
    uint64_t off = m->off;

    if (!g_file_get_contents(from, &data, &len, NULL)) {
        die(from, NULL);
    }
    f = (uint8_t *)data;
    if (off >= 4000) {
        off = s2e_snap_get_le64(f + s2e_snap_get_le64(f + 152) + 16) +
              off - 4000;
    } else if (off >= 3000) {
        off = s2e_snap_get_le64(f + 176) + off - 3000;
    } else if (off >= 2000) {
        off = s2e_snap_get_le64(f + 152) + off - 2000;
    } else if (off >= 1000) {
        off = s2e_snap_get_le64(f + 136) + off - 1000;
    }
    if (m->kind == 3) {
        f[off] ^= (uint8_t)m->value;
    } else if (m->kind == 2) {
        len = m->value;
    } else if (m->kind == 1) {
        s2e_snap_put_le64(f + off, m->value);
    } else {
        s2e_snap_put_le32(f + off, (uint32_t)m->value);
    }
    if (m->kind != 2) {
        reseal(f);
    }
    if (!g_file_set_contents(to, data, len, NULL)) {
        die(to, NULL);
    }
    g_free(data);
    g_free(from);
    g_free(to);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(seeds); i++) {
        write_seed(argv[1], &seeds[i]);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(mutations); i++) {
        write_mutation(argv[1], &mutations[i]);
    }
    return 0;
}
