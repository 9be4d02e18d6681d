/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the overlay store (block/overlay.c).
 *
 * - basic:   sizes, boundaries, out-of-range and empty requests, I/O
 *            vectors split at odd places, disks above 2^32 sectors.
 * - model:   random operation sequences checked step by step against a
 *            shadow model: a flat buffer per live overlay for small disks,
 *            an interval list plus a hash of written sectors for huge ones.
 *            s2e_overlay_check() runs after every step.
 * - memory:  the memory bounds promised in overlay.c, from the stats.
 * - enomem:  allocation failures injected through the overlay's allocation
 *            budget (overlay-internal.h): the tree stays valid and each
 *            sector holds its old or its new contents.
 * - threads: forks sharing structure used from two threads at once.
 *
 * Random tests print their seed (S2E_TEST_SEED replays a run) and scale
 * with S2E_TEST_SCALE.
 */
#include "runner.h"
#include "../../block/overlay-internal.h"

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTOR S2E_SECTOR_SIZE
#define BLOCK_SECTORS (s2e_overlay_block_size() / SECTOR)
#define TIB_SECTORS (UINT64_C(1) << 31)

/* What the glibc allocator adds to each allocation, on average. */
#define MALLOC_OVERHEAD 16

enum { K_ABSENT = S2E_EXTENT_ABSENT, K_DATA = S2E_EXTENT_DATA,
       K_ZERO = S2E_EXTENT_ZERO };

static const char *kind_name(int kind)
{
    switch (kind) {
    case K_ABSENT:
        return "ABSENT";
    case K_DATA:
        return "DATA";
    case K_ZERO:
        return "ZERO";
    }
    return "?";
}

/* ---- Helpers ------------------------------------------------------------- */

static bool check_ok(S2EOverlay *const *ovs, size_t n)
{
    const char *why = NULL;

    if (!s2e_overlay_check(ovs, n, &why)) {
        fprintf(stderr, "s2e_overlay_check: %s\n", why ? why : "(no reason)");
        return false;
    }
    return true;
}

static void check_one(S2EOverlay *ov)
{
    CU_ASSERT(check_ok(&ov, 1));
}

/* @ovs are all the overlays of one memory account: what it counts is what
 * they hold together, each node and block once. */
static bool account_ok(S2EOverlay *const *ovs, size_t n)
{
    S2EOverlayMemory *mem = s2e_overlay_memory(ovs[0]);
    S2EOverlayStats st;
    uint64_t used = s2e_overlay_memory_used(mem);

    for (size_t k = 1; k < n; k++) {
        if (s2e_overlay_memory(ovs[k]) != mem) {
            fprintf(stderr, "overlays of different accounts\n");
            return false;
        }
    }
    if (s2e_overlay_get_union_stats(ovs, n, &st) < 0 ||
        used != st.data_bytes + st.meta_bytes) {
        fprintf(stderr, "account counts %" PRIu64 " bytes, the overlays "
                "hold %" PRIu64 "\n", used, st.data_bytes + st.meta_bytes);
        return false;
    }
    return true;
}

/* Fill @buf with bytes derived from @tag and the position. */
static void fill_pattern(void *buf, size_t len, uint64_t tag)
{
    uint64_t *w = buf;
    uint64_t x = tag * 0x9e3779b97f4a7c15ull + 1;

    for (size_t k = 0; k < len / 8; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w[k] = x;
    }
}

/* Split [buf, buf + len) into up to @max iovec pieces of random lengths
 * (odd ones included, and some empty pieces). */
static int split_iov(S2ETestRng *rng, void *buf, size_t len,
                     struct iovec *iov, int max)
{
    unsigned char *p = buf;
    int n = 0;

    while (len > 0 && n < max - 1) {
        size_t piece;
        switch (s2e_test_rng_below(rng, 4)) {
        case 0:
            piece = 0;
            break;
        case 1:
            piece = 1 + s2e_test_rng_below(rng, 17);
            break;
        case 2:
            piece = 1 + s2e_test_rng_below(rng, 3 * SECTOR);
            break;
        default:
            piece = 1 + s2e_test_rng_below(rng, len);
            break;
        }
        piece = MIN(piece, len);
        iov[n].iov_base = p;
        iov[n].iov_len = piece;
        p += piece;
        len -= piece;
        n++;
    }
    iov[n].iov_base = p;
    iov[n].iov_len = len;
    return n + 1;
}

static uint64_t alloc_estimate(const S2EOverlayStats *st)
{
    return st->data_bytes + st->meta_bytes +
           (st->node_count + st->block_count) * MALLOC_OVERHEAD;
}

/* ---- basic --------------------------------------------------------------- */

static void test_new_limits(void)
{
    S2EOverlay *ov;

    errno = 0;
    CU_ASSERT_PTR_NULL(s2e_overlay_new(0));
    CU_ASSERT_EQUAL(errno, EINVAL);
    errno = 0;
    CU_ASSERT_PTR_NULL(s2e_overlay_new(S2E_OVERLAY_MAX_SECTORS + 1));
    CU_ASSERT_EQUAL(errno, EINVAL);

    ov = s2e_overlay_new(S2E_OVERLAY_MAX_SECTORS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ov);
    CU_ASSERT_EQUAL(s2e_overlay_nb_sectors(ov), S2E_OVERLAY_MAX_SECTORS);
    CU_ASSERT(s2e_overlay_depth(ov) <= 9);
    check_one(ov);
    s2e_overlay_free(ov);
    s2e_overlay_free(NULL);

    CU_ASSERT_EQUAL(s2e_overlay_block_size(), 4096);
    ov = s2e_overlay_new(1);
    CU_ASSERT_EQUAL(s2e_overlay_depth(ov), 1);
    s2e_overlay_free(ov);
    ov = s2e_overlay_new(UINT64_C(1) << 21);   /* 1 GiB */
    CU_ASSERT_EQUAL(s2e_overlay_depth(ov), 3);
    s2e_overlay_free(ov);
}

/* Read sector @s of @ov (pre-filled with 0xa5) and its extent kind. */
static int read_sector(S2EOverlay *ov, uint64_t s, unsigned char *buf)
{
    S2EExtentKind kind;
    uint64_t n;

    memset(buf, 0xa5, SECTOR);
    if (s2e_overlay_read(ov, s, 1, buf) < 0 ||
        s2e_overlay_extent(ov, s, 1, &kind, &n) < 0 || n != 1) {
        return -1;
    }
    return kind;
}

/* Is every byte of the sector at @buf equal to @c (0 or 0xa5)? */
static bool all_bytes(const unsigned char *buf, size_t len, unsigned char c)
{
    static unsigned char zeroes[SECTOR];
    static unsigned char a5[SECTOR];

    g_assert(len == SECTOR && (c == 0 || c == 0xa5));
    if (!a5[0]) {
        memset(a5, 0xa5, SECTOR);
    }
    return !memcmp(buf, c ? a5 : zeroes, SECTOR);
}

static void check_edges_of(uint64_t nb)
{
    S2EOverlay *ov = s2e_overlay_new(nb);
    unsigned char a[SECTOR], b[SECTOR], r[SECTOR];
    S2EExtentKind kind;
    S2EOverlayStats st;
    uint64_t n;

    CU_ASSERT_PTR_NOT_NULL_FATAL(ov);
    fill_pattern(a, SECTOR, nb);
    fill_pattern(b, SECTOR, nb + 1);

    /* Empty: one ABSENT run over the whole disk. */
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 0, UINT64_MAX, &kind, &n), 0);
    CU_ASSERT_EQUAL(kind, S2E_EXTENT_ABSENT);
    CU_ASSERT_EQUAL(n, nb);

    CU_ASSERT_EQUAL(s2e_overlay_write(ov, 0, 1, a), 0);
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, nb - 1, 1, nb == 1 ? a : b), 0);
    CU_ASSERT_EQUAL(read_sector(ov, 0, r), K_DATA);
    CU_ASSERT(memcmp(r, a, SECTOR) == 0);
    CU_ASSERT_EQUAL(read_sector(ov, nb - 1, r), K_DATA);
    CU_ASSERT(memcmp(r, nb == 1 ? a : b, SECTOR) == 0);
    if (nb > 2) {
        CU_ASSERT_EQUAL(read_sector(ov, nb - 2, r), K_ABSENT);
        CU_ASSERT(all_bytes(r, SECTOR, 0xa5));
        CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 1, UINT64_MAX, &kind, &n), 0);
        CU_ASSERT_EQUAL(kind, S2E_EXTENT_ABSENT);
        CU_ASSERT_EQUAL(n, nb - 2);
    }
    s2e_overlay_get_stats(ov, &st);
    CU_ASSERT_EQUAL(st.sectors_present, nb == 1 ? 1 : 2);
    check_one(ov);

    /* Zeroes over the last three sectors (or fewer), then everything. */
    n = MIN(nb, 3);
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, nb - n, n), 0);
    CU_ASSERT_EQUAL(read_sector(ov, nb - 1, r), K_ZERO);
    CU_ASSERT(all_bytes(r, SECTOR, 0));
    check_one(ov);
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, 0, nb), 0);
    s2e_overlay_get_stats(ov, &st);
    CU_ASSERT_EQUAL(st.sectors_present, nb);
    CU_ASSERT_EQUAL(st.node_count, 0);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 0, UINT64_MAX, &kind, &n), 0);
    CU_ASSERT_EQUAL(kind, S2E_EXTENT_ZERO);
    CU_ASSERT_EQUAL(n, nb);

    /* Write into the zeroes at the end, then discard everything. */
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, nb - 1, 1, b), 0);
    CU_ASSERT_EQUAL(read_sector(ov, nb - 1, r), K_DATA);
    CU_ASSERT(memcmp(r, b, SECTOR) == 0);
    if (nb > 1) {
        CU_ASSERT_EQUAL(read_sector(ov, nb - 2, r), K_ZERO);
    }
    check_one(ov);
    CU_ASSERT_EQUAL(s2e_overlay_discard(ov, 0, nb), 0);
    s2e_overlay_get_stats(ov, &st);
    CU_ASSERT_EQUAL(st.sectors_present, 0);
    CU_ASSERT_EQUAL(st.node_count + st.block_count, 0);
    check_one(ov);
    s2e_overlay_free(ov);
}

