/* Load generator driver: leaseq's native protocol (frames + protobuf-c, replies out of order,
 * matched by request id = slot << 16 | sub, sub 0 the take/enqueue, sub i+1 the ack of job i). */
#include <stdio.h>
#include <string.h>

#include "leaseq.pb-c.h"
#include "lg.h"
#include "proto/arena.h"
#include "proto/frame.h"

#define HELLO_ID UINT64_C(0xFFFFFFFF00000000)

static bool out_request(lg_conn *c, const Leaseq__Request *req, uint32_t payload_total)
{
    size_t mlen = leaseq__request__get_packed_size(req);
    if (mlen > LQ_FRAME_META_MAX || payload_total > LQ_PAYLOAD_MAX_DEFAULT) {
        fprintf(stderr, "loadgen: request too large (meta %zu, payload %u)\n", mlen, payload_total);
        return false;
    }
    if (!lg_out_reserve(c, LQ_FRAME_HEADER_BYTES + mlen))
        return false;
    uint8_t *p = c->out + c->out_len;
    lq_frame_header(p, (uint32_t)mlen, payload_total);
    leaseq__request__pack(req, p + LQ_FRAME_HEADER_BYTES);
    c->out_len += LQ_FRAME_HEADER_BYTES + mlen;
    return true;
}

static bool native_hello(lg_thread *t, lg_conn *c)
{
    char worker_id[32];
    snprintf(worker_id, sizeof worker_id, "loadgen-%llu-w%u", t->tid, c->index);
    Leaseq__Hello hello = LEASEQ__HELLO__INIT;
    hello.protocol_version = 1;
    hello.client_name = "loadgen";
    hello.worker_id = c->role == ROLE_PRODUCER ? "" : worker_id;
    /* The frozen worker promises heartbeats and then goes silent: the broker notices. */
    hello.heartbeat_ms = c->role == ROLE_FROZEN ? t->cfg->hb_ms : 0;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = HELLO_ID;
    req.body_case = LEASEQ__REQUEST__BODY_HELLO;
    req.hello = &hello;
    return out_request(c, &req, 0);
}

static bool native_produce(lg_thread *t, lg_conn *c, unsigned si, unsigned n, lg_class cls)
{
    const lg_config *cfg = t->cfg;
    Leaseq__EnqueueItem item = LEASEQ__ENQUEUE_ITEM__INIT;
    item.queue = (char *)cfg->queue;
    item.lane = cfg->lanes ? (cls == CLASS_API ? "api" : "app") : "";
    item.payload_len = cfg->size;
    Leaseq__EnqueueItem *items[LG_BATCH_MAX];
    for (unsigned i = 0; i < n; i++)
        items[i] = &item; /* every item is the same; protobuf-c packs each */
    Leaseq__Enqueue enq = LEASEQ__ENQUEUE__INIT;
    enq.n_items = n;
    enq.items = items;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = (uint64_t)si << 16;
    req.body_case = LEASEQ__REQUEST__BODY_ENQUEUE;
    req.enqueue = &enq;
    c->slots[si].pending = 1;
    if (!out_request(c, &req, cfg->size * n))
        return false;
    for (unsigned i = 0; i < n; i++)
        if (!lg_out_payload(t, c, cls, c->slots[si].t_sent_ns))
            return false;
    return true;
}

static bool native_take(lg_thread *t, lg_conn *c, unsigned si)
{
    const lg_config *cfg = t->cfg;
    char *queues[] = {(char *)cfg->queue};
    Leaseq__Dequeue dq = LEASEQ__DEQUEUE__INIT;
    dq.n_queues = 1;
    dq.queues = queues;
    dq.max_jobs = cfg->max_jobs;
    dq.wait_ms = cfg->mode == MODE_PROBE ? 0 : cfg->wait_ms;
    dq.lease_ms = cfg->lease_ms;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = (uint64_t)si << 16;
    req.body_case = LEASEQ__REQUEST__BODY_DEQUEUE;
    req.dequeue = &dq;
    return out_request(c, &req, 0);
}

static bool native_ack(lg_thread *t, lg_conn *c, unsigned si, unsigned job_i)
{
    const lg_handle *h = &c->slots[si].h[job_i];
    Leaseq__Ack ack = LEASEQ__ACK__INIT;
    ack.job_id = h->id;
    ack.lease_token = h->token;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = (uint64_t)si << 16 | (job_i + 1);
    req.body_case = LEASEQ__REQUEST__BODY_ACK;
    req.ack = &ack;
    return out_request(c, &req, 0);
}

