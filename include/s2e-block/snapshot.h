/* SPDX-License-Identifier: GPL-2.0-or-later */
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
 *
 * Negative errno values returned with each error code:
 *   IO: the errno of the failed call     NOT_FOUND: -ENOENT
 *   BAD_VERSION, FEATURES: -ENOTSUP      CHECKSUM: -EIO
 *   BASE_CHANGED: -ESTALE                LIMIT: -EFBIG
 *   TRUNCATED: -EIO                      EXISTS: -EEXIST
 *   BAD_MAGIC, CORRUPT, INVALID: -EINVAL
 *
 * Threads: a writer is used by one thread at a time.  An open snapshot's
 * info, extent lookups and sector reads (s2e_snapshot_read_sectors(),
 * s2e_snapshot_readv()) may be used from any number of threads at once
 * (they only read); the VM state functions keep a one-chunk cache and
 * need one thread at a time.  There is no
 * global mutable state: any number of writers and snapshots may coexist.
 */
#ifndef S2E_BLOCK_SNAPSHOT_H
#define S2E_BLOCK_SNAPSHOT_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "s2e-block/extent.h"

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
    /* a file that is not a snapshot of this base is in the way */
    S2E_SNAPSHOT_ERROR_EXISTS,
} S2ESnapshotErrorCode;

/*
 * The negative errno of @error's code, as the table above gives it: for
 * callers that only hold the GError (functions returning a pointer).  An
 * I/O error's own errno is in the int a function returns, not in the
 * GError: this gives -EIO for it.  -EIO for a GError of another domain.
 */
int s2e_snapshot_error_errno(const GError *error);

/* Limits checked before any allocation or file creation. */
#define S2E_SNAPSHOT_NAME_MAX 255   /* bytes, no '/' and not "." / ".." */
#define S2E_SNAPSHOT_ID_MAX 127

/* What identifies the base image a snapshot was taken on. */
typedef struct S2EBaseIdentity {
    uint64_t size;       /* bytes */
    bool has_mtime;      /* false for bases that are not local files */
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    /*
     * Not identity, not recorded: the base file's permission bits (0 when
     * unknown).  A writer creates snapshot files with no more than its
     * read/write bits (0600 when unknown), less the umask.
     */
    uint32_t mode;
} S2EBaseIdentity;

/*
 * Fill @id from a local file (stat(), following symbolic links): its
 * size, its mtime to the nanosecond and its mode.  -errno and *error on
 * failure.
 */
int s2e_base_identity_from_path(const char *path, S2EBaseIdentity *id,
                                GError **error);

/*
 * ---- The base image file --------------------------------------------------
 *
 * What a snapshot records must be the file the guest actually read, not
 * whatever the path names when savevm runs: a base replaced by `mv` while
 * QEMU runs would make the snapshot record the new file, and it would then
 * load on it silently.  So the identity is taken from a descriptor at open
 * time, and later checked against both that descriptor (the file changed:
 * truncated, written) and the path (it now names another file, or none).
 */
typedef struct S2EBaseFile S2EBaseFile;

/*
 * Open @path read-only, keep the descriptor, record the file's identity
 * (fstat).  The path is kept absolute (made so against the current
 * directory, without resolving symbolic links, so names derived from it
 * follow the image's own name).  NULL and *error on failure.
 */
S2EBaseFile *s2e_base_file_open(const char *path, GError **error);
void s2e_base_file_close(S2EBaseFile *bf);   /* NULL accepted */

/* The absolute path, and the identity recorded at open. */
const char *s2e_base_file_path(const S2EBaseFile *bf);
const S2EBaseIdentity *s2e_base_file_identity(const S2EBaseFile *bf);

/*
 * 0 when the file opened is unchanged since (size and mtime, from its
 * descriptor) and the path still names it (same device and inode).
 * Otherwise -ESTALE and BASE_CHANGED, with a message naming the image and
 * saying what happened (changed while in use, replaced or renamed away),
 * or the error of a failed fstat.
 */
