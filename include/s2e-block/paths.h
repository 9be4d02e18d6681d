/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * s2e-block execution paths: one disk view per path for every s2e drive.
 *
 * S2E forks a whole virtual machine into execution paths.  A *path* is one
 * execution path's view of every s2e drive of the process: per drive, an
 * overlay (S2EOverlay, the path's own writes) and an opaque "layer" (what
 * lies below the overlay: the QEMU glue stores its loaded snapshot there;
 * NULL means "nothing but the base image").  Forking a path forks every
 * drive's overlay with s2e_overlay_fork(), O(1) per drive whatever the
 * overlays hold; the child shares the parent's layers.  Writes in one path
 * are never visible in another.
 *
 *   S2EPathSet ---- drives:  d0 (2 GiB)      d1 (10 MiB)
 *       |
 *       +-- path 0:          overlay, layer  overlay, layer
 *       +-- path 1 (current) overlay, layer  overlay, layer  <- guest I/O
 *       +-- path 4:          overlay, layer  overlay, layer
 *
 * Two audiences:
 *
 * - The QEMU glue registers each s2e drive when it opens
 *   (s2e_pathset_register_drive) and unregisters it when it closes; its
 *   I/O callbacks ask for the current path's overlay and layer of their
 *   drive (s2e_path_drive_overlay / s2e_path_drive_layer: one atomic load
 *   each); loadvm replaces the current path's view of the drive
 *   (s2e_path_drive_replace_view); savevm saves the current path's view.
 * - An execution engine (or the monitor's /objects/s2e-paths object) forks,
 *   switches, frees and inspects paths.  The s2e_path_* functions act on the
 *   process-wide set s2e_paths_default(), which the QEMU plugin uses; each
 *   has an s2e_pathset_* twin taking an explicit S2EPathSet, so tests and
 *   programs embedding several sets need no global state.
 *
 * DEFINED BEHAVIOUR
 *
 * - Path ids: a new set holds one path, id 0, which is current.  Each fork
 *   takes the next unused integer (1, 2, 3 ...); ids are never reused, not
 *   even after the path is freed, and never exceed S2E_PATH_ID_MAX.
 * - A drive registered while several paths exist gets an empty overlay and
 *   no layer in every path: it shows its base image in every path.
 * - A drive unregistered while several paths exist disappears from all of
 *   them: its overlays are freed and its layer references dropped.  Paths
 *   themselves live on, and a set may have no drives at all.
 * - loadvm replaces the view of the *current path only*: the glue builds
 *   the new view (fresh overlay, the loaded snapshot as layer) and hands it
 *   to s2e_path_drive_replace_view().  Other paths keep their overlays and
 *   their layers (each path holds its own reference on the snapshot it
 *   was forked with), so an engine may loadvm in one path and keep others.
 * - savevm captures the current path's view: the glue reads the overlay and
 *   layer of the current path.
 * - The current path cannot be freed (-EBUSY): switch away first.
 *
 * HANDLES AND ERRORS
 *
 * S2EPath and S2EPathDrive pointers are handles owned by the set.  A path
 * handle stays valid until the path is freed, a drive handle until the
 * drive is unregistered.  Functions taking a path handle check that it
 * names a live path of the set and return -ENOENT otherwise, so a handle
 * of a freed path is refused rather than used -- as long as no later path
 * happens to reuse the freed memory; ids never have that ambiguity, so
 * callers that keep paths across frees by others should keep ids and use
 * s2e_pathset_lookup().
 *
 * Functions returning int return 0 or a negative errno:
 *   -EINVAL  NULL or out-of-range argument, size mismatch,
 *   -ENOENT  no such live path (unknown id, freed handle) or drive,
 *   -EBUSY   freeing the current path,
 *   -ENOMEM  allocation failure (the set is unchanged),
 *   -EOVERFLOW  path ids exhausted.
 * Functions returning a pointer return NULL and set errno.  Nothing here
 * aborts or exits; after any error the set is unchanged.
 *
 * THREAD RULES
 *
 * - Structure changes (fork, free, switch, register, unregister,
 *   replace_view, stats, listing) are serialized by a mutex inside the set:
 *   they may be called from any thread.
 * - Each drive's I/O runs in its own AioContext (one thread at a time per
 *   drive) and reads the current path's view with s2e_path_drive_overlay()
 *   / s2e_path_drive_layer(), an atomic load without the mutex.  I/O on
 *   the current path's overlays is not locked.
 * - Hence everything that changes which view a drive's I/O uses, or that
 *   reads a tree guest I/O may be writing, happens while the VM is stopped
 *   or between requests (drives drained; in QEMU: holding the BQL with the
 *   drives in the main AioContext, or inside bdrv_drain_all_begin/end):
 *   s2e_path_switch, s2e_path_drive_replace_view, unregistering a drive,
 *   and forking the current path or reading its statistics.  A request
 *   must fetch its overlay once and use that one throughout.
 * - Forking, freeing and reading the statistics of paths that are *not*
 *   current may run while guest I/O runs: their overlays are not written
 *   by I/O, and the nodes they share with the current path have atomic
 *   reference counts (see overlay.h).
 * - The layer callbacks run with the set's mutex held: they must not call
 *   into the path set.
 */
