/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * /objects/s2e-paths: execution paths driven from QEMU's monitor.
 *
 * Tests, demos and engines that drive QEMU over QMP control the process's
 * path set (block/paths.c) through one QOM object.  A stock QEMU's
 * `-object` and `object-add` check qom-type against a compiled-in QAPI
 * enum, so the plugin registers its own type and creates the one instance
 * itself, at /objects/s2e-paths, when the first s2e drive opens.
 *
 *   property    type     access  meaning
 *   current     int      rw      id of the current path; writing switches
 *   fork        int      w       fork the path with that id (current stays)
 *   last-fork   int      r       id of the path created by the latest fork
 *   free        int      w       free that path (not the current one)
 *   paths       string   r       live path ids, ascending, space separated
 *   stats       string   r       per path: "ID:OWN_BYTES:SHARED_BYTES",
 *                                then per drive: "drive:NODE:USED:LIMIT"
 *                                (overlay memory in all paths; 0: no limit)
 *
 *   (qemu) qom-set /objects/s2e-paths fork 0
 *   (qemu) qom-get /objects/s2e-paths last-fork
 *
 * Errors (unknown id, freeing the current path) are monitor errors; QEMU
 * keeps running.  Switching and forking drain all block I/O first, so no
 * request of any drive sees its view change halfway (paths.h thread rules).
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qom/object.h"

#include "block-s2e.h"

#define TYPE_S2E_PATHS "s2e-paths"
#define S2E_PATHS_ID "s2e-paths"

OBJECT_DECLARE_SIMPLE_TYPE(S2EPathsObject, S2E_PATHS)

struct S2EPathsObject {
    Object parent_obj;
    int64_t last_fork;
};

static S2EPathSet *s2e_qom_set(Error **errp)
{
    S2EPathSet *set = s2e_paths_default();
    if (!set) {
        error_setg(errp, "Out of memory for the s2e path set");
    }
    return set;
}

static S2EPath *s2e_qom_lookup(S2EPathSet *set, int64_t id, Error **errp)
{
    S2EPath *path = id < 0 ? NULL : s2e_pathset_lookup(set, id);
    if (!path) {
        error_setg(errp, "No s2e path with id %" PRId64, id);
    }
    return path;
}

/*
 * Read the id a property write names and find its path: the common start
 * of every setter.  NULL with errp set on failure.
 */
static S2EPath *s2e_qom_visit_path(Visitor *v, const char *name,
                                   S2EPathSet **setp, int64_t *id,
                                   Error **errp)
{
    S2EPathSet *set = s2e_qom_set(errp);

    if (!set || !visit_type_int(v, name, id, errp)) {
        return NULL;
    }
    *setp = set;
    return s2e_qom_lookup(set, *id, errp);
}

static void s2e_qom_get_current(Object *obj, Visitor *v, const char *name,
                                void *opaque, Error **errp)
{
    S2EPathSet *set = s2e_qom_set(errp);
    int64_t id;

    if (set) {
        id = s2e_path_id(s2e_pathset_current(set));
        visit_type_int(v, name, &id, errp);
    }
}

static void s2e_qom_set_current(Object *obj, Visitor *v, const char *name,
                                void *opaque, Error **errp)
{
    S2EPathSet *set;
    int64_t id;
    S2EPath *path = s2e_qom_visit_path(v, name, &set, &id, errp);
    int ret;

    if (!path) {
        return;
    }
    bdrv_drain_all_begin();
    ret = s2e_pathset_switch(set, path);
    bdrv_drain_all_end();
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Cannot switch to s2e path %" PRId64, id);
    }
}

static void s2e_qom_set_fork(Object *obj, Visitor *v, const char *name,
                             void *opaque, Error **errp)
{
    S2EPathsObject *po = S2E_PATHS(obj);
    S2EPathSet *set;
    int64_t id;
    S2EPath *parent = s2e_qom_visit_path(v, name, &set, &id, errp);
    S2EPath *child;

    if (!parent) {
        return;
    }
    bdrv_drain_all_begin();
    child = s2e_pathset_fork(set, parent);
    bdrv_drain_all_end();
    if (!child) {
        error_setg_errno(errp, errno, "Cannot fork s2e path %" PRId64, id);
        return;
    }
    po->last_fork = s2e_path_id(child);
}

static void s2e_qom_get_last_fork(Object *obj, Visitor *v, const char *name,
                                  void *opaque, Error **errp)
{
    S2EPathsObject *po = S2E_PATHS(obj);
    visit_type_int(v, name, &po->last_fork, errp);
}

static void s2e_qom_set_free(Object *obj, Visitor *v, const char *name,
                             void *opaque, Error **errp)
{
    S2EPathSet *set;
    int64_t id;
    S2EPath *path = s2e_qom_visit_path(v, name, &set, &id, errp);
    int ret;

    if (!path) {
        return;
    }
    ret = s2e_pathset_free_path(set, path);
    if (ret == -EBUSY) {
        error_setg(errp, "s2e path %" PRId64 " is the current path: switch "
                   "to another path before freeing it", id);
    } else if (ret < 0) {
        error_setg_errno(errp, -ret, "Cannot free s2e path %" PRId64, id);
    }
}

/*
 * The path set and its live ids, ascending; NULL with errp set on
 * failure.
 */
