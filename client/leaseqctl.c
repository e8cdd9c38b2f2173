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
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    "  stats [QUEUE]             counts per queue and lane\n"
    "\n"
    "'leaseqctl COMMAND --help' describes each command. Ids and lease tokens are unsigned\n"
    "64-bit numbers in decimal. Exit status: 0 ok, 1 the call failed, 2 usage error,\n"
    "3 a job waited for (wait, enqueue --wait) ended dead, expired, purged or cancelled.\n";

static const char ENQUEUE_HELP[] =
    "usage: leaseqctl enqueue QUEUE [--lane L] [--priority N] [--data S | --file PATH]\n"
    "                 [--delay MS] [--deadline MS] [--key K] [--max-attempts N] [--tenant T]\n"
    "                 [--header K=V ...] [--wait [--wait-timeout MS] [--out PATH]]\n"
    "\n"
    "Stores one job and prints its id once the broker says it is durable.\n"
    "  --lane L           lane (default \"default\")\n"
    "  --priority N       lower is served first (default 0; may be negative)\n"
    "  --data S           payload bytes from the argument\n"
    "  --file PATH        payload from a file ('-' reads stdin)\n"
    "                     With neither --data nor --file the payload is empty; stdin is not read.\n"
    "  --delay MS         not before now + MS\n"
    "  --deadline MS      never dispatched after now + MS\n"
    "  --key K            idempotency key: an existing job with this key is returned instead\n"
    "  --max-attempts N   deliveries before dead-lettering (default: the queue's)\n"
    "  --tenant T         fairness key inside the lane\n"
    "  --header K=V       job header, repeatable (up to 64)\n"
    "  --wait             then wait on the same connection until the job ends\n"
    "  --wait-timeout MS  how long to wait (default 30000); the wait's time limit is MS\n"
    "                     plus --timeout\n"
    "  --out PATH         with --wait: write a done job's result to PATH ('-': stdout)\n"
    "Output: the job id. --json: {\"id\":N,\"duplicate\":BOOL}\n"
    "With --wait a second line follows as 'leaseqctl wait' prints it (--json: one object\n"
    "with both sets of fields), and the exit status is that of 'leaseqctl wait'; when the\n"
    "wait fails the id has been printed and the job is stored.\n";

static const char LEASE_HELP[] =
    "usage: leaseqctl lease QUEUE [QUEUE...] [--max N] [--wait MS] [--lease MS]\n"
    "\n"
    "Leases up to N jobs (default 1). With nothing ready the broker waits up to --wait MS\n"
    "(default 0); the call's time limit is --wait plus --timeout.\n"
    "  --lease MS   lease time (default: the queue's)\n"
    "Output: one line per job, no header, tab-separated columns:\n"
    "  ID  TOKEN  LANE  ATTEMPT  PAYLOAD_BYTES\n"
    "No jobs: no output, exit status 0.\n"
    "--json: an array of {\"id\":N,\"token\":\"N\",\"lane\":S,\"attempt\":N,\"size\":N,\"queue\":S,\n"
    "        \"payload\":BASE64}; token is a decimal string because it can exceed 2^53.\n"
    "Finish a lease with 'leaseqctl ack ID TOKEN' or nack, from this or another process.\n"
    "leaseqctl's connections ask the broker to keep their leases when they close, so a lease\n"
    "taken here stays valid after this command exits, until its lease time runs out (then\n"
    "the job is requeued and ack fails with LEASE_LOST). leaseqctl opens no worker session\n"
    "and sends no heartbeats: pick --lease long enough for the work.\n";

static const char ACK_HELP[] =
    "usage: leaseqctl ack ID TOKEN [--result-file PATH]\n"
    "\n"
    "Completes a lease; the result bytes come from PATH ('-' reads stdin), none by default.\n"
    "Output: nothing. --json: {\"ok\":true}. A stale token fails with LEASE_LOST.\n";

static const char NACK_HELP[] =
    "usage: leaseqctl nack ID TOKEN [--delay MS | --dead] [--error TEXT]\n"
    "\n"
    "Gives a lease back: retried after MS (default: the queue's backoff), or dead-lettered\n"
    "now with --dead. TEXT is kept as the job's last error.\n"
    "Output: \"dead\" or \"retry\". --json: {\"dead\":BOOL}\n";

