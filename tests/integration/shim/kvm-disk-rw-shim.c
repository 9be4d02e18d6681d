/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A stand-in for S2E's engine in tests: provides kvm_has_disk_rw() and
 * kvm_disk_rw() with its own per-sector store, as libs2e does, and logs
 * every call so a test can check that the driver follows the KVM_DISK_RW
 * contract exactly.
 *
 * Environment:
 *   S2E_SHIM_LOG      append one line per call: "R|W SECTOR COUNT"
 *   S2E_SHIM_DISABLE  if set, kvm_has_disk_rw() returns 0 (no engine)
 *   S2E_SHIM_FAIL_SECTOR  calls touching this sector return -5
 */
#include <glib.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTOR 512

int kvm_has_disk_rw(void);
int kvm_disk_rw(void *buffer, uint64_t sector, int count, int is_write);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static GHashTable *sectors;  /* uint64 sector -> 512-byte copy */

int kvm_has_disk_rw(void)
{
    return getenv("S2E_SHIM_DISABLE") == NULL;
}

static void log_call(char kind, uint64_t sector, int count)
{
    const char *path = getenv("S2E_SHIM_LOG");
    FILE *f = path ? fopen(path, "a") : NULL;

    if (f) {
        fprintf(f, "%c %" PRIu64 " %d\n", kind, sector, count);
        fclose(f);
    }
}

static int should_fail(uint64_t sector, int count)
{
    const char *env = getenv("S2E_SHIM_FAIL_SECTOR");
    uint64_t bad;

    if (!env) {
        return 0;
    }
    bad = strtoull(env, NULL, 0);
    return bad >= sector && bad < sector + (uint64_t)count;
}

int kvm_disk_rw(void *buffer, uint64_t sector, int count, int is_write)
{
    uint8_t *buf = buffer;

    log_call(is_write ? 'W' : 'R', sector, count);
    if (count < 0 || should_fail(sector, count)) {
        return -5;
    }
    pthread_mutex_lock(&lock);
    if (!sectors) {
        sectors = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                        g_free);
    }
    for (int i = 0; i < count; i++) {
        uint64_t key = sector + i;
        if (is_write) {
            g_hash_table_replace(sectors, g_memdup2(&key, sizeof(key)),
                                 g_memdup2(buf + i * SECTOR, SECTOR));
        } else {
            const uint8_t *held = g_hash_table_lookup(sectors, &key);
            if (held) {
                memcpy(buf + i * SECTOR, held, SECTOR);
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return count;
}
