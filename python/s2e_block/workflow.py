# SPDX-License-Identifier: GPL-2.0-or-later
"""The main job's workflow on the real test guest, shared by
scripts/demo.py, tests/integration/test_guest.py, test_nbd.py,
test_serial_commands.py and bench/bench-resume.py (Python 3 standard
library only).

- S2E_QEMU: the argv prefix that runs Debian's qemu-system-x86_64 with the
  s2e plugin (build/s2e-run).
- Expected: the host-side model of every file on the guest's disk (path ->
  content), so every check compares the guest's answers with hashes the
  host computed itself, not only with the manifest the guest keeps.
- prepare_ready(): boot the guest on an s2e disk, write files (some left
  dirty in the guest's page cache), `savevm ready`, quit.
- take_ready_by_guest(): the same writes, but the way S2E's image build
  takes `ready`: QEMU runs with guest-images' command line
  (take_snapshot_args(), with -enable-serial-commands), the guest writes
  S2E's magic string to its first serial port, QEMU saves and exits by
  itself.  launch_guest() resumes it with s2e-env's launch-s2e.sh line
  (launch_args()).
- verify_resumed(): what each resumed guest does: drop its caches, re-read
  and check every file, write more, read it back.

The guest and its monitors are s2e_block.guest's; paths are
s2e_block.tools'.
"""

import hashlib
import os
import time

from . import guest as G
from .tools import QEMU_SYSTEM, S2E_RUN

S2E_QEMU = [S2E_RUN, QEMU_SYSTEM]
SNAPSHOT = "ready"

# Files the first boot writes before `savevm ready`: (path, size, seed,
# sync).  The unsynced ones are still dirty in the guest's page cache when
# the VM is saved: they reach the disk only after the resume.
BEFORE_SAVE = [
    ("saved/synced-1m.bin", 1 << 20, 1001, True),
    ("saved/odd-synced.bin", 200003, 1002, True),
    ("saved/dirty-300k.bin", 300000, 1003, False),
    ("saved/deep/dirty-small.bin", 4097, 1004, False),
]
# Overwrites of files of the base disk before the savevm:
# (path, offset, length, seed, sync).  Unaligned, across 64-sector
# boundaries, so the snapshot holds partial clusters of base files.
OVERWRITE_BEFORE_SAVE = [
    ("big-3m.bin", 4608 + 1, 65536 + 7, 1005, True),
    ("odd-100k.bin", 30000, 9000, 1006, False),
]


class Expected:
    """What every file on the guest's disk must contain (host-computed)."""

    def __init__(self, files):
        self.content = {}
        for path, (size, seed) in files.files.items():
            self.content[path] = G.gen_content(size, seed)
        # README.txt is not generated: trust the build's manifest for it.
        self.fixed = {p: d for p, d in files.manifest.items()
                      if p not in self.content}

    def copy(self):
        e = Expected.__new__(Expected)
        e.content = dict(self.content)
        e.fixed = dict(self.fixed)
        return e

    def write(self, path, size, seed):
        self.content[path] = G.gen_content(size, seed)
        return self.sha256(path)

    def writeat(self, path, offset, length, seed):
        old = self.content.get(path, b"")
        if len(old) < offset:
            old += b"\0" * (offset - len(old))
        data = G.gen_content(length, seed)
        self.content[path] = old[:offset] + data + old[offset + length:]
        return self.sha256(path)

    def sha256(self, path):
        if path in self.fixed:
            return self.fixed[path]
        return hashlib.sha256(self.content[path]).hexdigest()

    def manifest(self):
        out = dict(self.fixed)
        for p in self.content:
            out[p] = self.sha256(p)
        return out

    def sizes(self):
        return {p: len(c) for p, c in self.content.items()}


class CheckFailed(AssertionError):
    pass


def _require(cond, what):
    if not cond:
        raise CheckFailed(what)


def copy_base(files, dest):
    """cp -p the pristine base disk to DEST and flush it, so its allocated
    block count (part of file_state()) no longer changes under delayed
    allocation."""
    G.copy_image(dest, files)
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return dest


def s2e_drive(image, **opts):
    """-drive arguments for IMAGE as an s2e disk on virtio."""
    return G.drive_args(image, fmt="s2e", iface="virtio", **opts)


