/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * XXH3 built with its AVX2 kernels, for CPUs that have AVX2.
 *
 * The same function as the baseline XXH3 of snapshot-checksum.c -- XXH3's
 * value does not depend on how it is computed -- built with xxhash's
 * documented XXH_VECTOR knob.  It sits in a file of its own so that the
 * rest of s2e-block keeps the compiler's baseline target; the target is
 * set here rather than by a compiler flag, so a QEMU that compiles
 * s2e-block's sources with its own flags builds it too.  snapshot-
 * checksum.c calls it only when the CPU has AVX2.
 */
#include "snapshot-int.h"

#ifdef S2E_SNAP_HAVE_AVX2

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif

#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

uint32_t s2e_snap_data_csum_avx2(const void *buf, size_t len)
{
    return (uint32_t)XXH3_64bits(buf, len);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* S2E_SNAP_HAVE_AVX2 */