static void test_edges(void)
{
    static const uint64_t sizes[] = {
        1, 2, 7, 8, 9, 63, 511, 512, 513, 4095, 32768, 32769,
        (UINT64_C(1) << 20) + 3, (UINT64_C(1) << 32) - 1,
        (UINT64_C(1) << 32) + 5, 4 * TIB_SECTORS + 7,
        S2E_OVERLAY_MAX_SECTORS - 1, S2E_OVERLAY_MAX_SECTORS,
    };

    for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
        check_edges_of(sizes[k]);
    }
}

static void test_out_of_range(void)
{
    const uint64_t nb = 1000;
    S2EOverlay *ov = s2e_overlay_new(nb);
    unsigned char buf[4 * SECTOR] = { 0 };
    struct iovec iov = { buf, sizeof(buf) };
    S2EExtentKind kind;
    uint64_t n = 77;

    CU_ASSERT_EQUAL(s2e_overlay_write(ov, nb, 1, buf), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, nb - 1, 2, buf), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, UINT64_MAX - 1, 4, buf), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, 2, UINT64_MAX - 1, buf), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_read(ov, nb, 1, buf), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_read(ov, nb - 3, 4, buf), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, nb - 3, 4), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, UINT64_MAX, 2), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_discard(ov, nb + 5, 1), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_discard(ov, 1, UINT64_MAX), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, nb, 1, &kind, &n), -EINVAL);
    CU_ASSERT_EQUAL(n, 0);
    n = 77;
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 0, 0, &kind, &n), -EINVAL);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, UINT64_MAX, 1, &kind, &n), -EINVAL);

    /* Vectors too short or malformed. */
    CU_ASSERT_EQUAL(s2e_overlay_writev(ov, 0, 5, &iov, 1), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_readv(ov, 0, 5, &iov, 1), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_writev(ov, 0, 1, &iov, -1), -EINVAL);
    CU_ASSERT_EQUAL(s2e_overlay_writev(ov, 0, 1, NULL, 1), -EINVAL);

    /* Requests of no sectors succeed and change nothing, up to the end. */
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, nb, 0, buf), 0);
    CU_ASSERT_EQUAL(s2e_overlay_writev(ov, 3, 0, NULL, 0), 0);
    CU_ASSERT_EQUAL(s2e_overlay_read(ov, 0, 0, buf), 0);
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, 5, 0), 0);
    CU_ASSERT_EQUAL(s2e_overlay_discard(ov, nb, 0), 0);
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, nb + 1, 0, buf), -EINVAL);

    /* Nothing of this changed the overlay. */
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 0, nb, &kind, &n), 0);
    CU_ASSERT_EQUAL(kind, S2E_EXTENT_ABSENT);
    CU_ASSERT_EQUAL(n, nb);
    check_one(ov);
    s2e_overlay_free(ov);
}

/* Writes and reads through vectors split at odd byte counts. */
static void test_iov_split(void)
{
    const uint64_t nb = 3000;
    S2ETestRng rng;
    S2EOverlay *ov = s2e_overlay_new(nb);
    unsigned char *want = calloc(nb, SECTOR);
    unsigned char *got = malloc(nb * SECTOR);
    struct iovec iov[24];

    s2e_test_rng_init(&rng, s2e_test_seed() ^ 0x10f);
    for (int round = 0; round < 300; round++) {
        uint64_t s = s2e_test_rng_below(&rng, nb);
        uint64_t c = 1 + s2e_test_rng_below(&rng, MIN(nb - s, 200));
        unsigned char *buf = malloc(c * SECTOR);
        int iovcnt;

        fill_pattern(buf, c * SECTOR, round + 1);
        iovcnt = split_iov(&rng, buf, c * SECTOR, iov, G_N_ELEMENTS(iov));
        CU_ASSERT_EQUAL_FATAL(s2e_overlay_writev(ov, s, c, iov, iovcnt), 0);
        memcpy(want + s * SECTOR, buf, c * SECTOR);
        free(buf);

        s = s2e_test_rng_below(&rng, nb);
        c = 1 + s2e_test_rng_below(&rng, nb - s);
        memset(got, 0, c * SECTOR);
        iovcnt = split_iov(&rng, got, c * SECTOR, iov, G_N_ELEMENTS(iov));
        CU_ASSERT_EQUAL_FATAL(s2e_overlay_readv(ov, s, c, iov, iovcnt), 0);
        CU_ASSERT_FATAL(memcmp(got, want + s * SECTOR, c * SECTOR) == 0);
    }
    check_one(ov);
    s2e_overlay_free(ov);
    free(want);
    free(got);
}

/* Sectors above 2^32 and above 2 TiB are theirs, not aliases of lower ones. */
static void test_high_sectors(void)
{
    const uint64_t nb = 5 * TIB_SECTORS + 11;
    const uint64_t at[] = {
        (UINT64_C(1) << 32) - 2, (UINT64_C(1) << 32) + 64,
        3 * TIB_SECTORS + 3, nb - 4,
    };
    S2EOverlay *ov = s2e_overlay_new(nb);
    unsigned char buf[4 * SECTOR], r[4 * SECTOR];
    S2EExtentKind kind;
    uint64_t n;

    for (size_t k = 0; k < G_N_ELEMENTS(at); k++) {
        fill_pattern(buf, sizeof(buf), at[k]);
        CU_ASSERT_EQUAL(s2e_overlay_write(ov, at[k], 4, buf), 0);
    }
    for (size_t k = 0; k < G_N_ELEMENTS(at); k++) {
        fill_pattern(buf, sizeof(buf), at[k]);
        CU_ASSERT_EQUAL(s2e_overlay_read(ov, at[k], 4, r), 0);
        CU_ASSERT(memcmp(r, buf, sizeof(buf)) == 0);
        CU_ASSERT_EQUAL(s2e_overlay_extent(ov, at[k], 100, &kind, &n), 0);
        CU_ASSERT_EQUAL(kind, S2E_EXTENT_DATA);
        CU_ASSERT_EQUAL(n, 4);
        /* the same sector modulo 2^32 was not written */
        if (k > 0) {
            CU_ASSERT_EQUAL(s2e_overlay_extent(ov, at[k] - (UINT64_C(1) << 32),
                                               1, &kind, &n), 0);
            CU_ASSERT_EQUAL(kind, S2E_EXTENT_ABSENT);
        }
    }
    /* Gap between the second and third writes: one ABSENT run, clipped. */
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, at[1] + 4, UINT64_MAX,
                                       &kind, &n), 0);
    CU_ASSERT_EQUAL(kind, S2E_EXTENT_ABSENT);
    CU_ASSERT_EQUAL(n, at[2] - at[1] - 4);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, at[1] + 4, 1000, &kind, &n), 0);
    CU_ASSERT_EQUAL(n, 1000);

    /* Over 1 TiB of zeroes in that gap: cheap, and one run. */
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, at[1] + 4,
                                             at[2] - at[1] - 4), 0);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, at[1] + 4, UINT64_MAX,
                                       &kind, &n), 0);
    CU_ASSERT_EQUAL(kind, S2E_EXTENT_ZERO);
    CU_ASSERT_EQUAL(n, at[2] - at[1] - 4);
    fill_pattern(buf, sizeof(buf), at[2]);
    CU_ASSERT_EQUAL(s2e_overlay_read(ov, at[2], 4, r), 0);
    CU_ASSERT(memcmp(r, buf, sizeof(buf)) == 0);
    check_one(ov);
    s2e_overlay_free(ov);
}

