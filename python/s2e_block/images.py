# SPDX-License-Identifier: GPL-2.0-or-later
"""Image files on the host: known content, what must not change about a
base image, and the snapshot file format's fields (docs/snapshot-format.md).
"""

import hashlib
import os
import zlib

MiB = 1024 * 1024


def _data_extents(f, size):
    """(offset, length) of every data extent: holes read as zeroes, so
    hashing the extents and their positions covers the whole content."""
    fd = f.fileno()
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end - start
        pos = end


def file_state(path):
    """What must not change about a base image: content (SHA-256 over its
    data extents, so multi-TiB sparse files are cheap), size, allocated
    blocks, nanosecond mtime and mode."""
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for start, length in _data_extents(f, st.st_size):
            h.update(b"@%d:" % start)
            f.seek(start)
            while length > 0:
                block = f.read(min(length, MiB))
                if not block:
                    break
                h.update(block)
                length -= len(block)
    return {"sha256": h.hexdigest(), "size": st.st_size,
            "blocks": st.st_blocks, "mtime_ns": st.st_mtime_ns,
            "mode": st.st_mode & 0o7777}


def pattern(seed, size):
    """Deterministic bytes, different for every seed."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


def make_image(path, size, seed=1):
    """A raw image with known content (a pattern, so base reads are
    distinguishable from zeroes)."""
    with open(path, "wb") as f:
        chunk = pattern(seed, MiB)
        left = size
        while left > 0:
            n = min(left, MiB)
            f.write(chunk[:n])
            left -= n
    return path


def read_range(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    return data + b"\0" * (length - len(data))


def le(data, off, size):
    return int.from_bytes(data[off:off + size], "little")


def put_le(data, off, size, value):
    data[off:off + size] = value.to_bytes(size, "little")


def downgrade_to_v1(path):
    """Rewrite a version 2 snapshot as version 1 (docs/snapshot-format.md):
    header 176 bytes long, one CRC-32 per data extent and per chunk, no
    block checksum table -- what s2e-block wrote before version 2."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    assert le(data, 8, 4) == 2
    table = le(data, 176, 8)                # the block checksums come last
    names = data[192:192 + le(data, 36, 4) + le(data, 40, 4)]
    data[176:4096] = bytes(4096 - 176)
    data[176:176 + len(names)] = names
    put_le(data, 8, 4, 1)
    put_le(data, 12, 4, 176)
    co, cn = le(data, 136, 8), le(data, 128, 8)
    for i in range(cn):
        e = co + 24 * i
        off, length = le(data, e, 8), le(data, e + 8, 4)
        put_le(data, e + 12, 4, zlib.crc32(data[off:off + length]))
    put_le(data, 124, 4, zlib.crc32(data[co:co + 24 * cn]))
    eo, en = le(data, 152, 8), le(data, 144, 8)
    for i in range(en):
        e = eo + 32 * i
        if le(data, e + 28, 4) == 0:
            off, count = le(data, e + 16, 8), le(data, e + 8, 8)
            put_le(data, e + 24, 4, zlib.crc32(data[off:off + count * 512]))
    put_le(data, 168, 4, zlib.crc32(data[eo:eo + 32 * en]))
    del data[table:]
    put_le(data, 104, 8, len(data))
    put_le(data, 32, 4, 0)
    put_le(data, 32, 4, zlib.crc32(data[:176 + len(names)]))
    with open(path, "wb") as f:
        f.write(data)
