/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the path set and the engine API (block/paths.c).
 *
 * - api:     ids (0 at start, next unused integer, never reused, listed
 *            ascending), handles, every error case (free current, unknown
 *            id, freed handle, NULL, size mismatch), the default set.
 * - drives:  a drive registered after paths exist shows its base in every
 *            path; unregistering while several paths exist; a set with no
 *            drive; loadvm (replace_view) changes the current path only.
 * - stats:   own/shared bytes, and after all paths but one are freed, the
 *            statistics return to what that path alone holds.
 * - enomem:  a fork that runs out of memory half-way leaves the set as it
 *            was (overlay allocation budget, overlay-internal.h).
 * - model:   random fork / switch / write / write_zeroes / discard / read /
 *            free / register / unregister / replace_view sequences over
 *            drives of different sizes, checked after every step against
 *            a shadow model, with s2e_overlay_check() over all live
 *            overlays of the drives touched and the layer references
 *            recounted.  At least 10^6 steps per default run.
 * - threads: one I/O thread per drive writing the current path's view
 *            while the main thread forks, frees and inspects other paths;
 *            forks of the current path and switches between rounds.
 *
 * The shadow model keeps one 32-bit tag per (path, drive, sector): 0 =
 * ABSENT (reads the drive's base, a deterministic function of the
 * sector), 1 = ZERO, >= 2 = DATA written by the write with that tag.  The
 * bytes of a sector are a function of (tag, drive, sector), so the model
 * stays small and a sector found at the wrong place or path is caught.
 *
 * Random tests print their seed (S2E_TEST_SEED replays a run) and scale
 * with S2E_TEST_SCALE.
 */
#include "runner.h"
#include "s2e-block/paths.h"
#include "../../block/overlay-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTOR S2E_SECTOR_SIZE
#define WORDS (SECTOR / 8)
#define CHUNK 32                /* sectors per read or write buffer */

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

enum { TAG_ABSENT = 0, TAG_ZERO = 1, TAG_FIRST_DATA = 2 };

/* ---- Sector contents ---------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

/* The bytes sector @s of drive @uid holds under @tag (ABSENT: the base). */
static void sector_fill(uint64_t *w, uint32_t tag, uint32_t uid, uint64_t s)
{
    uint64_t x;

    if (tag == TAG_ZERO) {
        memset(w, 0, SECTOR);
        return;
    }
    x = mix64(((uint64_t)tag << 32 | uid) ^ mix64(s + 0x5bd1e995));
    for (unsigned k = 0; k < WORDS; k++) {
        w[k] = x + k * UINT64_C(0x9e3779b97f4a7c15);
    }
}

static bool sector_equal(const uint64_t *w, uint32_t tag, uint32_t uid,
                         uint64_t s)
{
    uint64_t want[WORDS];

    sector_fill(want, tag, uid, s);
    return !memcmp(w, want, SECTOR);
}

static S2EExtentKind tag_kind(uint32_t tag)
{
    return tag == TAG_ABSENT ? S2E_EXTENT_ABSENT :
           tag == TAG_ZERO ? S2E_EXTENT_ZERO : S2E_EXTENT_DATA;
}

/*
 * Read [s, s + n) of a view as the glue does: the base for every sector,
 * then the overlay on top (it leaves ABSENT sectors alone).
 */
static int view_read(S2EOverlay *ov, uint32_t uid, uint64_t s, uint64_t n,
                     uint64_t *buf)
{
    for (uint64_t k = 0; k < n; k++) {
        sector_fill(buf + k * WORDS, TAG_ABSENT, uid, s + k);
    }
    return s2e_overlay_read(ov, s, n, buf);
}

/*
 * Compare [s, s + n) of @ov with @tags (the model of that view, indexed by
 * sector): contents and extent kinds.  Reports the first difference.
 */
static bool view_matches(S2EOverlay *ov, const uint32_t *tags, uint32_t uid,
                         uint64_t s, uint64_t n, const char *what)
{
    uint64_t buf[WORDS * CHUNK];
    uint64_t pos = s;

    while (pos < s + n) {
        uint64_t chunk = MIN(s + n - pos, CHUNK);
        if (view_read(ov, uid, pos, chunk, buf) < 0) {
            fprintf(stderr, "%s: read failed\n", what);
            return false;
        }
        for (uint64_t k = 0; k < chunk; k++) {
            if (!sector_equal(buf + k * WORDS, tags[pos + k], uid, pos + k)) {
                fprintf(stderr, "%s: drive %u sector %" PRIu64
                        ": contents differ from tag %u\n",
                        what, uid, pos + k, tags[pos + k]);
                return false;
            }
        }
        pos += chunk;
    }
    for (pos = s; pos < s + n;) {
        S2EExtentKind kind;
        uint64_t len;
        if (s2e_overlay_extent(ov, pos, s + n - pos, &kind, &len) < 0 ||
            len == 0) {
            fprintf(stderr, "%s: extent failed\n", what);
            return false;
        }
        for (uint64_t k = pos; k < pos + len; k++) {
            if (tag_kind(tags[k]) != kind) {
                fprintf(stderr, "%s: drive %u sector %" PRIu64
                        ": extent kind %d, model tag %u\n",
                        what, uid, k, kind, tags[k]);
                return false;
            }
        }
        pos += len;
    }
    return true;
}

/* ---- Fake layers: count the references the set holds ------------------- */

typedef struct FakeLayer {
    int refs;
    int id;
} FakeLayer;

static void fake_ref(void *layer)
{
    ((FakeLayer *)layer)->refs++;
}

static void fake_unref(void *layer)
{
    FakeLayer *l = layer;

    CU_ASSERT(l->refs > 0);
    l->refs--;
}

static const S2EPathLayerOps fake_ops = {
    .ref = fake_ref,
    .unref = fake_unref,
};

/* ---- Helpers for the deterministic tests -------------------------------- */

static bool overlays_ok(S2EOverlay *const *ovs, size_t n)
{
    const char *why = NULL;

    if (!s2e_overlay_check(ovs, n, &why)) {
        fprintf(stderr, "s2e_overlay_check: %s\n", why ? why : "?");
        return false;
    }
    return true;
}

static S2EOverlay *view_overlay(S2EPathSet *set, S2EPath *path,
                                S2EPathDrive *drive)
{
    S2EOverlay *ov = NULL;

    CU_ASSERT_EQUAL(s2e_pathset_get_view(set, path, drive, &ov, NULL), 0);
    return ov;
}

static void *view_layer(S2EPathSet *set, S2EPath *path, S2EPathDrive *drive)
{
    void *layer = (void *)1;

    CU_ASSERT_EQUAL(s2e_pathset_get_view(set, path, drive, NULL, &layer), 0);
    return layer;
}

/* Write @n sectors with @tag through the current path's view. */
static int write_tag(S2EPathDrive *drive, uint32_t uid, uint64_t s,
                     uint64_t n, uint32_t tag)
{
    uint64_t buf[WORDS * CHUNK];
    uint64_t pos = s;

    while (pos < s + n) {
        uint64_t chunk = MIN(s + n - pos, CHUNK);
        int ret;
        for (uint64_t k = 0; k < chunk; k++) {
            sector_fill(buf + k * WORDS, tag, uid, pos + k);
        }
        ret = s2e_overlay_write(s2e_path_drive_overlay(drive), pos, chunk,
                                buf);
        if (ret < 0) {
            return ret;
        }
        pos += chunk;
    }
    return 0;
}

/* Does @ov read @tag over [s, s + n) (uniform tag)? */
static bool reads_tag(S2EOverlay *ov, uint32_t uid, uint64_t s, uint64_t n,
                      uint32_t tag)
{
    uint32_t *tags = calloc(s + n, sizeof(*tags));
    bool ok;

    for (uint64_t k = s; k < s + n; k++) {
        tags[k] = tag;
    }
    ok = view_matches(ov, tags, uid, s, n, "reads_tag");
    free(tags);
    return ok;
}

static uint64_t union_data_bytes(S2EPathSet *set, S2EPathDrive *drive,
                                 uint64_t *shared)
{
    uint64_t ids[64];
    S2EOverlay *ovs[64];
    size_t n = s2e_pathset_ids(set, ids, 64);
    S2EOverlayStats st;

    CU_ASSERT_FATAL(n <= 64);
    for (size_t k = 0; k < n; k++) {
        ovs[k] = view_overlay(set, s2e_pathset_lookup(set, ids[k]), drive);
    }
    CU_ASSERT_EQUAL(s2e_overlay_get_union_stats(ovs, n, &st), 0);
    if (shared) {
        *shared = st.shared_data_bytes;
    }
    return st.data_bytes;
}

