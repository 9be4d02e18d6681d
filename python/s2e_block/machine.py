# SPDX-License-Identifier: GPL-2.0-or-later
"""A QEMU process and its monitors (Python 3 standard library only).

- connect_unix(): connect to a unix socket that a starting QEMU creates.
- HMP: the human monitor; cmd(line) returns the command's output text.
- QMP: the machine protocol; execute(cmd, args) returns the command's
  "return" value or raises QMPError; events are queued for wait_event();
  run_job() runs a job command to its end.
- Qemu: qemu-system-x86_64 (through build/s2e-run unless told otherwise)
  paused, with no guest code, its HMP (and optionally QMP) monitor on unix
  sockets: I/O through HMP `qemu-io`, savevm, loadvm...

The test guest (s2e_block.guest.Guest) uses the same HMP and QMP.  Every
wait has a timeout, and every QEMU runs in its own process group, so a
broken build fails a test instead of hanging it.

Errors: QemuError is anything that went wrong with QEMU, its monitors or
its guest; QemuTimeout (also a TimeoutError) a wait that ran out;
MonitorError a monitor that closed or answered nonsense; QMPError a QMP
command that answered with an error.
"""

import errno
import json
import os
import re
import select
import signal
import socket
import subprocess
import time

from .tools import QEMU_SYSTEM, S2E_RUN

__all__ = ["QemuError", "QemuTimeout", "MonitorError", "QMPError",
           "connect_unix", "HMP", "QMP", "Qemu"]


class QemuError(Exception):
    """Anything that went wrong with QEMU, its monitors or its guest; str()
    carries what is known of QEMU's output (and the guest's console)."""


class QemuTimeout(QemuError, TimeoutError):
    pass


class MonitorError(QemuError):
    pass


class QMPError(MonitorError):
    """A QMP command returned an error; .error is QMP's error object."""

    def __init__(self, msg, error=None):
        super().__init__(msg)
        self.error = error or {}