int s2e_base_file_check(const S2EBaseFile *bf, GError **error);

/*
 * @path made absolute against the current directory (a copy when it
 * already is); symbolic links and ".." are left as they are.  g_free().
 */
char *s2e_path_absolute(const char *path);

/*
 * "2024-05-01 12:00:00.123456789 +0200" (local time) for a timestamp, or
 * "@SECONDS.NANOSECONDS" when it cannot be represented.  g_free() it.
 */
char *s2e_snapshot_format_time(int64_t sec, uint32_t nsec);

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
    uint64_t dirty_sectors;   /* sectors the snapshot holds: data + zero */
    /* of those, sectors in zero extents (read as zeroes, no data stored) */
    uint64_t zero_sectors;
} S2ESnapshotInfo;

/*
 * 0 when @name may name a snapshot: non-empty, at most
 * S2E_SNAPSHOT_NAME_MAX bytes, no '/', not "." or "..".  Else -EINVAL and
 * *error (INVALID) saying why.
 */
int s2e_snapshot_check_name(const char *name, GError **error);

/*
 * The path of snapshot @name of @image_path: "<dir>/<base name>.<name>",
 * or "<snapshot_dir>/<base name>.<name>" when @snapshot_dir is not NULL.
 * NULL with *error for an invalid name. Free with g_free().
 */
char *s2e_snapshot_path(const char *image_path, const char *snapshot_dir,
                        const char *name, GError **error);

/* ---- Writing ------------------------------------------------------------ */

typedef struct S2ESnapshotWriter S2ESnapshotWriter;

/*
 * Start a snapshot that will be committed into directory @dir.  Creates
 * a temporary file in @dir at once (so the VM state can be streamed before
 * the snapshot's name is known), named after its creator:
 * ".s2e-snapshot.HOST.PIDNS.PID.RANDOM".  First removes the temporary
 * files in @dir that processes of this host (and PID namespace) which no
 * longer exist left behind (killed during a savevm); never those of live
 * processes or other hosts, never symbolic links or non-regular files.
 * @base is the identity recorded; @disk_sectors the disk size.  NULL and
 * *error on failure.
 */
S2ESnapshotWriter *s2e_snapshot_writer_new(const char *dir,
                                           const S2EBaseIdentity *base,
                                           uint64_t disk_sectors,
                                           GError **error);

/*
 * Options, to be set before the first s2e_snapshot_writer_put_vmstate().
 * The zlib level (0..9) of the VM state defaults to 0 (chunks stored raw,
 * each with its CRC: every level >= 1 made savevm several times slower
 * than qcow2), or to the value of the environment variable
 * S2E_SNAPSHOT_ZLIB_LEVEL when the writer is created.  The chunk size
 * (uncompressed bytes per independently compressed chunk; a power of two
 * from 4 KiB to 16 MiB) defaults to
 * 1 MiB; it bounds the writer's and the reader's memory use.  Both return
 * 0 or -EINVAL (INVALID) for a bad value or a late call.
 */
int s2e_snapshot_writer_set_zlib_level(S2ESnapshotWriter *w, int level,
                                       GError **error);
int s2e_snapshot_writer_set_chunk_size(S2ESnapshotWriter *w,
                                       uint32_t chunk_size, GError **error);

/*
 * Append VM state bytes.  @pos must equal the number of bytes appended so
 * far (QEMU streams sequentially from 0).  Memory use stays bounded (one
 * compression chunk) whatever the total size.
 */
int s2e_snapshot_writer_put_vmstate(S2ESnapshotWriter *w, uint64_t pos,
                                    const void *buf, size_t len,
                                    GError **error);