/* ---- api ---------------------------------------------------------------- */

static void test_ids(void)
{
    S2EPathSet *set = s2e_pathset_new();
    S2EPath *p0, *p1, *p2, *p3, *p4;
    uint64_t ids[8];

    CU_ASSERT_PTR_NOT_NULL_FATAL(set);
    p0 = s2e_pathset_current(set);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p0);
    CU_ASSERT_EQUAL(s2e_path_id(p0), 0);
    CU_ASSERT_EQUAL(s2e_pathset_ids(set, ids, 8), 1);
    CU_ASSERT_EQUAL(ids[0], 0);
    CU_ASSERT_PTR_EQUAL(s2e_pathset_lookup(set, 0), p0);

    p1 = s2e_pathset_fork(set, p0);
    p2 = s2e_pathset_fork(set, NULL);       /* NULL: the current path */
    p3 = s2e_pathset_fork(set, p1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p3);
    CU_ASSERT_EQUAL(s2e_path_id(p1), 1);
    CU_ASSERT_EQUAL(s2e_path_id(p2), 2);
    CU_ASSERT_EQUAL(s2e_path_id(p3), 3);
    CU_ASSERT_PTR_EQUAL(s2e_pathset_current(set), p0);  /* unchanged */

    /* Ids are never reused. */
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, p3), 0);
    p4 = s2e_pathset_fork(set, p2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p4);
    CU_ASSERT_EQUAL(s2e_path_id(p4), 4);
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, p1), 0);

    /* Ascending, and the count even when the array is short. */
    CU_ASSERT_EQUAL(s2e_pathset_ids(set, ids, 8), 3);
    CU_ASSERT_EQUAL(ids[0], 0);
    CU_ASSERT_EQUAL(ids[1], 2);
    CU_ASSERT_EQUAL(ids[2], 4);
    CU_ASSERT_EQUAL(s2e_pathset_ids(set, ids, 1), 3);
    CU_ASSERT_EQUAL(s2e_pathset_ids(set, NULL, 0), 3);
    CU_ASSERT_PTR_EQUAL(s2e_pathset_lookup(set, 4), p4);
    CU_ASSERT_PTR_NULL(s2e_pathset_lookup(set, 1));
    CU_ASSERT_PTR_NULL(s2e_pathset_lookup(set, 3));
    CU_ASSERT_PTR_NULL(s2e_pathset_lookup(set, 5));

    /* Path 0 may be freed once it is not current. */
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, p4), 0);
    CU_ASSERT_PTR_EQUAL(s2e_pathset_current(set), p4);
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, p4), 0);    /* no-op */
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, p0), 0);
    CU_ASSERT_EQUAL(s2e_pathset_ids(set, ids, 8), 2);
    CU_ASSERT_EQUAL(ids[0], 2);
    CU_ASSERT_EQUAL(ids[1], 4);
    s2e_pathset_free(set);
    s2e_pathset_free(NULL);
}

static void test_errors(void)
{
    S2EPathSet *set = s2e_pathset_new();
    S2EPathDrive *drive = NULL, *other = NULL;
    S2EPath *p0, *p1, *gone;
    S2EPathStats st;
    S2EOverlay *ov;

    CU_ASSERT_PTR_NOT_NULL_FATAL(set);
    p0 = s2e_pathset_current(set);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "d", 100, &fake_ops,
                                               &drive), 0);
    p1 = s2e_pathset_fork(set, NULL);
    gone = s2e_pathset_fork(set, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gone);
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, gone), 0);

    /* Freeing the current path. */
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, p0), -EBUSY);
    CU_ASSERT_PTR_EQUAL(s2e_pathset_lookup(set, 0), p0);

    /* A freed handle, an unknown id, NULL. */
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, gone), -ENOENT);
    CU_ASSERT_PTR_EQUAL(s2e_pathset_current(set), p0);
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, gone), -ENOENT);
    CU_ASSERT_EQUAL(s2e_pathset_get_stats(set, gone, NULL, &st), -ENOENT);
    CU_ASSERT_EQUAL(s2e_pathset_get_view(set, gone, drive, &ov, NULL),
                    -ENOENT);
    errno = 0;
    CU_ASSERT_PTR_NULL(s2e_pathset_fork(set, gone));
    CU_ASSERT_EQUAL(errno, ENOENT);
    CU_ASSERT_PTR_NULL(s2e_pathset_lookup(set, 2));
    CU_ASSERT_PTR_NULL(s2e_pathset_lookup(set, UINT64_MAX));
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, NULL), -EINVAL);
    CU_ASSERT_EQUAL(s2e_pathset_switch(NULL, p1), -EINVAL);
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, NULL), -EINVAL);
    CU_ASSERT_EQUAL(s2e_pathset_get_stats(set, NULL, NULL, &st), -EINVAL);
    CU_ASSERT_EQUAL(s2e_pathset_get_stats(set, p1, NULL, NULL), -EINVAL);
    errno = 0;
    CU_ASSERT_PTR_NULL(s2e_pathset_fork(NULL, NULL));
    CU_ASSERT_EQUAL(errno, EINVAL);
    CU_ASSERT_EQUAL(s2e_path_id(NULL), UINT64_MAX);
    CU_ASSERT_PTR_NULL(s2e_path_drive_overlay(NULL));
    CU_ASSERT_PTR_NULL(s2e_path_drive_layer(NULL));

    /* Handles of another set are not live in this one. */
    {
        S2EPathSet *set2 = s2e_pathset_new();
        CU_ASSERT_EQUAL(s2e_pathset_switch(set2, p1), -ENOENT);
        CU_ASSERT_EQUAL(s2e_pathset_free_path(set2, p1), -ENOENT);
        CU_ASSERT_EQUAL(s2e_pathset_unregister_drive(set2, drive), -ENOENT);
        CU_ASSERT_EQUAL(s2e_pathset_get_stats(set2, s2e_pathset_current(set2),
                                              drive, &st), -ENOENT);
        s2e_pathset_free(set2);
    }

    /* Drives: sizes, NULLs, double unregister. */
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "z", 0, NULL, &other),
                    -EINVAL);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "z",
                                               S2E_OVERLAY_MAX_SECTORS + 1,
                                               NULL, &other), -EINVAL);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "z", 1, NULL, NULL),
                    -EINVAL);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(NULL, "z", 1, NULL, &other),
                    -EINVAL);
    CU_ASSERT_PTR_NULL(other);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, NULL, 1, NULL, &other),
                    0);
    CU_ASSERT_STRING_EQUAL(s2e_path_drive_name(other), "");
    CU_ASSERT_EQUAL(s2e_pathset_unregister_drive(set, other), 0);
    CU_ASSERT_EQUAL(s2e_pathset_unregister_drive(set, NULL), -EINVAL);

    /* replace_view: wrong size, another account, the current overlay
     * itself, NULL. */
    ov = s2e_overlay_new(101);
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(drive, ov, NULL), -EINVAL);
    s2e_overlay_free(ov);
    ov = s2e_overlay_new(s2e_path_drive_nb_sectors(drive));
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(drive, ov, NULL), -EINVAL);
    s2e_overlay_free(ov);
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(drive,
                                                s2e_path_drive_overlay(drive),
                                                NULL), -EINVAL);
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(drive, NULL, NULL), -EINVAL);
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(NULL, NULL, NULL), -EINVAL);

    /* Everything still consistent. */
    {
        S2EOverlay *ovs[2] = { view_overlay(set, p0, drive),
                               view_overlay(set, p1, drive) };
        CU_ASSERT(overlays_ok(ovs, 2));
    }
    s2e_pathset_free(set);
}

