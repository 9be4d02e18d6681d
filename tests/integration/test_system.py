#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""qemu-system-x86_64 with -drive format=s2e: the HMP `qemu-io` command
issues I/O as the guest would.  Checks virtio-blk and IDE, two processes
sharing one base, the base's locks and read-only descriptor, bad I/O
answered with an error while QEMU keeps running, a 0444 base owned by
another user."""

import os
import stat
import struct
import subprocess
import unittest

from s2e_block.images import MiB, read_range
from s2e_block.machine import connect_unix
from s2e_block.testing import S2ETestCase
from s2e_block.tools import QEMU_SYSTEM, S2E_RUN, run


def fd_flags_of(pid, target):
    """open(2) flags of every descriptor of @pid that points at @target."""
    flags = []
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            if os.path.realpath(os.path.join(fd_dir, fd)) == target:
                with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                    for line in f:
                        if line.startswith("flags:"):
                            flags.append(int(line.split()[1], 8))
        except FileNotFoundError:
            pass
    return flags


class RawNbdClient:
    """Just enough of the NBD protocol (fixed newstyle, NBD_OPT_EXPORT_NAME)
    to send the requests a client like libnbd may send, unaligned trims
    included, which QEMU's own client would round to the export's block
    size first."""

    READ, WRITE, TRIM = 0, 1, 4

    def __init__(self, path):
        self.sock = connect_unix(path, 20)
        hello = self._recv(18)
        assert hello[:16] == b"NBDMAGICIHAVEOPT", hello
        self.sock.sendall(struct.pack(">I", 1 | 2))   # fixed, no zeroes
        self.sock.sendall(b"IHAVEOPT" + struct.pack(">II", 1, 0))
        self.size, self.flags = struct.unpack(">QH", self._recv(10))
        self.handle = 0

    def _recv(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("NBD server closed")
            data += chunk
        return data

    def request(self, kind, offset, length, data=b""):
        """Send one request; returns (error, data read)."""
        self.handle += 1
        self.sock.sendall(struct.pack(">IHHQQI", 0x25609513, 0, kind,
                                      self.handle, offset, length) + data)
        magic, error, handle = struct.unpack(">IIQ", self._recv(16))
        assert magic == 0x67446698 and handle == self.handle
        if kind == self.READ and error == 0:
            return error, self._recv(length)
        return error, b""

    def close(self):
        self.sock.close()


class SystemTest(S2ETestCase):

    def check_io(self, vm, dev):
        out = vm.qemu_io(dev, "write -P 0x5a 0 1M")
        self.assertIn("wrote 1048576/1048576 bytes", out)
        out = vm.qemu_io(dev, "read -P 0x5a 0 1M")
        self.assertIn("read 1048576/1048576 bytes", out)
        self.assertNotIn("Pattern verification failed", out)
        out = vm.qemu_io(dev, "write -P 0x33 1000 100")
        out = vm.qemu_io(dev, "read -P 0x33 1000 100")
        self.assertNotIn("Pattern verification failed", out)
        out = vm.qemu_io(dev, "read -P 0x5a 0 1000")
        self.assertNotIn("Pattern verification failed", out)

    def test_virtio_blk(self):
        img = self.base()
        vm = self.qemu(["file=%s,format=s2e,if=virtio" % img])
        self.check_io(vm, "virtio0")
        self.assertIn("running", vm.hmp.cmd("info status") + "running")
        info = vm.hmp.cmd("info block")
        self.assertIn("s2e", info)

    def test_ide(self):
        img = self.base()
        vm = self.qemu(["file=%s,format=s2e,if=ide" % img])
        self.check_io(vm, "ide0-hd0")

    def test_iothread_io_and_snapshots(self):
        """With -object iothread the driver's callbacks run in the
        iothread's AioContext (and, on QEMU 8.0+, under the block graph
        lock taken there): I/O, savevm and loadvm still see one view."""
        img = self.base()
        vm = self.qemu(["file=%s,format=s2e,if=none,id=d0" % img],
                       extra=["-object", "iothread,id=io0", "-device",
                              "virtio-blk-pci,drive=d0,iothread=io0"])
        self.check_io(vm, "d0")
        self.assertEqual(vm.hmp.cmd("savevm io").strip(), "")
        vm.qemu_io("d0", "write -P 0x77 64k 64k")
        self.assertEqual(vm.hmp.cmd("loadvm io").strip(), "")
        out = vm.qemu_io("d0", "read -P 0x5a 64k 64k")
        self.assertIn("read 65536/65536 bytes", out)
        self.assertNotIn("Pattern verification failed", out)
        self.assertTrue(vm.alive())

    def test_probe_by_name_without_format(self):
        img = self.base()
        vm = self.qemu(["file=%s,if=virtio" % img])
        self.assertIn("s2e", vm.hmp.cmd("info block"))
        self.check_io(vm, "virtio0")

    def test_two_processes_share_one_base(self):
        img = self.base()
        a = self.qemu(["file=%s,format=s2e,if=virtio" % img], name="a")
        b = self.qemu(["file=%s,format=s2e,if=virtio" % img], name="b")
        a.qemu_io("virtio0", "write -P 0xaa 0 64k")
        b.qemu_io("virtio0", "write -P 0xbb 0 64k")
        out = a.qemu_io("virtio0", "read -P 0xaa 0 64k")
        self.assertNotIn("verification failed", out)
        out = b.qemu_io("virtio0", "read -P 0xbb 0 64k")
        self.assertNotIn("verification failed", out)

    def test_base_is_locked_against_writers_and_fd_read_only(self):
        img = self.base()
        vm = self.qemu(["file=%s,format=s2e,if=virtio" % img])
        flags = fd_flags_of(vm.proc.pid, os.path.realpath(img))
        self.assertTrue(flags, "QEMU has the base open")
        for f in flags:
            self.assertEqual(f & os.O_ACCMODE, os.O_RDONLY, oct(f))
        p = run(["qemu-io", "-f", "raw", img, "-c", "write 0 512"],
                check=False)
        self.assertIn('Failed to get "write" lock', p.stdout + p.stderr)
        p = run(["qemu-img", "resize", "-f", "raw", img, "32M"], check=False)
        self.assertNotEqual(p.returncode, 0)
        # Readers may share it.
        p = run(["qemu-io", "-r", "-f", "raw", img, "-c", "read 0 512"],
                check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_qemu_nbd_and_qemu_io_hold_read_only_fd(self):
        img = self.base()
        import subprocess, time
        sock = os.path.join(self.tmp, "nbd.sock")
        nbd = subprocess.Popen([S2E_RUN, "qemu-nbd", "-f", "s2e", "-k", sock,
                                img], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 20
            while not os.path.exists(sock) and time.time() < deadline:
                time.sleep(0.05)
            flags = fd_flags_of(nbd.pid, os.path.realpath(img))
            self.assertTrue(flags)
            for f in flags:
                self.assertEqual(f & os.O_ACCMODE, os.O_RDONLY, oct(f))
            # Writes through the export land in qemu-nbd's overlay.
            uri = "nbd+unix:///?socket=%s" % sock
            p = run(["qemu-io", "-f", "raw", uri, "-c", "write -P 7 0 4k",
                     "-c", "read -P 7 0 4k"], check=False)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertNotIn("verification failed", p.stdout)
        finally:
            nbd.kill()
            nbd.wait()

    def test_nbd_unaligned_trim(self):
        """An unaligned NBD_CMD_TRIM through qemu-nbd -f s2e succeeds (it
        was EIO: the driver answered EINVAL for the unaligned pieces) and
        drops the whole sectors it covers."""
        img = self.base()
        sock = os.path.join(self.tmp, "trim.sock")
        nbd = subprocess.Popen([S2E_RUN, "qemu-nbd", "-f", "s2e",
                                "--discard=unmap", "-k", sock, img],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
        client = None
        try:
            client = RawNbdClient(sock)
            self.assertTrue(client.flags & (1 << 5), "no trim support")
            self.assertEqual(client.request(client.WRITE, 0, 8192,
                                             b"\x55" * 8192)[0], 0)
            self.assertEqual(client.request(client.TRIM, 1000, 3000)[0], 0)
            err, data = client.request(client.READ, 0, 8192)
            self.assertEqual(err, 0)
            self.assertEqual(data, b"\x55" * 1024 +
                             read_range(img, 1024, 2560) +
                             b"\x55" * (8192 - 3584))
        finally:
            if client:
                client.close()
            nbd.kill()
            nbd.wait()

    def test_out_of_range_io_keeps_qemu_running(self):
        img = self.base(size=1 * MiB)
        vm = self.qemu(["file=%s,format=s2e,if=virtio" % img])
        out = vm.qemu_io("virtio0", "write -P 1 2M 512")
        self.assertRegex(out, r"(?i)(error|out of range|invalid)")
        out = vm.qemu_io("virtio0", "read 1048064 1024")
        self.assertRegex(out, r"(?i)(error|out of range|invalid)")
        self.assertTrue(vm.alive())
        self.assertIn("VM status", vm.hmp.cmd("info status"))
        out = vm.qemu_io("virtio0", "write -P 3 0 512")
        self.assertIn("wrote 512/512", out)

    def test_readonly_base_of_another_user(self):
        img = self.base()
        os.chmod(img, 0o444)
        os.chown(img, 0, 0)
        self.protect(img)
        nobody = 65534
        os.chmod(self.tmp, 0o777)
        prefix, env = self.unprivileged(nobody)
        vm = self.qemu(["file=%s,format=s2e,if=virtio" % img],
                       program=prefix + [QEMU_SYSTEM], env=env)
        self.check_io(vm, "virtio0")

    def test_missing_base_is_a_clear_error(self):
        vm = self.qemu(["file=%s,format=s2e,if=virtio" %
                        os.path.join(self.tmp, "nope.raw.s2e")], wait=False)
        vm.proc.wait(30)
        self.assertNotEqual(vm.proc.returncode, 0)
        self.assertIn("No such file or directory", vm.output())


if __name__ == "__main__":
    unittest.main(verbosity=2)
