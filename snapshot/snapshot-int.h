/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private declarations of the snapshot module, shared by its .c files and
 * by the unit tests and the fuzz target (never installed).
 *
 * The module is split by concern:
 *
 *   snapshot-error.c     error domain, errno mapping, message helpers
 *   snapshot-format.c    the codec: bytes <-> structs, pure functions,
 *                        every validation rule of docs/snapshot-format.md
 *   snapshot-io.c        preadv/pwrite/fsync loops with the fault hook,
 *                        opening regular files only
 *   snapshot-checksum.c  the data checksum (XXH3) of version 2 files,
 *                        and its AVX2 build (snapshot-checksum-avx2.c)
 *   snapshot-identity.c  base image identity: stat, compare, timestamps
 *   snapshot-writer.c    streaming writer: temp file -> fsync -> rename
 *   snapshot-reader.c    validated open, lazy sector and VM state reads
 *   snapshot-list.c      path building, listing and deleting snapshots
 *   snapshot-temp.c      temporary file names naming their creator, and
 *                        removal of those left by dead processes
 *
 * The on-disk constants below are the format; changing one is a format
 * change (see docs/snapshot-format.md, "Versioning").
 */
#ifndef S2E_SNAPSHOT_INT_H
#define S2E_SNAPSHOT_INT_H

#include "s2e-block/snapshot.h"

#include <stdarg.h>
#include <sys/types.h>

/* ---- On-disk constants --------------------------------------------------- */

#define S2E_SNAP_MAGIC "\x89S2ESNAP"
#define S2E_SNAP_MAGIC_LEN 8
/*
 * Version 1: one zlib CRC-32 per run of sector data, checked only by a
 * full verification.  Read, never written (except by tests).
 */
#define S2E_SNAP_VERSION_1 1
/*
 * Version 2, written: a checksum per 4 KiB block of sector data, checked
 * when the block is first read, and data checksums on VM state chunks.
 */
#define S2E_SNAP_VERSION_2 2
#define S2E_SNAP_VERSION S2E_SNAP_VERSION_2

/* The header page: header, name and id, zero padding.  Data starts here. */
#define S2E_SNAP_HEADER_AREA 4096u
/* Length of the fixed part of a version 1 header. */
#define S2E_SNAP_HEADER_V1_LEN 176u
/* Version 2 adds the block checksum table's offset and entry count. */
#define S2E_SNAP_HEADER_V2_LEN 192u

/*
 * Version 2 block checksums: a block is the part of a data extent inside
 * one 4 KiB-aligned stretch of the disk (sectors 8k .. 8k+7), so a guest
 * page is one block whatever the extent's bounds.  Each has a 4-byte
 * checksum in the table, extents in index order, blocks in disk order.
 */
#define S2E_SNAP_BLOCK_SECTORS 8u
#define S2E_SNAP_BLOCK_CSUM_SIZE 4u

/*
 * Incompatible feature bit 0: the extent index holds zero extents (entry
 * flag S2E_SNAP_EXTENT_ZERO).  Set by the writer exactly when it wrote one;
 * a reader refuses a zero extent in a file without it (a reader that
 * predates zero extents would take the run for stored data).
 */
#define S2E_SNAP_INCOMPAT_ZERO_EXTENTS (UINT64_C(1) << 0)

/* Feature bits known to this implementation. */
#define S2E_SNAP_INCOMPAT_KNOWN S2E_SNAP_INCOMPAT_ZERO_EXTENTS
#define S2E_SNAP_COMPAT_KNOWN UINT64_C(0)

/* base_flags */
#define S2E_SNAP_BASE_HAS_MTIME 1u

/* VM state chunks: uncompressed size, a power of two in this range. */
#define S2E_SNAP_CHUNK_MIN (4u * 1024)
#define S2E_SNAP_CHUNK_MAX (16u * 1024 * 1024)
#define S2E_SNAP_CHUNK_DEFAULT (1u * 1024 * 1024)

/*
 * Chunk index entry: offset u64, stored_len u32, crc32 u32, flags u32,
 * reserved u32.
 */
