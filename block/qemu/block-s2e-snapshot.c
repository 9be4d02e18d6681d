/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * savevm / loadvm for the s2e driver: snapshots are files beside the image.
 *
 * At open, s2e_snapshot_glue_open() decides where a drive's snapshot files
 * live (IMAGE.NAME beside a local base, or in the snapshot-dir option) and
 * holds a local base open, so every savevm and loadvm can check that the
 * base is still the file the drive opened, unchanged.
 *
 * QEMU 7.2's savevm streams the VM state through bdrv_save_vmstate() at
 * sequential positions from 0 and only then calls bdrv_snapshot_create()
 * with the snapshot's name.  So the first save_vmstate call starts a
 * snapshot writer (a temporary file in the snapshot directory) and
 * snapshot_create adds this drive's dirty sectors -- the loaded snapshot's
 * sectors merged with the overlay -- and commits the file as IMAGE.NAME.
 * Drives that do not hold the VM state get a file with sectors only.
 * A failure while the VM state streams in is reported by snapshot_create,
 * where the monitor hears it (s2e_hold_save_error()).
 *
 * loadvm calls bdrv_snapshot_goto() on every drive, resets the machine and
 * reads the VM state through bdrv_load_vmstate() in 32 KiB steps (the last
 * one overruns the end and must read zeroes).  goto opens IMAGE.NAME
 * read-only, checks it against the base image's identity now, makes its
 * sectors the layer below a fresh, empty overlay and keeps the file open
 * for the VM state.  goto has no Error ** in 7.2, so details go through
 * error_report(); a refused snapshot changes nothing.
 *
 * One monitor command calls these callbacks several times (loadvm: the
 * listing twice, then goto; savevm: the listing, delete, then create).
 * What must last until the command ends -- the validated listing, and
 * snapshots deleted but set aside -- is settled by a bottom half in QEMU's
 * iohandler context, which runs between commands and never in the nested
 * event loops of a savevm or loadvm (see "Until the command ends").
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/cutils.h"
#include "qemu/main-loop.h"
#include "block/aio.h"

#include "block-s2e.h"

/* Sectors copied per step when writing a snapshot. */
#define S2E_COPY_SECTORS 2048

/*
 * The s2e drives open in this process (opened and closed in the main
 * loop, like every snapshot callback).
 */
static GSList *s2e_open_drives;

/*
 * How many savevms started in this process: a snapshot deleted before the
 * count moved on was deleted by a savevm of that name (QEMU deletes the old
 * NAME first), see s2e_settle_set_aside().
 */
static uint64_t s2e_savevm_count;

/* ---- Until the command ends --------------------------------------------- */

/*
 * A snapshot deleted but kept under a hidden name until the command ends:
 * a savevm that deleted it to write a new NAME may still fail.
 */
typedef struct S2ESetAside {
    char *name;
    char *path;
    uint64_t savevm_count;      /* s2e_savevm_count when it was deleted */
} S2ESetAside;

static void s2e_set_aside_free(S2ESetAside *a)
{
    g_free(a->name);
    g_free(a->path);
    g_free(a);
}

/*
 * Put it back if a savevm began after its delete (and did not replace it,
 * or it would be gone from the list): that savevm failed.  Else the delete
 * was meant: finish it.
 */
static void s2e_settle_set_aside(BDRVS2EState *s, S2ESetAside *a)
{
    GError *gerr = NULL;

    if (a->savevm_count == s2e_savevm_count) {
        unlink(a->path);
    } else if (s2e_snapshot_restore_aside(a->path, s->image_path,
                                          s->snapshot_dir, a->name,
                                          &gerr) == 0) {
        info_report("s2e: the savevm that was to replace snapshot '%s' of "
                    "'%s' failed: the old one is kept", a->name,
                    s->image_path);
    } else {
        s2e_report_gerror(gerr);
    }
}

/* The new snapshot @name is in place: the one it replaces can go. */
static void s2e_drop_set_aside(BDRVS2EState *s, const char *name)
{
    for (GSList *l = s->set_aside; l; l = l->next) {
        S2ESetAside *a = l->data;

        if (!strcmp(a->name, name)) {
            unlink(a->path);
            s->set_aside = g_slist_delete_link(s->set_aside, l);
            s2e_set_aside_free(a);
            return;
        }
    }
}

static void s2e_forget_listing(BDRVS2EState *s)
{
    g_clear_pointer(&s->listing, g_ptr_array_unref);
}