/* Extents are maximal even when a run crosses blocks, leaves and levels. */
static void test_extent_runs(void)
{
    const uint64_t nb = 100000;
    S2EOverlay *ov = s2e_overlay_new(nb);
    unsigned char *buf = calloc(40000, SECTOR);
    S2EExtentKind kind;
    uint64_t n;

    /* DATA 3 .. 39003 (unaligned, spans leaves), ZERO after it. */
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, 3, 39000, buf), 0);
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, 39003, 50001), 0);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 0, nb, &kind, &n), 0);
    CU_ASSERT(kind == S2E_EXTENT_ABSENT && n == 3);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 3, nb, &kind, &n), 0);
    CU_ASSERT(kind == S2E_EXTENT_DATA && n == 39000);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 5, 38000, &kind, &n), 0);
    CU_ASSERT(kind == S2E_EXTENT_DATA && n == 38000);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 39003, nb, &kind, &n), 0);
    CU_ASSERT(kind == S2E_EXTENT_ZERO && n == 50001);
    CU_ASSERT_EQUAL(s2e_overlay_extent(ov, 89004, nb, &kind, &n), 0);
    CU_ASSERT(kind == S2E_EXTENT_ABSENT && n == nb - 89004);
    check_one(ov);
    s2e_overlay_free(ov);
    free(buf);
}

/* ---- Dense shadow model -------------------------------------------------- */

#define MODEL_MAX_LIVE 6

typedef struct Shadow {
    S2EOverlay *ov;
    unsigned char *data;    /* nb sectors */
    unsigned char *kind;    /* nb entries */
} Shadow;

typedef struct Model {
    uint64_t nb;
    Shadow live[MODEL_MAX_LIVE];
    int n;
    S2ETestRng rng;
    uint64_t step;
    const char *op;
    bool inject;            /* ENOMEM injection on mutations */
    uint64_t enomem_seen;
    bool failed;
    unsigned char *buf;     /* scratch: nb sectors */
    unsigned char *buf2;
} Model;

