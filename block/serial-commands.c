/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * S2E's serial-port commands: the byte-stream scanner (QEMU-free).
 *
 * S2E's image build ends with the guest writing
 *
 *     ?!?MAGIC?!?s ready          (note the space after "ready")
 *
 * to its first serial port; S2E's QEMU, started with -enable-serial-commands,
 * then runs `savevm ready` and exits.  The grammar is the one of S2E's
 * QEMU (hw/char/serial.c, check_magic_commands):
 *
 *     ?!?MAGIC?!?  C  SEP  ARG  ' '
 *
 *     C     one byte: 's' = savevm ARG then exit, 'k' = exit (S2E's
 *           guest tools write "k 0 "); any other byte is ignored
 *     SEP   any one byte, skipped (a space in S2E's guest tools)
 *     ARG   the bytes up to the next space, at most 19 (S2E's buffer has
 *           20 with the NUL); may be empty
 *
 *          +-------+  magic  +--------+  C  +-----------+  any  +-----+
 *     ---->| MAGIC |-------->| LETTER |---->| SEPARATOR |------>| ARG |
 *          +-------+         +--------+     +-----------+       +-----+
 *              ^                                                  |
 *              +------- ' ' (a command) or a 20th byte -----------+
 *
 * Where this scanner differs from S2E's, on purpose:
 *
 * - The magic is found wherever it starts.  S2E's matcher restarts at the
 *   byte after a mismatch without looking at that byte again, so it misses
 *   "??!?MAGIC?!?" and "?!??!?MAGIC?!?"; every command S2E finds, this
 *   scanner finds too.
 * - One scanner per port (S2E shares one state between all ports, so
 *   halves written to two ports could make a command).
 * - A command S2E would drop silently, leaving the image build waiting for
 *   a QEMU that never exits, is reported as INVALID: 's' or 'k' with more
 *   than 19 bytes before the space, and 's' with a name that is empty,
 *   holds a control character (typically the newline of an `echo` whose
 *   trailing space was forgotten) or is no valid snapshot name (a '/',
 *   "." or "..": the name becomes part of the file name IMAGE.NAME).
 */
#include "serial-commands.h"

#include <glib.h>
#include <stdbool.h>
#include <string.h>

#include "s2e-block/snapshot.h"

#define MAGIC_LEN (sizeof(S2E_SERIAL_MAGIC) - 1)

void s2e_serial_scanner_init(S2ESerialScanner *sc)
{
    memset(sc, 0, sizeof(*sc));
    sc->state = S2E_SCAN_MAGIC;
}

/*
 * How much of the magic is matched once @c follows @matched matched
 * bytes: the longest prefix of the magic that ends with @c.  The bytes
 * before @c are the magic's first @matched bytes, so every candidate is
 * checked against the magic itself (at most 11 short comparisons).
 */
static size_t magic_advance(size_t matched, uint8_t c)
{
    const char *magic = S2E_SERIAL_MAGIC;

    for (size_t k = matched + 1; k > 0; k--) {
        if ((uint8_t)magic[k - 1] == c &&
            memcmp(magic, magic + matched - (k - 1), k - 1) == 0) {
            return k;
        }
    }
    return 0;
}

static char *escaped_arg(const S2ESerialScanner *sc)
{
    return g_strescape(sc->arg, NULL);
}

static void set_invalid(S2ESerialCommand *cmd, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static void set_invalid(S2ESerialCommand *cmd, const char *fmt, ...)
{
    va_list ap;

    cmd->kind = S2E_SERIAL_INVALID;
    va_start(ap, fmt);
    g_vsnprintf(cmd->error, sizeof(cmd->error), fmt, ap);
    va_end(ap);
}

static bool is_known_letter(char letter)
{
    return letter == 's' || letter == 'k';
}

/* Counted, not NUL-terminated: a NUL byte is a control character too. */
static const char *first_control_char(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((uint8_t)s[i] < 0x20 || s[i] == 0x7f) {
            return s + i;
        }
    }
    return NULL;
}

static void check_snapshot_name(const S2ESerialScanner *sc,
                                S2ESerialCommand *cmd)
{
    g_autofree char *shown = escaped_arg(sc);
    const char *ctl = first_control_char(sc->arg, sc->arg_len);
    GError *gerr = NULL;

    if (ctl) {
        set_invalid(cmd, "the snapshot name '%s' contains the control "
                    "character 0x%02x; the command must end with a space: "
                    "'" S2E_SERIAL_MAGIC "s NAME '", shown, (uint8_t)*ctl);
    } else if (s2e_snapshot_check_name(sc->arg, &gerr) < 0) {
        set_invalid(cmd, "%s", gerr->message);
        g_error_free(gerr);
    } else {
        cmd->kind = S2E_SERIAL_SAVEVM;
    }
}

/* The space after ARG arrived: what the command is. */
static void finish_command(const S2ESerialScanner *sc, S2ESerialCommand *cmd)
{
    switch (sc->letter) {
    case 's':
        check_snapshot_name(sc, cmd);
        break;
    case 'k':
        cmd->kind = S2E_SERIAL_KILL;
        break;
    default:
        cmd->kind = S2E_SERIAL_UNKNOWN;
        break;
    }
}

/* A 20th byte before the space: S2E drops the command. */
static void overlong_command(const S2ESerialScanner *sc,
                             S2ESerialCommand *cmd)
{
    g_autofree char *shown = NULL;

    if (!is_known_letter(sc->letter)) {
        cmd->kind = S2E_SERIAL_UNKNOWN;
        return;
    }
    shown = escaped_arg(sc);
    set_invalid(cmd, "the %s of command '%c' is longer than %d bytes "
                "(S2E's limit): '%s...'",
                sc->letter == 's' ? "snapshot name" : "argument",
                sc->letter, S2E_SERIAL_ARG_MAX, shown);
}

static void start_command(S2ESerialCommand *cmd, const S2ESerialScanner *sc)
{
    memset(cmd, 0, sizeof(*cmd));
    cmd->letter = sc->letter;
    memcpy(cmd->arg, sc->arg, sizeof(cmd->arg));
    cmd->arg_len = sc->arg_len;
}

/* One byte; true when it completed a command (then in @cmd). */
static bool scan_byte(S2ESerialScanner *sc, uint8_t c, S2ESerialCommand *cmd)
{
    switch (sc->state) {
    case S2E_SCAN_MAGIC:
        sc->matched = magic_advance(sc->matched, c);
        if (sc->matched == MAGIC_LEN) {
            sc->state = S2E_SCAN_LETTER;
        }
        return false;
    case S2E_SCAN_LETTER:
        sc->letter = (char)c;
        sc->state = S2E_SCAN_SEPARATOR;
        return false;
    case S2E_SCAN_SEPARATOR:
        sc->arg_len = 0;
        memset(sc->arg, 0, sizeof(sc->arg));
        sc->state = S2E_SCAN_ARG;
        return false;
    case S2E_SCAN_ARG:
        if (c != ' ' && sc->arg_len < S2E_SERIAL_ARG_MAX) {
            sc->arg[sc->arg_len++] = (char)c;
            return false;
        }
        start_command(cmd, sc);
        if (c == ' ') {
            finish_command(sc, cmd);
        } else {
            overlong_command(sc, cmd);
        }
        s2e_serial_scanner_init(sc);
        return true;
    }
    g_assert_not_reached();
}

size_t s2e_serial_scan(S2ESerialScanner *sc, const uint8_t *buf, size_t len,
                       S2ESerialCommand *cmd)
{
    cmd->kind = S2E_SERIAL_NONE;
    for (size_t i = 0; i < len; i++) {
        if (scan_byte(sc, buf[i], cmd)) {
            return i + 1;
        }
    }
    return len;
}
