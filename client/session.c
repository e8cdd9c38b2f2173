/* The libleaseq handle: lifecycle, hello, reconnect with backoff, and the send / receive /
 * round-trip steps the API calls in leaseq.c are built from. */
#include "client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEC_ARENA_CHUNK (64u << 10)
/* protobuf-c expands the wire form (meta is at most 1 MiB) into structs; 32x covers the worst
 * case of many tiny sub-messages. */
#define DEC_ARENA_CAP (32u << 20)
#define ENC_ARENA_CHUNK (64u << 10)
#define ENC_ARENA_CAP (16u << 20)
#define EBUF_KEEP_MAX (256u << 10)

const char *leaseq_strerror(leaseq_err e)
{
    switch (e) {
    case LEASEQ_OK: return "OK";
    case LEASEQ_E_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case LEASEQ_E_NOT_FOUND: return "NOT_FOUND";
    case LEASEQ_E_LEASE_LOST: return "LEASE_LOST";
    case LEASEQ_E_QUEUE_FULL: return "QUEUE_FULL";
    case LEASEQ_E_STORAGE_FULL: return "STORAGE_FULL";
    case LEASEQ_E_DRAINING: return "DRAINING";
    case LEASEQ_E_UNAUTHENTICATED: return "UNAUTHENTICATED";
    case LEASEQ_E_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case LEASEQ_E_FRAME_TOO_LARGE: return "FRAME_TOO_LARGE";
    case LEASEQ_E_PROTOCOL_ERROR: return "PROTOCOL_ERROR";
    case LEASEQ_E_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case LEASEQ_E_INTERNAL: return "INTERNAL";
    case LEASEQ_E_UNAVAILABLE: return "UNAVAILABLE";
    case LEASEQ_E_CONNECTION: return "CONNECTION";
    case LEASEQ_E_NOMEM: return "NOMEM";
    }
    return "UNKNOWN";
}

leaseq_err lqc_fail(leaseq *c, leaseq_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    return e;
}

leaseq_err lqc_io_fail(leaseq *c, lqc_io io, const char *during)
{
    leaseq_err e = LEASEQ_E_CONNECTION;
    switch (io) {
    case LQC_IO_OK: LQC_ASSERT(!"lqc_io_fail called without a failure"); break;
    case LQC_IO_TIMEOUT: e = LEASEQ_E_DEADLINE_EXCEEDED; break;
    case LQC_IO_CLOSED: e = LEASEQ_E_CONNECTION; break;
    case LQC_IO_PROTOCOL: e = LEASEQ_E_PROTOCOL_ERROR; break;
    case LQC_IO_NOMEM: e = LEASEQ_E_NOMEM; break;
    }
    lqc_fail(c, e, "%s: %s", during, c->conn.err);
    lqc_conn_close(&c->conn);
    return e;
}

leaseq_err lqc_begin(leaseq *c, int timeout_ms, uint64_t *deadline_ms)
{
    if (c == NULL)
        return LEASEQ_E_INVALID_ARGUMENT;
    c->errmsg[0] = '\0';
    c->retry_after_ms = 0;
    if (timeout_ms <= 0)
        return lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "timeout_ms must be > 0");
    *deadline_ms = lqc_now_ms() + (uint64_t)timeout_ms;
    return LEASEQ_OK;
}

leaseq_err lqc_end(leaseq *c, leaseq_err e)
{
    lqc_conn_trim(&c->conn);
    lq_arena_reset(&c->dec);
    lq_arena_reset(&c->enc);
    if (c->ecap > EBUF_KEEP_MAX) {
        free(c->ebuf);
        c->ebuf = NULL;
        c->ecap = 0;
    }
    if (e != LEASEQ_OK && c->errmsg[0] == '\0')
        lqc_fail(c, e, "%s", leaseq_strerror(e));
    return e;
}