/*
 * Append dirty sectors (@count * 512 bytes at @data).  Calls must come in
 * ascending, non-overlapping sector order, inside the disk.  VM state and
 * sectors may be appended in any interleaving.  A @count of 0 does
 * nothing.
 *
 * Failures of these calls: a bad argument (INVALID, LIMIT) leaves the
 * writer as it was; an I/O error makes it dead: its temporary file is
 * removed at once and every later call fails; abort it (or commit, which
 * fails) to free it.
 */
int s2e_snapshot_writer_add_sectors(S2ESnapshotWriter *w, uint64_t sector,
                                    uint64_t count, const void *data,
                                    GError **error);

/*
 * Append a run of @count sectors that read as zeroes (e.g. a range the
 * guest wrote zeroes to).  Nothing but an index entry is written: O(1)
 * time and file space whatever @count, so a multi-TiB zeroed range costs
 * 32 bytes.  Same ordering, range and failure rules as
 * s2e_snapshot_writer_add_sectors(), with which it may be interleaved
 * (the runs of both kinds together must be ascending and not overlap).
 * Adjacent zero runs are merged into one extent.  A @count of 0 does
 * nothing.  A snapshot with zero extents sets an incompatible feature bit:
 * s2e-block versions that predate zero extents refuse it (FEATURES)
 * rather than misread it; snapshots without keep the old format.
 */
int s2e_snapshot_writer_add_zero_sectors(S2ESnapshotWriter *w,
                                         uint64_t sector, uint64_t count,
                                         GError **error);

/*
 * Finish: write indexes and header, fsync, rename to @final_path (which
 * must be in the writer's directory), fsync the directory.  @info's
 * vm_state_size, disk_sectors, dirty_sectors and zero_sectors are filled
 * by the writer.
 * An existing @final_path is replaced only when it is a valid snapshot
 * whose recorded base identity equals the writer's; anything else (a file
 * without the snapshot magic, a symbolic link or other non-regular file,
 * a damaged snapshot, a snapshot of another base) makes the commit fail
 * with EXISTS (-EEXIST), naming the file, before the temporary file is
 * finished.
 * The writer is freed whatever the outcome; on failure the temporary file
 * is removed and any existing @final_path is left as it was.  One
 * exception: when only the final fsync of the directory fails, the new
 * snapshot is already in place (and readable) but may not survive a crash;
 * the error message says so.
 */
int s2e_snapshot_writer_commit(S2ESnapshotWriter *w, const char *final_path,
                               const S2ESnapshotInfo *info, GError **error);

/* Abandon: remove the temporary file and free.  NULL is accepted. */
void s2e_snapshot_writer_abort(S2ESnapshotWriter *w);

/* ---- Reading ------------------------------------------------------------ */

typedef struct S2ESnapshot S2ESnapshot;

/*
 * Open and validate @path: size, magic, version, incompatible features,
 * header checksum, every offset/length against the file size, the index.
 * When @base is not NULL, also refuse (S2E_SNAPSHOT_ERROR_BASE_CHANGED)
 * if the recorded base identity differs from @base; @image_label names the
 * base image in that message.  The checks run in the order given in
 * docs/snapshot-format.md ("Validation"), each with its own error code
 * (NOT_FOUND when there is no such file).  The file is opened read-only
 * with O_CLOEXEC; only the header and the indexes are read.
 */
S2ESnapshot *s2e_snapshot_open(const char *path, const char *image_label,
                               const S2EBaseIdentity *base, GError **error);
void s2e_snapshot_close(S2ESnapshot *snap);   /* NULL accepted */

const S2ESnapshotInfo *s2e_snapshot_get_info(const S2ESnapshot *snap);
const S2EBaseIdentity *s2e_snapshot_get_base(const S2ESnapshot *snap);
const char *s2e_snapshot_get_path(const S2ESnapshot *snap);

/*
 * The base identity check of s2e_snapshot_open(), for a snapshot opened
 * with @base NULL: 0, or -ESTALE and BASE_CHANGED with a message naming
 * @image_label, the snapshot, both sizes or timestamps and the remedy.
 * When either side has no mtime, only the sizes are compared.
 */
