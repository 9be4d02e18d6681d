/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Errors of the snapshot module.
 *
 * Every failure is reported twice, consistently: a GError of the
 * S2E_SNAPSHOT_ERROR domain whose code says which validation step or
 * operation failed and whose message can be shown to a user as is (it
 * names the file and what is wrong), and a negative errno return value for
 * callers that only propagate errnos (the QEMU glue).  The mapping from
 * code to errno is fixed here and documented in snapshot.h, so the two
 * never disagree.
 *
 * The helpers accept error == NULL (the caller does not want the details)
 * and never overwrite an error already set (GLib would warn): the first
 * error found is the one reported.
 */
#include "snapshot-int.h"

#include <errno.h>
#include <string.h>

GQuark s2e_snapshot_error_quark(void)
{
    return g_quark_from_static_string("s2e-snapshot-error-quark");
}

int s2e_snap_code_errno(S2ESnapshotErrorCode code)
{
    switch (code) {
    case S2E_SNAPSHOT_ERROR_NOT_FOUND:
        return -ENOENT;
    case S2E_SNAPSHOT_ERROR_BAD_VERSION:
    case S2E_SNAPSHOT_ERROR_FEATURES:
        return -ENOTSUP;
    case S2E_SNAPSHOT_ERROR_CHECKSUM:
    case S2E_SNAPSHOT_ERROR_IO:
    case S2E_SNAPSHOT_ERROR_TRUNCATED:
        /* Data missing or wrong: an I/O error to whoever reads it. */
        return -EIO;
    case S2E_SNAPSHOT_ERROR_EXISTS:
        return -EEXIST;
    case S2E_SNAPSHOT_ERROR_BASE_CHANGED:
        return -ESTALE;
    case S2E_SNAPSHOT_ERROR_LIMIT:
        return -EFBIG;
    case S2E_SNAPSHOT_ERROR_BAD_MAGIC:
    case S2E_SNAPSHOT_ERROR_CORRUPT:
    case S2E_SNAPSHOT_ERROR_INVALID:
    default:
        return -EINVAL;
    }
}

int s2e_snapshot_error_errno(const GError *error)
{
    if (!error || error->domain != S2E_SNAPSHOT_ERROR) {
        return -EIO;
    }
    return s2e_snap_code_errno(error->code);
}

static void set_message(GError **error, S2ESnapshotErrorCode code,
                        char *message)
{
    if (error && !*error) {
        g_set_error_literal(error, S2E_SNAPSHOT_ERROR, code, message);
    }
    g_free(message);
}

int s2e_snap_error(GError **error, S2ESnapshotErrorCode code,
                   const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_message(error, code, g_strdup_vprintf(fmt, ap));
    va_end(ap);
    return s2e_snap_code_errno(code);
}

int s2e_snap_error_errno(GError **error, int err, const char *fmt, ...)
{
    S2ESnapshotErrorCode code;
    va_list ap;
    char *what;

    if (err <= 0) {
        err = EIO;
    }
    code = err == ENOENT ? S2E_SNAPSHOT_ERROR_NOT_FOUND
                         : S2E_SNAPSHOT_ERROR_IO;
    va_start(ap, fmt);
    what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    set_message(error, code, g_strdup_printf("%s: %s", what,
                                             g_strerror(err)));
    g_free(what);
    return -err;
}