static const char EXTEND_HELP[] =
    "usage: leaseqctl extend ID TOKEN --lease MS\n"
    "\n"
    "Moves the lease's expiry to now + MS.\n"
    "Output: the new expiry, ms since the Unix epoch. --json: {\"lease_expires_ms\":N}\n";

static const char WAIT_HELP[] =
    "usage: leaseqctl wait ID [--timeout MS] [--out PATH]\n"
    "\n"
    "Waits until job ID ends (done, dead, expired, purged or cancelled). Here --timeout is\n"
    "how long the broker waits (default 5000); the call's time limit is MS + 5000.\n"
    "  --out PATH   write a done job's result to PATH ('-': stdout, and the line below goes\n"
    "               to stderr); not written for other states\n"
    "Output: one line, tab-separated: STATE RESULT_BYTES ERROR (ERROR may be empty).\n"
    "--json: {\"id\":N,\"state\":S,\"error\":S,\"result_size\":N}\n"
    "Exit status: 0 done; 3 dead, expired, purged or cancelled; 1 the call failed, with\n"
    "DEADLINE_EXCEEDED when the job did not end in time (it is untouched: wait again) and\n"
    "NOT_FOUND for an unknown job or one whose result is no longer kept; 2 usage error.\n";

static const char PING_HELP[] =
    "usage: leaseqctl ping\n"
    "\n"
    "Connects, says hello and makes one round trip.\n"
    "Output: \"ok SERVER_NAME RTT_MS\". --json: {\"ok\":true,\"server\":S,\"role\":N,\"rtt_ms\":F}\n";

static const char STATS_HELP[] =
    "usage: leaseqctl stats [QUEUE]\n"
    "\n"
    "Job counts per queue and lane (all queues without QUEUE).\n"
    "Output: a table with the columns QUEUE LANE WEIGHT READY LEASED DELAYED DEAD.\n"
    "--json: {\"queues\":[{\"name\":S,\"lanes\":[{\"name\":S,\"weight\":N,\"ready\":N,\n"
    "        \"leased\":N,\"delayed\":N,\"dead\":N}]}]}\n";

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("leaseqctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'leaseqctl %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

static int call_failed(leaseq *c, leaseq_err e)
{
    const char *msg = c != NULL ? leaseq_last_error(c) : "";
    if (msg[0] != '\0' && strcmp(msg, leaseq_strerror(e)) != 0)
        fprintf(stderr, "leaseqctl: %s: %s\n", leaseq_strerror(e), msg);
    else
        fprintf(stderr, "leaseqctl: %s\n", leaseq_strerror(e));
    return EXIT_FAIL;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    uint64_t v;
    if (!parse_u64(s, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_i32(const char *s, int32_t *out)
{
    if (s == NULL || s[0] == '\0')
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < INT32_MIN || v > INT32_MAX)
        return false;
    *out = (int32_t)v;
    return true;
}

/* Reads a whole file (or stdin for "-") into a malloc'd buffer, at most FILE_MAX_BYTES. */
static bool read_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "leaseqctl: %s: %s\n", path, strerror(errno));
        return false;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap); /* owner: caller */
    bool ok = buf != NULL;
    while (ok) {
        if (n == cap) {
            if (cap >= FILE_MAX_BYTES) {
                fprintf(stderr, "leaseqctl: %s: larger than %u bytes\n", path, FILE_MAX_BYTES);
                ok = false;
                break;
            }
            uint8_t *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                ok = false;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                fprintf(stderr, "leaseqctl: %s: read error\n", path);
                ok = false;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (!ok) {
        free(buf);
        return false;
    }
    *data = buf;
    *len = n;
    return true;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)); /* owner: here */
    if (s != NULL) {
        puts(s);
        free(s);
    }
    json_decref(j);
}

