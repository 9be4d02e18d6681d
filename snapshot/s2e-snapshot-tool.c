/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * s2e-snapshot: inspect and check the snapshot files of s2e images.
 *
 *   s2e-snapshot [--json] info FILE          one snapshot file, in detail
 *   s2e-snapshot [--json] list IMAGE         every snapshot of an image
 *   s2e-snapshot [--json] verify IMAGE NAME  every checksum + base identity
 *
 * The tool is a thin layer over the public snapshot API (snapshot.h): it
 * opens files with s2e_snapshot_open() and never parses bytes itself, so
 * what it reports is exactly what QEMU would see.  "Would it load?" means:
 * the file validates, and its recorded base identity matches the image
 * beside it (for `info FILE`, the image is FILE minus its last ".NAME").
 *
 * Output is for people by default and JSON with --json (one object per
 * run, written with the small escaping writer below: GLib only).
 *
 * Exit status: 0 success (for verify: the snapshot is intact and would
 * load), 1 a snapshot is invalid, would not load, or cannot be read,
 * 2 usage error.
 */
#include "s2e-block/snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define EXIT_INVALID 1
#define EXIT_USAGE 2

typedef struct Options {
    bool json;
    const char *snapshot_dir;
    const char *command;
    const char *args[3];
    int nargs;
} Options;

/* ---- JSON --------------------------------------------------------------- */

/* A minimal JSON writer: objects, arrays, strings, numbers, booleans. */
typedef struct Json {
    GString *out;
    bool first;         /* no member written yet at this level */
} Json;

static void json_escape(GString *out, const char *s)
{
    char *valid = g_utf8_make_valid(s, -1);

    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)valid; *p; p++) {
        switch (*p) {
        case '"':
            g_string_append(out, "\\\"");
            break;
        case '\\':
            g_string_append(out, "\\\\");
            break;
        case '\n':
            g_string_append(out, "\\n");
            break;
        case '\t':
            g_string_append(out, "\\t");
            break;
        case '\r':
            g_string_append(out, "\\r");
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                g_string_append_printf(out, "\\u%04x", *p);
            } else {
                g_string_append_c(out, (char)*p);
            }
        }
    }
    g_string_append_c(out, '"');
    g_free(valid);
}

static void json_key(Json *j, const char *key)
{
    if (!j->first) {
        g_string_append_c(j->out, ',');
    }
    j->first = false;
    if (key) {
        json_escape(j->out, key);
        g_string_append_c(j->out, ':');
    }
}

static void json_open(Json *j, const char *key, char bracket)
{
    json_key(j, key);
    g_string_append_c(j->out, bracket);
    j->first = true;
}

static void json_close(Json *j, char bracket)
{
    g_string_append_c(j->out, bracket);
    j->first = false;
}

static void json_str(Json *j, const char *key, const char *value)
{
    json_key(j, key);
    if (value) {
        json_escape(j->out, value);
    } else {
        g_string_append(j->out, "null");
    }
}

static void json_u64(Json *j, const char *key, uint64_t value)
{
    json_key(j, key);
    g_string_append_printf(j->out, "%" G_GUINT64_FORMAT, value);
}

static void json_i64(Json *j, const char *key, int64_t value)
{
    json_key(j, key);
    g_string_append_printf(j->out, "%" G_GINT64_FORMAT, value);
}

static void json_bool(Json *j, const char *key, bool value)
{
    json_key(j, key);
    g_string_append(j->out, value ? "true" : "false");
}

static void json_print(Json *j)
{
    printf("%s\n", j->out->str);
    g_string_free(j->out, TRUE);
    j->out = NULL;
}

/* ---- Shared helpers ----------------------------------------------------- */

