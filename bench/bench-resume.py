#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Resume benchmark on the real test guest (not a test: numbers depend on
the machine and its load).

Makes `savevm ready` of the guest on a `cp -p` copy of its base disk
(guest.raw.s2e, format=s2e through build/s2e-run), then for each N in
--instances starts N QEMUs at once with -loadvm ready and measures:

- resume time: QEMU started -> the guest's first answer after the resume
  (a `ping` on the serial console), per instance, and the wall time until
  all N have answered;
- memory each instance adds: Rss, Pss, private and anonymous memory of
  each QEMU from /proc/PID/smaps_rollup (Pss < Rss: pages shared with the
  other instances -- QEMU's code and libraries -- are counted once);
- the snapshot's disk data in the page cache: the file's resident pages
  (fincore, i.e. mincore()) after the N guests re-read every file.  The
  data is read with pread() from one file, so it is cached once however
  many instances read it; the instances' own Rss does not hold it.  Before
  each round the snapshot file's pages are evicted
  (posix_fadvise DONTNEED on that file only).

usage: bench/bench-resume.py [--instances 1,8] [--reps 3] [--memory 256]
                             [--work DIR]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))   # the harness
from s2e_block import guest as G  # noqa: E402
from s2e_block import workflow as W  # noqa: E402


def smaps_rollup(pid):
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    out[parts[0][:-1]] = int(parts[1])
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    """User + system CPU time of PID so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    return out


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_kib(path):
    """Page-cache-resident KiB of PATH (fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings",
                          "--output", "RES", path],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return int(out.split()[0]) // 1024