static char *base64(const uint8_t *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1); /* owner: caller */
    if (out == NULL)
        return NULL;
    char *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static leaseq *open_conn(const global_opts *g, int *rc)
{
    leaseq_opts o = { .client_name = "leaseqctl", .token = g->token, .connect_timeout_ms = (uint32_t)g->timeout_ms,
                      .keep_leases_on_close = true };
    leaseq *c = NULL;
    char why[512];
    leaseq_err e = leaseq_connect_ex(g->addr, &o, &c, why, sizeof why);
    if (e != LEASEQ_OK) {
        if (why[0] != '\0')
            fprintf(stderr, "leaseqctl: %s: %s\n", leaseq_strerror(e), why);
        else
            fprintf(stderr, "leaseqctl: %s\n", leaseq_strerror(e));
        *rc = e == LEASEQ_E_INVALID_ARGUMENT ? EXIT_USAGE : EXIT_FAIL;
        return NULL;
    }
    return c;
}

static bool write_file(const char *path, const uint8_t *data, size_t len)
{
    errno = 0;
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");
    bool ok = f != NULL && fwrite(data, 1, len, f) == len;
    if (f != NULL && f != stdout)
        ok = fclose(f) == 0 && ok;
    else if (f == stdout)
        ok = fflush(stdout) == 0 && ok;
    if (!ok)
        fprintf(stderr, "leaseqctl: %s: %s\n", path, errno ? strerror(errno) : "write error");
    return ok;
}

/* Reports a waited-for job: its result to out_path (done only), then the state line, or its
 * fields added to j for --json (j is printed and released here). Returns the exit status. */
static int report_outcome(const global_opts *g, const leaseq_outcome *o, const char *out_path, json_t *j)
{
    int rc = o->state == LEASEQ_STATE_DONE ? 0 : EXIT_NOT_DONE;
    if (rc == 0 && out_path != NULL && !write_file(out_path, o->result, o->result_len))
        rc = EXIT_FAIL;
    /* with the result on stdout, everything else moves out of its way */
    FILE *info = out_path != NULL && strcmp(out_path, "-") == 0 ? stderr : stdout;
    if (g->json) {
        json_object_set_new(j, "state", json_string(leaseq_state_name(o->state)));
        json_object_set_new(j, "error", json_string(o->error));
        json_object_set_new(j, "result_size", json_integer((json_int_t)o->result_len));
        char *txt = json_dumps(j, JSON_COMPACT); /* owner: here */
        if (txt != NULL)
            fprintf(info, "%s\n", txt);
        free(txt);
    } else {
        fprintf(info, "%s\t%zu\t%s\n", leaseq_state_name(o->state), o->result_len, o->error);
    }
    json_decref(j);
    return rc;
}

/* Waits for id on c and reports it; j (may be NULL) holds fields already known for --json. */
static int wait_and_report(const global_opts *g, leaseq *c, uint64_t id, uint32_t wait_ms, int call_ms,
                           const char *out_path, json_t *j)
{
    leaseq_outcome o = { 0 };
    leaseq_err e = leaseq_wait(c, id, wait_ms, &o, call_ms);
    if (e != LEASEQ_OK) {
        if (j != NULL) /* enqueue --wait: the id is known, say so before the failure */
            print_json(j);
        return call_failed(c, e);
    }
    if (j == NULL)
        j = json_pack("{s:I}", "id", (json_int_t)id);
    int rc = report_outcome(g, &o, out_path, j);
    leaseq_outcome_free(&o);
    return rc;
}

/* Options every command takes, so `leaseqctl stats --json` works as well as the global form. */
enum { OPT_ADDR = 1000, OPT_TOKEN, OPT_TIMEOUT, OPT_JSON, OPT_HELP };
#define GLOBAL_LONGOPTS                                                                        \
    { "addr", required_argument, NULL, OPT_ADDR }, { "token", required_argument, NULL, OPT_TOKEN }, \
    { "timeout", required_argument, NULL, OPT_TIMEOUT }, { "json", no_argument, NULL, OPT_JSON },   \
    { "help", no_argument, NULL, OPT_HELP }

/* Handles a global option seen by a command's parser. Returns -1 if opt is not global,
 * 0 when handled, EXIT_USAGE on a bad value, or 3 for --help. */
static int global_opt(global_opts *g, int opt, const char *arg, const char *cmd)
{
    uint32_t ms;
    switch (opt) {
    case OPT_ADDR: g->addr = arg; return 0;
    case OPT_TOKEN: g->token = arg; return 0;
    case OPT_JSON: g->json = true; return 0;
    case OPT_HELP: return 3;
    case OPT_TIMEOUT:
        if (!parse_u32(arg, &ms) || ms == 0 || ms > INT32_MAX)
            return usage_error(cmd, "--timeout wants milliseconds > 0, got '%s'", arg);
        g->timeout_ms = (int)ms;
        return 0;
    default: return -1;
    }
}

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

