/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * s2e-block execution paths: the path set behind the engine API.
 *
 * WHAT IT DOES
 *
 * A path set holds the s2e drives of a process and the live execution
 * paths.  Each path has one view per drive: the overlay holding that
 * path's writes and an opaque, reference-counted layer pointer (the QEMU
 * glue keeps the loaded snapshot there).  The set never looks inside a
 * layer; it calls the ref/unref callbacks given when the drive registered,
 * so this file depends on the overlay store only.
 *
 *   S2EPathSet
 *     lock                      serializes every structure change
 *     current ----------------+ atomic: the path guest I/O uses
 *     drives[]   d0  d1       | registration order; each drive has a slot
 *     paths[]    (sorted by id, live paths only)
 *       path 0:  views[slot] = {overlay, layer} per drive
 *       path 3:  views[slot] = ...   <----------+
 *     handles    hash set of the live S2EPath pointers (validation)
 *
 *   S2EPathDrive d0
 *     cur_overlay, cur_layer    atomic copies of current->views[d0.slot]
 *
 * Fork copies the parent's view of every drive: s2e_overlay_fork() takes
 * one reference on the overlay's root (O(1) whatever it holds) and the
 * layer gets one more reference.  Free drops them; the overlay store frees
 * every node and block no other overlay holds.  Switch stores the new
 * current path and refreshes each drive's cur_overlay/cur_layer, so the
 * I/O path needs one atomic load and no lock.
 *
 * INVARIANTS (under the lock)
 *
 * 1. @current is a live path.  Every live path has views[slot].overlay
 *    non-NULL, of the drive's size, for each registered drive's slot, and
 *    NULL overlay and layer in every unused slot below @slot_cap.
 * 2. Each drive's cur_overlay/cur_layer equal current->views[slot].
 * 3. The set holds exactly one layer reference per view with a non-NULL
 *    layer.
 * 4. @paths is sorted by id; @handles holds the same pointers; every id is
 *    below @next_id, which only grows.
 * 5. Every operation either completes or leaves the set as it was: what
 *    may fail (allocations) happens before anything visible changes.
 *
 * THREADS (the rules callers follow are in paths.h)
 *
 * Guest I/O on drive d reads d->cur_overlay with one acquire load and then
 * works on that overlay without any lock; each drive's I/O is confined to
 * its AioContext.  Every other entry point takes @lock.  What the lock
 * cannot cover -- I/O racing with a change of the view it uses, or with a
 * fork of the tree it is writing in place -- is excluded by the rule that
 * switch, replace_view, unregister and forks of the current path happen
 * while the drives are quiescent (VM stopped, or between requests).  Forks
 * and frees of other paths only touch overlays I/O does not write, plus
 * shared nodes whose reference counts are atomic (overlay.c), so they may
 * overlap guest I/O; the "threads" unit test does exactly that.
 *
 * LOADVM
 *
 * loadvm replaces the current path's view only (s2e_path_drive_replace_view)
 * rather than collapsing the set to one path: an engine that forked paths
 * keeps them, each with the snapshot layer it was forked with, and a
 * monitor user who wants a single path frees the others.  savevm saves the
 * current path's view; it needs nothing from this file beyond the getters.
 *
 * CHOICES
 *
 * - Views live in a per-path array indexed by a drive slot, so fork is one
 *   allocation for the path, one for its views and one per overlay fork.
 *   Registering a drive beyond the arrays' capacity grows every path's
 *   array (doubling); I/O never reads these arrays, only the drive's
 *   atomic copies, so growing them needs no care beyond the lock.
 * - Handles are validated against a hash set of live pointers before they
 *   are dereferenced, so a freed path's handle yields -ENOENT instead of a
 *   use after free (unless a new path reuses its memory: ids are the exact
 *   name, see paths.h).
 * - Plain malloc everywhere (no aborting allocator): out of memory is an
 *   error the caller sees, as in the overlay store.
 * - Everything, including freeing overlays and calling the layer
 *   callbacks, happens under the lock: simple to reason about, and the
 *   work done there is proportional to what is freed.
 *
 * KNOWN LIMITS
 *
 * - Freeing a path is O(live paths) (the sorted array shifts) plus what
 *   its overlays release; registering a drive is O(live paths).
 * - Statistics walk the path's trees: O(nodes + blocks) under the lock.
 */