static void s2e_command_end(void *opaque)
{
    BDRVS2EState *s = opaque;

    for (GSList *l = s->set_aside; l; l = l->next) {
        s2e_settle_set_aside(s, l->data);
    }
    g_slist_free_full(g_steal_pointer(&s->set_aside),
                      (GDestroyNotify)s2e_set_aside_free);
    s2e_forget_listing(s);
}

static void s2e_at_command_end(BDRVS2EState *s)
{
    qemu_bh_schedule(s->command_end_bh);
}

/* ---- Where snapshots live, and of what base ---------------------------- */

static bool s2e_base_is_local_file(BlockDriverState *file_bs)
{
    const char *proto = file_bs->drv ? file_bs->drv->protocol_name : NULL;
    return proto && !strcmp(proto, "file");
}

/*
 * The base image's identity for a snapshot: that of the file opened,
 * after checking it is unchanged and still the file its path names; the
 * size for a base that is not a local file.  -ESTALE or -EIO and *errp
 * saying why not.
 */
static int s2e_snapshot_base_identity(BlockDriverState *bs,
                                      S2EBaseIdentity *id, Error **errp)
{
    BDRVS2EState *s = bs->opaque;
    GError *gerr = NULL;

    if (s->base_error) {
        error_setg(errp, "%s", s->base_error);
        return -EIO;
    }
    if (s->base_file) {
        if (s2e_base_file_check(s->base_file, &gerr) < 0) {
            return s2e_error_from_gerror(errp, gerr);
        }
        *id = *s2e_base_file_identity(s->base_file);
        return 0;
    }
    memset(id, 0, sizeof(*id));
    id->size = s->length;
    id->has_mtime = false;
    return 0;
}

/*
 * Hold the local base image open for its identity (S2EBaseFile).  QEMU
 * opened it a moment ago by the same name.  Failing to is not fatal for
 * I/O: snapshots are refused with the reason.
 */
static void s2e_open_base_file(BDRVS2EState *s, const char *filename)
{
    GError *gerr = NULL;

    s->base_file = s2e_base_file_open(filename, &gerr);
    if (s->base_file) {
        s->image_path = g_strdup(s2e_base_file_path(s->base_file));
        return;
    }
    s->image_path = s2e_path_absolute(filename);
    s->base_error = g_strdup_printf("Snapshots of '%s' are not possible: %s",
                                    s->image_path, gerr->message);
    g_error_free(gerr);
}

/*
 * The file name snapshots of a base that is not a local file are named
 * after ("NAME" in SNAPSHOT-DIR/NAME.SNAPSHOT): stable across connections,
 * so it never depends on a socket path, a host or a port.
 *   NBD:    the export name's last component ("nbd+unix:///disk.raw.s2e?
 *           socket=..." -> "disk.raw.s2e"); "base" for the default export
 *   others: the last component of the URL's path, query dropped
 *           ("https://host/img/disk.raw.s2e" -> "disk.raw.s2e"), else "base"
 * g_free() the result.
 */
static char *s2e_remote_base_name(BlockDriverState *file_bs)
{
    const char *proto = file_bs->drv ? file_bs->drv->format_name : NULL;
    g_autofree char *path = NULL;
    char *name;

    if (proto && !strcmp(proto, "nbd")) {
        const char *export = file_bs->options
            ? qdict_get_try_str(file_bs->options, "export") : NULL;
        path = g_strdup(export ? export : "");
    } else if (file_bs->exact_filename[0] &&
               !g_str_has_prefix(file_bs->exact_filename, "json:")) {
        const char *p = strstr(file_bs->exact_filename, "://");

        path = g_strdup(p ? p + 3 : file_bs->exact_filename);
        path[strcspn(path, "?#")] = '\0';
        if (p && !strchr(path, '/')) {
            path[0] = '\0';    /* "proto://host" only: no path */
        }
    } else {
        path = g_strdup("");
    }
    name = g_path_get_basename(path);
    if (!*path || !*name || !strcmp(name, ".") || !strcmp(name, "..") ||
        !strcmp(name, "/")) {
        g_free(name);
        name = g_strdup("base");
    }
    return name;
}

/*
 * Decide where snapshot files live: the snapshot-dir option, else the
 * directory of a local base image.  A base that is not a local file needs
 * snapshot-dir; its snapshots are SNAPSHOT-DIR/NAME.SNAPSHOT with NAME
 * from s2e_remote_base_name().
 */
