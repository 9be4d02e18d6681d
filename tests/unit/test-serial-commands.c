/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the serial-command scanner (block/serial-commands.c).
 *
 * - grammar: S2E's strings ("s ready ", "k 0 "), any separator byte, an
 *            empty argument, unknown letters skipped, lookalikes ignored,
 *            magic strings that start inside a false start (which S2E's
 *            own matcher misses), commands surrounded by other output,
 *            several commands in one buffer, a command without its space.
 * - splits:  one surrounded command fed in two and three pieces at every
 *            split point, and byte by byte: always the same one command,
 *            completed by the same byte; two scanners fed halves of a
 *            command each find nothing.
 * - names:   19 bytes accepted, 20 refused (for 's' and 'k'; an unknown
 *            letter is skipped), empty, '/', "." and "..", control
 *            characters (newline, NUL, DEL) refused with the reason;
 *            UTF-8 and "..." accepted.
 * - model:   random streams of noise, whole and partial magic strings,
 *            letters, spaces and names, fed in random pieces, compared
 *            with a reference that parses the whole stream at once with
 *            memmem().  The seed is printed (S2E_TEST_SEED replays it).
 */
#include "runner.h"
#include "../../block/serial-commands.h"

#include <glib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC S2E_SERIAL_MAGIC
#define MAGIC_LEN (sizeof(MAGIC) - 1)

/* What one scan found: the command and the stream offset just after it. */
typedef struct Found {
    S2ESerialCommandKind kind;
    char letter;
    char arg[S2E_SERIAL_ARG_MAX + 1];
    size_t arg_len;
    size_t end;
} Found;

typedef struct FoundList {
    Found items[64];
    size_t n;
} FoundList;

static void found_add(FoundList *l, const S2ESerialCommand *cmd, size_t end)
{
    Found *f;

    CU_ASSERT_FATAL(l->n < G_N_ELEMENTS(l->items));
    f = &l->items[l->n++];
    memset(f, 0, sizeof(*f));
    f->kind = cmd->kind;
    f->letter = cmd->letter;
    f->arg_len = cmd->arg_len;
    memcpy(f->arg, cmd->arg, cmd->arg_len);
    f->end = end;
}

/* Feed @len bytes at stream offset *@pos, collecting every command. */
static void feed(S2ESerialScanner *sc, const uint8_t *buf, size_t len,
                 size_t *pos, FoundList *out)
{
    S2ESerialCommand cmd;

    while (len > 0) {
        size_t used = s2e_serial_scan(sc, buf, len, &cmd);

        CU_ASSERT_FATAL(used >= 1 && used <= len);
        *pos += used;
        if (cmd.kind != S2E_SERIAL_NONE) {
            found_add(out, &cmd, *pos);
        } else {
            CU_ASSERT_EQUAL(used, len);
        }
        buf += used;
        len -= used;
    }
}

static FoundList scan_whole(const void *buf, size_t len)
{
    S2ESerialScanner sc;
    FoundList out = { .n = 0 };
    size_t pos = 0;

    s2e_serial_scanner_init(&sc);
    feed(&sc, buf, len, &pos, &out);
    return out;
}

static FoundList scan_str(const char *s)
{
    return scan_whole(s, strlen(s));
}

/* @s holds exactly one command of @kind with argument @arg, ending at
 * @end (0: at the end of @s). */
static const Found *expect_one(const char *s, S2ESerialCommandKind kind,
                               char letter, const char *arg, size_t end)
{
    static FoundList l;

    l = scan_str(s);
    CU_ASSERT_EQUAL_FATAL(l.n, 1);
    CU_ASSERT_EQUAL(l.items[0].kind, kind);
    CU_ASSERT_EQUAL(l.items[0].letter, letter);
    if (arg) {
        CU_ASSERT_STRING_EQUAL(l.items[0].arg, arg);
    }
    CU_ASSERT_EQUAL(l.items[0].end, end ? end : strlen(s));
    return &l.items[0];
}

static void expect_none(const char *s)
{
    CU_ASSERT_EQUAL(scan_str(s).n, 0);
}

/* ---- grammar ------------------------------------------------------------ */

