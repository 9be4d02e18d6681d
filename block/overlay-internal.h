/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * s2e-block overlay store: hooks for tests and benchmarks only.
 *
 * Nothing here is part of the public API (include/s2e-block/overlay.h) and
 * the QEMU glue must not use it.  The unit tests and the benchmark include
 * this header to inject allocation failures and to measure the memory that
 * several overlays sharing structure hold together.
 */
#ifndef S2E_BLOCK_OVERLAY_INTERNAL_H
#define S2E_BLOCK_OVERLAY_INTERNAL_H

#include "s2e-block/overlay.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Fault injection.  Every allocation an operation makes on behalf of @ov
 * (a write, write_zeroes or discard on @ov, or s2e_overlay_fork(@ov))
 * consumes one unit of @ov's allocation budget; when the budget is 0 the
 * allocation fails as malloc() would (the operation then returns -ENOMEM,
 * or NULL with errno = ENOMEM).  A negative budget means "no limit", the
 * default.  The budget belongs to one overlay, so there is no global state:
 * other overlays, and other threads, are not affected.  A fork starts with
 * no limit.
 */
void s2e_overlay_set_alloc_budget(S2EOverlay *ov, int64_t budget);

/* Allocations still allowed on @ov (negative: no limit). */
int64_t s2e_overlay_alloc_budget(const S2EOverlay *ov);

/*
 * s2e_overlay_new() whose own allocation already counts against @budget,
 * so a budget of 0 makes it fail with ENOMEM.
 */
S2EOverlay *s2e_overlay_new_with_budget(uint64_t nb_sectors, int64_t budget);

/*
 * Memory that @n overlays hold together: every node and data block
 * reachable from any of them counted once (node_count, block_count,
 * data_bytes, meta_bytes; shared_data_bytes counts the data blocks reached
 * from more than one of the overlays; sectors_present is 0).  Returns 0, or
 * -ENOMEM when the table of visited nodes cannot be allocated.
 */
int s2e_overlay_get_union_stats(S2EOverlay *const *overlays, size_t n,
                                S2EOverlayStats *stats);

/* Levels of the tree of @ov (1 for disks up to 64 blocks). */
unsigned s2e_overlay_depth(const S2EOverlay *ov);

/* Children per tree node. */
#define S2E_OVERLAY_FANOUT 64

#ifdef __cplusplus
}
#endif

#endif /* S2E_BLOCK_OVERLAY_INTERNAL_H */