static const char *error_code_name(const GError *err)
{
    static const char *const names[] = {
        [S2E_SNAPSHOT_ERROR_IO] = "IO",
        [S2E_SNAPSHOT_ERROR_NOT_FOUND] = "NOT_FOUND",
        [S2E_SNAPSHOT_ERROR_TRUNCATED] = "TRUNCATED",
        [S2E_SNAPSHOT_ERROR_BAD_MAGIC] = "BAD_MAGIC",
        [S2E_SNAPSHOT_ERROR_BAD_VERSION] = "BAD_VERSION",
        [S2E_SNAPSHOT_ERROR_FEATURES] = "FEATURES",
        [S2E_SNAPSHOT_ERROR_CHECKSUM] = "CHECKSUM",
        [S2E_SNAPSHOT_ERROR_CORRUPT] = "CORRUPT",
        [S2E_SNAPSHOT_ERROR_BASE_CHANGED] = "BASE_CHANGED",
        [S2E_SNAPSHOT_ERROR_INVALID] = "INVALID",
        [S2E_SNAPSHOT_ERROR_LIMIT] = "LIMIT",
        [S2E_SNAPSHOT_ERROR_EXISTS] = "EXISTS",
    };

    if (err->domain != S2E_SNAPSHOT_ERROR || err->code < 0 ||
        (size_t)err->code >= G_N_ELEMENTS(names)) {
        return "OTHER";
    }
    return names[err->code];
}

static void json_error(Json *j, const char *key, const GError *err)
{
    if (!err) {
        json_key(j, key);
        g_string_append(j->out, "null");
        return;
    }
    json_open(j, key, '{');
    json_str(j, "code", error_code_name(err));
    json_str(j, "message", err->message);
    json_close(j, '}');
}

static char *size_str(uint64_t bytes)
{
    return g_format_size_full(bytes, G_FORMAT_SIZE_IEC_UNITS);
}

static char *clock_str(int64_t nsec)
{
    uint64_t ms = (uint64_t)(nsec < 0 ? 0 : nsec) / 1000000;

    return g_strdup_printf("%02" G_GUINT64_FORMAT ":%02u:%02u.%03u",
                           ms / 3600000, (unsigned)(ms / 60000 % 60),
                           (unsigned)(ms / 1000 % 60), (unsigned)(ms % 1000));
}

/* The image a snapshot file belongs to: FILE minus its last ".NAME". */
static char *image_of(const char *file)
{
    const char *slash = strrchr(file, '/');
    const char *dot = strrchr(file, '.');

    if (!dot || (slash && dot < slash) || dot == (slash ? slash + 1 : file) ||
        dot[1] == '\0') {
        return NULL;
    }
    return g_strndup(file, dot - file);
}

/* Would @snap load on @image?  NULL when it would; else why not. */
static GError *check_loads(const S2ESnapshot *snap, const char *image)
{
    S2EBaseIdentity base;
    GError *err = NULL;

    if (!image) {
        g_set_error(&err, S2E_SNAPSHOT_ERROR, S2E_SNAPSHOT_ERROR_INVALID,
                    "Cannot tell the image of '%s' (its name has no "
                    "'.NAME' suffix)", s2e_snapshot_get_path(snap));
        return err;
    }
    if (s2e_base_identity_from_path(image, &base, &err) < 0 ||
        s2e_snapshot_check_base(snap, image, &base, &err) < 0) {
        return err;
    }
    return NULL;
}

/* ---- info --------------------------------------------------------------- */

/* How the sector data is protected when it is loaded. */
static const char *data_check(const S2ESnapshotLayout *l)
{
    return l->block_checksums
           ? "checksummed per 4 KiB block, each checked when first read"
           : "not checksummed per block (format version 1): loaded "
             "unverified; 'verify' checks it";
}

