/* leaseqctl helpers: errors, numbers, files, JSON, the connection. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("leaseqctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'leaseqctl %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

int call_failed(leaseq *c, leaseq_err e)
{
    const char *msg = c != NULL ? leaseq_last_error(c) : "";
    if (msg[0] != '\0' && strcmp(msg, leaseq_strerror(e)) != 0)
        fprintf(stderr, "leaseqctl: %s: %s\n", leaseq_strerror(e), msg);
    else
        fprintf(stderr, "leaseqctl: %s\n", leaseq_strerror(e));
    return EXIT_FAIL;
}

bool parse_u64(const char *s, uint64_t *out)
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

bool parse_u32(const char *s, uint32_t *out)
{
    uint64_t v;
    if (!parse_u64(s, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

bool parse_i32(const char *s, int32_t *out)
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
bool read_file(const char *path, uint8_t **data, size_t *len)
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

void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)); /* owner: here */
    if (s != NULL) {
        puts(s);
        free(s);
    }
    json_decref(j);
}

char *base64(const uint8_t *p, size_t n)
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

leaseq *open_conn(const global_opts *g, int *rc)
{
    *rc = 0; /* callers return it on success */
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

bool write_file(const char *path, const uint8_t *data, size_t len)
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

int global_opt(global_opts *g, int opt, const char *arg, const char *cmd)
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

