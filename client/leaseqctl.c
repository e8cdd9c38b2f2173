/* leaseqctl: the admin and debug CLI of leaseq, a thin shell over libleaseq.
 *
 * Output is made for scripts: one value or one tab-separated record per line, no header lines,
 * and --json for structured output built with jansson. Exit status: 0 success, 1 a failed
 * call ("leaseqctl: CODE: message" on stderr), 2 a usage error, 3 a waited-for job that ended
 * other than done.
 *
 * Every connection says keep_leases_on_close, so `lease` and a later `ack` can be separate
 * processes: the broker lets such leases run out by their lease time instead of requeueing
 * them when the connection closes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"

static const char GLOBAL_HELP[] =
    "usage: leaseqctl [--addr HOST:PORT] [--token T] [--timeout MS] [--json] COMMAND [ARGS]\n"
    "\n"
    "Global options (also accepted after the command):\n"
    "  --addr HOST:PORT   broker address, [V6]:PORT or unix:/path\n"
    "                     (default $LEASEQ_ADDR, else " DEFAULT_ADDR ")\n"
    "  --token T          auth token (default $LEASEQ_TOKEN, else none)\n"
    "  --timeout MS       time limit of each call (default 5000; for wait: how long to wait)\n"
    "  --json             structured output\n"
    "\n"
    "Commands:\n"
    "  enqueue QUEUE [options]   store a job, print its id (--wait: and its outcome)\n"
    "  lease QUEUE... [options]  lease jobs, one line per job\n"
    "  ack ID TOKEN              complete a lease\n"
    "  nack ID TOKEN             give a lease back (retry or dead-letter)\n"
    "  extend ID TOKEN --lease MS   move a lease's expiry\n"
    "  wait ID [--out PATH]      wait until a job ends, print its state\n"
    "  ping                      round trip to the broker\n"
    "  queues                    one line per queue: state and counts\n"
    "  stats [QUEUE]             per lane: counts, expired, oldest ready age, rates\n"
    "  workers                   worker sessions: leases, heartbeat age, ok/stalled/suspect\n"
    "  clear-suspect WORKER      lift a worker id's quarantine\n"
    "  pause QUEUE [--lane L]    stop dispatching (a lane or the whole queue)\n"
    "  resume QUEUE [--lane L]   dispatch again (the whole queue: also ends a drain)\n"
    "  drain QUEUE [--wait]      refuse new enqueues, keep dispatching until empty\n"
    "  purge QUEUE [--lane L] [--older-than DURATION]   delete queued jobs, print the count\n"
    "  dlq list|peek|redrive|purge QUEUE   the dead-letter set\n"
    "  peek ID                   a job's record, state and sizes\n"
    "  cancel ID                 end a job that is not leased as cancelled\n"
    "  config get|set QUEUE [--lane L] [KEY=VALUE...]   persisted queue settings\n"
    "\n"
    "'leaseqctl COMMAND --help' describes each command. Ids and lease tokens are unsigned\n"
    "64-bit numbers in decimal. Exit status: 0 ok, 1 the call failed, 2 usage error,\n"
    "3 a job waited for (wait, enqueue --wait) ended dead, expired, purged or cancelled.\n";

static const struct {
    const char *name;
    int (*fn)(global_opts *g, int argc, char **argv);
} COMMANDS[] = {
    { "enqueue", cmd_enqueue }, { "lease", cmd_lease }, { "ack", cmd_ack },     { "nack", cmd_nack },
    { "extend", cmd_extend },   { "wait", cmd_wait },   { "ping", cmd_ping },   { "stats", cmd_stats },
    { "workers", cmd_workers }, { "clear-suspect", cmd_clear_suspect },
    { "queues", cmd_queues },   { "pause", cmd_pause },   { "resume", cmd_resume }, { "drain", cmd_drain },
    { "purge", cmd_purge },     { "peek", cmd_peek },     { "cancel", cmd_cancel }, { "dlq", cmd_dlq },
    { "config", cmd_config },
};

int main(int argc, char **argv)
{
    global_opts g = { .addr = getenv("LEASEQ_ADDR"), .token = getenv("LEASEQ_TOKEN"),
                      .timeout_ms = DEFAULT_TIMEOUT_MS };
    if (g.addr == NULL || g.addr[0] == '\0')
        g.addr = DEFAULT_ADDR;
    static const struct option lo[] = { GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
    opterr = 1;
    int opt;
    /* "+": stop at the command; its own options are parsed by the command */
    while ((opt = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
        int r = global_opt(&g, opt == 'h' ? OPT_HELP : opt, optarg, NULL);
        if (r == 3) {
            fputs(GLOBAL_HELP, stdout);
            return 0;
        }
        if (r != 0)
            return r == EXIT_USAGE ? EXIT_USAGE : usage_error(NULL, "bad option");
    }
    if (optind >= argc) {
        fputs(GLOBAL_HELP, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(cmd, COMMANDS[i].name) == 0)
            return COMMANDS[i].fn(&g, argc - optind, argv + optind);
    if (strcmp(cmd, "help") == 0) {
        fputs(GLOBAL_HELP, stdout);
        return 0;
    }
    return usage_error(NULL, "unknown command '%s'", cmd);
}

