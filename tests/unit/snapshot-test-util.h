/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the snapshot unit tests: scratch directories, base
 * images with chosen timestamps, deterministic VM state and sector
 * patterns, snapshot files built from a small spec, raw file surgery for
 * the corruption tests (field offsets as documented in
 * docs/snapshot-format.md), and checks of GErrors.
 */
#ifndef S2E_SNAPSHOT_TEST_UTIL_H
#define S2E_SNAPSHOT_TEST_UTIL_H

#include "runner.h"
#include "../../snapshot/snapshot-int.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Header field offsets, from docs/snapshot-format.md. */
enum {
    HDR_MAGIC = 0,
    HDR_VERSION = 8,
    HDR_HEADER_LENGTH = 12,
    HDR_INCOMPAT = 16,
    HDR_COMPAT = 24,
    HDR_CRC = 32,
    HDR_NAME_LEN = 36,
    HDR_ID_LEN = 40,
    HDR_BASE_FLAGS = 44,
    HDR_BASE_SIZE = 48,
    HDR_BASE_MTIME_SEC = 56,
    HDR_BASE_MTIME_NSEC = 64,
    HDR_DATE_NSEC = 68,
    HDR_DATE_SEC = 72,
    HDR_VM_CLOCK = 80,
    HDR_ICOUNT = 88,
    HDR_DISK_SECTORS = 96,
    HDR_FILE_SIZE = 104,
    HDR_VM_STATE_SIZE = 112,
    HDR_CHUNK_SIZE = 120,
    HDR_CHUNK_INDEX_CRC = 124,
    HDR_CHUNK_COUNT = 128,
    HDR_CHUNK_INDEX_OFFSET = 136,
    HDR_EXTENT_COUNT = 144,
    HDR_EXTENT_INDEX_OFFSET = 152,
    HDR_DIRTY_SECTORS = 160,
    HDR_EXTENT_INDEX_CRC = 168,
    HDR_FIXED_LEN = 176,
    /* version 2 */
    HDR_BLOCK_CSUM_OFFSET = 176,
    HDR_BLOCK_CSUM_COUNT = 184,
    HDR_V2_FIXED_LEN = 192,
};

/* Extent index entry field offsets. */
enum {
    EXT_SECTOR = 0,
    EXT_COUNT = 8,
    EXT_OFFSET = 16,
    EXT_CRC = 24,
    EXT_FLAGS = 28,
};

/* A scratch directory, removed with everything in it. */
char *tu_tmpdir(void);
void tu_rmtree(const char *path);

/* A base image of @size bytes with mtime @sec.@nsec. */
char *tu_make_base(const char *dir, const char *name, uint64_t size,
                   int64_t sec, uint32_t nsec);
void tu_set_mtime(const char *path, int64_t sec, uint32_t nsec);
S2EBaseIdentity tu_identity(const char *path);

/* Deterministic VM state byte at @pos: runs of text-like (compressible)
 * and random (incompressible) bytes. */
void tu_vmstate_fill(uint8_t *buf, uint64_t pos, size_t len, uint64_t seed);
/* Sector contents: each 8-byte word holds sector ^ seed ^ word index. */
void tu_sectors_fill(uint8_t *buf, uint64_t sector, uint64_t count,
                     uint64_t seed);

typedef struct TuRun {
    uint64_t sector;
    uint64_t count;
    bool zero;                /* a zero run (no data), else pattern data */
} TuRun;

/* What a test snapshot holds. */
typedef struct TuSpec {
    uint64_t vm_size;
    uint32_t chunk_size;      /* 0: default */
    int zlib_level;           /* -1: default */
    uint64_t disk_sectors;
    const TuRun *runs;
    size_t nruns;
    uint64_t seed;
    const char *name;         /* info name (default "test") */
    uint32_t version;         /* format version; 0: the writer's default */
} TuSpec;

/* Write snapshot @spec to @path (a file in an existing directory) with
 * @base as identity.  Asserts success (CUnit) and returns true on it. */
bool tu_write_snapshot(const char *path, const TuSpec *spec,
                       const S2EBaseIdentity *base);

/* Whole-file helpers. */
uint8_t *tu_read_file(const char *path, size_t *len);
void tu_write_file(const char *path, const void *data, size_t len);
void tu_copy_file(const char *from, const char *to);

/* Recompute the header checksum of a file image in memory. */
void tu_reseal_header(uint8_t *file);
/* Recompute both index checksums (from the header's offsets) and the
 * header checksum. */
void tu_reseal_all(uint8_t *file);
/* Version 2: recompute the block checksum of the @i-th table entry, which
 * covers sectors [sector, sector + count) of a data extent stored at file
 * offset @data. */
void tu_reseal_block(uint8_t *file, uint64_t i, uint64_t data,
                     uint64_t count);

/* Number of entries in @dir whose name starts with @prefix. */
int tu_count_prefix(const char *dir, const char *prefix);

/* Check @err is of @code and its message contains every string given
 * (NULL-terminated); frees it. */
void tu_check_error(GError *err, int code, ...) G_GNUC_NULL_TERMINATED;

/* Open @path and expect error @code with @path in the message. */
void tu_expect_open_error(const char *path, int code);

#endif
