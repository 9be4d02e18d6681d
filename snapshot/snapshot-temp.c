/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The writer's temporary files: names that identify their creator, and the
 * removal of those whose creator died without cleaning up.
 *
 * A writer streams the snapshot into a hidden temporary file and renames
 * it into place at commit; abort and every failure remove it.  Only a
 * process that dies inside savevm (SIGKILL, OOM killer, power loss) leaves
 * it behind.  So each name says who made it:
 *
 *   .s2e-snapshot.HOST.PIDNS.PID.RANDOM
 *
 *   HOST    gethostname(): as is when it is 1..64 bytes of [A-Za-z0-9._-];
 *           else "=" and its bytes in lowercase hex; "=" alone when it
 *           cannot be told (such files are never removed)
 *   PIDNS   inode number of the creator's PID namespace
 *           (/proc/self/ns/pid), in decimal; 0 when unknown (never removed)
 *   PID     the creator's pid, in decimal
 *   RANDOM  6 characters of [A-Za-z0-9] (O_EXCL retries on a clash)
 *
 * At most 182 bytes (S2E_SNAP_TEMP_NAME_MAX), well inside NAME_MAX (255).
 * HOST may contain dots, so names are split from the right.
 *
 * Every new writer removes, in its directory, the temporary files whose
 * HOST and PIDNS are its own and whose PID no longer exists: kill(pid, 0)
 * fails with ESRCH.  A pid that exists (whoever has it now; EPERM counts
 * as existing) keeps its file.  Files of other hosts are never touched:
 * the directory may be shared over NFS and their creator may be alive.
 * PIDNS keeps apart containers that share a host name and a directory but
 * not a PID namespace (a pid of one is not visible from the other, so it
 * would look dead).  An entry is removed only when fstatat() without
 * following symbolic links says it is a regular file, and unlinkat()
 * removes the name itself, never what a link points to.
 *
 * Host names are not guaranteed unique: two machines with the same host
 * name, sharing the directory, could remove each other's live temporary
 * file.  The victim's commit then fails cleanly (its rename finds no file);
 * no snapshot is lost or torn.
 */
#include "snapshot-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOST_RAW_MAX 64          /* HOST_NAME_MAX on Linux */
#define RANDOM_LEN 6
#define PID_DIGITS_MAX 10
#define PIDNS_DIGITS_MAX 20
#define UNKNOWN_HOST "="

G_STATIC_ASSERT(sizeof(S2E_SNAP_TEMP_PREFIX) - 1 + 1 + 2 * HOST_RAW_MAX +
                3 + PIDNS_DIGITS_MAX + PID_DIGITS_MAX + RANDOM_LEN ==
                S2E_SNAP_TEMP_NAME_MAX);
G_STATIC_ASSERT(S2E_SNAP_TEMP_NAME_MAX <= 255);

typedef struct Creator {
    char host[1 + 2 * HOST_RAW_MAX + 1];
    uint64_t pidns;
} Creator;

static bool host_char_plain(char c)
{
    return g_ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
}

/* The HOST field for this machine. */
static void creator_host(char *out)
{
    char buf[256];
    size_t len;
    bool plain = true;

    strcpy(out, UNKNOWN_HOST);
    if (gethostname(buf, sizeof(buf)) < 0) {
        return;
    }
    buf[sizeof(buf) - 1] = '\0';
    len = strlen(buf);
    if (len == 0 || len > HOST_RAW_MAX) {
        return;
    }
    for (size_t i = 0; i < len; i++) {
        plain = plain && host_char_plain(buf[i]);
    }
    if (plain) {
        memcpy(out, buf, len + 1);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        static const char hex[] = "0123456789abcdef";
        out[1 + 2 * i] = hex[(uint8_t)buf[i] >> 4];
        out[2 + 2 * i] = hex[(uint8_t)buf[i] & 15];
    }
    out[1 + 2 * len] = '\0';
}

