/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the C benchmarks: a monotonic clock, malloc's heap in
 * use, medians, and dying with the program's name.  Header-only, so each
 * benchmark stays one executable built from one .c file.
 */
#ifndef S2E_BENCH_UTIL_H
#define S2E_BENCH_UTIL_H

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "s2e-block/overlay.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define SECTOR S2E_SECTOR_SIZE

/* Each benchmark defines its name for error messages. */
extern const char *bench_name;

static inline uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Bytes malloc holds for the program (chunks in use, mmapped ones too). */
static inline uint64_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

static inline void die(const char *what)
{
    fprintf(stderr, "%s: %s failed\n", bench_name, what);
    exit(1);
}

static inline int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The median of @v (sorted in place). */
static inline uint64_t median(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    return v[n / 2];
}

#endif