int s2e_snapshot_check_base(const S2ESnapshot *snap, const char *image_label,
                            const S2EBaseIdentity *base, GError **error);

/* How the file is laid out (for tools and statistics). */
typedef struct S2ESnapshotLayout {
    uint32_t version;
    uint32_t header_length;       /* bytes, fixed part + name + id */
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t file_size;           /* bytes */
    uint32_t chunk_size;          /* uncompressed bytes per VM state chunk */
    uint64_t chunk_count;
    uint64_t vm_state_stored;     /* bytes of VM state in the file */
    uint64_t extent_count;        /* runs of dirty sectors, both kinds */
    uint64_t zero_extent_count;   /* of those, zero extents */
    /*
     * sector data checksummed per 4 KiB block and verified when read (version
     * 2); false: read unverified (version 1)
     */
    bool block_checksums;
} S2ESnapshotLayout;

void s2e_snapshot_get_layout(const S2ESnapshot *snap,
                             S2ESnapshotLayout *layout);

/*
 * Whether the run at @sector is held by the snapshot (as data or as a
 * zero extent); its length in *count (1 .. max_count).  Returns true when
 * held.  A sector at or past the disk end is not held (*count =
 * max_count); *count = 0 when @max_count is 0.
 */
bool s2e_snapshot_extent(const S2ESnapshot *snap, uint64_t sector,
                         uint64_t max_count, uint64_t *count);

/*
 * The kind of the run at @sector and its length in *count (1 ..
 * max_count): the following sectors up to *count are all of that kind.
 * DATA is stored in the file, ZERO reads as zeroes with nothing stored,
 * ABSENT is not in the snapshot (read the base image).  At or past the
 * disk end: ABSENT with *count = max_count; *count = 0 (and ABSENT) when
 * @max_count is 0.
 */
S2EExtentKind s2e_snapshot_extent_kind(const S2ESnapshot *snap,
                                       uint64_t sector, uint64_t max_count,
                                       uint64_t *count);

/*
 * Read held sectors (every sector of the range must be held, as data or
 * zero extent, else -EINVAL and INVALID): data with pread, zero extents
 * as zeroes.  In files with block checksums (format version 2, see
 * S2ESnapshotLayout) every 4 KiB block of data is checked against its
 * checksum the first time any of it is read through this handle: a
 * mismatch fails the read with CHECKSUM (-EIO) and the contents of @buf
 * are then undefined.  Version 1 data is read unverified (only
 * s2e_snapshot_verify_all() checks it).  -errno and *error on failure;
 * a file truncated under the reader gives TRUNCATED (-EIO).
 */
int s2e_snapshot_read_sectors(const S2ESnapshot *snap, uint64_t sector,
                              uint64_t count, void *buf, GError **error);

/*
 * Called by s2e_snapshot_readv() for each run of sectors the snapshot
 * does not hold, in ascending order.  A negative errno stops the read and
 * is returned (with *error set as the callback sets it).
 */
typedef int S2ESnapshotAbsentFn(void *opaque, uint64_t sector,
                                uint64_t count, GError **error);

/*
 * Read [sector, sector + count) into @iov at the matching position, as
 * s2e_snapshot_read_sectors() reads held sectors (data with preadv
 * straight into the vector, zero extents as zeroes, version 2 blocks
 * checked): one walk of the extent index for the whole range.  Sectors the
 * snapshot does not hold leave their part of @iov as it was and are handed
 * to @absent when it is not NULL.  -EINVAL (INVALID) for a range outside
 * the disk or a vector shorter than the range.  Same thread rule as
 * s2e_snapshot_read_sectors().
 *
 * With S2E_SNAPSHOT_READ_NOWAIT in @flags nothing waits for the disk:
 * when the page cache does not hold all the data the read needs, it
 * returns -EAGAIN without setting *error, and the vector's contents and
 * the runs already handed to @absent are to be discarded; read again
 * without the flag, where waiting does no harm (a worker thread).  This
 * lets an event loop serve cached data at once.
 */