static void GRAPH_RDLOCK s2e_setup_snapshot_location(BlockDriverState *bs,
                                                    const char *snapshot_dir)
{
    BDRVS2EState *s = bs->opaque;
    BlockDriverState *file_bs = bs->file->bs;
    bool local = s2e_base_is_local_file(file_bs);

    if (local) {
        s2e_open_base_file(s, file_bs->filename);
    } else if (snapshot_dir) {
        bdrv_refresh_filename(file_bs);
        s->image_path = s2e_remote_base_name(file_bs);
    } else {
        /* No snapshots; the name only appears in the message saying so. */
        bdrv_refresh_filename(file_bs);
        s->image_path = g_strdup(file_bs->filename);
    }

    if (snapshot_dir) {
        s->snapshot_dir = s2e_path_absolute(snapshot_dir);
    } else if (local) {
        s->snapshot_dir = g_path_get_dirname(s->image_path);
    } else {
        /* Snapshots of a remote base need snapshot-dir; I/O still works. */
        s->snapshot_dir = NULL;
    }
}

/* ---- Errors of the snapshot module ------------------------------------- */

int s2e_error_from_gerror(Error **errp, GError *gerr)
{
    int ret = s2e_snapshot_error_errno(gerr);

    error_setg(errp, "%s", gerr->message);
    g_error_free(gerr);
    return ret;
}

int s2e_report_gerror(GError *gerr)
{
    Error *err = NULL;
    int ret = s2e_error_from_gerror(&err, gerr);

    error_prepend(&err, "s2e: ");
    error_report_err(err);
    return ret;
}

static bool s2e_require_snapshot_dir(BDRVS2EState *s, Error **errp)
{
    if (!s->snapshot_dir) {
        error_setg(errp, "The base image '%s' is not a local file: give the "
                   "s2e drive a snapshot-dir option for its snapshots",
                   s->image_path);
        return false;
    }
    return true;
}

/*
 * Whether drives @a and @b keep their snapshots in the same files: the
 * same image name in the same snapshot directory (two drives on one image,
 * or images named alike sharing a snapshot-dir).
 */
static bool s2e_same_snapshot_files(BDRVS2EState *a, BDRVS2EState *b)
{
    g_autofree char *name_a = g_path_get_basename(a->image_path);
    g_autofree char *name_b = g_path_get_basename(b->image_path);
    struct stat dir_a, dir_b;

    return a->snapshot_dir && b->snapshot_dir && !strcmp(name_a, name_b) &&
           stat(a->snapshot_dir, &dir_a) == 0 &&
           stat(b->snapshot_dir, &dir_b) == 0 &&
           dir_a.st_dev == dir_b.st_dev && dir_a.st_ino == dir_b.st_ino;
}

/*
 * Two drives sharing snapshot files would overwrite each other's IMAGE.NAME
 * (the second drive's disk-only file replacing the one with the VM state)
 * or load one drive's sectors into the other.  No file name can be made
 * distinct and still be found again by the same command line (drive ids
 * and node names are optional), so savevm and loadvm are refused, on the
 * first s2e callback of the command, before any file is written.
 */
static bool GRAPH_RDLOCK s2e_check_no_shared_files(Error **errp)
{
    for (GSList *a = s2e_open_drives; a; a = a->next) {
        for (GSList *b = a->next; b; b = b->next) {
            BlockDriverState *bs_a = a->data, *bs_b = b->data;
            BDRVS2EState *s = bs_a->opaque;

            if (s2e_same_snapshot_files(s, bs_b->opaque)) {
                g_autofree char *name = g_path_get_basename(s->image_path);
                error_setg(errp, "s2e drives '%s' and '%s' would both keep "
                           "their snapshots in '%s/%s.NAME': give one of "
                           "them its own snapshot-dir option (savevm and "
                           "loadvm are refused until then)",
                           bdrv_get_device_or_node_name(bs_b),
                           bdrv_get_device_or_node_name(bs_a),
                           s->snapshot_dir, name);
                return false;
            }
        }
    }
    return true;
}

static int GRAPH_RDLOCK s2e_start_writer(BlockDriverState *bs, Error **errp)
{
    BDRVS2EState *s = bs->opaque;
    S2EBaseIdentity id;
    GError *gerr = NULL;
    int ret;

    s2e_savevm_count++;

    if (!s2e_require_snapshot_dir(s, errp)) {
        return -EINVAL;
    }
    if (!s2e_engine_allows_snapshots(&s->engine, s->image_path, "savevm",
                                     errp)) {
        return -ENOTSUP;
    }
    if (!s2e_check_no_shared_files(errp)) {
        return -EEXIST;
    }
    ret = s2e_snapshot_base_identity(bs, &id, errp);
    if (ret < 0) {
        return ret;
    }
    s->pending = s2e_snapshot_writer_new(s->snapshot_dir, &id, s->nb_sectors,
                                         &gerr);
    if (!s->pending) {
        return s2e_error_from_gerror(errp, gerr);
    }
    s->pending_vmstate_bytes = 0;
    return 0;
}

