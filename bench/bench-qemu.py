#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""s2e driver vs QEMU's raw (and qcow2) driver, in one run on the same file.

    bench/bench-qemu.py [--size 1G] [--reps 5] [--quick] [--perf] [--dir DIR]
    ninja -C build bench-qemu

Prints numbers, never fails on timing: this is a benchmark, not a test.

What is measured (Debian's qemu-img / qemu-io through build/s2e-run):

  base reads      qemu-img bench, 4 KiB reads of data that only the base
                  image holds (-f s2e vs -f raw on the SAME file; qcow2 is a
                  `qemu-img convert` copy of it, for reference).
                    seq:  step 4 KiB.
                    rand: qemu-img bench has no random mode; it issues
                          offset += step; offset %= image_size.  A step of
                          P * 4 KiB with P a prime that does not divide the
                          number of 4 KiB blocks visits every block once per
                          pass in a scattered order.
                  Queue depth 64 (qemu-img's default) and 1.
  overlay reads   The overlay lives only inside one process, so qemu-io reads
                  a script on stdin: write a region, then many `read -C`
                  commands.  -C makes qemu-io print each command's own I/O
                  time (clock_gettime around blk_pread), so command parsing
                  does not dilute the comparison.  The same script runs
                  against -f raw (the region then sits in the page cache).
                  Depth 1 by construction; also one large request.
  writes          qemu-img bench -w: s2e writes go to the in-memory overlay
                  (first write of each block: allocation), raw writes go to
                  the page cache of a copy of the base (the base itself is
                  never written), qcow2 overwrites allocated clusters.

Cache: the default mode of qemu-img bench is writeback (page cache, warmed
before the runs, identically for every format).  A second, smaller table
uses -t none (O_DIRECT on the base: the disk, not the cache, is measured).

Every configuration runs --reps times, interleaved (raw, s2e, qcow2, raw,
...) so drift hits all alike; tables show medians and min..max.  Ratios are
s2e speed / raw speed (> 1: s2e faster).
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))   # the harness
from s2e_block.tools import BUILD_DIR, PLUGIN, S2E_RUN  # noqa: E402

BENCH_OVERLAY = os.environ.get("S2E_BENCH_OVERLAY") or os.path.join(
    BUILD_DIR, "bench", "bench-overlay")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# Goals of issue 2 (s2e / raw speed).
GOAL_BASE = 0.95
GOAL_OVERLAY = 1.0
GOAL_WRITE = 1.0

PRIMES = [7919, 7907, 104729, 1299709, 15485863]


def die(msg):
    print("bench-qemu: " + msg, file=sys.stderr)
    sys.exit(2)


def run(args, timeout=600, input=None, env=None):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, input=input, env=env)
    if p.returncode != 0:
        die("%s failed (%d):\n%s" % (" ".join(args), p.returncode, p.stdout))
    return p.stdout


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMGT]?)i?B?", s.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError("bad size %r" % s)
    mult = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1024 * GiB}
    return int(m.group(1)) * mult[m.group(2).upper()]


