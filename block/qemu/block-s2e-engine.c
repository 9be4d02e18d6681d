/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * S2E's KVM_DISK_RW contract: when S2E's engine (libs2e) keeps the disk.
 *
 * Under S2E, libs2e is the "KVM" of the QEMU process and keeps per-state
 * disk data itself, because it forks states behind QEMU's back.  The host
 * process then provides two functions:
 *
 *     int kvm_has_disk_rw(void);              non-zero: the engine keeps disks
 *     int kvm_disk_rw(void *buffer, uint64_t sector, int count, int is_write);
 *
 * and the driver follows that contract instead of its own paths:
 *
 *   - write: the sectors are handed to kvm_disk_rw(buf, sector, count, 1)
 *     and kept by the engine for the current state; the overlay is not used.
 *   - read: the driver fills the buffer from the layers below the engine
 *     (the loaded snapshot's sectors, else the base image), then calls
 *     kvm_disk_rw(buf, sector, count, 0): the engine replaces the sectors it
 *     holds for the current state and leaves the others as they are, so its
 *     data takes precedence and the rest comes from snapshot and base.
 *   - a negative return is an I/O error (-EIO to the guest).
 *
 * Both functions are looked up at run time with dlsym(RTLD_DEFAULT), so one
 * plugin binary serves a stock QEMU (no engine: the driver's own overlays
 * and paths) and a process where libs2e is loaded.  Requests are split so
 * that each call's count fits an int.
 *
 * Snapshots: the contract has no call to read the engine's sectors back
 * or to drop them.  So once the engine holds writes of a drive, savevm
 * would save none of them and loadvm could not roll them back (the
 * engine's sectors would still win over the snapshot's): both refuse,
 * saying why.  Before any write -- `-loadvm` at start-up, S2E's usual way
 * in -- both work: the disk is then the snapshot layer and the base.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"

#include <dlfcn.h>

#include "block-s2e.h"

typedef int S2EHasDiskRwFn(void);

/* Sectors per engine call: bounded bounce buffer, count fits an int. */
#define S2E_ENGINE_CHUNK_SECTORS 2048

void s2e_engine_detect(S2EEngine *engine)
{
    S2EHasDiskRwFn *has = (S2EHasDiskRwFn *)dlsym(RTLD_DEFAULT,
                                                  "kvm_has_disk_rw");
    S2EDiskRwFn *rw = (S2EDiskRwFn *)dlsym(RTLD_DEFAULT, "kvm_disk_rw");

    engine->disk_rw = NULL;
    if (has && rw && has()) {
        engine->disk_rw = rw;
    }
}

bool s2e_engine_allows_snapshots(const S2EEngine *engine,
                                 const char *image, const char *what,
                                 Error **errp)
{
    if (engine->disk_rw && engine->holds_writes) {
        error_setg(errp, "%s of '%s' is not possible: S2E's engine keeps "
                   "this drive's writes (KVM_DISK_RW) and they cannot be "
                   "read back or rolled back through it; snapshot the "
                   "engine's states with S2E, or load snapshots at start-up "
                   "(-loadvm), before the guest writes", what, image);
        return false;
    }
    return true;
}

static int s2e_engine_call(const S2EEngine *engine, void *buf,
                           uint64_t sector, uint64_t count, bool is_write)
{
    int ret = engine->disk_rw(buf, sector, (int)count, is_write ? 1 : 0);

    if (ret < 0) {
        error_report("s2e: the engine's kvm_disk_rw(%s, sector %" PRIu64
                     ", %" PRIu64 " sectors) failed: %d",
                     is_write ? "write" : "read", sector, count, ret);
        return -EIO;
    }
    return 0;
}

/*
 * One engine call per chunk of at most S2E_ENGINE_CHUNK_SECTORS, through
 * a bounce buffer: the engine replaces what it holds in a read, and is
 * handed the data of a write, or zeroes when @qiov is NULL.
 */
static int s2e_engine_rw(const S2EEngine *engine, uint64_t sector,
                         uint64_t count, QEMUIOVector *qiov, bool is_write)
{
    size_t chunk = MIN(count, S2E_ENGINE_CHUNK_SECTORS) * S2E_SECTOR_SIZE;
    g_autofree uint8_t *buf = g_try_malloc(chunk);
    size_t qiov_offset = 0;

    if (!buf) {
        return -ENOMEM;
    }
    while (count > 0) {
        uint64_t n = MIN(count, S2E_ENGINE_CHUNK_SECTORS);
        size_t len = n * S2E_SECTOR_SIZE;
        int ret;

        if (qiov) {
            qemu_iovec_to_buf(qiov, qiov_offset, buf, len);
        } else {
            memset(buf, 0, len);
        }
        ret = s2e_engine_call(engine, buf, sector, n, is_write);
        if (ret < 0) {
            return ret;
        }
        if (!is_write) {
            qemu_iovec_from_buf(qiov, qiov_offset, buf, len);
        }
        qiov_offset += len;
        sector += n;
        count -= n;
    }
    return 0;
}

int s2e_engine_readv(const S2EEngine *engine, uint64_t sector,
                     uint64_t count, QEMUIOVector *qiov)
{
    return s2e_engine_rw(engine, sector, count, qiov, false);
}

int s2e_engine_writev(S2EEngine *engine, uint64_t sector, uint64_t count,
                      QEMUIOVector *qiov)
{
    engine->holds_writes = true;
    return s2e_engine_rw(engine, sector, count, qiov, true);
}
