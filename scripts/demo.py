#!/usr/bin/env python3
"""The main job, shown step by step: QEMU with -drive format=s2e, writes
that stay in memory, `savevm ready`, quit, resume with -loadvm ready and
with `loadvm ready`, data back, base image untouched.

The guest here is QEMU's own HMP `qemu-io` command, which issues disk I/O
exactly as a guest device would.  Prints each step with its timing and
ends with PASS or FAIL (exit status 0 / 1).

usage: scripts/demo.py [WORKDIR]   (default: a new temporary directory)
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "integration"))
import s2etest  # noqa: E402
from s2etest import MiB, Qemu, file_state, make_image  # noqa: E402

T0 = time.time()
FAILURES = []


def say(msg):
    print("[%6.2fs] %s" % (time.time() - T0, msg), flush=True)


def check(cond, what):
    say(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        FAILURES.append(what)


def pattern_ok(out):
    return "Pattern verification failed" not in out and "error" not in out.lower()


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(
        prefix="s2e-demo-")
    os.makedirs(work, exist_ok=True)
    img = os.path.join(work, "disk.raw.s2e")
    drive = "file=%s,format=s2e,if=virtio" % img
    say("work directory: %s" % work)

    make_image(img, 64 * MiB)
    base_before = file_state(img)
    say("base image %s: 64 MiB raw, sha256 %s..." % (img, base_before["sha256"][:16]))

    say("start QEMU: s2e-run qemu-system-x86_64 -drive %s" % drive)
    vm = Qemu(work, [drive], name="first")
    try:
        say("guest writes: 1 MiB of 0x5a at 0, 3 bytes of 0x7e at 1000005")
        vm.qemu_io("virtio0", "write -P 0x5a 0 1M")
        vm.qemu_io("virtio0", "write -P 0x7e 1000005 3")
        out = vm.qemu_io("virtio0", "read -P 0x5a 0 1000005")
        check(pattern_ok(out), "the running VM reads its writes back")
        check(file_state(img) == base_before, "the base image is unchanged")

        say("monitor: savevm ready")
        t = time.time()
        reply = vm.hmp.cmd("savevm ready", timeout=300)
        say("savevm took %.2f s %s" % (time.time() - t, reply))
        snap = img + ".ready"
        check(os.path.exists(snap), "snapshot file %s exists (%d bytes)" % (
            snap, os.path.getsize(snap) if os.path.exists(snap) else 0))
        say("monitor: info snapshots\n" + vm.hmp.cmd("info snapshots"))
    finally:
        vm.quit()
    say("QEMU quit")
    snap_state = file_state(snap) if os.path.exists(snap) else None

    say("resume: s2e-run qemu-system-x86_64 -drive %s -loadvm ready" % drive)
    t = time.time()
    vm = Qemu(work, [drive], extra=["-loadvm", "ready"], name="resume1")
    try:
        say("resumed in %.2f s" % (time.time() - t))
        out = vm.qemu_io("virtio0", "read -P 0x5a 0 1000005")
        check(pattern_ok(out), "-loadvm ready: the writes are back")
        out = vm.qemu_io("virtio0", "read -P 0x7e 1000005 3")
        check(pattern_ok(out), "-loadvm ready: the 3-byte write is back")
        vm.qemu_io("virtio0", "write -P 0x11 0 4k")
        say("monitor: loadvm ready (drops the write just made)")
        vm.hmp.cmd("loadvm ready", timeout=300)
        out = vm.qemu_io("virtio0", "read -P 0x5a 0 4k")
        check(pattern_ok(out), "loadvm ready: back to the snapshot's data")
    finally:
        vm.quit()

    check(file_state(img) == base_before,
          "base image unchanged: same sha256 and nanosecond mtime")
    check(snap_state is not None and file_state(snap) == snap_state,
          "snapshot file unchanged by resuming")
    print()
    if FAILURES:
        print("FAIL: %d check(s) failed" % len(FAILURES))
        return 1
    print("PASS: format=s2e, savevm ready, resume (%.1f s)" % (time.time() - T0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