static int cmd_enqueue(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = {
        { "lane", required_argument, NULL, 'l' }, { "priority", required_argument, NULL, 'p' },
        { "data", required_argument, NULL, 'd' }, { "file", required_argument, NULL, 'f' },
        { "delay", required_argument, NULL, 'D' }, { "deadline", required_argument, NULL, 'T' },
        { "key", required_argument, NULL, 'k' }, { "max-attempts", required_argument, NULL, 'm' },
        { "tenant", required_argument, NULL, 't' }, { "header", required_argument, NULL, 'H' },
        { "wait", no_argument, NULL, 'w' }, { "wait-timeout", required_argument, NULL, 'W' },
        { "out", required_argument, NULL, 'o' }, GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 }
    };
    leaseq_job_spec job = { 0 };
    leaseq_header headers[MAX_HEADERS];
    char *header_copies[MAX_HEADERS];
    size_t n_headers = 0;
    const char *data = NULL, *file = NULL, *out_path = NULL;
    bool wait = false;
    uint32_t wait_ms = DEFAULT_WAIT_TIMEOUT_MS;
    int rc = EXIT_USAGE;
    PARSE_OPTS_LOOP("enqueue", ENQUEUE_HELP, "", lo,
        case 'l': job.lane = optarg; break;
        case 'p': if (!parse_i32(optarg, &job.priority)) goto bad_number; break;
        case 'd': data = optarg; break;
        case 'f': file = optarg; break;
        case 'D': if (!parse_u64(optarg, &job.delay_ms)) goto bad_number; break;
        case 'T': if (!parse_u64(optarg, &job.deadline_ms)) goto bad_number; break;
        case 'k': job.idempotency_key = optarg; break;
        case 'm': if (!parse_u32(optarg, &job.max_attempts)) goto bad_number; break;
        case 't': job.tenant = optarg; break;
        case 'w': wait = true; break;
        case 'W': if (!parse_u32(optarg, &wait_ms)) goto bad_number; break;
        case 'o': out_path = optarg; break;
        case 'H': {
            const char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg) {
                rc = usage_error("enqueue", "--header wants K=V, got '%s'", optarg);
                goto out;
            }
            if (n_headers == MAX_HEADERS) {
                rc = usage_error("enqueue", "at most %d headers", MAX_HEADERS);
                goto out;
            }
            char *k = strndup(optarg, (size_t)(eq - optarg)); /* owner: freed at out */
            if (k == NULL) {
                rc = EXIT_FAIL;
                goto out;
            }
            header_copies[n_headers] = k;
            headers[n_headers++] = (leaseq_header){ k, eq + 1 };
            break;
        })
    if (optind + 1 != argc) {
        rc = usage_error("enqueue", "want exactly one QUEUE");
        goto out;
    }
    if (data != NULL && file != NULL) {
        rc = usage_error("enqueue", "--data and --file exclude each other");
        goto out;
    }
    if (out_path != NULL && !wait) {
        rc = usage_error("enqueue", "--out needs --wait");
        goto out;
    }
    if ((uint64_t)wait_ms + (uint64_t)g->timeout_ms > INT32_MAX) {
        rc = usage_error("enqueue", "--wait-timeout plus --timeout is too long");
        goto out;
    }
    job.queue = argv[optind];
    job.headers = headers;
    job.n_headers = n_headers;
    uint8_t *file_data = NULL;
    if (file != NULL) {
        if (!read_file(file, &file_data, &job.payload_len)) {
            rc = EXIT_FAIL;
            goto out;
        }
        job.payload = file_data;
    } else if (data != NULL) {
        job.payload = data;
        job.payload_len = strlen(data);
    }
    leaseq *c = open_conn(g, &rc);
    if (c != NULL) {
        leaseq_enqueue_result r;
        /* the batch form is the one that reports duplicates */
        leaseq_err e = leaseq_enqueue_batch(c, &job, 1, &r, g->timeout_ms);
        if (e == LEASEQ_OK)
            e = r.err;
        if (e != LEASEQ_OK) {
            rc = call_failed(c, e);
        } else if (wait) {
            json_t *j = NULL;
            if (g->json)
                j = json_pack("{s:I,s:b}", "id", (json_int_t)r.job_id, "duplicate", r.duplicate);
            else
                printf("%" PRIu64 "\n", r.job_id);
            fflush(stdout); /* the id is worth having even if the wait fails */
            rc = wait_and_report(g, c, r.job_id, wait_ms, (int)(wait_ms + (uint32_t)g->timeout_ms), out_path, j);
        } else {
            rc = 0;
            if (g->json)
                print_json(json_pack("{s:I,s:b}", "id", (json_int_t)r.job_id, "duplicate", r.duplicate));
            else
                printf("%" PRIu64 "\n", r.job_id);
        }
        leaseq_close(c);
    }
    free(file_data);
