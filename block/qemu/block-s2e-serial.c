/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * -enable-serial-commands for a stock QEMU: the guest saves its snapshot.
 *
 * S2E's QEMU, started with -enable-serial-commands, watches what the guest
 * writes to its serial ports: "?!?MAGIC?!?s NAME " runs `savevm NAME` and
 * exits, "?!?MAGIC?!?k 0 " exits (grammar: serial-commands.c).  S2E's image
 * build takes its `ready` snapshot that way.  A stock QEMU rejects the
 * option, so build/s2e-run takes it off the command line of qemu-system-*
 * and sets S2E_SERIAL_COMMANDS=1; the preloaded plugin does the rest:
 *
 *   constructor       S2E_SERIAL_COMMANDS=1: ask to be told when the
 *                     machine is built; arrange the exit status (below)
 *   machine built     every 16550A UART (QOM type "serial": behind -serial,
 *                     -device isa-serial, pci-serial...) with a chardev gets
 *                     a scanner, and the chr_write of its chardev's class
 *                     is wrapped
 *   guest writes      the wrapper calls the real chr_write with the same
 *                     bytes and returns what it returned; then the bytes the
 *                     backend took go through the port's scanner.  The
 *                     first command (of any port) is latched and a timer
 *                     of the main loop armed; later ones are ignored
 *   main loop         save_snapshot(NAME) as HMP savevm does it, then quit
 *                     as HMP quit does it.  Exit status 0 when the snapshot
 *                     was saved (or for 'k'), 1 with the reason otherwise
 *
 * Without S2E_SERIAL_COMMANDS nothing here runs: no class is touched.
 *
 * Why the class's chr_write: the serial device writes through
 * qemu_chr_fe_write(), which calls it; calls inside the QEMU executable
 * cannot be interposed with LD_PRELOAD.  A class is shared by every chardev
 * of its type (a QMP socket and a socket serial port), so the wrapper
 * passes the writes of other chardevs straight through.  A chardev's
 * writes hold its write lock, which serialises its scanner.
 *
 * Why a main-loop timer, not a bottom half: savevm must run in the main
 * loop with the BQL, outside any block request.  A QEMU_CLOCK_REALTIME
 * timer of the main loop runs only from main_loop_wait(); a bottom half of
 * the main AioContext could also run inside a drain's aio_poll().
 *
 * Why the exit-status handler: quitting cleanly matters (the block layer
 * closes every drive; an s2e drive removes the temporary file a failed
 * save left), but a clean quit makes QEMU 7.2's main() return 0, and 7.2
 * cannot quit cleanly with another status (8.1 added
 * qemu_system_shutdown_request_with_code()).  So an on_exit() handler
 * registered before main() -- hence run after every exit handler QEMU and
 * its libraries register -- flushes stdio and turns status 0 into 1 when
 * the command failed.
 *
 * The state is per process, as the serial ports and the exit status are.
 * Limits: a port on a mux chardev (-serial mon:stdio) shares its stream
 * with the monitor's output; ports whose chardev is changed after start-up
 * (chardev-change) are not followed.
 */

#include "qemu/osdep.h"

#ifdef S2E_QEMU_PLUGIN

#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/module.h"
#include "qemu/notify.h"
#include "qemu/timer.h"
#include "qom/object.h"
#include "chardev/char.h"
#include "migration/snapshot.h"
#include "qapi/qapi-commands-control.h"

#include "block-s2e.h"
#include "s2e-qemu-compat.h"
/* qemu_add_machine_init_done_notifier(); 10.0 renamed sysemu/ system/. */
#if S2E_QEMU_AT_LEAST(10, 0)
#include "system/system.h"
#else
#include "sysemu/sysemu.h"
#endif
#include "serial-commands.h"

/*
 * Only qemu-system-* has these; every other QEMU program loads the plugin
 * too, so they are weak references (NULL there) rather than imports that
 * each QEMU program would have to provide.
 */
#pragma weak qemu_add_machine_init_done_notifier
#pragma weak save_snapshot
#pragma weak qmp_quit
#pragma weak qemu_chr_find

#define S2E_SERIAL_ENV "S2E_SERIAL_COMMANDS"
#define S2E_TYPE_SERIAL "serial"   /* TYPE_SERIAL, hw/char/serial.h */
#define S2E_SERIAL_PORTS_MAX 16
#define S2E_SERIAL_CLASSES_MAX 16

typedef int S2EChrWriteFn(Chardev *chr, const uint8_t *buf, int len);

typedef struct S2ESerialPort {
    Chardev *chr;
    char *label;                 /* the chardev's id, e.g. "serial0" */
    S2ESerialScanner scanner;    /* under chr's write lock */
} S2ESerialPort;