static void s2e_abort_writer(BDRVS2EState *s)
{
    s2e_snapshot_writer_abort(s->pending);
    s->pending = NULL;
    s->pending_vmstate_bytes = 0;
}

/*
 * A failure while the VM state streams in is held, not reported: QEMU's VM
 * state callbacks run in a coroutine with no Error ** and no monitor, so
 * error_report() there goes to stderr (/dev/null after -daemonize) and the
 * monitor only sees "Input/output error".  The rest of the VM state is
 * ignored, and s2e_snapshot_create_cb(), which runs in the monitor's
 * context, reports the reason and fails the savevm.  Nothing is written
 * in the meantime: the writer is gone (or was never created).
 */
static void s2e_hold_save_error(BDRVS2EState *s, Error *err)
{
    s2e_abort_writer(s);
    if (!s->save_error) {
        s->save_error = err;
    } else {
        error_free(err);
    }
}

static void s2e_clear_save_error(BDRVS2EState *s)
{
    g_clear_pointer(&s->save_error, error_free);
}

int coroutine_fn GRAPH_RDLOCK
s2e_co_save_vmstate(BlockDriverState *bs, QEMUIOVector *qiov, int64_t pos)
{
    BDRVS2EState *s = bs->opaque;
    Error *err = NULL;
    GError *gerr = NULL;

    if (pos == 0) {
        /* A new savevm: forget what an earlier one left. */
        s2e_abort_writer(s);
        s2e_clear_save_error(s);
        if (s2e_start_writer(bs, &err) < 0) {
            s2e_hold_save_error(s, err);
        }
    } else if (!s->pending && !s->save_error) {
        error_setg(&err, "VM state written at %" PRId64 " without a start",
                   pos);
        s2e_hold_save_error(s, err);
    }
    if (s->save_error) {
        return 0;
    }

    /*
     * Each element goes straight to the writer, which buffers a chunk
     * anyway: no bounce copy of the whole request.
     */
    for (int i = 0; i < qiov->niov; i++) {
        if (s2e_snapshot_writer_put_vmstate(s->pending, pos,
                                            qiov->iov[i].iov_base,
                                            qiov->iov[i].iov_len,
                                            &gerr) < 0) {
            s2e_error_from_gerror(&err, gerr);
            s2e_hold_save_error(s, err);
            return 0;
        }
        pos += qiov->iov[i].iov_len;
    }
    s->pending_vmstate_bytes = pos;
    return 0;
}

int coroutine_fn s2e_co_load_vmstate(BlockDriverState *bs, QEMUIOVector *qiov,
                                     int64_t pos)
{
    BDRVS2EState *s = bs->opaque;
    S2ESnapshot *layer = s2e_cur_layer(s);
    GError *gerr = NULL;
    int ret;

    if (!layer) {
        error_report("s2e: no snapshot is loaded on '%s' to read VM state from",
                     s->image_path);
        return -EINVAL;
    }
    if (pos < 0) {
        return -EINVAL;
    }
    /* Straight into each element: the reader has its own chunk cache. */
    for (int i = 0; i < qiov->niov; i++) {
        ret = s2e_snapshot_read_vmstate(layer, pos, qiov->iov[i].iov_base,
                                        qiov->iov[i].iov_len, &gerr);
        if (ret < 0) {
            s2e_report_gerror(gerr);
            return ret;
        }
        pos += qiov->iov[i].iov_len;
    }
    return 0;
}

/* The view being saved: the current path's overlay and layer. */
typedef struct S2ESaveView {
    S2EOverlay *overlay;
    S2ESnapshot *layer;
    S2ESnapshotWriter *writer;
    uint64_t nb_sectors;
} S2ESaveView;

/* Where the sectors of a run come from when saving. */
typedef enum S2ESaveSource {
    S2E_SAVE_OVERLAY_DATA,
    S2E_SAVE_LAYER_DATA,
} S2ESaveSource;

/* Copy @count stored sectors starting at @sector into the writer. */
static int s2e_save_data(S2ESaveView *v, S2ESaveSource from, uint64_t sector,
                         uint64_t count, uint8_t *buf, GError **gerr)
{
    while (count > 0) {
        uint64_t n = MIN(count, S2E_COPY_SECTORS);
        int ret;

        if (from == S2E_SAVE_OVERLAY_DATA) {
            ret = s2e_overlay_read(v->overlay, sector, n, buf);
            if (ret < 0) {
                g_set_error(gerr, S2E_SNAPSHOT_ERROR, S2E_SNAPSHOT_ERROR_IO,
                            "cannot read the overlay: %s", g_strerror(-ret));
                return ret;
            }
        } else {
            ret = s2e_snapshot_read_sectors(v->layer, sector, n, buf, gerr);
            if (ret < 0) {
                return ret;
            }
        }
        ret = s2e_snapshot_writer_add_sectors(v->writer, sector, n, buf, gerr);
        if (ret < 0) {
            return ret;
        }
        sector += n;
        count -= n;
    }
    return 0;
}