#define S2E_SNAPSHOT_READ_NOWAIT 1u
int s2e_snapshot_readv(const S2ESnapshot *snap, uint64_t sector,
                       uint64_t count, const struct iovec *iov, int iovcnt,
                       unsigned flags, S2ESnapshotAbsentFn *absent,
                       void *opaque, GError **error);

/*
 * Read VM state at @pos; bytes past the end read as zeroes (QEMU's last
 * read overruns).  Verifies each chunk's checksum.  Returns 0 or -errno.
 */
int s2e_snapshot_read_vmstate(S2ESnapshot *snap, uint64_t pos, void *buf,
                              size_t len, GError **error);

/*
 * Check the checksum of every VM state chunk, as stored (without
 * decompressing: a chunk whose checksum matches is what the writer wrote).
 * Reads the whole stored VM state in one-chunk steps; loadvm calls it
 * before it changes anything, so a damaged VM state is refused while the
 * disk view is still the old one.  Same thread rule as the VM state
 * reads.
 */
int s2e_snapshot_verify_vmstate(S2ESnapshot *snap, GError **error);

/*
 * Check everything: every chunk checksum and decompression, every
 * extent's (version 1) or block's (version 2) data checksum.  Used by
 * `s2e-snapshot verify`.  Reads the whole file in bounded steps.
 */
int s2e_snapshot_verify_all(S2ESnapshot *snap, GError **error);

/* ---- Listing ------------------------------------------------------------ */

typedef struct S2ESnapshotEntry {
    char *name;            /* the NAME in IMAGE.NAME */
    char *path;
    bool valid;            /* header parsed and validated */
    S2ESnapshotInfo info;  /* meaningful when valid */
    char *problem;         /* why not valid, or NULL */
} S2ESnapshotEntry;

/*
 * Every regular file "<base name of image>.NAME" in @snapshot_dir (or the
 * image's directory when NULL) that starts with the snapshot magic; files
 * without the magic (the image itself, the writer's temporary files,
 * anything else) are not snapshots and are skipped.  `valid` says whether
 * the file opens (s2e_snapshot_open() without a base); the base identity
 * is not checked here.  Sorted by name. Returns a
 * GPtrArray of S2ESnapshotEntry* with a free function set, or NULL and
 * *error when the directory cannot be read.
 */
GPtrArray *s2e_snapshot_list(const char *image_path, const char *snapshot_dir,
                             GError **error);

/*
 * Remove snapshot @name of @image_path.  Refuses (INVALID) to remove a
 * file that is not an s2e snapshot.  NOT_FOUND when there is none.
 */
int s2e_snapshot_delete(const char *image_path, const char *snapshot_dir,
                        const char *name, GError **error);

/*
 * Move snapshot @name out of the way instead of deleting it at once: the
 * checks of s2e_snapshot_delete(), then a rename to a hidden temporary
 * name in the same directory (never listed, never loaded; removed by the
 * next writer there once this process is gone).  *aside (g_free()) is its
 * path: pass it to s2e_snapshot_restore_aside() to undo, or unlink() it
 * to finish the delete.  Lets a failed `savevm NAME` keep the old NAME.
 */
int s2e_snapshot_set_aside(const char *image_path, const char *snapshot_dir,
                           const char *name, char **aside, GError **error);

/*
 * Put a snapshot set aside back as @name, unless a file of that name
 * appeared meanwhile (EXISTS; it then stays at @aside).
 */
int s2e_snapshot_restore_aside(const char *aside, const char *image_path,
                               const char *snapshot_dir, const char *name,
                               GError **error);

#ifdef __cplusplus
}
#endif

#endif /* S2E_BLOCK_SNAPSHOT_H */
