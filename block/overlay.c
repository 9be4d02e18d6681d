/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * s2e-block overlay store: a persistent radix tree of disk sectors.
 *
 * WHAT IT DOES
 *
 * An overlay holds the sectors one execution path has written over the
 * layers below it.  S2E forks execution paths constantly, so an overlay
 * must fork in O(1) and a forked overlay must pay only for what it changes.
 * The store is a persistent (structurally shared) radix tree in the style
 * of CPython's hamt.c: nodes and data blocks carry reference counts, a fork
 * takes one reference on the root, and a write copies only the shared
 * nodes on its path and the one shared data block ("copy before write
 * unless the refcount is one").  Everything a single owner holds is
 * changed in place.
 *
 *   overlay A                              overlay B = fork(A), then B
 *       |                                  wrote sector 9 (block 1)
 *       v                                      v
 *   [root rc=1]                            [root' rc=1]
 *       |      \______              ______/      |
 *       v             v            v             v
 *   [leaf 0 rc=1]         [leaf 1 rc=2]         [leaf 0' rc=1]
 *     |        \               :               /        |
 *     v         `------> [blk 0 rc=2] <-------'         v
 *   [blk 1 rc=1]                                  [blk 1' rc=1]
 *
 * B's write copied the root, leaf 0 and block 1, the shared things on its
 * path; leaf 1 and block 0 stay shared.  Nodes hold a 64-bit bitmap of
 * present slots and a packed array of them: child pointers, or at a leaf
 * {block, DATA mask, ZERO mask} per 4 KiB block.
 *
 * GEOMETRY
 *
 * - A block is 8 sectors (4 KiB, OV_BLOCK_SHIFT = 3): the unit of
 *   copy-on-write and of the tree's leaves.  Each leaf slot keeps two
 *   8-bit masks, one bit per sector: DATA (stored in the block) and ZERO
 *   (reads as zeroes, no storage).  A sector in neither mask is ABSENT and
 *   reads from the layer below, so a 512-byte write never reads anything.
 * - A data block stores only the sectors it was asked to store, packed in
 *   sector order (its "stored" mask says which; sector s sits at index
 *   popcount(stored & below(s))).  One 512-byte write costs a 520-byte
 *   block, a 4 KiB write a 4104-byte block.  A write to a sector the block
 *   does not store, or to a shared block, rebuilds the block with exactly
 *   the live DATA sectors plus the new ones.
 * - Nodes have 64 slots (6 bits of the block index per level) but store
 *   only the present ones: a 64-bit bitmap plus a packed array, sized to
 *   the slots the request creating the node touches, doubled when full (up
 *   to 64) and halved when a quarter full.  A lone write on a huge disk
 *   costs one small node per level, not 64 pointers per level.
 * - Depth is derived from the disk size: the fewest levels whose span
 *   covers nb_sectors (1 level up to 512 sectors, 3 for 1 GiB, 5 for
 *   4 TiB, 9 for the 2^63-byte maximum).  Nothing is sized to the disk.
 *
 * ZEROES
 *
 * An interior slot may hold OV_ZERO_SUBTREE instead of a node: the whole
 * span of that slot (clipped to the end of the disk) reads as zeroes.  A
 * write_zeroes that covers a slot's span stores the sentinel there and
 * releases what was below, so zeroing 4 TiB costs a few slots.  The root
 * itself may be the sentinel.  A later partial write or discard inside a
 * sentinel "materializes" it: a new node whose slots are all sentinels (or,
 * at a leaf, slots with a full ZERO mask and no block).  A node that
 * write_zeroes leaves all-zero collapses back into a sentinel.
 *
 * Discard is the mirror image: covering spans become absent slots, masks
 * lose their bits, blocks with no DATA sector left are released, and nodes
 * with no present slot are pruned on the way back up.
 *
 * INVARIANTS (re-validated by s2e_overlay_check())
 *
 * 1. A node's or block's refcount equals the number of slots (and overlay
 *    roots) that point to it.  A node or block with refcount > 1 is never
 *    modified.  Everything on the path of a mutation is made exclusive
 *    top-down first, so refcount 1 there means "owned by this overlay
 *    alone".
 * 2. Every reachable node has at least one present slot (empty nodes are
 *    pruned; an empty overlay has root NULL).  popcount(bitmap) <=
 *    capacity <= 64.  A node at level L sits below a node at level L+1.
 * 3. Leaf slots: DATA and ZERO masks are disjoint, not both empty, hold no
 *    sector past the disk end; block != NULL exactly when DATA is not
 *    empty, and DATA is a subset of the block's stored mask.
 * 4. No slot covers only sectors past the end of the disk.
 * 5. A node or block shared by several overlays sits at the same position
 *    in each of them (forks share positions, never move nodes).
 *
 * MEMORY ACCOUNT
 *
 * An overlay and all its forks (and overlays created in the same account,
 * such as all paths of one drive) count the bytes of their nodes and
 * blocks in one S2EOverlayMemory: added when allocated or grown, taken off
 * when shrunk or freed by whichever overlay drops the last reference.
 * Only overlays of one account share nodes, so the one that frees a node
 * credits the right account.  With a limit, an allocation that would pass
 * it fails like a failed malloc but makes the request return -ENOSPC; a
 * discard ignores the limit (it may copy a shared node, but it exists to
 * give memory back).  The counters are atomics: forks of one account are
 * used from several threads.
 *
 * ERRORS
 *
 * Every allocation goes through ov_malloc()/ov_realloc() (plain malloc,
 * never an aborting allocator).  A mutation proceeds block by block; each
 * block's change is made in a new allocation first and linked in last, and
 * nodes created on the way are pruned if they end up empty, so after
 * -ENOMEM the tree is valid and each sector holds its old or its new
 * contents.  For tests, an overlay has an allocation budget
 * (overlay-internal.h) that makes the N+1-th allocation fail.
 *
 * THREADS
 *
 * No locks.  Refcounts are C11 atomics; a node is only written while its
 * refcount is 1, observed with acquire ordering, and a copy takes its
 * references on the children before releasing the original (acq_rel), so
 * two forks may be used from two threads while they share nodes.
 *
 * WHY 4 KiB BLOCKS
 *
 * Measured with bench/bench-overlay built with -DS2E_OVERLAY_BLOCK_SHIFT=
 * 0, 3, 4, 6 (glibc malloc; "malloc" is heap growth / bytes written):
 *
 *   block size                              512 B   4 KiB   8 KiB  32 KiB
 *   malloc, 4 KiB writes, sequential        1.064   1.008   1.004   1.002
 *   malloc, 4 KiB writes, random in 1 GiB   1.072   1.011   1.010   1.013
 *   malloc, 512 B writes, random in 1 GiB   1.103   1.072   1.060   1.052
 *   metadata per sequential 4 KiB write      195 B    24 B    12 B     5 B
 *   1000 forks of 1 GiB, one 4 KiB write
 *   each: bytes per fork                     6507    6300   10138   35051
 *
 * 512-byte blocks pay a slot, a block header and a malloc chunk per sector
 * (6 % over the data).  Blocks above 4 KiB save little metadata but make
 * S2E's commonest pattern, many forks each writing a little, pay a whole
 * larger block per first write (copying 28 KiB for a 4 KiB write at
 * 32 KiB).  4 KiB matches the guest page and filesystem block size: the
 * usual write is exactly one block and one allocation, and packing keeps
 * 512-byte writes at one sector of storage anyway.
 *
 * KNOWN LIMITS
 *
 * - Stored-but-no-longer-DATA sectors of a block (overwritten by zeroes or
 *   discarded) keep their storage until the block is next rebuilt.
 * - Filling a block one sector at a time rebuilds it each time (at most
 *   28 sector copies per block in total).
 * - s2e_overlay_get_stats() walks the whole tree: O(nodes + blocks).
 * - Data is not inspected: zero-filled writes are DATA and cost memory;
 *   only write_zeroes produces ZERO.  Equal contents may thus have
 *   different shapes (the tree is not canonical).
 */

#include "s2e-block/overlay.h"
#include "overlay-internal.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Sectors per block, log2.  A tuning knob for measurements only: 0 .. 6. */
#ifndef S2E_OVERLAY_BLOCK_SHIFT
#define S2E_OVERLAY_BLOCK_SHIFT 3
#endif

#define OV_BLOCK_SHIFT S2E_OVERLAY_BLOCK_SHIFT
#define OV_BLOCK_SECTORS (1u << OV_BLOCK_SHIFT)
#define OV_FANOUT_BITS 6
#define OV_FANOUT (1u << OV_FANOUT_BITS)

#if OV_BLOCK_SHIFT <= 3
typedef uint8_t OvMask;
#elif OV_BLOCK_SHIFT == 4
typedef uint16_t OvMask;
#elif OV_BLOCK_SHIFT == 5
typedef uint32_t OvMask;
#elif OV_BLOCK_SHIFT == 6
typedef uint64_t OvMask;
#else
#error "S2E_OVERLAY_BLOCK_SHIFT must be 0 .. 6"
#endif

/* Levels needed for the largest disk: 54 sector bits in 6-bit steps. */
#define OV_SECTOR_INDEX_BITS (63 - S2E_SECTOR_BITS)
#define OV_MAX_DEPTH \
    ((OV_SECTOR_INDEX_BITS - OV_BLOCK_SHIFT + OV_FANOUT_BITS - 1) / \
     OV_FANOUT_BITS)

#define OV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define OV_MAX(a, b) ((a) > (b) ? (a) : (b))

/*
 * A tree node.  The slots follow the header: OvNode * children at interior
 * levels, OvLeafSlot at level 0; slot i (0 .. 63) is present when bit i of
 * @bitmap is set and then sits at index popcount(bitmap & below(i)).
 */
typedef struct OvNode {
    uint64_t bitmap;
    atomic_uint refcnt;
    uint8_t level;      /* 0 = leaf */
    uint8_t capacity;   /* slots allocated, 1 .. 64 */
    uint16_t unused;
} OvNode;

/* A data block: header, then popcount(stored) sectors in sector order. */
typedef struct OvBlock {
    atomic_uint refcnt;
    OvMask stored;
} OvBlock;

#define OV_BLOCK_HEADER ((sizeof(OvBlock) + 7) & ~(size_t)7)

typedef struct OvLeafSlot {
    OvBlock *block;     /* NULL exactly when data == 0 */
    OvMask data;        /* sectors stored in @block */
    OvMask zero;        /* sectors reading as zeroes */
} OvLeafSlot;

/* Interior slot value: "the whole span reads as zeroes". */
#define OV_ZERO_SUBTREE ((OvNode *)(uintptr_t)1)

/* The memory a family of overlays holds (see MEMORY ACCOUNT above). */
struct S2EOverlayMemory {
    atomic_uint refcnt;
    _Atomic uint64_t used;      /* bytes of nodes and blocks */
    _Atomic uint64_t limit;     /* 0: none */
};

struct S2EOverlay {
    OvNode *root;           /* NULL, OV_ZERO_SUBTREE or level depth-1 */
    uint64_t nb_sectors;
    unsigned depth;
    int64_t alloc_budget;   /* < 0: unlimited; see overlay-internal.h */
    S2EOverlayMemory *mem;  /* shared with every fork */
    /* why the last allocation failed: ENOMEM or ENOSPC (the account's limit) */
    int alloc_error;
    bool ignore_limit;      /* during a discard */
};

/* ---- Geometry ----------------------------------------------------------- */

/* log2 of the sectors one slot of a level-@level node covers. */
static unsigned slot_shift(unsigned level)
{
    return OV_BLOCK_SHIFT + OV_FANOUT_BITS * level;
}

static uint64_t slot_span(unsigned level)
{
    return UINT64_C(1) << slot_shift(level);
}

/* Sectors a whole level-@level node covers. */
static uint64_t node_span(unsigned level)
{
    return slot_span(level + 1);
}

static unsigned depth_for(uint64_t nb_sectors)
{
    unsigned depth = 1;

    while (depth < OV_MAX_DEPTH &&
           ((nb_sectors - 1) >> slot_shift(depth)) != 0) {
        depth++;
    }
    return depth;
}

static uint64_t bit64(unsigned i)
{
    return UINT64_C(1) << i;
}

/* Bits first .. last inclusive (last < 64). */
static uint64_t bits_between(unsigned first, unsigned last)
{
    uint64_t upto = last == 63 ? UINT64_MAX : bit64(last + 1) - 1;
    return upto & ~(bit64(first) - 1);
}

static unsigned popcount64(uint64_t x)
{
    return (unsigned)__builtin_popcountll(x);
}

/* Mask of sectors [first, end) of a block (end <= OV_BLOCK_SECTORS). */
static OvMask sector_mask(unsigned first, unsigned end)
{
    uint64_t upto = end == 64 ? UINT64_MAX : bit64(end) - 1;
    return (OvMask)(upto & ~(bit64(first) - 1));
}

/* Sectors of the block starting at @block_base that lie inside the disk. */
static OvMask in_disk_mask(const S2EOverlay *ov, uint64_t block_base)
{
    uint64_t left = ov->nb_sectors - block_base;

    return sector_mask(0, (unsigned)OV_MIN(left, (uint64_t)OV_BLOCK_SECTORS));
}

/* Index in a packed array of the member @i of @set. */
static unsigned packed_index(uint64_t set, unsigned i)
{
    return popcount64(set & (bit64(i) - 1));
}

/* ---- Allocation --------------------------------------------------------- */

static bool budget_take(S2EOverlay *ov)
{
    if (ov->alloc_budget == 0) {
        return false;
    }
    if (ov->alloc_budget > 0) {
        ov->alloc_budget--;
    }
    return true;
}

/*
 * Count @size more bytes against the account; false (nothing counted)
 * when that would pass its limit.
 */
static bool mem_charge(S2EOverlay *ov, size_t size)
{
    S2EOverlayMemory *mem = ov->mem;
    uint64_t limit = atomic_load_explicit(&mem->limit, memory_order_relaxed);
    uint64_t before = atomic_fetch_add_explicit(&mem->used, size,
                                                memory_order_relaxed);

    if (limit && !ov->ignore_limit && before + size > limit) {
        atomic_fetch_sub_explicit(&mem->used, size, memory_order_relaxed);
        return false;
    }
    return true;
}

static void mem_credit(S2EOverlay *ov, size_t size)
{
    atomic_fetch_sub_explicit(&ov->mem->used, size, memory_order_relaxed);
}

/*
 * Every node and block: the test budget, then the account, then malloc;
 * ov->alloc_error says which refused.
 */
static void *ov_malloc(S2EOverlay *ov, size_t size)
{
    void *p = NULL;

    if (!budget_take(ov)) {
        ov->alloc_error = ENOMEM;
    } else if (!mem_charge(ov, size)) {
        ov->alloc_error = ENOSPC;
    } else {
        p = malloc(size);
        if (!p) {
            mem_credit(ov, size);
            ov->alloc_error = ENOMEM;
        }
    }
    return p;
}

/* Grow @p from @old_size to @size bytes. */
static void *ov_realloc(S2EOverlay *ov, void *p, size_t old_size, size_t size)
{
    void *q = NULL;

    if (!budget_take(ov)) {
        ov->alloc_error = ENOMEM;
    } else if (!mem_charge(ov, size - old_size)) {
        ov->alloc_error = ENOSPC;
    } else {
        q = realloc(p, size);
        if (!q) {
            mem_credit(ov, size - old_size);
            ov->alloc_error = ENOMEM;
        }
    }
    return q;
}

static void ov_free(S2EOverlay *ov, void *p, size_t size)
{
    mem_credit(ov, size);
    free(p);
}

/* ---- Nodes and blocks --------------------------------------------------- */

static bool is_node(const OvNode *n)
{
    return n != NULL && n != OV_ZERO_SUBTREE;
}

static size_t slot_size(unsigned level)
{
    return level ? sizeof(OvNode *) : sizeof(OvLeafSlot);
}

static size_t node_bytes(unsigned level, unsigned capacity)
{
    return sizeof(OvNode) + capacity * slot_size(level);
}

static unsigned char *node_slots(OvNode *n)
{
    return (unsigned char *)(n + 1);
}

static OvNode **node_children(OvNode *n)
{
    return (OvNode **)(n + 1);
}

static OvLeafSlot *node_leaf_slots(OvNode *n)
{
    return (OvLeafSlot *)(n + 1);
}

static unsigned node_used(const OvNode *n)
{
    return popcount64(n->bitmap);
}

static unsigned refcount_of(atomic_uint *rc)
{
    return atomic_load_explicit(rc, memory_order_acquire);
}

static OvNode *node_new(S2EOverlay *ov, unsigned level, unsigned capacity)
{
    OvNode *n = ov_malloc(ov, node_bytes(level, capacity));

    if (n) {
        n->bitmap = 0;
        atomic_init(&n->refcnt, 1);
        n->level = (uint8_t)level;
        n->capacity = (uint8_t)capacity;
        n->unused = 0;
    }
    return n;
}

static size_t block_bytes(OvMask stored)
{
    return OV_BLOCK_HEADER + (size_t)popcount64(stored) * S2E_SECTOR_SIZE;
}

static OvBlock *block_new(S2EOverlay *ov, OvMask stored)
{
    OvBlock *b = ov_malloc(ov, block_bytes(stored));

    if (b) {
        atomic_init(&b->refcnt, 1);
        b->stored = stored;
    }
    return b;
}

/* Where sector @i of the block (which must store it) lives. */
static unsigned char *block_sector(OvBlock *b, unsigned i)
{
    return (unsigned char *)b + OV_BLOCK_HEADER +
           (size_t)packed_index(b->stored, i) * S2E_SECTOR_SIZE;
}

static void block_ref(OvBlock *b)
{
    atomic_fetch_add_explicit(&b->refcnt, 1, memory_order_relaxed);
}

static void block_unref(S2EOverlay *ov, OvBlock *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refcnt, 1,
                                       memory_order_acq_rel) == 1) {
        ov_free(ov, b, block_bytes(b->stored));
    }
}

static void node_ref(OvNode *n)
{
    if (is_node(n)) {
        atomic_fetch_add_explicit(&n->refcnt, 1, memory_order_relaxed);
    }
}

static void node_unref(S2EOverlay *ov, OvNode *n);

static void node_release_slots(S2EOverlay *ov, OvNode *n)
{
    unsigned used = node_used(n);

    for (unsigned k = 0; k < used; k++) {
        if (n->level) {
            node_unref(ov, node_children(n)[k]);
        } else {
            block_unref(ov, node_leaf_slots(n)[k].block);
        }
    }
}

/*
 * Drop one reference; the last one frees the node and what only it held.
 * Whatever overlay of the family drops it, the family's account gets the
 * memory back: only overlays sharing an account share nodes.
 */
static void node_unref(S2EOverlay *ov, OvNode *n)
{
    if (is_node(n) && atomic_fetch_sub_explicit(&n->refcnt, 1,
                                                memory_order_acq_rel) == 1) {
        node_release_slots(ov, n);
        ov_free(ov, n, node_bytes(n->level, n->capacity));
    }
}

/*
 * Make *@np exclusive to this overlay: when it is shared, replace it with a
 * copy holding its own references on every child.
 */
static int node_make_writable(S2EOverlay *ov, OvNode **np)
{
    OvNode *old = *np;
    unsigned used = node_used(old);
    OvNode *copy;

    if (refcount_of(&old->refcnt) == 1) {
        return 0;
    }
    copy = node_new(ov, old->level, used);
    if (!copy) {
        return -ENOMEM;
    }
    copy->bitmap = old->bitmap;
    memcpy(node_slots(copy), node_slots(old), used * slot_size(old->level));
    for (unsigned k = 0; k < used; k++) {
        if (old->level) {
            node_ref(node_children(copy)[k]);
        } else if (node_leaf_slots(copy)[k].block) {
            block_ref(node_leaf_slots(copy)[k].block);
        }
    }
    *np = copy;
    node_unref(ov, old);
    return 0;
}

/* Make room for one more slot in the exclusive node *@np. */
static int node_ensure_room(S2EOverlay *ov, OvNode **np)
{
    OvNode *n = *np;
    unsigned capacity;

    if (node_used(n) < n->capacity) {
        return 0;
    }
    capacity = OV_MIN(OV_FANOUT, 2u * n->capacity);
    n = ov_realloc(ov, n, node_bytes(n->level, n->capacity),
                   node_bytes(n->level, capacity));
    if (!n) {
        return -ENOMEM;
    }
    n->capacity = (uint8_t)capacity;
    *np = n;
    return 0;
}

/* Insert absent slot @i into @n, which has room; returns its storage. */
static void *node_open_slot(OvNode *n, unsigned i)
{
    size_t size = slot_size(n->level);
    unsigned pos = packed_index(n->bitmap, i);
    unsigned char *slots = node_slots(n);

    memmove(slots + (pos + 1) * size, slots + pos * size,
            (node_used(n) - pos) * size);
    n->bitmap |= bit64(i);
    return slots + pos * size;
}

/*
 * Remove present slot @i (whose contents the caller has released) from the
 * exclusive node *@np; give memory back when it is at most a quarter used.
 * Shrinking is best effort: a failed realloc keeps the bigger node.
 */
static void node_close_slot(S2EOverlay *ov, OvNode **np, unsigned i)
{
    OvNode *n = *np;
    size_t size = slot_size(n->level);
    unsigned pos = packed_index(n->bitmap, i);
    unsigned char *slots = node_slots(n);
    unsigned used;

    memmove(slots + pos * size, slots + (pos + 1) * size,
            (node_used(n) - pos - 1) * size);
    n->bitmap &= ~bit64(i);
    used = node_used(n);
    if (used > 0 && n->capacity >= 4 && used * 4 <= n->capacity) {
        size_t before = node_bytes(n->level, n->capacity);
        OvNode *smaller = realloc(n, node_bytes(n->level, 2 * used));
        if (smaller) {
            smaller->capacity = (uint8_t)(2 * used);
            mem_credit(ov, before - node_bytes(smaller->level, 2 * used));
            *np = smaller;
        }
    }
}

/* Slots of a level-@level node at @base that hold sectors of the disk. */
static unsigned slots_in_disk(const S2EOverlay *ov, unsigned level,
                              uint64_t base)
{
    uint64_t left = ov->nb_sectors - base;

    if (left >= node_span(level)) {
        return OV_FANOUT;
    }
    return (unsigned)((left + slot_span(level) - 1) >> slot_shift(level));
}

/* A node reading as zeroes throughout: what a sentinel turns into. */
static OvNode *node_new_all_zero(S2EOverlay *ov, unsigned level,
                                 uint64_t base)
{
    unsigned count = slots_in_disk(ov, level, base);
    OvNode *n = node_new(ov, level, count);

    if (!n) {
        return NULL;
    }
    n->bitmap = bits_between(0, count - 1);
    for (unsigned k = 0; k < count; k++) {
        if (level) {
            node_children(n)[k] = OV_ZERO_SUBTREE;
        } else {
            OvLeafSlot *slot = &node_leaf_slots(n)[k];
            slot->block = NULL;
            slot->data = 0;
            slot->zero = in_disk_mask(ov, base +
                                      (uint64_t)k * OV_BLOCK_SECTORS);
        }
    }
    return n;
}

/* Does the node at @base read as zeroes over all of its disk sectors? */
static bool node_is_all_zero(const S2EOverlay *ov, OvNode *n, uint64_t base)
{
    unsigned count = slots_in_disk(ov, n->level, base);

    if (node_used(n) != count) {
        return false;
    }
    for (unsigned k = 0; k < count; k++) {
        if (n->level) {
            if (node_children(n)[k] != OV_ZERO_SUBTREE) {
                return false;
            }
        } else {
            OvLeafSlot *slot = &node_leaf_slots(n)[k];
            uint64_t block_base = base + (uint64_t)k * OV_BLOCK_SECTORS;
            if (slot->data || slot->zero != in_disk_mask(ov, block_base)) {
                return false;
            }
        }
    }
    return true;
}

/* ---- I/O vectors ------------------------------------------------------- */

typedef struct IovCursor {
    const struct iovec *iov;
    int iovcnt;
    int idx;
    size_t off;     /* into iov[idx] */
} IovCursor;

static void cursor_init(IovCursor *c, const struct iovec *iov, int iovcnt)
{
    c->iov = iov;
    c->iovcnt = iovcnt;
    c->idx = 0;
    c->off = 0;
}

/* Step over exhausted (or empty) elements. */
static void cursor_settle(IovCursor *c)
{
    while (c->idx < c->iovcnt && c->off == c->iov[c->idx].iov_len) {
        c->idx++;
        c->off = 0;
    }
}

static void cursor_skip(IovCursor *c, uint64_t bytes)
{
    cursor_settle(c);
    while (bytes > 0 && c->idx < c->iovcnt) {
        size_t room = c->iov[c->idx].iov_len - c->off;
        if (bytes < room) {
            c->off += bytes;
            return;
        }
        bytes -= room;
        c->idx++;
        c->off = 0;
        cursor_settle(c);
    }
}

/* Bytes available at the cursor's position in one piece (0 at the end). */
static size_t cursor_room(IovCursor *c)
{
    cursor_settle(c);
    return c->idx < c->iovcnt ? c->iov[c->idx].iov_len - c->off : 0;
}

static unsigned char *cursor_ptr(const IovCursor *c)
{
    return (unsigned char *)c->iov[c->idx].iov_base + c->off;
}

/* Copy @bytes from the vector to @dst and advance. */
static void cursor_copy_out(IovCursor *c, void *dst, size_t bytes)
{
    unsigned char *p = dst;
    size_t room;

    while (bytes > 0 && (room = cursor_room(c)) > 0) {
        size_t n = OV_MIN(room, bytes);
        memcpy(p, cursor_ptr(c), n);
        p += n;
        bytes -= n;
        c->off += n;
    }
}

/* Copy @bytes from @src (zeroes when NULL) into the vector and advance. */
static void cursor_copy_in(IovCursor *c, const void *src, size_t bytes)
{
    const unsigned char *p = src;
    size_t room;

    while (bytes > 0 && (room = cursor_room(c)) > 0) {
        size_t n = OV_MIN(room, bytes);
        if (p) {
            memcpy(cursor_ptr(c), p, n);
            p += n;
        } else {
            memset(cursor_ptr(c), 0, n);
        }
        bytes -= n;
        c->off += n;
    }
}

/* Does the vector hold at least @count sectors? */
static int check_iov(const struct iovec *iov, int iovcnt, uint64_t count)
{
    uint64_t need = count * S2E_SECTOR_SIZE;
    uint64_t have = 0;

    if (iovcnt < 0 || (iovcnt > 0 && !iov)) {
        return -EINVAL;
    }
    for (int k = 0; k < iovcnt && have < need; k++) {
        if (iov[k].iov_len > 0 && !iov[k].iov_base) {
            return -EINVAL;
        }
        have += iov[k].iov_len;
        if (have < iov[k].iov_len) {
            return 0;   /* wrapped around: more than enough */
        }
    }
    return have >= need ? 0 : -EINVAL;
}

/* ---- Mutations ---------------------------------------------------------- */

typedef enum OvOpKind {
    OV_OP_WRITE,
    OV_OP_ZERO,
    OV_OP_DISCARD,
} OvOpKind;

/* One write, write_zeroes or discard of sectors [start, end). */
typedef struct OvOp {
    OvOpKind kind;
    uint64_t start;
    uint64_t end;
    IovCursor src;  /* OV_OP_WRITE: at the next sector to store */
} OvOp;

static int apply_subtree(S2EOverlay *ov, OvNode **childp, unsigned level,
                         uint64_t base, OvOp *op);

/*
 * Store sectors [first, end) of the block, read from the op's vector,
 * into the present slot @slot.
 */
static int leaf_slot_write(S2EOverlay *ov, OvLeafSlot *slot, unsigned first,
                           unsigned end, OvOp *op)
{
    OvMask m = sector_mask(first, end);
    size_t bytes = (size_t)(end - first) * S2E_SECTOR_SIZE;
    OvBlock *old = slot->block;

    if (old && refcount_of(&old->refcnt) == 1 && (old->stored & m) == m) {
        cursor_copy_out(&op->src, block_sector(old, first), bytes);
    } else {
        OvMask keep = slot->data & (OvMask)~m;
        OvBlock *b = block_new(ov, keep | m);
        if (!b) {
            return -ENOMEM;
        }
        for (unsigned s = 0; s < OV_BLOCK_SECTORS; s++) {
            if (keep & bit64(s)) {
                memcpy(block_sector(b, s), block_sector(old, s),
                       S2E_SECTOR_SIZE);
            }
        }
        cursor_copy_out(&op->src, block_sector(b, first), bytes);
        block_unref(ov, old);
        slot->block = b;
    }
    slot->data |= m;
    slot->zero &= (OvMask)~m;
    return 0;
}

/* Store sectors [first, end) of block @i, absent so far, in leaf *@np. */
static int leaf_insert_write(S2EOverlay *ov, OvNode **np, unsigned i,
                             unsigned first, unsigned end, OvOp *op)
{
    OvMask m = sector_mask(first, end);
    OvLeafSlot *slot;
    OvBlock *b;
    int ret = node_ensure_room(ov, np);

    if (ret < 0) {
        return ret;
    }
    b = block_new(ov, m);
    if (!b) {
        return -ENOMEM;
    }
    cursor_copy_out(&op->src, block_sector(b, first),
                    (size_t)(end - first) * S2E_SECTOR_SIZE);
    slot = node_open_slot(*np, i);
    slot->block = b;
    slot->data = m;
    slot->zero = 0;
    return 0;
}

static void leaf_slot_drop_block_if_unused(S2EOverlay *ov, OvLeafSlot *slot)
{
    if (!slot->data && slot->block) {
        block_unref(ov, slot->block);
        slot->block = NULL;
    }
}

/* Apply @op to sectors [lo, hi) of block @i of the exclusive leaf *@np. */
static int apply_block(S2EOverlay *ov, OvNode **np, unsigned i,
                       uint64_t block_base, uint64_t lo, uint64_t hi,
                       OvOp *op)
{
    unsigned first = (unsigned)(lo - block_base);
    unsigned end = (unsigned)(hi - block_base);
    OvMask m = sector_mask(first, end);
    OvNode *leaf = *np;
    OvLeafSlot *slot;
    int ret;

    if (!(leaf->bitmap & bit64(i))) {
        switch (op->kind) {
        case OV_OP_WRITE:
            return leaf_insert_write(ov, np, i, first, end, op);
        case OV_OP_ZERO:
            ret = node_ensure_room(ov, np);
            if (ret < 0) {
                return ret;
            }
            slot = node_open_slot(*np, i);
            slot->block = NULL;
            slot->data = 0;
            slot->zero = m;
            return 0;
        case OV_OP_DISCARD:
            return 0;
        }
    }

    slot = &node_leaf_slots(leaf)[packed_index(leaf->bitmap, i)];
    switch (op->kind) {
    case OV_OP_WRITE:
        return leaf_slot_write(ov, slot, first, end, op);
    case OV_OP_ZERO:
        slot->data &= (OvMask)~m;
        slot->zero |= m;
        leaf_slot_drop_block_if_unused(ov, slot);
        return 0;
    case OV_OP_DISCARD:
        slot->data &= (OvMask)~m;
        slot->zero &= (OvMask)~m;
        leaf_slot_drop_block_if_unused(ov, slot);
        if (!slot->zero && !slot->data) {
            node_close_slot(ov, np, i);
        }
        return 0;
    }
    return 0;
}

/*
 * Apply @op to slot @i (covering sectors from @slot_base) of the exclusive
 * interior node *@np, inserting or removing the slot as needed.
 */
static int apply_child(S2EOverlay *ov, OvNode **np, unsigned i,
                       uint64_t slot_base, OvOp *op)
{
    OvNode *n = *np;
    unsigned level = n->level;
    OvNode *child = NULL;
    int ret;

    if (n->bitmap & bit64(i)) {
        OvNode **childp = &node_children(n)[packed_index(n->bitmap, i)];
        ret = apply_subtree(ov, childp, level - 1, slot_base, op);
        if (!*childp) {
            node_close_slot(ov, np, i);
        }
        return ret;
    }
    if (op->kind == OV_OP_DISCARD) {
        return 0;
    }
    /* Room first, so that linking the new child in cannot fail. */
    ret = node_ensure_room(ov, np);
    if (ret < 0) {
        return ret;
    }
    ret = apply_subtree(ov, &child, level - 1, slot_base, op);
    if (child) {
        *(OvNode **)node_open_slot(*np, i) = child;
    }
    return ret;
}

/* Apply @op to the part of it inside the node *@np at @base. */
static int apply_node(S2EOverlay *ov, OvNode **np, unsigned level,
                      uint64_t base, OvOp *op)
{
    unsigned shift = slot_shift(level);
    uint64_t lo = OV_MAX(op->start, base);
    uint64_t hi = OV_MIN(op->end, base + node_span(level));
    unsigned first = (unsigned)((lo - base) >> shift);
    unsigned last = (unsigned)((hi - 1 - base) >> shift);
    int ret;

    if (op->kind == OV_OP_DISCARD &&
        !((*np)->bitmap & bits_between(first, last))) {
        return 0;   /* nothing to drop: do not copy a shared node */
    }
    ret = node_make_writable(ov, np);
    for (unsigned i = first; i <= last && ret == 0; i++) {
        uint64_t slot_base = base + ((uint64_t)i << shift);
        if (level == 0) {
            ret = apply_block(ov, np, i, slot_base, OV_MAX(lo, slot_base),
                              OV_MIN(hi, slot_base + OV_BLOCK_SECTORS), op);
        } else {
            ret = apply_child(ov, np, i, slot_base, op);
        }
    }
    return ret;
}

/* Slots of a new level-@level node at @base that @op will fill. */
static unsigned slots_touched(unsigned level, uint64_t base, const OvOp *op)
{
    uint64_t lo = OV_MAX(op->start, base);
    uint64_t hi = OV_MIN(op->end, base + node_span(level));

    return (unsigned)(((hi - 1 - base) >> slot_shift(level)) -
                      ((lo - base) >> slot_shift(level)) + 1);
}

/*
 * Apply @op to the subtree *@childp: a level-@level node covering sectors
 * from @base, or NULL (absent) or OV_ZERO_SUBTREE.  On return *@childp is
 * the new subtree, NULL when nothing is left.
 */
static int apply_subtree(S2EOverlay *ov, OvNode **childp, unsigned level,
                         uint64_t base, OvOp *op)
{
    uint64_t end = OV_MIN(base + node_span(level), ov->nb_sectors);
    bool covered = op->start <= base && op->end >= end;
    OvNode *child = *childp;
    int ret;

    if (covered && op->kind != OV_OP_WRITE) {
        node_unref(ov, child);
        *childp = op->kind == OV_OP_ZERO ? OV_ZERO_SUBTREE : NULL;
        return 0;
    }
    if (child == NULL) {
        if (op->kind == OV_OP_DISCARD) {
            return 0;
        }
        child = node_new(ov, level, slots_touched(level, base, op));
    } else if (child == OV_ZERO_SUBTREE) {
        if (op->kind == OV_OP_ZERO) {
            return 0;
        }
        child = node_new_all_zero(ov, level, base);
    }
    if (!child) {
        return -ENOMEM;
    }
    *childp = child;

    ret = apply_node(ov, childp, level, base, op);

    child = *childp;
    if (child->bitmap == 0) {
        node_unref(ov, child);
        *childp = NULL;
    } else if (op->kind == OV_OP_ZERO && refcount_of(&child->refcnt) == 1 &&
               node_is_all_zero(ov, child, base)) {
        node_unref(ov, child);
        *childp = OV_ZERO_SUBTREE;
    }
    return ret;
}

/*
 * A failed allocation returns -ENOMEM up the tree; the caller learns
 * whether it was the account's limit (-ENOSPC).  A discard only gives
 * memory back in the end, so it is never refused for the limit (it may
 * copy shared nodes on its way).
 */
static int apply_op(S2EOverlay *ov, OvOp *op)
{
    int ret;

    ov->alloc_error = ENOMEM;
    ov->ignore_limit = op->kind == OV_OP_DISCARD;
    ret = apply_subtree(ov, &ov->root, ov->depth - 1, 0, op);
    ov->ignore_limit = false;
    return ret == -ENOMEM ? -ov->alloc_error : ret;
}

/* [sector, sector + count) inside the disk; count 0 allowed up to the end. */
static int check_range(const S2EOverlay *ov, uint64_t sector, uint64_t count)
{
    if (!ov || sector > ov->nb_sectors || count > ov->nb_sectors - sector) {
        return -EINVAL;
    }
    return 0;
}

/* ---- Public API: life cycle ------------------------------------------- */

/* ---- Public API: memory accounts --------------------------------------- */

S2EOverlayMemory *s2e_overlay_memory_new(uint64_t limit)
{
    S2EOverlayMemory *mem = malloc(sizeof(*mem));

    if (!mem) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&mem->refcnt, 1);
    atomic_init(&mem->used, 0);
    atomic_init(&mem->limit, limit);
    return mem;
}

void s2e_overlay_memory_ref(S2EOverlayMemory *mem)
{
    atomic_fetch_add_explicit(&mem->refcnt, 1, memory_order_relaxed);
}

void s2e_overlay_memory_unref(S2EOverlayMemory *mem)
{
    if (mem && atomic_fetch_sub_explicit(&mem->refcnt, 1,
                                         memory_order_acq_rel) == 1) {
        free(mem);
    }
}

void s2e_overlay_memory_set_limit(S2EOverlayMemory *mem, uint64_t limit)
{
    atomic_store_explicit(&mem->limit, limit, memory_order_relaxed);
}

uint64_t s2e_overlay_memory_used(const S2EOverlayMemory *mem)
{
    return atomic_load_explicit(&mem->used, memory_order_relaxed);
}

uint64_t s2e_overlay_memory_limit(const S2EOverlayMemory *mem)
{
    return atomic_load_explicit(&mem->limit, memory_order_relaxed);
}

S2EOverlayMemory *s2e_overlay_memory(const S2EOverlay *ov)
{
    return ov->mem;
}

/* ---- Public API: life cycle ------------------------------------------- */

/* A new empty overlay counting against @mem (a new account when NULL). */
static S2EOverlay *overlay_new(uint64_t nb_sectors, int64_t budget,
                               S2EOverlayMemory *mem)
{
    S2EOverlay *ov;

    if (nb_sectors == 0 || nb_sectors > S2E_OVERLAY_MAX_SECTORS) {
        errno = EINVAL;
        return NULL;
    }
    if (budget == 0) {
        errno = ENOMEM;
        return NULL;
    }
    ov = malloc(sizeof(*ov));
    if (mem) {
        s2e_overlay_memory_ref(mem);
    } else {
        mem = s2e_overlay_memory_new(0);
    }
    if (!ov || !mem) {
        s2e_overlay_memory_unref(mem);
        free(ov);
        errno = ENOMEM;
        return NULL;
    }
    *ov = (S2EOverlay){
        .nb_sectors = nb_sectors,
        .depth = depth_for(nb_sectors),
        .alloc_budget = budget > 0 ? budget - 1 : budget,
        .mem = mem,
        .alloc_error = ENOMEM,
    };
    return ov;
}

S2EOverlay *s2e_overlay_new_with_budget(uint64_t nb_sectors, int64_t budget)
{
    return overlay_new(nb_sectors, budget, NULL);
}

S2EOverlay *s2e_overlay_new(uint64_t nb_sectors)
{
    return overlay_new(nb_sectors, -1, NULL);
}

S2EOverlay *s2e_overlay_new_in(uint64_t nb_sectors, S2EOverlayMemory *mem)
{
    if (!mem) {
        errno = EINVAL;
        return NULL;
    }
    return overlay_new(nb_sectors, -1, mem);
}

S2EOverlay *s2e_overlay_fork(S2EOverlay *parent)
{
    S2EOverlay *child;

    if (!parent) {
        errno = EINVAL;
        return NULL;
    }
    /* The overlay itself is not a node: the budget, not the account. */
    child = budget_take(parent) ? malloc(sizeof(*child)) : NULL;
    if (!child) {
        errno = ENOMEM;
        return NULL;
    }
    *child = *parent;
    child->alloc_budget = -1;
    s2e_overlay_memory_ref(child->mem);
    node_ref(child->root);
    return child;
}

void s2e_overlay_free(S2EOverlay *ov)
{
    if (ov) {
        node_unref(ov, ov->root);
        s2e_overlay_memory_unref(ov->mem);
        free(ov);
    }
}

uint64_t s2e_overlay_nb_sectors(const S2EOverlay *ov)
{
    return ov->nb_sectors;
}

size_t s2e_overlay_block_size(void)
{
    return (size_t)OV_BLOCK_SECTORS * S2E_SECTOR_SIZE;
}

void s2e_overlay_set_alloc_budget(S2EOverlay *ov, int64_t budget)
{
    ov->alloc_budget = budget;
}

int64_t s2e_overlay_alloc_budget(const S2EOverlay *ov)
{
    return ov->alloc_budget;
}

unsigned s2e_overlay_depth(const S2EOverlay *ov)
{
    return ov->depth;
}

/* ---- Public API: mutations -------------------------------------------- */

int s2e_overlay_writev(S2EOverlay *ov, uint64_t sector, uint64_t count,
                       const struct iovec *iov, int iovcnt)
{
    OvOp op = { .kind = OV_OP_WRITE, .start = sector, .end = sector + count };
    int ret = check_range(ov, sector, count);

    if (ret == 0) {
        ret = check_iov(iov, iovcnt, count);
    }
    if (ret < 0 || count == 0) {
        return ret;
    }
    cursor_init(&op.src, iov, iovcnt);
    return apply_op(ov, &op);
}

int s2e_overlay_write(S2EOverlay *ov, uint64_t sector, uint64_t count,
                      const void *buf)
{
    struct iovec iov;

    if (count > SIZE_MAX / S2E_SECTOR_SIZE) {
        return -EINVAL;
    }
    iov.iov_base = (void *)buf;
    iov.iov_len = count * S2E_SECTOR_SIZE;
    return s2e_overlay_writev(ov, sector, count, &iov, 1);
}

int s2e_overlay_write_zeroes(S2EOverlay *ov, uint64_t sector, uint64_t count)
{
    OvOp op = { .kind = OV_OP_ZERO, .start = sector, .end = sector + count };
    int ret = check_range(ov, sector, count);

    if (ret < 0 || count == 0) {
        return ret;
    }
    return apply_op(ov, &op);
}

int s2e_overlay_discard(S2EOverlay *ov, uint64_t sector, uint64_t count)
{
    OvOp op = { .kind = OV_OP_DISCARD, .start = sector, .end = sector + count };
    int ret = check_range(ov, sector, count);

    if (ret < 0 || count == 0) {
        return ret;
    }
    return apply_op(ov, &op);
}

/* ---- Public API: reads -------------------------------------------------- */

typedef struct OvRead {
    uint64_t lo;        /* the request: [lo, hi) */
    uint64_t hi;
    uint64_t pos;       /* the sector the cursor is at */
    IovCursor dst;
} OvRead;

/* Copy @count sectors at @sector from @src (zeroes when NULL). */
static void read_fill(OvRead *rd, uint64_t sector, uint64_t count,
                      const void *src)
{
    cursor_skip(&rd->dst, (sector - rd->pos) * S2E_SECTOR_SIZE);
    cursor_copy_in(&rd->dst, src, count * S2E_SECTOR_SIZE);
    rd->pos = sector + count;
}

static void read_block(OvRead *rd, const OvLeafSlot *slot,
                       uint64_t block_base)
{
    unsigned s = (unsigned)(OV_MAX(rd->lo, block_base) - block_base);
    unsigned end = (unsigned)(OV_MIN(rd->hi, block_base + OV_BLOCK_SECTORS) -
                              block_base);

    while (s < end) {
        bool data = slot->data & bit64(s);
        bool zero = slot->zero & bit64(s);
        unsigned run = s + 1;

        while (run < end && (bool)(slot->data & bit64(run)) == data &&
               (bool)(slot->zero & bit64(run)) == zero) {
            run++;
        }
        if (data) {
            /* DATA sectors in a row are stored in a row */
            read_fill(rd, block_base + s, run - s,
                      block_sector(slot->block, s));
        } else if (zero) {
            read_fill(rd, block_base + s, run - s, NULL);
        }
        s = run;
    }
}

static void read_subtree(OvRead *rd, OvNode *n, unsigned level,
                         uint64_t base)
{
    uint64_t lo = OV_MAX(rd->lo, base);
    uint64_t hi = OV_MIN(rd->hi, base + node_span(level));
    unsigned shift = slot_shift(level);

    if (!n) {
        return;
    }
    if (n == OV_ZERO_SUBTREE) {
        read_fill(rd, lo, hi - lo, NULL);
        return;
    }
    for (unsigned i = (unsigned)((lo - base) >> shift);
         i <= (unsigned)((hi - 1 - base) >> shift); i++) {
        uint64_t slot_base = base + ((uint64_t)i << shift);
        unsigned pos = packed_index(n->bitmap, i);
        if (!(n->bitmap & bit64(i))) {
            continue;
        }
        if (level == 0) {
            read_block(rd, &node_leaf_slots(n)[pos], slot_base);
        } else {
            read_subtree(rd, node_children(n)[pos], level - 1, slot_base);
        }
    }
}

int s2e_overlay_readv(const S2EOverlay *ov, uint64_t sector, uint64_t count,
                      const struct iovec *iov, int iovcnt)
{
    OvRead rd = { .lo = sector, .hi = sector + count, .pos = sector };
    int ret = check_range(ov, sector, count);

    if (ret == 0) {
        ret = check_iov(iov, iovcnt, count);
    }
    if (ret < 0 || count == 0) {
        return ret;
    }
    cursor_init(&rd.dst, iov, iovcnt);
    read_subtree(&rd, ov->root, ov->depth - 1, 0);
    return 0;
}

int s2e_overlay_read(const S2EOverlay *ov, uint64_t sector, uint64_t count,
                     void *buf)
{
    struct iovec iov;

    if (count > SIZE_MAX / S2E_SECTOR_SIZE) {
        return -EINVAL;
    }
    iov.iov_base = buf;
    iov.iov_len = count * S2E_SECTOR_SIZE;
    return s2e_overlay_readv(ov, sector, count, &iov, 1);
}

/* ---- Public API: extents ------------------------------------------------ */

typedef struct OvExtentScan {
    uint64_t pos;           /* first sector not classified yet */
    uint64_t end;
    bool started;
    S2EExtentKind kind;
} OvExtentScan;

/* Sectors [pos, upto) are of @kind: extend the run, or tell to stop. */
static bool extent_feed(OvExtentScan *sc, S2EExtentKind kind, uint64_t upto)
{
    if (!sc->started) {
        sc->started = true;
        sc->kind = kind;
    } else if (kind != sc->kind) {
        return true;
    }
    sc->pos = OV_MIN(upto, sc->end);
    return sc->pos >= sc->end;
}

static S2EExtentKind leaf_sector_kind(const OvLeafSlot *slot, unsigned s)
{
    if (slot->data & bit64(s)) {
        return S2E_EXTENT_DATA;
    }
    return slot->zero & bit64(s) ? S2E_EXTENT_ZERO : S2E_EXTENT_ABSENT;
}

/* The sectors of @slot that are of @kind (ABSENT: also bits past the block). */
static uint64_t leaf_kind_mask(const OvLeafSlot *slot, S2EExtentKind kind)
{
    switch (kind) {
    case S2E_EXTENT_DATA:
        return slot->data;
    case S2E_EXTENT_ZERO:
        return slot->zero;
    default:
        return ~(uint64_t)(slot->data | slot->zero);
    }
}

static bool extent_block(OvExtentScan *sc, const OvLeafSlot *slot,
                         uint64_t block_base)
{
    uint64_t block_end = OV_MIN(sc->end, block_base + OV_BLOCK_SECTORS);

    while (sc->pos < block_end) {
        unsigned s = (unsigned)(sc->pos - block_base);
        S2EExtentKind kind = leaf_sector_kind(slot, s);
        /* the sectors from s on that share its kind, as low bits */
        uint64_t same = leaf_kind_mask(slot, kind) >> s;
        unsigned run = same == UINT64_MAX ? 64 - s :
                       (unsigned)__builtin_ctzll(~same);

        if (extent_feed(sc, kind, OV_MIN(sc->pos + run, block_end))) {
            return true;
        }
    }
    return false;
}

/* Scan the subtree @n at @base from sc->pos; true when the run ended. */
static bool extent_subtree(OvExtentScan *sc, OvNode *n, unsigned level,
                           uint64_t base)
{
    uint64_t hi = OV_MIN(sc->end, base + node_span(level));
    unsigned shift = slot_shift(level);

    if (!n) {
        return extent_feed(sc, S2E_EXTENT_ABSENT, hi);
    }
    if (n == OV_ZERO_SUBTREE) {
        return extent_feed(sc, S2E_EXTENT_ZERO, hi);
    }
    for (unsigned i = (unsigned)((sc->pos - base) >> shift);
         i <= (unsigned)((hi - 1 - base) >> shift); i++) {
        uint64_t slot_base = base + ((uint64_t)i << shift);
        unsigned pos = packed_index(n->bitmap, i);
        bool stop;

        if (!(n->bitmap & bit64(i))) {
            stop = extent_feed(sc, S2E_EXTENT_ABSENT,
                               slot_base + slot_span(level));
        } else if (level == 0) {
            stop = extent_block(sc, &node_leaf_slots(n)[pos], slot_base);
        } else {
            stop = extent_subtree(sc, node_children(n)[pos], level - 1,
                                  slot_base);
        }
        if (stop) {
            return true;
        }
    }
    return false;
}

int s2e_overlay_extent(const S2EOverlay *ov, uint64_t sector,
                       uint64_t max_count, S2EExtentKind *kind,
                       uint64_t *count)
{
    OvExtentScan sc = { .pos = sector };

    *count = 0;
    if (!ov || sector >= ov->nb_sectors || max_count == 0) {
        return -EINVAL;
    }
    sc.end = sector + OV_MIN(max_count, ov->nb_sectors - sector);
    extent_subtree(&sc, ov->root, ov->depth - 1, 0);
    *kind = sc.kind;
    *count = sc.pos - sector;
    return 0;
}

/* ---- Statistics --------------------------------------------------------- */

static void stats_block(const OvLeafSlot *slot, bool shared,
                        S2EOverlayStats *st)
{
    uint64_t bytes;

    st->sectors_present += popcount64(slot->data | slot->zero);
    if (!slot->block) {
        return;
    }
    bytes = (uint64_t)popcount64(slot->block->stored) * S2E_SECTOR_SIZE;
    st->block_count++;
    st->data_bytes += bytes;
    st->meta_bytes += OV_BLOCK_HEADER;
    if (shared || refcount_of(&slot->block->refcnt) > 1) {
        st->shared_data_bytes += bytes;
    }
}

static void stats_subtree(const S2EOverlay *ov, OvNode *n, unsigned level,
                          uint64_t base, bool shared, S2EOverlayStats *st)
{
    unsigned used;

    if (!n) {
        return;
    }
    if (n == OV_ZERO_SUBTREE) {
        st->sectors_present +=
            OV_MIN(base + node_span(level), ov->nb_sectors) - base;
        return;
    }
    st->node_count++;
    st->meta_bytes += node_bytes(level, n->capacity);
    shared = shared || refcount_of(&n->refcnt) > 1;
    used = node_used(n);
    for (unsigned k = 0, i = 0; k < used; i++) {
        uint64_t slot_base = base + ((uint64_t)i << slot_shift(level));
        if (!(n->bitmap & bit64(i))) {
            continue;
        }
        if (level == 0) {
            stats_block(&node_leaf_slots(n)[k], shared, st);
        } else {
            stats_subtree(ov, node_children(n)[k], level - 1, slot_base,
                          shared, st);
        }
        k++;
    }
}

void s2e_overlay_get_stats(const S2EOverlay *ov, S2EOverlayStats *stats)
{
    memset(stats, 0, sizeof(*stats));
    stats_subtree(ov, ov->root, ov->depth - 1, 0, false, stats);
}

/* ---- Consistency check -------------------------------------------------- */

/* An open-addressing table of the nodes and blocks seen (malloc only). */
typedef struct CheckEntry {
    const void *key;
    uint64_t refs;      /* references found */
    uint64_t base;      /* position where first found */
    int level;          /* node level, or -1 for a data block */
} CheckEntry;

typedef struct CheckWalk {
    CheckEntry *table;
    size_t size;        /* power of two */
    size_t used;
    const S2EOverlay *ov;
    const char *why;
    S2EOverlayStats total;  /* everything reached, each counted once */
} CheckWalk;

static size_t check_hash(const void *key, size_t size)
{
    return (size_t)(((uintptr_t)key >> 3) * UINT64_C(0x9e3779b97f4a7c15) >>
                    17) & (size - 1);
}

static bool check_table_grow(CheckWalk *w)
{
    size_t size = w->size ? w->size * 2 : 1024;
    CheckEntry *table = calloc(size, sizeof(*table));

    if (!table) {
        return false;
    }
    for (size_t k = 0; k < w->size; k++) {
        if (w->table[k].key) {
            size_t h = check_hash(w->table[k].key, size);
            while (table[h].key) {
                h = (h + 1) & (size - 1);
            }
            table[h] = w->table[k];
        }
    }
    free(w->table);
    w->table = table;
    w->size = size;
    return true;
}

/* The entry of @key, added (refs 0) when new; NULL when out of memory. */
static CheckEntry *check_lookup(CheckWalk *w, const void *key, bool *added)
{
    size_t h;

    if ((w->used + 1) * 2 > w->size && !check_table_grow(w)) {
        w->why = "out of memory while checking";
        return NULL;
    }
    h = check_hash(key, w->size);
    while (w->table[h].key && w->table[h].key != key) {
        h = (h + 1) & (w->size - 1);
    }
    *added = !w->table[h].key;
    if (*added) {
        w->table[h].key = key;
        w->used++;
    }
    return &w->table[h];
}

static bool check_fail(CheckWalk *w, const char *why)
{
    if (!w->why) {
        w->why = why;
    }
    return false;
}

/* Count one reference to @key at @base; *@first says if it is new. */
static bool check_reference(CheckWalk *w, const void *key, int level,
                            uint64_t base, bool *first)
{
    CheckEntry *e = check_lookup(w, key, first);

    if (!e) {
        return false;
    }
    e->refs++;
    if (*first) {
        e->base = base;
        e->level = level;
    } else if (e->base != base || e->level != level) {
        return check_fail(w, "a shared node or block sits at two positions");
    }
    return true;
}

static bool check_leaf_slot(CheckWalk *w, const OvLeafSlot *slot,
                            uint64_t block_base)
{
    OvMask in = in_disk_mask(w->ov, block_base);
    bool first;

    if (!(slot->data | slot->zero)) {
        return check_fail(w, "a present leaf slot holds no sector");
    }
    if (slot->data & slot->zero) {
        return check_fail(w, "a sector is both DATA and ZERO");
    }
    if ((slot->data | slot->zero) & (OvMask)~in) {
        return check_fail(w, "a sector past the end of the disk is present");
    }
    if (!slot->block != !slot->data) {
        return check_fail(w, "a block without DATA sectors, or DATA "
                             "sectors without a block");
    }
    if (!slot->block) {
        return true;
    }
    if (!check_reference(w, slot->block, -1, block_base, &first)) {
        return false;
    }
    if (slot->data & (OvMask)~slot->block->stored) {
        return check_fail(w, "a DATA sector is not stored in its block");
    }
    if (!first) {
        return true;
    }
    if (!slot->block->stored || (slot->block->stored & (OvMask)~in)) {
        return check_fail(w, "a block stores nothing or sectors past the "
                             "end of the disk");
    }
    w->total.block_count++;
    w->total.data_bytes +=
        (uint64_t)popcount64(slot->block->stored) * S2E_SECTOR_SIZE;
    w->total.meta_bytes += OV_BLOCK_HEADER;
    return true;
}

static bool check_subtree(CheckWalk *w, OvNode *n, unsigned level,
                          uint64_t base);

static bool check_node(CheckWalk *w, OvNode *n, unsigned level,
                       uint64_t base)
{
    unsigned in_disk = slots_in_disk(w->ov, level, base);
    unsigned used = node_used(n);

    if (n->level != level) {
        return check_fail(w, "a node's level does not match its depth");
    }
    if (n->capacity == 0 || n->capacity > OV_FANOUT || used > n->capacity) {
        return check_fail(w, "a node's capacity is out of bounds");
    }
    if (used == 0) {
        return check_fail(w, "an empty node was not pruned");
    }
    if (in_disk < OV_FANOUT && (n->bitmap & ~bits_between(0, in_disk - 1))) {
        return check_fail(w, "a slot lies past the end of the disk");
    }
    w->total.node_count++;
    w->total.meta_bytes += node_bytes(level, n->capacity);
    for (unsigned k = 0, i = 0; k < used; i++) {
        uint64_t slot_base = base + ((uint64_t)i << slot_shift(level));
        bool ok;

        if (!(n->bitmap & bit64(i))) {
            continue;
        }
        if (level == 0) {
            ok = check_leaf_slot(w, &node_leaf_slots(n)[k], slot_base);
        } else if (!node_children(n)[k]) {
            ok = check_fail(w, "a present slot holds no child");
        } else {
            ok = check_subtree(w, node_children(n)[k], level - 1, slot_base);
        }
        if (!ok) {
            return false;
        }
        k++;
    }
    return true;
}

static bool check_subtree(CheckWalk *w, OvNode *n, unsigned level,
                          uint64_t base)
{
    bool first;

    if (!is_node(n)) {
        return true;
    }
    if (!check_reference(w, n, (int)level, base, &first)) {
        return false;
    }
    return first ? check_node(w, n, level, base) : true;
}

/* Every reference found must be counted, and nothing else. */
static bool check_refcounts(CheckWalk *w)
{
    for (size_t k = 0; k < w->size; k++) {
        CheckEntry *e = &w->table[k];
        unsigned stored;

        if (!e->key) {
            continue;
        }
        stored = e->level < 0 ?
                 refcount_of(&((OvBlock *)e->key)->refcnt) :
                 refcount_of(&((OvNode *)e->key)->refcnt);
        if (stored != e->refs) {
            return check_fail(w, "a stored reference count differs from "
                                 "the references found");
        }
    }
    return true;
}

/* Data of the blocks found more than once (after check_walk()). */
static uint64_t check_shared_data_bytes(const CheckWalk *w)
{
    uint64_t bytes = 0;

    for (size_t k = 0; k < w->size; k++) {
        const CheckEntry *e = &w->table[k];
        if (e->key && e->level < 0 && e->refs > 1) {
            bytes += (uint64_t)popcount64(((const OvBlock *)e->key)->stored) *
                     S2E_SECTOR_SIZE;
        }
    }
    return bytes;
}

/* Stats against a recount through the extent API, which shares no code. */
static bool check_stats(CheckWalk *w, const S2EOverlay *ov)
{
    S2EOverlayStats st;
    uint64_t present = 0;
    uint64_t sector = 0;
    S2EExtentKind prev = S2E_EXTENT_ABSENT;

    s2e_overlay_get_stats(ov, &st);
    while (sector < ov->nb_sectors) {
        S2EExtentKind kind;
        uint64_t n;
        if (s2e_overlay_extent(ov, sector, ov->nb_sectors - sector,
                               &kind, &n) < 0 || n == 0) {
            return check_fail(w, "the extent API failed on a valid sector");
        }
        if (sector > 0 && kind == prev) {
            return check_fail(w, "two adjacent extents have the same kind");
        }
        if (kind != S2E_EXTENT_ABSENT) {
            present += n;
        }
        prev = kind;
        sector += n;
    }
    if (present != st.sectors_present) {
        return check_fail(w, "stats: sectors_present differs from extents");
    }
    if (st.shared_data_bytes > st.data_bytes ||
        st.node_count > w->total.node_count ||
        st.block_count > w->total.block_count ||
        st.data_bytes > w->total.data_bytes ||
        st.meta_bytes > w->total.meta_bytes) {
        return check_fail(w, "stats exceed what the overlays hold");
    }
    return true;
}

static bool check_geometry(CheckWalk *w, const S2EOverlay *ov)
{
    if (ov->nb_sectors == 0 || ov->nb_sectors > S2E_OVERLAY_MAX_SECTORS ||
        ov->depth != depth_for(ov->nb_sectors)) {
        return check_fail(w, "the overlay's size or depth is invalid");
    }
    return true;
}

/* Walk every overlay once, counting each node and block once. */
static bool check_walk(CheckWalk *w, S2EOverlay *const *overlays, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        w->ov = overlays[k];
        if (!check_geometry(w, overlays[k]) ||
            !check_subtree(w, overlays[k]->root, overlays[k]->depth - 1, 0)) {
            return false;
        }
    }
    return check_refcounts(w);
}

bool s2e_overlay_check(S2EOverlay *const *overlays, size_t n,
                       const char **why)
{
    CheckWalk w = { 0 };
    bool ok = check_walk(&w, overlays, n);
    S2EOverlayStats union_total = w.total;

    for (size_t k = 0; ok && k < n; k++) {
        ok = check_stats(&w, overlays[k]);
    }
    if (ok && n == 1) {
        S2EOverlayStats st;
        s2e_overlay_get_stats(overlays[0], &st);
        union_total.sectors_present = st.sectors_present;
        if (memcmp(&st, &union_total, sizeof(st)) != 0) {
            ok = check_fail(&w, "stats differ from the recount");
        }
    }
    free(w.table);
    if (why) {
        *why = ok ? NULL : w.why;
    }
    return ok;
}

int s2e_overlay_get_union_stats(S2EOverlay *const *overlays, size_t n,
                                S2EOverlayStats *stats)
{
    CheckWalk w = { 0 };
    bool ok = check_walk(&w, overlays, n);

    *stats = w.total;
    stats->shared_data_bytes = check_shared_data_bytes(&w);
    free(w.table);
    if (!ok && w.why && !strcmp(w.why, "out of memory while checking")) {
        return -ENOMEM;
    }
    return 0;
}