static void model_fail(Model *m, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void model_fail(Model *m, const char *fmt, ...)
{
    va_list ap;

    if (m->failed) {
        return;
    }
    m->failed = true;
    fprintf(stderr, "\nmodel failure (S2E_TEST_SEED=%" PRIu64 ", disk %"
            PRIu64 " sectors, step %" PRIu64 ", op %s): ", s2e_test_seed(),
            m->nb, m->step, m->op);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    CU_FAIL("overlay differs from the shadow model");
}

/* The shadows' buffers are allocated once per disk and reused by forks:
 * fresh pages for every fork make the test slow under ASan. */
static void model_init(Model *m, uint64_t nb, uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    m->nb = nb;
    s2e_test_rng_init(&m->rng, seed);
    for (int k = 0; k < MODEL_MAX_LIVE; k++) {
        m->live[k].data = calloc(nb, SECTOR);
        m->live[k].kind = calloc(nb, 1);
    }
    m->live[0].ov = s2e_overlay_new(nb);
    m->n = 1;
    m->buf = malloc(nb * SECTOR);
    m->buf2 = malloc(nb * SECTOR);
}

static void model_destroy(Model *m)
{
    for (int k = 0; k < MODEL_MAX_LIVE; k++) {
        if (k < m->n) {
            s2e_overlay_free(m->live[k].ov);
        }
        free(m->live[k].data);
        free(m->live[k].kind);
    }
    free(m->buf);
    free(m->buf2);
}

/* Compare extents of [s, s + c) of overlay @k with the model, asking with
 * a random maximum each time so clipping is exercised too. */
static void model_compare_extents(Model *m, int k, uint64_t s, uint64_t c)
{
    Shadow *sh = &m->live[k];
    uint64_t end = s + c;

    while (s < end && !m->failed) {
        uint64_t max = end - s;
        S2EExtentKind kind;
        uint64_t n;

        if (s2e_test_rng_below(&m->rng, 4) == 0) {
            max = 1 + s2e_test_rng_below(&m->rng, max);
        }
        if (s2e_overlay_extent(sh->ov, s, max, &kind, &n) < 0 ||
            n == 0 || n > max) {
            model_fail(m, "extent(%" PRIu64 ", %" PRIu64 ") failed",
                       s, max);
            return;
        }
        for (uint64_t x = s; x < s + n; x++) {
            if (sh->kind[x] != kind) {
                model_fail(m, "extent at %" PRIu64 " says %s for %" PRIu64
                           " sectors, sector %" PRIu64 " is %s", s,
                           kind_name(kind), n, x, kind_name(sh->kind[x]));
                return;
            }
        }
        if (n < max && sh->kind[s + n] == kind) {
            model_fail(m, "extent at %" PRIu64 " (%s) stops early at %"
                       PRIu64, s, kind_name(kind), s + n);
            return;
        }
        s += n;
    }
}

/* Read [s, s + c) of overlay @k through a split vector and compare. */
static void model_compare_data(Model *m, int k, uint64_t s, uint64_t c)
{
    Shadow *sh = &m->live[k];
    struct iovec iov[16];
    int iovcnt;

    if (c == 0) {
        return;
    }
    memset(m->buf, 0xa5, c * SECTOR);
    iovcnt = split_iov(&m->rng, m->buf, c * SECTOR, iov, G_N_ELEMENTS(iov));
    if (s2e_overlay_readv(sh->ov, s, c, iov, iovcnt) < 0) {
        model_fail(m, "readv(%" PRIu64 ", %" PRIu64 ") failed", s, c);
        return;
    }
    for (uint64_t x = 0; x < c; x++) {
        const unsigned char *got = m->buf + x * SECTOR;
        bool ok;
        switch (sh->kind[s + x]) {
        case K_ABSENT:
            ok = all_bytes(got, SECTOR, 0xa5);
            break;
        case K_ZERO:
            ok = all_bytes(got, SECTOR, 0);
            break;
        default:
            ok = !memcmp(got, sh->data + (s + x) * SECTOR, SECTOR);
            break;
        }
        if (!ok) {
            model_fail(m, "sector %" PRIu64 " (%s) reads wrong data",
                       s + x, kind_name(sh->kind[s + x]));
            return;
        }
    }
}

static void model_check_all(Model *m)
{
    S2EOverlay *ovs[MODEL_MAX_LIVE];

    for (int k = 0; k < m->n; k++) {
        ovs[k] = m->live[k].ov;
    }
    if (!m->failed && !check_ok(ovs, m->n)) {
        model_fail(m, "s2e_overlay_check failed");
    }
    if (!m->failed && !account_ok(ovs, m->n)) {
        model_fail(m, "the memory account is wrong");
    }
}

/* A random range; @cap bounds its length (whole-disk ranges aside). */
static void model_pick_range(Model *m, uint64_t cap, uint64_t *s,
                             uint64_t *c)
{
    uint64_t nb = m->nb;
    uint64_t bs = BLOCK_SECTORS;

    switch (s2e_test_rng_below(&m->rng, 10)) {
    case 0: case 1: case 2: case 3:
        *c = 1 + s2e_test_rng_below(&m->rng, 16);
        *s = s2e_test_rng_below(&m->rng, nb);
        break;
    case 4: case 5:     /* whole blocks */
        *s = s2e_test_rng_below(&m->rng, nb) / bs * bs;
        *c = bs * (1 + s2e_test_rng_below(&m->rng, 8));
        break;
    case 6: case 7:
        *s = s2e_test_rng_below(&m->rng, nb);
        *c = 1 + s2e_test_rng_below(&m->rng, MIN(cap, nb));
        break;
    case 8:             /* at the end of the disk */
        *c = 1 + s2e_test_rng_below(&m->rng, MIN(cap, nb));
        *s = nb - MIN(*c, nb);
        break;
    default:            /* the whole disk, or from somewhere to its end */
        *s = s2e_test_rng_below(&m->rng, 2) ? 0 :
             s2e_test_rng_below(&m->rng, nb);
        *c = nb - *s;
        break;
    }
    *s = MIN(*s, nb - 1);
    *c = MIN(*c, nb - *s);
    *c = MIN(*c, MAX(cap, 1));
}

/* After a failed mutation: every sector must hold its old or its new
 * contents; take whichever it holds into the model. */
static void model_sync_after_failure(Model *m, int k, uint64_t s, uint64_t c,
                                     int new_kind, const unsigned char *src)
{
    Shadow *sh = &m->live[k];

    for (uint64_t x = s; x < s + c && !m->failed; x++) {
        unsigned char got[SECTOR];
        int kind = read_sector(sh->ov, x, got);
        bool is_old = kind == sh->kind[x] &&
                      (kind == K_ABSENT || kind == K_ZERO ||
                       !memcmp(got, sh->data + x * SECTOR, SECTOR));
        bool is_new = kind == new_kind &&
                      (kind != K_DATA ||
                       !memcmp(got, src + (x - s) * SECTOR, SECTOR));
        if (!is_old && !is_new) {
            model_fail(m, "after ENOMEM, sector %" PRIu64 " is %s, neither "
                       "its old nor its new contents", x, kind_name(kind));
            return;
        }
        sh->kind[x] = kind;
        if (kind == K_DATA) {
            memcpy(sh->data + x * SECTOR, got, SECTOR);
        }
    }
}

static void model_apply(Model *m, int k, uint64_t s, uint64_t c,
                        int new_kind, const unsigned char *src)
{
    Shadow *sh = &m->live[k];

    memset(sh->kind + s, new_kind, c);
    if (new_kind == K_DATA) {
        memcpy(sh->data + s * SECTOR, src, c * SECTOR);
    }
}

/* Maybe give the overlay a small allocation budget for the next call. */
static bool model_maybe_limit(Model *m, S2EOverlay *ov)
{
    if (m->inject && s2e_test_rng_below(&m->rng, 2)) {
        s2e_overlay_set_alloc_budget(ov, s2e_test_rng_below(&m->rng, 6));
        return true;
    }
    return false;
}

static void model_mutate(Model *m, int k, int new_kind)
{
    Shadow *sh = &m->live[k];
    uint64_t s, c;
    bool limited;
    int ret;

    model_pick_range(m, new_kind == K_DATA ? 700 : m->nb, &s, &c);
    limited = model_maybe_limit(m, sh->ov);
    if (new_kind == K_DATA) {
        struct iovec iov[16];
        int iovcnt;
        m->op = "write";
        fill_pattern(m->buf2, c * SECTOR, s2e_test_rng_next(&m->rng));
        iovcnt = split_iov(&m->rng, m->buf2, c * SECTOR, iov,
                           G_N_ELEMENTS(iov));
        ret = s2e_overlay_writev(sh->ov, s, c, iov, iovcnt);
    } else if (new_kind == K_ZERO) {
        m->op = "write_zeroes";
        ret = s2e_overlay_write_zeroes(sh->ov, s, c);
    } else {
        m->op = "discard";
        ret = s2e_overlay_discard(sh->ov, s, c);
    }
    s2e_overlay_set_alloc_budget(sh->ov, -1);

    if (ret == -ENOMEM && limited) {
        m->enomem_seen++;
        model_sync_after_failure(m, k, s, c, new_kind, m->buf2);
    } else if (ret != 0) {
        model_fail(m, "%s(%" PRIu64 ", %" PRIu64 ") returned %d", m->op,
                   s, c, ret);
        return;
    } else {
        model_apply(m, k, s, c, new_kind, m->buf2);
    }

    /* The touched overlay, around the change and somewhere else. */
    model_compare_extents(m, k, 0, m->nb);
    s = s > 16 ? s - 16 : 0;
    model_compare_data(m, k, s, MIN(c + 32, m->nb - s));
    s = s2e_test_rng_below(&m->rng, m->nb);
    model_compare_data(m, k, s, MIN(64, m->nb - s));
}

static void model_fork(Model *m, int k)
{
    S2EOverlay *child;
    bool limited = model_maybe_limit(m, m->live[k].ov);

    m->op = "fork";
    child = s2e_overlay_fork(m->live[k].ov);
    s2e_overlay_set_alloc_budget(m->live[k].ov, -1);
    if (!child) {
        if (!limited || errno != ENOMEM) {
            model_fail(m, "fork failed");
        }
        m->enomem_seen++;
        return;
    }
    m->live[m->n].ov = child;
    memcpy(m->live[m->n].data, m->live[k].data, m->nb * SECTOR);
    memcpy(m->live[m->n].kind, m->live[k].kind, m->nb);
    m->n++;
}

static void model_free(Model *m, int k)
{
    Shadow freed = m->live[k];

    m->op = "free";
    s2e_overlay_free(freed.ov);
    freed.ov = NULL;
    m->live[k] = m->live[--m->n];
    m->live[m->n] = freed;      /* its buffers serve the next fork */
}

static void model_step(Model *m)
{
    int k = (int)s2e_test_rng_below(&m->rng, m->n);
    unsigned r = (unsigned)s2e_test_rng_below(&m->rng, 100);
    uint64_t s, c;

    m->step++;
    if (r < 30) {
        model_mutate(m, k, K_DATA);
    } else if (r < 42) {
        model_mutate(m, k, K_ZERO);
    } else if (r < 54) {
        model_mutate(m, k, K_ABSENT);
    } else if (r < 62) {
        if (m->n < MODEL_MAX_LIVE) {
            model_fork(m, k);
        }
    } else if (r < 67) {
        if (m->n > 1) {
            model_free(m, k);
        }
    } else if (r < 84) {
        m->op = "read";
        model_pick_range(m, 2048, &s, &c);
        model_compare_data(m, k, s, c);
    } else {
        m->op = "extent";
        model_pick_range(m, m->nb, &s, &c);
        model_compare_extents(m, k, s, c);
    }
    model_check_all(m);
}

/* Every overlay, every sector. */
static void model_compare_everything(Model *m)
{
    m->op = "full comparison";
    for (int k = 0; k < m->n && !m->failed; k++) {
        model_compare_extents(m, k, 0, m->nb);
        model_compare_data(m, k, 0, m->nb);
    }
}

static uint64_t model_pick_disk_size(S2ETestRng *rng)
{
    switch (s2e_test_rng_below(rng, 10)) {
    case 0:
        return 1 + s2e_test_rng_below(rng, 16);
    case 1: case 2: case 3:
        return 17 + s2e_test_rng_below(rng, 600);
    case 4: case 5: case 6: case 7: case 8:
        return 600 + s2e_test_rng_below(rng, 5000);
    default:    /* three levels */
        return 32769 + s2e_test_rng_below(rng, 8000);
    }
}

static uint64_t run_dense_model(uint64_t total_ops, bool inject,
                                uint64_t seed_tweak)
{
    S2ETestRng rng;
    uint64_t done = 0;
    uint64_t enomem = 0;
    uint64_t rounds = 0;

    s2e_test_rng_init(&rng, s2e_test_seed() ^ seed_tweak);
    while (done < total_ops) {
        uint64_t nb = model_pick_disk_size(&rng);
        uint64_t ops = MIN(total_ops - done, 500 + s2e_test_rng_below(&rng,
                                                                    2000));
        uint64_t every = MAX(32, nb / 64);
        Model m;
        bool failed;

        model_init(&m, nb, s2e_test_rng_next(&rng));
        m.inject = inject;
        for (uint64_t k = 0; k < ops && !m.failed; k++) {
            model_step(&m);
            if (m.step % every == 0) {
                model_compare_everything(&m);
            }
        }
        model_compare_everything(&m);
        done += m.step;
        enomem += m.enomem_seen;
        rounds++;
        failed = m.failed;
        model_destroy(&m);
        if (failed) {
            break;
        }
    }
    printf("\n    %" PRIu64 " operations on %" PRIu64 " disks",
           done, rounds);
    if (inject) {
        printf(", %" PRIu64 " ENOMEM", enomem);
    }
    printf("\n    ");
    return enomem;
}

static void test_model_dense(void)
{
    run_dense_model(s2e_test_scale(100000), false, 0);
}

/* ---- Sparse shadow model for huge disks ---------------------------------- */

/* Kind runs [start, end) of one overlay, sorted, adjacent runs differ,
 * no ABSENT runs; DATA sector contents in a hash. */
typedef struct Run {
    uint64_t start;
    uint64_t end;
    int kind;
} Run;

typedef struct Sparse {
    S2EOverlay *ov;
    GArray *runs;           /* of Run */
    GHashTable *data;       /* sector (uint64_t *) -> 512 bytes */
} Sparse;

#define SPARSE_MAX_LIVE 4
#define SPARSE_ANCHORS 6

typedef struct SparseModel {
    uint64_t nb;
    Sparse live[SPARSE_MAX_LIVE];
    int n;
    uint64_t anchors[SPARSE_ANCHORS];
    S2ETestRng rng;
    uint64_t step;
    const char *op;
    bool failed;
} SparseModel;

static void sparse_fail(SparseModel *m, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static void sparse_fail(SparseModel *m, const char *fmt, ...)
{
    va_list ap;

    if (m->failed) {
        return;
    }
    m->failed = true;
    fprintf(stderr, "\nsparse model failure (S2E_TEST_SEED=%" PRIu64
            ", disk %" PRIu64 " sectors, step %" PRIu64 ", op %s): ",
            s2e_test_seed(), m->nb, m->step, m->op);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    CU_FAIL("overlay differs from the sparse shadow model");
}

static GHashTable *sector_table_new(void)
{
    return g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
}

static void sparse_init(Sparse *sp, S2EOverlay *ov)
{
    sp->ov = ov;
    sp->runs = g_array_new(FALSE, FALSE, sizeof(Run));
    sp->data = sector_table_new();
}

static void sparse_copy(Sparse *dst, const Sparse *src, S2EOverlay *ov)
{
    GHashTableIter it;
    gpointer key, value;

    sparse_init(dst, ov);
    g_array_append_vals(dst->runs, src->runs->data, src->runs->len);
    g_hash_table_iter_init(&it, src->data);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_hash_table_insert(dst->data, g_memdup2(key, sizeof(uint64_t)),
                            g_memdup2(value, SECTOR));
    }
}

static void sparse_destroy(Sparse *sp)
{
    s2e_overlay_free(sp->ov);
    g_array_free(sp->runs, TRUE);
    g_hash_table_destroy(sp->data);
}

static int sparse_kind_at(const Sparse *sp, uint64_t s, uint64_t *run_end,
                          uint64_t nb)
{
    uint64_t next = nb;

    for (guint k = 0; k < sp->runs->len; k++) {
        Run *r = &g_array_index(sp->runs, Run, k);
        if (s < r->start) {
            next = r->start;
            break;
        }
        if (s < r->end) {
            *run_end = r->end;
            return r->kind;
        }
    }
    *run_end = next;
    return K_ABSENT;
}

/* Set [s, e) to @kind in the run list, keeping it normalized. */
static void sparse_set_runs(Sparse *sp, uint64_t s, uint64_t e, int kind)
{
    GArray *out = g_array_new(FALSE, FALSE, sizeof(Run));
    Run add = { s, e, kind };
    bool added = kind == K_ABSENT;

    for (guint k = 0; k < sp->runs->len; k++) {
        Run r = g_array_index(sp->runs, Run, k);
        if (!added && r.start >= s) {
            g_array_append_val(out, add);
            added = true;
        }
        if (r.end <= s || r.start >= e) {
            g_array_append_val(out, r);
            continue;
        }
        if (r.start < s) {
            Run left = { r.start, s, r.kind };
            g_array_append_val(out, left);
        }
        if (!added) {
            g_array_append_val(out, add);
            added = true;
        }
        if (r.end > e) {
            Run right = { e, r.end, r.kind };
            g_array_append_val(out, right);
        }
    }
    if (!added) {
        g_array_append_val(out, add);
    }
    /* merge neighbours of one kind */
    g_array_set_size(sp->runs, 0);
    for (guint k = 0; k < out->len; k++) {
        Run r = g_array_index(out, Run, k);
        Run *last = sp->runs->len ?
                    &g_array_index(sp->runs, Run, sp->runs->len - 1) : NULL;
        if (last && last->end == r.start && last->kind == r.kind) {
            last->end = r.end;
        } else {
            g_array_append_val(sp->runs, r);
        }
    }
    g_array_free(out, TRUE);
}

static void sparse_drop_data(Sparse *sp, uint64_t s, uint64_t e)
{
    GHashTableIter it;
    gpointer key, value;

    if (e - s < 4096) {
        for (uint64_t x = s; x < e; x++) {
            g_hash_table_remove(sp->data, &x);
        }
        return;
    }
    g_hash_table_iter_init(&it, sp->data);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        uint64_t x = *(uint64_t *)key;
        if (x >= s && x < e) {
            g_hash_table_iter_remove(&it);
        }
    }
}