typedef struct S2EWrappedClass {
    ChardevClass *cc;
    S2EChrWriteFn *real_write;
} S2EWrappedClass;

static struct {
    Notifier machine_done;
    /* Filled on the main thread before any class is wrapped. */
    S2ESerialPort ports[S2E_SERIAL_PORTS_MAX];
    int nports;
    S2EWrappedClass classes[S2E_SERIAL_CLASSES_MAX];
    int nclasses;
    QEMUTimer *timer;
    /* The first command, written by the port that latched it. */
    int latched;
    S2ESerialCommand command;
    const char *command_port;
    int exit_status;             /* the main loop's verdict */
} s2e_serial;

/* ---- the main loop: run the command, quit ------------------------------ */

static void s2e_serial_savevm(const char *port, const char *name)
{
    Error *err = NULL;

    info_report("s2e: %s: serial command 's %s': savevm %s, then exit",
                port, name, name);
    if (!save_snapshot(name, true, NULL, false, NULL, &err)) {
        error_reportf_err(err, "s2e: savevm %s failed: ", name);
        s2e_serial.exit_status = EXIT_FAILURE;
        return;
    }
    info_report("s2e: savevm %s done", name);
}

static void s2e_serial_run_command(void *opaque)
{
    const S2ESerialCommand *cmd = &s2e_serial.command;
    const char *port = s2e_serial.command_port;

    switch (cmd->kind) {
    case S2E_SERIAL_SAVEVM:
        s2e_serial_savevm(port, cmd->arg);
        break;
    case S2E_SERIAL_KILL:
        info_report("s2e: %s: serial command 'k': exit", port);
        break;
    default:
        error_report("s2e: %s: invalid serial command '%c': %s", port,
                     cmd->letter, cmd->error);
        s2e_serial.exit_status = EXIT_FAILURE;
        break;
    }
    qmp_quit(NULL);
}

/* on_exit(): runs last, see the top of the file. */
static void s2e_serial_exit_status(int status, void *opaque)
{
    if (status == EXIT_SUCCESS && s2e_serial.exit_status != EXIT_SUCCESS) {
        fflush(NULL);
        _exit(s2e_serial.exit_status);
    }
}

/* ---- the guest's writes ------------------------------------------------ */

static void s2e_serial_latch(S2ESerialPort *port, const S2ESerialCommand *cmd)
{
    if (qatomic_cmpxchg(&s2e_serial.latched, 0, 1) != 0) {
        return;     /* another port's command came first */
    }
    s2e_serial.command = *cmd;
    s2e_serial.command_port = port->label;
    /*
     * timer_mod() takes the timer list's lock: the command is visible to
     * the main loop when the timer fires.
     */
    timer_mod(s2e_serial.timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME));
}

static void s2e_serial_scan_bytes(S2ESerialPort *port, const uint8_t *buf,
                                  size_t len)
{
    S2ESerialCommand cmd;

    while (len > 0 && !qatomic_read(&s2e_serial.latched)) {
        size_t used = s2e_serial_scan(&port->scanner, buf, len, &cmd);

        if (cmd.kind == S2E_SERIAL_UNKNOWN) {
            warn_report("s2e: %s: ignoring unknown serial command '%c'",
                        port->label, cmd.letter);
        } else if (cmd.kind != S2E_SERIAL_NONE) {
            s2e_serial_latch(port, &cmd);
        }
        buf += used;
        len -= used;
    }
}

static S2ESerialPort *s2e_serial_find_port(Chardev *chr)
{
    for (int i = 0; i < s2e_serial.nports; i++) {
        if (s2e_serial.ports[i].chr == chr) {
            return &s2e_serial.ports[i];
        }
    }
    return NULL;
}

/*
 * The chr_write this class had: its own entry, or its nearest wrapped
 * ancestor's (a subclass set up later copies the wrapper from it).
 */
static S2EChrWriteFn *s2e_serial_real_write(Chardev *chr)
{
    ObjectClass *oc = object_get_class(OBJECT(chr));

    for (; oc; oc = object_class_get_parent(oc)) {
        for (int i = 0; i < s2e_serial.nclasses; i++) {
            if (OBJECT_CLASS(s2e_serial.classes[i].cc) == oc) {
                return s2e_serial.classes[i].real_write;
            }
        }
    }
    g_assert_not_reached();
}

