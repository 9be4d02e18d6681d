#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""qemu-img with the s2e driver, the s2e-run launcher, and the ABI guard:
every symbol the plugin needs from QEMU is exported by each QEMU program."""

import filecmp
import json
import os
import re
import subprocess
import unittest

from s2e_block.images import MiB
from s2e_block.testing import S2ETestCase
from s2e_block.tools import PLUGIN, S2E_RUN, run, s2e
PROGRAMS = ["qemu-img", "qemu-io", "qemu-nbd", "qemu-system-x86_64",
            "qemu-storage-daemon"]


def exported_symbols(path):
    out = run(["nm", "-D", "--defined-only", path]).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines()
            if len(line.split()) >= 3}


def shared_libs(binary):
    out = run(["ldd", binary]).stdout
    return [m.group(1) for m in re.finditer(r"=> (/\S+)", out)]


class QemuImgTest(S2ETestCase):

    def test_info_detects_s2e_by_name(self):
        img = self.base(size=3 * MiB)
        out = s2e("qemu-img", "info", "--output=json", img).stdout
        info = json.loads(out)
        self.assertEqual(info["format"], "s2e")
        self.assertEqual(info["virtual-size"], 3 * MiB)
        out = s2e("qemu-img", "info", img).stdout
        self.assertIn("file format: s2e", out)

    def test_raw_name_is_not_claimed(self):
        img = self.base(name="disk.raw")
        out = s2e("qemu-img", "info", img).stdout
        self.assertIn("file format: raw", out)

    def test_convert_reads_the_base(self):
        img = self.base(size=5 * MiB + 4096)
        out = os.path.join(self.tmp, "copy.raw")
        s2e("qemu-img", "convert", "-f", "s2e", "-O", "raw", img, out)
        self.assertTrue(filecmp.cmp(img, out, shallow=False))

    def test_create_is_refused_clearly(self):
        p = s2e("qemu-img", "create", "-f", "s2e",
                os.path.join(self.tmp, "new.s2e"), "1M", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("does not support image creation", p.stderr)

    def test_compare_and_map(self):
        img = self.base(size=2 * MiB)
        p = s2e("qemu-img", "compare", "-f", "s2e", "-F", "raw", img, img)
        self.assertIn("Images are identical", p.stdout)
        p = s2e("qemu-img", "map", "--output=json", "-f", "s2e", img)
        extents = json.loads(p.stdout)
        self.assertEqual(sum(e["length"] for e in extents), 2 * MiB)


class LauncherTest(S2ETestCase):

    def test_refuses_other_qemu_version(self):
        fake = os.path.join(self.tmp, "qemu-img")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\necho 'qemu-img version 9.9.9 "
                    "(Debian 1:9.9+dfsg-1)'\n")
        os.chmod(fake, 0o755)
        p = run([S2E_RUN, fake, "info", "x"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("built for Debian QEMU", p.stderr)
        self.assertIn("1:9.9+dfsg-1", p.stderr)

    def test_unknown_program(self):
        p = run([S2E_RUN, "no-such-qemu-program"], check=False)
        self.assertEqual(p.returncode, 127)
        self.assertIn("program not found", p.stderr)

    def test_usage(self):
        p = run([S2E_RUN], check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("usage", p.stderr)

    def test_plugin_inert_outside_qemu(self):
        env = dict(os.environ, LD_PRELOAD=PLUGIN)
        p = subprocess.run(["sh", "-c", "echo alive; ls / >/dev/null"],
                           env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "alive")
        self.assertEqual(p.stderr, "")

    def test_without_plugin_format_is_unknown(self):
        img = self.base()
        p = run(["qemu-img", "info", "-f", "s2e", img], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Unknown driver 's2e'", p.stderr)


class AbiTest(unittest.TestCase):

    def test_every_needed_symbol_is_exported(self):
        """Undefined, non-weak symbols of the plugin that its own libraries
        do not provide must be exported by every QEMU program."""
        out = run(["nm", "-D", "--undefined-only", PLUGIN]).stdout
        needed = {line.split()[-1].split("@")[0] for line in out.splitlines()
                  if line.split()[0] == "U"}
        own = set()
        for lib in shared_libs(PLUGIN):
            own |= exported_symbols(lib)
        from_qemu = needed - own
        self.assertIn("bdrv_register", from_qemu)
        for prog in PROGRAMS:
            path = run(["sh", "-c", "command -v " + prog]).stdout.strip()
            provided = exported_symbols(path)
            for lib in shared_libs(path):
                provided |= exported_symbols(lib)
            missing = sorted(from_qemu - provided)
            self.assertEqual(missing, [], "%s lacks %s" % (prog, missing))

    def test_no_data_symbols_from_qemu(self):
        """Data references (GLOB_DAT / COPY / absolute relocations) are bound
        at load time even with lazy binding: any to a QEMU symbol would break
        the plugin in processes that are not QEMU."""
        out = run(["readelf", "-r", "-W", PLUGIN]).stdout
        own = set()
        for lib in shared_libs(PLUGIN):
            own |= exported_symbols(lib)
        bad = []
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 5 and re.match(r"R_X86_64_(GLOB_DAT|COPY|64)$", f[2]):
                sym = f[4].split("@")[0]
                defined = run(["nm", "-D", "--defined-only", PLUGIN]).stdout
                if sym not in own and not re.search(r" %s$" % re.escape(sym),
                                                   defined, re.M):
                    bad.append(sym)
        # Weak references are allowed: they resolve to NULL when absent.
        weak = run(["nm", "-D", PLUGIN]).stdout
        bad = [s for s in bad if not re.search(r" [wv] %s$" % re.escape(s),
                                               weak, re.M)]
        self.assertEqual(bad, [])

if __name__ == "__main__":
    unittest.main(verbosity=2)
