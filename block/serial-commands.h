/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * S2E's serial-port commands: the byte-stream scanner (QEMU-free).
 *
 * A guest of S2E asks its QEMU to save a snapshot (or to exit) by writing
 * a magic string to a serial port; serial-commands.c explains the grammar.
 * One scanner per serial port is fed every byte the port transmits, in
 * whatever pieces they come; it reports each complete command.  It never
 * changes the bytes: the caller passes them on as they were.
 *
 * Not thread-safe: the caller serialises the feeds of one scanner (QEMU
 * does: a chardev's writes hold its write lock).
 */
#ifndef S2E_SERIAL_COMMANDS_H
#define S2E_SERIAL_COMMANDS_H

#include <stddef.h>
#include <stdint.h>

#define S2E_SERIAL_MAGIC "?!?MAGIC?!?"
/* S2E's QEMU keeps the argument in a 20-byte buffer with its NUL. */
#define S2E_SERIAL_ARG_MAX 19
#define S2E_SERIAL_ERROR_MAX 256

typedef enum S2ESerialCommandKind {
    S2E_SERIAL_NONE,     /* no command completed in the bytes fed */
    S2E_SERIAL_SAVEVM,   /* 's NAME ': savevm NAME, then exit */
    S2E_SERIAL_KILL,     /* 'k ARG ': exit */
    S2E_SERIAL_UNKNOWN,  /* another letter: S2E ignores it, so do we */
    S2E_SERIAL_INVALID,  /* 's' or 'k' with an unusable argument */
} S2ESerialCommandKind;

typedef struct S2ESerialCommand {
    S2ESerialCommandKind kind;
    char letter;                          /* the command byte */
    char arg[S2E_SERIAL_ARG_MAX + 1];     /* its bytes, then a NUL */
    size_t arg_len;                       /* may hold NUL bytes itself */
    char error[S2E_SERIAL_ERROR_MAX];     /* INVALID: what is wrong */
} S2ESerialCommand;

typedef enum S2ESerialScanState {
    S2E_SCAN_MAGIC,      /* looking for the magic string */
    S2E_SCAN_LETTER,     /* the next byte is the command */
    S2E_SCAN_SEPARATOR,  /* the next byte is skipped */
    S2E_SCAN_ARG,        /* reading the argument up to a space */
} S2ESerialScanState;

typedef struct S2ESerialScanner {
    S2ESerialScanState state;
    size_t matched;                       /* magic bytes matched so far */
    char letter;
    size_t arg_len;
    char arg[S2E_SERIAL_ARG_MAX + 1];
} S2ESerialScanner;

void s2e_serial_scanner_init(S2ESerialScanner *sc);

/*
 * Scan @len bytes of @buf.  Stops after the byte that completes a command
 * and returns how many bytes it consumed, with the command in @cmd; feed
 * the rest to find further commands.  Returns @len with @cmd->kind
 * S2E_SERIAL_NONE when no command completed (a partial one is kept for
 * the next call).
 */
size_t s2e_serial_scan(S2ESerialScanner *sc, const uint8_t *buf, size_t len,
                       S2ESerialCommand *cmd);

#endif
