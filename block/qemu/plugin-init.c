/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Loading the s2e driver into a stock QEMU binary with LD_PRELOAD.
 *
 * Debian builds QEMU with modules, so its binaries export their symbols and
 * a preloaded library can call bdrv_register().  It must not do so from its
 * constructor (qemu-system-x86_64 asserts qemu_in_main_thread() there):
 * instead the constructor queues the registration with
 * register_module_init(..., MODULE_INIT_BLOCK) and QEMU's main() runs it
 * with the other block drivers.
 *
 * In a process that is not QEMU the constructor finds no
 * register_module_init and does nothing, so a stray LD_PRELOAD is harmless;
 * the plugin is linked with lazy binding and references QEMU only through
 * functions, which are resolved on first call.
 *
 * The ABI guard: the plugin is compiled against the headers of one QEMU
 * version.  s2e_abi_check() runs at every open and compares fields the
 * plugin reads directly from QEMU's structs with what QEMU's own exported
 * accessors return; any difference means the layouts disagree, and the open
 * is refused with an error instead of crashing later.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/module.h"

#include <dlfcn.h>

#include "block-s2e.h"

#ifdef S2E_QEMU_PLUGIN

static void s2e_plugin_register(void)
{
    bdrv_register(&bdrv_s2e);
}

static bool s2e_in_qemu(void)
{
    return dlsym(RTLD_DEFAULT, "register_module_init") &&
           dlsym(RTLD_DEFAULT, "bdrv_register") &&
           dlsym(RTLD_DEFAULT, "bdrv_open_file_child");
}

static void __attribute__((constructor)) s2e_plugin_constructor(void)
{
    if (!s2e_in_qemu()) {
        return;
    }
    register_module_init(s2e_paths_qom_register, MODULE_INIT_QOM);
    register_module_init(s2e_plugin_register, MODULE_INIT_BLOCK);
    s2e_serial_commands_plugin_init();
}

#endif

static bool s2e_abi_mismatch(Error **errp, const char *what)
{
    error_setg(errp, "The s2e driver was built for a different QEMU "
               "(struct layout check failed: %s). Rebuild s2e-block against "
               "this QEMU's headers (scripts/qemu-headers.sh)", what);
    return false;
}

bool s2e_abi_check(BlockDriverState *bs, Error **errp)
{
    BlockDriverState *file_bs;

    if (bdrv_get_node_name(bs) != bs->node_name) {
        return s2e_abi_mismatch(errp, "BlockDriverState.node_name");
    }
    if (bdrv_get_aio_context(bs) != bs->aio_context) {
        return s2e_abi_mismatch(errp, "BlockDriverState.aio_context");
    }
    if (bdrv_get_flags(bs) != bs->open_flags) {
        return s2e_abi_mismatch(errp, "BlockDriverState.open_flags");
    }
    if (bdrv_is_sg(bs) != bs->sg) {
        return s2e_abi_mismatch(errp, "BlockDriverState.sg");
    }
    if (bs->drv != &bdrv_s2e || bdrv_find_format("s2e") != &bdrv_s2e) {
        return s2e_abi_mismatch(errp, "BlockDriverState.drv");
    }
    if (g_strcmp0(bdrv_get_format_name(bs), "s2e") != 0) {
        return s2e_abi_mismatch(errp, "BlockDriver.format_name");
    }
    if (!bs->file || !bs->file->bs) {
        return s2e_abi_mismatch(errp, "BlockDriverState.file");
    }
    file_bs = bs->file->bs;
    if (bdrv_get_node_name(file_bs) != file_bs->node_name ||
        bdrv_get_aio_context(file_bs) != file_bs->aio_context) {
        return s2e_abi_mismatch(errp, "BdrvChild.bs");
    }
    return true;
}