#define S2E_SNAP_CHUNK_ENTRY_SIZE 24u
#define S2E_SNAP_CHUNK_RAW 1u      /* stored uncompressed */
#define S2E_SNAP_CHUNK_FLAGS_KNOWN S2E_SNAP_CHUNK_RAW

/*
 * Extent index entry: sector u64, count u64, offset u64, crc32 u32,
 * flags u32 (reserved, always 0, before zero extents existed).
 */
#define S2E_SNAP_EXTENT_ENTRY_SIZE 32u
/* The run reads as zeroes; nothing is stored (offset and crc are 0). */
#define S2E_SNAP_EXTENT_ZERO 1u
#define S2E_SNAP_EXTENT_FLAGS_KNOWN S2E_SNAP_EXTENT_ZERO

/*
 * Sector data placement: an extent starting at sector S is stored at a file
 * offset congruent to S * 512 modulo this, so guest pages are file pages.
 */
#define S2E_SNAP_DATA_ALIGN 4096u

#define S2E_SNAP_SECTOR_SIZE 512u
/* Largest disk a snapshot describes: 2^63 bytes (as the overlay). */
#define S2E_SNAP_MAX_SECTORS (UINT64_C(1) << 54)

/*
 * Level 0 (chunks stored raw) is the default: measured with
 * bench/bench-snapshot.py, every level >= 1 made savevm 9-18x slower than
 * qcow2's (zlib runs at 25-60 MiB/s a core here, qcow2 stores the VM state
 * at 600-800 MiB/s); S2E_SNAPSHOT_ZLIB_LEVEL=1 gives ~36% smaller files of
 * compressible RAM for that cost.
 */
#define S2E_SNAP_ZLIB_LEVEL_DEFAULT 0
#define S2E_SNAP_ZLIB_LEVEL_ENV "S2E_SNAPSHOT_ZLIB_LEVEL"

/*
 * The writer's temporary files (hidden, never listed as snapshots):
 *   .s2e-snapshot.HOST.PIDNS.PID.RANDOM
 * naming the process that created them, so that a later writer can remove
 * those of dead processes of its own host (see snapshot-temp.c).  Files
 * of the first writers were ".s2e-snapshot-XXXXXX" (creator unknown: never
 * removed, never listed).
 */
#define S2E_SNAP_TEMP_PREFIX ".s2e-snapshot."
#define S2E_SNAP_TEMP_PREFIX_OLD ".s2e-snapshot-"

/* ---- Decoded structures ------------------------------------------------- */

typedef struct S2ESnapHeader {
    uint32_t version;
    uint32_t header_length;       /* fixed part, >= the version's length */
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint32_t header_crc;
    S2EBaseIdentity base;
    S2ESnapshotInfo info;         /* name, id, date, clocks, sizes */
    uint64_t file_size;
    uint32_t chunk_size;
    uint32_t chunk_index_crc;
    uint64_t chunk_count;
    uint64_t chunk_index_offset;
    uint64_t extent_count;
    uint64_t extent_index_offset;
    uint32_t extent_index_crc;
    uint64_t block_csum_offset;   /* version 2: the block checksum table */
    uint64_t block_csum_count;    /* version 2: its entries */
} S2ESnapHeader;

typedef struct S2ESnapChunk {
    uint64_t offset;
    uint32_t stored_len;
    uint32_t crc;
    uint32_t flags;
} S2ESnapChunk;

typedef struct S2ESnapExtent {
    uint64_t sector;
    uint64_t count;
    uint64_t offset;          /* 0 for a zero extent */
    /* version 1 data extent: CRC-32 of its data; else 0 */
    uint32_t crc;
    uint32_t flags;           /* S2E_SNAP_EXTENT_* */
    /* not on disk: version 2 data extent: index of its first block checksum */
    uint64_t first_csum;
} S2ESnapExtent;

/* ---- Little-endian codec (snapshot-format.c) ---------------------------- */