def fmt_size(n):
    for unit, mult in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= mult and n % mult == 0:
            return "%d %s" % (n // mult, unit)
    return "%d B" % n


def make_image(path, size):
    """Incompressible, non-zero data, so every format really reads it and
    qcow2 allocates every cluster."""
    with open(path, "wb") as f:
        chunk = os.urandom(4 * MiB)
        left = size
        while left > 0:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
            # Vary the data cheaply: rotate the chunk.
            chunk = chunk[4096:] + chunk[:4096]


def warm(path):
    with open(path, "rb") as f:
        while f.read(8 * MiB):
            pass


def pick_step(size, bufsize=4096):
    blocks = size // bufsize
    for p in PRIMES:
        if blocks % p and p * bufsize < 2 ** 31 and p < blocks:
            return p * bufsize
    return bufsize * 3


# ---------------------------------------------------------------------------
# qemu-img bench


def img_bench(fmt, path, count, step=None, depth=64, write=False,
              cache=None, perf=None):
    args = [S2E_RUN, "qemu-img", "bench", "-f", fmt, "-c", str(count),
            "-d", str(depth), "-s", "4096"]
    if step:
        args += ["-S", str(step)]
    if write:
        args += ["-w"]
    if cache:
        args += ["-t", cache]
    args.append(path)
    if perf:
        args = ["perf", "record", "-q", "-g", "-o", perf, "--"] + args
    p = subprocess.Popen(args, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    m = re.search(r"Run completed in ([0-9.]+) seconds", out)
    if p.returncode or not m:
        die("%s failed (%d):\n%s" % (" ".join(args), p.returncode, out))
    secs = float(m.group(1))
    # IOPS, and CPU seconds of the whole process (user + system).
    return count / max(secs, 1e-6), ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------------------
# qemu-io overlay reads


def overlay_script(region, offsets, bulk_reps):
    lines = ["write -q -P 0x5a 0 %d" % region]
    lines += ["read -C %d 4096" % o for o in offsets]
    for _ in range(bulk_reps):
        lines += ["read -C %d %d" % (o, MiB) for o in range(0, region, MiB)]
    lines.append("quit")
    return "\n".join(lines) + "\n"


C_LINE = re.compile(r"(\d+),(\d+),[0-9:.]+,([0-9.]+),([0-9.]+)\n")


def parse_c_lines(out):
    """-C lines: bytes,ops,time,bytes/sec,ops/sec (after qemu-io's prompts).
    Returns [(bytes, seconds)]."""
    res = []
    for m in C_LINE.finditer(out):
        ops_per_sec = float(m.group(4))
        res.append((int(m.group(1)), 1.0 / ops_per_sec if ops_per_sec else 0))
    return res


def io_overlay(fmt, path, script, n_seq, n_rand, n_bulk, perf=None):
    args = [S2E_RUN, "qemu-io", "-f", fmt, path]
    if perf:
        args = ["perf", "record", "-q", "-g", "-o", perf, "--"] + args
    t0 = time.monotonic()
    out = run(args, input=script)
    wall = time.monotonic() - t0
    if "failed" in out or "error" in out.lower():
        die("qemu-io %s reported an error:\n%s" % (fmt, out[:2000]))
    rec = parse_c_lines(out)
    if len(rec) != n_seq + n_rand + n_bulk:
        die("qemu-io %s: expected %d -C lines, got %d" % (
            fmt, n_seq + n_rand + n_bulk, len(rec)))
    seq = [t for _, t in rec[:n_seq]]
    rnd = [t for _, t in rec[n_seq:n_seq + n_rand]]
    bulk = rec[n_seq + n_rand:]
    return {
        # IOPS from the summed per-command I/O times.
        "seq": len(seq) / sum(seq),
        "rand": len(rnd) / sum(rnd),
        # MiB/s of 1 MiB reads, from the summed per-command I/O times.
        "bulk": sum(b for b, _ in bulk) / sum(t for _, t in bulk) / MiB,
        "wall": wall,
    }


# ---------------------------------------------------------------------------
# Tables


class Results:
    """Values per (case, format), one per repetition, in run order: the
    formats of one repetition ran back to back, so s2e/raw is computed per
    repetition (paired) and the median of those ratios is reported, which
    cancels most of the drift of a shared machine."""

    def __init__(self):
        self.data = {}   # (case, fmt) -> [values]
        self.cpu = {}    # (case, fmt) -> [CPU microseconds per request]
        self.order = []  # cases in order
        self.units = {}

    def add(self, case, fmt, value, unit, cpu_us=None):
        if case not in self.order:
            self.order.append(case)
        self.units[case] = unit
        self.data.setdefault((case, fmt), []).append(value)
        if cpu_us is not None:
            self.cpu.setdefault((case, fmt), []).append(cpu_us)

    def ratio(self, case, a, b):
        """Median of the paired ratios a/b."""
        va, vb = self.data.get((case, a)), self.data.get((case, b))
        if not va or not vb:
            return None
        return statistics.median(x / y for x, y in zip(va, vb) if y)

    def best_ratio(self, case, a, b):
        """Best run against best run: the least disturbed of each."""
        va, vb = self.data.get((case, a)), self.data.get((case, b))
        if not va or not vb:
            return None
        return max(va) / max(vb)

    def cpu_med(self, case, fmt):
        v = self.cpu.get((case, fmt))
        return statistics.median(v) if v else None

    def med(self, case, fmt):
        v = self.data.get((case, fmt))
        return statistics.median(v) if v else None

    def spread(self, case, fmt):
        v = self.data.get((case, fmt))
        return (min(v), max(v)) if v else None


def num(v):
    if v is None:
        return "-"
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def print_table(title, res, fmts, ratio_of=("s2e", "raw")):
    print()
    print(title)
    with_cpu = bool(res.cpu)
    cols = ["case", "unit"] + ["%s (median, min..max)" % f for f in fmts] + \
        ["%s/%s" % ratio_of, "best/best"]
    if with_cpu:
        cols += ["CPU us/req " + "/".join(fmts), "CPU %s/%s" % ratio_of]
    rows = []
    for case in res.order:
        row = [case, res.units[case]]
        for f in fmts:
            m = res.med(case, f)
            sp = res.spread(case, f)
            row.append("-" if m is None else "%s (%s..%s)" % (
                num(m), num(sp[0]), num(sp[1])))
        r = res.ratio(case, *ratio_of)
        row.append("%.3f" % r if r else "-")
        r = res.best_ratio(case, *ratio_of)
        row.append("%.3f" % r if r else "-")
        if with_cpu:
            cm = [res.cpu_med(case, f) for f in fmts]
            row.append("/".join(num(c) if c is not None else "-"
                                for c in cm))
            a, b = res.cpu_med(case, ratio_of[0]), res.cpu_med(case,
                                                              ratio_of[1])
            row.append("%.3f" % (a / b) if a and b else "-")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [cols])
              for i in range(len(cols))]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def callgrind_ir(fmt, path, count, out, **kw):
    """User-space instructions of one qemu-img bench run under callgrind
    (qemu-img run directly with the plugin preloaded, as s2e-run does)."""
    args = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
            "qemu-img", "bench", "-f", fmt, "-c", str(count), "-s", "4096",
            "-d", str(kw.get("depth", 64))]
    if kw.get("step"):
        args += ["-S", str(kw["step"])]
    if kw.get("write"):
        args.append("-w")
    args.append(path)
    env = dict(os.environ, LD_PRELOAD=PLUGIN)
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=env, timeout=600)
    m = re.search(r"Collected : (\d+)", p.stdout)
    if p.returncode or not m:
        die("callgrind failed:\n" + p.stdout[-2000:])
    return int(m.group(1))