static void test_s2e_strings(void)
{
    expect_one(MAGIC "s ready ", S2E_SERIAL_SAVEVM, 's', "ready", 0);
    expect_one(MAGIC "k 0 ", S2E_SERIAL_KILL, 'k', "0", 0);
    /* S2E reads the argument up to a space: it may be empty. */
    expect_one(MAGIC "k  ", S2E_SERIAL_KILL, 'k', "", 0);
    /* The byte after the letter is skipped, whatever it is. */
    expect_one(MAGIC "s\tready ", S2E_SERIAL_SAVEVM, 's', "ready", 0);
    expect_one(MAGIC "sXready ", S2E_SERIAL_SAVEVM, 's', "ready", 0);
}

static void test_unknown_letters(void)
{
    FoundList l = scan_str(MAGIC "x foo " MAGIC "S ready " MAGIC "s ok ");

    CU_ASSERT_EQUAL_FATAL(l.n, 3);
    CU_ASSERT_EQUAL(l.items[0].kind, S2E_SERIAL_UNKNOWN);
    CU_ASSERT_EQUAL(l.items[0].letter, 'x');
    CU_ASSERT_EQUAL(l.items[1].kind, S2E_SERIAL_UNKNOWN);
    CU_ASSERT_EQUAL(l.items[1].letter, 'S');
    CU_ASSERT_EQUAL(l.items[2].kind, S2E_SERIAL_SAVEVM);
    CU_ASSERT_STRING_EQUAL(l.items[2].arg, "ok");
}

static void test_lookalikes(void)
{
    expect_none("");
    expect_none("s ready ");
    expect_none("?!?magic?!?s ready ");
    expect_none("?!?MAGIC!?!s ready ");
    expect_none("?!?MAGIC ?!?s ready ");
    expect_none("?!?MAGI\nC?!?s ready ");
    /* Without the space the command is not complete yet. */
    expect_none(MAGIC "s ready");
    expect_none(MAGIC "s ready\n");
    expect_none(MAGIC "s");
    expect_none(MAGIC);
}

static void test_false_starts(void)
{
    /* S2E's matcher does not look at the mismatching byte again and
     * misses these; every one holds the magic string. */
    expect_one("?" MAGIC "s a ", S2E_SERIAL_SAVEVM, 's', "a", 0);
    expect_one("?\?!?" MAGIC "s a ", S2E_SERIAL_SAVEVM, 's', "a", 0);
    expect_one("?!?MAGI" MAGIC "s a ", S2E_SERIAL_SAVEVM, 's', "a", 0);
    expect_one("?!?M?!?" MAGIC "s a ", S2E_SERIAL_SAVEVM, 's', "a", 0);
    expect_one("?!?MAGIC?" MAGIC "s a ", S2E_SERIAL_SAVEVM, 's', "a", 0);
    /* The magic's tail "?!?" is its head: after a whole magic string the
     * next byte is the command, not a new start. */
    expect_one(MAGIC "MAGIC?!?s a ", S2E_SERIAL_UNKNOWN, 'M', "GIC?!?s",
               MAGIC_LEN + 10);
}

static void test_surrounded(void)
{
    const char *s = "Booting...\r\n\x1b[0m$ echo ready\r\n"
                    "x" MAGIC "s ready and more output\r\n";
    const Found *f;

    f = expect_one(s, S2E_SERIAL_SAVEVM, 's', "ready",
                   strstr(s, "ready and") - s + strlen("ready "));
    CU_ASSERT_EQUAL(f->arg_len, 5);
}

static void test_several_in_one_buffer(void)
{
    const char *s = "a" MAGIC "s one b" MAGIC "k 0 c" MAGIC "s two ";
    FoundList l = scan_str(s);

    CU_ASSERT_EQUAL_FATAL(l.n, 3);
    CU_ASSERT_EQUAL(l.items[0].kind, S2E_SERIAL_SAVEVM);
    CU_ASSERT_STRING_EQUAL(l.items[0].arg, "one");
    CU_ASSERT_EQUAL(l.items[0].end, strstr(s, "one ") - s + 4);
    CU_ASSERT_EQUAL(l.items[1].kind, S2E_SERIAL_KILL);
    CU_ASSERT_EQUAL(l.items[2].kind, S2E_SERIAL_SAVEVM);
    CU_ASSERT_STRING_EQUAL(l.items[2].arg, "two");
    CU_ASSERT_EQUAL(l.items[2].end, strlen(s));
}

/* ---- splits ------------------------------------------------------------- */

