/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The data checksum of version 2 snapshot files: XXH3.
 *
 * Sector data is checksummed per 4 KiB block and verified the first time a
 * block is read, so the checksum sits on the path of every first read of
 * the snapshot layer.  Measured on hot 4 KiB blocks (bench/bench-checksum.c,
 * 2-vCPU Xeon with SSE4.2 and AVX2, shared with other jobs):
 *
 *   zlib crc32 (1.2.13)          ~3 GB/s    ~1.4 us per 4 KiB
 *   CRC-32C, SSE4.2 crc32q       ~7.7 GB/s  ~0.53 us (one stream; three
 *                                           streams need a combine step)
 *   XXH3-64 (xxhash 0.8.1) SSE2  ~14 GB/s   ~0.30 us
 *   XXH3-64, AVX2 kernels        ~28 GB/s   ~0.15 us
 *   pread of 4 KiB               ~5.5 GB/s  ~0.75 us (the read itself)
 *
 * XXH3 is the fastest, is not tied to x86 (SSE2 is its x86-64 baseline,
 * NEON on ARM), and needs no combine step.  Error detection, not
 * authentication, is the point: the low 32 bits are stored (collisions of
 * random damage 2^-32).
 *
 * A block is checked right after pread copied it, hot in the cache, where
 * AVX2 halves XXH3's time.  So the one-shot checksum uses an AVX2 build of
 * XXH3 when the CPU has AVX2 (checked once, at run time); the value is the
 * same XXH3 either way, and the writer's streaming state uses the baseline
 * build.
 *
 * xxhash.h is compiled into this file, and into snapshot-checksum-avx2.c
 * with its AVX2 kernels (XXH_INLINE_ALL): its functions are static there,
 * so neither the plugin nor a QEMU linking s2e-block in needs libxxhash at
 * run time; only the header (libxxhash-dev) at build.  Only xxhash's
 * public API and build knobs are used, so any xxhash 0.8 serves.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "snapshot-int.h"

struct S2ESnapCsumStream {
    XXH3_state_t *state;    /* aligned as XXH3 wants it */
};

#ifdef S2E_SNAP_HAVE_AVX2
static bool cpu_has_avx2(void)
{
    static int avx2 = -1;       /* racing threads compute the same value */

    if (avx2 < 0) {
        __builtin_cpu_init();
        avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return avx2;
}
#endif

uint32_t s2e_snap_data_csum(const void *buf, size_t len)
{
#ifdef S2E_SNAP_HAVE_AVX2
    if (cpu_has_avx2()) {
        return s2e_snap_data_csum_avx2(buf, len);
    }
#endif
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