#include "s2e-block/paths.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct S2EPathView {
    S2EOverlay *overlay;        /* NULL in an unused slot */
    void *layer;                /* NULL: base image only */
} S2EPathView;

struct S2EPath {
    S2EPathSet *set;
    uint64_t id;
    S2EPathView *views;         /* set->slot_cap entries, by drive slot */
};

struct S2EPathDrive {
    S2EPathSet *set;
    size_t slot;
    uint64_t nb_sectors;
    S2EPathLayerOps ops;
    char *name;
    S2EOverlayMemory *mem;      /* every path's overlay of this drive */
    _Atomic(S2EOverlay *) cur_overlay;
    _Atomic(void *) cur_layer;
};

/* Open addressing with linear probing; no tombstones (backward shift). */
typedef struct PathHandles {
    S2EPath **slots;            /* NULL = empty */
    size_t size;                /* 0 or a power of two */
    unsigned bits;              /* log2(size) */
    size_t used;
} PathHandles;

struct S2EPathSet {
    pthread_mutex_t lock;
    _Atomic(S2EPath *) current;

    S2EPath **paths;            /* live paths, ascending ids */
    size_t n_paths;
    size_t paths_cap;
    PathHandles handles;
    uint64_t next_id;

    S2EPathDrive **drives;      /* registration order */
    size_t n_drives;
    size_t drives_cap;
    size_t slot_cap;            /* entries of every path's views array */
};

/* ---- Small helpers ------------------------------------------------------ */

static void layer_ref(const S2EPathDrive *drive, void *layer)
{
    if (layer && drive->ops.ref) {
        drive->ops.ref(layer);
    }
}

static void layer_unref(const S2EPathDrive *drive, void *layer)
{
    if (layer && drive->ops.unref) {
        drive->ops.unref(layer);
    }
}

/* Grow *@arrayp (elements of @elem bytes) to hold at least @need. */
static int array_reserve(void **arrayp, size_t *capp, size_t need,
                         size_t elem)
{
    size_t cap = *capp ? *capp : 8;
    void *array;

    if (need <= *capp) {
        return 0;
    }
    while (cap < need) {
        if (cap > SIZE_MAX / 2 / elem) {
            return -ENOMEM;
        }
        cap *= 2;
    }
    array = realloc(*arrayp, cap * elem);
    if (!array) {
        return -ENOMEM;
    }
    *arrayp = array;
    *capp = cap;
    return 0;
}

/* ---- Live handles: a hash set of pointers ------------------------------- */

static size_t handle_home(const PathHandles *h, const S2EPath *path)
{
    uint64_t x = (uint64_t)(uintptr_t)path * UINT64_C(0x9e3779b97f4a7c15);

    return (size_t)(x >> (64 - h->bits));
}

static size_t handle_find(const PathHandles *h, const S2EPath *path)
{
    size_t i;

    if (!h->size || !path) {
        return SIZE_MAX;
    }
    for (i = handle_home(h, path); h->slots[i]; i = (i + 1) & (h->size - 1)) {
        if (h->slots[i] == path) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* Insert @path; the table must have room (handles_reserve). */
static void handle_insert(PathHandles *h, S2EPath *path)
{
    size_t i = handle_home(h, path);

    while (h->slots[i]) {
        i = (i + 1) & (h->size - 1);
    }
    h->slots[i] = path;
    h->used++;
}

/* Make room for @need entries at a load factor of at most 1/2. */
static int handles_reserve(PathHandles *h, size_t need)
{
    PathHandles bigger = { 0 };

    if (need <= h->size / 2) {
        return 0;
    }
    bigger.bits = h->bits ? h->bits : 4;
    while (need > ((size_t)1 << bigger.bits) / 2) {
        if (bigger.bits >= sizeof(size_t) * 8 - 5) {
            return -ENOMEM;
        }
        bigger.bits++;
    }
    bigger.size = (size_t)1 << bigger.bits;
    bigger.slots = calloc(bigger.size, sizeof(*bigger.slots));
    if (!bigger.slots) {
        return -ENOMEM;
    }
    for (size_t k = 0; k < h->size; k++) {
        if (h->slots[k]) {
            handle_insert(&bigger, h->slots[k]);
        }
    }
    free(h->slots);
    *h = bigger;
    return 0;
}

/* Remove the entry at @i, shifting later entries of its run back. */
static void handle_remove_at(PathHandles *h, size_t i)
{
    size_t mask = h->size - 1;
    size_t j = i;

    h->slots[i] = NULL;
    for (;;) {
        size_t home;

        j = (j + 1) & mask;
        if (!h->slots[j]) {
            break;
        }
        home = handle_home(h, h->slots[j]);
        /* The entry at j may move to i unless its home lies in (i, j]. */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j)) {
            continue;
        }
        h->slots[i] = h->slots[j];
        h->slots[j] = NULL;
        i = j;
    }
    h->used--;
}

