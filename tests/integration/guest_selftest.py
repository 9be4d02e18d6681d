#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Self-test of the test guest with Debian's plain QEMU (no s2e plugin).

Proves that the guest, its agent and python/s2e_block/guest.py work before
any s2e test relies on them:

  raw-virtio, raw-ide   boot a `cp -p` copy of the base disk (format=raw) on
                        virtio-blk and on IDE; checkall, ls, write (hashes
                        checked against the host-side generator), writeat,
                        readat (unaligned, across 64-sector boundaries, page
                        cache and O_DIRECT), readdev (O_DIRECT on the disk,
                        compared with the image file), dirty data kept in
                        the page cache across dropcaches, sync, poweroff;
                        then e2fsck and debugfs on the host
  qcow2-snapshot        savevm through HMP with dirty page cache and a
                        command in flight, quit, -loadvm in a new QEMU: the
                        in-flight command completes, new commands answer,
                        data written after savevm is gone; then
                        snapshot-save / snapshot-load as QMP jobs in the
                        running VM

Usage: tests/integration/guest_selftest.py [-k NAME] [--keep] [-v]
Prints one line per test and "N passed, N failed" at the end; exit status
0 only if all passed.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

# The harness: the checkout's python/ directory.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "python"))
from s2e_block import guest as G  # noqa: E402

VERBOSE = False