uint16_t s2e_snap_get_le16(const uint8_t *p);
uint32_t s2e_snap_get_le32(const uint8_t *p);
uint64_t s2e_snap_get_le64(const uint8_t *p);
void s2e_snap_put_le16(uint8_t *p, uint16_t v);
void s2e_snap_put_le32(uint8_t *p, uint32_t v);
void s2e_snap_put_le64(uint8_t *p, uint64_t v);

/*
 * crc32 (zlib) over any length: header and indexes, and in version 1
 * files VM state chunks and runs of sector data.
 */
uint32_t s2e_snap_crc32(uint32_t crc, const void *buf, size_t len);

/* ---- Data checksum (snapshot-checksum.c) -------------------------------- */

/*
 * The checksum of version 2 blocks and VM state chunks: the low 32 bits
 * of XXH3-64 (seed 0).  Chosen by measurement (bench/bench-checksum.c):
 * the fastest of zlib crc32, CRC-32C (SSE4.2) and XXH3 here, and
 * portable; uses AVX2 when the CPU has it (same values).
 */
uint32_t s2e_snap_data_csum(const void *buf, size_t len);

/* Its AVX2 build (snapshot-checksum-avx2.c), for CPUs that have AVX2. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define S2E_SNAP_HAVE_AVX2 1
uint32_t s2e_snap_data_csum_avx2(const void *buf, size_t len);
#endif

/*
 * The same over pieces: reset, update any number of times, digest.
 * new() returns NULL when out of memory.
 */
typedef struct S2ESnapCsumStream S2ESnapCsumStream;
S2ESnapCsumStream *s2e_snap_csum_stream_new(void);
void s2e_snap_csum_stream_free(S2ESnapCsumStream *st);
void s2e_snap_csum_stream_reset(S2ESnapCsumStream *st);
void s2e_snap_csum_stream_update(S2ESnapCsumStream *st, const void *buf,
                                 size_t len);
uint32_t s2e_snap_csum_stream_digest(const S2ESnapCsumStream *st);

/* The checksum a chunk or version 1 run records: @version's algorithm. */
uint32_t s2e_snap_chunk_csum(uint32_t version, const void *buf, size_t len);

/*
 * Blocks of a data extent: the first block index (sector / 8) and how
 * many 4 KiB-aligned stretches of the disk its sectors touch.
 */
uint64_t s2e_snap_extent_blocks(uint64_t sector, uint64_t count);

/* Total bytes of the header: fixed part + name + id. */
size_t s2e_snap_header_total_len(const S2ESnapHeader *h);

/*
 * Encode @h into @page (S2E_SNAP_HEADER_AREA bytes, zero padded) with its
 * checksum; fills h->header_crc.  The caller has checked the name and id
 * lengths (s2e_snap_check_info()).
 */
void s2e_snap_header_encode(S2ESnapHeader *h, uint8_t *page);

/* Validate @info's strings and ranges before it is written. */
int s2e_snap_check_info(const S2ESnapshotInfo *info, GError **error);

/*
 * Decode and validate the header page (the first S2E_SNAP_HEADER_AREA
 * bytes of a file of @file_size bytes, already checked to be at least
 * that long): magic, version, features, checksum, field ranges, then
 * every table offset and length against @file_size.  @path names the
 * file in messages.
 */
int s2e_snap_header_decode(const uint8_t *page, uint64_t file_size,
                           const char *path, S2ESnapHeader *h,
                           GError **error);

/*
 * Decode and validate the chunk index (@buf holds h->chunk_count entries,
 * checksum already verified).
 */
int s2e_snap_chunks_decode(const uint8_t *buf, const S2ESnapHeader *h,
                           const char *path, S2ESnapChunk *chunks,
                           GError **error);
void s2e_snap_chunk_encode(const S2ESnapChunk *c, uint8_t *p);

/*
 * Decode and validate the extent index: sorted, non-overlapping, inside
 * the disk, sectors adding up to the header's dirty_sectors; zero extents
 * only with the ZERO_EXTENTS feature, without offset or checksum.  Fills
 * h->info.zero_sectors.
 */
