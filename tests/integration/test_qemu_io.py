#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""qemu-io through s2e-run: reads see the base with the overlay laid over
it, writes of every alignment land in the overlay, the base never changes.

Expected contents are computed here from the base file's bytes, not by the
driver: a hex dump from `read -v` is compared with them.
"""

import os
import re
import subprocess
import unittest

from s2e_block.images import MiB, read_range
from s2e_block.testing import S2ETestCase
from s2e_block.tools import S2E_RUN, dumped_bytes, qemu_io, run




class QemuIoTest(S2ETestCase):

    def test_base_reads_match_file(self):
        img = self.base(size=4 * MiB)
        for off, length in [(0, 512), (1000, 3000), (65536 - 700, 1500),
                            (4 * MiB - 512, 512), (4 * MiB - 3, 3)]:
            out = qemu_io(img, ["read -v %d %d" % (off, length)])
            self.assertEqual(dumped_bytes(out), read_range(img, off, length),
                             "base read at %d+%d" % (off, length))

    def test_aligned_write_read_back(self):
        img = self.base()
        out = qemu_io(img, [
            "write -P 0xab 0 64k",
            "write -P 0xcd 1M 4k",
            "read -P 0xab 0 64k",
            "read -P 0xcd 1M 4k",
        ])
        self.assertPattern(out)
        # A new process starts with an empty overlay: the base is back.
        out = qemu_io(img, ["read -v 0 512"])
        self.assertEqual(dumped_bytes(out), read_range(img, 0, 512))

    def test_unaligned_and_subsector_writes(self):
        img = self.base()
        expected = bytearray(read_range(img, 0, 3 * 65536))
        cmds = []
        for i, (off, length) in enumerate([(100, 7), (511, 2), (4095, 4098),
                                           (65536 - 5, 10), (70000, 1),
                                           (129 * 512 + 3, 700)]):
            value = 0x21 + i
            cmds.append("write -P 0x%02x %d %d" % (value, off, length))
            expected[off:off + length] = bytes([value]) * length
        cmds.append("read -v 0 %d" % len(expected))
        out = qemu_io(img, cmds)
        self.assertEqual(dumped_bytes(out), bytes(expected))

    def test_unaligned_read_crossing_64_sector_boundaries(self):
        # DESIGN.md section 6: an unaligned read crossing a 64-sector
        # boundary once skipped dirty sectors and returned base data.
        img = self.base()
        expected = bytearray(read_range(img, 0, 256 * 512))
        cmds = []
        for sector in (63, 64, 127, 128, 191):
            cmds.append("write -P 0x%02x %d 512" % (sector, sector * 512))
            expected[sector * 512:(sector + 1) * 512] = bytes([sector]) * 512
        cmds.append("read -v 1537 %d" % (200 * 512))
        out = qemu_io(img, cmds)
        self.assertEqual(dumped_bytes(out), bytes(expected[1537:1537 + 200 * 512]))

    def test_write_zeroes_and_discard(self):
        img = self.base()
        out = qemu_io(img, [
            "write -P 0x77 0 64k",
            "write -z 4096 8192",
            "read -P 0x77 0 4096",
            "read -P 0 4096 8192",
            "read -P 0x77 12288 4096",
            "write -z 1M 1M",
            "read -P 0 1M 1M",
        ])
        self.assertPattern(out)
        # Discard drops the overlay's data: the base shows through again.
        out = qemu_io(img, ["write -P 0x77 0 64k", "discard 8192 8192",
                            "read -v 8192 8192", "read -P 0x77 0 8192"])
        self.assertEqual(dumped_bytes(out), read_range(img, 8192, 8192))

    def test_read_racing_a_discard_returns_old_or_new_data(self):
        """A read that waits for the base (a throttled file child) while a
        discard drops overlay sectors it also covers returns what those
        sectors held before or after the discard -- never the caller's
        untouched buffer (qemu-io fills it with 0xab)."""
        img = os.path.join(self.tmp, "rc.s2e")
        with open(img, "wb") as f:
            f.write(b"\x11" * (4 * MiB))
        self.protect(img)
        opts = ("driver=s2e,file.driver=throttle,file.throttle-group=tg,"
                "file.file.driver=file,file.file.filename=%s" % img)
        out = qemu_io(None, ["write -P 0x77 0 4k",
                             "aio_read 1M 64k",       # holds the throttle
                             "aio_read -v 0 8k",      # overlay + base run
                             "discard 0 4k",
                             "aio_flush"],
                      extra=["--object", "throttle-group,id=tg,"
                             "x-bps-total=16384", "-d", "unmap"],
                      image_opts=opts)
        data = dumped_bytes(out)
        self.assertEqual(len(data), 8192, out)
        self.assertIn(data[:4096], (b"\x77" * 4096, b"\x11" * 4096), out)
        self.assertEqual(data[4096:], b"\x11" * 4096)

    def test_unaligned_discard_drops_whole_sectors_only(self):
        """QEMU passes a discard's unaligned head and tail down on their
        own: they are not an error, and only whole sectors are dropped."""
        img = self.base()
        out = qemu_io(img, ["write -P 0x55 0 8k", "discard 1000 3000",
                            "read -v 0 8k"])
        want = (b"\x55" * 1024 + read_range(img, 1024, 2560) +
                b"\x55" * (8192 - 3584))
        self.assertEqual(dumped_bytes(out), want)

    def test_map_covers_the_disk_after_writes_and_zeroes(self):
        # Overlay data, zeroed ranges and the base are all this image's own
        # data (the base is not a backing file), so all of it is allocated.
        img = self.base(size=4 * MiB)
        out = qemu_io(img, ["write -P 1 1M 64k", "write -z 2M 64k",
                            "discard 3M 4k", "map"])
        self.assertRegex(out, r"4 MiB \(0x400000\) bytes\s+allocated at offset 0")

    def test_out_of_range_io_is_an_error(self):
        img = self.base(size=1 * MiB)
        out = qemu_io(img, ["write -P 1 1M 512", "read 2M 512",
                            "write -P 2 0 512", "read -P 2 0 512"],
                      check=False)
        self.assertRegex(out, r"(?i)(input/output error|out of range|invalid)")
        # qemu-io went on after the errors.
        self.assertIn("read 512/512 bytes at offset 0", out)

    def test_odd_sized_image(self):
        size = 1000005  # not a multiple of 512 nor of 64 KiB
        img = self.base(size=size)
        out = qemu_io(img, ["read -v %d 5" % (size - 5)])
        self.assertEqual(dumped_bytes(out), read_range(img, size - 5, 5))
        out = qemu_io(img, ["write -P 0x42 %d 5" % (size - 5),
                            "read -P 0x42 %d 5" % (size - 5)])
        self.assertPattern(out)
        out = qemu_io(img, ["write -P 0x42 %d 512" % size], check=False)
        self.assertRegex(out, r"(?i)(error|out of range|invalid)")

    def test_sparse_multi_tib_image(self):
        img = os.path.join(self.tmp, "huge.raw.s2e")
        with open(img, "wb") as f:
            f.truncate(4 << 40)
        self.protect(img)
        offs = [(2 << 40) + 4096, (1 << 41) + (1 << 40) + 12345 * 512,
                (4 << 40) - 512, (1 << 32) * 512 + 65536 + 1024]
        cmds = []
        for i, off in enumerate(offs):
            cmds += ["write -P 0x%02x %d 4096" % (0x60 + i, off)
                     if off + 4096 <= (4 << 40) else
                     "write -P 0x%02x %d 512" % (0x60 + i, off)]
        for i, off in enumerate(offs):
            n = 4096 if off + 4096 <= (4 << 40) else 512
            cmds += ["read -P 0x%02x %d %d" % (0x60 + i, off, n),
                     "read -P 0 %d 512" % (off + n if off + n < (4 << 40)
                                           else off - 512)]
        out = qemu_io(img, cmds)
        self.assertPattern(out)

    def test_readonly_base_via_image_opts(self):
        img = self.base()
        os.chmod(img, 0o444)
        self.protect(img)
        opts = "driver=s2e,file.driver=file,file.filename=%s" % img
        # Run as an unprivileged user: root could open a 0444 file rw.
        nobody = 65534
        prefix, env = self.unprivileged(nobody)
        p = subprocess.run(
            prefix + ["qemu-io", "--image-opts",
                      opts + ",file.auto-read-only=on",
                      "-c", "write -P 0x99 0 4k", "-c", "read -P 0x99 0 4k"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=60, cwd=self.tmp, env=env)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertPattern(p.stdout)

    def test_writer_refused_while_s2e_holds_base(self):
        img = self.base()
        holder = subprocess.Popen(
            [S2E_RUN, "qemu-io", "-f", "s2e", img, "-c", "sleep 4000"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            import time
            time.sleep(1.5)
            p = run(["qemu-io", "-f", "raw", img, "-c", "write 0 512"],
                    check=False)
            self.assertIn("Failed to get \"write\" lock", p.stdout + p.stderr)
            # Another reader (another s2e user) is fine.
            out = qemu_io(img, ["write -P 5 0 512", "read -P 5 0 512"])
            self.assertPattern(out)
        finally:
            holder.kill()
            holder.wait()


if __name__ == "__main__":
    unittest.main(verbosity=2)
