/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private interface between the files of the s2e QEMU driver glue.
 *
 * The glue is thin: it translates QEMU's BlockDriver callbacks into calls of
 * the QEMU-free core (overlay store, snapshot files).  block-s2e.c holds the
 * driver table, options, open/close and the I/O path; block-s2e-snapshot.c
 * where snapshot files live and the savevm/loadvm callbacks;
 * block-s2e-engine.c S2E's KVM_DISK_RW contract; block-s2e-qom.c the
 * monitor's path object; block-s2e-serial.c -enable-serial-commands;
 * plugin-init.c the registration and the ABI guard.
 */
#ifndef S2E_BLOCK_GLUE_H
#define S2E_BLOCK_GLUE_H

#include "block/block.h"
#include "block/block_int.h"
#include "block/snapshot.h"

#include "s2e-qemu-compat.h"

#include "s2e-block/overlay.h"
#include "s2e-block/paths.h"
#include "s2e-block/snapshot.h"

/* S2E's engine, when the host process provides KVM_DISK_RW. */
typedef int S2EDiskRwFn(void *buffer, uint64_t sector, int count,
                        int is_write);
typedef struct S2EEngine {
    S2EDiskRwFn *disk_rw;    /* NULL: no engine, the driver keeps paths */
    /*
     * The engine was handed writes of this drive: it holds disk state the
     * driver cannot read back or roll back (savevm/loadvm refuse).
     */
    bool holds_writes;
} S2EEngine;

/*
 * A loaded snapshot as the layer below a path's overlay.  Paths forked
 * after a loadvm share it, so it is reference counted; the file is closed
 * when the last path holding it lets go.
 */
typedef struct S2ELayer {
    int refcnt;
    S2ESnapshot *snap;
} S2ELayer;

typedef struct BDRVS2EState {
    /*
     * This drive in the process's path set: the current path's overlay
     * and layer (an S2ELayer, or NULL) are s2e_path_drive_overlay/layer.
     */
    S2EPathDrive *pdrive;
    /* The snapshot a savevm is streaming VM state into; NULL when idle. */
    S2ESnapshotWriter *pending;
    uint64_t pending_vmstate_bytes;
    /*
     * Why the VM state of the savevm in progress could not be saved;
     * reported by snapshot_create (block-s2e-snapshot.c).
     */
    Error *save_error;
    /*
     * What lasts until the monitor command ends (block-s2e-snapshot.c):
     * the validated listing, and deleted snapshots set aside.
     */
    QEMUBH *command_end_bh;
    GPtrArray *listing;
    GSList *set_aside;

    int64_t length;          /* bytes, fixed at open */
    uint64_t nb_sectors;     /* length rounded up to whole sectors */

    /*
     * Where snapshot files live and what they are named after, made
     * absolute at open (QEMU may chdir("/") later, e.g. -daemonize).
     */
    char *image_path;        /* the base image as a local path */
    char *snapshot_dir;      /* the directory holding IMAGE.NAME files */
    /*
     * A local base as opened: its identity for snapshots, and how to tell
     * it changed since.  NULL for a base that is not a local file (its
     * identity is its size), or when it could not be opened (then
     * base_error says why snapshots are refused).
     */
    S2EBaseFile *base_file;
    char *base_error;

    S2EEngine engine;
} BDRVS2EState;

extern BlockDriver bdrv_s2e;

/* block-s2e-snapshot.c */
int coroutine_fn GRAPH_RDLOCK
s2e_co_save_vmstate(BlockDriverState *bs, QEMUIOVector *qiov, int64_t pos);
int coroutine_fn s2e_co_load_vmstate(BlockDriverState *bs, QEMUIOVector *qiov,
                                     int64_t pos);
int GRAPH_RDLOCK s2e_snapshot_create_cb(BlockDriverState *bs,
                                        QEMUSnapshotInfo *sn_info);
int s2e_snapshot_goto_cb(BlockDriverState *bs, const char *snapshot_id);
int s2e_snapshot_delete_cb(BlockDriverState *bs, const char *snapshot_id,
                           const char *name, Error **errp);
int s2e_snapshot_list_cb(BlockDriverState *bs, QEMUSnapshotInfo **psn_info);
/*
 * A drive opened / closing.  Opening decides where its snapshots live
 * (@snapshot_dir, else beside a local base) and holds a local base open
 * for its identity; the snapshot glue keeps the open drives to refuse
 * snapshots two of them would keep in one file.
 */
void GRAPH_RDLOCK s2e_snapshot_glue_open(BlockDriverState *bs,
                                         const char *snapshot_dir);
void s2e_snapshot_glue_close(BlockDriverState *bs);

/* The current path's view of a drive.  A request fetches it once. */
static inline S2EOverlay *s2e_cur_overlay(BDRVS2EState *s)
{
    return s2e_path_drive_overlay(s->pdrive);
}

static inline S2ESnapshot *s2e_cur_layer(BDRVS2EState *s)
{
    S2ELayer *layer = s2e_path_drive_layer(s->pdrive);
    return layer ? layer->snap : NULL;
}

/*
 * block-s2e-snapshot.c: the one bridge from the snapshot module's GError
 * to QEMU.  The message goes into *errp, or is reported ("s2e: ...") by a
 * callback QEMU gives no Error **; @gerr is freed.  Both return the errno
 * snapshot.h documents for the error's code.  Where the failed call
 * returned an int, return that instead: it also carries an I/O error's
 * own errno.
 */
int s2e_error_from_gerror(Error **errp, GError *gerr);
int s2e_report_gerror(GError *gerr);

/* block-s2e-snapshot.c: a layer holding one reference to @snap. */
S2ELayer *s2e_layer_new(S2ESnapshot *snap);
extern const S2EPathLayerOps s2e_layer_ops;

/* block-s2e-qom.c: the monitor's /objects/s2e-paths object. */
void s2e_paths_object_ensure(void);
void s2e_paths_qom_register(void);

/* block-s2e-engine.c: S2E's KVM_DISK_RW contract. */
void s2e_engine_detect(S2EEngine *engine);
/*
 * Whether savevm/loadvm can keep their promise on this drive; false, with
 * *errp saying why, when the engine holds some of its writes.
 */
bool s2e_engine_allows_snapshots(const S2EEngine *engine,
                                 const char *image, const char *what,
                                 Error **errp);
/*
 * Let the engine replace the sectors it holds in @qiov, which the caller
 * filled from the layers below; or hand it a write (@qiov NULL: zeroes).
 * 0 or -errno.
 */
int s2e_engine_readv(const S2EEngine *engine, uint64_t sector,
                     uint64_t count, QEMUIOVector *qiov);
int s2e_engine_writev(S2EEngine *engine, uint64_t sector, uint64_t count,
                      QEMUIOVector *qiov);

/* block-s2e-serial.c: -enable-serial-commands, from the constructor. */
void s2e_serial_commands_plugin_init(void);

/* plugin-init.c: compare struct fields with QEMU's own accessors. */
bool GRAPH_RDLOCK s2e_abi_check(BlockDriverState *bs, Error **errp);

#endif