static void creator_self(Creator *c)
{
    struct stat st;

    creator_host(c->host);
    c->pidns = stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static char *temp_name(const Creator *c, pid_t pid)
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "abcdefghijklmnopqrstuvwxyz0123456789";
    char suffix[RANDOM_LEN + 1];

    for (int i = 0; i < RANDOM_LEN; i++) {
        suffix[i] = chars[g_random_int_range(0, sizeof(chars) - 1)];
    }
    suffix[RANDOM_LEN] = '\0';
    return g_strdup_printf(S2E_SNAP_TEMP_PREFIX "%s.%" G_GUINT64_FORMAT
                           ".%ld.%s", c->host, c->pidns, (long)pid, suffix);
}

char *s2e_snap_temp_name_for_pid(pid_t pid)
{
    Creator c;

    creator_self(&c);
    return temp_name(&c, pid);
}

char *s2e_snap_temp_name_new(void)
{
    return s2e_snap_temp_name_for_pid(getpid());
}

/*
 * The number in [p, end): 1..@max_digits decimal digits, positive, at
 * most @limit.
 */
static bool parse_number(const char *p, const char *end, size_t max_digits,
                         uint64_t limit, uint64_t *out)
{
    uint64_t v = 0;

    if (end <= p || (size_t)(end - p) > max_digits) {
        return false;
    }
    for (; p < end; p++) {
        if (!g_ascii_isdigit(*p) || v > (limit - (uint64_t)(*p - '0')) / 10) {
            return false;
        }
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return v > 0;
}

bool s2e_snap_temp_name_parse(const char *name, char **host, uint64_t *pidns,
                              pid_t *pid)
{
    const char *start, *end, *dot_rand, *dot_pid, *dot_ns;
    uint64_t ns, p;

    if (!g_str_has_prefix(name, S2E_SNAP_TEMP_PREFIX) ||
        strlen(name) > S2E_SNAP_TEMP_NAME_MAX) {
        return false;
    }
    start = name + strlen(S2E_SNAP_TEMP_PREFIX);
    end = start + strlen(start);
    dot_rand = g_strrstr_len(start, end - start, ".");
    if (!dot_rand || end - dot_rand - 1 != RANDOM_LEN) {
        return false;
    }
    for (const char *q = dot_rand + 1; q < end; q++) {
        if (!g_ascii_isalnum(*q)) {
            return false;
        }
    }
    dot_pid = g_strrstr_len(start, dot_rand - start, ".");
    if (!dot_pid || !parse_number(dot_pid + 1, dot_rand, PID_DIGITS_MAX,
                                  G_MAXINT, &p)) {
        return false;
    }
    dot_ns = g_strrstr_len(start, dot_pid - start, ".");
    if (!dot_ns || dot_ns == start ||
        !parse_number(dot_ns + 1, dot_pid, PIDNS_DIGITS_MAX, UINT64_MAX,
                      &ns)) {
        return false;
    }
    *host = g_strndup(start, dot_ns - start);
    *pidns = ns;
    *pid = (pid_t)p;
    return true;
}

bool s2e_snap_is_temp_name(const char *name)
{
    return g_str_has_prefix(name, S2E_SNAP_TEMP_PREFIX) ||
           g_str_has_prefix(name, S2E_SNAP_TEMP_PREFIX_OLD);
}

/* Whether the temporary file @name was left by a dead process of @self. */
static bool is_stale(const Creator *self, const char *name)
{
    char *host = NULL;
    uint64_t pidns;
    pid_t pid;
    bool mine;

    if (!s2e_snap_temp_name_parse(name, &host, &pidns, &pid)) {
        return false;
    }
    mine = strcmp(host, self->host) == 0 && pidns == self->pidns;
    g_free(host);
    /* pid > 0 (parsed): kill() never addresses a process group here. */
    return mine && pid != getpid() && kill(pid, 0) == -1 && errno == ESRCH;
}

int s2e_snap_remove_stale_temps(int dir_fd)
{
    Creator self;
    struct dirent *de;
    int removed = 0;
    int fd;
    DIR *d;

    creator_self(&self);
    if (strcmp(self.host, UNKNOWN_HOST) == 0 || self.pidns == 0) {
        return 0;       /* cannot tell our own files from others' */
    }
    fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    while ((de = readdir(d))) {
        struct stat st;

        if (is_stale(&self, de->d_name) &&
            fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && unlinkat(dir_fd, de->d_name, 0) == 0) {
            removed++;
        }
    }
    closedir(d);
    return removed;
}
