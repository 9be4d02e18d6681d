/*
 * s2e-block snapshots: the file IMAGE.NAME that `savevm NAME` writes beside
 * an s2e image, holding the VM state and the dirty disk sectors.
 *
 * The on-disk format is documented in docs/snapshot-format.md.  A snapshot
 * file is written once (to a temporary file, fsynced, renamed into place,
 * directory fsynced) and never modified afterwards; any number of processes
 * may open it read-only at once.  Reads use pread(), so there is no shared
 * file offset and a forked process may keep using an open snapshot.
 *
 * Errors are reported through GError (domain S2E_SNAPSHOT_ERROR) with a
 * message naming the file and what is wrong, suitable to show a user as is.
 * Functions returning int return 0 on success, a negative errno on error
 * (and set *error).  No function aborts or exits on bad input.
 *
 * Units: sectors are 512 bytes (S2E_SECTOR_SIZE from overlay.h); VM state
 * positions and lengths are in bytes.
 */
#ifndef S2E_BLOCK_SNAPSHOT_H
#define S2E_BLOCK_SNAPSHOT_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define S2E_SNAPSHOT_ERROR (s2e_snapshot_error_quark())
GQuark s2e_snapshot_error_quark(void);

/* Error codes of the S2E_SNAPSHOT_ERROR domain: one per validation step. */
typedef enum S2ESnapshotErrorCode {
    S2E_SNAPSHOT_ERROR_IO,            /* an I/O error (message has strerror) */
    S2E_SNAPSHOT_ERROR_NOT_FOUND,     /* no such snapshot file */
    S2E_SNAPSHOT_ERROR_TRUNCATED,     /* file shorter than its header says */
    S2E_SNAPSHOT_ERROR_BAD_MAGIC,     /* not an s2e snapshot file */
    S2E_SNAPSHOT_ERROR_BAD_VERSION,   /* unsupported format version */
    S2E_SNAPSHOT_ERROR_FEATURES,      /* unknown incompatible feature bits */
    S2E_SNAPSHOT_ERROR_CHECKSUM,      /* header or chunk checksum mismatch */
    S2E_SNAPSHOT_ERROR_CORRUPT,       /* offsets/lengths/index inconsistent */
    S2E_SNAPSHOT_ERROR_BASE_CHANGED,  /* base image identity differs */
    S2E_SNAPSHOT_ERROR_INVALID,       /* bad argument (name, order, range) */
    S2E_SNAPSHOT_ERROR_LIMIT,         /* a hard size limit exceeded */
} S2ESnapshotErrorCode;

/* Limits checked before any allocation or file creation. */
#define S2E_SNAPSHOT_NAME_MAX 255   /* bytes, no '/' and not "." / ".." */
#define S2E_SNAPSHOT_ID_MAX 127

/* What identifies the base image a snapshot was taken on. */
typedef struct S2EBaseIdentity {
    uint64_t size;       /* bytes */
    bool has_mtime;      /* false for bases that are not local files */
    int64_t mtime_sec;
    uint32_t mtime_nsec;
} S2EBaseIdentity;

/* Fill @id from a local file (stat()).  -errno and *error on failure. */
int s2e_base_identity_from_path(const char *path, S2EBaseIdentity *id,
                                GError **error);

/* QEMU's snapshot info, as recorded in the file. */
typedef struct S2ESnapshotInfo {
    char name[S2E_SNAPSHOT_NAME_MAX + 1];
    char id[S2E_SNAPSHOT_ID_MAX + 1];
    int64_t date_sec;
    uint32_t date_nsec;
    int64_t vm_clock_nsec;
    uint64_t icount;          /* (uint64_t)-1 when not recorded */
    uint64_t vm_state_size;   /* uncompressed bytes; 0 when no VM state */
    uint64_t disk_sectors;    /* size of the disk in sectors */
    uint64_t dirty_sectors;   /* sectors stored in the file */
} S2ESnapshotInfo;

/* The path of snapshot @name of @image_path: "<dir>/<base name>.<name>",
 * or "<snapshot_dir>/<base name>.<name>" when @snapshot_dir is not NULL.
 * NULL with *error for an invalid name. Free with g_free(). */
char *s2e_snapshot_path(const char *image_path, const char *snapshot_dir,
                        const char *name, GError **error);

/* ---- Writing ------------------------------------------------------------ */

typedef struct S2ESnapshotWriter S2ESnapshotWriter;

/* Start a snapshot that will be committed into directory @dir.  Creates
 * a temporary file in @dir at once (so the VM state can be streamed before
 * the snapshot's name is known).  @base is the identity recorded;
 * @disk_sectors the disk size.  NULL and *error on failure. */
