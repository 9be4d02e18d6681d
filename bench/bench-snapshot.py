#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""s2e snapshots vs qcow2 internal snapshots, in one run on one machine.

    bench/bench-snapshot.py [--ram 256,1024] [--levels 0,1,3,6]
                            [--levels-large 0,1] [--data mixed|random]
                            [--reps 2] [--perf]
    ninja -C build bench-snapshot

Prints numbers, never fails on timing: this is a benchmark, not a test.

A paused VM (qemu-system-x86_64 -machine pc -accel tcg -m RAM -S, run
through build/s2e-run, no guest code) has its RAM filled with a data file
by `-device loader,file=DATA,addr=0x100000` (RAM minus 2 MiB; QEMU also keeps
that file in memory as a ROM blob, the same for every format).  The VM has
one drive: a 64 MiB qcow2 image, or a 64 MiB raw image as `format=s2e`, and
4 MiB are written to it through HMP `qemu-io` before saving.  Then, driven
over HMP:

  savevm         wall time of HMP `savevm ready` (one per QEMU process)
  RSS growth     peak RSS during savevm minus RSS just before it: VmHWM
                 after savevm, reset to the current RSS just before it by
                 writing 5 to /proc/PID/clear_refs; also VmRSS sampled every
                 2 ms by a thread (both reported, the larger is used)
  file size      s2e: IMAGE.ready; qcow2: growth of the qcow2 file (and of
                 its allocated blocks)
  loadvm (HMP)   wall time of HMP `loadvm ready` in the running QEMU
                 (median of two; the second also gives the RSS growth of a
                 loadvm, for information)
  -loadvm start  a new QEMU with `-loadvm ready` (without the loader: the
                 RAM comes from the snapshot): time from spawn to the
                 first HMP answer, minus the same start without -loadvm
                 (measured once per format and repetition); each is the
                 fastest of two starts (start-up time is what a busy
                 machine disturbs most); both shown

s2e runs once per zlib level, set by S2E_SNAPSHOT_ZLIB_LEVEL (read by
snapshot/snapshot-writer.c when the writer is created; level 0 stores the
VM state uncompressed; chunks that do not shrink are stored raw anyway).

Data (--data):
  mixed   per 4 KiB page, drawn with a fixed seed: 25% zero pages, 25%
          random bytes (compressed or encrypted data), 50% contents of
          the system's own files (/usr/bin, /usr/lib: code, data, text)
  random  all random bytes (worst case for compression)