def callgrind_section(work, base, scratch, step):
    """Instructions per request, s2e vs raw: independent of the machine's
    load, unlike times.  Kernel work (the pread/pwrite themselves) is not
    counted; it is the same for both formats on base reads."""
    if not shutil.which("valgrind"):
        print("valgrind not installed: callgrind section skipped")
        return
    n = 20000
    cases = [("base read rand d1", dict(depth=1, step=step), base, base),
             ("base read seq d64", dict(depth=64), base, base),
             ("write seq d64", dict(depth=64, write=True), base, scratch)]
    print()
    print("callgrind: user-space instructions per 4 KiB request (qemu-img "
          "bench, %d requests minus a 1-request run)" % n)
    print("  %-20s %10s %10s %10s %8s" % ("case", "raw", "s2e", "s2e-raw",
                                          "s2e/raw"))
    s2e_out = None
    for name, kw, s2e_path, raw_path in cases:
        per = {}
        for fmt, path in (("raw", raw_path), ("s2e", s2e_path)):
            out = os.path.join(work, "cg.%s.%s.out" % (fmt, name.replace(
                " ", "_")))
            full = callgrind_ir(fmt, path, n, out, **kw)
            one = callgrind_ir(fmt, path, 1, out + ".1", **kw)
            per[fmt] = (full - one) / (n - 1)
            if fmt == "s2e" and s2e_out is None:
                s2e_out = out
        print("  %-20s %10.0f %10.0f %+10.0f %8.3f" % (
            name, per["raw"], per["s2e"], per["s2e"] - per["raw"],
            per["s2e"] / per["raw"]))
    if s2e_out and shutil.which("callgrind_annotate"):
        ann = subprocess.run(["callgrind_annotate", s2e_out],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True).stdout
        rows = []
        for line in ann.splitlines():
            m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S+?):(\S+) "
                         r"\[.*block-s2e\.so\]", line)
            if m:
                rows.append((int(m.group(1).replace(",", "")),
                             os.path.basename(m.group(2)), m.group(3)))
        if rows:
            print("  s2e's own functions, base read rand d1 (self "
                  "instructions per request):")
            for ir, f, fn in rows[:10]:
                print("    %7.1f  %s:%s" % (ir / n, f, fn))