static void sparse_compare_extents(SparseModel *m, int k)
{
    Sparse *sp = &m->live[k];
    uint64_t s = 0;

    while (s < m->nb && !m->failed) {
        S2EExtentKind kind;
        uint64_t n, run_end;
        int want = sparse_kind_at(sp, s, &run_end, m->nb);

        if (s2e_overlay_extent(sp->ov, s, UINT64_MAX, &kind, &n) < 0) {
            sparse_fail(m, "extent(%" PRIu64 ") failed", s);
            return;
        }
        if ((int)kind != want || s + n != run_end) {
            sparse_fail(m, "extent at %" PRIu64 ": %s x %" PRIu64
                        ", expected %s up to %" PRIu64, s, kind_name(kind),
                        n, kind_name(want), run_end);
            return;
        }
        s += n;
    }
}

static void sparse_compare_data(SparseModel *m, int k, uint64_t s,
                                uint64_t c)
{
    Sparse *sp = &m->live[k];
    unsigned char *buf = g_malloc(c * SECTOR);

    memset(buf, 0xa5, c * SECTOR);
    if (s2e_overlay_read(sp->ov, s, c, buf) < 0) {
        sparse_fail(m, "read(%" PRIu64 ", %" PRIu64 ") failed", s, c);
    }
    for (uint64_t x = s; x < s + c && !m->failed; x++) {
        uint64_t run_end;
        int kind = sparse_kind_at(sp, x, &run_end, m->nb);
        const unsigned char *got = buf + (x - s) * SECTOR;
        const unsigned char *want = g_hash_table_lookup(sp->data, &x);
        bool ok;

        if (kind == K_DATA) {
            ok = want && !memcmp(got, want, SECTOR);
        } else {
            ok = all_bytes(got, SECTOR, kind == K_ZERO ? 0 : 0xa5);
        }
        if (!ok) {
            sparse_fail(m, "sector %" PRIu64 " (%s) reads wrong data",
                        x, kind_name(kind));
        }
    }
    g_free(buf);
}

/* A range near an anchor; sometimes huge. */
static void sparse_pick_range(SparseModel *m, bool allow_huge, uint64_t *s,
                              uint64_t *c)
{
    uint64_t a = m->anchors[s2e_test_rng_below(&m->rng, SPARSE_ANCHORS)];
    uint64_t r = s2e_test_rng_below(&m->rng, 20);

    if (allow_huge && r == 0) {
        *s = 0;
        *c = m->nb;
        return;
    }
    if (allow_huge && r < 3) {
        *s = a;
        *c = r == 1 ? m->nb - a : 1 + s2e_test_rng_below(&m->rng, m->nb - a);
        return;
    }
    *s = a + s2e_test_rng_below(&m->rng, 2048);
    *s = *s >= 1024 ? *s - 1024 : 0;
    *s = MIN(*s, m->nb - 1);
    *c = 1 + s2e_test_rng_below(&m->rng, r < 15 ? 16 : 200);
    *c = MIN(*c, m->nb - *s);
}

static void sparse_mutate(SparseModel *m, int k, int kind)
{
    Sparse *sp = &m->live[k];
    uint64_t s, c;
    unsigned char *buf = NULL;
    int ret;

    sparse_pick_range(m, kind != K_DATA, &s, &c);
    if (kind == K_DATA) {
        m->op = "write";
        buf = g_malloc(c * SECTOR);
        fill_pattern(buf, c * SECTOR, s2e_test_rng_next(&m->rng));
        ret = s2e_overlay_write(sp->ov, s, c, buf);
    } else if (kind == K_ZERO) {
        m->op = "write_zeroes";
        ret = s2e_overlay_write_zeroes(sp->ov, s, c);
    } else {
        m->op = "discard";
        ret = s2e_overlay_discard(sp->ov, s, c);
    }
    if (ret != 0) {
        sparse_fail(m, "%s(%" PRIu64 ", %" PRIu64 ") returned %d", m->op,
                    s, c, ret);
        g_free(buf);
        return;
    }
    sparse_set_runs(sp, s, s + c, kind);
    sparse_drop_data(sp, s, s + c);
    for (uint64_t x = 0; buf && x < c; x++) {
        uint64_t key = s + x;
        g_hash_table_insert(sp->data, g_memdup2(&key, sizeof(key)),
                            g_memdup2(buf + x * SECTOR, SECTOR));
    }
    g_free(buf);

    sparse_compare_extents(m, k);
    s = s > 8 ? s - 8 : 0;
    sparse_compare_data(m, k, s, MIN(MIN(c, 512) + 16, m->nb - s));
}

static void sparse_check_all(SparseModel *m)
{
    S2EOverlay *ovs[SPARSE_MAX_LIVE];

    for (int k = 0; k < m->n; k++) {
        ovs[k] = m->live[k].ov;
    }
    if (!m->failed && !check_ok(ovs, m->n)) {
        sparse_fail(m, "s2e_overlay_check failed");
    }
    if (!m->failed && !account_ok(ovs, m->n)) {
        sparse_fail(m, "the memory account is wrong");
    }
}