/* The engine API on the process-wide set. */
static void test_default_set(void)
{
    S2EPathSet *set = s2e_paths_default();
    S2EPath *p0, *a, *b;
    S2EPathDrive *drive;
    S2EPathStats st;
    uint64_t ids[4];

    CU_ASSERT_PTR_NOT_NULL_FATAL(set);
    CU_ASSERT_PTR_EQUAL(s2e_paths_default(), set);
    p0 = s2e_path_current();
    CU_ASSERT_PTR_NOT_NULL_FATAL(p0);
    CU_ASSERT_EQUAL(s2e_path_id(p0), 0);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "hd0", 64, NULL, &drive),
                    0);
    CU_ASSERT_EQUAL(write_tag(drive, 1, 0, 8, 7), 0);

    a = s2e_path_fork(p0);
    b = s2e_path_fork(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(s2e_path_id(a), 1);
    CU_ASSERT_EQUAL(s2e_path_id(b), 2);
    CU_ASSERT_PTR_EQUAL(s2e_path_lookup(2), b);
    CU_ASSERT_EQUAL(s2e_path_ids(ids, 4), 3);
    CU_ASSERT_EQUAL(s2e_path_switch(a), 0);
    CU_ASSERT_PTR_EQUAL(s2e_path_current(), a);
    CU_ASSERT_EQUAL(write_tag(drive, 1, 0, 8, 9), 0);
    CU_ASSERT_EQUAL(s2e_path_get_stats(a, NULL, &st), 0);
    CU_ASSERT_EQUAL(st.own_bytes, 8 * SECTOR);
    CU_ASSERT_EQUAL(s2e_path_get_stats(p0, drive, &st), 0);
    CU_ASSERT_EQUAL(st.shared_bytes, 8 * SECTOR);
    CU_ASSERT_EQUAL(s2e_path_free(a), -EBUSY);
    CU_ASSERT_EQUAL(s2e_path_switch(p0), 0);
    CU_ASSERT(reads_tag(s2e_path_drive_overlay(drive), 1, 0, 8, 7));
    CU_ASSERT_EQUAL(s2e_path_free(a), 0);
    CU_ASSERT_EQUAL(s2e_path_free(b), 0);
    CU_ASSERT_EQUAL(s2e_path_free(a), -ENOENT);
    CU_ASSERT_PTR_NULL(s2e_path_lookup(1));
    CU_ASSERT_EQUAL(s2e_path_ids(ids, 4), 1);

    /* Leave the default set as it was found, but for the used ids. */
    CU_ASSERT_EQUAL(s2e_pathset_unregister_drive(set, drive), 0);
}

/*
 * Thousands of paths: the handle table grows and shrinks under random
 * frees, lookups and listings stay exact, freed handles are refused.
 */
static void test_many_paths(void)
{
    enum { N = 4000 };
    S2EPathSet *set = s2e_pathset_new();
    S2EPath **live = calloc(N + 1, sizeof(*live));
    S2EPath **gone = calloc(N + 1, sizeof(*gone));
    uint64_t *ids = calloc(N + 1, sizeof(*ids));
    S2EPathDrive *drive;
    S2ETestRng rng;
    size_t n_live = 1;
    uint64_t next_id = 1;

    CU_ASSERT_PTR_NOT_NULL_FATAL(set);
    CU_ASSERT_PTR_NOT_NULL_FATAL(live);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gone);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ids);
    s2e_test_rng_init(&rng, s2e_test_seed() ^ 0x5a5a);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "d", 64, NULL, &drive),
                    0);
    live[0] = s2e_pathset_current(set);

    for (int round = 0; round < 4; round++) {
        size_t n_gone = 0;
        bool ok = true;

        /* Fork up to N paths from random parents. */
        while (n_live < N) {
            S2EPath *parent = live[s2e_test_rng_below(&rng, n_live)];
            S2EPath *child = s2e_pathset_fork(set, parent);
            CU_ASSERT_PTR_NOT_NULL_FATAL(child);
            ok = ok && s2e_path_id(child) == next_id;
            next_id++;
            live[n_live++] = child;
        }
        /* Free all but ~N/4 of them in random order (never path live[0],
         * which is current). */
        while (n_live > N / 4) {
            size_t k = 1 + s2e_test_rng_below(&rng, n_live - 1);
            ok = ok && s2e_pathset_free_path(set, live[k]) == 0;
            gone[n_gone++] = live[k];
            live[k] = live[--n_live];
        }
        /* No fork since: freed handles cannot have been reused. */
        for (size_t k = 0; k < n_gone; k++) {
            ok = ok && s2e_pathset_free_path(set, gone[k]) == -ENOENT;
        }
        for (size_t k = 0; k < n_live; k++) {
            ok = ok && s2e_pathset_lookup(set, s2e_path_id(live[k])) ==
                       live[k];
            ok = ok && s2e_pathset_get_view(set, live[k], drive, NULL,
                                            NULL) == 0;
        }
        ok = ok && s2e_pathset_ids(set, ids, N + 1) == n_live;
        for (size_t k = 1; k < n_live; k++) {
            ok = ok && ids[k - 1] < ids[k];
        }
        CU_ASSERT(ok);
    }
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, live[n_live - 1]), 0);
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, live[0]), 0);
    s2e_pathset_free(set);
    free(live);
    free(gone);
    free(ids);
}

/* ---- drives ------------------------------------------------------------- */

static void test_drive_after_paths(void)
{
    S2EPathSet *set = s2e_pathset_new();
    S2EPathDrive *d0, *d1, *d2, *list[4];
    S2EPath *p0, *p1, *p2;
    S2EOverlay *ovs[3];

    CU_ASSERT_PTR_NOT_NULL_FATAL(set);
    p0 = s2e_pathset_current(set);

    /* Paths with no drive at all fork, switch and free. */
    p1 = s2e_pathset_fork(set, p0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p1);
    CU_ASSERT_EQUAL(s2e_pathset_drives(set, list, 4), 0);

    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "a", 1000, NULL, &d0), 0);
    CU_ASSERT_EQUAL(s2e_path_drive_nb_sectors(d0), 1000);
    CU_ASSERT_EQUAL(write_tag(d0, 0, 10, 20, 5), 0);        /* path 0 */
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, p1), 0);
    CU_ASSERT_EQUAL(write_tag(d0, 0, 15, 20, 6), 0);        /* path 1 */
    p2 = s2e_pathset_fork(set, p1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p2);

    /* Registered after three paths exist: base everywhere. */
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "b", 77, NULL, &d1), 0);
    CU_ASSERT(reads_tag(view_overlay(set, p0, d1), 1, 0, 77, TAG_ABSENT));
    CU_ASSERT(reads_tag(view_overlay(set, p1, d1), 1, 0, 77, TAG_ABSENT));
    CU_ASSERT(reads_tag(view_overlay(set, p2, d1), 1, 0, 77, TAG_ABSENT));
    CU_ASSERT_PTR_EQUAL(s2e_path_drive_overlay(d1),
                        view_overlay(set, p1, d1));
    CU_ASSERT_PTR_NULL(s2e_path_drive_layer(d1));
    CU_ASSERT_EQUAL(write_tag(d1, 1, 0, 77, 8), 0);         /* path 1 */
    CU_ASSERT(reads_tag(view_overlay(set, p2, d1), 1, 0, 77, TAG_ABSENT));

    /* Unregister d0 while three paths exist; they live on with d1. */
    CU_ASSERT_EQUAL(s2e_pathset_unregister_drive(set, d0), 0);
    CU_ASSERT_EQUAL(s2e_pathset_unregister_drive(set, d0), -ENOENT);
    CU_ASSERT_EQUAL(s2e_pathset_drives(set, list, 4), 1);
    CU_ASSERT_PTR_EQUAL(list[0], d1);
    CU_ASSERT(reads_tag(view_overlay(set, p1, d1), 1, 0, 77, 8));

    /* A new drive reuses d0's slot and still starts empty everywhere. */
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "c", 9, NULL, &d2), 0);
    CU_ASSERT_EQUAL(s2e_pathset_drives(set, list, 4), 2);
    CU_ASSERT_PTR_EQUAL(list[0], d1);
    CU_ASSERT_PTR_EQUAL(list[1], d2);
    CU_ASSERT_STRING_EQUAL(s2e_path_drive_name(d2), "c");
    CU_ASSERT(reads_tag(view_overlay(set, p0, d2), 2, 0, 9, TAG_ABSENT));
    CU_ASSERT(reads_tag(view_overlay(set, p1, d2), 2, 0, 9, TAG_ABSENT));
    ovs[0] = view_overlay(set, p0, d1);
    ovs[1] = view_overlay(set, p1, d1);
    ovs[2] = view_overlay(set, p2, d1);
    CU_ASSERT(overlays_ok(ovs, 3));
    s2e_pathset_free(set);
}

/* Many drives: the views arrays grow while paths exist. */
static void test_many_drives(void)
{
    S2EPathSet *set = s2e_pathset_new();
    S2EPathDrive *d[40];
    S2EPath *p[5];

    CU_ASSERT_PTR_NOT_NULL_FATAL(set);
    p[0] = s2e_pathset_current(set);
    for (int k = 1; k < 5; k++) {
        p[k] = s2e_pathset_fork(set, p[k - 1]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p[k]);
    }
    for (int k = 0; k < 40; k++) {
        CU_ASSERT_EQUAL_FATAL(s2e_pathset_register_drive(set, "x", 8 + k,
                                                         NULL, &d[k]), 0);
        CU_ASSERT_EQUAL(write_tag(d[k], k, 0, 1, 100 + k), 0);
    }
    for (int k = 0; k < 40; k += 3) {
        CU_ASSERT_EQUAL(s2e_pathset_unregister_drive(set, d[k]), 0);
    }
    for (int i = 0; i < 5; i++) {
        for (int k = 0; k < 40; k++) {
            S2EOverlay *ov;
            if (k % 3 == 0) {
                continue;
            }
            ov = view_overlay(set, p[i], d[k]);
            CU_ASSERT_EQUAL(s2e_overlay_nb_sectors(ov), 8 + k);
            CU_ASSERT(reads_tag(ov, k, 0, 1, i == 0 ? 100 + k : TAG_ABSENT));
        }
    }
    s2e_pathset_free(set);
}