void *lqc_enc_alloc(leaseq *c, size_t size)
{
    void *p = c->enc.pb.alloc(c->enc.pb.allocator_data, size);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

leaseq_err lqc_send(leaseq *c, Leaseq__Request *req, struct iovec *iov, int iovcnt, size_t payload_len,
                    uint64_t deadline_ms, bool *wrote_any)
{
    *wrote_any = false;
    req->request_id = c->next_request_id++;
    size_t meta_len = leaseq__request__get_packed_size(req);
    if (meta_len > LQ_FRAME_META_MAX)
        return lqc_fail(c, LEASEQ_E_FRAME_TOO_LARGE, "request metadata of %zu bytes is above %u",
                        meta_len, LQ_FRAME_META_MAX);
    uint64_t frame_len = LQ_FRAME_HEADER_BYTES + (uint64_t)meta_len + payload_len;
    if (frame_len > UINT32_MAX ||
        (c->srv.max_frame_bytes != 0 && frame_len > c->srv.max_frame_bytes))
        return lqc_fail(c, LEASEQ_E_FRAME_TOO_LARGE, "frame of %llu bytes is above the broker's limit of %u",
                        (unsigned long long)frame_len, c->srv.max_frame_bytes);
    size_t need = LQ_FRAME_HEADER_BYTES + meta_len;
    if (need > c->ecap) {
        size_t ncap = c->ecap ? c->ecap : 4096;
        while (ncap < need)
            ncap *= 2;
        uint8_t *n = realloc(c->ebuf, ncap); /* owner: handle, reused across calls */
        if (n == NULL)
            return lqc_fail(c, LEASEQ_E_NOMEM, "out of memory encoding a request");
        c->ebuf = n;
        c->ecap = ncap;
    }
    size_t packed = leaseq__request__pack(req, c->ebuf + LQ_FRAME_HEADER_BYTES);
    LQC_ASSERT(packed == meta_len);
    lq_frame_header(c->ebuf, (uint32_t)meta_len, (uint32_t)payload_len);
    lq_arena_reset(&c->enc); /* req's parts are no longer needed once packed */
    iov[0].iov_base = c->ebuf;
    iov[0].iov_len = need;
    lqc_io io = lqc_conn_send(&c->conn, iov, iovcnt, deadline_ms, wrote_any);
    if (io != LQC_IO_OK)
        return lqc_io_fail(c, io, "sending request");
    return LEASEQ_OK;
}

leaseq_err lqc_recv(leaseq *c, uint64_t deadline_ms, Leaseq__Response **resp, lq_frame *f)
{
    for (;;) {
        lqc_io io = lqc_conn_read_frame(&c->conn, deadline_ms, f);
        if (io != LQC_IO_OK)
            return lqc_io_fail(c, io, io == LQC_IO_TIMEOUT ? "waiting for the broker's reply" : "reading reply");
        lq_arena_reset(&c->dec);
        *resp = leaseq__response__unpack(&c->dec.pb, f->meta_len, f->meta);
        if (*resp == NULL) {
            lqc_conn_close(&c->conn);
            return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "undecodable response from the broker (%u bytes)",
                            f->meta_len);
        }
        /* The heartbeat thread never reads; its replies (errors included) are dropped here. */
        if (!c->hb_replies || ((*resp)->request_id & LQC_HB_ID_BIT) == 0)
            return LEASEQ_OK;
    }
}

/* Called with unasked data on an idle connection: true when it was a heartbeat's reply, now
 * consumed. Anything else (or a read failure) is false, and the caller reconnects. */
static bool skip_heartbeat_reply(leaseq *c, uint64_t deadline_ms)
{
    lq_frame f;
    if (lqc_conn_read_frame(&c->conn, deadline_ms, &f) != LQC_IO_OK)
        return false;
    lq_arena_reset(&c->dec);
    Leaseq__Response *r = leaseq__response__unpack(&c->dec.pb, f.meta_len, f.meta);
    return r != NULL && (r->request_id & LQC_HB_ID_BIT) != 0;
}

lqc_io lqc_send_heartbeat(leaseq *c, uint64_t seq, uint64_t deadline_ms)
{
    /* Only immutable parts of the handle and the conn's locked send are touched here: this
     * runs on the heartbeat thread while the owner thread may be in any call. */
    Leaseq__Heartbeat hb = LEASEQ__HEARTBEAT__INIT;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = LQC_HB_ID_BIT | seq;
    req.body_case = LEASEQ__REQUEST__BODY_HEARTBEAT;
    req.heartbeat = &hb;
    uint8_t buf[LQ_FRAME_HEADER_BYTES + 32];
    size_t meta_len = leaseq__request__get_packed_size(&req);
    LQC_ASSERT(meta_len <= sizeof buf - LQ_FRAME_HEADER_BYTES);
    leaseq__request__pack(&req, buf + LQ_FRAME_HEADER_BYTES);
    lq_frame_header(buf, (uint32_t)meta_len, 0);
    return lqc_conn_send_shared(&c->conn, buf, LQ_FRAME_HEADER_BYTES + meta_len, deadline_ms);
}

