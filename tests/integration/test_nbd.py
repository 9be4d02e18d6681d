#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Base images from the network: the s2e driver's file child is an NBD
export (qemu-nbd or qemu-storage-daemon, read-only, on a unix socket or on
TCP 127.0.0.1), shared by several QEMU processes at once.

- each QEMU writes its own data and reads it back; reads of unwritten
  sectors come from the export;
- savevm / -loadvm through the drive option snapshot-dir=DIR; snapshot
  files are named DIR/EXPORT.NAME (DIR/base.NAME for the default export),
  whatever the socket path, host or port;
- the export never sees a write: it is read-only (a write would fail),
  qemu-nbd's request trace shows only reads, and the exported file keeps
  its SHA-256 and mtime;
- the identity of an NBD base is its size: a snapshot is refused on an
  export of another size.
"""

import os
import shutil
import socket
import subprocess
import time
import unittest

from s2e_block.images import MiB, file_state
from s2e_block.testing import S2ETestCase

# Request types a read-only client may send (qemu-nbd's trace names).
READ_ONLY_REQUESTS = {"read", "block status", "disconnect"}


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_const_image(path, size, value):
    with open(path, "wb") as f:
        f.write(bytes([value]) * size)
    return path


class NbdServer:
    """qemu-nbd (or qemu-storage-daemon) exporting FILE read-only, with
    its NBD request trace in a log file."""

    def __init__(self, tmp, image, export="", unix=True, daemon="qemu-nbd",
                 name="nbd"):
        self.log_path = os.path.join(tmp, name + ".log")
        self.image = image
        self.export = export
        if unix:
            self.sock = os.path.join(tmp, name + ".sock")
            self.port = None
        else:
            self.sock = None
            self.port = free_port()
        trace = "nbd_co_receive_request_decode_type"
        if daemon == "qemu-nbd":
            args = ["qemu-nbd", "--read-only", "--persistent", "--shared=16",
                    "--format=raw", "--export-name=" + export,
                    "--trace", trace]
            args += (["--socket=" + self.sock] if unix else
                     ["--bind=127.0.0.1", "--port=%d" % self.port])
            args.append(image)
        else:
            addr = ("addr.type=unix,addr.path=" + self.sock if unix else
                    "addr.type=inet,addr.host=127.0.0.1,addr.port=%d"
                    % self.port)
            args = ["qemu-storage-daemon", "--trace", trace,
                    "--blockdev", "driver=file,node-name=f,read-only=on,"
                    "filename=" + image.replace(",", ",,"),
                    "--blockdev", "driver=raw,node-name=base,file=f,"
                    "read-only=on",
                    "--nbd-server", addr,
                    "--export", "type=nbd,id=e0,node-name=base,writable=off,"
                    "name=" + export]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait_listening()

    def _wait_listening(self, timeout=30):
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("NBD server exited:\n" + self.output())
            s = socket.socket(socket.AF_UNIX if self.sock else socket.AF_INET)
            try:
                s.connect(self.sock if self.sock else ("127.0.0.1", self.port))
                return
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                s.close()

    def uri(self):
        if self.sock:
            return "nbd+unix:///%s?socket=%s" % (self.export, self.sock)
        return "nbd://127.0.0.1:%d/%s" % (self.port, self.export)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def request_types(self):
        """{type: count} of the requests the server decoded."""
        counts = {}
        for line in self.output().splitlines():
            if "nbd_co_receive_request_decode_type" in line and "(" in line:
                t = line.rsplit("(", 1)[1].rstrip(")")
                counts[t] = counts.get(t, 0) + 1
        return counts

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close() if not self.log.closed else None


def ok(out):
    return ("Pattern verification failed" not in out
            and "error" not in out.lower())


class NbdTest(S2ETestCase):

    def server(self, *args, **kw):
        srv = NbdServer(self.tmp, *args, **kw)
        self.addCleanup(srv.stop)
        return srv

    def snapdir(self, name="snaps"):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        return d

    def assert_no_writes(self, srv):
        types = srv.request_types()
        self.assertIn("read", types, srv.output()[-2000:])
        self.assertLessEqual(set(types), READ_ONLY_REQUESTS,
                             "the export saw other requests: %r" % types)

    def assert_read(self, vm, cmd):
        out = vm.qemu_io("virtio0", cmd)
        self.assertTrue(ok(out), cmd + ":\n" + out)

    def test_four_writers_savevm_loadvm_unix(self):
        """4 QEMUs on one read-only qemu-nbd export (unix socket, default
        export): each writes its own data and reads it back, saves into
        snapshot-dir; 4 new QEMUs resume their own snapshot at once."""
        base = make_const_image(os.path.join(self.tmp, "base.raw"),
                                16 * MiB, 0x33)
        self.protect(base)
        srv = self.server(base, export="")
        snaps = self.snapdir()
        drive = ("file=%s,format=s2e,if=virtio,snapshot-dir=%s"
                 % (srv.uri(), snaps))
        vms = [self.qemu([drive], name="w%d" % i) for i in range(4)]
        for i, vm in enumerate(vms):
            vm.qemu_io("virtio0", "write -P 0x%02x %d 65536"
                       % (0x40 + i, 4096 * i + 512))      # unaligned to 4 KiB
            vm.qemu_io("virtio0", "write -P 0x%02x %d 3" % (0x50 + i, MiB + 7))
        for i, vm in enumerate(vms):
            self.assert_read(vm, "read -P 0x%02x %d 65536" % (0x40 + i, 4096 * i + 512))
            self.assert_read(vm, "read -P 0x%02x %d 3" % (0x50 + i, MiB + 7))
            self.assert_read(vm, "read -P 0x33 %d 4096" % (8 * MiB))
            self.assertEqual(vm.hmp.cmd("savevm s%d" % i, timeout=300), "")
        for vm in vms:
            vm.quit()
        self.assertEqual(sorted(os.listdir(snaps)),
                         ["base.s%d" % i for i in range(4)],
                         "snapshots of the default export are named base.NAME")
        states = {f: file_state(os.path.join(snaps, f)) for f in os.listdir(snaps)}

        vms = [self.qemu([drive], extra=["-loadvm", "s%d" % i], name="r%d" % i)
               for i in range(4)]
        for i, vm in enumerate(vms):
            self.assert_read(vm, "read -P 0x%02x %d 65536" % (0x40 + i, 4096 * i + 512))
            self.assert_read(vm, "read -P 0x%02x %d 3" % (0x50 + i, MiB + 7))
            self.assert_read(vm, "read -P 0x33 %d 4096" % (8 * MiB))
            # Snapshots of the same base are listed by every process.
            info = vm.hmp.cmd("info snapshots")
            for j in range(4):
                self.assertIn("s%d" % j, info)
        for vm in vms:
            vm.quit()
        for f, st in states.items():
            self.assertEqual(file_state(os.path.join(snaps, f)), st)
        self.assert_no_writes(srv)

    def test_tcp_export_name_and_stable_naming(self):
        """TCP on 127.0.0.1, a named export: snapshots are EXPORT.NAME in
        snapshot-dir, found again through another spelling of the same
        export (URI vs options) and another port."""
        base = make_const_image(os.path.join(self.tmp, "disk.raw"), 8 * MiB, 0x21)
        self.protect(base)
        srv = self.server(base, export="images/disk.raw.s2e", unix=False)
        snaps = self.snapdir()
        vm = self.qemu(["file=%s,format=s2e,if=virtio,snapshot-dir=%s"
                        % (srv.uri(), snaps)], name="save")
        vm.qemu_io("virtio0", "write -P 0x77 4608 65536")
        self.assertEqual(vm.hmp.cmd("savevm ready", timeout=300), "")
        vm.quit()
        self.assertEqual(os.listdir(snaps), ["disk.raw.s2e.ready"])
        srv.stop()

        # The same base, served again on another port.
        srv2 = self.server(base, export="images/disk.raw.s2e", unix=False,
                           name="nbd2")
        self.assertNotEqual(srv2.port, srv.port)
        opts = ("file.driver=nbd,file.server.type=inet,"
                "file.server.host=127.0.0.1,file.server.port=%d,"
                "file.export=images/disk.raw.s2e,format=s2e,if=virtio,"
                "snapshot-dir=%s" % (srv2.port, snaps))
        vm = self.qemu([opts], extra=["-loadvm", "ready"], name="load")
        self.assert_read(vm, "read -P 0x77 4608 65536")
        self.assert_read(vm, "read -P 0x21 0 4608")
        self.assert_read(vm, "read -P 0x21 %d 4096" % (4608 + 65536))
        vm.quit()
        self.assert_no_writes(srv)
        self.assert_no_writes(srv2)

    def test_storage_daemon_and_no_snapshot_dir(self):
        """qemu-storage-daemon's read-only export works the same; without
        snapshot-dir, I/O works and savevm says what is missing."""
        base = make_const_image(os.path.join(self.tmp, "qsd.raw"), 4 * MiB, 0x44)
        self.protect(base)
        srv = self.server(base, export="qsd", daemon="qemu-storage-daemon")
        vm = self.qemu(["file=%s,format=s2e,if=virtio" % srv.uri()], name="q")
        vm.qemu_io("virtio0", "write -P 0x55 1000 2000")
        self.assert_read(vm, "read -P 0x55 1000 2000")
        self.assert_read(vm, "read -P 0x44 0 512")
        reply = vm.hmp.cmd("savevm x", timeout=300)
        self.assertIn("Error", reply)
        self.assertIn("give the s2e drive a snapshot-dir option",
                      reply + vm.output())
        self.assertTrue(vm.alive())
        vm.quit()
        self.assertEqual(file_state(base), self.bases[base])
        self.assert_no_writes(srv)

    def test_identity_is_the_size(self):
        """A snapshot taken over an export is refused over an export of
        another size (the only identity an NBD base has)."""
        base = make_const_image(os.path.join(self.tmp, "a.raw"), 4 * MiB, 0x61)
        self.protect(base)
        snaps = self.snapdir()
        srv = self.server(base, export="img")
        vm = self.qemu(["file=%s,format=s2e,if=virtio,snapshot-dir=%s"
                        % (srv.uri(), snaps)], name="save")
        vm.qemu_io("virtio0", "write -P 0x62 0 4096")
        self.assertEqual(vm.hmp.cmd("savevm ready", timeout=300), "")
        vm.quit()
        srv.stop()

        bigger = make_const_image(os.path.join(self.tmp, "b.raw"), 5 * MiB, 0x61)
        srv2 = self.server(bigger, export="img", name="nbd2")
        vm = self.qemu(["file=%s,format=s2e,if=virtio,snapshot-dir=%s"
                        % (srv2.uri(), snaps)], extra=["-loadvm", "ready"],
                       name="load", wait=False)
        self.assertNotEqual(vm.proc.wait(60), 0)
        out = vm.output()
        self.assertIn("5242880 bytes", out)
        self.assertIn("4194304 bytes", out)
        vm.close()


class NbdGuestTest(S2ETestCase):
    """The real guest booted from a read-only NBD export over TCP."""

    def test_guest_savevm_loadvm_over_nbd(self):
        from s2e_block import guest as G
        from s2e_block import workflow as W
        files = G.build_guest()
        base = W.copy_base(files, os.path.join(self.tmp, "guest.raw.s2e"))
        self.protect(base)
        srv = NbdServer(self.tmp, base, export="guest.raw.s2e", unix=False)
        self.addCleanup(srv.stop)
        snaps = os.path.join(self.tmp, "snaps")
        os.makedirs(snaps)
        drive = ["-drive", "file=%s,format=s2e,if=virtio,snapshot-dir=%s"
                 % (srv.uri(), snaps)]
        exp, _ = W.prepare_ready(files, os.path.join(self.tmp, "boot"), drive)
        self.assertEqual(os.listdir(snaps), ["guest.raw.s2e.ready"])
        with W.new_guest(files, os.path.join(self.tmp, "resume"), drive,
                         loadvm="ready", name="resume") as g:
            g.start()
            W.verify_resumed(g, exp.copy(), "nbd", 4001)
            g.quit()
        self.assertIn("read", srv.request_types())
        self.assertLessEqual(set(srv.request_types()), READ_ONLY_REQUESTS,
                             srv.request_types())
        shutil.rmtree(snaps)


if __name__ == "__main__":
    unittest.main()