def new_guest(files, workdir, drive, loadvm=None, name="guest", memory=256):
    return G.Guest(files, workdir, drive, qemu=S2E_QEMU, loadvm=loadvm,
                   name=name, memory=memory)


def prepare_ready(files, workdir, drive, say=lambda m: None, memory=256):
    """Boot, write (some dirty), `savevm ready`, quit.  Returns
    (Expected, timings dict)."""
    exp = Expected(files)
    g = new_guest(files, workdir, drive, name="first-boot", memory=memory)
    try:
        t = _boot_and_write(g, exp, say)
        # The guest signals readiness with its answer; the host saves.
        g.command("sh echo S2E-DEMO-READY")
        t0 = time.monotonic()
        g.savevm(SNAPSHOT)
        t["savevm"] = time.monotonic() - t0
        g.quit()
    finally:
        g.close()
    return exp, t


def _boot_and_write(g, exp, say):
    """Boot G, write BEFORE_SAVE and OVERWRITE_BEFORE_SAVE (the unsynced
    ones stay dirty in the guest's page cache); update EXP.  Timings."""
    t = {}
    t0 = time.monotonic()
    g.start()
    info = g.wait_ready(180)
    t["boot"] = time.monotonic() - t0
    _require(info.get("mounted") == "yes",
             "the guest mounted its disk: %r" % info)
    say("guest ready in %.1f s (%s, disk %s, accel %s)" % (
        t["boot"], info.get("kernel"), info.get("disk"), g.accel))
    g.command("writeback off")
    t0 = time.monotonic()
    # Synced writes first: a sync flushes everything dirty so far.
    for want_sync in (True, False):
        for path, size, seed, sync in BEFORE_SAVE:
            if sync != want_sync:
                continue
            got = g.write(path, size, seed, sync=sync)
            _require(got == exp.write(path, size, seed),
                     "guest wrote %s with the expected content" % path)
        for path, off, length, seed, sync in OVERWRITE_BEFORE_SAVE:
            if sync != want_sync:
                continue
            got = g.writeat(path, off, length, seed, sync=sync)
            _require(got == exp.writeat(path, off, length, seed),
                     "guest overwrote %s at %d with the expected content"
                     % (path, off))
    t["write"] = time.monotonic() - t0
    dirty = g.dirty_kb()
    _require(dirty > 0, "some written data is still dirty in the "
             "guest's page cache (dirty_kb=%d)" % dirty)
    t["dirty_kb"] = dirty
    say("guest wrote %d files and overwrote %d base files in %.1f s; "
        "%d KiB still dirty in its page cache" % (
            len(BEFORE_SAVE), len(OVERWRITE_BEFORE_SAVE), t["write"], dirty))
    return t


# --- S2E's own command lines ---------------------------------------------------
#
# guest-images' Makefile.linux (TAKE_SNAPSHOT) and s2e-env's launch-s2e.sh,
# with LD_PRELOAD=libs2e replaced by s2e-run and the image as the caller
# names it.  -enable-kvm stands where KVM works; elsewhere (these CI
# machines) TCG takes its place.  The test guest also needs its kernel and
# the agent's channel (a virtconsole, hvc0, so that every serial port
# carries only what S2E's line says): Guest adds those.

# S2E's guest tools (launch.sh): the space after "ready" ends the command.
SECRET_MESSAGE_SAVEVM = "?!?MAGIC?!?s %s " % SNAPSHOT
SECRET_MESSAGE_KILL = "?!?MAGIC?!?k 0 "


def s2e_accel_args(accel):
    """'kvm': S2E's -enable-kvm; 'kvm-split': QEMU 10.2+ S2E's
    -accel accel=kvm,kernel-irqchip=split; 'tcg' where KVM does not work."""
    return {"kvm": ["-enable-kvm"],
            "kvm-split": ["-accel", "accel=kvm,kernel-irqchip=split"],
            "tcg": ["-accel", "tcg"]}[accel]


