#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Execution paths driven from the monitor through /objects/s2e-paths in
Debian's qemu-system-x86_64: each path sees its own disk, forks share data,
freed paths go away, errors are monitor errors, savevm/loadvm work with
several paths, and the base image never changes."""

import os
import unittest

from s2e_block.images import MiB
from s2e_block.machine import QMPError
from s2e_block.testing import S2ETestCase

DRIVE = "file=%s,format=s2e,if=virtio"
OBJ = "/objects/s2e-paths"


def ok(out):
    return ("Pattern verification failed" not in out
            and "error" not in out.lower())


class PathsTest(S2ETestCase):

    def get(self, vm, prop):
        # HMP prints the value as JSON: strings come quoted.
        return vm.hmp.cmd("qom-get %s %s" % (OBJ, prop)).strip().strip('"')

    def set(self, vm, prop, value):
        return vm.hmp.cmd("qom-set %s %s %s" % (OBJ, prop, value)).strip()

    def fork(self, vm, parent):
        self.assertEqual(self.set(vm, "fork", parent), "")
        return int(self.get(vm, "last-fork"))

    def switch(self, vm, path):
        self.assertEqual(self.set(vm, "current", path), "")
        self.assertEqual(self.get(vm, "current"), str(path))

    def reads(self, vm, value, offset=0, length="64k", dev="virtio0"):
        out = vm.qemu_io(dev, "read -P 0x%02x %d %s" % (value, offset, length))
        return ok(out)

    def test_fork_switch_isolation(self):
        img = self.base()
        vm = self.qemu([DRIVE % img])
        self.assertEqual(self.get(vm, "paths"), "0")
        self.assertEqual(self.get(vm, "current"), "0")
        vm.qemu_io("virtio0", "write -P 0x10 0 64k")
        child = self.fork(vm, 0)
        self.assertEqual(child, 1)
        self.assertEqual(self.get(vm, "current"), "0")
        self.assertEqual(self.get(vm, "paths"), "0 1")
        self.switch(vm, child)
        self.assertTrue(self.reads(vm, 0x10), "the child sees the parent's data")
        vm.qemu_io("virtio0", "write -P 0x21 0 4k")
        self.assertTrue(self.reads(vm, 0x21, 0, "4k"))
        self.switch(vm, 0)
        self.assertTrue(self.reads(vm, 0x10), "path 0 kept its pattern")
        self.switch(vm, child)
        self.assertTrue(self.reads(vm, 0x21, 0, "4k"))
        self.assertTrue(self.reads(vm, 0x10, 4096, "60k"))

    def test_three_levels_and_free(self):
        img = self.base()
        vm = self.qemu([DRIVE % img])
        vm.qemu_io("virtio0", "write -P 0x01 0 16k")
        a = self.fork(vm, 0)
        self.switch(vm, a)
        vm.qemu_io("virtio0", "write -P 0x02 4096 4k")
        b = self.fork(vm, a)
        self.switch(vm, b)
        vm.qemu_io("virtio0", "write -P 0x03 8192 4k")
        c = self.fork(vm, b)
        self.switch(vm, c)
        vm.qemu_io("virtio0", "write -P 0x04 12288 4k")
        self.assertEqual(self.get(vm, "paths"), "0 %d %d %d" % (a, b, c))
        expect = {0: [1, 1, 1, 1], a: [1, 2, 1, 1], b: [1, 2, 3, 1],
                  c: [1, 2, 3, 4]}
        for path, values in expect.items():
            self.switch(vm, path)
            for i, value in enumerate(values):
                self.assertTrue(self.reads(vm, value, i * 4096, "4k"),
                                "path %d block %d" % (path, i))
        self.switch(vm, 0)
        self.assertEqual(self.set(vm, "free", b), "")
        self.assertEqual(self.get(vm, "paths"), "0 %d %d" % (a, c))
        self.switch(vm, c)
        self.assertTrue(self.reads(vm, 0x03, 8192, "4k"),
                        "freeing the parent leaves the child's data")
        # Ids are never reused.
        d = self.fork(vm, c)
        self.assertEqual(d, c + 1)

    def test_errors_are_monitor_errors(self):
        img = self.base()
        vm = self.qemu([DRIVE % img])
        self.assertIn("No s2e path with id 7", self.set(vm, "current", 7))
        self.assertIn("No s2e path with id 7", self.set(vm, "fork", 7))
        self.assertIn("No s2e path with id 7", self.set(vm, "free", 7))
        self.assertIn("current path", self.set(vm, "free", 0))
        self.assertIn("No s2e path", self.set(vm, "current", -1))
        self.assertTrue(vm.alive())
        self.assertEqual(self.get(vm, "paths"), "0")
        vm.qemu_io("virtio0", "write -P 5 0 512")
        self.assertTrue(self.reads(vm, 5, 0, "512"))

    def test_qmp_control_and_stats(self):
        img = self.base()
        vm = self.qemu([DRIVE % img], qmp=True)
        vm.qemu_io("virtio0", "write -P 0x44 0 1M")
        # execute() raises QMPError if QEMU answers with an error.
        vm.qmp.execute("qom-set", {"path": OBJ, "property": "fork",
                                   "value": 0})
        child = vm.qmp.execute("qom-get", {"path": OBJ,
                                           "property": "last-fork"})
        stats = vm.qmp.execute("qom-get", {"path": OBJ, "property": "stats"})
        parsed = {int(p.split(":")[0]): p.split(":")[1:]
                  for p in stats.split() if not p.startswith("drive:")}
        # Right after the fork all data is shared.
        self.assertEqual(int(parsed[child][0]), 0)
        self.assertGreaterEqual(int(parsed[child][1]), MiB)
        with self.assertRaises(QMPError):
            vm.qmp.execute("qom-set", {"path": OBJ, "property": "current",
                                       "value": 99})
        vm.qmp.execute("qom-set", {"path": OBJ, "property": "current",
                                   "value": child})
        vm.qemu_io("virtio0", "write -P 0x45 0 64k")
        stats = vm.qmp.execute("qom-get", {"path": OBJ, "property": "stats"})
        parsed = {int(p.split(":")[0]): p.split(":")[1:]
                  for p in stats.split() if not p.startswith("drive:")}
        self.assertGreaterEqual(int(parsed[child][0]), 64 * 1024)

    def drive_memory(self, vm, node):
        """(used, limit) of @node's overlays, from the stats."""
        for item in self.get(vm, "stats").split():
            f = item.split(":")
            if f[0] == "drive" and f[1] == node:
                return int(f[2]), int(f[3])
        self.fail("no drive %s in the stats" % node)

    def test_overlay_limit(self):
        """overlay-limit bounds what a drive's overlays hold in all paths:
        a write past it fails with ENOSPC, QEMU keeps running (it used to
        abort on the request after an ENOMEM), written data stays, the
        stats show it, and discarding or freeing a path makes room."""
        img = self.base(size=64 * MiB)
        vm = self.qemu([DRIVE % img + ",overlay-limit=1M,node-name=disk0,"
                        "discard=unmap"])
        chunk = 256 * 1024
        outs = [vm.qemu_io("virtio0", "write -P 0x%02x %d 256k"
                           % (0x30 + i, i * chunk)) for i in range(4)]
        for i in range(3):
            self.assertIn("wrote 262144/262144", outs[i])
        self.assertIn("No space left on device", outs[3])
        used, limit = self.drive_memory(vm, "disk0")
        self.assertEqual(limit, MiB)
        self.assertLessEqual(used, MiB)
        self.assertGreater(used, 3 * chunk)
        for _ in range(3):      # more requests: QEMU keeps running
            self.assertIn("No space left on device",
                          vm.qemu_io("virtio0", "write -P 1 8M 256k"))
        self.assertTrue(vm.alive())
        for i in range(3):
            self.assertTrue(self.reads(vm, 0x30 + i, i * chunk, "256k"))
        # A fork shares everything and the limit.
        child = self.fork(vm, 0)
        self.switch(vm, child)
        self.assertIn("No space left on device",
                      vm.qemu_io("virtio0", "write -P 2 0 64k"))
        # Freeing path 0 drops nothing the child shares; discarding in the
        # child then gives the data back.
        self.assertEqual(self.set(vm, "free", 0), "")
        self.assertIn("discard", vm.qemu_io("virtio0", "discard 0 512k"))
        self.assertLess(self.drive_memory(vm, "disk0")[0], used - chunk)
        self.assertIn("wrote 262144/262144",
                      vm.qemu_io("virtio0", "write -P 0x40 0 256k"))
        self.assertTrue(self.reads(vm, 0x40, 0, "256k"))
        self.assertTrue(self.reads(vm, 0x32, 2 * chunk, "256k"))

    def test_two_drives_one_path_view(self):
        a = self.base("a.raw.s2e", seed=1)
        b = self.base("b.raw.s2e", size=4 * MiB, seed=2)
        vm = self.qemu([DRIVE % a, DRIVE % b])
        vm.qemu_io("virtio0", "write -P 0xa0 0 4k")
        vm.qemu_io("virtio1", "write -P 0xb0 0 4k")
        child = self.fork(vm, 0)
        self.switch(vm, child)
        vm.qemu_io("virtio0", "write -P 0xa1 0 4k")
        vm.qemu_io("virtio1", "write -P 0xb1 0 4k")
        self.switch(vm, 0)
        self.assertTrue(self.reads(vm, 0xa0, 0, "4k", "virtio0"))
        self.assertTrue(self.reads(vm, 0xb0, 0, "4k", "virtio1"))
        self.switch(vm, child)
        self.assertTrue(self.reads(vm, 0xa1, 0, "4k", "virtio0"))
        self.assertTrue(self.reads(vm, 0xb1, 0, "4k", "virtio1"))

    def test_savevm_loadvm_with_several_paths(self):
        img = self.base()
        vm = self.qemu([DRIVE % img])
        vm.qemu_io("virtio0", "write -P 0x10 0 64k")
        child = self.fork(vm, 0)
        self.switch(vm, child)
        vm.qemu_io("virtio0", "write -P 0x20 0 4k")
        # savevm captures the current path's view.
        self.assertEqual(vm.hmp.cmd("savevm ready"), "")
        self.switch(vm, 0)
        vm.qemu_io("virtio0", "write -P 0x30 0 4k")
        # loadvm replaces the current path's view only.
        vm.hmp.cmd("loadvm ready")
        self.assertTrue(self.reads(vm, 0x20, 0, "4k"))
        self.assertTrue(self.reads(vm, 0x10, 4096, "60k"))
        self.switch(vm, child)
        self.assertTrue(self.reads(vm, 0x20, 0, "4k"))
        vm.quit()
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "ready"], name="r")
        self.assertEqual(self.get(vm, "paths"), "0")
        self.assertTrue(self.reads(vm, 0x20, 0, "4k"))
        # Paths forked from a loaded snapshot share its layer.
        child = self.fork(vm, 0)
        self.switch(vm, child)
        self.assertTrue(self.reads(vm, 0x10, 4096, "60k"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