static bool is_error(const Leaseq__Error *e) { return e && e->code != LEASEQ__ERROR_CODE__OK; }

static void note_error(lg_thread *t, const Leaseq__Error *e)
{
    const char *m = e->message ? e->message : "";
    lg_count_error(t, (unsigned)e->code, m, strlen(m));
}

static bool handle_reply(lg_thread *t, lg_conn *c, const Leaseq__Response *r, const lq_frame *f)
{
    const lg_config *cfg = t->cfg;
    if (r->request_id == HELLO_ID) {
        if (is_error(r->error) || r->body_case != LEASEQ__RESPONSE__BODY_HELLO) {
            fprintf(stderr, "loadgen: hello refused: %s\n", r->error && r->error->message ? r->error->message : "?");
            return false;
        }
        return lg_hello_done(t, c);
    }
    unsigned si = (unsigned)(r->request_id >> 16), sub = (unsigned)(r->request_id & 0xFFFF);
    if (si >= cfg->depth || !c->slots[si].busy) {
        fprintf(stderr, "loadgen: reply to an unknown request id %llu\n", (unsigned long long)r->request_id);
        return false;
    }
    bool failed = is_error(r->error);
    if (failed)
        note_error(t, r->error);
    if (sub > 0)
        return lg_ack_done(t, c, si, sub - 1, failed);
    if (c->role == ROLE_PRODUCER) {
        unsigned ok = 0;
        if (!failed && r->body_case == LEASEQ__RESPONSE__BODY_ENQUEUE)
            for (size_t i = 0; i < r->enqueue->n_results; i++) {
                const Leaseq__EnqueueResult *er = r->enqueue->results[i];
                if (is_error(er->error))
                    note_error(t, er->error);
                else
                    ok++;
            }
        return lg_enq_done(t, c, si, ok, failed);
    }
    if (failed || r->body_case != LEASEQ__RESPONSE__BODY_DEQUEUE)
        return lg_take_done(t, c, si, 0, true);
    const Leaseq__DequeueReply *dr = r->dequeue;
    uint64_t sum = 0;
    for (size_t i = 0; i < dr->n_jobs; i++)
        sum += dr->jobs[i]->payload_len;
    if (sum != f->payload_len || dr->n_jobs > cfg->max_jobs) {
        fprintf(stderr, "loadgen: dequeue reply with %zu jobs, payload lengths %llu != frame payload %u\n",
                dr->n_jobs, (unsigned long long)sum, f->payload_len);
        return false;
    }
    const uint8_t *p = f->payload;
    for (size_t i = 0; i < dr->n_jobs; i++) {
        lg_handle *h = &c->slots[si].h[i];
        h->id = dr->jobs[i]->job_id;
        h->token = dr->jobs[i]->lease_token;
        lg_job_leased(t, c, si, p, dr->jobs[i]->payload_len);
        p += dr->jobs[i]->payload_len;
    }
    return lg_take_done(t, c, si, (unsigned)dr->n_jobs, false);
}

static long native_parse(lg_thread *t, lg_conn *c)
{
    lq_arena *arena = t->arena;
    size_t off = 0;
    for (;;) {
        lq_frame f;
        size_t used = 0, need = 0;
        lq_frame_status st = lq_frame_parse(c->in + off, c->in_len - off, LQ_PAYLOAD_MAX_DEFAULT, &f, &used, &need);
        if (st == LQ_FRAME_NEED_MORE)
            break;
        if (st != LQ_FRAME_OK) {
            fprintf(stderr, "loadgen: garbled frame from the broker\n");
            return -1;
        }
        Leaseq__Response *r = leaseq__response__unpack(&arena->pb, f.meta_len, f.meta);
        if (!r)
            fprintf(stderr, "loadgen: undecodable response\n");
        bool ok = r != NULL && handle_reply(t, c, r, &f);
        lq_arena_reset(arena);
        if (!ok)
            return -1;
        off += used;
    }
    return (long)off;
}

const lg_driver lg_native_driver = {
    .name = "leaseq",
    .in_order = false,
    .hello = native_hello,
    .produce = native_produce,
    .take = native_take,
    .ack = native_ack,
    .parse = native_parse,
};