/* One drive's overlays in every path count against one limit: a write past
 * it fails with ENOSPC in any path, loadvm's fresh overlay counts too, and
 * freeing a path makes room. */
static void test_overlay_limit(void)
{
    S2EPathSet *set = s2e_pathset_new();
    S2EPathDrive *d;
    S2EPath *p0, *p1;
    uint64_t used, limit, before;
    int n0 = 0, n1 = 0, ret;

    CU_ASSERT_EQUAL_FATAL(s2e_pathset_register_drive(set, "d", 1 << 20,
                                                     &fake_ops, &d), 0);
    s2e_path_drive_set_overlay_limit(d, 128 * 1024);
    p0 = s2e_pathset_current(set);
    while ((ret = write_tag(d, 0, (uint64_t)n0 * 64, 8, 11)) == 0) {
        n0++;
    }
    CU_ASSERT_EQUAL(ret, -ENOSPC);
    s2e_path_drive_memory(d, &used, &limit);
    CU_ASSERT_EQUAL(limit, 128 * 1024);
    CU_ASSERT(used <= limit && used > limit - 2 * 4104);

    /* A forked path shares the data and the limit. */
    p1 = s2e_pathset_fork(set, p0);
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, p1), 0);
    CU_ASSERT_EQUAL(write_tag(d, 1, 0, 8, 12), -ENOSPC);
    CU_ASSERT(reads_tag(s2e_path_drive_overlay(d), 0, 0, 8, 11));
    /* Discarding in the fork frees nothing shared; freeing the other path
     * does, and the fork can write again. */
    CU_ASSERT_EQUAL(s2e_overlay_discard(s2e_path_drive_overlay(d), 0,
                                        (uint64_t)n0 * 64), 0);
    s2e_path_drive_memory(d, &before, &limit);
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, p0), 0);
    s2e_path_drive_memory(d, &used, &limit);
    CU_ASSERT(used < before);
    while (write_tag(d, 1, (uint64_t)n1 * 64, 8, 12) == 0) {
        n1++;
    }
    CU_ASSERT(n1 >= n0 - 1);

    /* loadvm's fresh overlay is in the drive's account. */
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(d,
                        s2e_path_drive_new_overlay(d), NULL), 0);
    s2e_path_drive_memory(d, &used, &limit);
    CU_ASSERT_EQUAL(used, 0);
    s2e_pathset_free(set);
}

/* loadvm replaces the view of the current path only. */
static void test_replace_view(void)
{
    S2EPathSet *set = s2e_pathset_new();
    FakeLayer snap_a = { .id = 1 }, snap_b = { .id = 2 };
    S2EPathDrive *d0, *d1;
    S2EPath *p0, *p1, *p2;
    S2EOverlay *ov;

    CU_ASSERT_PTR_NOT_NULL_FATAL(set);
    p0 = s2e_pathset_current(set);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "a", 300, &fake_ops,
                                               &d0), 0);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "b", 50, &fake_ops,
                                               &d1), 0);

    /* "-loadvm" at start-up: path 0 gets snapshot A on d0. */
    ov = s2e_path_drive_new_overlay(d0);
    snap_a.refs++;                          /* the caller's reference */
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(d0, ov, &snap_a), 0);
    CU_ASSERT_EQUAL(snap_a.refs, 1);
    CU_ASSERT_PTR_EQUAL(s2e_path_drive_overlay(d0), ov);
    CU_ASSERT_PTR_EQUAL(s2e_path_drive_layer(d0), &snap_a);
    CU_ASSERT_EQUAL(write_tag(d0, 0, 0, 10, 11), 0);

    /* Forks share the layer: one reference per view. */
    p1 = s2e_pathset_fork(set, p0);
    p2 = s2e_pathset_fork(set, p1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p2);
    CU_ASSERT_EQUAL(snap_a.refs, 3);
    CU_ASSERT_PTR_EQUAL(view_layer(set, p2, d0), &snap_a);
    CU_ASSERT_PTR_NULL(view_layer(set, p2, d1));

    /* loadvm B in path 1: only path 1's view of d0 changes. */
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, p1), 0);
    CU_ASSERT_PTR_EQUAL(s2e_path_drive_layer(d0), &snap_a);
    ov = s2e_path_drive_new_overlay(d0);
    snap_b.refs++;
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(d0, ov, &snap_b), 0);
    CU_ASSERT_EQUAL(snap_a.refs, 2);
    CU_ASSERT_EQUAL(snap_b.refs, 1);
    CU_ASSERT_PTR_EQUAL(s2e_path_drive_layer(d0), &snap_b);
    CU_ASSERT(reads_tag(s2e_path_drive_overlay(d0), 0, 0, 10, TAG_ABSENT));
    CU_ASSERT(reads_tag(view_overlay(set, p0, d0), 0, 0, 10, 11));
    CU_ASSERT(reads_tag(view_overlay(set, p2, d0), 0, 0, 10, 11));
    CU_ASSERT_PTR_EQUAL(view_layer(set, p0, d0), &snap_a);
    CU_ASSERT_PTR_EQUAL(view_layer(set, p2, d0), &snap_a);

    /* Back in path 2, the drive's current view follows the switch. */
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, p2), 0);
    CU_ASSERT_PTR_EQUAL(s2e_path_drive_layer(d0), &snap_a);
    CU_ASSERT_PTR_EQUAL(s2e_path_drive_overlay(d0), view_overlay(set, p2, d0));

    /* Loading with no layer, and the same layer again. */
    ov = s2e_path_drive_new_overlay(d0);
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(d0, ov, NULL), 0);
    CU_ASSERT_EQUAL(snap_a.refs, 1);
    ov = s2e_path_drive_new_overlay(d0);
    snap_a.refs++;
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(d0, ov, &snap_a), 0);
    CU_ASSERT_EQUAL(snap_a.refs, 2);

    /* Unregistering drops the drive's references in every path. */
    CU_ASSERT_EQUAL(s2e_pathset_unregister_drive(set, d0), 0);
    CU_ASSERT_EQUAL(snap_a.refs, 0);
    CU_ASSERT_EQUAL(snap_b.refs, 0);

    /* So does freeing a path and the set. */
    ov = s2e_path_drive_new_overlay(d1);
    snap_b.refs++;
    CU_ASSERT_EQUAL(s2e_path_drive_replace_view(d1, ov, &snap_b), 0);
    p1 = s2e_pathset_fork(set, NULL);
    CU_ASSERT_EQUAL(snap_b.refs, 2);
    CU_ASSERT_EQUAL(s2e_pathset_free_path(set, p1), 0);
    CU_ASSERT_EQUAL(snap_b.refs, 1);
    s2e_pathset_free(set);
    CU_ASSERT_EQUAL(snap_b.refs, 0);
}

/* ---- stats -------------------------------------------------------------- */

