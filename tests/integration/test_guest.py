#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The main job on the real test guest (docs/guest.md), automated.

One snapshot is made for the whole class: the guest boots from a `cp -p`
copy of the pristine base disk as guest.raw.s2e (-drive format=s2e through
build/s2e-run), writes files (some still dirty in its page cache),
`savevm ready`, QEMU quits.  Then:

- test_resume_workflow: -loadvm ready; loadvm ready in that running QEMU;
  4 QEMUs resuming at once.  After every resume the guest drops its caches
  and checks every file against host-computed hashes, writes a file and
  reads it back; at the end the base and the snapshot are byte-identical
  with the same mtimes as before.
- test_unaligned_reads_after_resume: regression for DESIGN.md section 6 (a
  read that starts unaligned and crosses a 64-sector boundary skipped
  snapshot sectors and returned base data): the resumed guest reads, with
  O_DIRECT, file ranges and disk ranges that start on odd sectors and
  cross 64-sector boundaries, over blocks written before savevm, and
  compares them with hashes computed on the host.
- test_paths_in_guest: with the VM paused, fork a path through
  /objects/s2e-paths; the guest writes in one path; after a switch the
  other path's disk is untouched (the guest unmounts and drops its caches
  around each switch: paths fork the disk, not the guest's RAM).
- test_touched_base_refused: a base whose mtime changed (`touch`) makes
  -loadvm fail: QEMU exits non-zero before the guest runs, naming `cp -p`.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from s2e_block import guest as G
from s2e_block import workflow as W
from s2e_block.images import file_state
from s2e_block.testing import GuestTestCase

SECTOR = 512


def sha(data):
    return hashlib.sha256(data).hexdigest()


