/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "s2e" block driver: a raw image that is never written.
 *
 * An s2e image is plain raw data (renaming disk.raw to disk.raw.s2e is the
 * whole conversion).  Guest writes go to an in-memory copy-on-write overlay
 * (block/overlay.c); reads look through three layers, topmost first:
 *
 *     overlay        this execution path's writes        (memory)
 *     snapshot layer sectors of the loaded snapshot      (IMAGE.NAME, read
 *                                                        by a worker thread)
 *     base image     the raw file, through bs->file      (never written)
 *
 * so any number of QEMU processes can share one base image and its
 * snapshots.  The file child is held with CONSISTENT_READ only and shares
 * CONSISTENT_READ | WRITE_UNCHANGED: readers may share the base, a writer
 * or a resize is refused by QEMU's image locking.  After opening, the child
 * is reopened read-only, so the base's file descriptor is read-only in
 * every QEMU program and a 0444 base works.
 *
 * This file is glue: each callback translates a QEMU request into overlay
 * calls and base reads.  Every failure is returned to QEMU as -errno; no
 * guest request can abort QEMU.  Reads issue one base read per run of
 * sectors absent from the upper layers.
 *
 * Discard drops this path's writes for the range: it then reads back what
 * the layers below hold (the loaded snapshot's data, else the base image),
 * which the guest may not assume to be zeroes.  write_zeroes stores zeroes.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/module.h"
#include "qemu/option.h"
#include "qemu/cutils.h"

#include "block-s2e.h"

#define S2E_OPT_SNAPSHOT_DIR "snapshot-dir"
#define S2E_OPT_OVERLAY_LIMIT "overlay-limit"

static QemuOptsList s2e_runtime_opts = {
    .name = "s2e",
    .head = QTAILQ_HEAD_INITIALIZER(s2e_runtime_opts.head),
    .desc = {
        {
            .name = S2E_OPT_SNAPSHOT_DIR,
            .type = QEMU_OPT_STRING,
            .help = "Directory for snapshot files IMAGE.NAME "
                    "(default: the directory of the base image)",
        },
        {
            .name = S2E_OPT_OVERLAY_LIMIT,
            .type = QEMU_OPT_SIZE,
            .help = "Most memory (bytes; k, M, G, T suffixes) the overlays "
                    "of this drive may hold in all paths together; a write "
                    "past it fails with ENOSPC (default: no limit)",
        },
        { /* end of list */ }
    },
};

static const char *const s2e_strong_runtime_opts[] = {
    S2E_OPT_SNAPSHOT_DIR,
    NULL
};

static int s2e_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    /* Contents are raw: only the name tells an s2e image apart. */
    if (filename && g_str_has_suffix(filename, ".s2e")) {
        return 100;
    }
    return 0;
}

/*
 * Make the base's file descriptor read-only whatever the caller asked for:
 * qemu-img and qemu-io open images read-write by default.  A reopen takes
 * the graph lock itself, so it runs unlocked.
 */
static int GRAPH_UNLOCKED s2e_make_base_read_only(BlockDriverState *bs,
                                                  Error **errp)
{
    BlockDriverState *file_bs;

    bdrv_graph_rdlock_main_loop();
    file_bs = bs->file->bs;
    bdrv_graph_rdunlock_main_loop();

    if (bdrv_is_read_only(file_bs)) {
        return 0;
    }
    return bdrv_reopen_set_read_only(file_bs, true, errp);
}

/* The struct layout check reads bs->file: under the graph lock. */
static bool GRAPH_UNLOCKED s2e_abi_check_unlocked(BlockDriverState *bs,
                                                  Error **errp)
{
    bool ok;

    bdrv_graph_rdlock_main_loop();
    ok = s2e_abi_check(bs, errp);
    bdrv_graph_rdunlock_main_loop();
    return ok;
}

/* Give this drive a view in every execution path of the process. */
static int s2e_register_drive(BlockDriverState *bs, Error **errp)
{
    BDRVS2EState *s = bs->opaque;
    S2EPathSet *set = s2e_paths_default();
    int ret;

    if (!set) {
        error_setg(errp, "Out of memory for the s2e path set");
        return -ENOMEM;
    }
    ret = s2e_pathset_register_drive(set, bdrv_get_node_name(bs),
                                     s->nb_sectors, &s2e_layer_ops,
                                     &s->pdrive);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not create the overlay");
        return ret;
    }
    s2e_paths_object_ensure();
    return 0;
}

