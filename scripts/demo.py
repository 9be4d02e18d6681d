#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The main job, shown step by step, on a real Linux guest.

S2E's image workflow on Debian's stock qemu-system-x86_64, through
build/s2e-run.  Debian's kernel and a busybox initramfs (docs/guest.md)
boot with the command line S2E's image build (guest-images, TAKE_SNAPSHOT)
uses, -drive if=ide,index=0,file=WORK/guest.raw.s2e,format=s2e,
cache=writeback -serial file:serial_ready.txt -enable-serial-commands
-net none -net nic,model=e1000 -m 256M -nographic -monitor null.  The
guest mounts its ext4 disk, writes files (some still dirty in its page
cache), then takes its `ready` snapshot itself, as S2E's guest tools do:
it writes `?!?MAGIC?!?s ready ` to its first serial port, and QEMU saves
and exits with status 0.  Then the snapshot is resumed with the command
line s2e-env's launch-s2e.sh uses (-k en-us -monitor null -serial
file:serial.txt -nographic -m 256M -drive ...,cache=writeback -loadvm
ready) several times -- in a new QEMU, then `loadvm ready` in that
running QEMU, N QEMUs at once, and execution paths in one -- and every
guest carries on: it drops its caches, re-reads and checks every file
against hashes the host computed, writes more and reads it back.  At the
end the base image and the snapshot file are shown unchanged (SHA-256 and
nanosecond mtime).

The guest is driven over a virtconsole (hvc0) the test harness adds, with
the kernel's -kernel/-initrd/-append, to S2E's lines; the resumed QEMUs
also get HMP/QMP sockets for the monitor steps.  -enable-kvm is used
where KVM really works, else TCG (-accel tcg) takes its place.

usage: scripts/demo.py [WORKDIR]   (default: a new temporary directory)
environment: S2E_DEMO_INSTANCES (concurrent resumes, default 4),
             S2E_GUEST_ACCEL=tcg|kvm (default: KVM only if it really works)
Prints each step with its timing; ends with PASS or FAIL (exit 0 / 1).
"""

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time

# The harness: the checkout's python/ directory.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "python"))
from s2e_block import guest as G  # noqa: E402
from s2e_block import workflow as W  # noqa: E402
from s2e_block.images import file_state  # noqa: E402
from s2e_block.tools import S2E_RUN  # noqa: E402

T0 = time.monotonic()
FAILURES = []
_lock = threading.Lock()


def say(msg):
    with _lock:
        print("[%6.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def check(cond, what):
    say(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        FAILURES.append(what)
    return cond


def content_state(path):
    """SHA-256 of the bytes and the nanosecond mtime (file_state() also
    hashes the sparse layout, which a copy to another file system changes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), os.stat(path).st_mtime_ns


def step(what, fn, *args):
    """Run one step; a failure is reported and counted, not raised."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 -- every failure is a FAIL line
        check(False, "%s: %s" % (what, str(e).splitlines()[0] if str(e) else
                                 type(e).__name__))
        detail = str(e).splitlines()[1:]
        if detail:
            print("\n".join("        " + l for l in detail[-30:]), flush=True)
        return None


def s2e_line(args):
    return "s2e-run qemu-system-x86_64 " + " ".join(args)


def resume_new_qemu(files, work, img, accel, exp):
    d = os.path.join(work, "resume-1")
    say("resume 1, launch-s2e.sh's line: " + s2e_line(W.launch_args(
        img, os.path.join(d, "serial.txt"), accel)))
    g = W.launch_guest(files, d, img, accel, "resume-1")
    with g:
        t0 = time.monotonic()
        g.start()
        started = time.monotonic() - t0
        e1 = exp.copy()
        t = W.verify_resumed(g, e1, "resume-1", 2001)
        check(True, "-loadvm ready: the guest answered %.2f s after QEMU "
              "started; every file checked (%.1f s), a new file written and "
              "read back (%.1f s)" % (started + t["first_answer"],
                                      t["check"], t["write"]))
        say("resume 2: monitor `loadvm ready` in the same running QEMU")
        t0 = time.monotonic()
        g.loadvm(W.SNAPSHOT)
        say("loadvm took %.2f s" % (time.monotonic() - t0))
        e2 = exp.copy()
        t = W.verify_resumed(g, e2, "resume-2", 2002)
        check("resumed/resume-1.bin" not in g.ls(),
              "loadvm ready: back to the snapshot (resume 1's file is gone, "
              "%d files checked in %.1f s)" % (len(e2.manifest()), t["check"]))
        g.quit()


def resume_many(files, work, img, accel, exp, n):
    say("resume 3: %d QEMUs at once, each with launch-s2e.sh's line on the "
        "same image" % n)
    guests = [W.launch_guest(files, os.path.join(work, "many-%d" % i), img,
                             accel, "many-%d" % i) for i in range(n)]
    results = [None] * n
    errors = [None] * n

    def run(i):
        try:
            results[i] = W.verify_resumed(guests[i], exp.copy(), "many-%d" % i,
                                          3000 + i)
        except Exception as e:  # reported below
            errors[i] = e

    try:
        t0 = time.monotonic()
        for g in guests:
            g.start()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(600)
        wall = time.monotonic() - t0
        for i in range(n):
            if errors[i] is not None:
                check(False, "instance %d: %s" % (i, str(errors[i]).splitlines()[0]))
            else:
                say("instance %d: first answer %.2f s, checks %.1f s, "
                    "write+read back %.1f s" % (
                        i, results[i]["first_answer"], results[i]["check"],
                        results[i]["write"]))
        check(all(e is None for e in errors),
              "%d concurrent resumes each checked every file and wrote its "
              "own file (%.1f s in all)" % (n, wall))
        # Each guest sees only its own new file.
        for i, g in enumerate(guests):
            if errors[i] is None:
                names = [p for p in g.ls() if p.startswith("resumed/")]
                check(names == ["resumed/many-%d.bin" % i],
                      "instance %d sees only its own new file: %s" % (i, names))
        for g in guests:
            g.quit()
    finally:
        for g in guests:
            g.close()


def resume_paths(files, work, img, accel, exp):
    say("resume 4: execution paths in one resumed guest (/objects/s2e-paths)")
    g = W.launch_guest(files, os.path.join(work, "paths"), img, accel, "paths")
    with g:
        g.start()
        W.two_paths(g, exp, say)
        check(True, "each path kept its own disk")
        g.quit()


def parse_args():
    """WORKDIR, or a new temporary directory; -h prints the usage."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__[__doc__.index("usage:"):].split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", nargs="?",
                    help="where to work (default: a new temporary "
                         "directory)")
    return ap.parse_args()