def take_snapshot_args(image, serial_file, accel):
    """guest-images' TAKE_SNAPSHOT: the guest saves `ready` by itself."""
    return s2e_accel_args(accel) + [
        "-drive", "if=ide,index=0,file=%s,format=s2e,cache=writeback"
        % G.opt_escape(image),
        "-serial", "file:" + serial_file, "-enable-serial-commands",
        "-net", "none", "-net", "nic,model=e1000", "-m", "256M",
        "-nographic", "-monitor", "null"]


def launch_args(image, serial_file, accel, snapshot=SNAPSHOT):
    """s2e-env's launch-s2e.sh: resume SNAPSHOT."""
    return ["-k", "en-us", "-monitor", "null"] + s2e_accel_args(accel) + [
        "-serial", "file:" + serial_file, "-nographic", "-m", "256M",
        "-drive", "file=%s,format=s2e,cache=writeback" % G.opt_escape(image),
        "-loadvm", snapshot]


def s2e_line_guest(files, workdir, machine_args, name, monitors, accel):
    """A Guest on one of S2E's command lines (see above)."""
    return G.Guest(files, workdir, qemu=S2E_QEMU, machine_args=machine_args,
                   agent="virtio", monitors=monitors, name=name, accel=accel)


def take_ready_by_guest(files, workdir, image, accel, say=lambda m: None):
    """S2E's image build on a stock QEMU: boot with TAKE_SNAPSHOT's line,
    write (some dirty), then the guest writes S2E's magic string to its
    first serial port, as S2E's launch.sh does; QEMU saves `ready` and
    exits by itself, with status 0.  Returns (Expected, timings dict,
    QEMU's output)."""
    exp = Expected(files)
    serial = os.path.join(workdir, "serial_ready.txt")
    os.makedirs(workdir, exist_ok=True)
    g = s2e_line_guest(files, workdir, take_snapshot_args(image, serial, accel),
                       "take-snapshot", False, accel)
    try:
        t = _boot_and_write(g, exp, say)
        t0 = time.monotonic()
        # Its answer may never come: QEMU saves and quits meanwhile.
        g.send("sh echo '%s' > /dev/ttyS0" % SECRET_MESSAGE_SAVEVM)
        status = g.wait_exit(600)
        t["magic_to_exit"] = time.monotonic() - t0
        out = g.qemu_output()
    finally:
        g.close()
    _require(status == 0, "QEMU saved and exited with status 0, not %s:\n%s"
             % (status, out))
    _require("savevm %s done" % SNAPSHOT in out,
             "QEMU reported the savevm:\n%s" % out)
    with open(serial, "rb") as f:
        _require(SECRET_MESSAGE_SAVEVM.encode() in f.read(),
                 "%s holds the guest's magic string" % serial)
    return exp, t, out


def launch_guest(files, workdir, image, accel, name, monitors=True):
    """A Guest resuming `ready` with launch-s2e.sh's line (its serial port
    goes to WORKDIR/serial.txt); start() it, then resync()."""
    os.makedirs(workdir, exist_ok=True)
    serial = os.path.join(workdir, "serial.txt")
    return s2e_line_guest(files, workdir, launch_args(image, serial, accel),
                          name, monitors, accel)


def verify_resumed(g, exp, tag, seed, say=lambda m: None, check_reads=True):
    """A resumed guest carries on: first answer, drop caches, re-read and
    check every file against the host's expectations, write a new file,
    sync, drop caches, read it back.  Updates EXP (a copy per guest).
    Returns timings."""
    t = {}
    t0 = time.monotonic()
    g.resync(120)
    t["first_answer"] = time.monotonic() - t0
    # The dirty pages saved with the VM are still dirty: flush them to the
    # (s2e) disk, then drop every cached page so everything is re-read.
    t["dirty_kb_at_resume"] = g.dirty_kb()
    g.dropcaches(sync=True)
    t0 = time.monotonic()
    ls = g.ls()
    want_sizes = exp.sizes()
    for p in exp.fixed:
        want_sizes.setdefault(p, ls.get(p))
    want_sizes["MANIFEST.sha256"] = ls.get("MANIFEST.sha256")
    _require(ls == want_sizes, "%s: the disk holds exactly the expected "
             "files: extra %s, missing %s" % (
                 tag, sorted(set(ls) - set(want_sizes)),
                 sorted(set(want_sizes) - set(ls))))
    _require(g.manifest() == exp.manifest(),
             "%s: the guest's manifest matches the host's" % tag)
    res = g.checkall(300)
    _require(res["failed"] == 0 and res["checked"] == len(exp.manifest()),
             "%s: checkall %r" % (tag, res))
    if check_reads:
        for path, off, length, _seed, _sync in OVERWRITE_BEFORE_SAVE:
            # Unaligned, crossing 64-sector boundaries, through the page
            # cache (readat) over blocks the snapshot holds.
            o, n = off - 3, length + 4100
            got = g.readat(path, o, n)
            want = hashlib.sha256(exp.content[path][o:o + n]).hexdigest()
            _require(got == want, "%s: readat %s %d %d" % (tag, path, o, n))
    t["check"] = time.monotonic() - t0
    t0 = time.monotonic()
    path = "resumed/%s.bin" % tag
    size = 150001
    _require(g.write(path, size, seed, sync=True) == exp.write(path, size, seed),
             "%s: wrote %s" % (tag, path))
    g.dropcaches(sync=True)
    _require(g.sha256(path) == exp.sha256(path),
             "%s: read %s back from the disk" % (tag, path))
    t["write"] = time.monotonic() - t0
    return t


