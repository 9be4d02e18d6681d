# SPDX-License-Identifier: GPL-2.0-or-later
"""unittest base classes of the integration tests: Debian's real QEMU
binaries run through build/s2e-run, with real files and real monitor
commands.

- QemuTestCase: a temp directory per test, QEMU processes killed at the
  end, and a check that every registered base image is exactly as it was.
- S2ETestCase: a QemuTestCase whose QEMU runs through this build's
  s2e-run (a test fails without it), with its helpers.
- GuestTestCase: an S2ETestCase on the real test guest: the class is
  skipped without a build, and the guest is built (or found in the cache)
  once for the class, as cls.files.
"""

import os
import shutil
import tempfile
import unittest

from . import guest as G
from .images import MiB, file_state, make_image
from .machine import Qemu
from .tools import PLUGIN, S2E_RUN


class QemuTestCase(unittest.TestCase):
    """A temp directory per test (self.tmp, named TMP_PREFIX...), QEMU
    processes (self.vms) killed at the end, and a check that every
    registered base image (protect()) is exactly as it was."""

    TMP_PREFIX = "s2e-it-"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix=self.TMP_PREFIX)
        os.chmod(self.tmp, 0o755)
        self.vms = []
        self.bases = {}
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for vm in self.vms:
            vm.kill()
        for path, state in self.bases.items():
            self.assertEqual(file_state(path), state,
                             "base image %s changed" % path)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def protect(self, path):
        """Check at the end that PATH is exactly as it is now."""
        self.bases[path] = file_state(path)


class S2ETestCase(QemuTestCase):
    """QEMU through this build's s2e-run: base images with known content,
    paused VMs (qemu()), QEMU as another user (unprivileged())."""

    def setUp(self):
        if not os.access(S2E_RUN, os.X_OK):
            self.fail("%s missing: build with scripts/setup.sh" % S2E_RUN)
        super().setUp()

    def base(self, name="disk.raw.s2e", size=16 * MiB, seed=1):
        """Create a base image and remember its state for the final check."""
        path = os.path.join(self.tmp, name)
        make_image(path, size, seed)
        self.protect(path)
        return path

    def unprivileged(self, uid):
        """The command prefix and environment that run s2e-run as @uid.
        The build tree may sit where @uid cannot enter (a clone in a 0700
        directory), so the launcher and the plugin are copied beside this
        test's files and the launcher is pointed at the copy."""
        d = os.path.join(self.tmp, "unprivileged")
        os.makedirs(d, exist_ok=True)
        launcher = shutil.copy(S2E_RUN, d)
        plugin = shutil.copy(PLUGIN, d)
        for path in (d, launcher, plugin):
            os.chmod(path, 0o755)
        env = dict(os.environ, S2E_PLUGIN=plugin)
        prefix = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                  "--clear-groups", "--", launcher]
        return prefix, env

    def qemu(self, *args, **kw):
        vm = Qemu(self.tmp, *args, **kw)
        self.vms.append(vm)
        return vm

    def assertPattern(self, out, what=""):
        self.assertNotIn("Pattern verification failed", out, what)
        self.assertNotRegex(out, r"(?i)(failed|error)", what + "\n" + out)


class GuestTestCase(S2ETestCase):
    """Tests on the real test guest (docs/guest.md): skipped without a
    build (build/s2e-run); cls.files is the guest (GuestFiles), built or
    found in the cache once for the class.  A subclass that prepares more
    for the whole class calls super().setUpClass() first."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.access(S2E_RUN, os.X_OK):
            raise unittest.SkipTest("%s missing: build first" % S2E_RUN)
        cls.files = G.build_guest()
