# Deterministic pseudo-random file content, shared by the host (building the
# base image) and the guest agent (`write`, `writeat`).  Run with LC_ALL=C:
#
#   busybox awk -v size=BYTES -v seed=N -f gen.awk > FILE
#
# python/s2e_block/guest.py (gen_content) reimplements it byte for byte, so
# the host can compute the expected SHA-256 of any file without asking the
# guest.  Change one, change the other (the self-test compares them).
#
# Layout: a 4096-byte pool of bytes 1..255 (awk strings are C strings, so no
# NUL) drawn from a Park-Miller generator (x = x * 16807 mod 2^31-1, exact in
# doubles); then each 512-byte sector n of the output is the header
# "s2e seed=S sector=n\n" followed by pool bytes from a pseudo-random offset.
# Every sector of every (seed, offset) is therefore distinct: a sector
# returned from the wrong place is caught by a checksum.  The last sector is
# cut to make exactly SIZE bytes.

function rnd() {
    x = (x * 16807) % 2147483647
    return x
}

BEGIN {
    size = size + 0
    seed = seed + 0
    x = seed % 2147483646 + 1
    pool = ""
    for (i = 0; i < 4096; i++) {
        pool = pool sprintf("%c", 1 + int(rnd() / 256) % 255)
    }
    n = 0
    left = size
    while (left > 0) {
        hdr = sprintf("s2e seed=%d sector=%d\n", seed, n)
        off = rnd() % 3585
        sec = hdr substr(pool, 1 + off, 512 - length(hdr))
        if (left < 512) {
            sec = substr(sec, 1, left)
        }
        printf "%s", sec
        left -= 512
        n++
    }
    exit 0
}