out:
    for (size_t i = 0; i < n_headers; i++)
        free(header_copies[i]);
    return rc;
bad_number:
    rc = usage_error("enqueue", "bad number '%s'", optarg);
    goto out;
}

static int cmd_lease(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = {
        { "max", required_argument, NULL, 'n' }, { "wait", required_argument, NULL, 'w' },
        { "lease", required_argument, NULL, 'L' }, GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 }
    };
    uint32_t max = 1, wait_ms = 0, lease_ms = 0;
    PARSE_OPTS_LOOP("lease", LEASE_HELP, "", lo,
        case 'n': if (!parse_u32(optarg, &max) || max == 0) return usage_error("lease", "bad --max"); break;
        case 'w': if (!parse_u32(optarg, &wait_ms)) return usage_error("lease", "bad --wait"); break;
        case 'L': if (!parse_u32(optarg, &lease_ms)) return usage_error("lease", "bad --lease"); break;)
    size_t n_queues = (size_t)(argc - optind);
    if (n_queues == 0 || n_queues > MAX_QUEUES)
        return usage_error("lease", "want 1 to %d QUEUE names", MAX_QUEUES);
    uint64_t timeout = (uint64_t)wait_ms + (uint64_t)g->timeout_ms;
    if (timeout > INT32_MAX)
        return usage_error("lease", "--wait plus --timeout is too long");
    int rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    leaseq_lease *ls = NULL;
    size_t n = 0;
    leaseq_err e = leaseq_dequeue(c, (const char *const *)(argv + optind), n_queues, max, wait_ms, lease_ms,
                                  &ls, &n, (int)timeout);
    if (e != LEASEQ_OK) {
        rc = call_failed(c, e);
        leaseq_close(c);
        return rc;
    }
    rc = 0;
    if (g->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n && arr != NULL; i++) {
            char tok[24];
            snprintf(tok, sizeof tok, "%" PRIu64, ls[i].lease_token);
            char *b64 = base64(ls[i].payload, ls[i].payload_len);
            json_t *o = json_pack("{s:I,s:s,s:s,s:I,s:I,s:s,s:s}", "id", (json_int_t)ls[i].job_id, "token", tok,
                                  "lane", ls[i].lane, "attempt", (json_int_t)ls[i].attempt, "size",
                                  (json_int_t)ls[i].payload_len, "queue", ls[i].queue, "payload", b64 ? b64 : "");
            free(b64);
            if (o == NULL || json_array_append_new(arr, o) != 0)
                rc = EXIT_FAIL;
        }
        if (arr == NULL || rc != 0) {
            fprintf(stderr, "leaseqctl: out of memory building JSON; leases held until they expire\n");
            json_decref(arr);
            rc = EXIT_FAIL;
        } else {
            print_json(arr);
        }
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%" PRIu64 "\t%" PRIu64 "\t%s\t%u\t%zu\n", ls[i].job_id, ls[i].lease_token, ls[i].lane,
                   ls[i].attempt, ls[i].payload_len);
    }
    leaseq_leases_free(ls, n);
    leaseq_close(c);
    return rc;
}

/* ID TOKEN positional arguments of ack, nack and extend. */
static int id_token(const char *cmd, int argc, char **argv, uint64_t *id, uint64_t *token)
{
    if (argc - optind != 2)
        return usage_error(cmd, "want ID TOKEN");
    if (!parse_u64(argv[optind], id) || !parse_u64(argv[optind + 1], token))
        return usage_error(cmd, "ID and TOKEN are unsigned decimal numbers");
    return 0;
}