def log(msg):
    if VERBOSE:
        print("    " + msg, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def host_sha(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return hashlib.sha256(f.read(length)).hexdigest()


def debugfs_cat(image, path):
    out = subprocess.run(["debugfs", "-R", "cat /" + path, image],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         timeout=120, check=True).stdout
    return out


# --- tests ---------------------------------------------------------------------

def run_raw(files, work, iface, timings):
    img = G.copy_image(os.path.join(work, "disk.raw"), files)
    with G.Guest(files, work, G.drive_args(img, fmt="raw", iface=iface)) as g:
        g.start()
        info = g.wait_ready(180)
        timings["boot %s (%s)" % (iface, g.accel)] = g.boot_seconds
        log("ready after %.2f s: %s" % (g.boot_seconds, info))
        check_eq(info.get("mounted"), "yes", "mounted")
        check_eq(info.get("disk"), {"virtio": "/dev/vda", "ide": "/dev/sda"}[iface],
                 "data disk")
        check("modfail" not in info, "modules failed to load: %s" % info.get("modfail"))
        check(g.ping()[0].startswith("pong"), "ping")
        log("\n    ".join(g.command("mount-info")))

        # The base disk as built.
        res = g.checkall()
        check_eq(res["failed"], 0, "checkall failures")
        check_eq(res["checked"], len(files.manifest), "files checked")
        listing = g.ls()
        for path, (size, _seed) in files.files.items():
            check_eq(listing.get(path), size, "size of " + path)
        check_eq(g.sha256("big-3m.bin"), files.manifest["big-3m.bin"], "sha256 big-3m.bin")

        # Unaligned reads crossing 64-sector (32 KiB) boundaries, from the
        # page cache and after dropping it.
        size, seed = files.files["big-3m.bin"]
        data = G.gen_content(size, seed)
        for off, length in [(4608, 65536), (32256, 1024), (1, 100000),
                            (32767, 2), (65024, 32768 * 3 + 512), (size - 700, 700)]:
            want = hashlib.sha256(data[off:off + length]).hexdigest()
            check_eq(g.readat("big-3m.bin", off, length), want,
                     "readat %d %d" % (off, length))
        g.dropcaches()
        for off, length in [(4608, 65536), (512 * 63, 512 * 3), (512 * 7, 512 * 129)]:
            want = hashlib.sha256(data[off:off + length]).hexdigest()
            check_eq(g.readat("big-3m.bin", off, length, direct=True), want,
                     "readat direct %d %d" % (off, length))
            check_eq(g.readat("big-3m.bin", off, length), want,
                     "readat %d %d after dropcaches" % (off, length))

        # New files: the guest's hash must be the host generator's.
        t = time.monotonic()
        for path, size, seed in [("new/a.bin", 1, 100), ("new/b.bin", 33333, 101),
                                 ("new/c.bin", 4 << 20, 102)]:
            check_eq(g.write(path, size, seed), G.expected_sha256(size, seed),
                     "write " + path)
        timings["write 4 MiB + (%s)" % iface] = time.monotonic() - t
        check_eq(g.sha256("new/c.bin"), G.expected_sha256(4 << 20, 102), "sha256 new/c.bin")

        # Partial overwrite of a base file at an unaligned offset.
        size, seed = files.files["big-1m.bin"]
        buf = bytearray(G.gen_content(size, seed))
        patch = G.gen_content(70000, 103)
        buf[12345:12345 + len(patch)] = patch
        check_eq(g.writeat("big-1m.bin", 12345, 70000, 103),
                 hashlib.sha256(buf).hexdigest(), "writeat big-1m.bin")
        expect_big1m = bytes(buf)

        # Dirty data stays in the page cache through dropcaches (no sync).
        g.command("writeback off")
        g.write("dirty.bin", 2 << 20, 104)
        dirty_before = g.dirty_kb()
        g.dropcaches()
        dirty_after = g.dirty_kb()
        log("dirty kB after write: %d, after dropcaches: %d" % (dirty_before, dirty_after))
        check(dirty_after >= 1024, "dirty data was written back by dropcaches "
              "(%d kB dirty)" % dirty_after)
        check_eq(g.sha256("dirty.bin"), G.expected_sha256(2 << 20, 104), "sha256 dirty.bin")
        g.sync()
        check(g.dirty_kb() < 512, "sync left dirty data")
        g.dropcaches(sync=True)
        res = g.checkall()
        check_eq(res["failed"], 0, "checkall after writes")
        check_eq(res["checked"], len(files.manifest) + 4, "files checked after writes")

        # O_DIRECT reads of the disk itself, unaligned to 64 sectors,
        # against the image file as QEMU wrote it.
        for off, length in [(512 * 9, 512 * 128), (512 * 63, 512 * 2),
                            (512 * 1000 + 512 * 60, 512 * 200)]:
            check_eq(g.readdev(off, length), host_sha(img, off, length),
                     "readdev %d %d" % (off, length))

        try:
            g.command("bogus")
            raise AssertionError("unknown command accepted")
        except G.CommandFailed as e:
            check("unknown command" in e.reason, "reason for unknown command")
        try:
            g.command("sha256 ../etc/passwd")
            raise AssertionError("path with .. accepted")
        except G.CommandFailed:
            pass
        check_eq(g.command("sh echo hello; echo world"), ["hello", "world"], "sh")
        check_eq(g.poweroff(), 0, "QEMU exit status after poweroff")

    # The data reached the image: fsck it and read a file back on the host.
    fsck = subprocess.run(["e2fsck", "-fn", img], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120)
    check_eq(fsck.returncode, 0, "e2fsck exit status (%s)" % fsck.stdout[-500:])
    check_eq(hashlib.sha256(debugfs_cat(img, "new/c.bin")).hexdigest(),
             G.expected_sha256(4 << 20, 102), "host read of new/c.bin")
    check_eq(debugfs_cat(img, "big-1m.bin"), expect_big1m, "host read of big-1m.bin")


def run_qcow2_snapshot(files, work, timings):
    img = G.copy_image(os.path.join(work, "disk.qcow2"), files, fmt="qcow2")
    drive = G.drive_args(img, fmt="qcow2", iface="virtio")

    with G.Guest(files, os.path.join(work, "run1"), drive) as g:
        g.start()
        g.wait_ready(180)
        timings["boot qcow2 (%s)" % g.accel] = g.boot_seconds
        g.write("saved-synced.bin", 300000, 200, sync=True)
        g.command("writeback off")
        g.write("saved-dirty.bin", 1 << 20, 201)       # stays in the page cache
        check(g.dirty_kb() >= 512, "expected dirty data before savevm")
        inflight = g.send("sleep 3")                   # answered after the resume
        time.sleep(0.5)
        t = time.monotonic()
        g.savevm("s1")
        timings["savevm (HMP)"] = time.monotonic() - t
        check("s1" in g.hmp("info snapshots"), "s1 listed by info snapshots")
        g.result(inflight, 30, "sleep 3")
        g.write("after-save.bin", 4096, 202, sync=True)
        check_eq(g.quit(), 0, "QEMU exit status after quit")

    with G.Guest(files, os.path.join(work, "run2"), drive, loadvm="s1") as g:
        t = time.monotonic()
        g.start()
        # The sleep that was running at savevm time finishes in the resumed
        # guest and its answer arrives on the new console.
        g.result(inflight, 60, "sleep 3 (resumed)")
        timings["resume to first answer"] = time.monotonic() - t
        g.resync()
        check_eq(g.sha256("saved-synced.bin"), G.expected_sha256(300000, 200),
                 "synced file after resume")
        check_eq(g.sha256("saved-dirty.bin"), G.expected_sha256(1 << 20, 201),
                 "dirty file after resume")
        check("after-save.bin" not in g.ls(), "file written after savevm survived loadvm")
        check_eq(g.checkall()["failed"], 0, "checkall after resume")

        # The same through QMP jobs, in the running VM.
        check_eq(g.qmp.execute("query-status")["status"], "running", "status")
        node = g.node_name("virtio0")
        t = time.monotonic()
        g.qmp.run_job("snapshot-save", {"tag": "s2", "vmstate": node,
                                        "devices": [node]}, "save-s2", 300)
        timings["snapshot-save (QMP job)"] = time.monotonic() - t
        g.write("after-s2.bin", 8192, 203, sync=True)
        g.qmp.run_job("snapshot-load", {"tag": "s2", "vmstate": node,
                                        "devices": [node]}, "load-s2", 300)
        g.resync()
        check("after-s2.bin" not in g.ls(), "file written after s2 survived snapshot-load")
        check_eq(g.sha256("saved-dirty.bin"), G.expected_sha256(1 << 20, 201),
                 "dirty file after snapshot-load")
        check_eq(g.poweroff(), 0, "QEMU exit status after poweroff")

    out = subprocess.run(["qemu-img", "snapshot", "-l", img], stdout=subprocess.PIPE,
                         timeout=60, check=True).stdout.decode()
    check("s1" in out and "s2" in out, "qemu-img snapshot -l lists s1 and s2")


def run_generator(files, work, timings):
    # The host generator is the guest's: every file of the base disk.
    for path, (size, seed) in files.files.items():
        check_eq(G.expected_sha256(size, seed), files.manifest[path], path)


TESTS = [
    ("generator", run_generator),
    ("raw-virtio", lambda f, w, t: run_raw(f, w, "virtio", t)),
    ("raw-ide", lambda f, w, t: run_raw(f, w, "ide", t)),
    ("qcow2-snapshot", run_qcow2_snapshot),
]


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", action="append", default=[],
                    help="run only tests whose name contains this (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.verbose

    t = time.monotonic()
    files = G.build_guest()
    print("guest: %s (build/lookup %.1f s)" % (files.dir, time.monotonic() - t), flush=True)
    t = time.monotonic()
    accel = G.detect_accel(files)
    print("accel: %s (detected in %.1f s)" % (accel, time.monotonic() - t), flush=True)

    work = tempfile.mkdtemp(prefix="s2e-guest-selftest-")
    passed = failed = 0
    timings = {}
    try:
        for name, fn in TESTS:
            if args.k and not any(k in name for k in args.k):
                continue
            d = os.path.join(work, name)
            os.makedirs(d)
            t = time.monotonic()
            try:
                fn(files, d, timings)
            except Exception as e:  # noqa: BLE001 - report and go on
                failed += 1
                print("FAIL %s (%.1f s): %s" % (name, time.monotonic() - t, e), flush=True)
                if VERBOSE:
                    traceback.print_exc()
            else:
                passed += 1
                print("ok   %s (%.1f s)" % (name, time.monotonic() - t), flush=True)
    finally:
        if args.keep or failed:
            print("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    for k, v in timings.items():
        print("time: %-28s %.2f s" % (k, v))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