static void sparse_step(SparseModel *m)
{
    int k = (int)s2e_test_rng_below(&m->rng, m->n);
    unsigned r = (unsigned)s2e_test_rng_below(&m->rng, 100);
    uint64_t s, c;

    m->step++;
    if (r < 40) {
        sparse_mutate(m, k, K_DATA);
    } else if (r < 55) {
        sparse_mutate(m, k, K_ZERO);
    } else if (r < 70) {
        sparse_mutate(m, k, K_ABSENT);
    } else if (r < 78) {
        if (m->n < SPARSE_MAX_LIVE) {
            m->op = "fork";
            sparse_copy(&m->live[m->n], &m->live[k],
                        s2e_overlay_fork(m->live[k].ov));
            m->n++;
        }
    } else if (r < 83) {
        if (m->n > 1) {
            m->op = "free";
            sparse_destroy(&m->live[k]);
            m->live[k] = m->live[--m->n];
        }
    } else {
        m->op = "read";
        sparse_pick_range(m, false, &s, &c);
        sparse_compare_data(m, k, s, c);
        sparse_compare_extents(m, k);
    }
    sparse_check_all(m);
}

static void test_model_sparse(void)
{
    static const uint64_t sizes[] = {
        S2E_OVERLAY_MAX_SECTORS, 4 * TIB_SECTORS + 7,
        (UINT64_C(1) << 32) + 1000, (UINT64_C(1) << 40) + 3,
    };
    uint64_t total = s2e_test_scale(20000);
    uint64_t done = 0;
    S2ETestRng rng;

    s2e_test_rng_init(&rng, s2e_test_seed() ^ 0x5a5a);
    for (unsigned round = 0; done < total; round++) {
        SparseModel m = { .nb = sizes[round % G_N_ELEMENTS(sizes)] };
        uint64_t ops = MIN(total - done, 2500);
        bool failed;

        s2e_test_rng_init(&m.rng, s2e_test_rng_next(&rng));
        m.anchors[0] = 0;
        m.anchors[1] = m.nb - 1;
        m.anchors[2] = MIN(UINT64_C(1) << 32, m.nb - 1);
        m.anchors[3] = MIN(2 * TIB_SECTORS, m.nb - 1);  /* 1 TiB in */
        for (int a = 4; a < SPARSE_ANCHORS; a++) {
            m.anchors[a] = s2e_test_rng_below(&m.rng, m.nb);
        }
        sparse_init(&m.live[0], s2e_overlay_new(m.nb));
        m.n = 1;
        for (uint64_t k = 0; k < ops && !m.failed; k++) {
            sparse_step(&m);
        }
        done += m.step;
        failed = m.failed;
        for (int k = 0; k < m.n; k++) {
            sparse_destroy(&m.live[k]);
        }
        if (failed) {
            break;
        }
    }
    printf("\n    %" PRIu64 " operations on huge disks\n    ", done);
}

/* ---- memory -------------------------------------------------------------- */

static double memory_ratio(S2EOverlay *ov, uint64_t written)
{
    S2EOverlayStats st;

    s2e_overlay_get_stats(ov, &st);
    return (double)(alloc_estimate(&st) + 64) / (double)written;
}

static void test_memory_4k_writes(void)
{
    struct {
        uint64_t nb;
        uint64_t writes;
        bool random;
    } cases[] = {
        { UINT64_C(1) << 21, 8192, false },         /* 1 GiB disk, 32 MiB */
        { UINT64_C(1) << 21, 4096, true },          /* 16 MiB scattered */
        { 4 * TIB_SECTORS, 2048, true },            /* 8 MiB over 4 TiB */
        { S2E_OVERLAY_MAX_SECTORS, 1024, true },
    };
    unsigned char buf[4096];
    S2ETestRng rng;

    s2e_test_rng_init(&rng, s2e_test_seed() ^ 0x4b);
    fill_pattern(buf, sizeof(buf), 4);
    for (size_t k = 0; k < G_N_ELEMENTS(cases); k++) {
        S2EOverlay *ov = s2e_overlay_new(cases[k].nb);
        uint64_t blocks = cases[k].nb / 8;
        GHashTable *seen = g_hash_table_new(g_int64_hash, g_int64_equal);
        uint64_t *keys = g_new(uint64_t, cases[k].writes);
        double ratio;

        for (uint64_t w = 0; w < cases[k].writes; w++) {
            uint64_t b = cases[k].random ?
                         s2e_test_rng_below(&rng, blocks) : w;
            keys[w] = b;
            g_hash_table_add(seen, &keys[w]);
            CU_ASSERT_EQUAL_FATAL(s2e_overlay_write(ov, b * 8, 8, buf), 0);
        }
        ratio = memory_ratio(ov, (uint64_t)g_hash_table_size(seen) * 4096);
        printf("\n    %" PRIu64 " x 4 KiB %s on %" PRIu64
               " sectors: memory %.4f x written%s", cases[k].writes,
               cases[k].random ? "random" : "sequential", cases[k].nb, ratio,
               k + 1 == G_N_ELEMENTS(cases) ? "\n    " : "");
        CU_ASSERT(ratio <= 1.10);
        check_one(ov);
        s2e_overlay_free(ov);
        g_hash_table_destroy(seen);
        g_free(keys);
    }
}

static void test_memory_single_512(void)
{
    static const uint64_t sizes[] = {
        100, UINT64_C(1) << 21, 4 * TIB_SECTORS, S2E_OVERLAY_MAX_SECTORS,
    };
    unsigned char buf[SECTOR];

    fill_pattern(buf, sizeof(buf), 5);
    for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
        S2EOverlay *ov = s2e_overlay_new(sizes[k]);
        unsigned depth = s2e_overlay_depth(ov);
        S2EOverlayStats st;

        CU_ASSERT_EQUAL(s2e_overlay_write(ov, sizes[k] / 2 + 3, 1, buf), 0);
        s2e_overlay_get_stats(ov, &st);
        /* one block holding just the sector, one minimal node per level */
        CU_ASSERT_EQUAL(st.block_count, 1);
        CU_ASSERT_EQUAL(st.data_bytes, SECTOR);
        CU_ASSERT_EQUAL(st.node_count, depth);
        CU_ASSERT(st.meta_bytes <= 16 + depth * 32);
        CU_ASSERT(st.data_bytes + st.meta_bytes <=
                  s2e_overlay_block_size() + 16 + depth * 32);
        check_one(ov);
        s2e_overlay_free(ov);
    }
}

static bool stats_equal(const S2EOverlayStats *a, const S2EOverlayStats *b)
{
    return !memcmp(a, b, sizeof(*a));
}

static S2EOverlay *new_filled(uint64_t nb, uint64_t blocks)
{
    S2EOverlay *ov = s2e_overlay_new(nb);
    unsigned char *buf = malloc(1024 * 4096);

    fill_pattern(buf, 1024 * 4096, nb);
    for (uint64_t b = 0; b < blocks; b += 1024) {
        uint64_t n = MIN(1024, blocks - b);
        if (s2e_overlay_write(ov, b * 8, n * 8, buf) < 0) {
            CU_FAIL("write failed");
        }
    }
    free(buf);
    return ov;
}

static void test_memory_forks(void)
{
    enum { FORKS = 40 };
    S2EOverlay *ovs[FORKS + 1];
    S2EOverlayStats before, after, one, u0, u1;
    unsigned char buf[SECTOR];
    uint64_t per_fork;

    ovs[0] = new_filled(UINT64_C(1) << 18, 16384);     /* 64 MiB */
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ovs[0], 200000, 7), 0);
    s2e_overlay_get_stats(ovs[0], &before);
    CU_ASSERT_EQUAL(before.shared_data_bytes, 0);
    CU_ASSERT_EQUAL(s2e_overlay_get_union_stats(ovs, 1, &u0), 0);

    /* A fork costs no node and no block. */
    for (int k = 1; k <= FORKS; k++) {
        ovs[k] = s2e_overlay_fork(ovs[k % 3 == 0 ? k - 1 : 0]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ovs[k]);
    }
    CU_ASSERT_EQUAL(s2e_overlay_get_union_stats(ovs, FORKS + 1, &u1), 0);
    CU_ASSERT_EQUAL(u1.node_count, u0.node_count);
    CU_ASSERT_EQUAL(u1.block_count, u0.block_count);
    CU_ASSERT_EQUAL(u1.data_bytes, u0.data_bytes);
    CU_ASSERT_EQUAL(u1.meta_bytes, u0.meta_bytes);
    s2e_overlay_get_stats(ovs[5], &one);
    CU_ASSERT_EQUAL(one.shared_data_bytes, one.data_bytes);
    CU_ASSERT(check_ok(ovs, FORKS + 1));

    /* Each fork writes 512 bytes into a shared block: it pays for a copy
     * of that block and of the nodes on its path, nothing more. */
    for (int k = 1; k <= FORKS; k++) {
        fill_pattern(buf, sizeof(buf), k);
        CU_ASSERT_EQUAL(s2e_overlay_write(ovs[k], 8 * 100 * k + 1, 1, buf), 0);
    }
    CU_ASSERT_EQUAL(s2e_overlay_get_union_stats(ovs, FORKS + 1, &u1), 0);
    per_fork = (u1.data_bytes + u1.meta_bytes - u0.data_bytes -
                u0.meta_bytes) / FORKS;
    printf("\n    first 512-byte write after a fork: %" PRIu64 " bytes\n    ",
           per_fork);
    CU_ASSERT(per_fork <= 4096 + 8 + s2e_overlay_depth(ovs[0]) *
                          (16 + 64 * 16));
    CU_ASSERT(check_ok(ovs, FORKS + 1));

    /* The parent did not change; freeing the forks restores its stats. */
    s2e_overlay_get_stats(ovs[0], &after);
    CU_ASSERT(after.shared_data_bytes > 0);
    for (int k = 1; k <= FORKS; k++) {
        s2e_overlay_free(ovs[k]);
    }
    s2e_overlay_get_stats(ovs[0], &after);
    CU_ASSERT(stats_equal(&before, &after));
    CU_ASSERT_EQUAL(s2e_overlay_get_union_stats(ovs, 1, &u1), 0);
    CU_ASSERT(u1.meta_bytes == u0.meta_bytes &&
              u1.data_bytes == u0.data_bytes);
    check_one(ovs[0]);

    /* The other way round: the parent goes first, a fork survives. */
    ovs[1] = s2e_overlay_fork(ovs[0]);
    CU_ASSERT_EQUAL(s2e_overlay_write(ovs[1], 9, 1, buf), 0);
    s2e_overlay_free(ovs[0]);
    s2e_overlay_get_stats(ovs[1], &after);
    CU_ASSERT_EQUAL(after.shared_data_bytes, 0);
    CU_ASSERT_EQUAL(s2e_overlay_get_union_stats(&ovs[1], 1, &u1), 0);
    CU_ASSERT(u1.meta_bytes == after.meta_bytes &&
              u1.data_bytes == after.data_bytes);
    check_one(ovs[1]);
    s2e_overlay_free(ovs[1]);
}