static void info_human(const S2ESnapshot *snap, const char *image,
                       const GError *loads)
{
    const S2ESnapshotInfo *info = s2e_snapshot_get_info(snap);
    const S2EBaseIdentity *base = s2e_snapshot_get_base(snap);
    S2ESnapshotLayout l;
    char *date, *clock, *vm, *stored, *chunk, *dirty, *zero, *disk, *fsize;

    s2e_snapshot_get_layout(snap, &l);
    date = s2e_snapshot_format_time(info->date_sec, info->date_nsec);
    clock = clock_str(info->vm_clock_nsec);
    vm = size_str(info->vm_state_size);
    stored = size_str(l.vm_state_stored);
    chunk = size_str(l.chunk_size);
    dirty = size_str(info->dirty_sectors * 512);
    zero = size_str(info->zero_sectors * 512);
    disk = size_str(info->disk_sectors * 512);
    fsize = size_str(l.file_size);

    printf("File:            %s\n", s2e_snapshot_get_path(snap));
    printf("Format:          version %u, header %u bytes, features "
           "incompatible 0x%" G_GINT64_MODIFIER "x compatible 0x%"
           G_GINT64_MODIFIER "x\n", l.version, l.header_length,
           l.incompatible_features, l.compatible_features);
    printf("File size:       %" G_GUINT64_FORMAT " bytes (%s)\n",
           l.file_size, fsize);
    printf("Snapshot name:   %s\n", info->name);
    printf("Snapshot id:     %s\n", info->id);
    printf("Date:            %s\n", date);
    printf("VM clock:        %s\n", clock);
    if (info->icount == UINT64_MAX) {
        printf("icount:          (not recorded)\n");
    } else {
        printf("icount:          %" G_GUINT64_FORMAT "\n", info->icount);
    }
    printf("VM state:        %" G_GUINT64_FORMAT " bytes (%s), stored in "
           "%s as %" G_GUINT64_FORMAT " chunks of %s\n", info->vm_state_size,
           vm, stored, l.chunk_count, chunk);
    printf("Disk:            %" G_GUINT64_FORMAT " sectors (%s)\n",
           info->disk_sectors, disk);
    printf("Dirty sectors:   %" G_GUINT64_FORMAT " (%s) in %" G_GUINT64_FORMAT
           " extents\n", info->dirty_sectors, dirty, l.extent_count);
    printf("  of which zero: %" G_GUINT64_FORMAT " (%s) in %" G_GUINT64_FORMAT
           " zero extents, not stored\n", info->zero_sectors, zero,
           l.zero_extent_count);
    printf("Sector data:     %s\n", data_check(&l));
    printf("Base image:      %" G_GUINT64_FORMAT " bytes", base->size);
    if (base->has_mtime) {
        char *mtime = s2e_snapshot_format_time(base->mtime_sec,
                                               base->mtime_nsec);
        printf(", modified %s\n", mtime);
        g_free(mtime);
    } else {
        printf(", no modification time recorded\n");
    }
    printf("Image:           %s\n", image ? image : "(unknown)");
    if (loads) {
        printf("Loads on it:     no: %s\n", loads->message);
    } else {
        printf("Loads on it:     yes\n");
    }
    g_free(date);
    g_free(clock);
    g_free(vm);
    g_free(stored);
    g_free(chunk);
    g_free(dirty);
    g_free(zero);
    g_free(disk);
    g_free(fsize);
}

static void json_info_fields(Json *j, const S2ESnapshotInfo *info)
{
    char *date = s2e_snapshot_format_time(info->date_sec, info->date_nsec);

    json_str(j, "name", info->name);
    json_str(j, "id", info->id);
    json_i64(j, "date_sec", info->date_sec);
    json_u64(j, "date_nsec", info->date_nsec);
    json_str(j, "date", date);
    json_i64(j, "vm_clock_nsec", info->vm_clock_nsec);
    if (info->icount == UINT64_MAX) {
        json_key(j, "icount");
        g_string_append(j->out, "null");
    } else {
        json_u64(j, "icount", info->icount);
    }
    json_u64(j, "vm_state_size", info->vm_state_size);
    json_u64(j, "disk_sectors", info->disk_sectors);
    json_u64(j, "dirty_sectors", info->dirty_sectors);
    json_u64(j, "data_sectors", info->dirty_sectors - info->zero_sectors);
    json_u64(j, "zero_sectors", info->zero_sectors);
    g_free(date);
}

