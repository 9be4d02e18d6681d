#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""S2E's -enable-serial-commands on Debian's stock qemu-system-x86_64,
through build/s2e-run, with the real test guest (docs/guest.md).

The guest's agent talks over a virtconsole (hvc0), so the serial ports
(-serial file:serialN.txt, the guest's ttyS0, ttyS1, ...) carry only what
each test makes the guest write to them (`printf` of octal escapes, the
port in raw mode).  Each test boots its own QEMU on a `cp -p` copy of the
guest's disk as an s2e image; the copy must be unchanged at the end.

- split: the magic string reaches the port in five separate writes
  (inside the magic, before the command letter, inside the name).
- surrounded: one write with boot-log text, a false start and text after
  the command: the snapshot is taken; the file holds exactly what the
  guest wrote (up to where QEMU quit).
- name limit: a 19-byte name (S2E's limit) is saved and listed.
- invalid names: 20 bytes, a '/', an empty name, a missing trailing space
  (the name runs into the next line): QEMU exits by itself with status 1
  and the reason, and no snapshot or temporary file is left.
- k: S2E's "?!?MAGIC?!?k 0 " (here given as --enable-serial-commands):
  QEMU exits with status 0, no snapshot.
- failing save: the snapshot directory is read-only for QEMU (which runs
  as an unprivileged user when the tests run as root): status 1, the
  writer's reason (Permission denied), nothing written.
- several ports: a command's halves on two ports do nothing; a command on
  the third port is found and named after that port.
- output unchanged: all 256 byte values, lookalikes and an unknown command
  reach the file byte for byte with the option; without it (and with
  S2E_SERIAL_COMMANDS=1 inherited, which s2e-run drops) the same bytes and
  the magic strings change nothing: QEMU keeps running, no snapshot.
- S2E's lines: guest-images' TAKE_SNAPSHOT line (-net none -net
  nic,model=e1000 -nographic -monitor null, cache=writeback) takes `ready`
  when the guest writes S2E's string; launch-s2e.sh's line (-k en-us,
  -monitor null, -serial file:) resumes it and every file checks.  With
  -accel accel=kvm,kernel-irqchip=split only where KVM works.
- launcher and plugin: s2e-run removes the option (both spellings) only
  for qemu-system-*, keeps every other argument as it was, and drops an
  inherited S2E_SERIAL_COMMANDS; the plugin refuses the variable outside
  qemu-system-*; a machine without serial ports is warned about.
"""

import copy
import os
import shutil
import tempfile
import unittest

from s2e_block import guest as G
from s2e_block import workflow as W
from s2e_block.testing import GuestTestCase, S2ETestCase
from s2e_block.tools import PLUGIN, QEMU_SYSTEM, S2E_RUN, S2E_SNAPSHOT, run, s2e

MAGIC = b"?!?MAGIC?!?"
OPTION = "-enable-serial-commands"
NOBODY = 65534


def octal(data):
    """DATA as a printf format of octal escapes: any byte, no quoting."""
    return "".join("\\%03o" % b for b in data)


class SerialCommandsTest(GuestTestCase):

    # -- helpers --

    def image(self, directory=None):
        """A cp -p copy of the guest's disk, checked unchanged at the end."""
        directory = directory or self.tmp
        img = W.copy_base(self.files, os.path.join(directory, "disk.raw.s2e"))
        self.protect(img)
        return img

    def boot(self, ports=1, option=OPTION, img=None, qemu=None, env=None,
             files=None, socket_owner=None, accel=None, serial_dir=None):
        """QEMU with the guest on an s2e disk (virtio), the agent on hvc0
        and PORTS serial ports, files serialN.txt; the guest is ready and
        its ports are in raw mode.  Returns (guest, image, port files)."""
        img = img or self.image()
        serial_dir = serial_dir or self.tmp
        serials = [os.path.join(serial_dir, "serial%d.txt" % i)
                   for i in range(ports)]
        extra = W.s2e_drive(img)
        for path in serials:
            extra += ["-serial", "file:" + path]
        if option:
            extra.append(option)
        workdir = tempfile.mkdtemp(prefix="guest-", dir=self.tmp)
        g = G.Guest(files or self.files, workdir, extra,
                    qemu=qemu or W.S2E_QEMU, env=env, agent="virtio",
                    monitors=False, socket_owner=socket_owner, accel=accel)
        self.addCleanup(g.close)
        g.start()
        g.wait_ready(180)
        for i in range(ports):
            g.command("sh stty -F /dev/ttyS%d raw -echo" % i)
        return g, img, serials

    @staticmethod
    def put(g, port, data):
        """The guest writes DATA to ttyS<port>; returns when it is sent."""
        g.command("sh printf '%s' > /dev/ttyS%d" % (octal(data), port))

    @staticmethod
    def put_last(g, port, data):
        """The guest writes DATA, after which QEMU may be gone: no wait."""
        g.send("sh printf '%s' > /dev/ttyS%d" % (octal(data), port))

    def exit_status(self, g, timeout=120):
        status = g.wait_exit(timeout)
        return status, g.qemu_output()

    @staticmethod
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    def snapshot_files(self, img):
        """Snapshot files of IMG and writers' temporary files beside it."""
        d, base = os.path.split(img)
        return sorted(f for f in os.listdir(d)
                      if f.startswith(base + ".") or
                      f.startswith(".s2e-snapshot"))

    def assertSaved(self, img, name, status, out):
        self.assertEqual(status, 0, out)
        self.assertIn("serial command 's %s'" % name, out)
        self.assertIn("savevm %s done" % name, out)
        self.assertEqual(self.snapshot_files(img),
                         [os.path.basename(img) + "." + name])
        run([S2E_SNAPSHOT, "verify", img, name])

    def assertRefused(self, img, status, out, what, reason):
        self.assertEqual(status, 1, out)
        self.assertIn(what, out)
        self.assertIn(reason, out)
        self.assertEqual(self.snapshot_files(img), [])

    # -- the command in the byte stream --

    def test_split_across_writes(self):
        g, img, (s0,) = self.boot()
        pieces = [b"x?!?MAG", b"IC?!?", b"s", b" sp", b"lit "]
        for p in pieces[:-1]:
            self.put(g, 0, p)
        self.assertTrue(g.alive(), "QEMU acted on part of a command")
        self.put_last(g, 0, pieces[-1])
        status, out = self.exit_status(g)
        self.assertSaved(img, "split", status, out)
        self.assertEqual(self.read(s0), b"".join(pieces))

    def test_surrounded_by_other_output(self):
        g, img, (s0,) = self.boot()
        data = (b"[    1.234567] boot: ok\r\n?!?MAGIC?!\r\nlogin: " + b"xx" +
                MAGIC + b"s ready" + b" and output after it\r\n" * 20)
        self.put_last(g, 0, data)
        status, out = self.exit_status(g)
        self.assertSaved(img, "ready", status, out)
        got = self.read(s0)
        command_end = data.index(b"s ready ") + len(b"s ready ")
        self.assertGreaterEqual(len(got), command_end)
        self.assertEqual(got, data[:len(got)])

    def test_name_of_19_bytes(self):
        name = "ready_0123456789abc"
        self.assertEqual(len(name), 19)
        g, img, _ = self.boot()
        self.put_last(g, 0, MAGIC + b"s " + name.encode() + b" ")
        status, out = self.exit_status(g)
        self.assertSaved(img, name, status, out)
        listing = s2e("qemu-img", "snapshot", "-l", img).stdout
        self.assertIn(name, listing)

    def test_invalid_names(self):
        cases = [
            ("20 bytes", b"s abcdefghij0123456789 ", "longer than 19 bytes"),
            ("slash", b"s a/b ", "may not contain '/'"),
            ("empty", b"s  ", "Snapshot name is empty"),
            # echo '?!?MAGIC?!?s ready' without the trailing space.
            ("no trailing space", b"s ready\r\nlogin: ",
             "contains the control character 0x0d"),
        ]
        for what, command, reason in cases:
            with self.subTest(what):
                d = os.path.join(self.tmp, what.replace(" ", "-"))
                os.makedirs(d)
                g, img, _ = self.boot(img=self.image(d), serial_dir=d)
                self.put_last(g, 0, b"text " + MAGIC + command + b"more\n")
                status, out = self.exit_status(g)
                self.assertRefused(img, status, out,
                                   "invalid serial command 's'", reason)
                g.close()

    def test_k_exits(self):
        g, img, (s0,) = self.boot(option="--enable-serial-commands")
        self.put_last(g, 0, W.SECRET_MESSAGE_KILL.encode())
        status, out = self.exit_status(g)
        self.assertEqual(status, 0, out)
        self.assertIn("serial command 'k': exit", out)
        self.assertEqual(self.snapshot_files(img), [])
        self.assertEqual(self.read(s0), W.SECRET_MESSAGE_KILL.encode())

    def test_failing_save_read_only_directory(self):
        """QEMU cannot write the snapshot directory: status 1 with the
        writer's reason, no file.  Root may write any directory, so QEMU
        runs as nobody then, from copies it can read."""
        ro = os.path.join(self.tmp, "read-only")
        out_dir = os.path.join(self.tmp, "out")
        os.makedirs(ro)
        os.makedirs(out_dir)
        img = self.image(ro)
        os.chmod(ro, 0o555)
        self.addCleanup(os.chmod, ro, 0o755)
        qemu, env, owner, files = None, None, None, self.files
        if os.geteuid() == 0:
            prefix, env = self.unprivileged(NOBODY)
            qemu = prefix + [QEMU_SYSTEM]
            owner = NOBODY
            os.chown(out_dir, NOBODY, -1)
            files = copy.copy(self.files)
            for attr in ("kernel", "initrd"):
                dest = os.path.join(self.tmp, os.path.basename(
                    getattr(self.files, attr)))
                shutil.copyfile(getattr(self.files, attr), dest)
                os.chmod(dest, 0o644)
                setattr(files, attr, dest)
        g, img, _ = self.boot(img=img, qemu=qemu, env=env, files=files,
                              socket_owner=owner, accel="tcg",
                              serial_dir=out_dir)
        self.put_last(g, 0, W.SECRET_MESSAGE_SAVEVM.encode())
        status, out = self.exit_status(g)
        self.assertRefused(img, status, out, "savevm ready failed",
                           "Permission denied")
        self.assertEqual(os.listdir(ro), [os.path.basename(img)])

    def test_several_ports(self):
        g, img, (s0, s1, s2) = self.boot(ports=3)
        # S2E's QEMU shares one scanner between its ports: these halves
        # would make "savevm one" there.  Each port has its own here.
        self.put(g, 0, MAGIC)
        self.put(g, 1, b"s one ")
        self.assertTrue(g.alive(), "halves on two ports made a command")
        self.put_last(g, 2, b"log\r\n" + MAGIC + b"s three ")
        status, out = self.exit_status(g)
        self.assertSaved(img, "three", status, out)
        self.assertIn("s2e: serial2: serial command 's three'", out)
        self.assertEqual(self.read(s0), MAGIC)
        self.assertEqual(self.read(s1), b"s one ")
        self.assertEqual(self.read(s2), b"log\r\n" + MAGIC + b"s three ")

    def test_output_unchanged(self):
        """With and without the option, the file gets exactly the bytes
        the guest wrote; without it, the magic strings change nothing."""
        stream = (bytes(range(256)) * 4 + b"\r\n?!?MAGIC?!\n?!?magic?!?s x "
                  + MAGIC + b"x unknown command " + b"\0" * 7)
        with self.subTest("with the option"):
            g, img, (s0,) = self.boot()
            self.put(g, 0, stream)
            self.assertTrue(g.alive())
            self.put_last(g, 0, W.SECRET_MESSAGE_KILL.encode())
            status, out = self.exit_status(g)
            self.assertEqual(status, 0, out)
            self.assertIn("ignoring unknown serial command 'x'", out)
            self.assertEqual(self.read(s0),
                             stream + W.SECRET_MESSAGE_KILL.encode())
            g.close()
        with self.subTest("without the option"):
            d = os.path.join(self.tmp, "without")
            os.makedirs(d)
            env = {"S2E_SERIAL_COMMANDS": "1"}
            g, img, (s0,) = self.boot(option=None, env=env,
                                      img=self.image(d), serial_dir=d)
            tail = (W.SECRET_MESSAGE_KILL + W.SECRET_MESSAGE_SAVEVM).encode()
            self.put(g, 0, stream + tail)
            g.ping()
            self.assertTrue(g.alive())
            self.assertEqual(self.read(s0), stream + tail)
            self.assertEqual(self.snapshot_files(img), [])
            self.assertEqual(g.poweroff(), 0)
            self.assertNotIn("s2e:", g.qemu_output())

    # -- S2E's own command lines --

    def s2e_lines(self, take_accel, launch_accel):
        """TAKE_SNAPSHOT, the guest saves `ready`; launch-s2e.sh resumes."""
        img = self.image()
        exp, _, out = W.take_ready_by_guest(
            self.files, os.path.join(self.tmp, "take"), img, take_accel)
        self.assertEqual(self.snapshot_files(img),
                         [os.path.basename(img) + ".ready"])
        self.assertNotIn("error", out.lower())
        self.protect(img + ".ready")
        g = W.launch_guest(self.files, os.path.join(self.tmp, "launch"), img,
                           launch_accel, "launch", monitors=False)
        self.addCleanup(g.close)
        g.start()
        W.verify_resumed(g, exp.copy(), "launch", 4001)
        self.assertEqual(g.poweroff(), 0)

    def test_s2e_command_lines(self):
        accel = "kvm" if G.kvm_works(self.files) else "tcg"
        self.s2e_lines(accel, accel)

    def test_s2e_command_lines_kvm_split(self):
        if not G.kvm_works(self.files):
            self.skipTest("KVM does not work on this machine (guests do "
                          "not run under it): -accel accel=kvm,"
                          "kernel-irqchip=split cannot be tried")
        self.s2e_lines("kvm", "kvm-split")


class LauncherTest(S2ETestCase):
    """s2e-run's handling of the option, with stand-in programs that print
    their arguments and S2E_SERIAL_COMMANDS."""

    def fake(self, name):
        banner = run([QEMU_SYSTEM, "--version"]).stdout.splitlines()[0]
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n"
                    "[ \"$1\" = --version ] && { echo '%s'; exit 0; }\n"
                    "for a do printf '[%%s]' \"$a\"; done\n"
                    "echo \" env=${S2E_SERIAL_COMMANDS-unset}\"\n"
                    % banner.replace("'", ""))
        os.chmod(path, 0o755)
        return path

    def launch(self, program, *args, env=None):
        return run([S2E_RUN, program] + list(args),
                   env=dict(os.environ, **(env or {}))).stdout.strip()

    def test_option_removed_for_system_emulators(self):
        qemu = self.fake("qemu-system-x86_64")
        for option in (OPTION, "--" + OPTION.lstrip("-")):
            out = self.launch(qemu, "-m", "256M", option, "-append", "a b")
            self.assertEqual(out, "[-m][256M][-append][a b] env=1")
        out = self.launch(qemu, "-append", "a  b", "")
        self.assertEqual(out, "[-append][a  b][] env=unset")

    def test_inherited_variable_dropped(self):
        qemu = self.fake("qemu-system-x86_64")
        out = self.launch(qemu, "-m", "1G", env={"S2E_SERIAL_COMMANDS": "1"})
        self.assertEqual(out, "[-m][1G] env=unset")

    def test_other_programs_untouched(self):
        img = self.fake("qemu-img")
        out = self.launch(img, "info", OPTION)
        self.assertEqual(out, "[info][%s] env=unset" % OPTION)

    def test_plugin_refuses_the_variable_outside_system_emulators(self):
        env = dict(os.environ, LD_PRELOAD=PLUGIN, S2E_SERIAL_COMMANDS="1")
        p = run(["qemu-img", "--version"], check=False, env=env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("work only in qemu-system-*", p.stderr)
        env["S2E_SERIAL_COMMANDS"] = "yes"
        p = run([QEMU_SYSTEM, "--version"], check=False, env=env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("must be 1, not 'yes'", p.stderr)

    def test_machine_without_serial_port_warned(self):
        p = s2e(QEMU_SYSTEM, "-nodefaults", "-display", "none", "-S",
                "-monitor", "stdio", OPTION, input="quit\n", timeout=60)
        self.assertIn("this machine has no serial port", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