#ifndef S2E_BLOCK_PATHS_H
#define S2E_BLOCK_PATHS_H

#include <stddef.h>
#include <stdint.h>

#include "s2e-block/overlay.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct S2EPathSet S2EPathSet;
typedef struct S2EPath S2EPath;
typedef struct S2EPathDrive S2EPathDrive;

/* Largest path id: ids fit in QEMU's int64 QOM properties. */
#define S2E_PATH_ID_MAX ((uint64_t)INT64_MAX)

/*
 * Reference counting of a drive's layers.  The set holds one reference per
 * (path, drive) view whose layer is not NULL: it calls @ref when a fork
 * copies a view and @unref when a view is dropped (path freed, drive
 * unregistered, view replaced, set freed).  Never called with NULL.
 * Both run with the set's mutex held and must not call into the set.
 * A NULL @ops (or NULL members) means layers are not reference counted.
 */
typedef struct S2EPathLayerOps {
    void (*ref)(void *layer);
    void (*unref)(void *layer);
} S2EPathLayerOps;

/* What one path holds of one drive, or of all drives summed. */
typedef struct S2EPathStats {
    /* data in blocks no other holder shares: freed with the path */
    uint64_t own_bytes;
    uint64_t shared_bytes;    /* data in blocks shared with other paths */
    /* tree nodes and block headers reachable (shared ones included) */
    uint64_t meta_bytes;
    uint64_t sectors_present; /* sectors this path wrote (data or zeroes) */
} S2EPathStats;

/* ---- Path sets -------------------------------------------------------- */

/* A new set holding path 0 (current) and no drive.  NULL, errno = ENOMEM. */
S2EPathSet *s2e_pathset_new(void);

/*
 * Free @set: every path, overlay and drive handle (layers are unref'd).
 * No other thread may use the set any more.  NULL is accepted.
 */
void s2e_pathset_free(S2EPathSet *set);

/*
 * The process-wide set used by the s2e_path_* functions and the QEMU
 * plugin, created on first use and never freed.  NULL (errno = ENOMEM) if
 * it could not be created; a later call tries again.
 */
S2EPathSet *s2e_paths_default(void);

/* ---- Drives (for the QEMU glue) ---------------------------------------- */

/*
 * Register a drive of @nb_sectors sectors: every existing path (and every
 * later one) gets a view of it, initially an empty overlay and no layer.
 * @name is copied (NULL: ""); it only labels the drive for engines.
 * @ops is copied.  Stores the handle in *@drivep and returns 0, or -EINVAL
 * (bad size, NULL arguments), -ENOMEM.
 */
int s2e_pathset_register_drive(S2EPathSet *set, const char *name,
                               uint64_t nb_sectors,
                               const S2EPathLayerOps *ops,
                               S2EPathDrive **drivep);

/*
 * Remove @drive from every path: its overlays are freed, its layer
 * references dropped, the handle becomes invalid.  -EINVAL for NULL,
 * -ENOENT for a drive that is not registered in @set.
 */
int s2e_pathset_unregister_drive(S2EPathSet *set, S2EPathDrive *drive);

/*
 * The current path's overlay / layer of @drive: one atomic load, no lock.
 * The overlay is never NULL for a registered drive.
 */
S2EOverlay *s2e_path_drive_overlay(const S2EPathDrive *drive);
void *s2e_path_drive_layer(const S2EPathDrive *drive);

/*
 * Replace the current path's view of @drive (loadvm): on success the set
 * owns @overlay and one reference to @layer (which the caller took), and
 * the old overlay is freed and the old layer unref'd; other paths are not
 * touched.  On failure the caller keeps both.  @overlay must be one the
 * caller owns, in the drive's memory account (s2e_path_drive_new_overlay(),
 * or forked from any view of the drive).  -EINVAL for a NULL drive or
 * overlay, the current overlay itself, or an overlay whose size or account
 * differs from the drive's.
 */