/* The part of opening that reads the base through bs->file. */
static int GRAPH_RDLOCK s2e_open_base(BlockDriverState *bs, QemuOpts *opts,
                                      Error **errp)
{
    BDRVS2EState *s = bs->opaque;
    int64_t len;
    int ret;

    len = bdrv_getlength(bs->file->bs);
    if (len < 0) {
        error_setg_errno(errp, -len,
                         "Could not get the size of the base image");
        return len;
    }
    if (len == 0) {
        error_setg(errp, "The base image is empty: an s2e image needs data");
        return -EINVAL;
    }
    s->length = len;
    s->nb_sectors = DIV_ROUND_UP((uint64_t)len, S2E_SECTOR_SIZE);

    ret = s2e_register_drive(bs, errp);
    if (ret < 0) {
        return ret;
    }
    s2e_path_drive_set_overlay_limit(s->pdrive,
        qemu_opt_get_size(opts, S2E_OPT_OVERLAY_LIMIT, 0));
    s2e_snapshot_glue_open(bs, qemu_opt_get(opts, S2E_OPT_SNAPSHOT_DIR));

    s2e_engine_detect(&s->engine);
    if (s->engine.disk_rw) {
        info_report("s2e: %s: the host's engine keeps disk writes "
                    "(KVM_DISK_RW)", bs->filename);
    }
    bs->supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK;
    return 0;
}

/*
 * QEMU calls open without the graph lock (8.0+): the file child is opened
 * unlocked, then everything that reads bs->file runs under the lock, as in
 * QEMU's own raw format driver.
 */
static int GRAPH_UNLOCKED s2e_open(BlockDriverState *bs, QDict *options,
                                   int flags, Error **errp)
{
    QemuOpts *opts;
    int ret;

    /*
     * Creating options without an id cannot fail; error_abort, a data
     * symbol, would bind at load time and break the plugin outside QEMU.
     */
    opts = qemu_opts_create(&s2e_runtime_opts, NULL, 0, NULL);
    if (!qemu_opts_absorb_qdict(opts, options, errp)) {
        ret = -EINVAL;
        goto out;
    }

    ret = bdrv_open_file_child(NULL, options, "file", bs, errp);
    if (ret < 0) {
        goto out;
    }
    if (!s2e_abi_check_unlocked(bs, errp)) {
        ret = -ENOTSUP;
        goto out;
    }
    ret = s2e_make_base_read_only(bs, errp);
    if (ret < 0) {
        goto out;
    }

    bdrv_graph_rdlock_main_loop();
    ret = s2e_open_base(bs, opts, errp);
    bdrv_graph_rdunlock_main_loop();
out:
    qemu_opts_del(opts);
    return ret;
}

static void s2e_close(BlockDriverState *bs)
{
    BDRVS2EState *s = bs->opaque;

    s2e_snapshot_glue_close(bs);
    if (s->pdrive) {
        /* Every path's view of this drive goes with it. */
        s2e_pathset_unregister_drive(s2e_paths_default(), s->pdrive);
        s->pdrive = NULL;
    }
}

static void s2e_child_perm(BlockDriverState *bs, BdrvChild *c,
                           BdrvChildRole role, BlockReopenQueue *reopen_queue,
                           uint64_t parent_perm, uint64_t parent_shared,
                           uint64_t *nperm, uint64_t *nshared)
{
    /* Read the base; let others read it too, but never write or resize. */
    *nperm = BLK_PERM_CONSISTENT_READ;
    *nshared = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED;
}

static void s2e_refresh_limits(BlockDriverState *bs, Error **errp)
{
    /* The overlay is sector-exact: QEMU does read-modify-write below. */
    bs->bl.request_alignment = S2E_SECTOR_SIZE;
    bs->bl.pwrite_zeroes_alignment = S2E_SECTOR_SIZE;
    bs->bl.pdiscard_alignment = S2E_SECTOR_SIZE;
}

static int s2e_check_range(BDRVS2EState *s, int64_t offset, int64_t bytes)
{
    if (offset < 0 || bytes < 0 ||
        (offset | bytes) & (S2E_SECTOR_SIZE - 1) ||
        (uint64_t)offset > s->nb_sectors * S2E_SECTOR_SIZE ||
        (uint64_t)bytes > s->nb_sectors * S2E_SECTOR_SIZE - offset) {
        return -EINVAL;
    }
    return 0;
}

/* Runs of a read that an upper layer does not hold: few, usually. */
typedef struct S2ERun {
    uint64_t sector;
    uint64_t count;
} S2ERun;

typedef struct S2ERuns {
    S2ERun *run;
    size_t n, cap;
    S2ERun inline_runs[8];
} S2ERuns;

static void s2e_runs_init(S2ERuns *r)
{
    r->run = r->inline_runs;
    r->n = 0;
    r->cap = G_N_ELEMENTS(r->inline_runs);
}

