#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""savevm / loadvm of s2e images in Debian's qemu-system-x86_64 and
qemu-img: snapshots in IMAGE.NAME beside the image, resumed any number of
times by any number of processes, refused when the base changed or the
file is damaged, crash-safe when QEMU is killed during savevm.

Disk contents are checked with the HMP qemu-io command (patterns written
before savevm must read back after resume); the VM state is checked by
QEMU itself, which refuses to load a damaged stream.
"""

import errno
import glob
import os
import random
import re
import shutil
import subprocess
import threading
import time
import unittest

from s2e_block.images import MiB, downgrade_to_v1, file_state, le
from s2e_block.machine import HMP
from s2e_block.testing import S2ETestCase
from s2e_block.tools import (BUILD_DIR, QEMU_SYSTEM, S2E_RUN, S2E_SNAPSHOT,
                             run, s2e)

DRIVE = "file=%s,format=s2e,if=virtio"
HOLD_READS_SHIM = os.path.join(BUILD_DIR, "tests", "integration",
                               "hold-reads-shim.so")


def wait_for(condition, timeout):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for %s" % condition)
        time.sleep(0.05)


def ok(out):
    return ("Pattern verification failed" not in out
            and "error" not in out.lower())


class SnapshotTest(S2ETestCase):

    def write_patterns(self, vm, dev="virtio0", base_value=0x5a):
        vm.qemu_io(dev, "write -P 0x%02x 0 1M" % base_value)
        vm.qemu_io(dev, "write -P 0x7e 1000005 3")
        vm.qemu_io(dev, "write -P 0x42 %d 4096" % (8 * MiB))

    def assert_patterns(self, vm, dev="virtio0", base_value=0x5a):
        for cmd in ("read -P 0x%02x 0 1000005" % base_value,
                    "read -P 0x7e 1000005 3",
                    "read -P 0x42 %d 4096" % (8 * MiB)):
            out = vm.qemu_io(dev, cmd)
            self.assertTrue(ok(out), cmd + ":\n" + out)

    def saved(self, img, name="ready", vm=None):
        """A VM with patterns written and saved as @name, then quit."""
        vm = vm or self.qemu([DRIVE % img], name="save")
        self.write_patterns(vm)
        reply = vm.hmp.cmd("savevm %s" % name, timeout=300)
        self.assertEqual(reply, "", reply)
        vm.quit()
        return img + "." + name

    def test_savevm_then_loadvm_at_start_and_in_monitor(self):
        img = self.base()
        snap = self.saved(img)
        self.assertTrue(os.path.exists(snap))
        snap_state = file_state(snap)

        vm = self.qemu([DRIVE % img], extra=["-loadvm", "ready"], name="r1")
        self.assert_patterns(vm)
        vm.qemu_io("virtio0", "write -P 0x11 0 64k")
        self.assertIn("", vm.hmp.cmd("loadvm ready"))
        self.assert_patterns(vm)
        vm.quit()
        self.assertEqual(file_state(snap), snap_state,
                         "loading changed the snapshot file")

    def test_info_snapshots_delvm_and_overwrite(self):
        img = self.base()
        vm = self.qemu([DRIVE % img])
        vm.qemu_io("virtio0", "write -P 0x01 0 4k")
        self.assertEqual(vm.hmp.cmd("savevm ready"), "")
        info = vm.hmp.cmd("info snapshots")
        self.assertIn("ready", info)
        first = file_state(img + ".ready")
        # Overwrite: new contents, same name.
        vm.qemu_io("virtio0", "write -P 0x02 0 4k")
        self.assertEqual(vm.hmp.cmd("savevm ready"), "")
        self.assertNotEqual(file_state(img + ".ready")["sha256"],
                            first["sha256"])
        self.assertEqual(vm.hmp.cmd("savevm other"), "")
        info = vm.hmp.cmd("info snapshots")
        self.assertIn("ready", info)
        self.assertIn("other", info)
        vm.qemu_io("virtio0", "write -P 0x03 0 4k")
        vm.hmp.cmd("loadvm ready")
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x02 0 4k")))
        self.assertEqual(vm.hmp.cmd("delvm other"), "")
        self.assertFalse(os.path.exists(img + ".other"))
        self.assertNotIn("other", vm.hmp.cmd("info snapshots"))
        out = vm.hmp.cmd("loadvm other")
        self.assertIn("other", out)
        self.assertTrue(vm.alive())
        # No temporary files are left behind.
        self.assertEqual(sorted(os.listdir(self.tmp)),
                         sorted(f for f in os.listdir(self.tmp)
                                if not f.startswith(".")))

    def test_resumed_snapshot_then_more_writes_then_savevm(self):
        """A later savevm captures snapshot layer plus overlay."""
        img = self.base()
        self.saved(img, "one")
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "one"], name="two")
        vm.qemu_io("virtio0", "write -P 0x99 %d 512" % (4 * MiB))
        vm.qemu_io("virtio0", "write -P 0x98 512 512")
        self.assertEqual(vm.hmp.cmd("savevm two"), "")
        vm.quit()
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "two"], name="load2")
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x99 %d 512" % (4 * MiB))))
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x98 512 512")))
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x5a 1024 %d" % (1000005 - 1024))))
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x42 %d 4096" % (8 * MiB))))

    def test_qmp_snapshot_jobs(self):
        img = self.base()
        vm = self.qemu([DRIVE % img + ",node-name=disk0"], qmp=True)
        self.write_patterns(vm)
        # execute() raises QMPError if QEMU answers with an error.
        vm.qmp.execute("snapshot-save", {"job-id": "save0", "tag": "ready",
                                         "vmstate": "disk0",
                                         "devices": ["disk0"]})
        ev = vm.qmp.wait_event("JOB_STATUS_CHANGE", match=lambda e:
                               e["data"]["id"] == "save0" and
                               e["data"]["status"] == "concluded")
        jobs = vm.qmp.execute("query-jobs")
        job = [j for j in jobs if j["id"] == "save0"][0]
        self.assertNotIn("error", job, job)
        vm.qmp.execute("job-dismiss", {"id": "save0"})
        self.assertTrue(os.path.exists(img + ".ready"))

        vm.qemu_io("virtio0", "write -P 0x00 0 1M")
        vm.qmp.execute("snapshot-load", {"job-id": "load0", "tag": "ready",
                                         "vmstate": "disk0",
                                         "devices": ["disk0"]})
        vm.qmp.wait_event("JOB_STATUS_CHANGE", match=lambda e:
                          e["data"]["id"] == "load0" and
                          e["data"]["status"] == "concluded")
        job = [j for j in vm.qmp.execute("query-jobs")
               if j["id"] == "load0"][0]
        self.assertNotIn("error", job, job)
        self.assert_patterns(vm)

        vm.qmp.execute("snapshot-delete", {"job-id": "del0", "tag": "ready",
                                           "devices": ["disk0"]})
        vm.qmp.wait_event("JOB_STATUS_CHANGE", match=lambda e:
                          e["data"]["id"] == "del0" and
                          e["data"]["status"] == "concluded")
        self.assertFalse(os.path.exists(img + ".ready"))

    def test_two_drives(self):
        a = self.base("a.raw.s2e", seed=1)
        b = self.base("b.raw.s2e", size=8 * MiB, seed=2)
        drives = [DRIVE % a, DRIVE % b]
        vm = self.qemu(drives)
        vm.qemu_io("virtio0", "write -P 0xa1 0 64k")
        vm.qemu_io("virtio1", "write -P 0xb1 4096 64k")
        self.assertEqual(vm.hmp.cmd("savevm ready"), "")
        vm.quit()
        infos = {}
        for img in (a, b):
            p = run([S2E_SNAPSHOT, "info", "--json", img + ".ready"])
            infos[img] = p.stdout
        # Exactly one of them holds the VM state.
        import json
        sizes = [json.loads(infos[i])["vm_state_size"] for i in (a, b)]
        self.assertEqual(len([s for s in sizes if s > 0]), 1, sizes)
        vm = self.qemu(drives, extra=["-loadvm", "ready"], name="load")
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0xa1 0 64k")))
        self.assertTrue(ok(vm.qemu_io("virtio1", "read -P 0xb1 4096 64k")))

    def test_touched_base_is_refused(self):
        img = self.base()
        self.saved(img)
        os.utime(img, ns=(time.time_ns(), time.time_ns()))
        self.protect(img)
        # In a running QEMU: loadvm fails, QEMU answers, the VM is paused.
        vm = self.qemu([DRIVE % img], name="refuse")
        vm.qemu_io("virtio0", "write -P 0x31 0 512")
        out = vm.hmp.cmd("loadvm ready")
        self.assertIn("cp -p", out)
        self.assertIn(img, out)
        self.assertTrue(vm.alive())
        self.assertIn("paused", vm.hmp.cmd("info status"))
        # The refused load changed nothing.
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x31 0 512")))
        vm.quit()
        # At start-up: QEMU exits with the message, the guest never ran.
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "ready"],
                       name="refuse2", wait=False)
        vm.proc.wait(60)
        self.assertNotEqual(vm.proc.returncode, 0)
        self.assertIn("cp -p", vm.output())

    def test_cp_p_copy_resumes_elsewhere(self):
        img = self.base()
        snap = self.saved(img)
        other = os.path.join(self.tmp, "elsewhere")
        os.mkdir(other)
        run(["cp", "-p", img, snap, other])
        copy = os.path.join(other, os.path.basename(img))
        self.protect(copy)
        vm = self.qemu([DRIVE % copy], extra=["-loadvm", "ready"], name="cp")
        self.assert_patterns(vm)
        vm.quit()
        # A copy without -p is refused ...
        third = os.path.join(self.tmp, "nop")
        os.mkdir(third)
        time.sleep(0.01)
        run(["cp", img, snap, third])
        copy2 = os.path.join(third, os.path.basename(img))
        vm = self.qemu([DRIVE % copy2], name="nop")
        self.assertIn("touch -r", vm.hmp.cmd("loadvm ready"))
        vm.quit()
        # ... until its timestamp is restored with touch -r.
        run(["touch", "-r", img, copy2])
        vm = self.qemu([DRIVE % copy2], extra=["-loadvm", "ready"],
                       name="touchr")
        self.assert_patterns(vm)

    def test_four_processes_resume_one_snapshot(self):
        img = self.base()
        snap = self.saved(img)
        snap_state = file_state(snap)
        vms = [self.qemu([DRIVE % img], extra=["-loadvm", "ready"],
                         name="c%d" % i, wait=False) for i in range(4)]
        for i, vm in enumerate(vms):
            vm.connect()
        for i, vm in enumerate(vms):
            self.assert_patterns(vm)
            vm.qemu_io("virtio0", "write -P 0x%02x 0 4k" % (0x80 + i))
        for i, vm in enumerate(vms):
            self.assertTrue(ok(vm.qemu_io("virtio0",
                                          "read -P 0x%02x 0 4k" % (0x80 + i))))
        for vm in vms:
            vm.quit()
        self.assertEqual(file_state(snap), snap_state)

    def damaged(self, how):
        img = self.base()
        snap = self.saved(img)
        size = os.path.getsize(snap)
        with open(snap, "r+b") as f:
            how(f, size)
        self.protect(snap)
        vm = self.qemu([DRIVE % img], name="damaged")
        out = vm.hmp.cmd("loadvm ready")
        self.assertTrue(vm.alive())
        self.assertIn("VM status", vm.hmp.cmd("info status"))
        self.assertTrue(ok(vm.qemu_io("virtio0", "write -P 1 0 512")))
        vm.quit()
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "ready"],
                       name="damaged2", wait=False)
        vm.proc.wait(60)
        self.assertNotEqual(vm.proc.returncode, 0)
        return out + vm.output()

    def test_corrupt_header_is_refused(self):
        def flip(f, size):
            f.seek(40)
            b = f.read(1)
            f.seek(40)
            f.write(bytes([b[0] ^ 0xff]))
        out = self.damaged(flip)
        self.assertRegex(out, r"(?i)(checksum|corrupt|invalid)")

    def test_truncated_file_is_refused(self):
        out = self.damaged(lambda f, size: f.truncate(size // 2))
        self.assertRegex(out, r"(?i)(truncat|short|corrupt|invalid)")

    def test_corrupt_vm_state_is_refused(self):
        def flip_late(f, size):
            # Somewhere in the compressed VM state or the sector data.
            for off in range(8192, size, 65536):
                f.seek(off)
                b = f.read(1)
                f.seek(off)
                f.write(bytes([b[0] ^ 0x55]))
        out = self.damaged(flip_late)
        self.assertRegex(out, r"(?i)(checksum|corrupt|invalid|error)")

    def test_huge_zeroed_range_saves_small(self):
        """write_zeroes over TiBs is O(1) in memory and in the snapshot
        file, also when a resumed snapshot is saved again."""
        img = os.path.join(self.tmp, "huge.raw.s2e")
        with open(img, "wb") as f:
            f.truncate(4 << 40)
            f.seek(5 * 512)
            f.write(b"\x77" * 512)
        self.protect(img)
        vm = self.qemu([DRIVE % img])
        out = vm.qemu_io("virtio0", "write -z -n 0 %d" % ((4 << 40) - 4096))
        self.assertTrue(ok(out), out)
        vm.qemu_io("virtio0", "write -P 0x66 %d 4096" % ((4 << 40) - 4096))
        self.assertEqual(vm.hmp.cmd("savevm z1"), "")
        vm.quit()
        self.assertLess(os.path.getsize(img + ".z1"), 4 * MiB)
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "z1"], name="z1")
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0 0 64k")))
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0 %d 4096" % (3 << 40))))
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x66 %d 4096" % ((4 << 40) - 4096))))
        vm.qemu_io("virtio0", "write -P 0x67 1M 4096")
        self.assertEqual(vm.hmp.cmd("savevm z2"), "")
        vm.quit()
        self.assertLess(os.path.getsize(img + ".z2"), 4 * MiB)
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "z2"], name="z2")
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0 0 1M")))
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x67 1M 4096")))
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x66 %d 4096" % ((4 << 40) - 4096))))

    def test_qemu_img_snapshot_commands(self):
        img = self.base()
        s2e("qemu-img", "snapshot", "-c", "disk1", img)
        self.assertTrue(os.path.exists(img + ".disk1"))
        out = s2e("qemu-img", "snapshot", "-l", img).stdout
        self.assertIn("disk1", out)
        # -a checked the snapshot and changed nothing, yet said nothing:
        # an s2e image is never written, so it refuses and says why.
        before = file_state(img + ".disk1")
        p = s2e("qemu-img", "snapshot", "-a", "disk1", img, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("would load, but there is nothing to apply it to",
                      p.stderr)
        self.assertEqual(file_state(img + ".disk1"), before)
        s2e("qemu-img", "snapshot", "-d", "disk1", img)
        self.assertFalse(os.path.exists(img + ".disk1"))
        self.assertEqual([f for f in os.listdir(self.tmp)
                          if f.startswith(".")], [])
        p = s2e("qemu-img", "snapshot", "-d", "disk1", img, check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_failed_load_says_the_real_errno(self):
        """goto answered EINVAL for every failure, so QEMU added "Invalid
        argument" to a missing snapshot or a changed base.  A missing
        snapshot is ENOENT, as qcow2 answers; a changed base ESTALE, as
        the snapshot module documents."""
        img = self.base()
        p = s2e("qemu-img", "snapshot", "-a", "nosuch", img, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Failed to load snapshot: " +
                      os.strerror(errno.ENOENT), p.stderr)
        self.saved(img)
        os.utime(img, ns=(time.time_ns(), time.time_ns()))
        self.protect(img)
        p = s2e("qemu-img", "snapshot", "-a", "ready", img, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("cp -p", p.stderr)
        self.assertIn("Failed to load snapshot: " +
                      os.strerror(errno.ESTALE), p.stderr)

    def test_cold_snapshot_read_leaves_qemu_answering(self):
        """A read of the snapshot layer was a pread() inside the request's
        coroutine: on a page-cache miss (a cold snapshot, one on NFS) the
        whole main loop waited with it -- monitor, timers, other drives.
        A shim holds the snapshot file's reads, as a slow disk would,
        until the test lets them go."""
        img = self.base()
        other = os.path.join(self.tmp, "other.raw")
        with open(other, "wb") as f:
            f.write(b"\x33" * MiB)
        drives = [DRIVE % img,
                  "file=%s,format=raw,if=virtio,readonly=on" % other]
        snap = self.saved(img, vm=self.qemu(drives, name="save"))
        gate = os.path.join(self.tmp, "gate")
        env = dict(os.environ, LD_PRELOAD=HOLD_READS_SHIM,
                   S2E_HOLD_READS_OF=snap, S2E_HOLD_READS_UNTIL=gate)
        vm = self.qemu(drives, extra=["-loadvm", "ready"], name="cold",
                       env=env)
        # Never leave QEMU stuck: the gate opens on its own in the end.
        opener = threading.Timer(60, lambda: open(gate, "w").close())
        opener.start()
        try:
            # QEMU is up and -loadvm read what it needs: hold from now on.
            open(gate + ".armed", "w").close()
            vm.hmp.cmd('qemu-io virtio0 "aio_read -P 0x5a 0 64k"',
                       timeout=120)
            wait_for(lambda: os.path.exists(gate + ".held"), 30)
            # The read is held: QEMU answers, the other drive reads.
            self.assertIn("paused", vm.hmp.cmd("info status"))
            self.assertTrue(ok(vm.qemu_io("virtio1", "read -P 0x33 0 4k")))
            self.assertFalse(os.path.exists(gate),
                             "QEMU answered only once the read was let go")
        finally:
            opener.cancel()
            open(gate, "w").close()
        wait_for(lambda: "read 65536/65536 bytes" in vm.output(), 60)
        self.assertNotIn("Pattern verification failed", vm.output())

    def test_kill_during_savevm_leaves_old_or_none(self):
        """kill -9 at several points of a savevm: afterwards IMAGE.ready is
        either the old snapshot (byte for byte) or a complete new one; it
        never exists half-written, and whatever exists loads right.  Guest
        RAM holds 64 MiB of random data so that a savevm lasts long enough
        to be interrupted at different stages."""
        img = self.base()
        ram = os.path.join(self.tmp, "ram.bin")
        with open(ram, "wb") as f:
            f.write(os.urandom(64 * MiB))
        extra = ["-m", "256", "-device",
                 "loader,file=%s,addr=0x1000000,force-raw=on" % ram]
        seed = int(os.environ.get("S2E_TEST_SEED", "0")) or random.randrange(1 << 30)
        print("kill-test seed: S2E_TEST_SEED=%d" % seed)
        rng = random.Random(seed)
        vm = self.qemu([DRIVE % img], extra=extra, name="first")
        old = self.saved(img, vm=vm)
        old_state = file_state(old)
        outcomes = []
        for attempt in range(5):
            value = 0x60 + attempt
            vm = self.qemu([DRIVE % img], extra=extra,
                           name="kill%d" % attempt)
            vm.qemu_io("virtio0", "write -P 0x%02x 0 1M" % value)
            vm.hmp.sock.sendall(b"savevm ready\n")
            time.sleep(0.1 + rng.uniform(0.0, 1.2) * attempt / 2)
            mid_save = bool(glob.glob(os.path.join(self.tmp, ".*")))
            vm.kill()
            # Other files beside the image are never touched by savevm.
            self.assertEqual(file_state(img), self.bases[img])
            if not os.path.exists(old):
                # QEMU's savevm deletes the old snapshot first: "none".
                outcomes.append("none" + ("(mid-save)" if mid_save else ""))
                p = s2e("qemu-img", "snapshot", "-l", img)
                self.assertNotIn("ready", p.stdout)
                resume = self.qemu([DRIVE % img], extra=extra,
                                   name="after%d" % attempt)
                self.write_patterns(resume)
                self.assertEqual(resume.hmp.cmd("savevm ready", timeout=300),
                                 "")
                old_state = file_state(old)
                resume.quit()
                continue
            now = file_state(old)
            resume = self.qemu([DRIVE % img], extra=extra + ["-loadvm",
                                                             "ready"],
                               name="after%d" % attempt)
            if now == old_state:
                outcomes.append("old" + ("(mid-save)" if mid_save else ""))
                self.assert_patterns(resume)
            else:
                outcomes.append("new")
                out = resume.qemu_io("virtio0", "read -P 0x%02x 0 1M" % value)
                self.assertTrue(ok(out), out)
                self.write_patterns(resume)
                self.assertEqual(resume.hmp.cmd("savevm ready", timeout=300),
                                 "")
                old_state = file_state(old)
            resume.quit()
        print("kill outcomes:", outcomes)

def first_chunk_offset(path):
    """File offset of VM state chunk 0 (docs/snapshot-format.md)."""
    with open(path, "rb") as f:
        head = f.read(4096)
        f.seek(le(head, 136, 8))
        return le(f.read(24), 0, 8)


def data_offset_of(path, sector):
    """File offset of @sector's data in snapshot @path (a data extent)."""
    with open(path, "rb") as f:
        head = f.read(4096)
        f.seek(le(head, 152, 8))
        index = f.read(32 * le(head, 144, 8))
    for i in range(0, len(index), 32):
        start, count, offset = (le(index, i, 8), le(index, i + 8, 8),
                                le(index, i + 16, 8))
        if start <= sector < start + count:
            return offset + (sector - start) * 512
    raise AssertionError("sector %d not stored in %s" % (sector, path))


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