def main():
    args = parse_args()
    work = os.path.abspath(args.workdir or tempfile.mkdtemp(
        prefix="s2e-demo-"))
    os.makedirs(work, exist_ok=True)
    n = int(os.environ.get("S2E_DEMO_INSTANCES", "4"))
    say("work directory: %s" % work)

    if not os.access(S2E_RUN, os.X_OK):
        check(False, "%s exists (run scripts/setup.sh)" % S2E_RUN)
        return finish()
    t0 = time.monotonic()
    files = G.build_guest()
    say("guest kernel/initramfs/base disk: %s (%.1f s; cached after the "
        "first build)" % (files.dir, time.monotonic() - t0))
    accel = G.detect_accel(files)
    say("accelerator: %s (%s on S2E's command lines)" % (
        accel, " ".join(W.s2e_accel_args(accel))))

    img = os.path.join(work, "guest.raw.s2e")
    if os.path.exists(img):
        os.unlink(img)
    for old in os.listdir(work):
        if old.startswith("guest.raw.s2e."):
            os.unlink(os.path.join(work, old))
    W.copy_base(files, img)    # cp -p: keeps the mtime the snapshot records
    pristine = content_state(files.image)
    base = file_state(img)
    check(content_state(img) == pristine,
          "cp -p %s -> %s (64 MiB ext4, sha256 %s..., mtime kept)" % (
              files.image, img, base["sha256"][:16]))

    first = os.path.join(work, "first-boot")
    say("boot, guest-images' TAKE_SNAPSHOT line: " + s2e_line(
        W.take_snapshot_args(img, os.path.join(first, "serial_ready.txt"),
                             accel)))
    res = step("first boot, writes, the guest takes ready",
               W.take_ready_by_guest, files, first, img, accel, say)
    snap = img + "." + W.SNAPSHOT
    if res is None or not os.path.exists(snap):
        check(False, "snapshot file %s exists" % snap)
        return finish()
    exp, t, out = res
    for line in out.splitlines():
        if "s2e:" in line:
            say("QEMU: " + line)
    check(True, "the guest wrote %r to ttyS0; QEMU saved `ready` and exited "
          "with status 0 %.2f s later" % (W.SECRET_MESSAGE_SAVEVM,
                                          t["magic_to_exit"]))
    snap_state = file_state(snap)
    say("snapshot file %s: %d bytes, sha256 %s..." % (
        snap, snap_state["size"], snap_state["sha256"][:16]))
    check(file_state(img) == base, "the base image is unchanged after savevm")

    step("resume with -loadvm and loadvm", resume_new_qemu, files, work, img,
         accel, exp)
    step("concurrent resumes", resume_many, files, work, img, accel, exp, n)
    step("execution paths", resume_paths, files, work, img, accel, exp)

    now = file_state(img)
    check(now == base, "base image unchanged: sha256 %s..., mtime %d ns" % (
        now["sha256"][:16], now["mtime_ns"]))
    check(content_state(img) == pristine,
          "base image identical to the pristine guest disk")
    check(file_state(snap) == snap_state,
          "snapshot file unchanged: sha256 %s..., mtime %d ns" % (
              snap_state["sha256"][:16], snap_state["mtime_ns"]))
    return finish()


def finish():
    print()
    if FAILURES:
        print("FAIL: %d check(s) failed (%.1f s)" % (
            len(FAILURES), time.monotonic() - T0), flush=True)
        return 1
    print("PASS: real guest on format=s2e, the guest took ready through "
          "the serial port, resumed with launch-s2e.sh's line, loadvm and "
          "%s at once (%.1f s)" % (
              os.environ.get("S2E_DEMO_INSTANCES", "4"),
              time.monotonic() - T0), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("FAIL: interrupted")
        sys.exit(1)
