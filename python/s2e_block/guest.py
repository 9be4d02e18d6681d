# SPDX-License-Identifier: GPL-2.0-or-later
"""Host-side control of the s2e test guest (Python 3 standard library only).

The guest (docs/guest.md) is Debian's kernel with a busybox initramfs whose
agent answers line commands on the serial console.  This module:

- builds or finds it: build_guest() runs scripts/build-guest.sh and returns a
  GuestFiles (kernel, initrd, pristine base disk guest.raw.s2e, the list of
  files on the disk and their expected SHA-256);
- computes file contents host-side: gen_content(size, seed) is the same
  generator as guest/gen.awk, so expected hashes need no guest;
- picks the accelerator: detect_accel() uses KVM only if a guest really
  boots under it (the answer is cached per host boot), else TCG;
- runs QEMU: Guest starts qemu-system-x86_64 (or a launcher such as
  build/s2e-run) with the caller's drive arguments, the serial console, an
  HMP monitor and a QMP monitor on unix sockets, and offers
  wait_ready() / command() plus typed helpers (write, sha256, checkall...);
- talks to the monitors: Guest.hmp(cmd) and Guest.qmp (s2e_block.machine's
  HMP and QMP).

Every wait has a timeout; QEMU runs in its own process group, is killed with
the group on close(), at interpreter exit, and (PR_SET_PDEATHSIG) when the
Python process dies, so a test never leaves a QEMU behind or hangs.

Example:

    from s2e_block.guest import Guest, build_guest, copy_image, drive_args
    files = build_guest()
    img = copy_image(tmpdir / "disk.raw")
    with Guest(files, tmpdir, drive_args(img, fmt="raw", iface="virtio")) as g:
        g.wait_ready()
        digest = g.write("new.bin", 1 << 20, seed=42)
        assert digest == expected_sha256(1 << 20, 42)
        assert g.checkall()["failed"] == 0
"""

import atexit
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref

from .machine import (HMP, QMP, MonitorError, QemuError, QemuTimeout,
                      QMPError, connect_unix)
from .tools import REPO_ROOT

__all__ = [
    "GuestError", "GuestTimeout", "CommandFailed", "MonitorError", "QMPError",
    "GuestFiles", "build_guest", "cache_root", "copy_image",
    "drive_args", "opt_escape", "gen_content", "expected_sha256",
    "file_blocks", "kvm_works", "detect_accel", "Guest",
]

BUILD_SCRIPT = os.path.join(REPO_ROOT, "scripts", "build-guest.sh")
QEMU = os.environ.get("S2E_QEMU", "qemu-system-x86_64")
READY = "S2E-GUEST-READY"


# --- errors -------------------------------------------------------------------
# One hierarchy with the monitors' (s2e_block.machine): anything that went
# wrong with the guest or QEMU is a GuestError; str() carries the recent
# console transcript and QEMU's output when they are known.

GuestError = QemuError
GuestTimeout = QemuTimeout


class CommandFailed(GuestError):
    """The agent answered S2E-ERR.  .reason is its reason, .output the
    lines the command printed."""

    def __init__(self, msg, cmd=None, reason=None, output=None):
        super().__init__(msg)
        self.cmd = cmd
        self.reason = reason
        self.output = output or []


# --- building and locating the guest ----------------------------------------