static int s2e_serial_chr_write(Chardev *chr, const uint8_t *buf, int len)
{
    S2ESerialPort *port = s2e_serial_find_port(chr);
    int ret = s2e_serial_real_write(chr)(chr, buf, len);
    int saved_errno = errno;

    /*
     * What the port transmitted, as QEMU's chardev log counts it: the
     * bytes the backend took, or all of them when it failed for good (the
     * UART drops them); not those the UART will send again (EAGAIN).
     */
    if (port && ret > 0) {
        s2e_serial_scan_bytes(port, buf, ret);
    } else if (port && ret < 0 && saved_errno != EAGAIN) {
        s2e_serial_scan_bytes(port, buf, len);
    }
    errno = saved_errno;
    return ret;
}

/* ---- set-up -------------------------------------------------------------- */

static void s2e_serial_wrap_class(const S2ESerialPort *port)
{
    ChardevClass *cc = CHARDEV_GET_CLASS(port->chr);
    S2EWrappedClass *w;

    if (cc->chr_write == s2e_serial_chr_write) {
        return;
    }
    if (s2e_serial.nclasses == S2E_SERIAL_CLASSES_MAX) {
        error_report("s2e: too many kinds of serial backends; serial "
                     "commands are not watched on '%s'", port->label);
        return;
    }
    w = &s2e_serial.classes[s2e_serial.nclasses++];
    w->cc = cc;
    w->real_write = cc->chr_write;
    /*
     * Other threads (an iothread's monitor) may be writing right now:
     * publish the ports and this entry before the pointer to them.
     */
    smp_wmb();
    qatomic_set(&cc->chr_write, s2e_serial_chr_write);
}

static void s2e_serial_add_port(Chardev *chr, const char *label)
{
    S2ESerialPort *port;

    if (s2e_serial_find_port(chr)) {
        return;     /* two UARTs on one mux chardev: one stream */
    }
    if (s2e_serial.nports == S2E_SERIAL_PORTS_MAX) {
        error_report("s2e: more than %d serial ports; serial commands are "
                     "not watched on '%s'", S2E_SERIAL_PORTS_MAX, label);
        return;
    }
    port = &s2e_serial.ports[s2e_serial.nports++];
    port->chr = chr;
    port->label = g_strdup(label);
    s2e_serial_scanner_init(&port->scanner);
}

static int s2e_serial_find_uart(Object *obj, void *opaque)
{
    g_autofree char *label = NULL;
    Chardev *chr;

    if (!object_dynamic_cast(obj, S2E_TYPE_SERIAL)) {
        return 0;
    }
    label = object_property_get_str(obj, "chardev", NULL);
    chr = label && *label ? qemu_chr_find(label) : NULL;
    if (chr) {
        s2e_serial_add_port(chr, label);
    }
    return 0;
}

static void s2e_serial_machine_done(Notifier *notifier, void *data)
{
    s2e_serial.timer = timer_new_ms(QEMU_CLOCK_REALTIME,
                                    s2e_serial_run_command, NULL);
    object_child_foreach_recursive(object_get_root(), s2e_serial_find_uart,
                                   NULL);
    if (s2e_serial.nports == 0) {
        warn_report("s2e: -enable-serial-commands: this machine has no "
                    "serial port with a backend; no serial command can "
                    "arrive");
        return;
    }
    for (int i = 0; i < s2e_serial.nports; i++) {
        s2e_serial_wrap_class(&s2e_serial.ports[i]);
    }
}

static void s2e_serial_register_notifier(void)
{
    s2e_serial.machine_done.notify = s2e_serial_machine_done;
    qemu_add_machine_init_done_notifier(&s2e_serial.machine_done);
}

static bool s2e_serial_in_system_emulator(void)
{
    return qemu_add_machine_init_done_notifier && save_snapshot &&
           qmp_quit && qemu_chr_find;
}

void s2e_serial_commands_plugin_init(void)
{
    const char *want = getenv(S2E_SERIAL_ENV);

    if (!want) {
        return;
    }
    if (strcmp(want, "1") != 0) {
        fprintf(stderr, "s2e: %s must be 1, not '%s'\n", S2E_SERIAL_ENV,
                want);
        exit(EXIT_FAILURE);
    }
    if (!s2e_serial_in_system_emulator()) {
        fprintf(stderr, "s2e: serial commands (%s=1, set by s2e-run for "
                "-enable-serial-commands) work only in qemu-system-*\n",
                S2E_SERIAL_ENV);
        exit(EXIT_FAILURE);
    }
    /* QEMU's children (helper scripts) are not asked for it. */
    unsetenv(S2E_SERIAL_ENV);
    on_exit(s2e_serial_exit_status, NULL);
    register_module_init(s2e_serial_register_notifier, MODULE_INIT_QOM);
}

#endif