/*
 * A run absent from the overlay: save what the snapshot layer holds,
 * keeping its zero extents as zero extents.
 */
static int s2e_save_layer_runs(S2ESaveView *v, uint64_t sector,
                               uint64_t count, uint8_t *buf, GError **gerr)
{
    while (count > 0) {
        uint64_t n = count;
        S2EExtentKind kind = S2E_EXTENT_ABSENT;
        int ret = 0;

        if (v->layer) {
            kind = s2e_snapshot_extent_kind(v->layer, sector, count, &n);
        }
        if (kind == S2E_EXTENT_DATA) {
            ret = s2e_save_data(v, S2E_SAVE_LAYER_DATA, sector, n, buf, gerr);
        } else if (kind == S2E_EXTENT_ZERO) {
            ret = s2e_snapshot_writer_add_zero_sectors(v->writer, sector, n,
                                                       gerr);
        }
        if (ret < 0) {
            return ret;
        }
        sector += n;
        count -= n;
    }
    return 0;
}

/*
 * The disk as this path sees it, minus the base: layer merged with overlay,
 * in ascending sector order as the writer requires.
 */
static int s2e_save_dirty_sectors(S2ESaveView *v, GError **gerr)
{
    g_autofree uint8_t *buf = g_try_malloc(S2E_COPY_SECTORS * S2E_SECTOR_SIZE);
    uint64_t sector = 0;

    if (!buf) {
        g_set_error(gerr, S2E_SNAPSHOT_ERROR, S2E_SNAPSHOT_ERROR_IO,
                    "out of memory while saving disk sectors");
        return -ENOMEM;
    }
    while (sector < v->nb_sectors) {
        S2EExtentKind kind;
        uint64_t n;
        int ret = s2e_overlay_extent(v->overlay, sector,
                                     v->nb_sectors - sector, &kind, &n);
        if (ret < 0) {
            g_set_error(gerr, S2E_SNAPSHOT_ERROR, S2E_SNAPSHOT_ERROR_IO,
                        "cannot walk the overlay: %s", g_strerror(-ret));
            return ret;
        }
        if (kind == S2E_EXTENT_ABSENT) {
            ret = s2e_save_layer_runs(v, sector, n, buf, gerr);
        } else if (kind == S2E_EXTENT_ZERO) {
            /* O(1) in the file whatever the range: no data stored. */
            ret = s2e_snapshot_writer_add_zero_sectors(v->writer, sector, n,
                                                       gerr);
        } else {
            ret = s2e_save_data(v, S2E_SAVE_OVERLAY_DATA, sector, n, buf,
                                gerr);
        }
        if (ret < 0) {
            return ret;
        }
        sector += n;
    }
    return 0;
}

static void s2e_info_from_qemu(S2ESnapshotInfo *info,
                               const QEMUSnapshotInfo *sn)
{
    memset(info, 0, sizeof(*info));
    pstrcpy(info->name, sizeof(info->name), sn->name);
    pstrcpy(info->id, sizeof(info->id), sn->name);
    info->date_sec = sn->date_sec;
    info->date_nsec = sn->date_nsec;
    info->vm_clock_nsec = sn->vm_clock_nsec;
    info->icount = sn->icount;
}

/*
 * Add the current path's dirty sectors to the pending writer and commit
 * it as @path.  The writer is gone afterwards, whatever happened.
 */
static int s2e_commit_pending(BDRVS2EState *s, const char *path,
                              const QEMUSnapshotInfo *sn_info, GError **gerr)
{
    S2ESaveView view = {
        .overlay = s2e_cur_overlay(s),
        .layer = s2e_cur_layer(s),
        .writer = s->pending,
        .nb_sectors = s->nb_sectors,
    };
    S2ESnapshotInfo info;
    int ret = s2e_save_dirty_sectors(&view, gerr);

    if (ret < 0) {
        s2e_abort_writer(s);
        return ret;
    }
    s2e_info_from_qemu(&info, sn_info);
    ret = s2e_snapshot_writer_commit(s->pending, path, &info, gerr);
    s->pending = NULL;
    s->pending_vmstate_bytes = 0;
    return ret;
}