def cache_root():
    root = os.environ.get("S2E_BLOCK_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "s2e-block")
    return root


class GuestFiles:
    """The built guest: paths and what the base disk holds.

    .dir, .kernel (the uncompressed vmlinux, booted through PVH, when the
    build could extract it and S2E_GUEST_PVH is not 0; else the bzImage),
    .bzimage, .initrd, .image (pristine base: copy it, never use it in
    place), .cmdline (kernel command line), .files ({path: (size, seed)}),
    .manifest ({path: sha256}, every file on the base disk), .info (dict).
    """

    def __init__(self, directory):
        self.dir = directory
        self.bzimage = os.path.join(directory, "vmlinuz")
        vmlinux = os.path.join(directory, "vmlinux")
        if os.path.exists(vmlinux) and os.environ.get("S2E_GUEST_PVH", "1") != "0":
            self.kernel = vmlinux
        else:
            self.kernel = self.bzimage
        self.initrd = os.path.join(directory, "initrd.img")
        self.image = os.path.join(directory, "guest.raw.s2e")
        with open(os.path.join(directory, "cmdline")) as f:
            self.cmdline = f.read().strip()
        self.files = {}
        with open(os.path.join(directory, "files.list")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    self.files[parts[0]] = (int(parts[1]), int(parts[2]))
        self.manifest = {}
        with open(os.path.join(directory, "MANIFEST.sha256")) as f:
            for line in f:
                digest, path = line.rstrip("\n").split("  ", 1)
                self.manifest[path[2:] if path.startswith("./") else path] = digest
        self.info = {}
        with open(os.path.join(directory, "info")) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    self.info[k] = v

    def __repr__(self):
        return "GuestFiles(%r)" % self.dir


_built = {}


def build_guest(force=False, timeout=1800):
    """Run scripts/build-guest.sh (instant when cached) and return GuestFiles.

    S2E_GUEST_DIR, when set, names a ready guest directory and skips the
    script.  The result is memoised for the process."""
    given = os.environ.get("S2E_GUEST_DIR")
    if given and not force:
        return GuestFiles(given)
    if not force and "dir" in _built:
        return GuestFiles(_built["dir"])
    argv = [BUILD_SCRIPT] + (["--force"] if force else [])
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise GuestTimeout("build-guest.sh did not finish in %ss" % timeout) from e
    out = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not out:
        raise GuestError("build-guest.sh failed (exit %d):\n%s" % (
            proc.returncode, proc.stderr.decode(errors="replace")[-4000:]))
    directory = out[-1].strip()
    _built["dir"] = directory
    return GuestFiles(directory)


def copy_image(dest, files=None, fmt="raw"):
    """Copy the pristine base disk to DEST with `cp -p` (keeps the mtime
    the s2e format's base identity checks, and holes).  fmt="qcow2" converts
    it with qemu-img instead.  Returns DEST."""
    files = files or build_guest()
    dest = os.fspath(dest)
    if fmt == "raw":
        subprocess.run(["cp", "-p", "--sparse=always", files.image, dest],
                       check=True, timeout=120)
        os.chmod(dest, 0o644)
    else:
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt,
                        files.image, dest], check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
    return dest


def opt_escape(value):
    """QEMU option values double a comma to include it literally."""
    return str(value).replace(",", ",,")


def drive_args(path, fmt="raw", iface="virtio", **opts):
    """['-drive', 'file=PATH,format=FMT,if=IFACE,k=v...'] for Guest's
    extra_args.  Use cache='unsafe' etc. through opts."""
    parts = ["file=" + opt_escape(os.fspath(path)), "format=" + fmt,
             "if=" + iface]
    parts += ["%s=%s" % (k.replace("_", "-"), opt_escape(v))
              for k, v in opts.items()]
    return ["-drive", ",".join(parts)]


# --- the content generator (same as guest/gen.awk) ---------------------------

def gen_content(size, seed):
    """The bytes `write FILE SIZE SEED` produces in the guest."""
    if not 0 <= seed < 2 ** 31:
        raise ValueError("seed must be in [0, 2^31)")
    x = seed % 2147483646 + 1
    pool = bytearray()
    for _ in range(4096):
        x = (x * 16807) % 2147483647
        pool.append(1 + (x // 256) % 255)
    out = bytearray()
    n = 0
    left = size
    while left > 0:
        hdr = b"s2e seed=%d sector=%d\n" % (seed, n)
        x = (x * 16807) % 2147483647
        off = x % 3585
        sec = hdr + pool[off:off + 512 - len(hdr)]
        if left < 512:
            sec = sec[:left]
        out += sec
        left -= 512
        n += 1
    return bytes(out)


def expected_sha256(size, seed, offset=0, length=None):
    """SHA-256 of generated content, or of the slice [offset, offset+length)."""
    data = gen_content(size, seed)
    if length is None:
        length = len(data) - offset
    return hashlib.sha256(data[offset:offset + length]).hexdigest()


def file_blocks(image, path):
    """Physical 4 KiB block numbers of PATH inside a raw ext4 IMAGE, in file
    order (debugfs, read-only).  Multiply by 4096 for a disk byte offset."""
    proc = subprocess.run(["debugfs", "-R", "blocks /" + path.lstrip("/"),
                           os.fspath(image)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    if proc.returncode != 0:
        raise GuestError("debugfs failed: " + proc.stderr.decode(errors="replace"))
    return [int(b) for b in proc.stdout.split()]


# --- accelerator detection -------------------------------------------------

_accel = {}


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _kvm_ioctl_ok():
    KVM_GET_API_VERSION = 0xAE00
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        import fcntl
        return fcntl.ioctl(fd, KVM_GET_API_VERSION) == 12
    except OSError:
        return False
    finally:
        os.close(fd)


def kvm_works(files=None, timeout=None):
    """True if the guest really boots under KVM here.

    /dev/kvm may exist while guests do not run under it (QEMU aborts or the
    vCPU never makes progress), so this boots the guest once with
    -accel kvm and waits for the agent (timeout: S2E_KVM_PROBE_TIMEOUT,
    default 15 s).  The answer is cached per host boot in the cache
    directory and per process."""
    if "kvm" in _accel:
        return _accel["kvm"]
    if not _kvm_ioctl_ok():
        _accel["kvm"] = False
        return False
    files = files or build_guest()
    key = "%s %s %s" % (_boot_id(), files.info.get("key"), _qemu_version())
    cache_file = os.path.join(cache_root(), "kvm-probe.json")
    try:
        with open(cache_file) as f:
            cached = json.load(f)
        if cached.get("key") == key:
            _accel["kvm"] = bool(cached["ok"])
            return _accel["kvm"]
    except (OSError, ValueError, KeyError):
        pass
    if timeout is None:
        timeout = float(os.environ.get("S2E_KVM_PROBE_TIMEOUT", "15"))
    ok = False
    workdir = tempfile.mkdtemp(prefix="s2e-kvm-probe-")
    try:
        g = Guest(files, workdir, [], accel="kvm",
                  append="s2e.nomount s2e.disk_timeout=0")
        try:
            g.start()
            g.wait_ready(timeout)
            g.command("ping", timeout=10)
            ok = True
        except GuestError:
            ok = False
        finally:
            g.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    try:
        os.makedirs(cache_root(), exist_ok=True)
        tmp = cache_file + ".%d" % os.getpid()
        with open(tmp, "w") as f:
            json.dump({"key": key, "ok": ok}, f)
        os.replace(tmp, cache_file)
    except OSError:
        pass
    _accel["kvm"] = ok
    return ok


def detect_accel(files=None):
    """'kvm' or 'tcg'.  S2E_GUEST_ACCEL=kvm|tcg overrides the probe."""
    forced = os.environ.get("S2E_GUEST_ACCEL")
    if forced:
        return forced
    return "kvm" if kvm_works(files) else "tcg"


_qemu_ver = {}


def _qemu_version():
    if "v" not in _qemu_ver:
        try:
            out = subprocess.run([QEMU, "--version"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=30).stdout
            _qemu_ver["v"] = out.decode(errors="replace").splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            _qemu_ver["v"] = "unknown"
    return _qemu_ver["v"]


# --- the guest ----------------------------------------------------------------

_live = weakref.WeakSet()


@atexit.register
def _kill_all():
    for g in list(_live):
        g.close()


def _pdeathsig():
    # Runs in the child between fork and exec: die with the parent.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Guest:
    """One QEMU running the test guest.

    Guest(files, workdir, extra_args, ...) prepares; start() launches QEMU
    (waits until the serial console is connected); wait_ready() waits for
    the agent; command() runs one agent command.  Use as a context manager
    or call close() (kills QEMU's process group).

    extra_args: the caller's QEMU arguments, typically drive_args(...).
    qemu: argv prefix that runs QEMU, e.g. ["build/s2e-run",
    "qemu-system-x86_64"] or [path to a QEMU built from source]; default
    [S2E_QEMU or qemu-system-x86_64].  env: extra environment variables.
    accel: 'kvm', 'tcg' or None (detect_accel()).  append: extra kernel
    command line (s2e.disk=vdb, s2e.nomount, ...).  loadvm: start with
    -loadvm NAME (the guest is then already running its loop: call
    resync() instead of wait_ready()).  agent: "serial" (the agent on the
    first serial port, ttyS0) or "virtio" (on hvc0, a virtconsole: every
    serial port is then the caller's, e.g. S2E's -serial file:...).
    monitors: HMP and QMP sockets (hmp(), qmp).  machine_args: the
    caller's own machine options (e.g. S2E's command line, with its
    drives) instead of -nodefaults ... -no-reboot, accel, memory and
    extra_args; the guest's kernel, the agent's channel and the monitors
    are added to them.  socket_owner: the uid QEMU runs as when the qemu
    prefix switches users (e.g. setpriv): it gets the sockets' directory.

    Files in workdir: console.log (everything the guest printed),
    qemu.log (QEMU's stdout and stderr, e.g. HMP qemu-io output).
    """

    def __init__(self, files, workdir, extra_args=(), memory=256, accel=None,
                 append="", qemu=None, env=None, machine="pc", smp=1,
                 loadvm=None, name="guest", agent="serial", monitors=True,
                 machine_args=None, socket_owner=None):
        if agent not in ("serial", "virtio"):
            raise ValueError("agent is 'serial' or 'virtio'")
        self.files = files or build_guest()
        self.workdir = os.fspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.extra_args = list(extra_args)
        self.memory = memory
        self.accel = accel
        self.append = append
        self.qemu = list(qemu) if qemu else [QEMU]
        self.env = dict(env or {})
        self.machine = machine
        self.smp = smp
        # Not self.loadvm: that is the HMP method loadvm(name).
        self.start_loadvm = loadvm
        self.name = name
        self.agent = agent
        self.monitors = monitors
        self.machine_args = None if machine_args is None else list(machine_args)
        self.socket_owner = socket_owner
        self.proc = None
        self.ready_info = None
        self.boot_seconds = None
        self._sockdir = None
        self._serial = None
        self._hmp = None
        self._qmp = None
        self._lines = []          # complete console lines
        self._partial = b""
        self._pos = 0             # first line not consumed by a reader
        self._cond = threading.Condition()
        self._eof = False
        self._reader = None
        self._console_log = None
        self._qemu_log = None
        self._seq = 0
        self._tag = "%04x" % random.randrange(0x10000)
        self._started = None

    # -- lifecycle --

    def argv(self):
        if self.machine_args is not None:
            return (self.qemu + self.machine_args + self._kernel_args()
                    + self._monitor_args() + self._agent_args())
        accel = self.accel or detect_accel(self.files)
        self.accel = accel
        args = self.qemu + [
            "-name", self.name,
            "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", self.machine, "-accel", accel,
            "-m", str(self.memory), "-smp", str(self.smp),
            "-no-reboot",
        ] + self._kernel_args() + self._monitor_args() + self._agent_args()
        if accel == "kvm":
            args += ["-cpu", "host"]
        if self.start_loadvm:
            args += ["-loadvm", self.start_loadvm]
        return args + self.extra_args

    def _kernel_args(self):
        cmdline = self.files.cmdline
        if self.agent == "virtio":
            cmdline += " s2e.agent=hvc0"
        if self.append:
            cmdline += " " + self.append
        return ["-kernel", self.files.kernel, "-initrd", self.files.initrd,
                "-append", cmdline]

    def _monitor_args(self):
        if not self.monitors:
            return []
        d = self._sockdir
        return [
            "-chardev", "socket,id=s2e-hmp,path=%s/hmp.sock,server=on,wait=off" % d,
            "-mon", "chardev=s2e-hmp,mode=readline",
            "-chardev", "socket,id=s2e-qmp,path=%s/qmp.sock,server=on,wait=off" % d,
            "-mon", "chardev=s2e-qmp,mode=control",
        ]

    def _agent_args(self):
        # wait=on: QEMU starts the guest only once the host is connected.
        chardev = ["-chardev", "socket,id=s2e-serial,path=%s/serial.sock,"
                   "server=on,wait=on" % self._sockdir]
        if self.agent == "serial":
            return chardev + ["-serial", "chardev:s2e-serial"]
        return chardev + ["-device", "virtio-serial-pci,id=s2e-vser",
                          "-device", "virtconsole,chardev=s2e-serial,"
                          "bus=s2e-vser.0"]

    def start(self, timeout=60.0):
        """Launch QEMU and connect the serial console (QEMU waits for it,
        so no output is lost).  Call it from a thread that lives as long
        as QEMU should: PR_SET_PDEATHSIG kills QEMU when the thread that
        started it ends."""
        if self.proc is not None:
            raise GuestError("already started")
        self._sockdir = tempfile.mkdtemp(prefix="s2eg-", dir="/tmp")
        if self.socket_owner is not None:
            os.chown(self._sockdir, self.socket_owner, -1)
        argv = self.argv()
        with open(os.path.join(self.workdir, "qemu.cmdline"), "w") as f:
            f.write(" ".join(_shell_quote(a) for a in argv) + "\n")
        self._qemu_log = open(os.path.join(self.workdir, "qemu.log"), "ab")
        self._console_log = open(os.path.join(self.workdir, "console.log"), "ab")
        env = dict(os.environ)
        env.update(self.env)
        self._started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._qemu_log,
            stderr=subprocess.STDOUT, env=env, start_new_session=True,
            preexec_fn=_pdeathsig)
        _live.add(self)
        try:
            self._serial = connect_unix(os.path.join(self._sockdir, "serial.sock"),
                                        timeout, self.proc)
            # The console reader blocks until the guest prints.
            self._serial.settimeout(None)
        except GuestError as e:
            self.close()
            raise GuestError("%s\n%s" % (e, self._diag())) from None
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                         name="s2e-serial-" + self.name)
        self._reader.start()
        return self

    def boot(self, timeout=120.0):
        """start() + wait_ready()."""
        self.start()
        return self.wait_ready(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self, grace=3.0):
        """Kill QEMU (its whole process group) and release everything."""
        for mon in (self._hmp, self._qmp):
            if mon is not None:
                mon.close()
        self._hmp = self._qmp = None
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait(10)
        if self.proc is not None and self.proc.poll() is not None:
            # Reap anything the launcher left in the group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if self._serial is not None:
            try:
                self._serial.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._serial.close()
            self._serial = None
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
        for f in (self._console_log, self._qemu_log):
            if f is not None:
                f.close()
        self._console_log = self._qemu_log = None
        if self._sockdir:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None
        _live.discard(self)

    def wait_exit(self, timeout=60.0):
        """Wait for QEMU to exit by itself; return its exit status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise GuestTimeout("QEMU still running after %ss\n%s"
                               % (timeout, self._diag())) from None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- console --

    def _read_loop(self):
        sock = self._serial
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            log = self._console_log
            if log is not None:
                try:
                    log.write(chunk)
                    log.flush()
                except (ValueError, OSError):
                    pass
            with self._cond:
                data = self._partial + chunk
                parts = data.split(b"\n")
                self._partial = parts.pop()
                for p in parts:
                    self._lines.append(p.rstrip(b"\r").decode("latin-1"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _wait_line(self, pred, deadline, what):
        """Consume lines until pred(line) is true; return that line."""
        with self._cond:
            while True:
                while self._pos < len(self._lines):
                    line = self._lines[self._pos]
                    self._pos += 1
                    if pred(line):
                        return line
                if self._eof:
                    raise GuestError("console closed while waiting for %s "
                                     "(QEMU status %s)\n%s" % (
                                         what, self.proc.poll(), self._diag_locked()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestTimeout("timed out waiting for %s\n%s"
                                       % (what, self._diag_locked()))
                self._cond.wait(min(left, 1.0))

    def transcript(self, last=60):
        with self._cond:
            return self._transcript_locked(last)

    def _transcript_locked(self, last):
        lines = self._lines[-last:]
        if self._partial:
            lines = lines + [self._partial.decode("latin-1") + " <partial>"]
        return "\n".join(lines)

    def qemu_output(self):
        """QEMU's stdout+stderr so far (HMP qemu-io prints there)."""
        try:
            with open(os.path.join(self.workdir, "qemu.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _diag_locked(self):
        return ("--- console (last lines) ---\n%s\n--- qemu output ---\n%s"
                % (self._transcript_locked(40), self.qemu_output()[-3000:]))

    def _diag(self):
        with self._cond:
            return self._diag_locked()

    def wait_ready(self, timeout=120.0):
        """Wait for the agent's ready line; return its key=value fields
        (kernel, disk, mounted, modfail).  Sets .boot_seconds."""
        line = self._wait_line(lambda l: READY in l,
                               time.monotonic() + timeout, READY)
        info = {}
        for word in line[line.index(READY) + len(READY):].split():
            if "=" in word:
                k, v = word.split("=", 1)
                info[k] = v
        self.ready_info = info
        self.boot_seconds = time.monotonic() - self._started
        return info

    # -- commands --

    def send(self, cmd):
        """Send one command line; return its id (see result())."""
        if "\n" in cmd or "\r" in cmd:
            raise ValueError("a command is one line")
        self._seq += 1
        cid = "c%d-%s" % (self._seq, self._tag)
        try:
            self._serial.sendall(("%s %s\n" % (cid, cmd)).encode("latin-1"))
        except OSError as e:
            raise GuestError("cannot send %r: %s\n%s" % (cmd, e, self._diag())) from None
        return cid

    def result(self, cid, timeout=120.0, cmd=None):
        """Wait for the answer to command CID: its output lines.

        An answer whose S2E-BEGIN line was printed before a snapshot and
        whose end comes after the resume (a new QEMU) has no BEGIN in this
        console: it is still accepted, with the output lines since the
        console was connected."""
        deadline = time.monotonic() + timeout
        what = "answer to %s (%s)" % (cid, cmd or "?")
        begin = "S2E-BEGIN " + cid
        ok_line = "S2E-OK " + cid
        err_prefix = "S2E-ERR " + cid
        out = []
        while True:
            line = self._wait_line(lambda l: True, deadline, what)
            if line.endswith(begin):
                out = []
                continue
            if line.endswith(ok_line):
                return out
            if err_prefix in line and (line.endswith(err_prefix)
                                       or (err_prefix + " ") in line):
                reason = line[line.index(err_prefix) + len(err_prefix):].strip()
                raise CommandFailed("guest command %r failed: %s\n%s"
                                    % (cmd, reason, "\n".join(out[-40:])),
                                    cmd=cmd, reason=reason, output=out)
            out.append(line)

    def command(self, cmd, timeout=120.0):
        """Run one agent command; return its output lines, or raise
        CommandFailed (S2E-ERR) / GuestTimeout / GuestError (QEMU died),
        each with the console transcript."""
        return self.result(self.send(cmd), timeout, cmd)

    def resync(self, timeout=60.0):
        """After -loadvm (or any doubt): flush a partial line and ping."""
        try:
            self._serial.sendall(b"\n")
        except OSError:
            pass
        return self.command("ping", timeout)

    # -- typed helpers over command() --

    @staticmethod
    def _first_word(lines):
        for line in lines:
            if line.strip():
                return line.split()[0]
        raise GuestError("empty answer")

    def ping(self, timeout=30.0):
        return self.command("ping", timeout)

    def write(self, path, size, seed, sync=False, timeout=300.0):
        """Write SIZE generated bytes; return the guest-computed sha256."""
        return self._first_word(self.command(
            "write %s %d %d%s" % (path, size, seed, " sync" if sync else ""), timeout))

    def writeat(self, path, offset, length, seed, sync=False, timeout=300.0):
        """Overwrite LENGTH generated bytes at OFFSET; return the file's sha256."""
        return self._first_word(self.command(
            "writeat %s %d %d %d%s" % (path, offset, length, seed,
                                       " sync" if sync else ""), timeout))

    def sha256(self, path, timeout=300.0):
        return self._first_word(self.command("sha256 %s" % path, timeout))

    def readat(self, path, offset, length, direct=False, timeout=300.0):
        return self._first_word(self.command(
            "readat %s %d %d%s" % (path, offset, length, " direct" if direct else ""),
            timeout))

    def readdev(self, offset, length, direct=True, timeout=300.0):
        return self._first_word(self.command(
            "readdev %d %d%s" % (offset, length, " direct" if direct else ""), timeout))

    def checkall(self, timeout=600.0):
        """Verify every file against the on-disk manifest.  Returns
        {'checked': n, 'failed': n, 'results': {path: 'OK'|...}}; raises
        CommandFailed if any file fails."""
        return self._parse_check(self.command("checkall", timeout))

    @staticmethod
    def _parse_check(lines):
        res = {"results": {}, "checked": 0, "failed": 0}
        for line in lines:
            m = re.match(r"checked=(\d+) failed=(\d+)$", line)
            if m:
                res["checked"], res["failed"] = int(m.group(1)), int(m.group(2))
            elif ": " in line:
                p, status = line.rsplit(": ", 1)
                res["results"][p[2:] if p.startswith("./") else p] = status
        return res

    def ls(self, timeout=120.0):
        """{path: size} of every file on the disk."""
        out = {}
        for line in self.command("ls", timeout):
            size, path = line.split(" ", 1)
            out[path[2:] if path.startswith("./") else path] = int(size)
        return out

    def manifest(self, timeout=60.0):
        out = {}
        for line in self.command("manifest", timeout):
            digest, path = line.split("  ", 1)
            out[path[2:] if path.startswith("./") else path] = digest
        return out

    def dropcaches(self, sync=False, timeout=120.0):
        return self.command("dropcaches" + (" sync" if sync else ""), timeout)

    def sync(self, timeout=300.0):
        return self.command("sync", timeout)

    def dirty_kb(self, timeout=30.0):
        line = self.command("dirty", timeout)[0]
        return int(re.search(r"dirty_kb=(\d+)", line).group(1))

    def poweroff(self, timeout=60.0):
        """Sync, unmount, power off, and wait for QEMU to exit."""
        self.command("poweroff", timeout)
        return self.wait_exit(timeout)

    # -- monitors --

    def _need_monitors(self):
        if not self.monitors:
            raise MonitorError("this QEMU has no monitor (monitors=False)")

    @property
    def qmp(self):
        self._need_monitors()
        if self._qmp is None:
            self._qmp = QMP(os.path.join(self._sockdir, "qmp.sock"), proc=self.proc)
        return self._qmp

    def hmp(self, line, timeout=300.0):
        """Run one HMP command; return its output text."""
        self._need_monitors()
        if self._hmp is None:
            self._hmp = HMP(os.path.join(self._sockdir, "hmp.sock"), proc=self.proc)
        return self._hmp.cmd(line, timeout)

    def node_name(self, device):
        """Node name of the format node of drive DEVICE (e.g. 'virtio0',
        'ide0-hd0'), for QMP commands such as snapshot-save."""
        for blk in self.qmp.execute("query-block"):
            if blk.get("device") == device and "inserted" in blk:
                return blk["inserted"]["node-name"]
        raise MonitorError("no drive %r with a medium" % device)

    def savevm(self, name, timeout=600.0):
        """HMP savevm; raise MonitorError if QEMU printed an error."""
        out = self.hmp("savevm " + name, timeout)
        if out.strip():
            raise MonitorError("savevm %s: %s" % (name, out.strip()))
        return out

    def loadvm(self, name, timeout=600.0):
        out = self.hmp("loadvm " + name, timeout)
        if out.strip():
            raise MonitorError("loadvm %s: %s" % (name, out.strip()))
        return out

    def quit(self, timeout=60.0):
        """Ask QEMU to quit (HMP) and wait for it to exit."""
        try:
            self.hmp("quit", timeout)
        except (MonitorError, OSError):
            pass
        return self.wait_exit(timeout)


def _shell_quote(s):
    if re.fullmatch(r"[A-Za-z0-9_./=,:@%+-]+", s):
        return s
    return "'" + s.replace("'", "'\\''") + "'"