Page cache: warm for both formats (nothing is dropped); savevm includes
each format's fsync.
"""

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))   # the harness
from s2e_block.machine import HMP  # noqa: E402
from s2e_block.tools import QEMU_SYSTEM, S2E_RUN  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
PAGE = 4096
RSS_GOAL_MIB = 64
DISK_SIZE = 64 * MiB
DISK_WRITE = "write -P 0x5a 0 4M"
HMP_TIMEOUT = 900
STARTS = 2  # QEMU starts per -loadvm measurement (the fastest counts)


def die(msg):
    print("bench-snapshot: " + msg, file=sys.stderr)
    sys.exit(2)


def note(msg):
    print("  " + msg, file=sys.stderr)
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# RAM data


def corpus_files():
    """System files in a fixed order: real code, data and text."""
    for top in ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share/doc",
                "/usr/lib"):
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                yield path


def corpus_pages(max_bytes):
    """Up to max_bytes of file contents, as 4 KiB pages (without trailing
    partial pages and without all-zero pages, which are counted apart)."""
    pages, total = [], 0
    zero = bytes(PAGE)
    for path in corpus_files():
        try:
            with open(path, "rb") as f:
                data = f.read(16 * MiB)
        except OSError:
            continue
        for off in range(0, len(data) - PAGE + 1, PAGE):
            page = data[off:off + PAGE]
            if page != zero:
                pages.append(page)
                total += PAGE
        if total >= max_bytes:
            break
    return pages


def make_data(path, size, kind, corpus):
    rng = random.Random(20240601)
    zero = bytes(PAGE)
    ci = 0
    with open(path, "wb") as f:
        buf = []
        for _ in range(size // PAGE):
            if kind == "random":
                buf.append(rng.randbytes(PAGE))
            else:
                r = rng.random()
                if r < 0.25:
                    buf.append(zero)
                elif r < 0.50 or not corpus:
                    buf.append(rng.randbytes(PAGE))
                else:
                    buf.append(corpus[ci % len(corpus)])
                    ci += 1
            if len(buf) == 1024:
                f.write(b"".join(buf))
                buf = []
        f.write(b"".join(buf))


# ---------------------------------------------------------------------------
# QEMU


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * KiB
    except OSError:
        pass
    return out


class Sampler:
    """VmRSS every @interval seconds in a thread; max() of what it saw."""

    def __init__(self, pid, interval=0.002):
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.samples = 0
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        path = "/proc/%d/status" % self.pid
        while not self.stop_ev.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            v = int(line.split()[1]) * KiB
                            self.peak = max(self.peak, v)
                            self.samples += 1
                            break
            except OSError:
                return
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        return self.peak


def reset_hwm(pid):
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class VM:
    def __init__(self, work, name, drive, ram_mib, data, env=None,
                 loadvm=None):
        """data: the RAM fill for -device loader, or None (a VM started
        with -loadvm gets its RAM from the snapshot; the loader has no VM
        state, so leaving it out changes nothing but the start-up cost)."""
        self.hmp_path = os.path.join(work, name + ".hmp")
        if os.path.exists(self.hmp_path):
            os.unlink(self.hmp_path)
        self.log_path = os.path.join(work, name + ".log")
        args = [S2E_RUN, QEMU_SYSTEM, "-nodefaults", "-display",
                "none", "-machine", "pc", "-accel", "tcg", "-m", str(ram_mib),
                "-S", "-monitor", "unix:%s,server=on,wait=off" % self.hmp_path,
                "-drive", drive]
        if data:
            args += ["-device", "loader,file=%s,addr=0x100000" % data]
        if loadvm:
            args += ["-loadvm", loadvm]
        e = dict(os.environ)
        e.pop("S2E_SNAPSHOT_ZLIB_LEVEL", None)
        e.update(env or {})
        self.log = open(self.log_path, "w")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=e,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.hmp = None
        deadline = time.monotonic() + HMP_TIMEOUT
        while not os.path.exists(self.hmp_path):
            if self.proc.poll() is not None:
                die("QEMU exited (%d):\n%s" % (self.proc.returncode,
                                               self.output()))
            if time.monotonic() > deadline:
                die("QEMU did not start")
            time.sleep(0.002)
        self.hmp = HMP(self.hmp_path, timeout=HMP_TIMEOUT)
        self.cmd("info status")
        self.ready = time.monotonic() - self.t0

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def cmd(self, line, check=True):
        out = self.hmp.cmd(line, timeout=HMP_TIMEOUT)
        if check and re.search(r"(?i)(error|fail|could not|cannot)", out):
            die("HMP %r: %s\n%s" % (line, out, self.output()))
        return out

    def quit(self):
        try:
            self.hmp.sock.sendall(b"quit\n")
            self.proc.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.hmp.close()
        self.log.close()


# ---------------------------------------------------------------------------


class Config:
    def __init__(self, label, fmt, level=None):
        self.label, self.fmt, self.level = label, fmt, level

    def env(self):
        if self.level is None:
            return {}
        return {"S2E_SNAPSHOT_ZLIB_LEVEL": str(self.level)}


def prepare_disk(work, cfg):
    if cfg.fmt == "qcow2":
        path = os.path.join(work, "disk.qcow2")
        if os.path.exists(path):
            os.unlink(path)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path,
                        str(DISK_SIZE)], check=True)
        drive = "file=%s,format=qcow2,if=none,id=d0" % path
        snap = None
    else:
        path = os.path.join(work, "disk.raw.s2e")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.truncate(DISK_SIZE)
        snap = path + ".ready"
        if os.path.exists(snap):
            os.unlink(snap)
        drive = "file=%s,format=s2e,if=none,id=d0" % path
    return path, drive, snap


def perf_savevm(work, cfg, ram, data):
    """Record one s2e savevm with perf attached to QEMU; print the top."""
    path, drive, snap = prepare_disk(work, cfg)
    vm = VM(work, "perf", drive, ram, data, env=cfg.env())
    vm.cmd('qemu-io d0 "%s"' % DISK_WRITE)
    pd = os.path.join(work, "perf.data")
    perf = subprocess.Popen(["perf", "record", "-q", "-g", "-o", pd, "-p",
                             str(vm.pid)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    vm.cmd("savevm ready")
    perf.send_signal(2)
    perf.wait(60)
    vm.quit()
    print()
    print("perf: savevm, %s, %d MiB RAM (self time by dso, then by dso and "
          "symbol)" % (cfg.label, ram))
    for sort, limit, n in (("dso", "2", 8), ("dso,symbol", "1.5", 16)):
        out = subprocess.run(
            ["perf", "report", "-i", pd, "--stdio", "--no-children",
             "--sort", sort, "-g", "none", "--percent-limit", limit],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True).stdout
        for l in [l for l in out.splitlines()
                  if l.strip() and not l.startswith("#")][:n]:
            print("   " + l.rstrip())


def one_run(work, cfg, ram, data):
    path, drive, snap = prepare_disk(work, cfg)
    r = {}
    vm = VM(work, "save", drive, ram, data, env=cfg.env())
    vm.cmd('qemu-io d0 "%s"' % DISK_WRITE)
    size0 = os.stat(path)
    time.sleep(0.2)
    st0 = proc_status(vm.pid)
    have_hwm = reset_hwm(vm.pid)
    sampler = Sampler(vm.pid)
    t = time.monotonic()
    vm.cmd("savevm ready")
    r["savevm"] = time.monotonic() - t
    peak_sampled = sampler.stop()
    st1 = proc_status(vm.pid)
    rss0 = st0.get("VmRSS", 0)
    r["rss0"] = rss0
    r["grow_sampled"] = max(0, peak_sampled - rss0)
    r["grow_hwm"] = max(0, st1.get("VmHWM", 0) - rss0) if have_hwm else None
    r["grow"] = max(r["grow_sampled"], r["grow_hwm"] or 0)
    r["samples"] = sampler.samples
    info = vm.cmd("info snapshots")
    if "ready" not in info:
        die("savevm left no snapshot:\n" + info)
    if cfg.fmt == "qcow2":
        size1 = os.stat(path)
        r["file"] = size1.st_size - size0.st_size
        r["alloc"] = (size1.st_blocks - size0.st_blocks) * 512
    else:
        st = os.stat(snap)
        r["file"] = st.st_size
        r["alloc"] = st.st_blocks * 512
    # Two HMP loadvm: the second also measures the RSS growth of a loadvm.
    loads = []
    t = time.monotonic()
    vm.cmd("loadvm ready")
    loads.append(time.monotonic() - t)
    st0 = proc_status(vm.pid)
    hwm = reset_hwm(vm.pid)
    t = time.monotonic()
    vm.cmd("loadvm ready")
    loads.append(time.monotonic() - t)
    if hwm:
        r["load_grow"] = max(0, proc_status(vm.pid).get("VmHWM", 0) -
                             st0.get("VmRSS", 0))
    r["loadvm"] = statistics.median(loads)
    vm.quit()

    starts = []
    for _ in range(STARTS):
        vm = VM(work, "load", drive, ram, None, env=cfg.env(),
                loadvm="ready")
        starts.append(vm.ready)
        st = vm.cmd("info status")
        if "paused" not in st and "running" not in st:
            die("-loadvm: unexpected status %r" % st)
        vm.quit()
    r["start_loadvm"] = min(starts)
    return r


def start_baseline(work, cfg, ram):
    """Spawn to first HMP answer without -loadvm (same drive, no loader)."""
    path, drive, snap = prepare_disk(work, cfg)
    starts = []
    for _ in range(STARTS):
        vm = VM(work, "base", drive, ram, None, env=cfg.env())
        starts.append(vm.ready)
        vm.quit()
    return min(starts)


def compressor_table(data, sample=64 * MiB):
    """Single-thread speed of candidate compressors on the same data, 1 MiB
    chunks like the s2e writer (zlib through Python's zlib, i.e. the same
    libz; zstd and lz4 through their command-line tools, if installed)."""
    with open(data, "rb") as f:
        buf = f.read(sample)
    rows = []
    chunks = [buf[i:i + MiB] for i in range(0, len(buf), MiB)]
    for lv in (1, 3, 6):
        t = time.monotonic()
        comp = [zlib.compress(c, lv) for c in chunks]
        ct = time.monotonic() - t
        t = time.monotonic()
        for c in comp:
            zlib.decompress(c)
        dt = time.monotonic() - t
        rows.append(["zlib -%d" % lv, "%.0f" % (mib(len(buf)) / ct),
                     "%.0f" % (mib(len(buf)) / dt),
                     "%.3f" % (sum(map(len, comp)) / len(buf))])
    path = data + ".sample"
    with open(path, "wb") as f:
        f.write(buf)
    for tool, level in (("zstd", "-1"), ("lz4", "-1")):
        if not shutil.which(tool):
            continue
        out = path + "." + tool
        t = time.monotonic()
        r1 = subprocess.run([tool, level, "-q", "-f"] +
                            (["-T1", path, "-o", out] if tool == "zstd"
                             else [path, out]),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
        ct = time.monotonic() - t
        t = time.monotonic()
        r2 = subprocess.run([tool, "-d", "-q", "-f", out] +
                            (["-o"] if tool == "zstd" else []) +
                            [path + ".d"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
        dt = time.monotonic() - t
        if r1.returncode == 0 and r2.returncode == 0:
            rows.append(["%s %s (CLI, incl. start-up)" % (tool, level),
                         "%.0f" % (mib(len(buf)) / ct),
                         "%.0f" % (mib(len(buf)) / dt),
                         "%.3f" % (os.stat(out).st_size / len(buf))])
        for p in (out, path + ".d"):
            if os.path.exists(p):
                os.unlink(p)
    os.unlink(path)
    return rows


def writer_default_level():
    """S2E_SNAP_ZLIB_LEVEL_DEFAULT from the source, for the report."""
    try:
        with open(os.path.join(HERE, "..", "snapshot",
                               "snapshot-int.h")) as f:
            m = re.search(r"#define\s+S2E_SNAP_ZLIB_LEVEL_DEFAULT\s+(\d+)",
                          f.read())
        return m.group(1) if m else "?"
    except OSError:
        return "?"


def mib(n):
    return n / MiB


def print_table(title, cols, rows):
    print()
    print(title)
    widths = [max(len(str(r[i])) for r in rows + [cols])
              for i in range(len(cols))]
    print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                    for i, (c, w) in enumerate(zip(cols, widths))))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))


def med(rs, key):
    v = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(v) if v else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ram", default="256,1024",
                    help="guest RAM sizes in MiB, comma-separated "
                         "(default 256,1024)")
    ap.add_argument("--levels", default="0,1,3,6",
                    help="s2e zlib levels at the smallest RAM size "
                         "(default 0,1,3,6)")
    ap.add_argument("--levels-large", default="0,1",
                    help="s2e zlib levels at the other RAM sizes (default "
                         "0,1: time and size scale linearly with the RAM, "
                         "and the sweep at 1 GiB alone takes over 10 "
                         "minutes on 2 busy CPUs)")
    ap.add_argument("--data", choices=("mixed", "random"), default="mixed")
    ap.add_argument("--reps", type=int, default=2,
                    help="repetitions of each configuration (default 2)")
    ap.add_argument("--perf", action="store_true",
                    help="also profile s2e savevm with perf (largest RAM, "
                         "its levels)")
    ap.add_argument("--dir", help="work directory (default: a temp dir, "
                                  "removed at the end)")
    args = ap.parse_args()
    rams = [int(x) for x in args.ram.split(",") if x]
    levels = [int(x) for x in args.levels.split(",") if x != ""]
    args.large = [int(x) for x in args.levels_large.split(",") if x != ""]
    if not os.access(S2E_RUN, os.X_OK):
        die("%s missing: build first (scripts/setup.sh)" % S2E_RUN)
    work = args.dir or tempfile.mkdtemp(prefix="s2e-bench-snap-")
    os.makedirs(work, exist_ok=True)
    t_start = time.monotonic()
    try:
        _main(args, work, rams, levels)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("total time: %.0f s" % (time.monotonic() - t_start))


def _main(args, work, rams, levels):
    def configs_for(ram):
        lv = levels if ram == min(rams) else args.large
        return [Config("qcow2", "qcow2")] + [
            Config("s2e zlib %d" % x, "s2e", x) for x in lv]
    qver = subprocess.run(["qemu-system-x86_64", "--version"],
                          stdout=subprocess.PIPE, text=True).stdout
    print("s2e-block bench-snapshot: s2e snapshots vs qcow2 internal "
          "snapshots")
    print("machine: %d CPUs; %s" % (os.cpu_count(), qver.splitlines()[0]))
    print("VM: -machine pc -accel tcg -S, RAM filled with %s data by "
          "-device loader (RAM - 2 MiB); drive 64 MiB with 4 MiB written; "
          "%d reps; work dir %s" % (args.data, args.reps, work))
    print("s2e zlib level: S2E_SNAPSHOT_ZLIB_LEVEL per run; the writer's "
          "built-in default (snapshot/snapshot-int.h) is %s" %
          writer_default_level())
    sys.stdout.flush()

    corpus = corpus_pages(256 * MiB) if args.data == "mixed" else None
    results = {}  # (ram, label) -> [r]
    ctable = None
    for ram in rams:
        data = os.path.join(work, "ram-%d.bin" % ram)
        data_size = (ram - 2) * MiB
        make_data(data, data_size, args.data, corpus)
        note("RAM %d MiB: data file ready" % ram)
        configs = configs_for(ram)
        for rep in range(args.reps):
            order = configs if rep % 2 == 0 else list(reversed(configs))
            base_start = {}
            for cfg in order:
                if cfg.fmt not in base_start:
                    base_start[cfg.fmt] = start_baseline(work, cfg, ram)
                r = one_run(work, cfg, ram, data)
                r["start_base"] = base_start[cfg.fmt]
                r["startload"] = max(0.0, r["start_loadvm"] - r["start_base"])
                results.setdefault((ram, cfg.label), []).append(r)
                note("RAM %d MiB rep %d %-11s savevm %.2f s loadvm %.2f s "
                     "RSS +%.1f MiB" % (ram, rep + 1, cfg.label, r["savevm"],
                                        r["loadvm"], mib(r["grow"])))
        if ram == max(rams) and len(levels) > 0:
            ctable = compressor_table(data)
        os.unlink(data)

        rows = []
        q = results[(ram, "qcow2")]
        for cfg in configs:
            rs = results[(ram, cfg.label)]
            sv, lv, sl = med(rs, "savevm"), med(rs, "loadvm"), \
                med(rs, "startload")
            rows.append([
                cfg.label,
                "%.2f" % sv, "%.2f" % (sv / med(q, "savevm")),
                "%.0f" % (data_size / MiB / sv),
                "%.2f" % lv, "%.2f" % (lv / med(q, "loadvm")),
                "%.2f" % med(rs, "start_loadvm"), "%.2f" % sl,
                "%.1f" % mib(med(rs, "file")),
                "%.3f" % (med(rs, "file") / data_size),
                "%.1f" % mib(med(rs, "grow")),
                "%.1f" % mib(max(r["grow"] for r in rs)),
                "%.1f" % mib(med(rs, "load_grow") or 0),
            ])
        print_table(
            "RAM %d MiB (%d MiB of %s data), medians of %d; ratios are "
            "time / qcow2's time (<= 1: goal met)" % (
                ram, data_size // MiB, args.data, args.reps),
            ["format", "savevm s", "/qcow2", "MiB/s", "loadvm s", "/qcow2",
             "-loadvm start s", "(net s)", "file MiB", "file/data",
             "RSS+ MiB", "(max)", "loadvm RSS+"],
            rows)
        b = results[(ram, configs[0].label)]
        print("  -loadvm start: spawn to first HMP answer; net = minus the "
              "same start without -loadvm (%.2f s).  RSS+: peak RSS during "
              "savevm minus RSS before (VmHWM reset via clear_refs, and "
              "VmRSS sampled every 2 ms, ~%d samples)." % (
                  med(b, "start_base"), med(b, "samples")))
        print("  RSS before savevm: %.0f MiB (guest RAM + the loader's ROM "
              "copy of the data + QEMU)." % mib(med(b, "rss0")))
        sys.stdout.flush()

    if ctable:
        print_table("Compressors on %d MiB of this %s data, one thread, "
                    "MiB/s of uncompressed data (for the choice of the "
                    "default; the s2e writer uses zlib)" % (
                        min(64, max(rams) - 2), args.data),
                    ["compressor", "compress MiB/s", "decompress MiB/s",
                     "size/data"], ctable)

    if args.perf:
        if shutil.which("perf"):
            ram = max(rams)
            data = os.path.join(work, "ram-perf.bin")
            make_data(data, (ram - 2) * MiB, args.data, corpus)
            for lv in args.large if len(rams) > 1 else levels:
                perf_savevm(work, Config("s2e zlib %d" % lv, "s2e", lv), ram,
                            data)
            os.unlink(data)
        else:
            print("perf not installed: profile skipped")

    # ---- summary -----------------------------------------------------------
    print()
    print("Summary (goals of issue 3: savevm and loadvm no slower than "
          "qcow2; RSS growth during savevm <= %d MiB whatever the RAM):" %
          RSS_GOAL_MIB)
    for ram in rams:
        q = results[(ram, "qcow2")]
        for cfg in configs_for(ram)[1:]:
            rs = results[(ram, cfg.label)]
            s = med(rs, "savevm") / med(q, "savevm")
            lo = med(rs, "loadvm") / med(q, "loadvm")
            ql, sl = med(q, "startload"), med(rs, "startload")
            g = max(r["grow"] for r in rs)
            print("  %4d MiB %-10s savevm %5.2fx %-6s loadvm %5.2fx %-6s "
                  "-loadvm net %5.2fs vs %5.2fs %-6s RSS +%5.1f MiB %s" % (
                      ram, cfg.label, s, "met" if s <= 1 else "MISSED",
                      lo, "met" if lo <= 1 else "MISSED",
                      sl, ql, "met" if sl <= ql * 1.10 + 0.1 else "MISSED",
                      mib(g), "met" if mib(g) <= RSS_GOAL_MIB else "MISSED"))
        g = max(r["grow"] for r in q)
        print("  %4d MiB %-10s (reference) RSS +%.1f MiB" % (
            ram, "qcow2", mib(g)))
    print("  (x = s2e time / qcow2 time, medians; the -loadvm comparison "
          "allows 10% + 100 ms of start-up noise)")


if __name__ == "__main__":
    main()