static int cmd_ack(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { { "result-file", required_argument, NULL, 'r' }, GLOBAL_LONGOPTS,
                                        { NULL, 0, NULL, 0 } };
    const char *result_file = NULL;
    PARSE_OPTS_LOOP("ack", ACK_HELP, "", lo, case 'r': result_file = optarg; break;)
    uint64_t id, token;
    int rc = id_token("ack", argc, argv, &id, &token);
    if (rc != 0)
        return rc;
    uint8_t *result = NULL;
    size_t result_len = 0;
    if (result_file != NULL && !read_file(result_file, &result, &result_len))
        return EXIT_FAIL;
    leaseq *c = open_conn(g, &rc);
    if (c != NULL) {
        leaseq_err e = leaseq_ack(c, id, token, result, result_len, g->timeout_ms);
        if (e != LEASEQ_OK)
            rc = call_failed(c, e);
        else if (g->json)
            print_json(json_pack("{s:b}", "ok", 1));
        leaseq_close(c);
    }
    free(result);
    return rc;
}

static int cmd_nack(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { { "delay", required_argument, NULL, 'D' }, { "dead", no_argument, NULL, 'x' },
                                        { "error", required_argument, NULL, 'e' }, GLOBAL_LONGOPTS,
                                        { NULL, 0, NULL, 0 } };
    leaseq_nack_opts no = { 0 };
    PARSE_OPTS_LOOP("nack", NACK_HELP, "", lo,
        case 'D': if (!parse_u64(optarg, &no.delay_ms)) return usage_error("nack", "bad --delay");
                  no.delay_set = true; break;
        case 'x': no.dead = true; break;
        case 'e': no.error = optarg; break;)
    if (no.dead && no.delay_set)
        return usage_error("nack", "--delay and --dead exclude each other");
    uint64_t id, token;
    int rc = id_token("nack", argc, argv, &id, &token);
    if (rc != 0)
        return rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    bool dead = false;
    leaseq_err e = leaseq_nack(c, id, token, &no, &dead, g->timeout_ms);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        print_json(json_pack("{s:b}", "dead", dead));
    else
        puts(dead ? "dead" : "retry");
    leaseq_close(c);
    return rc;
}

static int cmd_extend(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { { "lease", required_argument, NULL, 'L' }, GLOBAL_LONGOPTS,
                                        { NULL, 0, NULL, 0 } };
    uint32_t lease_ms = 0;
    bool have_lease = false;
    PARSE_OPTS_LOOP("extend", EXTEND_HELP, "", lo,
        case 'L': if (!parse_u32(optarg, &lease_ms)) return usage_error("extend", "bad --lease");
                  have_lease = true; break;)
    if (!have_lease)
        return usage_error("extend", "--lease MS is required");
    uint64_t id, token;
    int rc = id_token("extend", argc, argv, &id, &token);
    if (rc != 0)
        return rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    uint64_t expires = 0;
    leaseq_err e = leaseq_extend(c, id, token, lease_ms, &expires, g->timeout_ms);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        print_json(json_pack("{s:I}", "lease_expires_ms", (json_int_t)expires));
    else
        printf("%" PRIu64 "\n", expires);
    leaseq_close(c);
    return rc;
}

static int cmd_wait(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { { "out", required_argument, NULL, 'o' }, GLOBAL_LONGOPTS,
                                        { NULL, 0, NULL, 0 } };
    const char *out_path = NULL;
    PARSE_OPTS_LOOP("wait", WAIT_HELP, "", lo, case 'o': out_path = optarg; break;)
    uint64_t id;
    if (argc - optind != 1 || !parse_u64(argv[optind], &id))
        return usage_error("wait", "want one job ID (an unsigned decimal number)");
    uint32_t wait_ms = (uint32_t)g->timeout_ms; /* --timeout is the wait here */
    if ((uint64_t)wait_ms + DEFAULT_TIMEOUT_MS > INT32_MAX)
        return usage_error("wait", "--timeout is too long");
    global_opts conn_g = *g;
    conn_g.timeout_ms = DEFAULT_TIMEOUT_MS; /* a long wait is no reason for a long connect */
    int rc;
    leaseq *c = open_conn(&conn_g, &rc);
    if (c == NULL)
        return rc;
    rc = wait_and_report(g, c, id, wait_ms, (int)(wait_ms + DEFAULT_TIMEOUT_MS), out_path, NULL);
    leaseq_close(c);
    return rc;
}