static void s2e_runs_free(S2ERuns *r)
{
    if (r->run != r->inline_runs) {
        g_free(r->run);
    }
}

static int s2e_runs_add(S2ERuns *r, uint64_t sector, uint64_t count)
{
    if (r->n == r->cap) {
        S2ERun *more = g_try_new(S2ERun, r->cap * 2);

        if (!more) {
            return -ENOMEM;
        }
        memcpy(more, r->run, r->n * sizeof(*more));
        s2e_runs_free(r);
        r->run = more;
        r->cap *= 2;
    }
    r->run[r->n++] = (S2ERun){ sector, count };
    return 0;
}

/*
 * A read of the snapshot layer never waits for the disk in the coroutine:
 * on a page-cache miss (a cold snapshot, one on NFS) a file read blocks,
 * and there it would stall the whole AioContext -- the main loop, under
 * the BQL, when the drive has no iothread.  So the coroutine first reads
 * what the page cache holds (S2E_SNAPSHOT_READ_NOWAIT), which serves a hot
 * snapshot without a thread switch, and only when that would wait hands
 * the read to a worker of the thread pool.  Either way the data goes
 * straight into the request's buffers, and the runs the layer does not
 * hold are noted for base reads, which the coroutine issues itself.
 */
typedef struct S2ELayerRead {
    S2ESnapshot *layer;
    uint64_t sector, count;
    QEMUIOVector qiov;          /* the request's buffers for the run */
    S2ERuns *base_runs;
    unsigned flags;
    GError *gerr;
} S2ELayerRead;

static int s2e_note_base_run(void *opaque, uint64_t sector, uint64_t count,
                             GError **error)
{
    return s2e_runs_add(opaque, sector, count);
}

static int s2e_layer_readv(void *opaque)
{
    S2ELayerRead *r = opaque;

    r->base_runs->n = 0;    /* a read that gave up noted some already */
    return s2e_snapshot_readv(r->layer, r->sector, r->count, r->qiov.iov,
                              r->qiov.niov, r->flags, s2e_note_base_run,
                              r->base_runs, &r->gerr);
}

static int coroutine_fn s2e_read_layer(BlockDriverState *bs,
                                       S2ESnapshot *layer, uint64_t sector,
                                       uint64_t count, QEMUIOVector *qiov,
                                       size_t qiov_offset, S2ERuns *base_runs)
{
    S2ELayerRead r = {
        .layer = layer, .sector = sector, .count = count,
        .base_runs = base_runs, .flags = S2E_SNAPSHOT_READ_NOWAIT,
    };
    bool whole = qiov_offset == 0 && qiov->size == count * S2E_SECTOR_SIZE;
    int ret;

    /* Most reads miss the overlay whole: no slice to build then. */
    if (whole) {
        r.qiov = *qiov;
    } else {
        qemu_iovec_init_slice(&r.qiov, qiov, qiov_offset,
                              count * S2E_SECTOR_SIZE);
    }
    ret = s2e_layer_readv(&r);
    if (ret == -EAGAIN) {
        r.flags = 0;
        ret = s2e_thread_pool_submit_co(bs, s2e_layer_readv, &r);
    }
    if (!whole) {
        qemu_iovec_destroy(&r.qiov);
    }
    if (ret < 0 && r.gerr) {
        s2e_report_gerror(r.gerr);
    }
    return ret;
}

/*
 * Fill a run absent from the overlay: what the snapshot layer holds, then
 * the base for the rest.
 */
static int coroutine_fn GRAPH_RDLOCK
s2e_read_below_overlay(BlockDriverState *bs, S2ESnapshot *layer,
                       uint64_t sector, uint64_t count, QEMUIOVector *qiov,
                       size_t qiov_offset)
{
    S2ERuns base;
    int ret = 0;

    s2e_runs_init(&base);
    if (layer) {
        ret = s2e_read_layer(bs, layer, sector, count, qiov, qiov_offset,
                             &base);
    } else {
        ret = s2e_runs_add(&base, sector, count);
    }
    for (size_t i = 0; i < base.n && ret == 0; i++) {
        ret = bdrv_co_preadv_part(bs->file,
                                  base.run[i].sector * S2E_SECTOR_SIZE,
                                  base.run[i].count * S2E_SECTOR_SIZE, qiov,
                                  qiov_offset + (base.run[i].sector - sector) *
                                  S2E_SECTOR_SIZE, 0);
    }
    s2e_runs_free(&base);
    return ret;
}

/*
 * Copy what the overlay holds of the request into @qiov and list the runs
 * it does not hold, all without yielding.
 */
