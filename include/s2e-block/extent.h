/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What a run of sectors holds in one layer of an s2e disk: the overlay of
 * an execution path (overlay.h) or a loaded snapshot (snapshot.h).  One
 * kind for both, so a reader walks the layers top down with one test.
 */
#ifndef S2E_BLOCK_EXTENT_H
#define S2E_BLOCK_EXTENT_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum S2EExtentKind {
    S2E_EXTENT_ABSENT = 0, /* not in this layer: read the layer below */
    S2E_EXTENT_DATA = 1,   /* data held in this layer */
    S2E_EXTENT_ZERO = 2,   /* written as zeroes; reads as zeroes */
} S2EExtentKind;

#ifdef __cplusplus
}
#endif

#endif /* S2E_BLOCK_EXTENT_H */
