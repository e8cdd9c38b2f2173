/* Access control on the native protocol: the tokens file, hello, and what each role may ask.
 *
 * Without --auth every connection is admin, which is only safe on loopback: the broker then
 * refuses to listen elsewhere unless --insecure says the network is trusted. */
#include <string.h>

#include "log.h"
#include "server_int.h"

#define DENIED_LOG_MS 1000 /* at most one "permission denied" line a second (with the count) */

static bool loopback_host(const char *host_port)
{
    const char *colon = strrchr(host_port, ':');
    size_t n = colon != NULL ? (size_t)(colon - host_port) : strlen(host_port);
    char host[128];
    if (n >= sizeof host)
        return false;
    memcpy(host, host_port, n);
    host[n] = '\0';
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
           strcmp(host, "::1") == 0;
}

lq_err srv_auth_init(lq_server *s)
{
    const lq_config *cfg = s->cfg;
    if (cfg->auth_path != NULL) {
        char err[512];
        lq_err e = lq_auth_load(cfg->auth_path, &s->auth, err, sizeof err);
        if (e != LQ_OK) {
            char qb[600];
            LQ_LOGE("cannot load the tokens file", "error=%s", lq_log_quote(qb, sizeof qb, err, strlen(err)));
            return LQ_E_INVALID_ARGUMENT;
        }
        LQ_LOGI("access control on", "tokens=%u file=%s", lq_auth_count(s->auth), cfg->auth_path);
        return LQ_OK;
    }
    if (!loopback_host(cfg->listen)) {
        if (!cfg->insecure) {
            LQ_LOGE("refusing to listen on a non-loopback address without --auth (or --insecure)", "listen=%s",
                    cfg->listen);
            return LQ_E_INVALID_ARGUMENT;
        }
        LQ_LOGW("no access control on a non-loopback address (--insecure): every client is admin", "listen=%s",
                cfg->listen);
    }
    return LQ_OK;
}

bool srv_auth_hello(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Hello *h)
{
    if (s->auth == NULL) {
        sc->role = LQ_ROLE_ADMIN;
        return true;
    }
    const char *tok = h->token != NULL ? h->token : "";
    lq_role r = lq_auth_check(s->auth, tok, strlen(tok));
    if (r != LQ_ROLE_NONE) {
        sc->role = (uint8_t)r;
        return true;
    }
    s->metrics.auth_failures++;
    char peer[128], name[256];
    lq_loop_peer(s->loop, sc->id, peer, sizeof peer);
    const char *cn = h->client_name != NULL ? h->client_name : "";
    LQ_LOGW("authentication failed: unknown token", "peer=%s client=%s", peer,
            lq_log_quote(name, sizeof name, cn, strlen(cn)));
    srv_fail_conn(s, sc, rid, LQ_E_UNAUTHENTICATED, "unknown token");
    return false;
}

static bool allowed(lq_role role, int body_case)
{
    if (role == LQ_ROLE_ADMIN || body_case == LEASEQ__REQUEST__BODY_HELLO || body_case == LEASEQ__REQUEST__BODY_PING)
        return true;
    switch (body_case) {
    case LEASEQ__REQUEST__BODY_ENQUEUE:
    case LEASEQ__REQUEST__BODY_WAIT:
        return role == LQ_ROLE_PRODUCER;
    case LEASEQ__REQUEST__BODY_DEQUEUE:
    case LEASEQ__REQUEST__BODY_ACK:
    case LEASEQ__REQUEST__BODY_NACK:
    case LEASEQ__REQUEST__BODY_EXTEND:
    case LEASEQ__REQUEST__BODY_HEARTBEAT:
        return role == LQ_ROLE_WORKER;
    default:
        return false; /* stats, workers, operations: admin */
    }
}

bool srv_auth_allows(lq_server *s, srv_conn *sc, uint64_t rid, int body_case)
{
    if (allowed((lq_role)sc->role, body_case))
        return true;
    s->metrics.permission_denied++;
    uint64_t now = srv_now(s);
    if (now - s->denied_logged_ms >= DENIED_LOG_MS) {
        char peer[128];
        lq_loop_peer(s->loop, sc->id, peer, sizeof peer);
        LQ_LOGW("permission denied", "peer=%s session=%u role=%s request=%d denied_since_last_line=%llu", peer,
                sc->session, lq_role_name((lq_role)sc->role), body_case, (unsigned long long)s->denied_unlogged);
        s->denied_logged_ms = now;
        s->denied_unlogged = 0;
    } else {
        s->denied_unlogged++;
    }
    srv_send_error(s, sc->id, rid, LQ_E_PERMISSION_DENIED, "this token's role may not make this request");
    return false;
}