leaseq_err lqc_reply_error(leaseq *c, const Leaseq__Response *resp)
{
    if (resp->error == NULL || resp->error->code == LEASEQ__ERROR_CODE__OK)
        return LEASEQ_OK;
    unsigned code = (unsigned)resp->error->code;
    leaseq_err e = code <= LEASEQ_E_UNAVAILABLE ? (leaseq_err)code : LEASEQ_E_INTERNAL;
    lqc_fail(c, e, "%s", resp->error->message ? resp->error->message : "");
    if (resp->error->retry_after_ms > c->retry_after_ms)
        c->retry_after_ms = resp->error->retry_after_ms;
    /* The broker closes the connection after these; so do we, rather than learn it later. */
    if (e == LEASEQ_E_PROTOCOL_ERROR || e == LEASEQ_E_FRAME_TOO_LARGE)
        lqc_conn_close(&c->conn);
    return e;
}

static leaseq_err say_hello(leaseq *c, uint64_t deadline_ms)
{
    lqc_io io = lqc_conn_open(&c->conn, c->addr, deadline_ms);
    if (io != LQC_IO_OK)
        return lqc_fail(c, io == LQC_IO_NOMEM ? LEASEQ_E_NOMEM : LEASEQ_E_CONNECTION, "%s", c->conn.err);

    Leaseq__Hello hello = LEASEQ__HELLO__INIT;
    hello.protocol_version = 1;
    hello.client_name = c->client_name;
    hello.token = c->token;
    hello.worker_id = c->worker_id;
    hello.heartbeat_ms = c->heartbeat_ms;
    hello.keep_leases_on_close = c->keep_leases_on_close;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_HELLO;
    req.hello = &hello;
    struct iovec iov[1];
    bool wrote_any;
    Leaseq__Response *resp;
    lq_frame f;
    leaseq_err e = lqc_send(c, &req, iov, 1, 0, deadline_ms, &wrote_any);
    if (e == LEASEQ_OK)
        e = lqc_recv(c, deadline_ms, &resp, &f);
    if (e != LEASEQ_OK) {
        /* Transport trouble while greeting is a failure to connect, retried by lqc_ensure. */
        if (e == LEASEQ_E_DEADLINE_EXCEEDED || e == LEASEQ_E_CONNECTION) {
            char why[sizeof c->errmsg];
            memcpy(why, c->errmsg, sizeof why);
            lqc_fail(c, LEASEQ_E_CONNECTION, "hello to %s: %s", c->addr, why);
            return LEASEQ_E_CONNECTION;
        }
        return e;
    }
    if (resp->request_id != req.request_id) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "hello reply has request id %llu, want %llu",
                        (unsigned long long)resp->request_id, (unsigned long long)req.request_id);
    }
    e = lqc_reply_error(c, resp);
    if (e != LEASEQ_OK) {
        lqc_conn_close(&c->conn);
        return e;
    }
    if (resp->body_case != LEASEQ__RESPONSE__BODY_HELLO || resp->hello->protocol_version != 1) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "broker did not answer hello with protocol version 1");
    }
    const Leaseq__HelloReply *h = resp->hello;
    snprintf(c->server_name, sizeof c->server_name, "%s", h->server_name ? h->server_name : "");
    c->srv.server_name = c->server_name;
    c->srv.protocol_version = h->protocol_version;
    c->srv.role = (uint32_t)h->role;
    c->srv.session_id = h->session_id;
    c->srv.heartbeat_timeout_ms = h->heartbeat_timeout_ms;
    c->srv.max_payload_bytes = h->max_payload_bytes;
    c->srv.max_frame_bytes = h->max_frame_bytes;
    if (f.payload_len != 0 || lqc_conn_check_idle(&c->conn) == LQC_IO_PROTOCOL) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "unexpected data after the hello reply");
    }
    c->conn_gen++;
    lqc_conn_set_greeted(&c->conn);
    return LEASEQ_OK;
}

static uint32_t jitter(leaseq *c, uint32_t backoff_ms)
{
    /* xorshift64: only spreads reconnect storms, needs no quality */
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    uint32_t half = backoff_ms / 2;
    return half + (uint32_t)(c->rng % (half + 1));
}