/* ---- Paths and drives of the set (lock held) ---------------------------- */

static bool path_is_live(const S2EPathSet *set, const S2EPath *path)
{
    return handle_find(&set->handles, path) != SIZE_MAX;
}

/* Index in set->paths of the first path with id >= @id. */
static size_t path_index_of_id(const S2EPathSet *set, uint64_t id)
{
    size_t lo = 0, hi = set->n_paths;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->paths[mid]->id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static size_t drive_index(const S2EPathSet *set, const S2EPathDrive *drive)
{
    for (size_t k = 0; k < set->n_drives; k++) {
        if (set->drives[k] == drive) {
            return k;
        }
    }
    return SIZE_MAX;
}

static bool drive_is_registered(const S2EPathSet *set,
                                const S2EPathDrive *drive)
{
    return drive && drive_index(set, drive) != SIZE_MAX;
}

/* Publish @path's view of @drive as the one guest I/O uses. */
static void drive_publish(S2EPathDrive *drive, const S2EPath *path)
{
    const S2EPathView *v = &path->views[drive->slot];

    atomic_store_explicit(&drive->cur_layer, v->layer, memory_order_release);
    atomic_store_explicit(&drive->cur_overlay, v->overlay,
                          memory_order_release);
}

static S2EPath *current_path(const S2EPathSet *set)
{
    return atomic_load_explicit(&set->current, memory_order_acquire);
}

/* Drop every view of @path (overlays freed, layers unref'd) and @path. */
static void path_destroy(S2EPathSet *set, S2EPath *path)
{
    for (size_t k = 0; k < set->n_drives; k++) {
        S2EPathDrive *drive = set->drives[k];
        S2EPathView *v = &path->views[drive->slot];

        s2e_overlay_free(v->overlay);
        layer_unref(drive, v->layer);
    }
    free(path->views);
    free(path);
}

/* A path struct with an all-empty views array; not yet in the set. */
static S2EPath *path_alloc(S2EPathSet *set, uint64_t id)
{
    S2EPath *path = malloc(sizeof(*path));

    if (!path) {
        return NULL;
    }
    path->set = set;
    path->id = id;
    path->views = calloc(set->slot_cap ? set->slot_cap : 1,
                         sizeof(*path->views));
    if (!path->views) {
        free(path);
        return NULL;
    }
    return path;
}

/* Room for one more path in the sorted array and the handle set. */
static int paths_reserve_one(S2EPathSet *set)
{
    int ret = array_reserve((void **)&set->paths, &set->paths_cap,
                            set->n_paths + 1, sizeof(*set->paths));

    if (ret < 0) {
        return ret;
    }
    return handles_reserve(&set->handles, set->n_paths + 1);
}

/* Add @path, whose id is larger than every live one, to the set. */
static void paths_append(S2EPathSet *set, S2EPath *path)
{
    set->paths[set->n_paths++] = path;
    handle_insert(&set->handles, path);
}

static void paths_remove(S2EPathSet *set, S2EPath *path)
{
    size_t i = path_index_of_id(set, path->id);

    memmove(&set->paths[i], &set->paths[i + 1],
            (set->n_paths - i - 1) * sizeof(*set->paths));
    set->n_paths--;
    handle_remove_at(&set->handles, handle_find(&set->handles, path));
}

/* ---- Sets --------------------------------------------------------------- */

S2EPathSet *s2e_pathset_new(void)
{
    S2EPathSet *set = calloc(1, sizeof(*set));
    S2EPath *path0;

    if (!set) {
        goto fail;
    }
    if (pthread_mutex_init(&set->lock, NULL) != 0) {
        free(set);
        goto fail;
    }
    path0 = path_alloc(set, 0);
    if (!path0 || paths_reserve_one(set) < 0) {
        free(path0 ? path0->views : NULL);
        free(path0);
        s2e_pathset_free(set);
        goto fail;
    }
    paths_append(set, path0);
    set->next_id = 1;
    atomic_store_explicit(&set->current, path0, memory_order_release);
    return set;

fail:
    errno = ENOMEM;
    return NULL;
}

/* The drive's handle and account (its overlays are freed already). */
static void drive_destroy(S2EPathDrive *drive)
{
    s2e_overlay_memory_unref(drive->mem);
    free(drive->name);
    free(drive);
}

void s2e_pathset_free(S2EPathSet *set)
{
    if (!set) {
        return;
    }
    for (size_t k = 0; k < set->n_paths; k++) {
        path_destroy(set, set->paths[k]);
    }
    for (size_t k = 0; k < set->n_drives; k++) {
        drive_destroy(set->drives[k]);
    }
    free(set->paths);
    free(set->handles.slots);
    free(set->drives);
    pthread_mutex_destroy(&set->lock);
    free(set);
}

static _Atomic(S2EPathSet *) default_set;
static pthread_mutex_t default_set_lock = PTHREAD_MUTEX_INITIALIZER;

S2EPathSet *s2e_paths_default(void)
{
    S2EPathSet *set = atomic_load_explicit(&default_set,
                                           memory_order_acquire);

    if (set) {
        return set;
    }
    pthread_mutex_lock(&default_set_lock);
    set = atomic_load_explicit(&default_set, memory_order_acquire);
    if (!set) {
        set = s2e_pathset_new();
        if (set) {
            atomic_store_explicit(&default_set, set, memory_order_release);
        }
    }
    pthread_mutex_unlock(&default_set_lock);
    if (!set) {
        errno = ENOMEM;
    }
    return set;
}

/* ---- Drives ------------------------------------------------------------- */

/* The lowest slot no registered drive uses. */
static size_t free_slot(const S2EPathSet *set)
{
    size_t slot = 0;

    for (;;) {
        bool used = false;
        for (size_t k = 0; k < set->n_drives; k++) {
            used = used || set->drives[k]->slot == slot;
        }
        if (!used) {
            return slot;
        }
        slot++;
    }
}

/*
 * Make every path's views array hold @need slots.  A failure leaves some
 * arrays larger than set->slot_cap, which is harmless: their extra entries
 * are zero and the next growth zeroes them again.
 */
static int views_reserve(S2EPathSet *set, size_t need)
{
    size_t cap = set->slot_cap ? set->slot_cap : 1;

    if (need <= set->slot_cap) {
        return 0;
    }
    while (cap < need) {
        cap *= 2;
    }
    for (size_t k = 0; k < set->n_paths; k++) {
        S2EPath *path = set->paths[k];
        S2EPathView *views = realloc(path->views, cap * sizeof(*views));

        if (!views) {
            return -ENOMEM;
        }
        memset(&views[set->slot_cap], 0,
               (cap - set->slot_cap) * sizeof(*views));
        path->views = views;
    }
    set->slot_cap = cap;
    return 0;
}

/* Give every path an empty overlay in @drive's slot; all or nothing. */
static int drive_create_views(S2EPathSet *set, S2EPathDrive *drive)
{
    for (size_t k = 0; k < set->n_paths; k++) {
        S2EOverlay *ov = s2e_overlay_new_in(drive->nb_sectors, drive->mem);

        if (!ov) {
            int ret = -errno;
            while (k-- > 0) {
                s2e_overlay_free(set->paths[k]->views[drive->slot].overlay);
                set->paths[k]->views[drive->slot].overlay = NULL;
            }
            return ret;
        }
        set->paths[k]->views[drive->slot].overlay = ov;
    }
    return 0;
}

static S2EPathDrive *drive_alloc(S2EPathSet *set, const char *name,
                                 uint64_t nb_sectors,
                                 const S2EPathLayerOps *ops)
{
    S2EPathDrive *drive = calloc(1, sizeof(*drive));

    if (!drive) {
        return NULL;
    }
    drive->name = strdup(name ? name : "");
    drive->mem = s2e_overlay_memory_new(0);
    if (!drive->name || !drive->mem) {
        drive_destroy(drive);
        return NULL;
    }
    drive->set = set;
    drive->nb_sectors = nb_sectors;
    if (ops) {
        drive->ops = *ops;
    }
    drive->slot = free_slot(set);
    return drive;
}

static int register_drive_locked(S2EPathSet *set, const char *name,
                                 uint64_t nb_sectors,
                                 const S2EPathLayerOps *ops,
                                 S2EPathDrive **drivep)
{
    S2EPathDrive *drive;
    int ret;

    ret = array_reserve((void **)&set->drives, &set->drives_cap,
                        set->n_drives + 1, sizeof(*set->drives));
    if (ret < 0) {
        return ret;
    }
    drive = drive_alloc(set, name, nb_sectors, ops);
    if (!drive) {
        return -ENOMEM;
    }
    ret = views_reserve(set, drive->slot + 1);
    if (ret == 0) {
        ret = drive_create_views(set, drive);
    }
    if (ret < 0) {
        drive_destroy(drive);
        return ret;
    }
    set->drives[set->n_drives++] = drive;
    drive_publish(drive, current_path(set));
    *drivep = drive;
    return 0;
}

int s2e_pathset_register_drive(S2EPathSet *set, const char *name,
                               uint64_t nb_sectors,
                               const S2EPathLayerOps *ops,
                               S2EPathDrive **drivep)
{
    int ret;

    if (!set || !drivep || nb_sectors == 0 ||
        nb_sectors > S2E_OVERLAY_MAX_SECTORS) {
        return -EINVAL;
    }
    pthread_mutex_lock(&set->lock);
    ret = register_drive_locked(set, name, nb_sectors, ops, drivep);
    pthread_mutex_unlock(&set->lock);
    return ret;
}

int s2e_pathset_unregister_drive(S2EPathSet *set, S2EPathDrive *drive)
{
    size_t k;

    if (!set || !drive) {
        return -EINVAL;
    }
    pthread_mutex_lock(&set->lock);
    k = drive_index(set, drive);
    if (k == SIZE_MAX) {
        pthread_mutex_unlock(&set->lock);
        return -ENOENT;
    }
    for (size_t p = 0; p < set->n_paths; p++) {
        S2EPathView *v = &set->paths[p]->views[drive->slot];

        s2e_overlay_free(v->overlay);
        layer_unref(drive, v->layer);
        v->overlay = NULL;
        v->layer = NULL;
    }
    memmove(&set->drives[k], &set->drives[k + 1],
            (set->n_drives - k - 1) * sizeof(*set->drives));
    set->n_drives--;
    pthread_mutex_unlock(&set->lock);

    drive_destroy(drive);
    return 0;
}

S2EOverlay *s2e_path_drive_overlay(const S2EPathDrive *drive)
{
    return drive ? atomic_load_explicit(&drive->cur_overlay,
                                        memory_order_acquire) : NULL;
}

void *s2e_path_drive_layer(const S2EPathDrive *drive)
{
    return drive ? atomic_load_explicit(&drive->cur_layer,
                                        memory_order_acquire) : NULL;
}

int s2e_path_drive_replace_view(S2EPathDrive *drive, S2EOverlay *overlay,
                                void *layer)
{
    S2EPathSet *set;
    S2EPathView *v, old;

    if (!drive || !overlay) {
        return -EINVAL;
    }
    set = drive->set;
    pthread_mutex_lock(&set->lock);
    if (!drive_is_registered(set, drive)) {
        pthread_mutex_unlock(&set->lock);
        return -ENOENT;
    }
    v = &current_path(set)->views[drive->slot];
    if (overlay == v->overlay ||
        s2e_overlay_nb_sectors(overlay) != drive->nb_sectors ||
        s2e_overlay_memory(overlay) != drive->mem) {
        pthread_mutex_unlock(&set->lock);
        return -EINVAL;
    }
    old = *v;
    v->overlay = overlay;
    v->layer = layer;
    drive_publish(drive, current_path(set));
    s2e_overlay_free(old.overlay);
    layer_unref(drive, old.layer);
    pthread_mutex_unlock(&set->lock);
    return 0;
}

S2EOverlay *s2e_path_drive_new_overlay(S2EPathDrive *drive)
{
    if (!drive) {
        errno = EINVAL;
        return NULL;
    }
    return s2e_overlay_new_in(drive->nb_sectors, drive->mem);
}

void s2e_path_drive_set_overlay_limit(S2EPathDrive *drive, uint64_t limit)
{
    s2e_overlay_memory_set_limit(drive->mem, limit);
}

void s2e_path_drive_memory(const S2EPathDrive *drive, uint64_t *used,
                           uint64_t *limit)
{
    *used = s2e_overlay_memory_used(drive->mem);
    *limit = s2e_overlay_memory_limit(drive->mem);
}

const char *s2e_path_drive_name(const S2EPathDrive *drive)
{
    return drive ? drive->name : NULL;
}

uint64_t s2e_path_drive_nb_sectors(const S2EPathDrive *drive)
{
    return drive ? drive->nb_sectors : 0;
}

size_t s2e_pathset_drives(S2EPathSet *set, S2EPathDrive **drives, size_t max)
{
    size_t n;

    if (!set) {
        return 0;
    }
    pthread_mutex_lock(&set->lock);
    n = set->n_drives;
    for (size_t k = 0; k < n && k < max; k++) {
        drives[k] = set->drives[k];
    }
    pthread_mutex_unlock(&set->lock);
    return n;
}

int s2e_pathset_get_view(S2EPathSet *set, S2EPath *path, S2EPathDrive *drive,
                         S2EOverlay **overlay, void **layer)
{
    const S2EPathView *v;

    if (!set || !path || !drive) {
        return -EINVAL;
    }
    pthread_mutex_lock(&set->lock);
    if (!path_is_live(set, path) || !drive_is_registered(set, drive)) {
        pthread_mutex_unlock(&set->lock);
        return -ENOENT;
    }
    v = &path->views[drive->slot];
    if (overlay) {
        *overlay = v->overlay;
    }
    if (layer) {
        *layer = v->layer;
    }
    pthread_mutex_unlock(&set->lock);
    return 0;
}

/* ---- Paths -------------------------------------------------------------- */

S2EPath *s2e_pathset_current(S2EPathSet *set)
{
    return set ? current_path(set) : NULL;
}

/* Fork every drive's overlay of @parent into @child: all or nothing. */
static int fork_views(S2EPathSet *set, S2EPath *parent, S2EPath *child)
{
    for (size_t k = 0; k < set->n_drives; k++) {
        size_t slot = set->drives[k]->slot;
        S2EOverlay *ov = s2e_overlay_fork(parent->views[slot].overlay);

        if (!ov) {
            while (k-- > 0) {
                slot = set->drives[k]->slot;
                s2e_overlay_free(child->views[slot].overlay);
                child->views[slot].overlay = NULL;
            }
            return -ENOMEM;
        }
        child->views[slot].overlay = ov;
    }
    /* Nothing can fail any more: share the layers. */
    for (size_t k = 0; k < set->n_drives; k++) {
        S2EPathDrive *drive = set->drives[k];

        child->views[drive->slot].layer = parent->views[drive->slot].layer;
        layer_ref(drive, child->views[drive->slot].layer);
    }
    return 0;
}

static int fork_locked(S2EPathSet *set, S2EPath *parent, S2EPath **childp)
{
    S2EPath *child;
    int ret;

    if (!parent) {
        parent = current_path(set);
    } else if (!path_is_live(set, parent)) {
        return -ENOENT;
    }
    if (set->next_id > S2E_PATH_ID_MAX) {
        return -EOVERFLOW;
    }
    ret = paths_reserve_one(set);
    if (ret < 0) {
        return ret;
    }
    child = path_alloc(set, set->next_id);
    if (!child) {
        return -ENOMEM;
    }
    ret = fork_views(set, parent, child);
    if (ret < 0) {
        free(child->views);
        free(child);
        return ret;
    }
    paths_append(set, child);
    set->next_id++;
    *childp = child;
    return 0;
}

S2EPath *s2e_pathset_fork(S2EPathSet *set, S2EPath *parent)
{
    S2EPath *child = NULL;
    int ret;

    if (!set) {
        errno = EINVAL;
        return NULL;
    }
    pthread_mutex_lock(&set->lock);
    ret = fork_locked(set, parent, &child);
    pthread_mutex_unlock(&set->lock);
    if (ret < 0) {
        errno = -ret;
        return NULL;
    }
    return child;
}

int s2e_pathset_switch(S2EPathSet *set, S2EPath *path)
{
    if (!set || !path) {
        return -EINVAL;
    }
    pthread_mutex_lock(&set->lock);
    if (!path_is_live(set, path)) {
        pthread_mutex_unlock(&set->lock);
        return -ENOENT;
    }
    atomic_store_explicit(&set->current, path, memory_order_release);
    for (size_t k = 0; k < set->n_drives; k++) {
        drive_publish(set->drives[k], path);
    }
    pthread_mutex_unlock(&set->lock);
    return 0;
}

int s2e_pathset_free_path(S2EPathSet *set, S2EPath *path)
{
    int ret = 0;

    if (!set || !path) {
        return -EINVAL;
    }
    pthread_mutex_lock(&set->lock);
    if (!path_is_live(set, path)) {
        ret = -ENOENT;
    } else if (path == current_path(set)) {
        ret = -EBUSY;
    } else {
        paths_remove(set, path);
        path_destroy(set, path);
    }
    pthread_mutex_unlock(&set->lock);
    return ret;
}

S2EPath *s2e_pathset_lookup(S2EPathSet *set, uint64_t id)
{
    S2EPath *path = NULL;
    size_t i;

    if (!set) {
        return NULL;
    }
    pthread_mutex_lock(&set->lock);
    i = path_index_of_id(set, id);
    if (i < set->n_paths && set->paths[i]->id == id) {
        path = set->paths[i];
    }
    pthread_mutex_unlock(&set->lock);
    return path;
}

size_t s2e_pathset_ids(S2EPathSet *set, uint64_t *ids, size_t max)
{
    size_t n;

    if (!set) {
        return 0;
    }
    pthread_mutex_lock(&set->lock);
    n = set->n_paths;
    for (size_t k = 0; k < n && k < max; k++) {
        ids[k] = set->paths[k]->id;
    }
    pthread_mutex_unlock(&set->lock);
    return n;
}

static void add_view_stats(const S2EPathView *v, S2EPathStats *stats)
{
    S2EOverlayStats st;

    s2e_overlay_get_stats(v->overlay, &st);
    stats->own_bytes += st.data_bytes - st.shared_data_bytes;
    stats->shared_bytes += st.shared_data_bytes;
    stats->meta_bytes += st.meta_bytes;
    stats->sectors_present += st.sectors_present;
}

int s2e_pathset_get_stats(S2EPathSet *set, S2EPath *path,
                          S2EPathDrive *drive, S2EPathStats *stats)
{
    int ret = 0;

    if (!set || !path || !stats) {
        return -EINVAL;
    }
    memset(stats, 0, sizeof(*stats));
    pthread_mutex_lock(&set->lock);
    if (!path_is_live(set, path) ||
        (drive && !drive_is_registered(set, drive))) {
        ret = -ENOENT;
    } else if (drive) {
        add_view_stats(&path->views[drive->slot], stats);
    } else {
        for (size_t k = 0; k < set->n_drives; k++) {
            add_view_stats(&path->views[set->drives[k]->slot], stats);
        }
    }
    pthread_mutex_unlock(&set->lock);
    return ret;
}

/* ---- Engine API on the default set -------------------------------------- */

uint64_t s2e_path_id(const S2EPath *path)
{
    return path ? path->id : UINT64_MAX;
}

S2EPath *s2e_path_current(void)
{
    return s2e_pathset_current(s2e_paths_default());
}

S2EPath *s2e_path_fork(S2EPath *parent)
{
    S2EPathSet *set = s2e_paths_default();

    return set ? s2e_pathset_fork(set, parent) : NULL;
}

int s2e_path_switch(S2EPath *path)
{
    S2EPathSet *set = s2e_paths_default();

    return set ? s2e_pathset_switch(set, path) : -ENOMEM;
}

int s2e_path_free(S2EPath *path)
{
    S2EPathSet *set = s2e_paths_default();

    return set ? s2e_pathset_free_path(set, path) : -ENOMEM;
}

S2EPath *s2e_path_lookup(uint64_t id)
{
    return s2e_pathset_lookup(s2e_paths_default(), id);
}

size_t s2e_path_ids(uint64_t *ids, size_t max)
{
    return s2e_pathset_ids(s2e_paths_default(), ids, max);
}

int s2e_path_get_stats(S2EPath *path, S2EPathDrive *drive,
                       S2EPathStats *stats)
{
    S2EPathSet *set = s2e_paths_default();

    return set ? s2e_pathset_get_stats(set, path, drive, stats) : -ENOMEM;
}
