#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""S2E's KVM_DISK_RW contract: when the host process provides
kvm_has_disk_rw() / kvm_disk_rw() (here a shim library that keeps its own
sectors and logs every call, as libs2e would), writes go to the engine,
reads take the engine's sectors over the snapshot layer and the base, and
the base is never written."""

import os
import re
import unittest

from s2e_block.images import read_range
from s2e_block.testing import S2ETestCase
from s2e_block.tools import BUILD_DIR, dumped_bytes, qemu_io

SHIM = os.path.join(BUILD_DIR, "tests", "integration", "kvm-disk-rw-shim.so")




class EngineTest(S2ETestCase):

    def setUp(self):
        super().setUp()
        self.log = os.path.join(self.tmp, "shim.log")
        self.env_backup = dict(os.environ)
        os.environ["LD_PRELOAD"] = SHIM
        os.environ["S2E_SHIM_LOG"] = self.log
        self.addCleanup(self._restore_env)

    def _restore_env(self):
        os.environ.clear()
        os.environ.update(self.env_backup)

    def calls(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [tuple([l.split()[0]] + [int(x) for x in l.split()[1:]])
                    for l in f if l.strip()]

    def test_writes_go_to_the_engine_and_read_back(self):
        img = self.base()
        out = qemu_io(img, ["write -P 0x11 4096 8192",
                            "read -P 0x11 4096 8192"])
        self.assertPattern(out)
        calls = self.calls()
        self.assertIn(("W", 8, 16), calls)
        self.assertIn(("R", 8, 16), calls)

    def test_sectors_the_engine_lacks_come_from_the_base(self):
        img = self.base()
        out = qemu_io(img, ["write -P 0x33 1024 512", "read -v 0 4096"])
        expected = bytearray(read_range(img, 0, 4096))
        expected[1024:1536] = b"\x33" * 512
        self.assertEqual(dumped_bytes(out), bytes(expected))
        self.assertIn(("R", 0, 8), self.calls())

    def test_subsector_write_is_read_modify_write_through_the_engine(self):
        img = self.base()
        out = qemu_io(img, ["write -P 0x22 100 10", "read -v 0 512"])
        expected = bytearray(read_range(img, 0, 512))
        expected[100:110] = b"\x22" * 10
        self.assertEqual(dumped_bytes(out), bytes(expected))
        calls = self.calls()
        self.assertEqual(calls[0], ("R", 0, 1))
        self.assertEqual(calls[1], ("W", 0, 1))

    def test_write_zeroes_and_discard(self):
        img = self.base()
        out = qemu_io(img, ["write -z 8192 4096", "read -P 0 8192 4096",
                            "discard 0 4096"])
        self.assertPattern(out)
        self.assertIn(("W", 16, 8), self.calls())

    def test_engine_error_is_an_io_error(self):
        img = self.base()
        os.environ["S2E_SHIM_FAIL_SECTOR"] = "50"
        out = qemu_io(img, ["write -P 1 %d 512" % (50 * 512),
                            "write -P 2 0 512", "read -P 2 0 512"],
                      check=False)
        self.assertIn("Input/output error", out)
        self.assertIn("read 512/512 bytes at offset 0", out)

    def test_without_engine_the_overlay_is_used(self):
        img = self.base()
        os.environ["S2E_SHIM_DISABLE"] = "1"
        out = qemu_io(img, ["write -P 0x44 0 4096", "read -P 0x44 0 4096"])
        self.assertPattern(out)
        self.assertEqual(self.calls(), [])

    def resumed_under_engine(self, img, write):
        """Save snapshot "ready" without the engine after qemu-io @write,
        then resume it with -loadvm under the engine."""
        os.environ["S2E_SHIM_DISABLE"] = "1"
        vm = self.qemu(["file=%s,format=s2e,if=virtio" % img], name="save")
        vm.qemu_io("virtio0", write)
        self.assertEqual(vm.hmp.cmd("savevm ready"), "")
        vm.quit()
        del os.environ["S2E_SHIM_DISABLE"]
        return self.qemu(["file=%s,format=s2e,if=virtio" % img],
                         extra=["-loadvm", "ready"], name="engine")

    def test_snapshot_layer_below_the_engine(self):
        img = self.base()
        vm = self.resumed_under_engine(img, "write -P 0x5a 0 64k")
        out = vm.qemu_io("virtio0", "read -P 0x5a 0 64k")
        self.assertNotIn("verification failed", out)
        vm.qemu_io("virtio0", "write -P 0x6b 4096 4096")
        out = vm.qemu_io("virtio0", "read -P 0x6b 4096 4096")
        self.assertNotIn("verification failed", out)
        out = vm.qemu_io("virtio0", "read -P 0x5a 0 4096")
        self.assertNotIn("verification failed", out)
        calls = self.calls()
        self.assertIn(("W", 8, 8), calls)
        self.assertIn(("R", 0, 128), calls)

    def test_savevm_and_loadvm_refused_once_the_engine_holds_writes(self):
        """Under the engine, savevm saved 0 dirty sectors and loadvm did not
        roll back, both reporting success.  Once the engine holds a drive's
        writes, both refuse and say why; before that (-loadvm at start-up)
        they work."""
        img = self.base()
        vm = self.resumed_under_engine(img, "write -P 0x11 0 4k")
        self.assertNotIn("verification failed",
                         vm.qemu_io("virtio0", "read -P 0x11 0 4k"))
        # Nothing written yet: the disk is the snapshot, savevm keeps it.
        self.assertEqual(vm.hmp.cmd("savevm clean"), "")
        vm.qemu_io("virtio0", "write -P 0x22 0 4k")
        for cmd in ("savevm t", "loadvm ready"):
            reply = vm.hmp.cmd(cmd)
            self.assertIn("Error", reply)
            self.assertIn("KVM_DISK_RW", reply)
        self.assertFalse(os.path.exists(img + ".t"))
        self.assertTrue(vm.alive())


if __name__ == "__main__":
    unittest.main(verbosity=2)
