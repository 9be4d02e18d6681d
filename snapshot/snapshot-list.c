/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Naming, listing and deleting the snapshots of an image.
 *
 * Snapshot NAME of image DIR/IMAGE lives in DIR/IMAGE.NAME (or in a
 * separate snapshot directory, same file name).  The path is built with
 * GLib from checked parts, never in a fixed buffer:
 *
 *   name:  non-empty, at most S2E_SNAPSHOT_NAME_MAX bytes, no '/', not "."
 *          or ".."; and "IMAGE.NAME" must fit a file name (255 bytes) and
 *          must not look like a writer's temporary file (".s2e-snapshot."
 *          or ".s2e-snapshot-" ...), which writers may remove
 *
 * A directory may hold anything beside the image: the image itself, other
 * images whose names extend this one, backups, the writer's hidden
 * temporary files.  So a file is a snapshot only when its name is
 * "IMAGE.NAME" with a valid NAME, it is not named like a temporary file
 * (whose header is complete just before the rename), it is a regular
 * file, and it starts with the snapshot magic.  The first implementation
 * listed any "IMAGE.x" as a snapshot; this one never does.  Deleting
 * applies the same test before it unlinks anything, so `delvm` cannot
 * remove a file that is not a snapshot.
 *
 * Known limit: a snapshot of image "disk.raw.s2e" ("disk.raw.s2e.ready")
 * also matches image "disk.raw" with the name "s2e.ready"; the file does
 * not record its image's name.  Such a listing shows it, and loading it on
 * disk.raw is refused by the base identity check.
 */
#include "snapshot-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_NAME_MAX 255

int s2e_snapshot_check_name(const char *name, GError **error)
{
    if (!name || !*name) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Snapshot name is empty");
    }
    if (strlen(name) > S2E_SNAPSHOT_NAME_MAX) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Snapshot name is longer than %d bytes",
                              S2E_SNAPSHOT_NAME_MAX);
    }
    if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Invalid snapshot name '%s': it may not "
                              "contain '/' or be '.' or '..'", name);
    }
    return 0;
}

/*
 * The image's base name, or NULL (INVALID) for a path that names no file.
 */
static char *image_basename(const char *image_path, GError **error)
{
    char *base;

    if (!image_path || !*image_path || g_str_has_suffix(image_path, "/")) {
        s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                       "'%s' is not an image file name",
                       image_path ? image_path : "");
        return NULL;
    }
    base = g_path_get_basename(image_path);
    if (!strcmp(base, ".") || !strcmp(base, "..")) {
        s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                       "'%s' is not an image file name", image_path);
        g_free(base);
        return NULL;
    }
    return base;
}

/*
 * Where the snapshots of @image_path are: @snapshot_dir, else the image's
 * directory ("." for a bare file name).
 */
static char *snapshot_dir_of(const char *image_path, const char *snapshot_dir)
{
    return snapshot_dir ? g_strdup(snapshot_dir)
                        : g_path_get_dirname(image_path);
}

char *s2e_snapshot_path(const char *image_path, const char *snapshot_dir,
                        const char *name, GError **error)
{
    char *base, *file, *dir, *path;

    if (s2e_snapshot_check_name(name, error) < 0) {
        return NULL;
    }
    base = image_basename(image_path, error);
    if (!base) {
        return NULL;
    }
    file = g_strconcat(base, ".", name, NULL);
    g_free(base);
    if (strlen(file) > FILE_NAME_MAX) {
        s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                       "Snapshot file name '%s' is longer than %d bytes; "
                       "choose a shorter snapshot name", file,
                       FILE_NAME_MAX);
        g_free(file);
        return NULL;
    }
    if (s2e_snap_is_temp_name(file)) {
        s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                       "Snapshot file name '%s' is reserved for temporary "
                       "files; rename the image", file);
        g_free(file);
        return NULL;
    }
    if (!snapshot_dir && !strchr(image_path, '/')) {
        return file;    /* keep a relative image's snapshots relative */
    }
    dir = snapshot_dir_of(image_path, snapshot_dir);
    path = g_build_filename(dir, file, NULL);
    g_free(dir);
    g_free(file);
    return path;
}

/* ---- Listing ------------------------------------------------------------ */

static void entry_free(gpointer p)
{
    S2ESnapshotEntry *e = p;

    g_free(e->name);
    g_free(e->path);
    g_free(e->problem);
    g_free(e);
}

static int entry_cmp(gconstpointer a, gconstpointer b)
{
    const S2ESnapshotEntry *x = *(S2ESnapshotEntry *const *)a;
    const S2ESnapshotEntry *y = *(S2ESnapshotEntry *const *)b;

    return strcmp(x->name, y->name);
}

static bool is_snapshot_file(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
           s2e_snap_probe_magic(path) == 1;
}

static S2ESnapshotEntry *entry_new(const char *name, const char *path)
{
    S2ESnapshotEntry *e = g_new0(S2ESnapshotEntry, 1);
    GError *err = NULL;
    S2ESnapshot *snap = s2e_snapshot_open(path, NULL, NULL, &err);

    e->name = g_strdup(name);
    e->path = g_strdup(path);
    if (snap) {
        e->valid = true;
        e->info = *s2e_snapshot_get_info(snap);
        s2e_snapshot_close(snap);
    } else {
        e->problem = g_strdup(err->message);
        g_error_free(err);
    }
    return e;
}

