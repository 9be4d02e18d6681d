/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * s2e-block overlay store: per-path copy-on-write disk contents in memory.
 *
 * An overlay holds the sectors one execution path has written on top of the
 * layers below it (a loaded snapshot's sectors, then the base image).  It is
 * a persistent radix tree keyed by block index with reference-counted nodes
 * and data blocks: s2e_overlay_fork() takes one reference on the root, so it
 * costs O(1) whatever the overlay holds, and later writes copy only the
 * shared nodes on their path and the one shared data block.
 *
 * Units: all positions and lengths are in 512-byte sectors
 * (S2E_SECTOR_SIZE).  The overlay covers sectors [0, nb_sectors).
 *
 * Errors: functions returning int return 0 on success or a negative errno:
 *   -EINVAL  range outside the overlay, an I/O vector shorter than the
 *            request, or a count of 0 where not allowed (only
 *            s2e_overlay_extent()'s @max_count);
 *   -ENOMEM  memory for new nodes or data blocks could not be allocated;
 *   -ENOSPC  the request would take the overlay's memory account past its
 *            limit (writes and write_zeroes only: a discard is never
 *            refused for the limit, since it gives memory back).
 * After an error the overlay is still valid and consistent; the sectors of
 * the failed request each read back either their old or their new contents.
 * Nothing here aborts or exits on bad input or allocation failure.
 * A read, write, write_zeroes or discard of 0 sectors at any @sector up to
 * nb_sectors succeeds and does nothing.
 *
 * Threads: an overlay is not locked.  Two overlays sharing structure (fork
 * parent and child) may be used from different threads at once: shared
 * nodes are only read and their reference counts are atomic.  One overlay
 * must not be used by two threads at once.
 *
 * Memory accounts: every overlay counts the bytes of the nodes and data
 * blocks it allocates in a memory account (S2EOverlayMemory) that it shares
 * with every overlay forked from it, and, when given one at creation, with
 * other families (a drive's paths, for instance).  A node or block counts
 * once however many overlays share it, and stops counting when the last
 * one lets go.  An account may have a limit: an allocation that would pass
 * it fails, and the request with -ENOSPC; memory freed by a discard, an
 * overwrite with zeroes or freeing overlays makes room again.  malloc's own
 * overhead is not counted.
 *
 * Ownership: every S2EOverlay returned by new/fork is owned by the caller
 * and released with s2e_overlay_free().  An account is reference counted:
 * each overlay holds a reference on its own.
 */
#ifndef S2E_BLOCK_OVERLAY_H
#define S2E_BLOCK_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "s2e-block/extent.h"

#ifdef __cplusplus
extern "C" {
#endif

#define S2E_SECTOR_BITS 9
#define S2E_SECTOR_SIZE (1u << S2E_SECTOR_BITS)

/* Largest disk an overlay can describe: 2^63 bytes. */
#define S2E_OVERLAY_MAX_SECTORS (UINT64_C(1) << (63 - S2E_SECTOR_BITS))

typedef struct S2EOverlay S2EOverlay;
typedef struct S2EOverlayMemory S2EOverlayMemory;

typedef struct S2EOverlayStats {
    /* bytes of data blocks reachable (each counted once) */
    uint64_t data_bytes;
    /* bytes of tree nodes and block headers reachable */
    uint64_t meta_bytes;
    uint64_t node_count;      /* tree nodes reachable */
    uint64_t block_count;     /* data blocks reachable */
    /*
     * of data_bytes, blocks also reachable from another overlay (through a
     * shared block or any shared node on the way to it)
     */
    uint64_t shared_data_bytes;
    uint64_t sectors_present; /* sectors whose kind is DATA or ZERO */
} S2EOverlayStats;

/*
 * A new empty overlay for a disk of @nb_sectors sectors (1 .. MAX), in a
 * new memory account of its own without a limit.
 * Returns NULL with errno set (EINVAL, ENOMEM).
 */
S2EOverlay *s2e_overlay_new(uint64_t nb_sectors);

/* The same, counting against @mem (which it takes a reference on). */
S2EOverlay *s2e_overlay_new_in(uint64_t nb_sectors, S2EOverlayMemory *mem);

/*
 * A new memory account with @limit bytes (0: none) and one reference.
 * NULL with errno = ENOMEM.
 */
S2EOverlayMemory *s2e_overlay_memory_new(uint64_t limit);
void s2e_overlay_memory_ref(S2EOverlayMemory *mem);
void s2e_overlay_memory_unref(S2EOverlayMemory *mem);   /* NULL accepted */

/*
 * Change the limit (0: none).  Lowering it below what is used refuses
 * allocations until enough is freed; nothing is taken away.
 */
void s2e_overlay_memory_set_limit(S2EOverlayMemory *mem, uint64_t limit);

/*
 * Bytes of nodes and blocks counted now, and the limit.  Lock-free; any
 * thread.
 */
uint64_t s2e_overlay_memory_used(const S2EOverlayMemory *mem);
uint64_t s2e_overlay_memory_limit(const S2EOverlayMemory *mem);

/* The account @ov counts against (a borrowed reference). */
S2EOverlayMemory *s2e_overlay_memory(const S2EOverlay *ov);

/*
 * A new overlay with the same contents as @parent, sharing all its
 * structure.  O(1).  Returns NULL with errno = ENOMEM.
 */
S2EOverlay *s2e_overlay_fork(S2EOverlay *parent);

/*
 * Release @ov; nodes and blocks no other overlay holds are freed.
 * NULL is accepted.
 */
void s2e_overlay_free(S2EOverlay *ov);

uint64_t s2e_overlay_nb_sectors(const S2EOverlay *ov);

/*
 * Store @count sectors from @iov (total length >= count * 512; elements of
 * any length, not only multiples of 512).  Nothing below is read: a
 * 512-byte write stores one sector.
 */
int s2e_overlay_writev(S2EOverlay *ov, uint64_t sector, uint64_t count,
                       const struct iovec *iov, int iovcnt);
int s2e_overlay_write(S2EOverlay *ov, uint64_t sector, uint64_t count,
                      const void *buf);

/*
 * Mark sectors as reading zeroes.  Cost does not grow with @count for
 * whole subtrees (a 4 TiB zero-write is cheap).
 */
int s2e_overlay_write_zeroes(S2EOverlay *ov, uint64_t sector, uint64_t count);

/*
 * Drop the overlay's contents for the range: afterwards these sectors are
 * ABSENT and read back from the layer below (snapshot data or base).
 */
int s2e_overlay_discard(S2EOverlay *ov, uint64_t sector, uint64_t count);

/*
 * Kind of the run starting at @sector and its length in *@count
 * (1 .. @max_count, clipped to the disk end).  The run is maximal: it ends
 * only where the kind changes, at @max_count or at the disk end, so the
 * caller issues one lower-layer read per ABSENT run.  Returns -EINVAL (and
 * *count = 0) when @sector is outside the disk or @max_count is 0.
 */
int s2e_overlay_extent(const S2EOverlay *ov, uint64_t sector,
                       uint64_t max_count, S2EExtentKind *kind,
                       uint64_t *count);

/*
 * Copy the DATA and ZERO sectors of [sector, sector+count) into @iov at
 * the matching position; ABSENT sectors leave their part of @iov as it
 * was.  Returns -EINVAL for a range outside the disk.
 */
int s2e_overlay_readv(const S2EOverlay *ov, uint64_t sector, uint64_t count,
                      const struct iovec *iov, int iovcnt);
int s2e_overlay_read(const S2EOverlay *ov, uint64_t sector, uint64_t count,
                     void *buf);

/*
 * Memory and contents of @ov.  Walks the whole tree: O(nodes + blocks),
 * not for a hot path.
 */
void s2e_overlay_get_stats(const S2EOverlay *ov, S2EOverlayStats *stats);

/*
 * Re-validate every invariant of the trees of the @n @overlays: reference
 * counts against the references actually found from all of them, masks,
 * sizes, pruning, positions of shared nodes, and the stats against a
 * recount through the extents.  Pass every live overlay that may share
 * structure with the others.  O(everything reachable); meant for tests and
 * debugging.  Uses malloc for a table of visited nodes: when that fails
 * the answer is false with "out of memory while checking".
 * Returns true when consistent; otherwise false and, when @why is not
 * NULL, a static description of the first broken invariant.
 */
bool s2e_overlay_check(S2EOverlay *const *overlays, size_t n,
                       const char **why);

/*
 * Block granularity in bytes (4096): the unit of copy-on-write after a
 * fork and of the tree's leaves.  A block stores only the sectors written
 * into it, so a partial write allocates only the sectors it writes.
 */
size_t s2e_overlay_block_size(void);

#ifdef __cplusplus
}
#endif

#endif /* S2E_BLOCK_OVERLAY_H */