static uint64_t *s2e_qom_ids(S2EPathSet **set, size_t *n, Error **errp)
{
    size_t count;
    uint64_t *ids;

    *set = s2e_qom_set(errp);
    if (!*set) {
        return NULL;
    }
    count = s2e_pathset_ids(*set, NULL, 0);
    ids = g_try_new(uint64_t, count ? count : 1);
    if (!ids) {
        error_setg(errp, "Out of memory listing s2e paths");
        return NULL;
    }
    /* Paths may come and go between the two calls. */
    *n = MIN(count, s2e_pathset_ids(*set, ids, count));
    return ids;
}

/* Appends what a list says of the path @id to @out. */
typedef void S2EQomItemFn(S2EPathSet *set, uint64_t id, GString *out);

/*
 * A list with an item per live path, by ascending id; NULL and *errp on
 * failure.  *pset: the path set.
 */
static GString *s2e_qom_list_paths(S2EPathSet **pset, S2EQomItemFn *item,
                                   Error **errp)
{
    size_t n;
    g_autofree uint64_t *ids = s2e_qom_ids(pset, &n, errp);
    GString *out;

    if (!ids) {
        return NULL;
    }
    out = g_string_new("");
    for (size_t i = 0; i < n; i++) {
        item(*pset, ids[i], out);
    }
    return out;
}

static void s2e_qom_append_id(S2EPathSet *set, uint64_t id, GString *out)
{
    g_string_append_printf(out, "%s%" PRIu64, out->len ? " " : "", id);
}

static char *s2e_qom_get_paths(Object *obj, Error **errp)
{
    S2EPathSet *set;
    GString *out = s2e_qom_list_paths(&set, s2e_qom_append_id, errp);

    return out ? g_string_free(out, false) : NULL;
}

/*
 * " drive:NODE:USED:LIMIT" for every drive: what the overlay-limit
 * option bounds (lock-free counters, so no drain).
 */
static void s2e_qom_append_drive_memory(S2EPathSet *set, GString *out)
{
    size_t count = s2e_pathset_drives(set, NULL, 0);
    g_autofree S2EPathDrive **drives = g_new(S2EPathDrive *, count + 1);
    /* Drives come and go in the main loop only, like this getter. */
    size_t n = MIN(count, s2e_pathset_drives(set, drives, count));

    for (size_t i = 0; i < n; i++) {
        uint64_t used, limit;

        s2e_path_drive_memory(drives[i], &used, &limit);
        g_string_append_printf(out, "%sdrive:%s:%" PRIu64 ":%" PRIu64,
                               out->len ? " " : "",
                               s2e_path_drive_name(drives[i]), used, limit);
    }
}

/* " ID:OWN:SHARED": the path's own and shared overlay bytes. */
static void s2e_qom_append_path_stats(S2EPathSet *set, uint64_t id,
                                      GString *out)
{
    S2EPath *path = s2e_pathset_lookup(set, id);
    S2EPathStats st;

    if (path && s2e_pathset_get_stats(set, path, NULL, &st) == 0) {
        g_string_append_printf(out, "%s%" PRIu64 ":%" PRIu64 ":%" PRIu64,
                               out->len ? " " : "", id, st.own_bytes,
                               st.shared_bytes);
    }
}

static char *s2e_qom_get_stats(Object *obj, Error **errp)
{
    S2EPathSet *set;
    GString *out;

    bdrv_drain_all_begin();
    out = s2e_qom_list_paths(&set, s2e_qom_append_path_stats, errp);
    bdrv_drain_all_end();
    if (!out) {
        return NULL;
    }
    s2e_qom_append_drive_memory(set, out);
    return g_string_free(out, false);
}

static void s2e_paths_instance_init(Object *obj)
{
    S2EPathsObject *po = S2E_PATHS(obj);
    po->last_fork = -1;
}

static void s2e_paths_class_init(ObjectClass *oc, S2EClassData *data)
{
    object_class_property_add(oc, "current", "int", s2e_qom_get_current,
                              s2e_qom_set_current, NULL, NULL);
    object_class_property_add(oc, "fork", "int", NULL, s2e_qom_set_fork,
                              NULL, NULL);
    object_class_property_add(oc, "last-fork", "int", s2e_qom_get_last_fork,
                              NULL, NULL, NULL);
    object_class_property_add(oc, "free", "int", NULL, s2e_qom_set_free,
                              NULL, NULL);
    object_class_property_add_str(oc, "paths", s2e_qom_get_paths, NULL);
    object_class_property_add_str(oc, "stats", s2e_qom_get_stats, NULL);
}

static const TypeInfo s2e_paths_type = {
    .name = TYPE_S2E_PATHS,
    .parent = TYPE_OBJECT,
    .instance_size = sizeof(S2EPathsObject),
    .instance_init = s2e_paths_instance_init,
    .class_init = s2e_paths_class_init,
};

void s2e_paths_qom_register(void)
{
    type_register_static(&s2e_paths_type);
}

void s2e_paths_object_ensure(void)
{
    Object *root = object_get_objects_root();
    Object *obj;

    if (object_resolve_path_component(root, S2E_PATHS_ID)) {
        return;
    }
    obj = object_new(TYPE_S2E_PATHS);
    object_property_add_child(root, S2E_PATHS_ID, obj);
    object_unref(obj);
}

#ifndef S2E_QEMU_PLUGIN
type_init(s2e_paths_qom_register);
#endif