/* Discard and zeroes prune: nothing stays allocated for what was dropped. */
static void test_memory_prune(void)
{
    const uint64_t nb = 4 * TIB_SECTORS;
    S2EOverlay *ov = s2e_overlay_new(nb);
    unsigned char buf[16 * SECTOR];
    S2ETestRng rng;
    uint64_t at[300];
    S2EOverlayStats st;

    s2e_test_rng_init(&rng, s2e_test_seed() ^ 0x77);
    fill_pattern(buf, sizeof(buf), 6);
    for (size_t k = 0; k < G_N_ELEMENTS(at); k++) {
        at[k] = s2e_test_rng_below(&rng, nb - 16);
        CU_ASSERT_EQUAL(s2e_overlay_write(ov, at[k], 1 + k % 16, buf), 0);
        if (k % 7 == 0) {
            CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, at[k] + 3,
                                                     1000 + k), 0);
        }
    }
    check_one(ov);
    /* Discard piece by piece: every node must go. */
    for (size_t k = 0; k < G_N_ELEMENTS(at); k++) {
        CU_ASSERT_EQUAL(s2e_overlay_discard(ov, at[k], 1 + k % 16), 0);
        if (k % 7 == 0) {
            CU_ASSERT_EQUAL(s2e_overlay_discard(ov, at[k] + 3, 1000 + k), 0);
        }
    }
    s2e_overlay_get_stats(ov, &st);
    CU_ASSERT_EQUAL(st.node_count, 0);
    CU_ASSERT_EQUAL(st.block_count, 0);
    CU_ASSERT_EQUAL(st.sectors_present, 0);
    check_one(ov);

    /* Zeroing the whole 4 TiB costs nothing but the root sentinel; one
     * write inside it materializes one node per level. */
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, 0, nb), 0);
    s2e_overlay_get_stats(ov, &st);
    CU_ASSERT_EQUAL(st.node_count, 0);
    CU_ASSERT_EQUAL(st.sectors_present, nb);
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, nb / 3, 1, buf), 0);
    s2e_overlay_get_stats(ov, &st);
    CU_ASSERT_EQUAL(st.node_count, s2e_overlay_depth(ov));
    CU_ASSERT_EQUAL(st.data_bytes, SECTOR);
    CU_ASSERT_EQUAL(st.sectors_present, nb);
    /* Zeroing it again collapses everything back into the sentinel. */
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, nb / 3, 1), 0);
    s2e_overlay_get_stats(ov, &st);
    CU_ASSERT_EQUAL(st.node_count, 0);
    CU_ASSERT_EQUAL(st.block_count, 0);
    check_one(ov);
    /* Discard of all but the two end sectors: tiny tree left. */
    CU_ASSERT_EQUAL(s2e_overlay_discard(ov, 1, nb - 2), 0);
    s2e_overlay_get_stats(ov, &st);
    CU_ASSERT_EQUAL(st.sectors_present, 2);
    CU_ASSERT(st.node_count <= 2 * s2e_overlay_depth(ov));
    check_one(ov);
    s2e_overlay_free(ov);
}

/* ---- enomem -------------------------------------------------------------- */

static void test_enomem_life_cycle(void)
{
    S2EOverlay *ov;
    S2EOverlay *child;

    errno = 0;
    CU_ASSERT_PTR_NULL(s2e_overlay_new_with_budget(100, 0));
    CU_ASSERT_EQUAL(errno, ENOMEM);
    ov = s2e_overlay_new_with_budget(100, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ov);
    CU_ASSERT_EQUAL(s2e_overlay_alloc_budget(ov), 0);
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, 3, 1), -ENOMEM);
    errno = 0;
    CU_ASSERT_PTR_NULL(s2e_overlay_fork(ov));
    CU_ASSERT_EQUAL(errno, ENOMEM);
    check_one(ov);
    s2e_overlay_set_alloc_budget(ov, 1);
    child = s2e_overlay_fork(ov);
    CU_ASSERT_PTR_NOT_NULL(child);
    CU_ASSERT_EQUAL(s2e_overlay_alloc_budget(child), -1);
    s2e_overlay_free(child);
    s2e_overlay_free(ov);
}

/* Copy-on-write after a fork, with every budget until it succeeds. */
static void test_enomem_cow_path(void)
{
    const uint64_t nb = 4 * TIB_SECTORS;
    static const int64_t ops[] = { 0, 1, 2 };   /* write, zeroes, discard */
    unsigned char buf[3 * SECTOR], r[3 * SECTOR], old[3 * SECTOR];

    fill_pattern(old, sizeof(old), 8);
    fill_pattern(buf, sizeof(buf), 9);
    for (size_t o = 0; o < G_N_ELEMENTS(ops); o++) {
        S2EOverlay *ovs[2];
        int64_t budget;
        int ret = -ENOMEM;
        const uint64_t at = 3 * TIB_SECTORS + 6;   /* crosses a block */

        ovs[0] = s2e_overlay_new(nb);
        CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ovs[0], 0, nb), 0);
        CU_ASSERT_EQUAL(s2e_overlay_write(ovs[0], at, 3, old), 0);
        ovs[1] = s2e_overlay_fork(ovs[0]);
        for (budget = 0; ret == -ENOMEM && budget < 64; budget++) {
            s2e_overlay_set_alloc_budget(ovs[1], budget);
            switch (ops[o]) {
            case 0:
                ret = s2e_overlay_write(ovs[1], at, 3, buf);
                break;
            case 1:
                ret = s2e_overlay_write_zeroes(ovs[1], at - 1, 3);
                break;
            default:
                ret = s2e_overlay_discard(ovs[1], at + 1, 7);
                break;
            }
            s2e_overlay_set_alloc_budget(ovs[1], -1);
            CU_ASSERT(ret == 0 || ret == -ENOMEM);
            CU_ASSERT(check_ok(ovs, 2));
            /* the parent never changes */
            CU_ASSERT_EQUAL(s2e_overlay_read(ovs[0], at, 3, r), 0);
            CU_ASSERT(memcmp(r, old, sizeof(r)) == 0);
        }
        CU_ASSERT_EQUAL(ret, 0);
        CU_ASSERT(budget > 1);  /* some attempts did fail */
        s2e_overlay_free(ovs[1]);
        s2e_overlay_free(ovs[0]);
    }
}

static void test_enomem_model(void)
{
    uint64_t enomem = run_dense_model(s2e_test_scale(20000), true, 0xe0e0);

    CU_ASSERT(enomem > 100);
}

/* ---- limit: memory accounts with a limit --------------------------------- */

#define LIMIT_BYTES (256 * 1024)

/* Write 4 KiB blocks with tags from @tag on, one per 8 blocks of the disk
 * (so nodes are made too), until one fails; returns how many succeeded and
 * the error of the failed one in *err. */