def one_round(files, work, img, n, memory, tag, reread):
    evict(img + "." + W.SNAPSHOT)
    before = meminfo()
    guests = [G.Guest(files, os.path.join(work, "%s-%d" % (tag, i)),
                      W.s2e_drive(img), qemu=W.S2E_QEMU, loadvm=W.SNAPSHOT,
                      name="%s-%d" % (tag, i), memory=memory)
              for i in range(n)]
    times = [None] * n
    cpus = [None] * n
    errors = []
    try:
        t0 = time.monotonic()
        starts = [None] * n

        def resume(i):
            try:
                guests[i].resync(300)
                times[i] = time.monotonic() - starts[i]
                cpus[i] = cpu_seconds(guests[i].proc.pid)
            except Exception as e:  # reported below
                errors.append(e)

        # start() in this thread: PR_SET_PDEATHSIG kills QEMU when the
        # thread that started it ends.
        for i, g in enumerate(guests):
            starts[i] = time.monotonic()
            g.start()
        threads = [threading.Thread(target=resume, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(600)
        wall = time.monotonic() - t0
        if errors:
            raise errors[0]
        mem = [smaps_rollup(g.proc.pid) for g in guests]
        snap_res = None
        if reread:
            # Every guest re-reads every file from the disk: the synced
            # files come from the snapshot file.
            def check(i):
                try:
                    guests[i].dropcaches()
                    guests[i].checkall(600)
                except Exception as e:
                    errors.append(e)
            threads = [threading.Thread(target=check, args=(i,)) for i in range(n)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(600)
            if errors:
                raise errors[0]
            snap_res = resident_kib(img + "." + W.SNAPSHOT)
            mem = [smaps_rollup(g.proc.pid) for g in guests]
        after = meminfo()
        return {"times": times, "cpus": cpus, "wall": wall, "mem": mem,
                "snap_resident_kib": snap_res,
                "cached_growth_kib": after["Cached"] - before["Cached"],
                "avail_drop_kib": before["MemAvailable"] - after["MemAvailable"]}
    finally:
        for g in guests:
            g.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", default="1,8")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--memory", type=int, default=256)
    ap.add_argument("--work")
    args = ap.parse_args()
    counts = [int(x) for x in args.instances.split(",")]

    work = args.work or tempfile.mkdtemp(prefix="s2e-bench-resume-")
    os.makedirs(work, exist_ok=True)
    files = G.build_guest()
    img = os.path.join(work, "guest.raw.s2e")
    for f in os.listdir(work):
        if f.startswith("guest.raw.s2e"):
            os.unlink(os.path.join(work, f))
    W.copy_base(files, img)
    print("preparing: boot, write, savevm ready (-m %d, accel %s) ..."
          % (args.memory, G.detect_accel(files)), flush=True)
    _, t = W.prepare_ready(files, os.path.join(work, "first-boot"),
                           W.s2e_drive(img), memory=args.memory)
    snap = img + "." + W.SNAPSHOT
    print("snapshot %s: %.1f MiB (savevm %.2f s)\n" % (
        snap, os.path.getsize(snap) / 2 ** 20, t["savevm"]), flush=True)

    rows = []
    for n in counts:
        walls, per, cpu = [], [], []
        res = None
        for rep in range(args.reps):
            res = one_round(files, work, img, n, args.memory,
                            "n%d-r%d" % (n, rep), reread=(rep == args.reps - 1))
            walls.append(res["wall"])
            per += res["times"]
            cpu += res["cpus"]
            for d in os.listdir(work):
                if d.startswith("n%d-r%d" % (n, rep)):
                    shutil.rmtree(os.path.join(work, d), ignore_errors=True)
        mem = res["mem"]
        rows.append({
            "n": n,
            "wall": statistics.median(walls),
            "per_med": statistics.median(per),
            "per_max": max(per),
            "cpu": statistics.median(cpu),
            "rss": statistics.mean(m.get("Rss", 0) for m in mem) / 1024,
            "pss": statistics.mean(m.get("Pss", 0) for m in mem) / 1024,
            "priv": statistics.mean(m.get("Private_Clean", 0)
                                    + m.get("Private_Dirty", 0) for m in mem) / 1024,
            "anon": statistics.mean(m.get("Anonymous", 0) for m in mem) / 1024,
            "snap_res": res["snap_resident_kib"] / 1024,
            "cached": res["cached_growth_kib"] / 1024,
        })

    print("%-3s %9s %9s %9s %9s | %8s %8s %8s %8s | %10s %10s" % (
        "N", "all(s)", "med(s)", "max(s)", "cpu(s)", "Rss", "Pss", "Private", "Anon",
        "snap-cache", "Cached+"))
    print("%-3s %9s %9s %9s %9s | %8s %8s %8s %8s | %10s %10s" % (
        "", "wall", "per inst", "per inst", "per inst", "MiB/inst", "MiB/inst",
        "MiB/inst", "MiB/inst", "MiB", "MiB"))
    for r in rows:
        print("%-3d %9.2f %9.2f %9.2f %9.2f | %8.1f %8.1f %8.1f %8.1f | %10.1f %10.1f" % (
            r["n"], r["wall"], r["per_med"], r["per_max"], r["cpu"], r["rss"], r["pss"],
            r["priv"], r["anon"], r["snap_res"], r["cached"]))
    if len(rows) >= 2:
        one, many = rows[0], rows[-1]
        ratio = many["wall"] / one["wall"]
        print("\n%d at once: %.2fx the time of %d (goal <= 1.5x): %s" % (
            many["n"], ratio, one["n"], "met" if ratio <= 1.5 else "NOT met"))
        ncpu = os.cpu_count() or 1
        floor = many["n"] * one["cpu"] / min(ncpu, many["n"]) / one["wall"]
        print("a resume costs %.2f s of CPU; %d of them on %d CPUs need at "
              "least %.2fx the time of one" % (one["cpu"], many["n"], ncpu,
                                               max(1.0, floor)))
        print("snapshot file %.1f MiB; resident after %d readers: %.1f MiB, "
              "after %d readers: %.1f MiB (one copy in the page cache)" % (
                  os.path.getsize(snap) / 2 ** 20, one["n"], one["snap_res"],
                  many["n"], many["snap_res"]))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
