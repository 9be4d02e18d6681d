/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One glue source for every QEMU s2e-block supports (7.2, 10.0-10.2).
 *
 * The few differences a format driver meets between those generations,
 * keyed on the version of the headers the glue is compiled against
 * (QEMU_VERSION_MAJOR/MINOR come from config-host.h, which qemu/osdep.h
 * includes first).  Include after "qemu/osdep.h"; the rest of the glue is
 * written against the newest API and stays free of version tests except
 * for the driver table's renamed callbacks (block-s2e.c).
 */
#ifndef S2E_QEMU_COMPAT_H
#define S2E_QEMU_COMPAT_H

#define S2E_QEMU_AT_LEAST(major, minor) \
    (QEMU_VERSION_MAJOR > (major) || \
     (QEMU_VERSION_MAJOR == (major) && QEMU_VERSION_MINOR >= (minor)))

/* 10.0 moved the QObject headers from qapi/qmp/ to qobject/. */
#if S2E_QEMU_AT_LEAST(10, 0)
#include "qobject/qdict.h"
#else
#include "qapi/qmp/qdict.h"
#endif

/*
 * The block graph lock (8.0+).  Before it, nothing guarded bs->file beyond
 * the main loop: its annotations and main-loop lock calls do nothing.
 */
#if S2E_QEMU_AT_LEAST(8, 0)
#include "block/graph-lock.h"
#else
#define GRAPH_RDLOCK
#define GRAPH_UNLOCKED
static inline void bdrv_graph_rdlock_main_loop(void) { }
static inline void bdrv_graph_rdunlock_main_loop(void) { }
#endif

/*
 * 8.0 dropped thread_pool_submit_co()'s pool argument: the pool is that of
 * the AioContext the coroutine runs in, the drive's.
 */
#include "block/thread-pool.h"
static inline int coroutine_fn
s2e_thread_pool_submit_co(BlockDriverState *bs, ThreadPoolFunc *func,
                          void *arg)
{
#if S2E_QEMU_AT_LEAST(8, 0)
    return thread_pool_submit_co(func, arg);
#else
    return thread_pool_submit_co(aio_get_thread_pool(bdrv_get_aio_context(bs)),
                                 func, arg);
#endif
}

/* 10.1 replaced block_status's want_zero flag with a mode word. */
#ifdef BDRV_WANT_ZERO
typedef unsigned int S2EBlockStatusMode;
#else
typedef bool S2EBlockStatusMode;
#endif

/* 10.1 made QOM's class_init data pointer const. */
#if S2E_QEMU_AT_LEAST(10, 1)
typedef const void S2EClassData;
#else
typedef void S2EClassData;
#endif

#endif