static const char SPLIT_STREAM[] =
    "kernel: ready\r\n?!?MAG?" MAGIC "s snap-19-chars-long tail\r\n";

static void check_split_result(const FoundList *l)
{
    CU_ASSERT_EQUAL_FATAL(l->n, 1);
    CU_ASSERT_EQUAL(l->items[0].kind, S2E_SERIAL_SAVEVM);
    CU_ASSERT_STRING_EQUAL(l->items[0].arg, "snap-19-chars-long");
    CU_ASSERT_EQUAL(l->items[0].end,
                    strstr(SPLIT_STREAM, "long ") - SPLIT_STREAM + 5);
}

static FoundList scan_pieces(const char *s, const size_t *cuts, size_t ncuts)
{
    S2ESerialScanner sc;
    FoundList out = { .n = 0 };
    size_t pos = 0, start = 0, len = strlen(s);

    s2e_serial_scanner_init(&sc);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t stop = i < ncuts ? cuts[i] : len;

        if (stop > start) {
            feed(&sc, (const uint8_t *)s + start, stop - start, &pos, &out);
        }
        start = stop;
    }
    return out;
}

static void test_every_split(void)
{
    size_t len = strlen(SPLIT_STREAM);
    FoundList l;

    for (size_t a = 0; a <= len; a++) {
        l = scan_pieces(SPLIT_STREAM, &a, 1);
        check_split_result(&l);
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = { a, b };

            l = scan_pieces(SPLIT_STREAM, cuts, 2);
            check_split_result(&l);
        }
    }
}

static void test_byte_by_byte(void)
{
    size_t len = strlen(SPLIT_STREAM);
    size_t cuts[sizeof(SPLIT_STREAM)];
    FoundList l;

    for (size_t i = 0; i < len; i++) {
        cuts[i] = i + 1;
    }
    l = scan_pieces(SPLIT_STREAM, cuts, len);
    check_split_result(&l);
}

static void test_scanners_are_separate(void)
{
    S2ESerialScanner port0, port1;
    FoundList out = { .n = 0 };
    size_t pos0 = 0, pos1 = 0;

    s2e_serial_scanner_init(&port0);
    s2e_serial_scanner_init(&port1);
    feed(&port0, (const uint8_t *)"?!?MAG", 6, &pos0, &out);
    feed(&port1, (const uint8_t *)"IC?!?s x ", 9, &pos1, &out);
    feed(&port0, (const uint8_t *)"X", 1, &pos0, &out);
    feed(&port1, (const uint8_t *)MAGIC, MAGIC_LEN, &pos1, &out);
    feed(&port0, (const uint8_t *)"s y ", 4, &pos0, &out);
    CU_ASSERT_EQUAL(out.n, 0);
    feed(&port1, (const uint8_t *)"s z ", 4, &pos1, &out);
    CU_ASSERT_EQUAL_FATAL(out.n, 1);
    CU_ASSERT_STRING_EQUAL(out.items[0].arg, "z");
}

/* ---- names -------------------------------------------------------------- */

static const Found *expect_invalid(const char *s, size_t len, char letter,
                                   const char *reason)
{
    static FoundList l;
    S2ESerialScanner sc;
    S2ESerialCommand cmd;

    s2e_serial_scanner_init(&sc);
    l.n = 0;
    CU_ASSERT_EQUAL(s2e_serial_scan(&sc, (const uint8_t *)s, len, &cmd), len);
    found_add(&l, &cmd, len);
    CU_ASSERT_EQUAL(cmd.kind, S2E_SERIAL_INVALID);
    CU_ASSERT_EQUAL(cmd.letter, letter);
    if (!strstr(cmd.error, reason)) {
        fprintf(stderr, "\nerror '%s' does not say '%s'\n", cmd.error, reason);
        CU_FAIL("the error gives the reason");
    }
    return &l.items[0];
}

static void test_name_limit(void)
{
    const Found *f;

    f = expect_one(MAGIC "s abcdefghij012345678 ", S2E_SERIAL_SAVEVM, 's',
                   "abcdefghij012345678", 0);
    CU_ASSERT_EQUAL(f->arg_len, S2E_SERIAL_ARG_MAX);
    /* The 20th byte ends it: known at once, whatever follows. */
    expect_invalid(MAGIC "s abcdefghij0123456789",
                   MAGIC_LEN + 2 + 20, 's', "longer than 19 bytes");
    expect_invalid(MAGIC "k abcdefghij0123456789",
                   MAGIC_LEN + 2 + 20, 'k', "longer than 19 bytes");
    expect_one(MAGIC "x abcdefghij0123456789", S2E_SERIAL_UNKNOWN, 'x',
               "abcdefghij012345678", 0);
}

