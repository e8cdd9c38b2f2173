/* leaseqctl's shared parts: global options, option parsing, helpers and the commands
 * (the .c files of client/ctl), linked into leaseqctl only (never into libleaseq). */
#ifndef LEASEQ_CTL_H
#define LEASEQ_CTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "leaseq.h"

#define DEFAULT_ADDR "127.0.0.1:7420"
#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_WAIT_TIMEOUT_MS 30000
#define MAX_HEADERS 64
#define MAX_QUEUES 64
#define FILE_MAX_BYTES (1u << 30) /* the client library's hard frame cap; the broker's is lower */

enum { EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_NOT_DONE = 3 };

typedef struct {
    const char *addr;
    const char *token;
    int timeout_ms;
    bool json;
} global_opts;

/* Options every command takes, so `leaseqctl stats --json` works as well as the global form. */
enum { OPT_ADDR = 1000, OPT_TOKEN, OPT_TIMEOUT, OPT_JSON, OPT_HELP };
#define GLOBAL_LONGOPTS                                                                        \
    { "addr", required_argument, NULL, OPT_ADDR }, { "token", required_argument, NULL, OPT_TOKEN }, \
    { "timeout", required_argument, NULL, OPT_TIMEOUT }, { "json", no_argument, NULL, OPT_JSON },   \
    { "help", no_argument, NULL, OPT_HELP }

/* Handles a global option seen by a command's parser. Returns -1 if opt is not global,
 * 0 when handled, EXIT_USAGE on a bad value, or 3 for --help. */
/* Handles a global option seen by a command's parser. Returns -1 if opt is not global,
 * 0 when handled, EXIT_USAGE on a bad value, or 3 for --help. */
int global_opt(global_opts *g, int opt, const char *arg, const char *cmd);

#define PARSE_OPTS_LOOP(cmd, help, shortopts, longopts, ...)                        \
    optind = 0;                                                                     \
    for (int opt_; (opt_ = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1;) { \
        int g_ = global_opt(g, opt_, optarg, cmd);                                  \
        if (g_ == 3) {                                                              \
            fputs(help, stdout);                                                    \
            return 0;                                                               \
        }                                                                           \
        if (g_ == EXIT_USAGE)                                                       \
            return EXIT_USAGE;                                                      \
        if (g_ == 0)                                                                \
            continue;                                                               \
        switch (opt_) {                                                             \
            __VA_ARGS__                                                             \
        default:                                                                    \
            return usage_error(cmd, "bad option");                                  \
        }                                                                           \
    }

int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the call's failure ("leaseqctl: CODE: message"); returns EXIT_FAIL. */
int call_failed(leaseq *c, leaseq_err e);
bool parse_u64(const char *s, uint64_t *out);
bool parse_u32(const char *s, uint32_t *out);
bool parse_i32(const char *s, int32_t *out);
/* Reads a whole file (or stdin for "-") into a malloc'd buffer (owner: caller), at most
 * FILE_MAX_BYTES. */
bool read_file(const char *path, uint8_t **data, size_t *len);
bool write_file(const char *path, const uint8_t *data, size_t len);
/* Prints j compactly and releases it. */
void print_json(json_t *j);
char *base64(const uint8_t *p, size_t n); /* owner: caller */
/* Connects with keep_leases_on_close; on failure prints why, sets *rc, returns NULL. */
leaseq *open_conn(const global_opts *g, int *rc);
/* Waits for id on c and reports it; j (may be NULL) holds fields already known for --json. */
int wait_and_report(const global_opts *g, leaseq *c, uint64_t id, uint32_t wait_ms, int call_ms,
                    const char *out_path, json_t *j);

/* The commands: argv[0] is the command name. */
int cmd_enqueue(global_opts *g, int argc, char **argv);
int cmd_wait(global_opts *g, int argc, char **argv);
int cmd_lease(global_opts *g, int argc, char **argv);
int cmd_ack(global_opts *g, int argc, char **argv);
int cmd_nack(global_opts *g, int argc, char **argv);
int cmd_extend(global_opts *g, int argc, char **argv);
int cmd_ping(global_opts *g, int argc, char **argv);
int cmd_stats(global_opts *g, int argc, char **argv);
int cmd_workers(global_opts *g, int argc, char **argv);
int cmd_clear_suspect(global_opts *g, int argc, char **argv);
/* operations (ops.c, dlq.c) */
int cmd_queues(global_opts *g, int argc, char **argv);
int cmd_pause(global_opts *g, int argc, char **argv);
int cmd_resume(global_opts *g, int argc, char **argv);
int cmd_drain(global_opts *g, int argc, char **argv);
int cmd_purge(global_opts *g, int argc, char **argv);
int cmd_peek(global_opts *g, int argc, char **argv);
int cmd_cancel(global_opts *g, int argc, char **argv);
int cmd_dlq(global_opts *g, int argc, char **argv);
int cmd_config(global_opts *g, int argc, char **argv);
/* "90s", "15m", "2h", "1d", "500ms"; a plain number is seconds. */
bool parse_duration_ms(const char *s, uint64_t *out);

#endif