static uint64_t write_until_full(S2EOverlay *ov, uint64_t tag, int *err)
{
    unsigned char buf[4096];
    uint64_t n = 0;

    for (;;) {
        fill_pattern(buf, sizeof(buf), tag + n);
        *err = s2e_overlay_write(ov, n * 64, 8, buf);
        if (*err < 0) {
            return n;
        }
        n++;
    }
}

static bool block_reads(S2EOverlay *ov, uint64_t i, uint64_t tag)
{
    unsigned char got[4096], want[4096];

    fill_pattern(want, sizeof(want), tag + i);
    return s2e_overlay_read(ov, i * 64, 8, got) == 0 &&
           memcmp(got, want, sizeof(got)) == 0;
}

/* A write past the limit fails with ENOSPC, nothing written before is lost,
 * and a discard or a lower use makes room again. */
static void test_limit_enospc(void)
{
    S2EOverlayMemory *mem = s2e_overlay_memory_new(LIMIT_BYTES);
    S2EOverlay *ov = s2e_overlay_new_in(UINT64_C(1) << 21, mem);
    uint64_t n, before;
    int err;

    CU_ASSERT_PTR_NOT_NULL_FATAL(ov);
    CU_ASSERT_EQUAL(s2e_overlay_memory_limit(mem), LIMIT_BYTES);
    n = write_until_full(ov, 100, &err);
    CU_ASSERT_EQUAL(err, -ENOSPC);
    CU_ASSERT(n > 40 && n < 64);
    CU_ASSERT(s2e_overlay_memory_used(mem) <= LIMIT_BYTES);
    CU_ASSERT(s2e_overlay_memory_used(mem) > LIMIT_BYTES - 2 * 4104);
    check_one(ov);
    CU_ASSERT(account_ok(&ov, 1));
    for (uint64_t i = 0; i < n; i++) {
        CU_ASSERT(block_reads(ov, i, 100));
    }
    /* Zeroing a written block gives its data back. */
    before = s2e_overlay_memory_used(mem);
    CU_ASSERT_EQUAL(s2e_overlay_write_zeroes(ov, 0, 8), 0);
    CU_ASSERT(s2e_overlay_memory_used(mem) < before);
    /* Discarding half makes room for as many again. */
    CU_ASSERT_EQUAL(s2e_overlay_discard(ov, 0, (n / 2) * 64), 0);
    CU_ASSERT(account_ok(&ov, 1));
    CU_ASSERT(write_until_full(ov, 100, &err) >= n / 2);
    CU_ASSERT_EQUAL(err, -ENOSPC);
    /* A lower limit refuses writes and takes nothing away; raising it
     * lets them through. */
    s2e_overlay_memory_set_limit(mem, 4096);
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, 9999 * 8, 1, (char[512]){ 0 }),
                    -ENOSPC);
    CU_ASSERT(block_reads(ov, n - 1, 100));
    s2e_overlay_memory_set_limit(mem, 0);
    CU_ASSERT_EQUAL(s2e_overlay_write(ov, 9999 * 8, 1, (char[512]){ 0 }), 0);
    check_one(ov);
    CU_ASSERT(account_ok(&ov, 1));
    s2e_overlay_free(ov);
    CU_ASSERT_EQUAL(s2e_overlay_memory_used(mem), 0);
    s2e_overlay_memory_unref(mem);
}

/* Forks share the account: shared data counts once, a copy on write counts
 * against the same limit, a discard in a fork works even when it must copy
 * shared nodes with the account full, and freeing a fork makes room. */
static void test_limit_forks(void)
{
    S2EOverlayMemory *mem = s2e_overlay_memory_new(LIMIT_BYTES);
    S2EOverlay *ovs[2];
    uint64_t n, shared;
    int err;

    ovs[0] = s2e_overlay_new_in(UINT64_C(1) << 21, mem);
    s2e_overlay_memory_unref(mem);          /* the overlays hold it now */
    n = write_until_full(ovs[0], 7, &err);
    shared = s2e_overlay_memory_used(mem);
    ovs[1] = s2e_overlay_fork(ovs[0]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ovs[1]);
    CU_ASSERT_EQUAL(s2e_overlay_memory(ovs[1]), mem);
    CU_ASSERT_EQUAL(s2e_overlay_memory_used(mem), shared);
    CU_ASSERT_EQUAL(write_until_full(ovs[1], 500, &err), 0);
    CU_ASSERT_EQUAL(err, -ENOSPC);
    CU_ASSERT_EQUAL(s2e_overlay_discard(ovs[1], 64, 8), 0);
    CU_ASSERT(check_ok(ovs, 2));
    CU_ASSERT(account_ok(ovs, 2));
    CU_ASSERT(block_reads(ovs[0], 1, 7));
    s2e_overlay_free(ovs[0]);
    CU_ASSERT(account_ok(&ovs[1], 1));
    CU_ASSERT(s2e_overlay_memory_used(mem) < shared);
    for (uint64_t i = 2; i < n; i++) {
        CU_ASSERT(block_reads(ovs[1], i, 7));
    }
    s2e_overlay_free(ovs[1]);
}

/* ---- threads ------------------------------------------------------------- */

typedef struct ThreadJob {
    S2EOverlay *ov;
    uint64_t tag;
    uint64_t nb;
    bool ok;
} ThreadJob;

/* Write, fork, free and read back on overlays that share structure with
 * the other thread's. */
static void *thread_job(void *opaque)
{
    ThreadJob *job = opaque;
    S2ETestRng rng;
    unsigned char buf[8 * SECTOR], r[8 * SECTOR];

    s2e_test_rng_init(&rng, job->tag);
    job->ok = true;
    for (int k = 0; k < 20000; k++) {
        uint64_t s = s2e_test_rng_below(&rng, job->nb - 8);
        S2EOverlay *tmp;

        fill_pattern(buf, sizeof(buf), job->tag + s);
        if (s2e_overlay_write(job->ov, s, 8, buf) < 0 ||
            s2e_overlay_read(job->ov, s, 8, r) < 0 ||
            memcmp(r, buf, sizeof(r)) != 0) {
            job->ok = false;
        }
        if (k % 64 == 0) {
            tmp = s2e_overlay_fork(job->ov);
            s2e_overlay_free(job->ov);
            job->ov = tmp;
        }
    }
    return NULL;
}

static void test_threads(void)
{
    const uint64_t nb = 8192 * 8;
    S2EOverlay *parent = new_filled(nb, 8192);
    ThreadJob jobs[2];
    pthread_t tids[2];
    S2EOverlay *ovs[3];

    for (int k = 0; k < 2; k++) {
        jobs[k] = (ThreadJob) { s2e_overlay_fork(parent), 1000 * (k + 1),
                                nb, false };
    }
    for (int k = 0; k < 2; k++) {
        CU_ASSERT_EQUAL_FATAL(pthread_create(&tids[k], NULL, thread_job,
                                             &jobs[k]), 0);
    }
    for (int k = 0; k < 2; k++) {
        pthread_join(tids[k], NULL);
        CU_ASSERT(jobs[k].ok);
    }
    ovs[0] = parent;
    ovs[1] = jobs[0].ov;
    ovs[2] = jobs[1].ov;
    CU_ASSERT(check_ok(ovs, 3));
    CU_ASSERT(account_ok(ovs, 3));
    for (int k = 0; k < 3; k++) {
        s2e_overlay_free(ovs[k]);
    }
}

void s2e_test_register(void)
{
    CU_pSuite basic = s2e_test_suite("basic");
    CU_pSuite model = s2e_test_suite("model");
    CU_pSuite memory = s2e_test_suite("memory");
    CU_pSuite enomem = s2e_test_suite("enomem");
    CU_pSuite threads = s2e_test_suite("threads");

    s2e_test_add(basic, "new_limits", test_new_limits);
    s2e_test_add(basic, "edges", test_edges);
    s2e_test_add(basic, "out_of_range", test_out_of_range);
    s2e_test_add(basic, "iov_split", test_iov_split);
    s2e_test_add(basic, "high_sectors", test_high_sectors);
    s2e_test_add(basic, "extent_runs", test_extent_runs);

    s2e_test_add(model, "dense", test_model_dense);
    s2e_test_add(model, "sparse", test_model_sparse);

    s2e_test_add(memory, "4k_writes", test_memory_4k_writes);
    s2e_test_add(memory, "single_512", test_memory_single_512);
    s2e_test_add(memory, "forks", test_memory_forks);
    s2e_test_add(memory, "prune", test_memory_prune);
    s2e_test_add(memory, "limit_enospc", test_limit_enospc);
    s2e_test_add(memory, "limit_forks", test_limit_forks);

    s2e_test_add(enomem, "life_cycle", test_enomem_life_cycle);
    s2e_test_add(enomem, "cow_path", test_enomem_cow_path);
    s2e_test_add(enomem, "model", test_enomem_model);

    s2e_test_add(threads, "forks_in_two_threads", test_threads);
}
