#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Tests of the s2e-snapshot tool on the committed seed snapshots.
#
#   test-snapshot-tool.sh S2E_SNAPSHOT CORPUS_DIR
#
# The corpus files were taken on a base of 1 MiB with mtime
# 1700000000.000000005; valid-zero has zero extents (17 data sectors,
# 1124800395214839 zero sectors); mut-vm-size has a damaged last chunk;
# mut-version is version 3; mut-zero-feature has a zero extent without its
# feature bit; v1-valid-mixed is format version 1; mut-block-data has a
# damaged byte in the block of sectors 3..7, mut-v1-extent-data in the
# version 1 run of sectors 3..4.  (Sizes are printed with a no-break space: the
# patterns match it with ".*".)
set -u
tool=$1
corpus=$2
case $tool in /*) ;; *) tool=$PWD/$tool ;; esac
case $corpus in /*) ;; *) corpus=$PWD/$corpus ;; esac
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pass=0
fail=0

check() {   # check NAME EXPECTED_STATUS PATTERN COMMAND...
    name=$1 want=$2 pattern=$3
    shift 3
    out=$("$@" 2>&1)
    got=$?
    if [ "$got" -eq "$want" ] && printf '%s' "$out" | grep -q -- "$pattern"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $name: status $got (want $want), output:"
        printf '%s\n' "$out"
    fi
}

cd "$dir" || exit 1
truncate -s 1M disk.img
touch -d @1700000000.000000005 disk.img
cp "$corpus/valid-mixed" disk.img.ready
cp "$corpus/mut-vm-size" disk.img.broken
cp "$corpus/mut-version" disk.img.v2
cp "$corpus/valid-zero" disk.img.zero
cp "$corpus/mut-zero-feature" disk.img.zbad
cp "$corpus/v1-valid-mixed" disk.img.v1
cp "$corpus/mut-block-data" disk.img.vblocks
cp "$corpus/mut-v1-extent-data" disk.img.v1bad
echo "not a snapshot" > disk.img.notes

check help 0 "Usage: s2e-snapshot" "$tool" --help
check no-command 2 "Usage" "$tool"
check bad-command 2 "unknown command 'frob'" "$tool" frob
check bad-option 2 "unknown option '--frob'" "$tool" --frob list disk.img
check bad-arity 2 "verify IMAGE NAME" "$tool" verify disk.img

check info 0 "Loads on it:     yes" "$tool" info disk.img.ready
check info-nsec 0 "20.000000005" "$tool" info disk.img.ready
check info-json 0 '"loads":true' "$tool" --json info disk.img.ready
check info-invalid 1 "version 3" "$tool" info disk.img.v2
check info-invalid-json 1 '"code":"BAD_VERSION"' "$tool" --json info disk.img.v2
check info-missing 1 "No such file" "$tool" info disk.img.none
check info-zero 0 "of which zero: 1124800395214839 (511.5.*PiB) in 2 zero extents" "$tool" info disk.img.zero
check info-zero-loads 0 "Loads on it:     yes" "$tool" info disk.img.zero
check info-zero-features 0 "incompatible 0x1" "$tool" info disk.img.zero
check info-zero-json 0 '"data_sectors":17,"zero_sectors":1124800395214839' "$tool" --json info disk.img.zero
check info-zero-json-extents 0 '"extent_count":4,"zero_extent_count":2' "$tool" --json info disk.img.zero
check info-plain-json 0 '"zero_sectors":0' "$tool" --json info disk.img.ready
check info-zero-bad 1 "lacks the zero extent feature bit" "$tool" info disk.img.zbad
check info-blocks 0 "Sector data:     checksummed per 4 KiB block" "$tool" info disk.img.ready
check info-blocks-json 0 '"block_checksums":true' "$tool" --json info disk.img.ready
check info-v1-unverified 0 "format version 1): loaded unverified" "$tool" info disk.img.v1
check info-v1-json 0 '"version":1,.*"block_checksums":false' "$tool" --json info disk.img.v1
check verify-v1 0 "OK: snapshot 'v1'" "$tool" verify disk.img v1
check verify-block-damaged 1 "damaged: data of sectors 3+5" "$tool" verify disk.img vblocks
check verify-v1-damaged 1 "data of sectors 3+2" "$tool" verify disk.img v1bad

check list 0 "ready  *ok" "$tool" list disk.img
check list-invalid 0 "v2  *invalid" "$tool" list disk.img
check list-header 0 "DISK DATA  *ZEROED  *FILE" "$tool" list disk.img
check list-zero 0 "zero  *ok  *4.9.*KiB  *8.5.*KiB  *511.5.*PiB" "$tool" list disk.img
check list-zero-json 0 '"name":"zero".*"zero_sectors":1124800395214839' "$tool" --json list disk.img
check list-skips-notes 0 '"snapshots":\[{"name":"broken"' "$tool" --json list disk.img
if "$tool" list disk.img | grep -q notes; then
    fail=$((fail + 1)); echo "FAIL: list shows a file without the magic"
else
    pass=$((pass + 1))
fi

check verify 0 "OK: snapshot 'ready'" "$tool" verify disk.img ready
check verify-json 0 '"ok":true' "$tool" --json verify disk.img ready
check verify-zero 0 "OK: snapshot 'zero'" "$tool" verify disk.img zero
check verify-damaged 1 "does not decompress" "$tool" verify disk.img broken
check verify-missing 1 "disk.img.nope" "$tool" verify disk.img nope
check verify-bad-name 1 "Invalid snapshot name" "$tool" verify disk.img ../x

touch -d @1700000000.000000006 disk.img
check verify-base-changed 1 "cp -p" "$tool" verify disk.img ready
check verify-base-json 1 '"code":"BASE_CHANGED"' "$tool" --json verify disk.img ready
check list-no-load 0 "ready  *no-load" "$tool" list disk.img
touch -d @1700000000.000000005 disk.img
check verify-restored 0 "OK" "$tool" verify disk.img ready

mkdir snaps
mv disk.img.ready snaps/
check snapshot-dir 0 "OK" "$tool" --snapshot-dir=snaps verify disk.img ready
check snapshot-dir-list 0 "ready" "$tool" list --snapshot-dir snaps disk.img

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