class GuestTest(GuestTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = tempfile.mkdtemp(prefix="s2e-guest-")
        cls.img = W.copy_base(cls.files, os.path.join(cls.dir, "guest.raw.s2e"))
        cls.base_state = file_state(cls.img)
        cls.exp, cls.timings = W.prepare_ready(
            cls.files, os.path.join(cls.dir, "first-boot"), W.s2e_drive(cls.img))
        cls.snap = cls.img + "." + W.SNAPSHOT
        cls.snap_state = file_state(cls.snap)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.protect(self.img)
        self.protect(self.snap)

    def guest(self, name, img=None, loadvm=W.SNAPSHOT):
        g = W.new_guest(self.files, os.path.join(self.tmp, name),
                        W.s2e_drive(img or self.img), loadvm=loadvm, name=name)
        self.addCleanup(g.close)
        return g

    def test_resume_workflow(self):
        # -loadvm in a new QEMU.
        g = self.guest("resume-1")
        g.start()
        W.verify_resumed(g, self.exp.copy(), "resume-1", 2001)
        # loadvm in the running QEMU: resume 1's writes are gone.
        g.loadvm(W.SNAPSHOT)
        W.verify_resumed(g, self.exp.copy(), "resume-2", 2002)
        self.assertNotIn("resumed/resume-1.bin", g.ls())
        self.assertEqual(g.quit(), 0)

        # 4 at once, each with its own writes.
        n = 4
        guests = [self.guest("many-%d" % i) for i in range(n)]
        errors = [None] * n

        def run(i):
            try:
                W.verify_resumed(guests[i], self.exp.copy(), "many-%d" % i,
                                 3000 + i)
            except Exception as e:  # reported by the main thread
                errors[i] = e

        for g in guests:
            g.start()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(300)
        for i, e in enumerate(errors):
            if e is not None:
                self.fail("concurrent resume %d: %s" % (i, e))
        for i, g in enumerate(guests):
            self.assertEqual([p for p in g.ls() if p.startswith("resumed/")],
                             ["resumed/many-%d.bin" % i])
        for g in guests:
            self.assertEqual(g.quit(), 0)

        self.assertEqual(file_state(self.img), self.base_state)
        self.assertEqual(file_state(self.snap), self.snap_state)

    def test_unaligned_reads_after_resume(self):
        exp = self.exp
        g = self.guest("unaligned")
        g.start()
        g.resync(120)
        # Nothing dropped or synced yet: the synced files' blocks are read
        # from the snapshot layer (O_DIRECT bypasses the page cache).
        checked = 0
        for path, ranges in (
                ("saved/synced-1m.bin", [(9, 128), (63, 2), (127, 130),
                                         (1, 2046), (65, 63), (191, 321)]),
                ("saved/odd-synced.bin", [(65, 200), (3, 61), (255, 129)]),
                ("big-3m.bin", [(9, 128), (1, 200), (127, 3), (73, 64)])):
            data = exp.content[path]
            for first, count in ranges:
                off, n = first * SECTOR, count * SECTOR
                self.assertLessEqual(off + n, len(data))
                got = g.readat(path, off, n, direct=True)
                self.assertEqual(got, sha(data[off:off + n]),
                                 "readat %s %d %d direct" % (path, off, n))
                checked += 1
        # The same on the device: big-3m.bin's blocks (base file, part of
        # it overwritten before savevm) are known from the base image.
        blocks = G.file_blocks(self.img, "big-3m.bin")
        run_len = 1
        while run_len < len(blocks) and blocks[run_len] == blocks[0] + run_len:
            run_len += 1
        self.assertGreaterEqual(run_len, 40, "big-3m.bin is fragmented")
        data = exp.content["big-3m.bin"]
        phys0 = blocks[0] * 4096
        for first, count in ((9, 128), (1, 150), (63, 66), (127, 129),
                             (17, 2)):
            off, n = first * SECTOR, count * SECTOR
            self.assertLessEqual(off + n, run_len * 4096)
            self.assertNotEqual((phys0 + off) // SECTOR % 64, 0)
            with open(self.img, "rb") as f:
                f.seek(phys0 + off)
                # The range holds sectors the snapshot changed.
                self.assertNotEqual(sha(f.read(n)), sha(data[off:off + n]))
            got = g.readdev(phys0 + off, n, direct=True)
            self.assertEqual(got, sha(data[off:off + n]),
                             "readdev %d %d direct (file offset %d)"
                             % (phys0 + off, n, off))
            checked += 1
        # And through the page cache, at byte offsets.
        for path, off, n in (("saved/synced-1m.bin", 4607, 65539),
                             ("odd-100k.bin", 29999, 9003),
                             ("saved/dirty-300k.bin", 32767, 100001)):
            got = g.readat(path, off, n)
            self.assertEqual(got, sha(exp.content[path][off:off + n]),
                             "readat %s %d %d" % (path, off, n))
            checked += 1
        self.assertGreater(checked, 15)
        self.assertEqual(g.quit(), 0)

    def test_paths_in_guest(self):
        """Optional part of the main job: fork a path with the VM paused,
        write in one path, switch: the other path's disk is untouched."""
        g = self.guest("paths")
        g.start()
        stats = W.two_paths(g, self.exp)
        self.assertRegex(stats, r"^0:\d+:\d+ \d+:\d+:\d+ drive:\S+:\d+:0$")
        self.assertEqual(g.quit(), 0)

    def test_touched_base_refused(self):
        d = os.path.join(self.tmp, "touched")
        os.makedirs(d)
        img = os.path.join(d, "guest.raw.s2e")
        subprocess.run(["cp", "-p", "--sparse=always", self.img, self.snap, d],
                       check=True)
        subprocess.run(["touch", img], check=True)
        g = self.guest("touched", img=img)
        g.start()
        status = g.wait_exit(60)
        self.assertNotEqual(status, 0)
        out = g.qemu_output()
        self.assertIn("cp -p", out)
        self.assertIn(img, out)
        # The guest never ran: not one byte on its console.
        self.assertEqual(g.transcript(), "")
        with open(os.path.join(self.tmp, "touched", "console.log"), "rb") as f:
            self.assertEqual(f.read(), b"")


if __name__ == "__main__":
    unittest.main()
