/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the snapshot unit tests; see snapshot-test-util.h.
 */
#include "snapshot-test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *tu_tmpdir(void)
{
    GError *err = NULL;
    char *dir = g_dir_make_tmp("s2e-snap-test-XXXXXX", &err);

    if (!dir) {
        fprintf(stderr, "cannot make a scratch directory: %s\n",
                err->message);
        abort();
    }
    return dir;
}

void tu_rmtree(const char *path)
{
    GDir *dir = g_dir_open(path, 0, NULL);
    const char *name;

    if (dir) {
        while ((name = g_dir_read_name(dir))) {
            char *child = g_build_filename(path, name, NULL);
            struct stat st;

            if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) {
                chmod(child, 0700);
                tu_rmtree(child);
            } else {
                unlink(child);
            }
            g_free(child);
        }
        g_dir_close(dir);
    }
    rmdir(path);
}

void tu_set_mtime(const char *path, int64_t sec, uint32_t nsec)
{
    struct timespec ts[2] = {
        { .tv_sec = sec, .tv_nsec = nsec },
        { .tv_sec = sec, .tv_nsec = nsec },
    };

    CU_ASSERT_EQUAL_FATAL(utimensat(AT_FDCWD, path, ts, 0), 0);
}

char *tu_make_base(const char *dir, const char *name, uint64_t size,
                   int64_t sec, uint32_t nsec)
{
    char *path = g_build_filename(dir, name, NULL);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL_FATAL(ftruncate(fd, (off_t)size), 0);
    close(fd);
    tu_set_mtime(path, sec, nsec);
    return path;
}

S2EBaseIdentity tu_identity(const char *path)
{
    S2EBaseIdentity id;

    CU_ASSERT_EQUAL_FATAL(s2e_base_identity_from_path(path, &id, NULL), 0);
    return id;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

void tu_vmstate_fill(uint8_t *buf, uint64_t pos, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++) {
        uint64_t p = pos + i;
        /* 1 KiB regions alternate between compressible and random. */
        if (mix((p >> 10) ^ seed) & 1) {
            buf[i] = (uint8_t)("s2e snapshot "[p % 13] + (p >> 10));
        } else {
            buf[i] = (uint8_t)mix(p * 0x9e3779b97f4a7c15ull ^ seed);
        }
    }
}

void tu_sectors_fill(uint8_t *buf, uint64_t sector, uint64_t count,
                     uint64_t seed)
{
    for (uint64_t s = 0; s < count; s++) {
        for (unsigned w = 0; w < 512 / 8; w++) {
            s2e_snap_put_le64(buf + s * 512 + w * 8,
                              (sector + s) ^ seed ^ ((uint64_t)w << 56));
        }
    }
}

bool tu_write_snapshot(const char *path, const TuSpec *spec,
                       const S2EBaseIdentity *base)
{
    char *dir = g_path_get_dirname(path);
    GError *err = NULL;
    S2ESnapshotWriter *w = s2e_snapshot_writer_new(dir, base,
                                                   spec->disk_sectors, &err);
    S2ESnapshotInfo info = { .icount = 42, .date_sec = 1700000000,
                             .date_nsec = 123456789,
                             .vm_clock_nsec = 12345678901 };
    uint8_t *buf;
    uint64_t pos = 0;
    int ret = 0;

    g_free(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    if (spec->version) {
        CU_ASSERT_EQUAL(s2e_snapshot_writer_set_version(w, spec->version,
                                                        NULL), 0);
    }
    if (spec->chunk_size) {
        CU_ASSERT_EQUAL(s2e_snapshot_writer_set_chunk_size(w, spec->chunk_size,
                                                           NULL), 0);
    }
    if (spec->zlib_level >= 0) {
        CU_ASSERT_EQUAL(s2e_snapshot_writer_set_zlib_level(w, spec->zlib_level,
                                                           NULL), 0);
    }
    buf = g_malloc(65536);
    while (pos < spec->vm_size && ret == 0) {
        size_t n = MIN(spec->vm_size - pos,
                       1 + (mix(pos ^ spec->seed) % 65536));
        tu_vmstate_fill(buf, pos, n, spec->seed);
        ret = s2e_snapshot_writer_put_vmstate(w, pos, buf, n, &err);
        pos += n;
    }
    g_free(buf);
    for (size_t i = 0; i < spec->nruns && ret == 0; i++) {
        uint8_t *data;

        if (spec->runs[i].zero) {
            ret = s2e_snapshot_writer_add_zero_sectors(w, spec->runs[i].sector,
                                                       spec->runs[i].count,
                                                       &err);
            continue;
        }
        data = g_malloc(spec->runs[i].count * 512);
        tu_sectors_fill(data, spec->runs[i].sector, spec->runs[i].count,
                        spec->seed);
        ret = s2e_snapshot_writer_add_sectors(w, spec->runs[i].sector,
                                              spec->runs[i].count, data, &err);
        g_free(data);
    }
    g_strlcpy(info.name, spec->name ? spec->name : "test", sizeof(info.name));
    g_strlcpy(info.id, "7", sizeof(info.id));
    if (ret == 0) {
        ret = s2e_snapshot_writer_commit(w, path, &info, &err);
    } else {
        s2e_snapshot_writer_abort(w);
    }
    if (ret < 0) {
        fprintf(stderr, "writing %s: %s\n", path, err->message);
        g_error_free(err);
    }
    CU_ASSERT_EQUAL(ret, 0);
    return ret == 0;
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
    char *data = NULL;
    gsize n = 0;

    CU_ASSERT_FATAL(g_file_get_contents(path, &data, &n, NULL));
    *len = n;
    return (uint8_t *)data;
}

void tu_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, data, len) == (ssize_t)len);
    close(fd);
}