static double now_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmd_ping(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("ping", PING_HELP, "", lo, )
    if (optind != argc)
        return usage_error("ping", "takes no arguments");
    int rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    double t0 = now_ms_f();
    leaseq_err e = leaseq_ping(c, g->timeout_ms);
    double rtt = now_ms_f() - t0;
    leaseq_server_info si;
    leaseq_get_server_info(c, &si);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        print_json(json_pack("{s:b,s:s,s:i,s:f}", "ok", 1, "server", si.server_name, "role", (int)si.role,
                             "rtt_ms", rtt));
    else
        printf("ok %s %.3f\n", si.server_name[0] ? si.server_name : "-", rtt);
    leaseq_close(c);
    return rc;
}

static json_t *stats_json(const leaseq_stats *s)
{
    json_t *queues = json_array();
    for (size_t q = 0; q < s->n_queues && queues != NULL; q++) {
        json_t *lanes = json_array();
        for (size_t l = 0; l < s->queues[q].n_lanes && lanes != NULL; l++) {
            const leaseq_lane_stats *ln = &s->queues[q].lanes[l];
            json_array_append_new(lanes, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "name", ln->name, "weight",
                                                   (json_int_t)ln->weight, "ready", (json_int_t)ln->ready,
                                                   "leased", (json_int_t)ln->leased, "delayed",
                                                   (json_int_t)ln->delayed, "dead", (json_int_t)ln->dead));
        }
        json_array_append_new(queues, json_pack("{s:s,s:o}", "name", s->queues[q].name, "lanes", lanes));
    }
    return json_pack("{s:o}", "queues", queues);
}

static int cmd_stats(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("stats", STATS_HELP, "", lo, )
    if (argc - optind > 1)
        return usage_error("stats", "takes at most one QUEUE");
    const char *queue = optind < argc ? argv[optind] : NULL;
    int rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    leaseq_stats *s = NULL;
    leaseq_err e = leaseq_get_stats(c, queue, &s, g->timeout_ms);
    if (e != LEASEQ_OK) {
        rc = call_failed(c, e);
    } else if (g->json) {
        json_t *j = stats_json(s);
        if (j == NULL) {
            fprintf(stderr, "leaseqctl: out of memory building JSON\n");
            rc = EXIT_FAIL;
        } else {
            print_json(j);
        }
    } else {
        int wq = 5, wl = 4; /* widths of "QUEUE", "LANE" */
        for (size_t q = 0; q < s->n_queues; q++) {
            int n = (int)strlen(s->queues[q].name);
            wq = n > wq ? n : wq;
            for (size_t l = 0; l < s->queues[q].n_lanes; l++) {
                n = (int)strlen(s->queues[q].lanes[l].name);
                wl = n > wl ? n : wl;
            }
        }
        printf("%-*s  %-*s  %6s  %10s  %10s  %10s  %10s\n", wq, "QUEUE", wl, "LANE", "WEIGHT", "READY", "LEASED",
               "DELAYED", "DEAD");
        for (size_t q = 0; q < s->n_queues; q++)
            for (size_t l = 0; l < s->queues[q].n_lanes; l++) {
                const leaseq_lane_stats *ln = &s->queues[q].lanes[l];
                printf("%-*s  %-*s  %6u  %10" PRIu64 "  %10" PRIu64 "  %10" PRIu64 "  %10" PRIu64 "\n", wq,
                       s->queues[q].name, wl, ln->name, ln->weight, ln->ready, ln->leased, ln->delayed, ln->dead);
            }
    }
    leaseq_stats_free(s);
    leaseq_close(c);
    return rc;
}

static const struct {
    const char *name;
    int (*fn)(global_opts *g, int argc, char **argv);
} COMMANDS[] = {
    { "enqueue", cmd_enqueue }, { "lease", cmd_lease }, { "ack", cmd_ack },     { "nack", cmd_nack },
    { "extend", cmd_extend },   { "wait", cmd_wait },   { "ping", cmd_ping },   { "stats", cmd_stats },
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