static void info_json(const S2ESnapshot *snap, const char *image,
                      const GError *loads)
{
    const S2EBaseIdentity *base = s2e_snapshot_get_base(snap);
    Json j = { .out = g_string_new(NULL), .first = true };
    S2ESnapshotLayout l;

    s2e_snapshot_get_layout(snap, &l);
    json_open(&j, NULL, '{');
    json_str(&j, "file", s2e_snapshot_get_path(snap));
    json_bool(&j, "valid", true);
    json_u64(&j, "version", l.version);
    json_u64(&j, "header_length", l.header_length);
    json_u64(&j, "incompatible_features", l.incompatible_features);
    json_u64(&j, "compatible_features", l.compatible_features);
    json_u64(&j, "file_size", l.file_size);
    json_u64(&j, "chunk_size", l.chunk_size);
    json_u64(&j, "chunk_count", l.chunk_count);
    json_u64(&j, "vm_state_stored", l.vm_state_stored);
    json_u64(&j, "extent_count", l.extent_count);
    json_u64(&j, "zero_extent_count", l.zero_extent_count);
    json_bool(&j, "block_checksums", l.block_checksums);
    json_info_fields(&j, s2e_snapshot_get_info(snap));
    json_open(&j, "base", '{');
    json_u64(&j, "size", base->size);
    json_bool(&j, "has_mtime", base->has_mtime);
    if (base->has_mtime) {
        char *mtime = s2e_snapshot_format_time(base->mtime_sec,
                                               base->mtime_nsec);
        json_i64(&j, "mtime_sec", base->mtime_sec);
        json_u64(&j, "mtime_nsec", base->mtime_nsec);
        json_str(&j, "mtime", mtime);
        g_free(mtime);
    }
    json_close(&j, '}');
    json_str(&j, "image", image);
    json_bool(&j, "loads", !loads);
    json_error(&j, "load_error", loads);
    json_close(&j, '}');
    json_print(&j);
}

static void report_invalid(const Options *o, const char *file,
                           const GError *err)
{
    if (o->json) {
        Json j = { .out = g_string_new(NULL), .first = true };

        json_open(&j, NULL, '{');
        json_str(&j, "file", file);
        json_bool(&j, "valid", false);
        json_error(&j, "error", err);
        json_close(&j, '}');
        json_print(&j);
    } else {
        fprintf(stderr, "s2e-snapshot: %s\n", err->message);
    }
}

static int cmd_info(const Options *o)
{
    const char *file = o->args[0];
    GError *err = NULL;
    S2ESnapshot *snap = s2e_snapshot_open(file, NULL, NULL, &err);
    char *image;
    GError *loads;

    if (!snap) {
        report_invalid(o, file, err);
        g_error_free(err);
        return EXIT_INVALID;
    }
    image = image_of(file);
    loads = check_loads(snap, image);
    if (o->json) {
        info_json(snap, image, loads);
    } else {
        info_human(snap, image, loads);
    }
    g_clear_error(&loads);
    g_free(image);
    s2e_snapshot_close(snap);
    return 0;
}

/* ---- list --------------------------------------------------------------- */

typedef struct ListRow {
    const S2ESnapshotEntry *e;
    uint64_t file_size;
    GError *problem;        /* invalid or would not load */
} ListRow;

static void list_row_fill(ListRow *r, const S2ESnapshotEntry *e,
                          const char *image)
{
    struct stat st;
    S2ESnapshot *snap;

    r->e = e;
    r->file_size = stat(e->path, &st) == 0 ? (uint64_t)st.st_size : 0;
    r->problem = NULL;
    if (!e->valid) {
        g_set_error_literal(&r->problem, S2E_SNAPSHOT_ERROR,
                            S2E_SNAPSHOT_ERROR_CORRUPT,
                            e->problem ? e->problem : "invalid");
        return;
    }
    snap = s2e_snapshot_open(e->path, NULL, NULL, &r->problem);
    if (snap) {
        r->problem = check_loads(snap, image);
        s2e_snapshot_close(snap);
    }
}

static const char *row_status(const ListRow *r)
{
    if (!r->e->valid) {
        return "invalid";
    }
    return r->problem ? "no-load" : "ok";
}