int s2e_snap_extents_decode(const uint8_t *buf, S2ESnapHeader *h,
                            const char *path, S2ESnapExtent *extents,
                            GError **error);
void s2e_snap_extent_encode(const S2ESnapExtent *e, uint8_t *p);

/*
 * Check that no two regions of the file overlap: header page, chunks,
 * extents' data and both indexes.
 */
int s2e_snap_check_regions(const S2ESnapHeader *h, const S2ESnapChunk *chunks,
                           const S2ESnapExtent *extents, const char *path,
                           GError **error);

/* Uncompressed length of chunk @i. */
uint32_t s2e_snap_chunk_len(const S2ESnapHeader *h, uint64_t i);

/* Whether @n is a valid chunk size. */
bool s2e_snap_chunk_size_valid(uint64_t n);

/* ---- Errors (snapshot-error.c) ------------------------------------------ */

/* The negative errno returned alongside an error of @code. */
int s2e_snap_code_errno(S2ESnapshotErrorCode code);

/*
 * Set *error (when @error is not NULL) and return the negative errno for
 * @code.
 */
int s2e_snap_error(GError **error, S2ESnapshotErrorCode code,
                   const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/*
 * An I/O error: message is the formatted text + ": " + strerror(@err);
 * returns -@err.  NOT_FOUND is used for ENOENT.
 */
int s2e_snap_error_errno(GError **error, int err, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/* ---- I/O with a fault hook (snapshot-io.c) ------------------------------ */

/* Every I/O step the writer and the reader make, for fault injection. */
typedef enum S2ESnapIOStep {
    S2E_SNAP_IO_OPEN_DIR,      /* writer: open the target directory */
    S2E_SNAP_IO_CREATE,        /* writer: create the temporary file */
    S2E_SNAP_IO_WRITE_VMSTATE, /* writer: a VM state chunk */
    S2E_SNAP_IO_WRITE_SECTORS, /* writer: sector data */
    S2E_SNAP_IO_WRITE_INDEX,   /* writer: chunk and extent indexes */
    S2E_SNAP_IO_WRITE_HEADER,  /* writer: the header page */
    S2E_SNAP_IO_FSYNC,         /* writer: fsync of the file */
    S2E_SNAP_IO_CLOSE,         /* writer: close of the file */
    S2E_SNAP_IO_RENAME,        /* writer: rename into place */
    S2E_SNAP_IO_FSYNC_DIR,     /* writer: fsync of the directory */
    S2E_SNAP_IO_OPEN,          /* reader: open the snapshot */
    S2E_SNAP_IO_READ,          /* reader: any read */
    S2E_SNAP_IO__MAX
} S2ESnapIOStep;

const char *s2e_snap_io_step_name(S2ESnapIOStep step);

/*
 * Called before each step.  Return 0 to let it run (a read or write may
 * shrink *len to make it short; *len is 0 for steps without a length) or a
 * negative errno to make it fail with that error.
 */
typedef int (*S2ESnapFaultFn)(void *opaque, S2ESnapIOStep step, size_t *len);

typedef struct S2ESnapIO {
    S2ESnapFaultFn fault;   /* NULL in normal operation */
    void *opaque;
} S2ESnapIO;

/* Returns 0 or the negative errno of the hook. */
int s2e_snap_io_fault(const S2ESnapIO *io, S2ESnapIOStep step, size_t *len);

/*
 * Write all of @buf at @off (retrying short writes and EINTR).  0 or
 * -errno (-EIO when the device makes no progress).
 */
int s2e_snap_pwrite_full(const S2ESnapIO *io, S2ESnapIOStep step, int fd,
                         const void *buf, size_t len, uint64_t off);

/*
 * Read all of the vector @iov at @off (retrying short reads and EINTR).
 * 0, -errno, or -ENODATA at end of file.  @iov is consumed: its elements
 * are changed as the reads progress.  With @nowait, -EAGAIN when the page
 * cache does not hold all of it (nothing waits for the disk).
 */
int s2e_snap_preadv_full(const S2ESnapIO *io, int fd, struct iovec *iov,
                         int iovcnt, uint64_t off, bool nowait);

/*
 * Open @path read-only (O_CLOEXEC) into *fd when it is a regular file,
 * without blocking and without opening anything else (a FIFO, a device):
 * then *regular is false and *fd -1.  Returns 0 or -errno (*fd -1).
 */
int s2e_snap_open_regular(const char *path, int *fd, bool *regular);

/* fsync/close/rename/unlink/fsync-dir through the hook.  0 or -errno. */
int s2e_snap_io_fsync(const S2ESnapIO *io, S2ESnapIOStep step, int fd);
int s2e_snap_io_close(const S2ESnapIO *io, int fd);

/* ---- Writer and reader with a fault hook (tests only) ------------------- */

S2ESnapshotWriter *s2e_snapshot_writer_new_io(const char *dir,
                                              const S2EBaseIdentity *base,
                                              uint64_t disk_sectors,
                                              const S2ESnapIO *io,
                                              GError **error);

S2ESnapshot *s2e_snapshot_open_io(const char *path, const char *image_label,
                                  const S2EBaseIdentity *base,
                                  const S2ESnapIO *io, GError **error);

/*
 * Write @w in format @version (1 or 2; default S2E_SNAP_VERSION), before
 * any VM state or sectors (for tests: version 1 files must stay
 * readable).
 */
int s2e_snapshot_writer_set_version(S2ESnapshotWriter *w, uint32_t version,
                                    GError **error);

/* The decoded extent index of an open snapshot (for tests). */
const S2ESnapExtent *s2e_snapshot_extents(const S2ESnapshot *snap,
                                          uint64_t *count);

/* The temporary file of a writer (for tests). */
const char *s2e_snapshot_writer_temp_path(const S2ESnapshotWriter *w);

/* ---- Identity (snapshot-identity.c) ------------------------------------- */

/*
 * Compare the identity recorded in @snapshot with the current one of
 * @image: 0 or BASE_CHANGED (-ESTALE).
 */
int s2e_snap_compare_base(const char *snapshot, const char *image,
                          const S2EBaseIdentity *rec,
                          const S2EBaseIdentity *cur, GError **error);

/*
 * Whether the file at @path is a regular file that starts with the
 * snapshot magic: 1 yes, 0 no, -errno when it cannot be read.
 */
int s2e_snap_probe_magic(const char *path);

/* ---- Temporary files (snapshot-temp.c) --------------------------------- */

/*
 * Longest temporary file name: prefix (14) + host (at most 1 + 2 * 64) +
 * 3 dots + PID namespace (20 digits) + pid (10) + random part (6).
 */
#define S2E_SNAP_TEMP_NAME_MAX 182

/*
 * A new temporary file name for this process (creator fields of the
 * calling process, a random part).  g_free() it.
 */
char *s2e_snap_temp_name_new(void);

/*
 * The same, naming process @pid of this host and PID namespace as its
 * creator (for tests).
 */
char *s2e_snap_temp_name_for_pid(pid_t pid);

/*
 * Split a temporary file name into its creator fields: *host (g_free() it)
 * is the HOST field as written (a host name, or "=" + hex), *pidns and *pid
 * are positive.  false when @name is not one (then nothing is set).
 */
bool s2e_snap_temp_name_parse(const char *name, char **host, uint64_t *pidns,
                              pid_t *pid);

/*
 * Whether a directory entry is a writer's temporary file (either naming):
 * listing skips them and snapshot names may not look like them.
 */
bool s2e_snap_is_temp_name(const char *name);

/*
 * Remove the temporary files in directory @dir_fd whose creator is a
 * process of this host and PID namespace that no longer exists (kill(pid,
 * 0) fails with ESRCH).  Regular files only, never following symbolic
 * links.  Best effort: errors are ignored.  Returns how many were
 * removed.
 */
int s2e_snap_remove_stale_temps(int dir_fd);

#endif /* S2E_SNAPSHOT_INT_H */