static int s2e_read_overlay(S2EOverlay *ov, uint64_t first, uint64_t count,
                            QEMUIOVector *qiov, S2ERuns *absent)
{
    uint64_t pos = 0;

    while (pos < count) {
        S2EExtentKind kind;
        uint64_t n;
        int ret = s2e_overlay_extent(ov, first + pos, count - pos, &kind, &n);

        if (ret == 0 && kind == S2E_EXTENT_ABSENT) {
            ret = s2e_runs_add(absent, first + pos, n);
        }
        if (ret < 0) {
            return ret;
        }
        pos += n;
    }
    return s2e_overlay_readv(ov, first, count, qiov->iov, qiov->niov);
}

/*
 * The overlay's part of a read is copied first, before anything yields:
 * a base read yields, and a discard or write in the meantime may drop or
 * replace the overlay's sectors, which a copy after the yield would then
 * miss (leaving the caller's buffer unwritten) or take from a newer write.
 * Each sector returns the data it held when the read began, or, for runs
 * the overlay did not hold, what the layers below hold.
 */
static int coroutine_fn GRAPH_RDLOCK
s2e_co_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
              QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    BDRVS2EState *s = bs->opaque;
    uint64_t first = offset / S2E_SECTOR_SIZE;
    uint64_t count = bytes / S2E_SECTOR_SIZE;
    int ret = s2e_check_range(s, offset, bytes);
    /*
     * The view is fixed for the whole request (paths switch between
     * requests only).
     */
    S2EOverlay *ov = s2e_cur_overlay(s);
    S2ESnapshot *layer = s2e_cur_layer(s);
    S2ERuns absent;

    if (ret < 0) {
        return ret;
    }
    if (s->engine.disk_rw) {
        /* The engine's sectors win over the layers below the overlay. */
        ret = s2e_read_below_overlay(bs, layer, first, count, qiov, 0);
        return ret < 0 ? ret : s2e_engine_readv(&s->engine, first, count,
                                                qiov);
    }
    s2e_runs_init(&absent);
    ret = s2e_read_overlay(ov, first, count, qiov, &absent);
    for (size_t i = 0; i < absent.n && ret == 0; i++) {
        ret = s2e_read_below_overlay(bs, layer, absent.run[i].sector,
                                     absent.run[i].count, qiov,
                                     (absent.run[i].sector - first) *
                                     S2E_SECTOR_SIZE);
    }
    s2e_runs_free(&absent);
    return ret;
}

/*
 * Write @qiov, or zeroes when it is NULL, into the current path's
 * overlay, or hand it to the engine when there is one.
 */
static int s2e_write(BDRVS2EState *s, int64_t offset, int64_t bytes,
                     QEMUIOVector *qiov)
{
    uint64_t sector = offset / S2E_SECTOR_SIZE;
    uint64_t count = bytes / S2E_SECTOR_SIZE;
    int ret = s2e_check_range(s, offset, bytes);

    if (ret < 0) {
        return ret;
    }
    if (s->engine.disk_rw) {
        return s2e_engine_writev(&s->engine, sector, count, qiov);
    }
    if (!qiov) {
        return s2e_overlay_write_zeroes(s2e_cur_overlay(s), sector, count);
    }
    return s2e_overlay_writev(s2e_cur_overlay(s), sector, count, qiov->iov,
                              qiov->niov);
}

static int coroutine_fn GRAPH_RDLOCK
s2e_co_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
               QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    return s2e_write(bs->opaque, offset, bytes, qiov);
}

static int coroutine_fn GRAPH_RDLOCK
s2e_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                     BdrvRequestFlags flags)
{
    return s2e_write(bs->opaque, offset, bytes, NULL);
}

/*
 * Discard whole sectors only.  QEMU passes the unaligned head and tail of
 * a discard down on their own (discard is advisory, and devices may
 * coalesce pieces) and expects -ENOTSUP for what the driver cannot
 * discard; an error such as -EINVAL would fail the whole request.
 */
static int coroutine_fn s2e_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes)
{
    BDRVS2EState *s = bs->opaque;
    int64_t start = QEMU_ALIGN_UP(offset, S2E_SECTOR_SIZE);
    int64_t end = QEMU_ALIGN_DOWN(offset + bytes, S2E_SECTOR_SIZE);
    int ret;

    if (offset < 0 || bytes < 0 || end <= start) {
        return offset < 0 || bytes < 0 ? -EINVAL : -ENOTSUP;
    }
    ret = s2e_check_range(s, start, end - start);
    if (ret < 0) {
        return ret;
    }
    if (s->engine.disk_rw) {
        /* Discard is advisory; the engine's sectors stay as they are. */
        return 0;
    }
    return s2e_overlay_discard(s2e_cur_overlay(s), start / S2E_SECTOR_SIZE,
                               (end - start) / S2E_SECTOR_SIZE);
}