def connect_unix(path, timeout=30.0, proc=None):
    """Connect to the unix socket PATH that a starting process creates,
    retrying for TIMEOUT seconds; QemuError as soon as PROC (a Popen), if
    given, has exited.  The socket's own timeout is then TIMEOUT too: a
    reader that must block for longer sets its own."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.settimeout(timeout)
            return s
        except OSError as e:
            s.close()
            if e.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN):
                raise
        if proc is not None and proc.poll() is not None:
            raise QemuError("QEMU exited (status %s) before %s was ready"
                            % (proc.returncode, path))
        if time.monotonic() > deadline:
            raise QemuTimeout("cannot connect to %s" % path)
        time.sleep(0.02)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class HMP:
    """The human monitor on a unix socket: cmd() sends one command line
    and returns its output: what QEMU printed between the echo of the
    command and the next "(qemu) " prompt, without terminal escapes and
    carriage returns, stripped ("" when the command printed nothing)."""

    PROMPT = b"(qemu) "

    def __init__(self, path, timeout=30.0, proc=None):
        self.sock = connect_unix(path, timeout, proc)
        self._buf = b""
        self._read_until_prompt(timeout)        # the banner

    def _read_until_prompt(self, timeout, eof_ok=False):
        deadline = time.monotonic() + timeout
        while not self._buf.endswith(self.PROMPT):
            left = deadline - time.monotonic()
            if left <= 0:
                raise QemuTimeout("HMP: no prompt within %ss; got %r"
                                  % (timeout, self._buf[-2000:]))
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                if eof_ok:
                    break
                raise MonitorError("HMP connection closed; got %r"
                                   % self._buf[-2000:])
            self._buf += chunk
        data, self._buf = self._buf, b""
        if data.endswith(self.PROMPT):
            data = data[:-len(self.PROMPT)]
        return data

    def cmd(self, line, timeout=120.0):
        if "\n" in line:
            raise ValueError("one HMP command at a time")
        self.sock.sendall(line.encode() + b"\n")
        quitting = line.strip() in ("quit", "q")
        out = self._read_until_prompt(timeout, eof_ok=quitting)
        out = _ANSI.sub("", out.decode(errors="replace"))
        # The first line is the echo of the command.
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
    """A QMP client on a unix socket: capabilities negotiated on connect;
    execute() returns the "return" value or raises QMPError; events are
    queued in .events and read with wait_event(); run_job() runs a job
    command to its end."""

    def __init__(self, path, timeout=30.0, proc=None):
        self.sock = connect_unix(path, timeout, proc)
        self._buf = b""
        self.events = []
        self._id = 0
        greeting = self._read_msg(time.monotonic() + timeout,
                                  "QMP: no greeting within %ss" % timeout)
        if "QMP" not in greeting:
            raise MonitorError("unexpected QMP greeting %r" % greeting)
        self.greeting = greeting
        self.execute("qmp_capabilities", timeout=timeout)

    def _read_msg(self, deadline, late):
        """The next message; QemuTimeout(LATE) past DEADLINE."""
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QemuTimeout(late)
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MonitorError("QMP connection closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        if not line.strip():
            return self._read_msg(deadline, late)
        return json.loads(line.decode())

    def execute(self, cmd, args=None, timeout=60.0):
        """Run CMD with the arguments ARGS (a dict); return its "return"
        value, or raise QMPError with QMP's error object."""
        self._id += 1
        msg_id = "s2e-%d" % self._id
        msg = {"execute": cmd, "id": msg_id}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        late = "QMP %s: no answer within %ss" % (cmd, timeout)
        while True:
            resp = self._read_msg(deadline, late)
            if "event" in resp:
                self.events.append(resp)
                continue
            if resp.get("id") != msg_id:
                continue
            if "error" in resp:
                raise QMPError("QMP %s failed: %s"
                               % (cmd, resp["error"].get("desc")),
                               resp["error"])
            return resp.get("return")

    def wait_event(self, name, timeout=120.0, match=None):
        """Return (and remove) the first queued or arriving event NAME for
        which match(event) is true."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("event") == name and (match is None or match(ev)):
                    return self.events.pop(i)
            msg = self._read_msg(deadline, "QMP: no %s event within %ss"
                                 % (name, timeout))
            if "event" in msg:
                self.events.append(msg)

    def run_job(self, cmd, args, job_id, timeout=300.0):
        """Run a job command (e.g. snapshot-save) and wait for it to
        conclude; raise QMPError with the job's error, dismiss it."""
        args = dict(args, **{"job-id": job_id})
        self.execute(cmd, args, timeout=min(timeout, 60))
        self.wait_event("JOB_STATUS_CHANGE", timeout,
                        lambda ev: ev["data"]["id"] == job_id
                        and ev["data"]["status"] == "concluded")
        error = None
        for job in self.execute("query-jobs"):
            if job["id"] == job_id:
                error = job.get("error")
        self.execute("job-dismiss", {"id": job_id})
        if error:
            raise QMPError("job %s (%s) failed: %s" % (job_id, cmd, error),
                           {"desc": error})

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Qemu:
    """qemu-system-x86_64 through s2e-run (or the @program given) with an
    HMP (and optionally QMP) monitor on unix sockets, no display, no guest
    code needed.  QEMU's output goes to TMPDIR/NAME.log (output())."""

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
        """Connect the monitors; QemuError (with QEMU's output) if QEMU
        exits or does not listen within TIMEOUT seconds."""
        try:
            self.hmp = HMP(self.hmp_path, timeout, proc=self.proc)
            if self.qmp_path:
                self.qmp = QMP(self.qmp_path, timeout, proc=self.proc)
        except QemuError as e:
            raise type(e)("QEMU did not start: %s\n%s"
                          % (e, self.output())) from None

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
        if not self.log.closed:
            self.log.close()