static void list_human(const char *image, ListRow *rows, guint n)
{
    if (n == 0) {
        printf("No snapshots of '%s'.\n", image);
        return;
    }
    printf("%-20s %-8s %10s %10s %10s %10s  %s\n", "NAME", "STATUS",
           "VM STATE", "DISK DATA", "ZEROED", "FILE", "DATE");
    for (guint i = 0; i < n; i++) {
        const S2ESnapshotEntry *e = rows[i].e;
        const S2ESnapshotInfo *in = &e->info;
        char *vm = size_str(e->valid ? in->vm_state_size : 0);
        char *data = size_str(e->valid ? (in->dirty_sectors -
                                          in->zero_sectors) * 512 : 0);
        char *zero = size_str(e->valid ? in->zero_sectors * 512 : 0);
        char *fsize = size_str(rows[i].file_size);
        char *date = e->valid ? s2e_snapshot_format_time(in->date_sec,
                                                         in->date_nsec)
                              : g_strdup("-");

        printf("%-20s %-8s %10s %10s %10s %10s  %s\n", e->name,
               row_status(&rows[i]), e->valid ? vm : "-",
               e->valid ? data : "-", e->valid ? zero : "-", fsize, date);
        g_free(vm);
        g_free(data);
        g_free(zero);
        g_free(fsize);
        g_free(date);
    }
    for (guint i = 0; i < n; i++) {
        if (rows[i].problem) {
            printf("%s: %s\n", rows[i].e->name, rows[i].problem->message);
        }
    }
}

static void list_json(const char *image, ListRow *rows, guint n)
{
    Json j = { .out = g_string_new(NULL), .first = true };

    json_open(&j, NULL, '{');
    json_str(&j, "image", image);
    json_open(&j, "snapshots", '[');
    for (guint i = 0; i < n; i++) {
        const S2ESnapshotEntry *e = rows[i].e;

        json_open(&j, NULL, '{');
        json_str(&j, "name", e->name);
        json_str(&j, "path", e->path);
        json_u64(&j, "file_size", rows[i].file_size);
        json_bool(&j, "valid", e->valid);
        json_bool(&j, "loads", !rows[i].problem);
        json_str(&j, "status", row_status(&rows[i]));
        if (e->valid) {
            json_open(&j, "info", '{');
            json_info_fields(&j, &e->info);
            json_close(&j, '}');
        }
        json_error(&j, "problem", rows[i].problem);
        json_close(&j, '}');
    }
    json_close(&j, ']');
    json_close(&j, '}');
    json_print(&j);
}

static int cmd_list(const Options *o)
{
    const char *image = o->args[0];
    GError *err = NULL;
    GPtrArray *list = s2e_snapshot_list(image, o->snapshot_dir, &err);
    ListRow *rows;

    if (!list) {
        fprintf(stderr, "s2e-snapshot: %s\n", err->message);
        g_error_free(err);
        return EXIT_INVALID;
    }
    rows = g_new0(ListRow, list->len ? list->len : 1);
    for (guint i = 0; i < list->len; i++) {
        list_row_fill(&rows[i], g_ptr_array_index(list, i), image);
    }
    if (o->json) {
        list_json(image, rows, list->len);
    } else {
        list_human(image, rows, list->len);
    }
    for (guint i = 0; i < list->len; i++) {
        g_clear_error(&rows[i].problem);
    }
    g_free(rows);
    g_ptr_array_unref(list);
    return 0;
}

/* ---- verify ------------------------------------------------------------- */

typedef struct Verdict {
    char *path;
    GError *intact;     /* NULL when every check passed */
    GError *loads;      /* NULL when the base identity matches */
} Verdict;

static void verify_run(const Options *o, Verdict *v)
{
    const char *image = o->args[0];
    S2ESnapshot *snap;

    v->path = s2e_snapshot_path(image, o->snapshot_dir, o->args[1],
                                &v->intact);
    if (!v->path) {
        return;
    }
    snap = s2e_snapshot_open(v->path, NULL, NULL, &v->intact);
    if (!snap) {
        return;
    }
    s2e_snapshot_verify_all(snap, &v->intact);
    v->loads = check_loads(snap, image);
    s2e_snapshot_close(snap);
}