static void test_bad_names(void)
{
    expect_invalid(MAGIC "s  ", MAGIC_LEN + 3, 's', "empty");
    expect_invalid(MAGIC "s a/b ", MAGIC_LEN + 6, 's', "'/'");
    expect_invalid(MAGIC "s / ", MAGIC_LEN + 4, 's', "'/'");
    expect_invalid(MAGIC "s . ", MAGIC_LEN + 4, 's', "'.'");
    expect_invalid(MAGIC "s .. ", MAGIC_LEN + 5, 's', "'..'");
}

static void test_control_characters(void)
{
    const char nul[] = MAGIC "s re\0dy ";
    const Found *f;

    /* `echo '?!?MAGIC?!?s ready'` without the trailing space. */
    expect_invalid(MAGIC "s ready\nlogin: ", MAGIC_LEN + 15, 's', "0x0a");
    expect_invalid(MAGIC "s ready\r\n$ ", MAGIC_LEN + 11, 's', "0x0d");
    expect_invalid(MAGIC "s a\x7f ", MAGIC_LEN + 5, 's', "0x7f");
    f = expect_invalid(nul, sizeof(nul) - 1, 's', "0x00");
    CU_ASSERT_EQUAL(f->arg_len, 5);
    CU_ASSERT_EQUAL(memcmp(f->arg, "re\0dy", 5), 0);
    /* 'k' ignores its argument. */
    expect_one(MAGIC "k \t ", S2E_SERIAL_KILL, 'k', "\t", 0);
}

static void test_accepted_names(void)
{
    expect_one(MAGIC "s h\xc3\xa9llo ", S2E_SERIAL_SAVEVM, 's', "h\xc3\xa9llo",
               0);
    expect_one(MAGIC "s ... ", S2E_SERIAL_SAVEVM, 's', "...", 0);
    expect_one(MAGIC "s .ready ", S2E_SERIAL_SAVEVM, 's', ".ready", 0);
    expect_one(MAGIC "s r-1_2.x ", S2E_SERIAL_SAVEVM, 's', "r-1_2.x", 0);
}

/* ---- model -------------------------------------------------------------- */

static bool ref_bad_name(const uint8_t *arg, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (arg[i] < 0x20 || arg[i] == 0x7f || arg[i] == '/') {
            return true;
        }
    }
    return len == 0 || (len == 1 && arg[0] == '.') ||
           (len == 2 && arg[0] == '.' && arg[1] == '.');
}

static S2ESerialCommandKind ref_kind(char letter, const uint8_t *arg,
                                     size_t len, bool overlong)
{
    if (letter != 's' && letter != 'k') {
        return S2E_SERIAL_UNKNOWN;
    }
    if (overlong) {
        return S2E_SERIAL_INVALID;
    }
    if (letter == 'k') {
        return S2E_SERIAL_KILL;
    }
    return ref_bad_name(arg, len) ? S2E_SERIAL_INVALID : S2E_SERIAL_SAVEVM;
}

/* The grammar applied to the whole stream at once. */
static FoundList reference_parse(const uint8_t *s, size_t len)
{
    FoundList out = { .n = 0 };
    size_t pos = 0;

    while (out.n < G_N_ELEMENTS(out.items)) {
        const uint8_t *m = memmem(s + pos, len - pos, MAGIC, MAGIC_LEN);
        size_t p, j;
        Found *f;

        if (!m) {
            break;
        }
        p = m - s + MAGIC_LEN;
        if (p + 2 > len) {
            break;
        }
        j = p + 2;
        while (j < len && s[j] != ' ' && j - (p + 2) < S2E_SERIAL_ARG_MAX) {
            j++;
        }
        if (j == len) {
            break;
        }
        f = &out.items[out.n++];
        memset(f, 0, sizeof(*f));
        f->letter = (char)s[p];
        f->arg_len = j - (p + 2);
        memcpy(f->arg, s + p + 2, f->arg_len);
        f->kind = ref_kind(f->letter, s + p + 2, f->arg_len, s[j] != ' ');
        f->end = j + 1;
        pos = j + 1;
    }
    return out;
}