void tu_copy_file(const char *from, const char *to)
{
    size_t len;
    uint8_t *data = tu_read_file(from, &len);

    tu_write_file(to, data, len);
    g_free(data);
}

void tu_reseal_header(uint8_t *file)
{
    size_t total = s2e_snap_get_le32(file + HDR_HEADER_LENGTH) +
                   s2e_snap_get_le32(file + HDR_NAME_LEN) +
                   s2e_snap_get_le32(file + HDR_ID_LEN);

    if (total > S2E_SNAP_HEADER_AREA) {
        total = S2E_SNAP_HEADER_AREA;
    }
    s2e_snap_put_le32(file + HDR_CRC, 0);
    s2e_snap_put_le32(file + HDR_CRC, s2e_snap_crc32(0, file, total));
}

void tu_reseal_all(uint8_t *file)
{
    uint64_t co = s2e_snap_get_le64(file + HDR_CHUNK_INDEX_OFFSET);
    uint64_t cn = s2e_snap_get_le64(file + HDR_CHUNK_COUNT);
    uint64_t eo = s2e_snap_get_le64(file + HDR_EXTENT_INDEX_OFFSET);
    uint64_t en = s2e_snap_get_le64(file + HDR_EXTENT_COUNT);

    s2e_snap_put_le32(file + HDR_CHUNK_INDEX_CRC,
                      s2e_snap_crc32(0, file + co, cn * 24));
    s2e_snap_put_le32(file + HDR_EXTENT_INDEX_CRC,
                      s2e_snap_crc32(0, file + eo, en * 32));
    tu_reseal_header(file);
}

void tu_reseal_block(uint8_t *file, uint64_t i, uint64_t data,
                     uint64_t count)
{
    uint64_t table = s2e_snap_get_le64(file + HDR_BLOCK_CSUM_OFFSET);

    s2e_snap_put_le32(file + table + i * 4,
                      s2e_snap_data_csum(file + data, count * 512));
}

int tu_count_prefix(const char *path, const char *prefix)
{
    GDir *dir = g_dir_open(path, 0, NULL);
    const char *name;
    int n = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    while ((name = g_dir_read_name(dir))) {
        n += g_str_has_prefix(name, prefix);
    }
    g_dir_close(dir);
    return n;
}

void tu_check_error(GError *err, int code, ...)
{
    va_list ap;
    const char *s;

    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    if (err->domain != S2E_SNAPSHOT_ERROR || err->code != code) {
        fprintf(stderr, "\nexpected error code %d, got %d: %s\n", code,
                err->code, err->message);
    }
    CU_ASSERT_EQUAL(err->domain, S2E_SNAPSHOT_ERROR);
    CU_ASSERT_EQUAL(err->code, code);
    va_start(ap, code);
    while ((s = va_arg(ap, const char *))) {
        if (!strstr(err->message, s)) {
            fprintf(stderr, "\nmessage lacks '%s': %s\n", s, err->message);
            CU_FAIL("error message incomplete");
        }
    }
    va_end(ap);
    g_error_free(err);
}

void tu_expect_open_error(const char *path, int code)
{
    GError *err = NULL;
    S2ESnapshot *snap = s2e_snapshot_open(path, "img", NULL, &err);

    CU_ASSERT_PTR_NULL(snap);
    s2e_snapshot_close(snap);
    tu_check_error(err, code, path, NULL);
}