class SnapshotSafetyTest(S2ETestCase):
    """Nothing lost, nothing wrong: damaged files are caught before they
    change anything or give wrong data, files are found by their names,
    and no snapshot file ever replaces another drive's or another file."""

    def saved(self, img, name):
        vm = self.qemu([DRIVE % img], name="save-" + name)
        vm.qemu_io("virtio0", "write -P 0x5a 0 64k")
        vm.qemu_io("virtio0", "write -P 0x42 1M 4k")
        self.assertEqual(vm.hmp.cmd("savevm %s" % name), "")
        vm.quit()
        return img + "." + name

    def test_copied_and_renamed_files_go_by_their_file_name(self):
        """A snapshot is named by its file: `info snapshots` showed a copy
        or a renamed file under the name inside it (twice), and neither
        could be loaded or deleted."""
        img = self.base()
        snap = self.saved(img, "s")
        shutil.copy2(snap, img + ".v")
        os.rename(snap, img + ".renamed")
        vm = self.qemu([DRIVE % img])
        info = vm.hmp.cmd("info snapshots")
        names = [m.group(1) for m in re.finditer(
                 r"(?m)^\S+\s+(\S+)\s+[\d.]+ \S+\s+\d{4}-", info)]
        self.assertEqual(sorted(names), ["renamed", "v"], info)
        self.assertEqual(vm.hmp.cmd("loadvm renamed"), "")
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x5a 0 64k")))
        self.assertEqual(vm.hmp.cmd("delvm v"), "")
        self.assertFalse(os.path.exists(img + ".v"))
        listed = run([S2E_SNAPSHOT, "list", img]).stdout
        self.assertIn("renamed", listed)

    def assert_shared_files_refused(self, drives, file):
        vm = self.qemu(drives)
        vm.qemu_io("d0", "write -P 0xaa 0 4k")
        vm.qemu_io("d1", "write -P 0xbb 0 4k")
        reply = vm.hmp.cmd("savevm two")
        self.assertIn("Error", reply)
        self.assertIn("s2e drives 'd0' and 'd1' would both keep their "
                      "snapshots in", reply)
        self.assertFalse(os.path.exists(file))
        self.assertTrue(vm.alive())
        self.assertTrue(ok(vm.qemu_io("d0", "read -P 0xaa 0 4k")))

    def test_two_drives_on_one_image_refuse_savevm(self):
        """Two drives on one image wrote the same IMAGE.NAME: the second
        drive's disk-only file replaced the one with the VM state, and
        savevm said it succeeded."""
        img = self.base()
        drive = "if=none,id=%s,file=" + img + ",format=s2e"
        self.assert_shared_files_refused([drive % "d0", drive % "d1"],
                                         img + ".two")

    def test_same_image_name_in_one_snapshot_dir_refuses_savevm(self):
        for d in ("a", "b", "shared"):
            os.mkdir(os.path.join(self.tmp, d))
        a = self.base("a/disk.s2e", seed=1)
        b = self.base("b/disk.s2e", seed=2)
        shared = os.path.join(self.tmp, "shared")
        drive = "if=none,id=%s,file=%s,format=s2e,snapshot-dir=" + shared
        self.assert_shared_files_refused([drive % ("d0", a),
                                          drive % ("d1", b)],
                                         os.path.join(shared, "disk.s2e.two"))
        # Each with its own directory, both are saved.
        vm = self.qemu(["if=none,id=d0,file=%s,format=s2e" % a,
                        "if=none,id=d1,file=%s,format=s2e" % b], name="own")
        self.assertEqual(vm.hmp.cmd("savevm two"), "")
        self.assertTrue(os.path.exists(a + ".two"))
        self.assertTrue(os.path.exists(b + ".two"))

    def test_failed_overwrite_keeps_the_old_snapshot(self):
        """QEMU's savevm NAME deletes NAME first: a savevm that then failed
        (a full disk, a changed base) lost the only copy.  The old file is
        set aside until the new one is in place, and put back if it never
        is; a plain delvm still deletes."""
        img = self.base()
        snap = self.saved(img, "ready")
        old = file_state(snap)
        vm = self.qemu([DRIVE % img])
        os.utime(img, ns=(time.time_ns(), time.time_ns()))
        self.protect(img)
        reply = vm.hmp.cmd("savevm ready")
        self.assertIn("changed while in use", reply)
        vm.hmp.cmd("info status")         # the command after it has begun
        self.assertEqual(file_state(snap), old)
        self.assertIn("ready", vm.hmp.cmd("info snapshots"))
        self.assertEqual(vm.hmp.cmd("delvm ready"), "")
        self.assertFalse(os.path.exists(snap))
        vm.hmp.cmd("info status")
        self.assertEqual([f for f in os.listdir(self.tmp)
                          if f.startswith(".")], [])

    def test_each_file_is_validated_once_per_command(self):
        """Each info snapshots / loadvm opened and validated every file
        two or three times, warning about a damaged one as often."""
        img = self.base()
        snap = self.saved(img, "good")
        shutil.copy2(snap, img + ".bad")
        os.truncate(img + ".bad", 5000)
        vm = self.qemu([DRIVE % img])
        warning = "ignoring snapshot file %s.bad" % img
        for command in ("info snapshots", "loadvm good", "savevm third"):
            before = len(vm.output())
            said = vm.hmp.cmd(command) + vm.output()[before:]
            self.assertEqual(said.count(warning), 1, command + ":\n" + said)

    def test_snapshot_truncated_while_loaded_is_an_io_error(self):
        img = self.base()
        snap = self.saved(img, "t")
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "t"])
        os.truncate(snap, 4096)
        self.protect(snap)
        out = vm.qemu_io("virtio0", "read -P 0x5a 0 4k")
        self.assertIn("Input/output error", out)
        self.assertNotIn("Invalid argument", out)
        self.assertTrue(vm.alive())

    def test_savevm_never_replaces_other_files(self):
        """savevm NAME / qemu-img snapshot -c NAME replaced any file called
        IMAGE.NAME -- another base image disk.s2e.v2, a backup -- while
        delvm refused to delete it."""
        img = self.base()
        other = img + ".v2"
        with open(other, "w") as f:
            f.write("second VM base image v2\n")
        self.protect(other)
        p = s2e("qemu-img", "snapshot", "-c", "v2", img, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Refusing to replace '%s'" % other, p.stderr)
        shutil.copy2(img, img + ".bak")
        self.protect(img + ".bak")
        vm = self.qemu([DRIVE % img])
        reply = vm.hmp.cmd("savevm bak")
        self.assertIn("Refusing to replace '%s.bak'" % img, reply)
        self.assertIn("not an s2e snapshot file", reply)
        self.assertEqual([f for f in os.listdir(self.tmp)
                          if f.startswith(".")], [])

    def test_fifo_named_like_a_snapshot_never_hangs(self):
        img = self.base()
        fifo = img + ".fifo"
        os.mkfifo(fifo)
        p = run([S2E_SNAPSHOT, "info", fifo], check=False, timeout=20)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not a regular file", p.stderr)
        p = run([S2E_SNAPSHOT, "verify", img, "fifo"], check=False,
                timeout=20)
        self.assertEqual(p.returncode, 1)
        p = s2e("qemu-img", "snapshot", "-a", "fifo", img, check=False,
                timeout=20)
        self.assertNotEqual(p.returncode, 0)
        vm = self.qemu([DRIVE % img])
        self.assertIn("does not exist", vm.hmp.cmd("loadvm fifo"))
        self.assertTrue(vm.alive())

    def test_snapshot_files_grant_no_more_than_the_base(self):
        img = self.base()
        os.chmod(img, 0o600)
        self.protect(img)
        self.saved(img, "private")
        self.assertEqual(os.stat(img + ".private").st_mode & 0o777, 0o600)

    def test_damaged_vm_state_changes_nothing(self):
        img = self.base()
        snap = self.saved(img, "v")
        flip_byte(snap, first_chunk_offset(snap) + 100)
        self.protect(snap)
        vm = self.qemu([DRIVE % img])
        vm.qemu_io("virtio0", "write -P 0x77 0 4k")
        reply = vm.hmp.cmd("loadvm v")
        self.assertIn("Error", reply)
        self.assertIn("checksum", reply)
        # The current path's writes are still there: goto refused first.
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x77 0 4k")))

    def test_damaged_sector_data_is_an_io_error(self):
        img = self.base()
        snap = self.saved(img, "d")
        flip_byte(snap, data_offset_of(snap, 0) + 100)
        self.protect(snap)
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "d"])
        out = vm.qemu_io("virtio0", "read -P 0x5a 0 4k")
        self.assertIn("Input/output error", out)
        self.assertIn("is damaged: data of sectors 0+8", vm.output())
        # Only that block: the rest of the run and other runs read.
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x5a 4k 60k")))
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x42 1M 4k")))
        # A savevm of this state does not save the damage again.
        reply = vm.hmp.cmd("savevm d2")
        self.assertIn("Error", reply)
        self.assertIn("damaged", reply)
        self.assertFalse(os.path.exists(img + ".d2"))
        self.assertTrue(vm.alive())
        p = run([S2E_SNAPSHOT, "verify", img, "d"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("data of sectors 0+8", p.stderr)

    def test_version_1_loads_unverified_with_a_warning(self):
        img = self.base()
        snap = self.saved(img, "old")
        downgrade_to_v1(snap)
        self.assertIn("format version 1): loaded unverified",
                      run([S2E_SNAPSHOT, "info", snap]).stdout)
        vm = self.qemu([DRIVE % img], extra=["-loadvm", "old"])
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x5a 0 64k")))
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x42 1M 4k")))
        self.assertIn("format version 1, without block checksums",
                      vm.output())


class BaseIdentityTest(S2ETestCase):
    """The identity a snapshot records is that of the base file QEMU
    opened, and savevm/loadvm refuse, with the reason in the monitor, when
    that file changed or its path names another file since."""

    def filled(self, name, value, size=8 * MiB):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(bytes([value]) * size)
        return path

    def refused(self, vm, command, *needles):
        """Run @command; it must fail, with every needle in the monitor's
        reply (not only on stderr, which -daemonize sends to /dev/null)."""
        reply = vm.hmp.cmd(command, timeout=300)
        self.assertIn("Error", reply)
        for n in needles:
            self.assertIn(n, reply)
        self.assertTrue(vm.alive())
        return reply

    def test_base_replaced_by_mv_is_refused(self):
        img = self.filled("disk.s2e", 0x11)
        new = self.filled("new.raw", 0xcc)
        vm = self.qemu([DRIVE % img])
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x11 1M 4k")))
        os.rename(new, img)
        # The guest still reads the file that was opened ...
        self.assertTrue(ok(vm.qemu_io("virtio0", "read -P 0x11 1M 4k")))
        vm.qemu_io("virtio0", "write -P 0x22 0 4k")
        # ... which the path no longer names: no snapshot of it.
        self.refused(vm, "savevm s", "replaced while in use", img)
        self.assertFalse(os.path.exists(img + ".s"))
        self.protect(img)

    def test_base_truncated_while_running_is_refused(self):
        img = self.filled("disk.s2e", 0x11)
        vm = self.qemu([DRIVE % img])
        self.assertEqual(vm.hmp.cmd("savevm before"), "")
        os.truncate(img, 4 * MiB)
        self.refused(vm, "savevm s", "changed while in use",
                     "8388608 -> 4194304")
        self.assertFalse(os.path.exists(img + ".s"))
        self.refused(vm, "loadvm before", "changed while in use")
        self.protect(img)

    def test_base_renamed_away_is_refused(self):
        img = self.filled("disk.s2e", 0x11)
        vm = self.qemu([DRIVE % img])
        os.rename(img, img + ".moved")
        self.refused(vm, "savevm s", "renamed or deleted", img)
        self.assertEqual(os.listdir(self.tmp).count("disk.s2e.s"), 0)

    def test_relative_paths_after_daemonize(self):
        """-daemonize changes directory to /: relative image and
        snapshot-dir paths are resolved at open."""
        img = self.base("rel.s2e")
        other = self.base("other.s2e", seed=2)
        os.mkdir(os.path.join(self.tmp, "snaps"))
        mon = os.path.join(self.tmp, "mon.sock")
        pidfile = os.path.join(self.tmp, "qemu.pid")
        run([S2E_RUN, QEMU_SYSTEM, "-M", "pc", "-nodefaults", "-display",
             "none", "-S", "-daemonize", "-pidfile", pidfile,
             "-monitor", "unix:%s,server=on,wait=off" % mon,
             "-drive", "if=none,id=d0,file=rel.s2e,format=s2e,"
             "snapshot-dir=snaps",
             "-drive", "if=none,id=d1,file=other.s2e,format=s2e"],
            cwd=self.tmp)
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(kill_pid, pid)
        hmp = HMP(mon)
        self.addCleanup(hmp.close)
        hmp.cmd('qemu-io d0 "write -P 0x5a 0 4k"')
        self.assertEqual(hmp.cmd("savevm s"), "")
        self.assertTrue(os.path.exists(os.path.join(self.tmp, "snaps",
                                                    "rel.s2e.s")))
        self.assertTrue(os.path.exists(other + ".s"))
        self.assertIn("s", hmp.cmd("info snapshots"))
        self.assertEqual(hmp.cmd("loadvm s"), "")
        # A failure while the VM state is saved (d0 holds it) reaches the
        # monitor with its reason, though stderr is /dev/null now.
        os.rename(os.path.join(self.tmp, "snaps"),
                  os.path.join(self.tmp, "gone"))
        reply = hmp.cmd("savevm t")
        self.assertIn("Error", reply)
        self.assertIn("snaps' to write a snapshot in it: No such file",
                      reply)


def kill_pid(pid):
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    unittest.main(verbosity=2)