GPtrArray *s2e_snapshot_list(const char *image_path, const char *snapshot_dir,
                             GError **error)
{
    char *base = image_basename(image_path, error);
    char *dirname, *prefix;
    const char *file;
    GPtrArray *list;
    GError *err = NULL;
    GDir *dir;

    if (!base) {
        return NULL;
    }
    dirname = snapshot_dir_of(image_path, snapshot_dir);
    dir = g_dir_open(dirname, 0, &err);
    if (!dir) {
        s2e_snap_error(error, err->code == G_FILE_ERROR_NOENT
                              ? S2E_SNAPSHOT_ERROR_NOT_FOUND
                              : S2E_SNAPSHOT_ERROR_IO,
                       "Cannot list snapshots of '%s': %s", image_path,
                       err->message);
        g_error_free(err);
        g_free(dirname);
        g_free(base);
        return NULL;
    }
    prefix = g_strconcat(base, ".", NULL);
    list = g_ptr_array_new_with_free_func(entry_free);
    while ((file = g_dir_read_name(dir))) {
        const char *name;
        char *path;

        if (!g_str_has_prefix(file, prefix) || s2e_snap_is_temp_name(file)) {
            continue;
        }
        name = file + strlen(prefix);
        if (s2e_snapshot_check_name(name, NULL) < 0) {
            continue;
        }
        /* Paths as s2e_snapshot_path() builds them. */
        path = !snapshot_dir && !strchr(image_path, '/')
               ? g_strdup(file) : g_build_filename(dirname, file, NULL);
        if (is_snapshot_file(path)) {
            g_ptr_array_add(list, entry_new(name, path));
        }
        g_free(path);
    }
    g_dir_close(dir);
    g_ptr_array_sort(list, entry_cmp);
    g_free(prefix);
    g_free(dirname);
    g_free(base);
    return list;
}

/* ---- Deleting ----------------------------------------------------------- */

static int check_deletable(const char *path, const char *image_path,
                           const char *name, GError **error)
{
    struct stat st;
    int ret;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT) {
            return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_NOT_FOUND,
                                  "Image '%s' has no snapshot '%s' (no file "
                                  "'%s')", image_path, name, path);
        }
        return s2e_snap_error_errno(error, errno, "Cannot delete snapshot "
                                    "'%s'", path);
    }
    ret = S_ISREG(st.st_mode) ? s2e_snap_probe_magic(path) : 0;
    if (ret < 0) {
        return s2e_snap_error_errno(error, -ret, "Cannot read '%s' to delete "
                                    "it", path);
    }
    if (ret == 0) {
        return s2e_snap_error(error, S2E_SNAPSHOT_ERROR_INVALID,
                              "Refusing to delete '%s': it is not an s2e "
                              "snapshot file", path);
    }
    return 0;
}

int s2e_snapshot_delete(const char *image_path, const char *snapshot_dir,
                        const char *name, GError **error)
{
    char *path = s2e_snapshot_path(image_path, snapshot_dir, name, error);
    int ret;

    if (!path) {
        return -EINVAL;
    }
    ret = check_deletable(path, image_path, name, error);
    if (ret == 0 && unlink(path) < 0) {
        ret = s2e_snap_error_errno(error, errno, "Cannot delete snapshot "
                                   "file '%s'", path);
    }
    g_free(path);
    return ret;
}

/* ---- Setting aside ------------------------------------------------------ */

/*
 * QEMU's `savevm NAME` deletes an existing NAME before it writes the new
 * one, so a savevm that then fails (a full disk) lost the only copy.  The
 * glue sets the file aside instead -- renamed to a hidden temporary name in
 * the same directory, out of every listing -- and either puts it back when
 * the savevm fails or removes it once the new file is in place or the
 * command was a plain delete.  The name is a writer's temporary name: if
 * QEMU dies meanwhile, the next writer in the directory removes the file
 * (its creator is gone), which is what the delete meant.
 */
int s2e_snapshot_set_aside(const char *image_path, const char *snapshot_dir,
                           const char *name, char **aside, GError **error)
{
    char *path = s2e_snapshot_path(image_path, snapshot_dir, name, error);
    char *dir, *temp;
    int ret;

    *aside = NULL;
    if (!path) {
        return -EINVAL;
    }
    ret = check_deletable(path, image_path, name, error);
    if (ret < 0) {
        g_free(path);
        return ret;
    }
    dir = g_path_get_dirname(path);
    temp = s2e_snap_temp_name_new();
    *aside = g_build_filename(dir, temp, NULL);
    if (rename(path, *aside) < 0) {
        ret = s2e_snap_error_errno(error, errno, "Cannot delete snapshot "
                                   "file '%s'", path);
        g_clear_pointer(aside, g_free);
    }
    g_free(temp);
    g_free(dir);
    g_free(path);
    return ret;
}

int s2e_snapshot_restore_aside(const char *aside, const char *image_path,
                               const char *snapshot_dir, const char *name,
                               GError **error)
{
    char *path = s2e_snapshot_path(image_path, snapshot_dir, name, error);
    int ret = 0;

    if (!path) {
        return -EINVAL;
    }
    if (renameat2(AT_FDCWD, aside, AT_FDCWD, path, RENAME_NOREPLACE) < 0 &&
        (errno != EINVAL || link(aside, path) < 0 || unlink(aside) < 0)) {
        ret = errno == EEXIST
              ? s2e_snap_error(error, S2E_SNAPSHOT_ERROR_EXISTS,
                               "Cannot put snapshot '%s' back as '%s': that "
                               "name was taken meanwhile; it is kept as '%s'",
                               name, path, aside)
              : s2e_snap_error_errno(error, errno, "Cannot put snapshot '%s' "
                                     "back as '%s' (it is kept as '%s')",
                                     name, path, aside);
    }
    g_free(path);
    return ret;
}

