/*
 * The data checksum of version 2 snapshot files: XXH3.
 *
 * Sector data is checksummed per 4 KiB block and verified the first time a
 * block is read, so the checksum sits on the path of every first read of
 * the snapshot layer.  Measured on 4 KiB blocks in the page cache
 * (bench/bench-checksum.c, 2-vCPU Xeon with SSE4.2 and AVX2):
 *
 *   zlib crc32 (1.2.13)      2-3 GB/s
 *   CRC-32C, SSE4.2 crc32q   4-5 GB/s  (one stream; ~7 with three
 *                                       streams and a combine step)
 *   XXH3-64 (xxhash 0.8.1)   6-7 GB/s  (SSE2, no CPU dispatch needed)
 *   pread of 4 KiB           ~3.5 GB/s (what a layer read costs anyway)
 *
 * XXH3 is the fastest, needs no instruction set check and no combine step,
 * and is not tied to x86.  Error detection, not authentication, is the
 * point: the low 32 bits are stored (collisions of random damage 2^-32).
 *
 * xxhash.h is compiled into this file (XXH_INLINE_ALL): its functions
 * are static here, so neither the plugin nor a QEMU linking s2e-block in
 * needs libxxhash at run time; only the header (libxxhash-dev) at build.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "snapshot-int.h"

struct S2ESnapCsumStream {
    XXH3_state_t *state;    /* aligned as XXH3 wants it */
};

uint32_t s2e_snap_data_csum(const void *buf, size_t len)
{
    return (uint32_t)XXH3_64bits(buf, len);
}

S2ESnapCsumStream *s2e_snap_csum_stream_new(void)
{
    S2ESnapCsumStream *st = g_try_new0(S2ESnapCsumStream, 1);

    if (st) {
        st->state = XXH3_createState();
    }
    if (!st || !st->state) {
        g_free(st);
        return NULL;
    }
    s2e_snap_csum_stream_reset(st);
    return st;
}

void s2e_snap_csum_stream_free(S2ESnapCsumStream *st)
{
    if (st) {
        XXH3_freeState(st->state);
        g_free(st);
    }
}

void s2e_snap_csum_stream_reset(S2ESnapCsumStream *st)
{
    XXH3_64bits_reset(st->state);
}

void s2e_snap_csum_stream_update(S2ESnapCsumStream *st, const void *buf,
                                 size_t len)
{
    XXH3_64bits_update(st->state, buf, len);
}

uint32_t s2e_snap_csum_stream_digest(const S2ESnapCsumStream *st)
{
    return (uint32_t)XXH3_64bits_digest(st->state);
}

uint32_t s2e_snap_chunk_csum(uint32_t version, const void *buf, size_t len)
{
    if (version == S2E_SNAP_VERSION_1) {
        return s2e_snap_crc32(0, buf, len);
    }
    return s2e_snap_data_csum(buf, len);
}

uint64_t s2e_snap_extent_blocks(uint64_t sector, uint64_t count)
{
    uint64_t first = sector / S2E_SNAP_BLOCK_SECTORS;
    uint64_t last = (sector + count - 1) / S2E_SNAP_BLOCK_SECTORS;

    return last - first + 1;
}