static int cmd_verify(const Options *o)
{
    Verdict v = { 0 };
    bool ok;

    verify_run(o, &v);
    ok = !v.intact && !v.loads;
    if (o->json) {
        Json j = { .out = g_string_new(NULL), .first = true };

        json_open(&j, NULL, '{');
        json_str(&j, "image", o->args[0]);
        json_str(&j, "name", o->args[1]);
        json_str(&j, "path", v.path);
        json_bool(&j, "ok", ok);
        json_bool(&j, "intact", !v.intact);
        json_error(&j, "error", v.intact ? v.intact : v.loads);
        json_close(&j, '}');
        json_print(&j);
    } else if (ok) {
        printf("OK: snapshot '%s' (%s) is intact and loads on '%s'\n",
               o->args[1], v.path, o->args[0]);
    } else {
        fprintf(stderr, "FAILED: %s\n", (v.intact ? v.intact
                                                  : v.loads)->message);
    }
    g_clear_error(&v.intact);
    g_clear_error(&v.loads);
    g_free(v.path);
    return ok ? 0 : EXIT_INVALID;
}

/* ---- Command line ------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: s2e-snapshot [OPTIONS] COMMAND ARGS...\n"
        "\n"
        "Inspect and check the snapshot files (IMAGE.NAME) of s2e images.\n"
        "\n"
        "Commands:\n"
        "  info FILE          header, base identity, sizes and date of a\n"
        "                     snapshot file, and whether it would load on\n"
        "                     the image beside it (FILE minus '.NAME')\n"
        "  list IMAGE         every snapshot of IMAGE with sizes and status\n"
        "                     (ok, no-load: base image changed, invalid)\n"
        "  verify IMAGE NAME  check every checksum of snapshot NAME and that\n"
        "                     it would load on IMAGE; exit 0 only then\n"
        "\n"
        "Options:\n"
        "  --json                 machine-readable output (one JSON object)\n"
        "  --snapshot-dir=DIR     snapshots live in DIR, not beside IMAGE\n"
        "  -h, --help             show this help\n"
        "\n"
        "Exit status: 0 success, 1 invalid or unloadable snapshot or error,\n"
        "2 usage error.\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "s2e-snapshot: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 's2e-snapshot --help'.\n");
    return EXIT_USAGE;
}

/* Returns -1 to go on, else an exit status. */
static int parse_option(Options *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];

    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(a, "--json")) {
        o->json = true;
        return -1;
    }
    if (g_str_has_prefix(a, "--snapshot-dir=")) {
        o->snapshot_dir = a + strlen("--snapshot-dir=");
        return -1;
    }
    if (!strcmp(a, "--snapshot-dir")) {
        if (*i + 1 >= argc) {
            return usage_error("option '%s' needs a directory", a);
        }
        o->snapshot_dir = argv[++*i];
        return -1;
    }
    return usage_error("unknown option '%s'", a);
}

static int parse_args(Options *o, int argc, char **argv)
{
    bool options_done = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!options_done && !strcmp(a, "--")) {
            options_done = true;
        } else if (!options_done && a[0] == '-' && a[1] != '\0') {
            int ret = parse_option(o, argc, argv, &i);
            if (ret >= 0) {
                return ret;
            }
        } else if (!o->command) {
            o->command = a;
        } else if (o->nargs < (int)G_N_ELEMENTS(o->args)) {
            o->args[o->nargs++] = a;
        } else {
            return usage_error("too many arguments ('%s')", a);
        }
    }
    return -1;
}

typedef struct Command {
    const char *name;
    int nargs;
    const char *args;
    int (*run)(const Options *o);
} Command;

static const Command commands[] = {
    { "info", 1, "FILE", cmd_info },
    { "list", 1, "IMAGE", cmd_list },
    { "verify", 2, "IMAGE NAME", cmd_verify },
};

int main(int argc, char **argv)
{
    Options o = { 0 };
    int ret = parse_args(&o, argc, argv);

    if (ret >= 0) {
        return ret;
    }
    if (!o.command) {
        usage(stderr);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        const Command *c = &commands[i];

        if (strcmp(o.command, c->name) != 0) {
            continue;
        }
        if (o.nargs != c->nargs) {
            fprintf(stderr, "s2e-snapshot: usage: s2e-snapshot %s %s\n",
                    c->name, c->args);
            return EXIT_USAGE;
        }
        return c->run(&o);
    }
    return usage_error("unknown command '%s'", o.command);
}