S2ESnapshotWriter *s2e_snapshot_writer_new(const char *dir,
                                           const S2EBaseIdentity *base,
                                           uint64_t disk_sectors,
                                           GError **error);

/* Append VM state bytes.  @pos must equal the number of bytes appended so
 * far (QEMU streams sequentially from 0).  Memory use stays bounded (one
 * compression chunk) whatever the total size. */
int s2e_snapshot_writer_put_vmstate(S2ESnapshotWriter *w, uint64_t pos,
                                    const void *buf, size_t len,
                                    GError **error);

/* Append dirty sectors.  Calls must come in ascending, non-overlapping
 * sector order, inside the disk. */
int s2e_snapshot_writer_add_sectors(S2ESnapshotWriter *w, uint64_t sector,
                                    uint64_t count, const void *data,
                                    GError **error);

/* Finish: write indexes and header, fsync, rename to @final_path (which
 * must be in the writer's directory), fsync the directory.  @info's
 * vm_state_size, disk_sectors and dirty_sectors are filled by the writer.
 * The writer is freed whatever the outcome; on failure the temporary file
 * is removed and any existing @final_path is left as it was. */
int s2e_snapshot_writer_commit(S2ESnapshotWriter *w, const char *final_path,
                               const S2ESnapshotInfo *info, GError **error);

/* Abandon: remove the temporary file and free.  NULL is accepted. */
void s2e_snapshot_writer_abort(S2ESnapshotWriter *w);

/* ---- Reading ------------------------------------------------------------ */

typedef struct S2ESnapshot S2ESnapshot;

/* Open and validate @path: size, magic, version, incompatible features,
 * header checksum, every offset/length against the file size, the index.
 * When @base is not NULL, also refuse (S2E_SNAPSHOT_ERROR_BASE_CHANGED)
 * if the recorded base identity differs from @base; @image_label names the
 * base image in that message.  The file is opened read-only. */
S2ESnapshot *s2e_snapshot_open(const char *path, const char *image_label,
                               const S2EBaseIdentity *base, GError **error);
void s2e_snapshot_close(S2ESnapshot *snap);   /* NULL accepted */

const S2ESnapshotInfo *s2e_snapshot_get_info(const S2ESnapshot *snap);
const S2EBaseIdentity *s2e_snapshot_get_base(const S2ESnapshot *snap);
const char *s2e_snapshot_get_path(const S2ESnapshot *snap);

/* Whether the run at @sector is stored in the snapshot; its length in
 * *count (1 .. max_count).  Returns true when stored. */
bool s2e_snapshot_extent(const S2ESnapshot *snap, uint64_t sector,
                         uint64_t max_count, uint64_t *count);

/* Read stored sectors (every sector of the range must be stored) with
 * pread.  -errno and *error on failure. */
int s2e_snapshot_read_sectors(const S2ESnapshot *snap, uint64_t sector,
                              uint64_t count, void *buf, GError **error);

/* Read VM state at @pos; bytes past the end read as zeroes (QEMU's last
 * read overruns).  Verifies each chunk's checksum.  Returns 0 or -errno. */
int s2e_snapshot_read_vmstate(S2ESnapshot *snap, uint64_t pos, void *buf,
                              size_t len, GError **error);

/* Check everything: every chunk checksum and decompression, sector data
 * readable.  Used by `s2e-snapshot verify`. */
int s2e_snapshot_verify_all(S2ESnapshot *snap, GError **error);

/* ---- Listing ------------------------------------------------------------ */

typedef struct S2ESnapshotEntry {
    char *name;            /* the NAME in IMAGE.NAME */
    char *path;
    bool valid;            /* header parsed and validated */
    S2ESnapshotInfo info;  /* meaningful when valid */
    char *problem;         /* why not valid, or NULL */
} S2ESnapshotEntry;

/* Every file "<base name of image>.*" in @snapshot_dir (or the image's
 * directory when NULL) that starts with the snapshot magic; files without
 * the magic are not snapshots and are skipped.  Sorted by name. Returns a
 * GPtrArray of S2ESnapshotEntry* with a free function set, or NULL and
 * *error when the directory cannot be read. */
GPtrArray *s2e_snapshot_list(const char *image_path, const char *snapshot_dir,
                             GError **error);

/* Remove snapshot @name of @image_path.  Refuses (INVALID) to remove a
 * file that is not an s2e snapshot.  NOT_FOUND when there is none. */
int s2e_snapshot_delete(const char *image_path, const char *snapshot_dir,
                        const char *name, GError **error);

#ifdef __cplusplus
}
#endif

#endif /* S2E_BLOCK_SNAPSHOT_H */