static void sleep_until(uint64_t when_ms)
{
    uint64_t now = lqc_now_ms();
    if (when_ms <= now)
        return;
    uint64_t d = when_ms - now;
    struct timespec ts = { .tv_sec = (time_t)(d / 1000), .tv_nsec = (long)(d % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

leaseq_err lqc_ensure(leaseq *c, uint64_t deadline_ms)
{
    if (lqc_conn_is_open(&c->conn)) {
        lqc_io io = lqc_conn_check_idle(&c->conn);
        /* A worker's heartbeat replies arrive while it is idle (in its handler, say). */
        while (io == LQC_IO_PROTOCOL && c->hb_replies && skip_heartbeat_reply(c, deadline_ms))
            io = lqc_conn_check_idle(&c->conn);
        if (io == LQC_IO_OK)
            return LEASEQ_OK;
        /* Closed by the broker while idle (restart, idle timeout, an error frame before a
         * close): nothing of this call was sent yet, so reconnecting is safe. */
        lqc_conn_close(&c->conn);
    }
    for (;;) {
        if (c->next_attempt_ms > lqc_now_ms()) {
            if (c->next_attempt_ms >= deadline_ms) {
                if (c->errmsg[0] == '\0')
                    lqc_fail(c, LEASEQ_E_CONNECTION, "not connected to %s; next attempt in %llu ms",
                             c->addr, (unsigned long long)(c->next_attempt_ms - lqc_now_ms()));
                return LEASEQ_E_CONNECTION;
            }
            sleep_until(c->next_attempt_ms);
        }
        uint64_t attempt_deadline_ms = lqc_now_ms() + c->connect_timeout_ms;
        if (attempt_deadline_ms > deadline_ms)
            attempt_deadline_ms = deadline_ms;
        leaseq_err e = say_hello(c, attempt_deadline_ms);
        if (e == LEASEQ_OK) {
            c->backoff_ms = 0;
            c->next_attempt_ms = 0;
            c->errmsg[0] = '\0';
            return LEASEQ_OK;
        }
        if (e != LEASEQ_E_CONNECTION && e != LEASEQ_E_UNAVAILABLE)
            return e; /* refused for a reason that waiting does not fix */
        c->backoff_ms = c->backoff_ms == 0 ? LQC_BACKOFF_FIRST_MS
                      : (c->backoff_ms >= LQC_BACKOFF_MAX_MS / 2 ? LQC_BACKOFF_MAX_MS : c->backoff_ms * 2);
        c->next_attempt_ms = lqc_now_ms() + jitter(c, c->backoff_ms);
        if (c->next_attempt_ms >= deadline_ms)
            return e;
    }
}

leaseq_err lqc_call(leaseq *c, Leaseq__Request *req, struct iovec *iov, int iovcnt, size_t payload_len,
                    Leaseq__Response__BodyCase want, uint64_t deadline_ms, Leaseq__Response **resp,
                    lq_frame *f)
{
    leaseq_err e;
    for (int attempt = 0;; attempt++) {
        e = lqc_ensure(c, deadline_ms);
        if (e != LEASEQ_OK)
            return e;
        bool wrote_any;
        /* lqc_send consumes iov; keep a copy for a resend. 1 header + at most one payload. */
        struct iovec saved[2];
        LQC_ASSERT(iovcnt >= 1 && iovcnt <= 2);
        memcpy(saved, iov, sizeof(struct iovec) * (size_t)iovcnt);
        e = lqc_send(c, req, iov, iovcnt, payload_len, deadline_ms, &wrote_any);
        if (e == LEASEQ_OK)
            break;
        if (e != LEASEQ_E_CONNECTION || wrote_any || attempt > 0)
            return e;
        memcpy(iov, saved, sizeof(struct iovec) * (size_t)iovcnt);
        /* Not a byte left: the broker cannot have seen it; resend on a fresh connection. */
    }
    e = lqc_recv(c, deadline_ms, resp, f);
    if (e != LEASEQ_OK)
        return e;
    if ((*resp)->request_id != req->request_id) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "reply for request %llu while waiting for %llu",
                        (unsigned long long)(*resp)->request_id, (unsigned long long)req->request_id);
    }
    e = lqc_reply_error(c, *resp);
    if (e != LEASEQ_OK)
        return e;
    if ((*resp)->body_case != want) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "reply of kind %d to a request of kind %d",
                        (int)(*resp)->body_case, (int)want);
    }
    return LEASEQ_OK;
}

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s != NULL ? s : dflt); /* owner: handle, freed by leaseq_close */
}

leaseq_err leaseq_connect(const char *addr, const leaseq_opts *opts, leaseq **out)
{
    return leaseq_connect_ex(addr, opts, out, NULL, 0);
}

