/* Tokens file and constant-time token lookup (auth.h). */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t token[LQ_AUTH_TOKEN_MAX]; /* zero-padded */
    uint32_t len;
    lq_role role;
} entry;

struct lq_auth {
    entry *v; /* owner: auth */
    uint32_t n;
};

const char *lq_role_name(lq_role r)
{
    switch (r) {
    case LQ_ROLE_PRODUCER: return "producer";
    case LQ_ROLE_WORKER: return "worker";
    case LQ_ROLE_ADMIN: return "admin";
    default: return "none";
    }
}

static bool parse_role(const char *s, lq_role *out)
{
    for (int r = LQ_ROLE_PRODUCER; r <= LQ_ROLE_ADMIN; r++) {
        if (strcmp(s, lq_role_name((lq_role)r)) == 0) {
            *out = (lq_role)r;
            return true;
        }
    }
    return false;
}

lq_err lq_auth_load(const char *path, lq_auth **out, char *err, size_t err_cap)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_cap, "--auth %s: %s", path, strerror(errno));
        return LQ_E_INVALID_ARGUMENT;
    }
    lq_auth *a = calloc(1, sizeof *a);                          /* owner: caller, lq_auth_free */
    entry *v = a != NULL ? calloc(LQ_AUTH_TOKENS_MAX, sizeof *v) : NULL; /* owner: a */
    lq_err e = LQ_OK;
    if (v == NULL) {
        snprintf(err, err_cap, "--auth: out of memory");
        e = LQ_E_NOMEM;
        goto out;
    }
    a->v = v;
    char line[1024];
    for (unsigned lineno = 1; fgets(line, sizeof line, f) != NULL; lineno++) {
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(err, err_cap, "--auth %s:%u: line too long", path, lineno);
            e = LQ_E_INVALID_ARGUMENT;
            goto out;
        }
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *save = NULL;
        char *tok = strtok_r(line, " \t\r\n", &save);
        if (tok == NULL)
            continue;
        char *role = strtok_r(NULL, " \t\r\n", &save);
        lq_role r;
        if (role == NULL || strtok_r(NULL, " \t\r\n", &save) != NULL || !parse_role(role, &r)) {
            snprintf(err, err_cap, "--auth %s:%u: want \"TOKEN producer|worker|admin\"", path, lineno);
            e = LQ_E_INVALID_ARGUMENT;
            goto out;
        }
        size_t len = strlen(tok);
        if (len > LQ_AUTH_TOKEN_MAX || a->n == LQ_AUTH_TOKENS_MAX) {
            snprintf(err, err_cap, "--auth %s:%u: token over %d bytes or more than %d tokens", path, lineno,
                     LQ_AUTH_TOKEN_MAX, LQ_AUTH_TOKENS_MAX);
            e = LQ_E_INVALID_ARGUMENT;
            goto out;
        }
        entry *en = &a->v[a->n++];
        memcpy(en->token, tok, len);
        en->len = (uint32_t)len;
        en->role = r;
    }
    if (a->n == 0) {
        snprintf(err, err_cap, "--auth %s: no tokens", path);
        e = LQ_E_INVALID_ARGUMENT;
    }
out:
    fclose(f);
    if (e != LQ_OK) {
        lq_auth_free(a);
        return e;
    }
    *out = a;
    return LQ_OK;
}

void lq_auth_free(lq_auth *a)
{
    if (a == NULL)
        return;
    if (a->v != NULL)
        memset(a->v, 0, (size_t)LQ_AUTH_TOKENS_MAX * sizeof *a->v); /* no secrets left in freed memory */
    free(a->v);
    free(a);
}

uint32_t lq_auth_count(const lq_auth *a)
{
    return a->n;
}

lq_role lq_auth_check(const lq_auth *a, const char *token, size_t len)
{
    uint8_t given[LQ_AUTH_TOKEN_MAX];
    memset(given, 0, sizeof given);
    /* A token too long to be stored matches nothing, but is still compared in full time. */
    uint32_t too_long = len > LQ_AUTH_TOKEN_MAX;
    memcpy(given, token, too_long ? LQ_AUTH_TOKEN_MAX : len);
    uint32_t role = LQ_ROLE_NONE;
    for (uint32_t i = 0; i < a->n; i++) {
        const entry *en = &a->v[i];
        uint32_t diff = (en->len ^ (uint32_t)len) | too_long;
        for (size_t k = 0; k < LQ_AUTH_TOKEN_MAX; k++)
            diff |= (uint32_t)(en->token[k] ^ given[k]);
        /* mask = all ones when diff == 0: keep the first match without a branch on secrets */
        uint32_t match = (uint32_t)(((uint64_t)diff - 1u) >> 63) & (role == LQ_ROLE_NONE);
        role |= (uint32_t)en->role & (0u - match);
    }
    return (lq_role)role;
}
