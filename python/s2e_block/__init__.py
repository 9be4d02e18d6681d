# SPDX-License-Identifier: GPL-2.0-or-later
"""s2e-block's Python harness: QEMU run through this checkout's build,
its monitors and the real test guest, for the integration tests
(tests/integration), the benchmarks (bench/) and the main job's demo
(scripts/demo.py).  Python 3 standard library only.

Modules:

- tools: where the build is (BUILD_DIR, S2E_RUN, S2E_SNAPSHOT, PLUGIN);
  run(), s2e() and qemu_io() run QEMU's programs through build/s2e-run.
- images: image files with known content (make_image, pattern), what must
  not change about a base (file_state), snapshot file fields
  (downgrade_to_v1).
- machine: a QEMU process and its monitors: connect_unix, HMP, QMP (execute
  returns the "return" value or raises QMPError), Qemu (a paused VM with
  no guest code), and the errors QemuError, QemuTimeout, MonitorError,
  QMPError.
- guest: the real test guest (docs/guest.md): build_guest, Guest (its
  serial agent, HMP and QMP), gen_content, detect_accel...
- workflow: S2E's image workflow on the guest (the main job): take
  `ready`, resume it, check every file, execution paths.
- testing: the tests' unittest base classes S2ETestCase and GuestTestCase.

Programs find this package by putting the checkout's python/ directory
first on sys.path (the tests get it as PYTHONPATH from meson).
"""