int GRAPH_RDLOCK s2e_snapshot_create_cb(BlockDriverState *bs,
                                        QEMUSnapshotInfo *sn_info)
{
    BDRVS2EState *s = bs->opaque;
    g_autofree char *path = NULL;
    Error *err = NULL;
    GError *gerr = NULL;
    int ret;

    if (s->save_error) {
        /* The VM state could not be saved: now the monitor can hear why. */
        error_report("s2e: savevm of '%s' failed: %s", s->image_path,
                     error_get_pretty(s->save_error));
        s2e_clear_save_error(s);
        return -EIO;
    }
    if (!sn_info->name[0]) {
        error_report("s2e: a snapshot of an s2e image needs a name");
        return -EINVAL;
    }
    if (!s2e_require_snapshot_dir(s, &err)) {
        error_report_err(err);
        return -EINVAL;
    }
    path = s2e_snapshot_path(s->image_path, s->snapshot_dir, sn_info->name,
                             &gerr);
    if (!path) {
        s2e_abort_writer(s);
        return s2e_report_gerror(gerr);
    }
    if (!s->pending) {
        /* This drive holds no VM state: a disk-only file. */
        ret = s2e_start_writer(bs, &err);
        if (ret < 0) {
            error_report_err(err);
            return ret;
        }
    } else if (s->pending_vmstate_bytes != sn_info->vm_state_size) {
        error_report("s2e: VM state of %" PRIu64 " bytes was announced, %"
                     PRIu64 " were written", sn_info->vm_state_size,
                     s->pending_vmstate_bytes);
        s2e_abort_writer(s);
        return -EIO;
    }
    ret = s2e_commit_pending(s, path, sn_info, &gerr);
    if (ret < 0) {
        s2e_report_gerror(gerr);
        return ret;
    }
    s2e_drop_set_aside(s, sn_info->name);
    s2e_forget_listing(s);
    pstrcpy(sn_info->id_str, sizeof(sn_info->id_str), sn_info->name);
    return 0;
}

/*
 * QEMU replaces the disk view (goto) before it reads the VM state, and a
 * VM state that fails then leaves the VM half loaded with the current
 * path's writes gone.  So the stored VM state's checksums are checked
 * first, while a refusal still changes nothing: one more read of the
 * state, from the page cache when loadvm then reads it again.
 */
static int s2e_check_vmstate(S2ESnapshot *snap)
{
    GError *gerr = NULL;
    int ret = s2e_snapshot_verify_vmstate(snap, &gerr);

    if (ret < 0) {
        s2e_report_gerror(gerr);
    }
    return ret;
}

/*
 * Version 1 files have no block checksums: say that their disk data is
 * not checked when read.
 */
static void s2e_warn_if_unverified(const S2ESnapshot *snap)
{
    S2ESnapshotLayout l;

    s2e_snapshot_get_layout(snap, &l);
    if (!l.block_checksums) {
        warn_report("s2e: snapshot file '%s' has format version %u, without "
                    "block checksums: its disk data is loaded unverified "
                    "('s2e-snapshot verify' checks it; a savevm writes the "
                    "current version)", s2e_snapshot_get_path(snap),
                    l.version);
    }
}

/*
 * goto runs without the block graph lock (8.0+), which the names of the
 * drives in the check's message need.
 */
static bool GRAPH_UNLOCKED s2e_check_no_shared_files_unlocked(Error **errp)
{
    bool ok;

    bdrv_graph_rdlock_main_loop();
    ok = s2e_check_no_shared_files(errp);
    bdrv_graph_rdunlock_main_loop();
    return ok;
}

/*
 * Whether this drive may load a snapshot now, and the identity of the
 * base to check it against: -errno and *errp saying why not.
 */
static int GRAPH_UNLOCKED s2e_goto_allowed(BlockDriverState *bs,
                                           S2EBaseIdentity *id, Error **errp)
{
    BDRVS2EState *s = bs->opaque;

    if (!s2e_require_snapshot_dir(s, errp)) {
        return -EINVAL;
    }
    if (!s2e_engine_allows_snapshots(&s->engine, s->image_path, "loadvm",
                                     errp)) {
        return -ENOTSUP;
    }
    if (!s2e_check_no_shared_files_unlocked(errp)) {
        return -EEXIST;
    }
    return s2e_snapshot_base_identity(bs, id, errp);
}

/*
 * Open snapshot @name of this drive into *psnap, checked against the base
 * as it is now.  -errno (a missing file is -ENOENT, as in qcow2) with the
 * reason reported.
 */