def perf_report(data, title, lines=30):
    print()
    print("perf: " + title)
    out = subprocess.run(
        ["perf", "report", "-i", data, "--stdio", "--no-children",
         "--sort", "dso,symbol", "-g", "none", "--percent-limit", "0.7"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    shown = [l for l in out.splitlines() if l.strip() and not l.startswith("#")]
    for l in shown[:lines]:
        print("   " + l.rstrip())


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=parse_size, default=GiB,
                    help="base image size (default 1G)")
    ap.add_argument("--reps", type=int, default=9,
                    help="repetitions of every configuration (default 9)")
    ap.add_argument("--count", type=int, default=100000,
                    help="requests per qemu-img bench run at depth 64 "
                         "(default 100000; a quarter at depth 1)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer repetitions and requests (smoke run)")
    ap.add_argument("--perf", action="store_true",
                    help="also record the s2e cases with perf and print "
                         "where the time goes")
    ap.add_argument("--callgrind", action="store_true",
                    help="also count user-space instructions per request "
                         "with valgrind (immune to a busy machine)")
    ap.add_argument("--no-direct", action="store_true",
                    help="skip the -t none table")
    ap.add_argument("--dir", help="work directory (default: a new temp dir "
                                  "under $TMPDIR, removed at the end)")
    args = ap.parse_args()

    if args.quick:
        args.reps = min(args.reps, 2)
        args.count = min(args.count, 50000)
    if not os.access(S2E_RUN, os.X_OK):
        die("%s missing: build first (scripts/setup.sh)" % S2E_RUN)
    if args.size % (4 * KiB):
        die("--size must be a multiple of 4 KiB")

    work = args.dir or tempfile.mkdtemp(prefix="s2e-bench-qemu-")
    os.makedirs(work, exist_ok=True)
    base = os.path.join(work, "disk.raw.s2e")
    scratch = os.path.join(work, "scratch.raw")
    qcow2 = os.path.join(work, "disk.qcow2")
    t_start = time.monotonic()
    try:
        _main(args, work, base, scratch, qcow2)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("total time: %.0f s" % (time.monotonic() - t_start))


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    qver = run(["qemu-img", "--version"]).splitlines()[0]
    return "%s, %d CPUs; %s" % (cpu, os.cpu_count(), qver)


def _main(args, work, base, scratch, qcow2):
    size, reps, count = args.size, args.reps, args.count
    step = pick_step(size)
    print("s2e-block bench-qemu: s2e vs raw (and qcow2), same file")
    print("machine: " + machine_info())
    print("image: %s of random data in %s; %d reps, %d requests of 4 KiB "
          "per qemu-img run; random step %d (= %d x 4 KiB, prime)" % (
              fmt_size(size), work, reps, count, step, step // 4096))

    sys.stdout.flush()
    make_image(base, size)
    shutil.copyfile(base, scratch)
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", base, qcow2])
    for p in (base, scratch, qcow2):
        warm(p)

    def path_of(fmt, write=False):
        if fmt == "qcow2":
            return qcow2
        if fmt == "raw" and write:
            return scratch  # never write the base
        return base

    # ---- qemu-img bench, writeback (page cache warm) --------------------
    res = Results()
    cases = [
        ("base read seq d64", dict(depth=64)),
        ("base read rand d64", dict(depth=64, step=step)),
        ("base read seq d1", dict(depth=1, count=count // 4)),
        ("base read rand d1", dict(depth=1, step=step, count=count // 4)),
        ("write seq d64", dict(depth=64, write=True)),
        ("write rand d64", dict(depth=64, write=True, step=step)),
    ]
    fmts = ["raw", "s2e", "qcow2"]
    # Warm-up, untimed; and the CPU cost of a run of 1 request (process
    # start, s2e-run's version check, open), subtracted from every run.
    for f in fmts:
        img_bench(f, path_of(f), min(count, 20000))
    startup = {f: statistics.median(img_bench(f, path_of(f), 1)[1]
                                    for _ in range(3)) for f in fmts}

    def bench(res, name, f, n, **kw):
        iops, cpu = img_bench(f, path_of(f, kw.get("write")), n, **kw)
        res.add(name, f, iops, "IOPS",
                max(0.0, cpu - startup[f]) / n * 1e6)

    load0 = os.getloadavg()[0]
    for rep in range(reps):
        for name, kw in cases:
            kw = dict(kw)
            n = kw.pop("count", count)
            for f in (fmts if rep % 2 == 0 else list(reversed(fmts))):
                bench(res, name, f, n, **kw)
        print("  rep %d/%d done" % (rep + 1, reps), file=sys.stderr)
    print_table("qemu-img bench, 4 KiB requests, cache=writeback (page "
                "cache warm); IOPS; s2e/raw = median of per-repetition "
                "ratios; CPU = user+system time of qemu-img per request",
                res, fmts)
    print("  load average (1 min) before/after: %.1f / %.1f on %d CPUs" % (
        load0, os.getloadavg()[0], os.cpu_count()))

    # ---- qemu-io overlay reads -------------------------------------------
    region = min(64 * MiB, size)
    n_seq = region // 4096
    n_rand = n_seq
    rstep = pick_step(region)
    offs = [i * 4096 for i in range(n_seq)]
    o, roffs = 0, []
    for _ in range(n_rand):
        roffs.append(o)
        o = (o + rstep) % region
    bulk_reps = 4
    n_bulk = bulk_reps * (region // MiB)
    script = overlay_script(region, offs + roffs, bulk_reps)
    ores = Results()
    walls = {}
    for rep in range(reps):
        for f in (["raw", "s2e"] if rep % 2 == 0 else ["s2e", "raw"]):
            r = io_overlay(f, base if f == "s2e" else scratch, script,
                           n_seq, n_rand, n_bulk)
            ores.add("overlay read seq d1", f, r["seq"], "IOPS")
            ores.add("overlay read rand d1", f, r["rand"], "IOPS")
            ores.add("overlay read 1 MiB d1", f, r["bulk"], "MiB/s")
            walls.setdefault(f, []).append(r["wall"])
    print_table("qemu-io, write %s then 4 KiB `read -C` commands over it "
                "(per-command I/O time; raw: the written region in the page "
                "cache)" % fmt_size(region), ores, ["raw", "s2e"])
    print("  whole qemu-io process (write + %d reads of 4 KiB + %d of 1 MiB, "
          "incl. command parsing): raw %.2f s, s2e %.2f s (medians)" % (
              n_seq + n_rand, n_bulk, statistics.median(walls["raw"]),
              statistics.median(walls["s2e"])))

    # ---- -t none ----------------------------------------------------------
    dres = None
    if not args.no_direct:
        dres = Results()
        dcount = max(count // 10, 5000)
        dreps = max(2, min(reps, 3))
        dcases = [
            ("base read seq d64", dict(depth=64)),
            ("base read rand d64", dict(depth=64, step=step)),
            ("write seq d64", dict(depth=64, write=True)),
        ]
        for rep in range(dreps):
            for name, kw in dcases:
                for f in fmts:
                    bench(dres, name, f, dcount, cache="none", **kw)
        print_table("qemu-img bench, 4 KiB requests, -t none (O_DIRECT: the "
                    "disk is measured; s2e writes still go to memory); %d "
                    "requests, %d reps; IOPS" % (dcount, dreps), dres, fmts)

    # ---- bench-overlay ---------------------------------------------------
    print()
    if os.access(BENCH_OVERLAY, os.X_OK):
        print("%s (overlay memory per written byte, fork time):" %
              os.path.relpath(BENCH_OVERLAY))
        try:
            p = subprocess.run([BENCH_OVERLAY] + (["--quick"] if args.quick
                                                  else []),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               timeout=300)
            for line in p.stdout.splitlines():
                print("   " + line)
            if p.returncode:
                print("   (exit status %d)" % p.returncode)
        except subprocess.TimeoutExpired:
            print("   (timed out after 300 s)")
    else:
        print("overlay memory per written byte and fork time: %s not built "
              "(yet); skipped" % os.path.relpath(BENCH_OVERLAY))

    if args.callgrind:
        callgrind_section(work, base, scratch, step)

    # ---- perf --------------------------------------------------------------
    if args.perf:
        if not shutil.which("perf"):
            print("perf not installed: skipped")
        else:
            pd = os.path.join(work, "perf.data")
            for title, fn in [
                ("s2e base read rand d64", lambda: img_bench(
                    "s2e", base, count, step=step, perf=pd)),
                ("raw base read rand d64", lambda: img_bench(
                    "raw", base, count, step=step, perf=pd)),
                ("s2e write seq d64", lambda: img_bench(
                    "s2e", base, count, write=True, perf=pd)),
                ("raw write seq d64", lambda: img_bench(
                    "raw", scratch, count, write=True, perf=pd)),
                ("s2e overlay reads (qemu-io)", lambda: io_overlay(
                    "s2e", base, script, n_seq, n_rand, n_bulk, perf=pd)),
            ]:
                fn()
                perf_report(pd, title)

    # ---- summary -----------------------------------------------------------
    print()
    print("Summary (s2e / raw speed: median of the per-repetition ratios, "
          "and best run / best run; goals from issue 2):")

    def line(label, r, case, goal):
        ratio = r.ratio(case, "s2e", "raw")
        best = r.best_ratio(case, "s2e", "raw")
        if not ratio:
            return
        print("  %-34s %7.3fx (best/best %6.3fx)  goal >= %.2fx  %s" % (
            label, ratio, best, goal, "met" if ratio >= goal else
            ("within noise" if max(ratio, best) >= goal * 0.95 else
             "MISSED")))

    line("base read seq (d64)", res, "base read seq d64", GOAL_BASE)
    line("base read rand (d64)", res, "base read rand d64", GOAL_BASE)
    line("base read seq (d1)", res, "base read seq d1", GOAL_BASE)
    line("base read rand (d1)", res, "base read rand d1", GOAL_BASE)
    line("overlay read seq (d1, qemu-io)", ores, "overlay read seq d1",
         GOAL_OVERLAY)
    line("overlay read rand (d1, qemu-io)", ores, "overlay read rand d1",
         GOAL_OVERLAY)
    line("overlay read 1 MiB (d1, qemu-io)", ores, "overlay read 1 MiB d1",
         GOAL_OVERLAY)
    line("write seq (d64)", res, "write seq d64", GOAL_WRITE)
    line("write rand (d64)", res, "write rand d64", GOAL_WRITE)
    if dres:
        line("-t none base read seq (d64)", dres, "base read seq d64",
             GOAL_BASE)
        line("-t none base read rand (d64)", dres, "base read rand d64",
             GOAL_BASE)
        line("-t none write seq (d64)", dres, "write seq d64", GOAL_WRITE)
    print("  (\"within noise\": below the goal by less than 5% by one "
          "measure; on a machine shared with other jobs the runs of one "
          "configuration spread far more than that, see min..max; "
          "--callgrind counts instructions, which load does not disturb)")


if __name__ == "__main__":
    main()