static int coroutine_fn GRAPH_RDLOCK
s2e_co_block_status(BlockDriverState *bs, S2EBlockStatusMode mode,
                    int64_t offset, int64_t bytes, int64_t *pnum,
                    int64_t *map, BlockDriverState **file)
{
    BDRVS2EState *s = bs->opaque;
    uint64_t sector = offset / S2E_SECTOR_SIZE;
    uint64_t max = DIV_ROUND_UP(bytes, S2E_SECTOR_SIZE);
    S2EExtentKind kind;
    uint64_t n;
    int ret;

    S2ESnapshot *layer = s2e_cur_layer(s);

    ret = s2e_overlay_extent(s2e_cur_overlay(s), sector, max, &kind, &n);
    if (ret < 0) {
        return ret;
    }
    if (kind == S2E_EXTENT_ABSENT && layer) {
        kind = s2e_snapshot_extent_kind(layer, sector, n, &n);
    }
    *pnum = MIN((int64_t)(n * S2E_SECTOR_SIZE), bytes);

    switch (kind) {
    case S2E_EXTENT_DATA:
        return BDRV_BLOCK_DATA;
    case S2E_EXTENT_ZERO:
        return BDRV_BLOCK_ZERO;
    default:
        /* Absent from the upper layers: the base answers for itself. */
        *map = offset;
        *file = bs->file->bs;
        return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
    }
}

static int coroutine_fn s2e_co_flush_to_os(BlockDriverState *bs)
{
    /* The overlay is memory: nothing to flush, and the base is not ours. */
    return 0;
}

static int64_t coroutine_fn s2e_co_getlength(BlockDriverState *bs)
{
    BDRVS2EState *s = bs->opaque;
    return s->length;
}

static int coroutine_fn s2e_co_get_info(BlockDriverState *bs,
                                        BlockDriverInfo *bdi)
{
    bdi->cluster_size = s2e_overlay_block_size();
    bdi->is_dirty = false;
    return 0;
}

static int s2e_has_zero_init(BlockDriverState *bs)
{
    return 0;
}

BlockDriver bdrv_s2e = {
    .format_name            = "s2e",
    .instance_size          = sizeof(BDRVS2EState),
    .is_format              = true,

    .bdrv_probe             = s2e_probe,
    .bdrv_open              = s2e_open,
    .bdrv_close             = s2e_close,
    .bdrv_child_perm        = s2e_child_perm,
    .bdrv_refresh_limits    = s2e_refresh_limits,

    .bdrv_co_preadv         = s2e_co_preadv,
    .bdrv_co_pwritev        = s2e_co_pwritev,
    .bdrv_co_pwrite_zeroes  = s2e_co_pwrite_zeroes,
    .bdrv_co_pdiscard       = s2e_co_pdiscard,
    .bdrv_co_block_status   = s2e_co_block_status,
    .bdrv_co_flush_to_os    = s2e_co_flush_to_os,

    .bdrv_has_zero_init     = s2e_has_zero_init,
#if S2E_QEMU_AT_LEAST(8, 0)
    /* 8.0 made these coroutine callbacks; the signatures are the same. */
    .bdrv_co_getlength      = s2e_co_getlength,
    .bdrv_co_get_info       = s2e_co_get_info,
    .bdrv_co_save_vmstate   = s2e_co_save_vmstate,
    .bdrv_co_load_vmstate   = s2e_co_load_vmstate,
#else
    .bdrv_getlength         = s2e_co_getlength,
    .bdrv_get_info          = s2e_co_get_info,
    .bdrv_save_vmstate      = s2e_co_save_vmstate,
    .bdrv_load_vmstate      = s2e_co_load_vmstate,
#endif
    .bdrv_snapshot_create   = s2e_snapshot_create_cb,
    .bdrv_snapshot_goto     = s2e_snapshot_goto_cb,
    .bdrv_snapshot_delete   = s2e_snapshot_delete_cb,
    .bdrv_snapshot_list     = s2e_snapshot_list_cb,

    .strong_runtime_opts    = s2e_strong_runtime_opts,
};

#ifndef S2E_QEMU_PLUGIN
/* Linked into a QEMU build: register like every built-in driver. */
static void bdrv_s2e_init(void)
{
    bdrv_register(&bdrv_s2e);
}

block_init(bdrv_s2e_init);
#endif