static int GRAPH_UNLOCKED s2e_open_for_goto(BlockDriverState *bs,
                                            const char *name,
                                            S2ESnapshot **psnap)
{
    BDRVS2EState *s = bs->opaque;
    g_autofree char *path = NULL;
    S2EBaseIdentity id;
    S2ESnapshot *snap;
    Error *err = NULL;
    GError *gerr = NULL;
    int ret = s2e_goto_allowed(bs, &id, &err);

    if (ret < 0) {
        error_report_err(err);
        return ret;
    }
    path = s2e_snapshot_path(s->image_path, s->snapshot_dir, name, &gerr);
    snap = path ? s2e_snapshot_open(path, s->image_path, &id, &gerr) : NULL;
    if (!snap) {
        return s2e_report_gerror(gerr);
    }
    if (s2e_snapshot_get_info(snap)->disk_sectors != s->nb_sectors) {
        error_report("s2e: snapshot '%s' was taken of a disk of %" PRIu64
                     " sectors, but '%s' has %" PRIu64 " sectors",
                     path, s2e_snapshot_get_info(snap)->disk_sectors,
                     s->image_path, s->nb_sectors);
        s2e_snapshot_close(snap);
        return -EINVAL;
    }
    ret = s2e_check_vmstate(snap);
    if (ret < 0) {
        s2e_snapshot_close(snap);
        return ret;
    }
    s2e_warn_if_unverified(snap);
    *psnap = snap;
    return 0;
}

/*
 * loadvm, QMP snapshot-load and -loadvm all go to a snapshot with every
 * drive drained; `qemu-img snapshot -a` calls goto alone.  There the
 * snapshot would only be loaded into a view that vanishes when qemu-img
 * exits: an s2e image is never written, so it has nothing to revert.
 */
static bool s2e_goto_applies_nothing(BlockDriverState *bs, const char *name)
{
    BDRVS2EState *s = bs->opaque;

    if (bs->quiesce_counter > 0) {
        return false;
    }
    error_report("s2e: snapshot '%s' of '%s' would load, but there is "
                 "nothing to apply it to: an s2e image is never written; "
                 "resume the snapshot with loadvm or -loadvm", name,
                 s->image_path);
    return true;
}

int s2e_snapshot_goto_cb(BlockDriverState *bs, const char *snapshot_id)
{
    BDRVS2EState *s = bs->opaque;
    S2ESnapshot *snap = NULL;
    S2EOverlay *fresh;
    S2ELayer *layer;
    int ret = s2e_open_for_goto(bs, snapshot_id, &snap);

    if (ret < 0) {
        return ret;
    }
    if (s2e_goto_applies_nothing(bs, snapshot_id)) {
        s2e_snapshot_close(snap);
        return -ENOTSUP;
    }
    fresh = s2e_path_drive_new_overlay(s->pdrive);
    layer = fresh ? s2e_layer_new(snap) : NULL;
    if (!layer) {
        error_report("s2e: out of memory for a new overlay");
        s2e_overlay_free(fresh);
        s2e_snapshot_close(snap);
        return -ENOMEM;
    }
    /* The current path only: other paths keep their views. */
    ret = s2e_path_drive_replace_view(s->pdrive, fresh, layer);
    if (ret < 0) {
        error_report("s2e: cannot replace the current path's view: %s",
                     strerror(-ret));
        s2e_overlay_free(fresh);
        s2e_layer_ops.unref(layer);
        return ret;
    }
    return 0;
}

/* The file is set aside until the command ends (s2e_command_end()). */
int s2e_snapshot_delete_cb(BlockDriverState *bs, const char *snapshot_id,
                           const char *name, Error **errp)
{
    BDRVS2EState *s = bs->opaque;
    S2ESetAside *a;
    GError *gerr = NULL;
    int ret;

    if (!s2e_require_snapshot_dir(s, errp)) {
        return -EINVAL;
    }
    /* Our ids are the names. */
    a = g_new0(S2ESetAside, 1);
    a->name = g_strdup(name ? name : snapshot_id);
    a->savevm_count = s2e_savevm_count;
    ret = s2e_snapshot_set_aside(s->image_path, s->snapshot_dir, a->name,
                                 &a->path, &gerr);
    if (ret < 0) {
        s2e_error_from_gerror(errp, gerr);
        s2e_set_aside_free(a);
        return ret;
    }
    s->set_aside = g_slist_prepend(s->set_aside, a);
    s2e_forget_listing(s);
    s2e_at_command_end(s);
    return 0;
}