int s2e_path_drive_replace_view(S2EPathDrive *drive, S2EOverlay *overlay,
                                void *layer);

/*
 * A new empty overlay for @drive, counting in its memory account.  NULL
 * with errno (EINVAL, ENOMEM).
 */
S2EOverlay *s2e_path_drive_new_overlay(S2EPathDrive *drive);

/*
 * Memory of @drive: the overlays of all paths share one account (see
 * overlay.h), so what a drive holds in every path together is bounded by
 * one limit.  A write that would pass it fails with -ENOSPC; discarding,
 * writing zeroes over data and freeing paths make room again.  0: no limit
 * (the default).  Lock-free; any thread.
 */
void s2e_path_drive_set_overlay_limit(S2EPathDrive *drive, uint64_t limit);
void s2e_path_drive_memory(const S2EPathDrive *drive, uint64_t *used,
                           uint64_t *limit);

const char *s2e_path_drive_name(const S2EPathDrive *drive);
uint64_t s2e_path_drive_nb_sectors(const S2EPathDrive *drive);

/*
 * Registered drives in registration order: fills up to @max handles and
 * returns how many there are.  A handle is valid until unregistered (in
 * QEMU: until the drive closes, in the main loop).
 */
size_t s2e_pathset_drives(S2EPathSet *set, S2EPathDrive **drives,
                          size_t max);

/*
 * The view of @drive in any live @path (not only the current one).
 * @overlay and @layer may be NULL.  -ENOENT for an unknown path/drive.
 * The overlay must not be written unless @path is current.
 */
int s2e_pathset_get_view(S2EPathSet *set, S2EPath *path, S2EPathDrive *drive,
                         S2EOverlay **overlay, void **layer);

/* ---- Paths on an explicit set ----------------------------------------- */

/* The current path (atomic load, no lock).  Never NULL. */
S2EPath *s2e_pathset_current(S2EPathSet *set);

/*
 * A new path whose view of every drive equals @parent's (NULL: the current
 * path), sharing all data; the current path does not change.  Costs O(1)
 * per drive whatever the overlays hold.  NULL with errno = EINVAL, ENOENT,
 * ENOMEM or EOVERFLOW.
 */
S2EPath *s2e_pathset_fork(S2EPathSet *set, S2EPath *parent);

/*
 * Make @path current: subsequent guest I/O on every drive uses its views.
 * Switching to the current path does nothing.  -EINVAL, -ENOENT.
 */
int s2e_pathset_switch(S2EPathSet *set, S2EPath *path);

/*
 * Free @path and every view it holds; nodes and blocks no other path holds
 * are released.  -EINVAL, -ENOENT, -EBUSY when @path is current.
 */
int s2e_pathset_free_path(S2EPathSet *set, S2EPath *path);

/* The live path with id @id, or NULL. */
S2EPath *s2e_pathset_lookup(S2EPathSet *set, uint64_t id);

/*
 * Live path ids in ascending order: fills up to @max ids and returns how
 * many paths there are.
 */
size_t s2e_pathset_ids(S2EPathSet *set, uint64_t *ids, size_t max);

/*
 * Statistics of @path for @drive, or summed over all drives when @drive is
 * NULL.  -EINVAL, -ENOENT.  See THREAD RULES for the current path.
 */
int s2e_pathset_get_stats(S2EPathSet *set, S2EPath *path,
                          S2EPathDrive *drive, S2EPathStats *stats);

/* ---- Engine API on the default set ------------------------------------ */
/*
 * Thin wrappers over the s2e_pathset_* functions with s2e_paths_default().
 * Those returning int return -ENOMEM, and those returning a pointer NULL
 * with errno = ENOMEM, when the default set cannot be created.
 */

/* The id of a live path: fixed for its lifetime (UINT64_MAX for NULL). */
uint64_t s2e_path_id(const S2EPath *path);

S2EPath *s2e_path_current(void);
S2EPath *s2e_path_fork(S2EPath *parent);
int s2e_path_switch(S2EPath *path);
int s2e_path_free(S2EPath *path);
S2EPath *s2e_path_lookup(uint64_t id);
size_t s2e_path_ids(uint64_t *ids, size_t max);
int s2e_path_get_stats(S2EPath *path, S2EPathDrive *drive,
                       S2EPathStats *stats);

#ifdef __cplusplus
}
#endif

#endif /* S2E_BLOCK_PATHS_H */