def proc_tree_pids(pid):
    """PID and its descendants (s2e-run execs QEMU, so usually one)."""
    out = [pid]
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            for c in f.read().split():
                out += proc_tree_pids(int(c))
    except OSError:
        pass
    return out


PATHS_OBJ = "/objects/s2e-paths"


def _unmount(g):
    # No state of the disk may stay cached in the guest across a switch:
    # unmount (writes everything back, forgets the file system), then drop
    # the block device's own page cache.
    g.command("sh cd / && umount /mnt/data && echo 3 > /proc/sys/vm/drop_caches")


def _mount(g):
    # The data disk /init found (vda on virtio, sda on IDE).
    g.command('sh mount -o noatime "$(cat /run/s2e/disk)" /mnt/data')


def _switch(g, prop, value):
    """VM paused, one /objects/s2e-paths write, VM continues."""
    g.hmp("stop")
    out = g.hmp("qom-set %s %s %s" % (PATHS_OBJ, prop, value)).strip()
    _require(out == "", "qom-set %s %s: %s" % (prop, value, out))
    g.hmp("cont")


def two_paths(g, exp, say=lambda m: None):
    """Guest-visible execution paths in a resumed guest: with the VM
    paused, fork the current path; the guest writes a file in path 0;
    switch to the fork: its disk does not have the file and every other
    file checks; switch back: the file is there.  The guest unmounts its
    disk and drops its caches before each fork/switch: the paths fork the
    disk only, not the guest's RAM, so a page cache filled in one path
    would show that path's data in the other.  Returns the paths' stats."""
    g.resync(120)
    g.sync()
    _unmount(g)
    _switch(g, "fork", 0)
    child = g.hmp("qom-get %s last-fork" % PATHS_OBJ).strip()
    _require(child.isdigit() and child != "0", "fork: last-fork %r" % child)
    say("paused, forked path 0 -> path %s (qom-set %s fork 0)" % (child, PATHS_OBJ))
    _mount(g)
    e0 = exp.copy()
    _require(g.write("path0.bin", 100000, 5001, sync=True)
             == e0.write("path0.bin", 100000, 5001), "path 0: write")
    _unmount(g)
    _switch(g, "current", child)
    _mount(g)
    _require("path0.bin" not in g.ls(), "path %s: path 0's file absent" % child)
    _require(g.manifest() == exp.manifest(), "path %s: manifest" % child)
    _require(g.checkall(300)["failed"] == 0, "path %s: checkall" % child)
    say("path %s (switched with the VM paused): path 0's new file is not "
        "there; every file checks" % child)
    _unmount(g)
    _switch(g, "current", 0)
    _mount(g)
    _require(g.sha256("path0.bin") == e0.sha256("path0.bin"),
             "path 0: its file is back")
    _require(g.manifest() == e0.manifest(), "path 0: manifest")
    stats = g.hmp("qom-get %s stats" % PATHS_OBJ).strip().strip('"')
    say("back in path 0: its file is there; paths ID:own:shared bytes = %s"
        % stats)
    return stats