/*
 * A snapshot's name is its file's name (IMAGE.NAME), not the one recorded
 * inside: a copied or renamed file is listed, loaded and deleted under the
 * name it has, as s2e-snapshot list shows it.
 */
static void s2e_info_to_qemu(QEMUSnapshotInfo *sn, const S2ESnapshotEntry *e)
{
    const S2ESnapshotInfo *info = &e->info;

    memset(sn, 0, sizeof(*sn));
    pstrcpy(sn->id_str, sizeof(sn->id_str), e->name);
    pstrcpy(sn->name, sizeof(sn->name), e->name);
    sn->vm_state_size = info->vm_state_size;
    sn->date_sec = info->date_sec;
    sn->date_nsec = info->date_nsec;
    sn->vm_clock_nsec = info->vm_clock_nsec;
    sn->icount = info->icount;
}

/*
 * The snapshot files, validated (and invalid ones warned about) once per
 * command: QEMU lists two or three times per savevm, loadvm or `info
 * snapshots`, and each listing opens every file and reads its indexes.
 */
static int s2e_listing(BDRVS2EState *s, GPtrArray **entries)
{
    GError *gerr = NULL;

    if (s->listing) {
        *entries = s->listing;
        return 0;
    }
    s->listing = s2e_snapshot_list(s->image_path, s->snapshot_dir, &gerr);
    if (!s->listing) {
        return s2e_report_gerror(gerr);
    }
    for (guint i = 0; i < s->listing->len; i++) {
        const S2ESnapshotEntry *e = g_ptr_array_index(s->listing, i);

        if (!e->valid) {
            warn_report("s2e: ignoring snapshot file %s: %s", e->path,
                        e->problem ? e->problem : "invalid");
        }
    }
    s2e_at_command_end(s);
    *entries = s->listing;
    return 0;
}

int s2e_snapshot_list_cb(BlockDriverState *bs, QEMUSnapshotInfo **psn_info)
{
    BDRVS2EState *s = bs->opaque;
    GPtrArray *entries = NULL;
    QEMUSnapshotInfo *sn;
    int n = 0, ret;

    *psn_info = NULL;
    if (!s->snapshot_dir) {
        return 0;
    }
    ret = s2e_listing(s, &entries);
    if (ret < 0) {
        return ret;
    }
    sn = g_new0(QEMUSnapshotInfo, entries->len ? entries->len : 1);
    for (guint i = 0; i < entries->len; i++) {
        const S2ESnapshotEntry *e = g_ptr_array_index(entries, i);

        if (e->valid) {
            s2e_info_to_qemu(&sn[n++], e);
        }
    }
    *psn_info = sn;
    return n;
}

void GRAPH_RDLOCK s2e_snapshot_glue_open(BlockDriverState *bs,
                                         const char *snapshot_dir)
{
    BDRVS2EState *s = bs->opaque;

    s2e_setup_snapshot_location(bs, snapshot_dir);

    s->command_end_bh = aio_bh_new(iohandler_get_aio_context(),
                                   s2e_command_end, s);
    s2e_open_drives = g_slist_prepend(s2e_open_drives, bs);
}

/*
 * A program without a main loop (qemu-img) closes the image right after
 * its one command: that ends the command too.
 */
void s2e_snapshot_glue_close(BlockDriverState *bs)
{
    BDRVS2EState *s = bs->opaque;

    s2e_open_drives = g_slist_remove(s2e_open_drives, bs);
    s2e_abort_writer(s);
    s2e_clear_save_error(s);
    if (s->command_end_bh) {
        qemu_bh_delete(s->command_end_bh);
        s->command_end_bh = NULL;
        s2e_command_end(s);
    }
    s2e_base_file_close(s->base_file);
    g_free(s->base_error);
    g_free(s->image_path);
    g_free(s->snapshot_dir);
}

/*
 * Layers are shared by the paths forked after a loadvm; all of that runs
 * in the main loop with the path set's mutex held, a plain count does.
 */
S2ELayer *s2e_layer_new(S2ESnapshot *snap)
{
    S2ELayer *layer = g_try_new0(S2ELayer, 1);

    if (layer) {
        layer->refcnt = 1;
        layer->snap = snap;
    }
    return layer;
}

static void s2e_layer_ref(void *opaque)
{
    S2ELayer *layer = opaque;
    layer->refcnt++;
}

static void s2e_layer_unref(void *opaque)
{
    S2ELayer *layer = opaque;

    if (--layer->refcnt == 0) {
        s2e_snapshot_close(layer->snap);
        g_free(layer);
    }
}

const S2EPathLayerOps s2e_layer_ops = {
    .ref = s2e_layer_ref,
    .unref = s2e_layer_unref,
};