static void test_stats_return(void)
{
    S2EPathSet *set = s2e_pathset_new();
    S2EPathStats before, during, after, one;
    S2EPathDrive *d0, *d1;
    S2EPath *p0, *kids[10];
    uint64_t shared;

    CU_ASSERT_PTR_NOT_NULL_FATAL(set);
    p0 = s2e_pathset_current(set);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "a", 20000, NULL, &d0),
                    0);
    CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "b", 3000, NULL, &d1),
                    0);
    CU_ASSERT_EQUAL(write_tag(d0, 0, 0, 4096, 3), 0);       /* 2 MiB */
    CU_ASSERT_EQUAL(write_tag(d1, 1, 7, 100, 4), 0);
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(s2e_path_drive_overlay(d1),
                                             1000, 500), 0);
    CU_ASSERT_EQUAL(s2e_pathset_get_stats(set, p0, NULL, &before), 0);
    CU_ASSERT_EQUAL(before.shared_bytes, 0);
    CU_ASSERT(before.own_bytes >= (4096 + 100) * SECTOR);
    CU_ASSERT(before.own_bytes <= (4096 + 100 + 16) * SECTOR);
    CU_ASSERT_EQUAL(before.sectors_present, 4096 + 100 + 500);
    CU_ASSERT_EQUAL(s2e_pathset_get_stats(set, p0, d1, &one), 0);
    CU_ASSERT_EQUAL(one.sectors_present, 600);

    /* Children share everything, then each writes its own 4 KiB. */
    for (int k = 0; k < 10; k++) {
        kids[k] = s2e_pathset_fork(set, p0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(kids[k]);
        CU_ASSERT_EQUAL(s2e_pathset_switch(set, kids[k]), 0);
        CU_ASSERT_EQUAL(write_tag(d0, 0, 8 * (k * 37), 8, 50 + k), 0);
    }
    CU_ASSERT_EQUAL(s2e_pathset_switch(set, p0), 0);
    CU_ASSERT_EQUAL(s2e_pathset_get_stats(set, p0, NULL, &during), 0);
    CU_ASSERT(during.shared_bytes > 0);
    CU_ASSERT_EQUAL(during.own_bytes + during.shared_bytes,
                    before.own_bytes);
    CU_ASSERT_EQUAL(s2e_pathset_get_stats(set, kids[3], d0, &one), 0);
    CU_ASSERT_EQUAL(one.own_bytes, 8 * SECTOR);
    CU_ASSERT_EQUAL(one.sectors_present, 4096);

    /* Freeing a child releases exactly what it alone held. */
    for (int k = 0; k < 10; k++) {
        uint64_t total = union_data_bytes(set, d0, NULL) +
                         union_data_bytes(set, d1, NULL);
        CU_ASSERT_EQUAL(s2e_pathset_get_stats(set, kids[k], NULL, &one), 0);
        CU_ASSERT_EQUAL(s2e_pathset_free_path(set, kids[k]), 0);
        CU_ASSERT_EQUAL(union_data_bytes(set, d0, NULL) +
                        union_data_bytes(set, d1, NULL),
                        total - one.own_bytes);
    }

    /* Back to what path 0 alone holds. */
    CU_ASSERT_EQUAL(s2e_pathset_get_stats(set, p0, NULL, &after), 0);
    CU_ASSERT_EQUAL(after.own_bytes, before.own_bytes);
    CU_ASSERT_EQUAL(after.shared_bytes, 0);
    CU_ASSERT_EQUAL(after.meta_bytes, before.meta_bytes);
    CU_ASSERT_EQUAL(after.sectors_present, before.sectors_present);
    CU_ASSERT_EQUAL(union_data_bytes(set, d0, &shared) +
                    union_data_bytes(set, d1, NULL), after.own_bytes);
    CU_ASSERT_EQUAL(shared, 0);
    s2e_pathset_free(set);
}

/* ---- enomem ------------------------------------------------------------- */

