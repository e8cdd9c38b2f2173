/* Access control: a tokens file maps secret tokens to roles, and each role may make a fixed
 * set of requests. Token comparison takes the same time whatever the token and whichever entry
 * it matches, so timing tells an attacker nothing about the stored tokens. */
#ifndef LQ_AUTH_H
#define LQ_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/lq_err.h"

#define LQ_AUTH_TOKEN_MAX 256   /* bytes of one token */
#define LQ_AUTH_TOKENS_MAX 4096 /* entries of one tokens file */

/* Values equal the wire Role. */
typedef enum {
    LQ_ROLE_NONE = 0,
    LQ_ROLE_PRODUCER = 1, /* enqueue, wait */
    LQ_ROLE_WORKER = 2,   /* lease (dequeue), ack, nack, extend, heartbeat */
    LQ_ROLE_ADMIN = 3,    /* everything */
} lq_role;

typedef struct lq_auth lq_auth;

/* Reads "TOKEN ROLE" lines ('#' starts a comment, blank lines skipped). *out owned by the
 * caller: lq_auth_free. LQ_E_INVALID_ARGUMENT with a one-line reason in err for a bad file. */
lq_err lq_auth_load(const char *path, lq_auth **out, char *err, size_t err_cap);
void lq_auth_free(lq_auth *a);
uint32_t lq_auth_count(const lq_auth *a);

/* The role of token[0..len), or LQ_ROLE_NONE when no entry matches. Constant time in the
 * token's bytes: every entry is compared in full. */
lq_role lq_auth_check(const lq_auth *a, const char *token, size_t len);

const char *lq_role_name(lq_role r);

#endif