static void append(GByteArray *a, const char *s)
{
    g_byte_array_append(a, (const uint8_t *)s, strlen(s));
}

/* Streams rich in commands, near misses and name edge cases. */
static void random_stream(S2ETestRng *rng, GByteArray *a)
{
    static const char *const pieces[] = {
        MAGIC, MAGIC, MAGIC, "?!?", "?!?MAG", "?!?MAGIC?!", "?", "s", "k",
        "x", " ", " ", "  ", "ready", "a/b", ".", "..", "\n", "\r\n",
        "abcdefghij012345678", "abcdefghij0123456789", "\x7f", "\xc3\xa9",
        "login: ", "?!?magic?!?",
    };
    size_t n = 1 + s2e_test_rng_below(rng, 40);

    for (size_t i = 0; i < n; i++) {
        if (s2e_test_rng_below(rng, 8) == 0) {
            uint8_t b = (uint8_t)s2e_test_rng_below(rng, 256);
            g_byte_array_append(a, &b, 1);
        } else {
            append(a, pieces[s2e_test_rng_below(rng, G_N_ELEMENTS(pieces))]);
        }
    }
}

static void compare_found(const FoundList *got, const FoundList *want)
{
    CU_ASSERT_EQUAL_FATAL(got->n, want->n);
    for (size_t i = 0; i < got->n; i++) {
        const Found *g = &got->items[i], *w = &want->items[i];

        CU_ASSERT_EQUAL_FATAL(g->kind, w->kind);
        CU_ASSERT_EQUAL_FATAL(g->letter, w->letter);
        CU_ASSERT_EQUAL_FATAL(g->arg_len, w->arg_len);
        CU_ASSERT_EQUAL_FATAL(memcmp(g->arg, w->arg, g->arg_len), 0);
        CU_ASSERT_EQUAL_FATAL(g->end, w->end);
    }
}

static void test_model(void)
{
    uint64_t rounds = s2e_test_scale(100000);
    uint64_t commands = 0;
    S2ETestRng rng;

    s2e_test_rng_init(&rng, s2e_test_seed());
    for (uint64_t r = 0; r < rounds; r++) {
        GByteArray *a = g_byte_array_new();
        FoundList want, got = { .n = 0 };
        S2ESerialScanner sc;
        size_t pos = 0, start = 0;

        random_stream(&rng, a);
        want = reference_parse(a->data, a->len);
        s2e_serial_scanner_init(&sc);
        while (start < a->len) {
            size_t piece = 1 + s2e_test_rng_below(&rng, 24);

            piece = MIN(piece, a->len - start);
            feed(&sc, a->data + start, piece, &pos, &got);
            start += piece;
        }
        compare_found(&got, &want);
        commands += want.n;
        g_byte_array_unref(a);
    }
    printf("  %" G_GUINT64_FORMAT " streams, %" G_GUINT64_FORMAT
           " commands found\n", rounds, commands);
    CU_ASSERT(commands > rounds / 2);
}

void s2e_test_register(void)
{
    CU_pSuite s;

    s = s2e_test_suite("grammar");
    s2e_test_add(s, "s2e-strings", test_s2e_strings);
    s2e_test_add(s, "unknown-letters", test_unknown_letters);
    s2e_test_add(s, "lookalikes", test_lookalikes);
    s2e_test_add(s, "false-starts", test_false_starts);
    s2e_test_add(s, "surrounded", test_surrounded);
    s2e_test_add(s, "several-in-one-buffer", test_several_in_one_buffer);

    s = s2e_test_suite("splits");
    s2e_test_add(s, "every-split", test_every_split);
    s2e_test_add(s, "byte-by-byte", test_byte_by_byte);
    s2e_test_add(s, "scanners-are-separate", test_scanners_are_separate);

    s = s2e_test_suite("names");
    s2e_test_add(s, "limit", test_name_limit);
    s2e_test_add(s, "bad", test_bad_names);
    s2e_test_add(s, "control-characters", test_control_characters);
    s2e_test_add(s, "accepted", test_accepted_names);

    s = s2e_test_suite("model");
    s2e_test_add(s, "random", test_model);
}
