#!/bin/sh
# Tests of the s2e-snapshot tool on the committed seed snapshots.
#
#   test-snapshot-tool.sh S2E_SNAPSHOT CORPUS_DIR
#
# The corpus file valid-mixed was taken on a base of 1 MiB with mtime
# 1700000000.000000005; mut-vm-size has a damaged last chunk; mut-version
# is version 2.
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
echo "not a snapshot" > disk.img.notes

check help 0 "Usage: s2e-snapshot" "$tool" --help
check no-command 2 "Usage" "$tool"
check bad-command 2 "unknown command 'frob'" "$tool" frob
check bad-option 2 "unknown option '--frob'" "$tool" --frob list disk.img
check bad-arity 2 "verify IMAGE NAME" "$tool" verify disk.img

check info 0 "Loads on it:     yes" "$tool" info disk.img.ready
check info-nsec 0 "20.000000005" "$tool" info disk.img.ready
check info-json 0 '"loads":true' "$tool" --json info disk.img.ready
check info-invalid 1 "version 2" "$tool" info disk.img.v2
check info-invalid-json 1 '"code":"BAD_VERSION"' "$tool" --json info disk.img.v2
check info-missing 1 "No such file" "$tool" info disk.img.none

check list 0 "ready  *ok" "$tool" list disk.img
check list-invalid 0 "v2  *invalid" "$tool" list disk.img
check list-skips-notes 0 '"snapshots":\[{"name":"broken"' "$tool" --json list disk.img
if "$tool" list disk.img | grep -q notes; then
    fail=$((fail + 1)); echo "FAIL: list shows a file without the magic"
else
    pass=$((pass + 1))
fi

check verify 0 "OK: snapshot 'ready'" "$tool" verify disk.img ready
check verify-json 0 '"ok":true' "$tool" --json verify disk.img ready
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
