#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The s2e driver linked into a QEMU built from source (DESIGN.md §2,
product 2), without the LD_PRELOAD plugin: scripts/build-qemu-s2e.sh builds
qemu-system-x86_64, qemu-img and qemu-io with the driver in QEMU's block
layer and 's2e' in the BlockdevDriver QAPI enum.

Set S2E_QEMU_BUILTIN_DIR to that build directory (the script's last output
line); without it every test is skipped.  The binaries run directly, with
LD_PRELOAD removed from their environment, so nothing here can come from
the plugin.

Python 3 standard library only; helpers from the s2e_block package:
PYTHONPATH=python S2E_QEMU_BUILTIN_DIR=DIR tests/integration/test_builtin.py
"""

import os
import time
import unittest

from s2e_block.images import MiB, file_state
from s2e_block.machine import QMPError, Qemu
from s2e_block.testing import QemuTestCase
from s2e_block.tools import run

BUILTIN_DIR = os.environ.get("S2E_QEMU_BUILTIN_DIR", "")
SKIP_REASON = ("S2E_QEMU_BUILTIN_DIR is not set: build QEMU with "
               "scripts/build-qemu-s2e.sh and set it to the build directory "
               "the script prints")


def binary(name):
    return os.path.join(BUILTIN_DIR, name)


def clean_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


def tool(name, *args, check=True, timeout=120):
    return run([binary(name)] + list(args), check=check, timeout=timeout,
               env=clean_env())


def blockdevs(img, extra="", iothread=False):
    """The two -blockdev nodes and a virtio-blk device 'vd0' on top; with
    @iothread, the device and so both nodes run in iothread 'io0'."""
    device = "virtio-blk-pci,drive=d,id=vd0"
    objects = []
    if iothread:
        device += ",iothread=io0"
        objects = ["-object", "iothread,id=io0"]
    return objects + [
        "-blockdev", "driver=file,node-name=f,filename=%s" % img,
        "-blockdev", "driver=s2e,node-name=d,file=f" + extra,
        "-device", device]


def ok(out):
    return ("Pattern verification failed" not in out
            and "error" not in out.lower() and "failed" not in out.lower())


class BuiltinQemu(Qemu):
    """qemu-system-x86_64 of the built-in build, paused (-S, TCG), with an
    HMP monitor (and optionally QMP) on unix sockets: s2e_block's Qemu run
    directly, without s2e-run and without LD_PRELOAD."""

    def __init__(self, tmpdir, args, name="vm", qmp=False):
        super().__init__(tmpdir, [], extra=args, qmp=qmp, name=name,
                         wait=False, env=clean_env(),
                         program=[binary("qemu-system-x86_64")])
        self.connect(timeout=60)

    def qemu_io(self, command, device="/machine/peripheral/vd0/virtio-backend"):
        """I/O as the guest would issue it, through the device's own
        BlockBackend (-d: the virtio-blk device under the PCI proxy 'vd0';
        its -blockdev BlockBackend has no name); the output goes to QEMU's
        stdout."""
        before = len(self.output())
        reply = self.hmp.cmd('qemu-io -d %s "%s"' % (device, command))
        time.sleep(0.05)
        return reply + self.output()[before:]

    def quit(self, timeout=60):
        return super().quit(timeout)


@unittest.skipUnless(BUILTIN_DIR, SKIP_REASON)
class BuiltinTest(QemuTestCase):

    TMP_PREFIX = "s2e-builtin-"

    @classmethod
    def setUpClass(cls):
        for name in ("qemu-system-x86_64", "qemu-img", "qemu-io"):
            if not os.access(binary(name), os.X_OK):
                raise AssertionError("%s is missing in %s" % (name, BUILTIN_DIR))

    def base(self, name="disk.raw.s2e", size=16 * MiB, value=0x33):
        """A base image filled with @value (so reads through to the base
        are checked with a qemu-io pattern), read-only, state recorded."""
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            chunk = bytes([value]) * MiB
            for _ in range(size // MiB):
                f.write(chunk)
        os.chmod(path, 0o444)
        self.protect(path)
        return path

    def qemu(self, args, **kw):
        vm = BuiltinQemu(self.tmp, args, **kw)
        self.vms.append(vm)
        return vm

    def write_patterns(self, vm):
        for cmd in ("write -P 0x5a 0 1M",
                    "write -P 0x7e 1000005 3",
                    "write -P 0x42 %d 4096" % (8 * MiB)):
            out = vm.qemu_io(cmd)
            self.assertTrue(ok(out), cmd + ":\n" + out)

    def assert_patterns(self, vm):
        for cmd in ("read -P 0x5a 0 1000005",
                    "read -P 0x7e 1000005 3",
                    "read -P 0x5a 1000008 %d" % (MiB - 1000008),
                    "read -P 0x33 %d %d" % (MiB, MiB),
                    "read -P 0x42 %d 4096" % (8 * MiB),
                    "read -P 0x33 %d %d" % (8 * MiB + 4096, MiB)):
            out = vm.qemu_io(cmd)
            self.assertTrue(ok(out), cmd + ":\n" + out)

    # ------------------------------------------------------------------

    def test_driver_is_built_in(self):
        """qemu-img lists s2e without any plugin; the QAPI schema has it."""
        out = tool("qemu-img", "--help").stdout
        formats = out.split("Supported formats:")[-1].split()
        self.assertIn("s2e", formats)
        vm = self.qemu([], qmp=True)
        r = vm.qmp.execute("query-qmp-schema")
        enums = [e for e in r if e.get("meta-type") == "enum"
                 and "s2e" in e.get("values", [])]
        self.assertTrue(enums, "no QAPI enum has 's2e'")
        members = [m["name"] for e in r if e.get("meta-type") == "object"
                   for m in e.get("members", [])]
        self.assertIn("snapshot-dir", members)
        vm.quit()

    def test_blockdev_io_savevm_then_loadvm(self):
        self.check_savevm_then_loadvm(iothread=False)

    def test_iothread_savevm_then_loadvm(self):
        """The same in an iothread: the driver runs in the iothread's
        AioContext, under the graph lock taken there (QEMU 8.0+)."""
        self.check_savevm_then_loadvm(iothread=True)

    def check_savevm_then_loadvm(self, iothread):
        img = self.base()
        vm = self.qemu(blockdevs(img, iothread=iothread), name="save")
        self.write_patterns(vm)
        self.assert_patterns(vm)
        reply = vm.hmp.cmd("savevm ready", timeout=300)
        self.assertEqual(reply, "", reply)
        self.assertIn("ready", vm.hmp.cmd("info snapshots"))
        self.assertEqual(vm.quit(), 0, vm.output())
        snap = img + ".ready"
        self.assertTrue(os.path.exists(snap), os.listdir(self.tmp))
        snap_state = file_state(snap)

        vm = self.qemu(blockdevs(img, iothread=iothread) + ["-loadvm", "ready"],
                       name="load")
        self.assert_patterns(vm)
        # Writes after the resume are private to this process...
        out = vm.qemu_io("write -P 0x11 0 64k")
        self.assertTrue(ok(out), out)
        self.assertEqual(vm.hmp.cmd("loadvm ready"), "")
        # ... and a loadvm in the monitor drops them again.
        self.assert_patterns(vm)
        self.assertEqual(vm.quit(), 0, vm.output())
        self.assertEqual(file_state(snap), snap_state,
                         "loading changed the snapshot file")

    def test_blockdev_snapshot_dir(self):
        img = self.base()
        sdir = os.path.join(self.tmp, "snaps")
        os.mkdir(sdir)
        vm = self.qemu(blockdevs(img, ",snapshot-dir=" + sdir), name="sd")
        self.write_patterns(vm)
        self.assertEqual(vm.hmp.cmd("savevm ready", timeout=300), "")
        self.assertEqual(vm.quit(), 0, vm.output())
        self.assertFalse(os.path.exists(img + ".ready"))
        self.assertTrue(os.path.exists(
            os.path.join(sdir, os.path.basename(img) + ".ready")),
            os.listdir(sdir))
        vm = self.qemu(blockdevs(img, ",snapshot-dir=" + sdir)
                       + ["-loadvm", "ready"], name="sdload")
        self.assert_patterns(vm)
        vm.quit()

    def test_unknown_option_rejected_by_schema(self):
        """-blockdev goes through the QAPI schema: the s2e branch accepts
        snapshot-dir and nothing it does not declare."""
        img = self.base()
        p = run([binary("qemu-system-x86_64"), "-nodefaults", "-display",
                 "none", "-machine", "none", "-S",
                 "-blockdev", "driver=file,node-name=f,filename=%s" % img,
                 "-blockdev", "driver=s2e,node-name=d,file=f,bogus=1"],
                check=False, timeout=60, env=clean_env())
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("bogus", p.stderr)

    def test_qemu_img_and_qemu_io(self):
        img = self.base()
        out = tool("qemu-img", "info", img).stdout
        self.assertRegex(out, r"file format: s2e\b", out)
        out = tool("qemu-io", "-f", "s2e", img,
                   "-c", "write -P 0x5a 0 64k",
                   "-c", "read -P 0x5a 0 64k",
                   "-c", "read -P 0x33 64k 64k").stdout
        self.assertTrue(ok(out), out)
        out = tool("qemu-io", "--image-opts",
                   "driver=s2e,file.driver=file,file.filename=%s" % img,
                   "-c", "read -P 0x33 0 1M").stdout
        self.assertTrue(ok(out), out)
        # A snapshot saved by the VM is listed by qemu-img.
        vm = self.qemu(blockdevs(img), name="img")
        self.assertEqual(vm.hmp.cmd("savevm ready", timeout=300), "")
        vm.quit()
        out = tool("qemu-img", "snapshot", "-l", img).stdout
        self.assertIn("ready", out)

    def test_qmp_blockdev_add(self):
        img = self.base()
        sdir = os.path.join(self.tmp, "qmp-snaps")
        os.mkdir(sdir)
        vm = self.qemu([], qmp=True, name="qmp")
        # execute() raises QMPError if QEMU answers with an error.
        vm.qmp.execute("blockdev-add", {"driver": "file", "node-name": "f",
                                        "filename": img})
        vm.qmp.execute("blockdev-add", {"driver": "s2e", "file": "f",
                                        "node-name": "d",
                                        "snapshot-dir": sdir})
        nodes = vm.qmp.execute("query-named-block-nodes")
        self.assertEqual([n["drv"] for n in nodes if n["node-name"] == "d"],
                         ["s2e"])
        vm.qmp.execute("device_add", {"driver": "virtio-blk-pci",
                                      "drive": "d", "id": "vd0"})
        self.write_patterns(vm)
        self.assert_patterns(vm)
        self.assertEqual(vm.hmp.cmd("savevm ready", timeout=300), "")
        self.assertTrue(os.path.exists(
            os.path.join(sdir, os.path.basename(img) + ".ready")))
        # An inline file child works too, and an unknown option is refused
        # by the schema before the driver sees it.
        img2 = self.base("other.raw.s2e", value=0x44)
        vm.qmp.execute("blockdev-add", {
            "driver": "s2e", "node-name": "d2",
            "file": {"driver": "file", "filename": img2}})
        with self.assertRaises(QMPError):
            vm.qmp.execute("blockdev-add", {
                "driver": "s2e", "node-name": "d3", "bogus": 1,
                "file": {"driver": "file", "filename": img2}})
        self.assertEqual(vm.quit(), 0)


if __name__ == "__main__":
    unittest.main()
