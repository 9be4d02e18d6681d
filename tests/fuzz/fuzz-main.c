/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Replay driver for fuzz targets built without libFuzzer: runs
 * LLVMFuzzerTestOneInput() on every file named on the command line and on
 * every file of every directory named, so a gcc build checks the seed
 * corpus (and any crash reproducer) as an ordinary test.
 */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    gchar *data;
    gsize len;
    GError *err = NULL;

    if (!g_file_get_contents(path, &data, &len, &err)) {
        fprintf(stderr, "%s\n", err->message);
        g_error_free(err);
        return -1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    g_free(data);
    return 0;
}

static int replay(const char *path, unsigned *count)
{
    GDir *dir;
    const char *name;
    int ret = 0;

    if (!g_file_test(path, G_FILE_TEST_IS_DIR)) {
        ret = replay_file(path);
        *count += ret == 0;
        return ret;
    }
    dir = g_dir_open(path, 0, NULL);
    if (!dir) {
        fprintf(stderr, "cannot read directory %s\n", path);
        return -1;
    }
    while ((name = g_dir_read_name(dir))) {
        char *child = g_build_filename(path, name, NULL);
        ret |= replay(child, count);
        g_free(child);
    }
    g_dir_close(dir);
    return ret;
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    int ret = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        ret |= replay(argv[i], &count);
    }
    printf("replayed %u inputs\n", count);
    if (count == 0) {
        fprintf(stderr, "no input found\n");
        return 1;
    }
    return ret ? 1 : 0;
}