static leaseq_err connect_fail(leaseq_err e, char *errbuf, size_t errbuf_len, const char *msg)
{
    if (errbuf != NULL && errbuf_len > 0)
        snprintf(errbuf, errbuf_len, "%s", msg);
    return e;
}

leaseq_err leaseq_connect_ex(const char *addr, const leaseq_opts *opts, leaseq **out, char *errbuf,
                             size_t errbuf_len)
{
    if (errbuf != NULL && errbuf_len > 0)
        errbuf[0] = '\0';
    if (out == NULL)
        return connect_fail(LEASEQ_E_INVALID_ARGUMENT, errbuf, errbuf_len, "out is NULL");
    *out = NULL;
    char host[256], port[16];
    bool is_unix;
    if (!lqc_addr_parse(addr, host, sizeof host, port, sizeof port, &is_unix))
        return connect_fail(LEASEQ_E_INVALID_ARGUMENT, errbuf, errbuf_len,
                            "bad address (want HOST:PORT, [V6]:PORT or unix:/path)");
    leaseq_opts o = { 0 };
    if (opts != NULL)
        o = *opts;
    leaseq *c = calloc(1, sizeof *c); /* owner: caller, leaseq_close */
    if (c == NULL)
        return connect_fail(LEASEQ_E_NOMEM, errbuf, errbuf_len, "out of memory");
    lqc_conn_init(&c->conn);
    bool dec_ok = lq_arena_init(&c->dec, DEC_ARENA_CHUNK, DEC_ARENA_CAP) == 0;
    bool enc_ok = lq_arena_init(&c->enc, ENC_ARENA_CHUNK, ENC_ARENA_CAP) == 0;
    c->addr = strdup(addr); /* owner: handle */
    c->client_name = dup_or(o.client_name, "libleaseq");
    c->token = dup_or(o.token, "");
    c->worker_id = dup_or(o.worker_id, "");
    c->heartbeat_ms = o.heartbeat_ms;
    c->keep_leases_on_close = o.keep_leases_on_close;
    c->connect_timeout_ms = o.connect_timeout_ms ? o.connect_timeout_ms : 5000;
    c->max_payload_bytes = o.max_payload_bytes ? o.max_payload_bytes : LQ_PAYLOAD_MAX_DEFAULT;
    if (c->max_payload_bytes > LQC_FRAME_PAYLOAD_MAX)
        c->max_payload_bytes = LQC_FRAME_PAYLOAD_MAX;
    c->conn.max_frame_payload = c->max_payload_bytes;
    c->next_request_id = 1;
    c->rng = (lqc_now_ms() * 0x9E3779B97F4A7C15ull) ^ (uint64_t)(uintptr_t)c;
    if (c->rng == 0)
        c->rng = 1;
    if (!dec_ok || !enc_ok || !c->addr || !c->client_name || !c->token || !c->worker_id) {
        if (dec_ok)
            lq_arena_free(&c->dec);
        if (enc_ok)
            lq_arena_free(&c->enc);
        c->dec.chunk = c->enc.chunk = NULL;
        /* leaseq_close frees arenas again: harmless once their chunks are NULL */
        leaseq_close(c);
        return connect_fail(LEASEQ_E_NOMEM, errbuf, errbuf_len, "out of memory");
    }
    /* One attempt: a caller that connects wants to hear at once that the broker is not there. */
    leaseq_err e = say_hello(c, lqc_now_ms() + c->connect_timeout_ms);
    if (e != LEASEQ_OK) {
        lqc_end(c, e);
        connect_fail(e, errbuf, errbuf_len, c->errmsg);
        leaseq_close(c);
        return e;
    }
    lqc_end(c, LEASEQ_OK);
    *out = c;
    return LEASEQ_OK;
}

void leaseq_close(leaseq *c)
{
    if (c == NULL)
        return;
    lqc_conn_free(&c->conn);
    if (c->dec.chunk != NULL)
        lq_arena_free(&c->dec);
    if (c->enc.chunk != NULL)
        lq_arena_free(&c->enc);
    free(c->ebuf);
    free(c->addr);
    free(c->client_name);
    free(c->token);
    free(c->worker_id);
    free(c);
}

const char *leaseq_last_error(const leaseq *c)
{
    return c != NULL ? c->errmsg : "";
}

uint32_t leaseq_retry_after_ms(const leaseq *c)
{
    return c != NULL ? c->retry_after_ms : 0;
}

void leaseq_get_server_info(const leaseq *c, leaseq_server_info *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (c != NULL) {
        *out = c->srv;
        out->server_name = c->server_name;
    }
}