static void test_fork_enomem(void)
{
    S2EPathSet *set = s2e_pathset_new();
    FakeLayer layer = { .id = 1 };
    S2EPathDrive *d[3];
    S2EPath *p0, *child;
    uint64_t ids[4];

    CU_ASSERT_PTR_NOT_NULL_FATAL(set);
    p0 = s2e_pathset_current(set);
    for (int k = 0; k < 3; k++) {
        S2EOverlay *ov;

        CU_ASSERT_EQUAL(s2e_pathset_register_drive(set, "d", 64, &fake_ops,
                                                   &d[k]), 0);
        ov = s2e_path_drive_new_overlay(d[k]);
        layer.refs++;
        CU_ASSERT_EQUAL(s2e_path_drive_replace_view(d[k], ov, &layer), 0);
        CU_ASSERT_EQUAL(write_tag(d[k], k, 0, 8, 20 + k), 0);
    }
    CU_ASSERT_EQUAL(layer.refs, 3);

    /* Each drive in turn fails to fork: nothing changes. */
    for (int k = 0; k < 3; k++) {
        S2EOverlay *ov = view_overlay(set, p0, d[k]);
        s2e_overlay_set_alloc_budget(ov, 0);
        errno = 0;
        CU_ASSERT_PTR_NULL(s2e_pathset_fork(set, p0));
        CU_ASSERT_EQUAL(errno, ENOMEM);
        s2e_overlay_set_alloc_budget(ov, -1);
        CU_ASSERT_EQUAL(layer.refs, 3);
        CU_ASSERT_EQUAL(s2e_pathset_ids(set, ids, 4), 1);
        for (int j = 0; j < 3; j++) {
            S2EOverlay *one = view_overlay(set, p0, d[j]);
            CU_ASSERT(overlays_ok(&one, 1));
        }
    }

    /* And the next fork takes id 1. */
    child = s2e_pathset_fork(set, p0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(child);
    CU_ASSERT_EQUAL(s2e_path_id(child), 1);
    CU_ASSERT_EQUAL(layer.refs, 6);
    for (int k = 0; k < 3; k++) {
        CU_ASSERT(reads_tag(view_overlay(set, child, d[k]), k, 0, 8, 20 + k));
    }
    s2e_pathset_free(set);
    CU_ASSERT_EQUAL(layer.refs, 0);
}

/* ---- model -------------------------------------------------------------- */

#define M_MAX_PATHS 12
#define M_MAX_DRIVES 5
#define M_LAYERS 3
#define M_MAX_SECTORS 1100

typedef struct MDrive {
    S2EPathDrive *drive;
    uint64_t nb;
    uint32_t uid;               /* names the base contents */
} MDrive;

typedef struct MView {
    uint32_t *tags;             /* nb entries */
    FakeLayer *layer;
} MView;

typedef struct MPath {
    S2EPath *path;
    uint64_t id;
    MView views[M_MAX_DRIVES];  /* by index in Model.drives */
} MPath;

typedef enum MOp {
    OP_WRITE, OP_ZERO, OP_DISCARD, OP_READ, OP_FORK, OP_SWITCH, OP_FREE,
    OP_REPLACE, OP_REGISTER, OP_UNREGISTER, OP_STATS, OP__COUNT
} MOp;

static const char *const op_names[OP__COUNT] = {
    "write", "zero", "discard", "read", "fork", "switch", "free",
    "replace", "register", "unregister", "stats",
};

/* Weights out of 1000. */
static const unsigned op_weights[OP__COUNT] = {
    300, 70, 70, 200, 100, 100, 80, 15, 15, 15, 35,
};

typedef struct Model {
    S2EPathSet *set;
    S2ETestRng rng;
    MDrive drives[M_MAX_DRIVES];
    size_t n_drives;
    MPath paths[M_MAX_PATHS];
    size_t n_paths;
    size_t cur;                 /* index in paths */
    uint64_t next_id;
    uint32_t next_tag;
    uint32_t next_uid;
    FakeLayer layers[M_LAYERS];
    uint64_t counts[OP__COUNT];
    uint64_t step;
    bool failed;
} Model;

static uint64_t rnd(Model *m, uint64_t bound)
{
    return s2e_test_rng_below(&m->rng, bound);
}

static void model_fail(Model *m, const char *what)
{
    if (!m->failed) {
        fprintf(stderr, "model: step %" PRIu64 ": %s\n", m->step, what);
    }
    m->failed = true;
}

#define MCHECK(m, cond) \
    do { \
        if (!(cond)) { \
            model_fail((m), #cond); \
        } \
    } while (0)

static S2EOverlay *m_overlay(Model *m, size_t p, size_t d)
{
    S2EOverlay *ov = NULL;
    void *layer = NULL;

    MCHECK(m, s2e_pathset_get_view(m->set, m->paths[p].path,
                                   m->drives[d].drive, &ov, &layer) == 0);
    MCHECK(m, layer == m->paths[p].views[d].layer);
    return ov;
}

static void m_verify(Model *m, size_t p, size_t d, uint64_t s, uint64_t n)
{
    S2EOverlay *ov = m_overlay(m, p, d);

    if (ov && !view_matches(ov, m->paths[p].views[d].tags,
                            m->drives[d].uid, s, n, "model")) {
        model_fail(m, "view differs from the model");
    }
}

static void m_verify_path(Model *m, size_t p)
{
    for (size_t d = 0; d < m->n_drives; d++) {
        m_verify(m, p, d, 0, m->drives[d].nb);
    }
}

static void m_check_drive(Model *m, size_t d)
{
    S2EOverlay *ovs[M_MAX_PATHS];

    for (size_t p = 0; p < m->n_paths; p++) {
        ovs[p] = m_overlay(m, p, d);
    }
    if (!overlays_ok(ovs, m->n_paths)) {
        model_fail(m, "s2e_overlay_check");
    }
}

/* The set holds one reference per view with a layer. */
static void m_check_layers(Model *m)
{
    for (int l = 0; l < M_LAYERS; l++) {
        int want = 0;
        for (size_t p = 0; p < m->n_paths; p++) {
            for (size_t d = 0; d < m->n_drives; d++) {
                want += m->paths[p].views[d].layer == &m->layers[l];
            }
        }
        MCHECK(m, m->layers[l].refs == want);
    }
}

/* The current path, ids and the drives' current views. */
static void m_check_current(Model *m)
{
    uint64_t ids[M_MAX_PATHS + 1];
    MPath *cur = &m->paths[m->cur];

    MCHECK(m, s2e_pathset_current(m->set) == cur->path);
    MCHECK(m, s2e_pathset_ids(m->set, ids, M_MAX_PATHS + 1) == m->n_paths);
    for (size_t p = 0; p < m->n_paths; p++) {
        MCHECK(m, ids[p] == m->paths[p].id);
    }
    for (size_t d = 0; d < m->n_drives; d++) {
        MCHECK(m, s2e_path_drive_overlay(m->drives[d].drive) ==
                  m_overlay(m, m->cur, d));
        MCHECK(m, s2e_path_drive_layer(m->drives[d].drive) ==
                  (void *)cur->views[d].layer);
    }
}

static uint64_t m_present(const MView *v, uint64_t nb)
{
    uint64_t n = 0;

    for (uint64_t s = 0; s < nb; s++) {
        n += v->tags[s] != TAG_ABSENT;
    }
    return n;
}

/* A random range of drive @d: mostly short, sometimes long. */
static void m_range(Model *m, size_t d, uint64_t *s, uint64_t *n)
{
    uint64_t nb = m->drives[d].nb;
    uint64_t max;

    switch (rnd(m, 16)) {
    case 0:
        *s = 0;
        *n = nb;
        return;
    case 1:
    case 2:
        max = 64;
        break;
    default:
        max = 12;
        break;
    }
    *s = rnd(m, nb);
    *n = 1 + rnd(m, MIN(max, nb - *s));
}

static void m_verify_around(Model *m, size_t d, uint64_t s, uint64_t n)
{
    uint64_t lo = s > 8 ? s - 8 : 0;
    uint64_t hi = MIN(s + n + 8, m->drives[d].nb);

    m_verify(m, m->cur, d, lo, hi - lo);
}

static void op_io(Model *m, MOp op)
{
    size_t d = rnd(m, m->n_drives);
    S2EOverlay *ov = s2e_path_drive_overlay(m->drives[d].drive);
    uint32_t *tags = m->paths[m->cur].views[d].tags;
    uint64_t s, n;
    uint32_t tag;

    m_range(m, d, &s, &n);
    switch (op) {
    case OP_WRITE:
        tag = m->next_tag++;
        MCHECK(m, write_tag(m->drives[d].drive, m->drives[d].uid, s, n,
                            tag) == 0);
        break;
    case OP_ZERO:
        tag = TAG_ZERO;
        MCHECK(m, s2e_overlay_write_zeroes(ov, s, n) == 0);
        break;
    case OP_DISCARD:
        tag = TAG_ABSENT;
        MCHECK(m, s2e_overlay_discard(ov, s, n) == 0);
        break;
    default:
        m_verify(m, m->cur, d, s, n);
        return;
    }
    for (uint64_t k = s; k < s + n; k++) {
        tags[k] = tag;
    }
    m_verify_around(m, d, s, n);
    m_check_drive(m, d);
}

static uint32_t *tags_dup(const uint32_t *tags, uint64_t nb)
{
    uint32_t *copy = malloc(nb * sizeof(*copy));

    CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
    memcpy(copy, tags, nb * sizeof(*copy));
    return copy;
}

static void op_fork(Model *m)
{
    size_t parent = rnd(m, m->n_paths);
    bool use_null = parent == m->cur && rnd(m, 2);
    MPath *child;
    S2EPath *path;

    if (m->n_paths == M_MAX_PATHS) {
        return;
    }
    path = s2e_pathset_fork(m->set, use_null ? NULL : m->paths[parent].path);
    MCHECK(m, path != NULL);
    if (!path) {
        return;
    }
    MCHECK(m, s2e_path_id(path) == m->next_id);
    child = &m->paths[m->n_paths++];
    child->path = path;
    child->id = m->next_id++;
    for (size_t d = 0; d < m->n_drives; d++) {
        child->views[d].tags = tags_dup(m->paths[parent].views[d].tags,
                                        m->drives[d].nb);
        child->views[d].layer = m->paths[parent].views[d].layer;
    }
    MCHECK(m, s2e_pathset_lookup(m->set, child->id) == path);
    /* A sample of the child; all of it is compared periodically. */
    for (size_t d = 0; d < m->n_drives; d++) {
        uint64_t s, n;
        m_range(m, d, &s, &n);
        m_verify(m, m->n_paths - 1, d, s, n);
    }
}

static void op_switch(Model *m)
{
    size_t p = rnd(m, m->n_paths);

    MCHECK(m, s2e_pathset_switch(m->set, m->paths[p].path) == 0);
    m->cur = p;
}

static void mpath_release(Model *m, size_t p)
{
    for (size_t d = 0; d < m->n_drives; d++) {
        free(m->paths[p].views[d].tags);
    }
    memmove(&m->paths[p], &m->paths[p + 1],
            (m->n_paths - p - 1) * sizeof(m->paths[0]));
    m->n_paths--;
    if (m->cur > p) {
        m->cur--;
    }
}

static uint64_t m_union_data(Model *m)
{
    uint64_t total = 0;

    for (size_t d = 0; d < m->n_drives; d++) {
        S2EOverlay *ovs[M_MAX_PATHS];
        S2EOverlayStats st;
        for (size_t p = 0; p < m->n_paths; p++) {
            ovs[p] = m_overlay(m, p, d);
        }
        MCHECK(m, s2e_overlay_get_union_stats(ovs, m->n_paths, &st) == 0);
        total += st.data_bytes;
    }
    return total;
}

static void m_check_gone(Model *m, S2EPath *gone, uint64_t id)
{
    S2EPathStats st;

    /* No fork since the free: the handle cannot have been reused. */
    MCHECK(m, s2e_pathset_switch(m->set, gone) == -ENOENT);
    MCHECK(m, s2e_pathset_free_path(m->set, gone) == -ENOENT);
    MCHECK(m, s2e_pathset_get_stats(m->set, gone, NULL, &st) == -ENOENT);
    MCHECK(m, s2e_pathset_fork(m->set, gone) == NULL && errno == ENOENT);
    MCHECK(m, s2e_pathset_lookup(m->set, id) == NULL);
}

static void op_free(Model *m)
{
    size_t p = rnd(m, m->n_paths);
    S2EPath *gone = m->paths[p].path;
    uint64_t id = m->paths[p].id;
    uint64_t before;
    S2EPathStats st;

    if (p == m->cur) {
        MCHECK(m, s2e_pathset_free_path(m->set, gone) == -EBUSY);
        MCHECK(m, s2e_pathset_lookup(m->set, id) == gone);
        return;
    }
    before = m_union_data(m);
    MCHECK(m, s2e_pathset_get_stats(m->set, gone, NULL, &st) == 0);
    MCHECK(m, s2e_pathset_free_path(m->set, gone) == 0);
    mpath_release(m, p);
    /* Exactly what the path alone held is released. */
    MCHECK(m, m_union_data(m) == before - st.own_bytes);
    m_check_gone(m, gone, id);
}

/* loadvm in the current path: a new overlay (maybe with data) and layer. */
static void op_replace(Model *m)
{
    size_t d = rnd(m, m->n_drives);
    MDrive *md = &m->drives[d];
    MView *v = &m->paths[m->cur].views[d];
    FakeLayer *layer = NULL;
    S2EOverlay *ov;
    size_t l = rnd(m, M_LAYERS + 1);

    if (rnd(m, 8) == 0) {
        /* A mismatched size is refused and changes nothing. */
        ov = s2e_overlay_new(md->nb + 1);
        MCHECK(m, s2e_path_drive_replace_view(md->drive, ov, NULL) ==
                  -EINVAL);
        s2e_overlay_free(ov);
        return;
    }
    ov = s2e_path_drive_new_overlay(md->drive);
    MCHECK(m, ov != NULL);
    memset(v->tags, 0, md->nb * sizeof(*v->tags));
    if (rnd(m, 2)) {
        uint64_t s, n;
        m_range(m, d, &s, &n);
        MCHECK(m, s2e_overlay_write_zeroes(ov, s, n) == 0);
        for (uint64_t k = s; k < s + n; k++) {
            v->tags[k] = TAG_ZERO;
        }
    }
    if (l < M_LAYERS) {
        layer = &m->layers[l];
        layer->refs++;                      /* the caller's reference */
    }
    MCHECK(m, s2e_path_drive_replace_view(md->drive, ov, layer) == 0);
    v->layer = layer;
    m_verify(m, m->cur, d, 0, md->nb);
    m_check_drive(m, d);
}

static uint64_t m_drive_size(Model *m)
{
    switch (rnd(m, 4)) {
    case 0:
        return 1 + rnd(m, 16);
    case 1:
        return 500 + rnd(m, 30);            /* around the one-level limit */
    default:
        return 1 + rnd(m, M_MAX_SECTORS);
    }
}

static void m_add_drive(Model *m, uint64_t nb)
{
    MDrive *md = &m->drives[m->n_drives];

    md->nb = nb;
    md->uid = m->next_uid++;
    MCHECK(m, s2e_pathset_register_drive(m->set, "m", nb, &fake_ops,
                                         &md->drive) == 0);
    for (size_t p = 0; p < m->n_paths; p++) {
        MView *v = &m->paths[p].views[m->n_drives];
        v->tags = calloc(nb, sizeof(*v->tags));
        CU_ASSERT_PTR_NOT_NULL_FATAL(v->tags);
        v->layer = NULL;
    }
    m->n_drives++;
}

static void op_register(Model *m)
{
    if (m->n_drives == M_MAX_DRIVES) {
        return;
    }
    m_add_drive(m, m_drive_size(m));
    for (size_t p = 0; p < m->n_paths; p++) {
        m_verify(m, p, m->n_drives - 1, 0, m->drives[m->n_drives - 1].nb);
    }
}

static void op_unregister(Model *m)
{
    size_t d = rnd(m, m->n_drives);
    S2EPathDrive *list[M_MAX_DRIVES + 1];

    if (m->n_drives <= 1) {
        return;
    }
    MCHECK(m, s2e_pathset_unregister_drive(m->set, m->drives[d].drive) == 0);
    for (size_t p = 0; p < m->n_paths; p++) {
        MView *views = m->paths[p].views;
        free(views[d].tags);
        memmove(&views[d], &views[d + 1],
                (m->n_drives - d - 1) * sizeof(*views));
    }
    memmove(&m->drives[d], &m->drives[d + 1],
            (m->n_drives - d - 1) * sizeof(m->drives[0]));
    m->n_drives--;
    MCHECK(m, s2e_pathset_drives(m->set, list, M_MAX_DRIVES + 1) ==
              m->n_drives);
    for (size_t k = 0; k < m->n_drives; k++) {
        MCHECK(m, list[k] == m->drives[k].drive);
    }
}

/* Data bytes of drive @d held by all paths together, but path @skip. */
static uint64_t m_union_data_but(Model *m, size_t d, size_t skip)
{
    S2EOverlay *ovs[M_MAX_PATHS];
    S2EOverlayStats un;
    size_t n = 0;

    for (size_t q = 0; q < m->n_paths; q++) {
        if (q != skip) {
            ovs[n++] = m_overlay(m, q, d);
        }
    }
    MCHECK(m, s2e_overlay_get_union_stats(ovs, n, &un) == 0);
    return un.data_bytes;
}

/*
 * Statistics of a random path against the model; its own bytes are what
 * all paths hold together minus what the others hold without it, and its
 * shared bytes what it holds that the others hold too.
 */
static void op_stats(Model *m)
{
    size_t p = rnd(m, m->n_paths);
    S2EPathStats total, one, sum = { 0 };

    MCHECK(m, s2e_pathset_get_stats(m->set, m->paths[p].path, NULL,
                                    &total) == 0);
    for (size_t d = 0; d < m->n_drives; d++) {
        S2EOverlayStats alone;
        uint64_t all = m_union_data_but(m, d, SIZE_MAX);
        uint64_t others = m_union_data_but(m, d, p);

        MCHECK(m, s2e_pathset_get_stats(m->set, m->paths[p].path,
                                        m->drives[d].drive, &one) == 0);
        s2e_overlay_get_stats(m_overlay(m, p, d), &alone);
        MCHECK(m, one.sectors_present ==
                  m_present(&m->paths[p].views[d], m->drives[d].nb));
        MCHECK(m, one.own_bytes == all - others);
        MCHECK(m, one.own_bytes + one.shared_bytes == alone.data_bytes);
        sum.own_bytes += one.own_bytes;
        sum.shared_bytes += one.shared_bytes;
        sum.meta_bytes += one.meta_bytes;
        sum.sectors_present += one.sectors_present;
    }
    MCHECK(m, !memcmp(&sum, &total, sizeof(sum)));
}

static MOp m_pick(Model *m)
{
    unsigned r = rnd(m, 1000);

    for (int op = 0; op < OP__COUNT; op++) {
        if (r < op_weights[op]) {
            return op;
        }
        r -= op_weights[op];
    }
    return OP_READ;
}

static void m_step(Model *m)
{
    MOp op = m_pick(m);

    m->counts[op]++;
    switch (op) {
    case OP_WRITE:
    case OP_ZERO:
    case OP_DISCARD:
    case OP_READ:
        op_io(m, op);
        break;
    case OP_FORK:
        op_fork(m);
        break;
    case OP_SWITCH:
        op_switch(m);
        break;
    case OP_FREE:
        op_free(m);
        break;
    case OP_REPLACE:
        op_replace(m);
        break;
    case OP_REGISTER:
        op_register(m);
        break;
    case OP_UNREGISTER:
        op_unregister(m);
        break;
    default:
        op_stats(m);
        break;
    }
    if (op >= OP_FORK) {
        m_check_current(m);
        for (size_t d = 0; d < m->n_drives; d++) {
            m_check_drive(m, d);
        }
    }
    m_check_layers(m);

    /* Every step also probes a random range of a random path. */
    {
        size_t p = rnd(m, m->n_paths);
        size_t d = rnd(m, m->n_drives);
        uint64_t s, n;
        m_range(m, d, &s, &n);
        m_verify(m, p, d, s, MIN(n, 16));
    }
}

/* Free all paths but the current one: it then holds everything alone. */
static void m_finish(Model *m)
{
    MPath *cur;
    S2EPathStats st;

    for (size_t p = m->n_paths; p-- > 0;) {
        if (p != m->cur) {
            S2EPath *gone = m->paths[p].path;
            uint64_t id = m->paths[p].id;
            MCHECK(m, s2e_pathset_free_path(m->set, gone) == 0);
            mpath_release(m, p);
            m_check_gone(m, gone, id);
        }
    }
    cur = &m->paths[m->cur];
    MCHECK(m, s2e_pathset_get_stats(m->set, cur->path, NULL, &st) == 0);
    MCHECK(m, st.shared_bytes == 0);
    MCHECK(m, st.own_bytes == m_union_data(m));
    for (size_t d = 0; d < m->n_drives; d++) {
        S2EPathStats one;
        MCHECK(m, s2e_pathset_get_stats(m->set, cur->path, m->drives[d].drive,
                                        &one) == 0);
        MCHECK(m, one.shared_bytes == 0);
        MCHECK(m, one.sectors_present ==
                  m_present(&cur->views[d], m->drives[d].nb));
        m_check_drive(m, d);
    }
    m_verify_path(m, m->cur);
    m_check_layers(m);
}

static void test_model(void)
{
    uint64_t steps = s2e_test_scale(1000000);
    Model *m = calloc(1, sizeof(*m));

    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    s2e_test_rng_init(&m->rng, s2e_test_seed());
    m->set = s2e_pathset_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m->set);
    m->n_paths = 1;
    m->paths[0].path = s2e_pathset_current(m->set);
    m->paths[0].id = 0;
    m->next_id = 1;
    m->next_tag = TAG_FIRST_DATA;
    for (int l = 0; l < M_LAYERS; l++) {
        m->layers[l].id = l;
    }
    m_add_drive(m, 300);                    /* one tree level */
    m_add_drive(m, M_MAX_SECTORS);          /* two levels */

    for (m->step = 0; m->step < steps && !m->failed; m->step++) {
        m_step(m);
        if (m->step % 4096 == 4095) {
            for (size_t p = 0; p < m->n_paths; p++) {
                m_verify_path(m, p);
            }
        }
    }
    if (!m->failed) {
        m_finish(m);
    }
    CU_ASSERT_FALSE(m->failed);

    printf("\n  model: %" PRIu64 " steps:", m->step);
    for (int op = 0; op < OP__COUNT; op++) {
        printf(" %s %" PRIu64, op_names[op], m->counts[op]);
    }
    printf("\n");

    for (size_t p = 0; p < m->n_paths; p++) {
        for (size_t d = 0; d < m->n_drives; d++) {
            free(m->paths[p].views[d].tags);
        }
    }
    s2e_pathset_free(m->set);
    for (int l = 0; l < M_LAYERS; l++) {
        CU_ASSERT_EQUAL(m->layers[l].refs, 0);
    }
    free(m);
}

/* ---- threads ------------------------------------------------------------ */

#define T_DRIVES 2
#define T_PATHS 8
#define T_SECTORS 700

typedef struct TShared {
    S2EPathSet *set;
    S2EPathDrive *drives[T_DRIVES];
    /* Model: tags[path slot][drive], NULL for a free slot. */
    uint32_t *tags[T_PATHS][T_DRIVES];
    S2EPath *paths[T_PATHS];
    int cur;
    pthread_barrier_t start, done;
    uint64_t rounds;
    uint64_t writes_per_round;
    uint64_t seed;
    atomic_bool failed;
} TShared;

typedef struct TWorker {
    TShared *sh;
    int drive;
} TWorker;

/* An I/O thread: writes the current path's view of its own drive. */
static void *t_worker(void *opaque)
{
    TWorker *w = opaque;
    TShared *sh = w->sh;
    S2ETestRng rng;

    s2e_test_rng_init(&rng, sh->seed + 1 + w->drive);
    for (uint64_t r = 0; r < sh->rounds; r++) {
        pthread_barrier_wait(&sh->start);
        for (uint64_t k = 0; k < sh->writes_per_round; k++) {
            S2EPathDrive *drive = sh->drives[w->drive];
            uint32_t *tags = sh->tags[sh->cur][w->drive];
            uint64_t s = s2e_test_rng_below(&rng, T_SECTORS);
            uint64_t n = 1 + s2e_test_rng_below(&rng, MIN(16, T_SECTORS - s));
            uint32_t tag = TAG_FIRST_DATA +
                           (uint32_t)s2e_test_rng_below(&rng, 1u << 30);
            int ret;

            if (k % 7 == 6) {
                tag = TAG_ZERO;
                ret = s2e_overlay_write_zeroes(s2e_path_drive_overlay(drive),
                                               s, n);
            } else {
                ret = write_tag(drive, w->drive, s, n, tag);
            }
            if (ret < 0) {
                sh->failed = true;
            }
            for (uint64_t j = s; j < s + n; j++) {
                tags[j] = tag;
            }
        }
        pthread_barrier_wait(&sh->done);
    }
    return NULL;
}

static int t_free_slot(TShared *sh)
{
    for (int p = 0; p < T_PATHS; p++) {
        if (!sh->paths[p]) {
            return p;
        }
    }
    return -1;
}

/* Fork path slot @from into a free slot (model included). */
static void t_fork(TShared *sh, int from)
{
    int to = t_free_slot(sh);

    if (to < 0) {
        return;
    }
    sh->paths[to] = s2e_pathset_fork(sh->set, sh->paths[from]);
    if (!sh->paths[to]) {
        sh->failed = true;
        return;
    }
    for (int d = 0; d < T_DRIVES; d++) {
        sh->tags[to][d] = tags_dup(sh->tags[from][d], T_SECTORS);
    }
}

static void t_free(TShared *sh, int p)
{
    if (s2e_pathset_free_path(sh->set, sh->paths[p]) != 0) {
        sh->failed = true;
    }
    for (int d = 0; d < T_DRIVES; d++) {
        free(sh->tags[p][d]);
        sh->tags[p][d] = NULL;
    }
    sh->paths[p] = NULL;
}

/* While I/O runs: fork, free and inspect paths that are not current. */
static void t_meddle(TShared *sh, S2ETestRng *rng)
{
    for (int k = 0; k < 20; k++) {
        int p = s2e_test_rng_below(rng, T_PATHS);
        S2EPathStats st;

        if (p == sh->cur || !sh->paths[p]) {
            continue;
        }
        switch (s2e_test_rng_below(rng, 3)) {
        case 0:
            t_fork(sh, p);
            break;
        case 1:
            t_free(sh, p);
            break;
        default:
            if (s2e_pathset_get_stats(sh->set, sh->paths[p], NULL, &st)) {
                sh->failed = true;
            }
            break;
        }
    }
}

static void t_verify_all(TShared *sh)
{
    for (int p = 0; p < T_PATHS; p++) {
        for (int d = 0; sh->paths[p] && d < T_DRIVES; d++) {
            if (!view_matches(view_overlay(sh->set, sh->paths[p],
                                           sh->drives[d]),
                              sh->tags[p][d], d, 0, T_SECTORS, "threads")) {
                sh->failed = true;
            }
        }
    }
}

static void test_threads(void)
{
    TShared *sh = calloc(1, sizeof(*sh));
    TWorker workers[T_DRIVES];
    pthread_t tids[T_DRIVES];
    S2ETestRng rng;

    CU_ASSERT_PTR_NOT_NULL_FATAL(sh);
    sh->set = s2e_pathset_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(sh->set);
    sh->seed = s2e_test_seed();
    sh->rounds = s2e_test_scale(1000);
    sh->writes_per_round = 200;
    s2e_test_rng_init(&rng, sh->seed);
    sh->paths[0] = s2e_pathset_current(sh->set);
    for (int d = 0; d < T_DRIVES; d++) {
        CU_ASSERT_EQUAL_FATAL(s2e_pathset_register_drive(sh->set, "t",
                                                         T_SECTORS, NULL,
                                                         &sh->drives[d]), 0);
        sh->tags[0][d] = calloc(T_SECTORS, sizeof(uint32_t));
    }
    pthread_barrier_init(&sh->start, NULL, T_DRIVES + 1);
    pthread_barrier_init(&sh->done, NULL, T_DRIVES + 1);
    for (int d = 0; d < T_DRIVES; d++) {
        workers[d].sh = sh;
        workers[d].drive = d;
        pthread_create(&tids[d], NULL, t_worker, &workers[d]);
    }

    for (uint64_t r = 0; r < sh->rounds; r++) {
        int next;

        pthread_barrier_wait(&sh->start);
        t_meddle(sh, &rng);
        pthread_barrier_wait(&sh->done);

        /* Drained: fork the current path and switch somewhere. */
        t_fork(sh, sh->cur);
        do {
            next = s2e_test_rng_below(&rng, T_PATHS);
        } while (!sh->paths[next]);
        if (s2e_pathset_switch(sh->set, sh->paths[next]) != 0) {
            sh->failed = true;
        }
        sh->cur = next;
        if (r % 50 == 0) {
            t_verify_all(sh);
        }
    }
    for (int d = 0; d < T_DRIVES; d++) {
        pthread_join(tids[d], NULL);
    }
    t_verify_all(sh);
    for (int d = 0; d < T_DRIVES; d++) {
        S2EOverlay *ovs[T_PATHS];
        size_t n = 0;
        for (int p = 0; p < T_PATHS; p++) {
            if (sh->paths[p]) {
                ovs[n++] = view_overlay(sh->set, sh->paths[p], sh->drives[d]);
            }
        }
        CU_ASSERT(overlays_ok(ovs, n));
    }
    CU_ASSERT_FALSE(sh->failed);

    pthread_barrier_destroy(&sh->start);
    pthread_barrier_destroy(&sh->done);
    for (int p = 0; p < T_PATHS; p++) {
        for (int d = 0; d < T_DRIVES; d++) {
            free(sh->tags[p][d]);
        }
    }
    s2e_pathset_free(sh->set);
    free(sh);
}

/* ---- Registration ------------------------------------------------------- */

void s2e_test_register(void)
{
    CU_pSuite s;

    s = s2e_test_suite("api");
    s2e_test_add(s, "ids", test_ids);
    s2e_test_add(s, "errors", test_errors);
    s2e_test_add(s, "default-set", test_default_set);
    s2e_test_add(s, "many-paths", test_many_paths);

    s = s2e_test_suite("drives");
    s2e_test_add(s, "after-paths", test_drive_after_paths);
    s2e_test_add(s, "many", test_many_drives);
    s2e_test_add(s, "replace-view", test_replace_view);
    s2e_test_add(s, "overlay-limit", test_overlay_limit);

    s = s2e_test_suite("stats");
    s2e_test_add(s, "return", test_stats_return);

    s = s2e_test_suite("enomem");
    s2e_test_add(s, "fork", test_fork_enomem);

    s = s2e_test_suite("model");
    s2e_test_add(s, "random", test_model);

    s = s2e_test_suite("threads");
    s2e_test_add(s, "io-and-structure", test_threads);
}
