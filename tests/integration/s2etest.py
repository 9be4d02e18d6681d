# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared harness for the integration tests: Debian's real QEMU binaries
run through build/s2e-run, with real files and real monitor commands.

Python 3 standard library only.  Every QEMU process is started in its own
process group and killed on cleanup, and every wait has a timeout, so a
broken build fails a test instead of hanging the suite.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import zlib

BUILD_DIR = os.environ.get("S2E_BUILD_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "build"))
S2E_RUN = os.path.join(BUILD_DIR, "s2e-run")
S2E_SNAPSHOT = os.path.join(BUILD_DIR, "s2e-snapshot")
PLUGIN = os.path.join(BUILD_DIR, "block", "qemu", "block-s2e.so")
QEMU_SYSTEM = "qemu-system-x86_64"

MiB = 1024 * 1024


def run(args, check=True, timeout=120, **kw):
    """Run a command, capture its output as text."""
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (
            " ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def s2e(program, *args, check=True, timeout=120, **kw):
    """Run a QEMU program with the s2e plugin loaded."""
    return run([S2E_RUN, program] + list(args), check=check,
               timeout=timeout, **kw)


def _data_extents(f, size):
    """(offset, length) of every data extent: holes read as zeroes, so
    hashing the extents and their positions covers the whole content."""
    fd = f.fileno()
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end - start
        pos = end


def file_state(path):
    """What must not change about a base image: content (SHA-256 over its
    data extents, so multi-TiB sparse files are cheap), size, allocated
    blocks, nanosecond mtime and mode."""
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for start, length in _data_extents(f, st.st_size):
            h.update(b"@%d:" % start)
            f.seek(start)
            while length > 0:
                block = f.read(min(length, MiB))
                if not block:
                    break
                h.update(block)
                length -= len(block)
    return {"sha256": h.hexdigest(), "size": st.st_size,
            "blocks": st.st_blocks, "mtime_ns": st.st_mtime_ns,
            "mode": st.st_mode & 0o7777}


def pattern(seed, size):
    """Deterministic bytes, different for every seed."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


def make_image(path, size, seed=1):
    """A raw image with known content (a pattern, so base reads are
    distinguishable from zeroes)."""
    with open(path, "wb") as f:
        chunk = pattern(seed, MiB)
        left = size
        while left > 0:
            n = min(left, MiB)
            f.write(chunk[:n])
            left -= n
    return path


def read_range(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    return data + b"\0" * (length - len(data))


def connect_unix(path, timeout):
    """Connect to a unix socket that a starting process will create."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.time() + timeout
    while True:
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            if time.time() > deadline:
                sock.close()
                raise
            time.sleep(0.05)


def dumped_bytes(out):
    """The bytes of every `read -v` hex dump in qemu-io's output."""
    data = bytearray()
    for line in out.splitlines():
        m = re.match(r"^([0-9a-f]{8}):\s+((?:[0-9a-f]{2}\s+)+)", line)
        if m:
            data += bytes(int(b, 16) for b in m.group(2).split())
    return bytes(data)


def le(data, off, size):
    return int.from_bytes(data[off:off + size], "little")


def put_le(data, off, size, value):
    data[off:off + size] = value.to_bytes(size, "little")


def downgrade_to_v1(path):
    """Rewrite a version 2 snapshot as version 1 (docs/snapshot-format.md):
    header 176 bytes long, one CRC-32 per data extent and per chunk, no
    block checksum table -- what s2e-block wrote before version 2."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    assert le(data, 8, 4) == 2
    table = le(data, 176, 8)                # the block checksums come last
    names = data[192:192 + le(data, 36, 4) + le(data, 40, 4)]
    data[176:4096] = bytes(4096 - 176)
    data[176:176 + len(names)] = names
    put_le(data, 8, 4, 1)
    put_le(data, 12, 4, 176)
    co, cn = le(data, 136, 8), le(data, 128, 8)
    for i in range(cn):
        e = co + 24 * i
        off, length = le(data, e, 8), le(data, e + 8, 4)
        put_le(data, e + 12, 4, zlib.crc32(data[off:off + length]))
    put_le(data, 124, 4, zlib.crc32(data[co:co + 24 * cn]))
    eo, en = le(data, 152, 8), le(data, 144, 8)
    for i in range(en):
        e = eo + 32 * i
        if le(data, e + 28, 4) == 0:
            off, count = le(data, e + 16, 8), le(data, e + 8, 8)
            put_le(data, e + 24, 4, zlib.crc32(data[off:off + count * 512]))
    put_le(data, 168, 4, zlib.crc32(data[eo:eo + 32 * en]))
    del data[table:]
    put_le(data, 104, 8, len(data))
    put_le(data, 32, 4, 0)
    put_le(data, 32, 4, zlib.crc32(data[:176 + len(names)]))
    with open(path, "wb") as f:
        f.write(data)


class QemuIoError(AssertionError):
    pass


def qemu_io(image, commands, fmt="s2e", extra=(), check=True, image_opts=None):
    """Run qemu-io through s2e-run with a list of commands; return stdout."""
    args = ["qemu-io"]
    if image_opts is not None:
        args += ["--image-opts", image_opts]
    else:
        args += ["-f", fmt, image]
    args += list(extra)
    for c in commands:
        args += ["-c", c]
    p = s2e(*args, check=False)
    out = p.stdout + p.stderr
    if check and (p.returncode != 0 or re.search(
            r"(failed|error|Error|Pattern verification)", out)):
        raise QemuIoError("qemu-io %s:\n%s" % (" ".join(commands), out))
    return out


class Monitor:
    """HMP over a unix socket: send a command, read until the prompt."""

    PROMPT = b"(qemu) "

    def __init__(self, path, timeout=30):
        self.sock = connect_unix(path, timeout)
        self.buf = b""
        self._read_until_prompt()

    def _read_until_prompt(self, timeout=None):
        if timeout:
            self.sock.settimeout(timeout)
        while not self.buf.endswith(self.PROMPT):
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("monitor closed; so far: %r" % self.buf)
            self.buf += data
        out, self.buf = self.buf, b""
        return out[:-len(self.PROMPT)]

    def cmd(self, line, timeout=120):
        self.sock.sendall(line.encode() + b"\n")
        out = self._read_until_prompt(timeout).decode(errors="replace")
        # HMP echoes the command (with terminal escapes) on the first line.
        out = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out)
        lines = out.replace("\r", "").split("\n")
        if lines and line.strip() and line.strip() in lines[0]:
            lines = lines[1:]
        return "\n".join(lines).strip()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class QMP:
    """Minimal QMP client: capabilities, execute, events."""

    def __init__(self, path, timeout=30):
        self.sock = connect_unix(path, timeout)
        self.file = self.sock.makefile("rb")
        self.events = []
        self._recv()  # greeting
        self.execute("qmp_capabilities")

    def _recv(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("QMP closed")
        return json.loads(line)

    def execute(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._recv()
            if "event" in r:
                self.events.append(r)
                continue
            return r

    def wait_event(self, name, timeout=120, match=None):
        deadline = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name and (match is None or match(e)):
                    return self.events.pop(i)
            self.sock.settimeout(max(0.1, deadline - time.time()))
            if time.time() > deadline:
                raise TimeoutError("no QMP event %s" % name)
            self.events.append(self._recv())

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Qemu:
    """qemu-system-x86_64 through s2e-run (or the @program given) with an
    HMP (and optionally QMP) monitor on unix sockets, no display, no guest
    code needed."""

    def __init__(self, tmpdir, drives, extra=(), qmp=False, name="vm",
                 wait=True, env=None, program=None):
        self.dir = tmpdir
        self.hmp_path = os.path.join(tmpdir, name + ".hmp")
        self.qmp_path = os.path.join(tmpdir, name + ".qmp") if qmp else None
        self.log_path = os.path.join(tmpdir, name + ".log")
        program = program or [S2E_RUN, QEMU_SYSTEM]
        args = list(program) + ["-nodefaults", "-display", "none",
                "-machine", "pc", "-accel", "tcg", "-m", "64", "-S",
                "-monitor", "unix:%s,server=on,wait=off" % self.hmp_path]
        if qmp:
            args += ["-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        for d in drives:
            args += ["-drive", d]
        args += list(extra)
        self.log = open(self.log_path, "w+")
        # cwd: the test's directory, which an unprivileged QEMU can enter.
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=tmpdir,
                                     start_new_session=True, env=env)
        self.hmp = None
        self.qmp = None
        if wait:
            self.connect()

    def connect(self, timeout=30):
        deadline = time.time() + timeout
        while not os.path.exists(self.hmp_path):
            if self.proc.poll() is not None:
                raise AssertionError("QEMU exited (%d):\n%s" % (
                    self.proc.returncode, self.output()))
            if time.time() > deadline:
                raise TimeoutError("QEMU did not start:\n" + self.output())
            time.sleep(0.05)
        self.hmp = Monitor(self.hmp_path)
        if self.qmp_path:
            self.qmp = QMP(self.qmp_path)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def qemu_io(self, device, command):
        """The HMP qemu-io command issues I/O as the guest would; its
        output goes to QEMU's stdout, i.e. our log."""
        before = len(self.output())
        reply = self.hmp.cmd('qemu-io %s "%s"' % (device, command))
        time.sleep(0.05)
        return reply + self.output()[before:]

    def alive(self):
        return self.proc.poll() is None

    def quit(self, timeout=30):
        if self.alive() and self.hmp:
            try:
                self.hmp.sock.sendall(b"quit\n")
            except OSError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self.close()

    def close(self):
        if self.hmp:
            self.hmp.close()
        if self.qmp:
            self.qmp.close()
        self.log.close() if not self.log.closed else None


class S2ETestCase(unittest.TestCase):
    """A temp directory per test, QEMU processes killed at the end, and a
    check that every registered base image is exactly as it was."""

    def setUp(self):
        if not os.access(S2E_RUN, os.X_OK):
            self.fail("%s missing: build with scripts/setup.sh" % S2E_RUN)
        self.tmp = tempfile.mkdtemp(prefix="s2e-it-")
        os.chmod(self.tmp, 0o755)
        self.vms = []
        self.bases = {}
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for vm in self.vms:
            vm.kill()
        for path, state in self.bases.items():
            self.assertEqual(file_state(path), state,
                             "base image %s changed" % path)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def base(self, name="disk.raw.s2e", size=16 * MiB, seed=1):
        """Create a base image and remember its state for the final check."""
        path = os.path.join(self.tmp, name)
        make_image(path, size, seed)
        self.bases[path] = file_state(path)
        return path

    def unprivileged(self, uid):
        """The command prefix and environment that run s2e-run as @uid.
        The build tree may sit where @uid cannot enter (a clone in a 0700
        directory), so the launcher and the plugin are copied beside this
        test's files and the launcher is pointed at the copy."""
        d = os.path.join(self.tmp, "unprivileged")
        os.makedirs(d, exist_ok=True)
        launcher = shutil.copy(S2E_RUN, d)
        plugin = shutil.copy(PLUGIN, d)
        for path in (d, launcher, plugin):
            os.chmod(path, 0o755)
        env = dict(os.environ, S2E_PLUGIN=plugin)
        prefix = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                  "--clear-groups", "--", launcher]
        return prefix, env

    def protect(self, path):
        self.bases[path] = file_state(path)

    def qemu(self, *args, **kw):
        vm = Qemu(self.tmp, *args, **kw)
        self.vms.append(vm)
        return vm

    def assertPattern(self, out, what=""):
        self.assertNotIn("Pattern verification failed", out, what)
        self.assertNotRegex(out, r"(?i)(failed|error)", what + "\n" + out)
