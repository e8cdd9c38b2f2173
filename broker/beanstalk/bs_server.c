/* The beanstalk listener: connections, their input (processed strictly in order, as beanstalkd
 * does), replies, tubes as beanstalkd lists them, and parked reserves.
 *
 * Ordering: beanstalk has no request ids, so replies leave in command order. Commands whose
 * answer waits on a commit (put, delete, release, bury, kick, kick-job: bs_op_deferrable) are
 * all deferred to the open batch, so they are answered in order however many are pipelined;
 * any other command waits until those are answered. A parked reserve stops the connection's
 * commands until it is answered, like beanstalkd's wait state. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beanstalk/bs_int.h"
#include "core/lq_assert.h"
#include "log.h"

static lq_err grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return LQ_OK;
    uint32_t want = *cap ? *cap : 16;
    while (want < need)
        want *= 2;
    void *np = realloc(*p, (size_t)want * elem); /* owner: the struct holding *p */
    if (np == NULL)
        return LQ_E_NOMEM;
    *p = np;
    *cap = want;
    return LQ_OK;
}

/* ---- lanes: --beanstalk-lanes 0-1023:api,1024-:app ------------------------------------- */

static lq_err parse_lanes(bs_server *b, const char *spec)
{
    const char *p = spec;
    while (*p) {
        if (b->n_lanes == LQ_LANES_MAX)
            return LQ_E_INVALID_ARGUMENT;
        bs_lane_range *r = &b->lanes[b->n_lanes];
        char *end = NULL;
        unsigned long long lo = strtoull(p, &end, 10);
        if (end == p || *end != '-' || lo > UINT32_MAX)
            return LQ_E_INVALID_ARGUMENT;
        p = end + 1;
        unsigned long long hi = UINT32_MAX;
        if (*p != ':') {
            hi = strtoull(p, &end, 10);
            if (end == p || hi > UINT32_MAX || hi < lo)
                return LQ_E_INVALID_ARGUMENT;
            p = end;
        }
        if (*p != ':')
            return LQ_E_INVALID_ARGUMENT;
        p++;
        size_t n = strcspn(p, ",");
        if (n == 0 || n > LQ_NAME_MAX || !bs_name_ok(p, n))
            return LQ_E_INVALID_ARGUMENT;
        memcpy(r->lane, p, n);
        r->lane[n] = '\0';
        r->lo = (uint32_t)lo;
        r->hi = (uint32_t)hi;
        b->n_lanes++;
        p += n;
        if (*p == ',')
            p++;
    }
    return LQ_OK;
}

lq_err bs_create(lq_server *s, bs_server **out)
{
    *out = NULL;
    bs_server *b = calloc(1, sizeof *b); /* owner: server, bs_destroy */
    if (b == NULL)
        return LQ_E_NOMEM;
    b->s = s;
    b->max_job = s->cfg->beanstalk_max_job;
    b->started_ms = srv_now(s);
    if (s->cfg->beanstalk_lanes != NULL && parse_lanes(b, s->cfg->beanstalk_lanes) != LQ_OK) {
        LQ_LOGE("--beanstalk-lanes refused", "value=\"%s\"", s->cfg->beanstalk_lanes);
        free(b);
        return LQ_E_INVALID_ARGUMENT;
    }
    /* beanstalkd's "default" tube always exists */
    if (bs_tube_get(b, "default", 7, true) == LQ_NONE) {
        bs_destroy(b);
        return LQ_E_NOMEM;
    }
    b->tubes[0].using_ct = 0;
    *out = b;
    return LQ_OK;
}

void bs_destroy(bs_server *b)
{
    if (b == NULL)
        return;
    for (uint32_t i = 0; i < b->n_conns; i++) {
        bs_conn *c = b->conns[i];
        free(c->watch);
        free(c->held);
        free(c->in);
        free(c);
    }
    free(b->conns);
    free(b->waiters);
    free(b->tubes);
    free(b->order);
    free(b->info);
    free(b->info_free);
    lq_map_free(&b->info_by_job);
    free(b->scratch);
    free(b);
}

char *bs_scratch(bs_server *b, size_t need)
{
    if (need > b->scratch_cap) {
        char *p = realloc(b->scratch, need); /* owner: bs_server */
        if (p == NULL)
            return NULL;
        b->scratch = p;
        b->scratch_cap = need;
    }
    return b->scratch;
}

/* ---- tubes ------------------------------------------------------------------------------ */

uint32_t bs_tube_get(bs_server *b, const char *name, uint32_t len, bool create)
{
    for (uint32_t i = 0; i < b->n_order; i++) {
        bs_tube *t = &b->tubes[b->order[i]];
        if (t->len == len && memcmp(t->name, name, len) == 0)
            return b->order[i];
    }
    if (!create || b->n_order >= BS_TUBES_MAX)
        return LQ_NONE;
    uint32_t slot = LQ_NONE;
    for (uint32_t i = 0; i < b->n_tubes; i++) {
        if (!b->tubes[i].live) {
            slot = i;
            break;
        }
    }
    if (slot == LQ_NONE) {
        if (grow((void **)&b->tubes, &b->cap_tubes, b->n_tubes + 1, sizeof *b->tubes) != LQ_OK)
            return LQ_NONE;
        slot = b->n_tubes++;
    }
    uint32_t cap_order = b->n_order;
    uint32_t *no = realloc(b->order, ((size_t)cap_order + 1) * sizeof *no); /* owner: bs_server */
    if (no == NULL)
        return LQ_NONE;
    b->order = no;
    bs_tube *t = &b->tubes[slot];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, len);
    t->len = len;
    t->live = true;
    b->order[b->n_order++] = slot;
    return slot;
}

lq_str bs_tube_str(bs_server *b, uint32_t slot)
{
    return (lq_str){b->tubes[slot].name, b->tubes[slot].len};
}

void bs_tube_ref(bs_server *b, uint32_t slot, int using_delta, int watching_delta)
{
    bs_tube *t = &b->tubes[slot];
    t->using_ct = (uint32_t)((int64_t)t->using_ct + using_delta);
    t->watching_ct = (uint32_t)((int64_t)t->watching_ct + watching_delta);
    if (using_delta < 0 || watching_delta < 0)
        b->prune = true;
}

bool bs_tube_paused(bs_server *b, uint32_t slot, uint64_t now)
{
    bs_tube *t = &b->tubes[slot];
    if (t->pause_until_ms == 0)
        return false;
    if (t->pause_until_ms > now)
        return true;
    t->pause_until_ms = 0;
    t->pause_ms = 0;
    return false;
}

/* ---- output ----------------------------------------------------------------------------- */

void bs_send(lq_server *s, bs_conn *c, const void *data, size_t len)
{
    uint8_t *p = lq_loop_out_reserve(s->loop, c->sc->id, len);
    if (p == NULL)
        return;
    memcpy(p, data, len);
    lq_loop_out_commit(s->loop, c->sc->id, len);
}

void bs_sendf(lq_server *s, bs_conn *c, const char *fmt, ...)
{
    char buf[BS_LINE_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        bs_send(s, c, "INTERNAL_ERROR\r\n", 16);
        return;
    }
    bs_send(s, c, buf, (size_t)n);
}

void bs_send_job(lq_server *s, bs_conn *c, const char *word, uint64_t id, const uint8_t *body, uint32_t len)
{
    char head[96];
    int n = snprintf(head, sizeof head, "%s %llu %u\r\n", word, (unsigned long long)id, len);
    size_t total = (size_t)n + len + 2;
    uint8_t *p = lq_loop_out_reserve(s->loop, c->sc->id, total);
    if (p == NULL)
        return;
    memcpy(p, head, (size_t)n);
    if (len > 0)
        memcpy(p + n, body, len);
    memcpy(p + n + len, "\r\n", 2);
    lq_loop_out_commit(s->loop, c->sc->id, total);
}

void bs_send_ok(lq_server *s, bs_conn *c, const char *text, size_t len)
{
    char head[32];
    int n = snprintf(head, sizeof head, "OK %zu\r\n", len);
    size_t total = (size_t)n + len + 2;
    uint8_t *p = lq_loop_out_reserve(s->loop, c->sc->id, total);
    if (p == NULL)
        return;
    memcpy(p, head, (size_t)n);
    memcpy(p + n, text, len);
    memcpy(p + n + len, "\r\n", 2);
    lq_loop_out_commit(s->loop, c->sc->id, total);
}

void bs_defer(lq_server *s, bs_conn *c, uint8_t code, uint64_t job_id, uint32_t count, int32_t item)
{
    srv_deferred *d = srv_defer(s, c->sc, 0, DEF_BS, 0);
    if (d == NULL) {
        bs_send(s, c, "OUT_OF_MEMORY\r\n", 15);
        return;
    }
    d->nack_state = code;
    d->job_id = job_id;
    d->first = item >= 0 ? (uint32_t)item : count;
    d->n = item >= 0 ? 1 : 0;
    d->bytes = 0;
}

/* ---- per-job counters (beanstalkd's stats-job) ------------------------------------------ */

bs_jobinfo *bs_info(bs_server *b, uint64_t job_id, bool create)
{
    uint32_t i = lq_map_get(&b->info_by_job, job_id);
    if (i != LQ_NONE)
        return &b->info[i];
    if (!create)
        return NULL;
    if (b->n_info_free > 0) {
        i = b->info_free[--b->n_info_free];
    } else {
        if (grow((void **)&b->info, &b->cap_info, b->n_info + 1, sizeof *b->info) != LQ_OK)
            return NULL;
        uint32_t *nf = realloc(b->info_free, (size_t)b->cap_info * sizeof *nf); /* owner: bs_server */
        if (nf == NULL)
            return NULL;
        b->info_free = nf;
        i = b->n_info++;
    }
    if (lq_map_put(&b->info_by_job, job_id, i) != LQ_OK) {
        b->info_free[b->n_info_free++] = i;
        return NULL;
    }
    memset(&b->info[i], 0, sizeof b->info[i]);
    b->info[i].job_id = job_id;
    b->info[i].live = true;
    return &b->info[i];
}

void bs_info_drop(bs_server *b, uint64_t job_id)
{
    uint32_t i = lq_map_get(&b->info_by_job, job_id);
    if (i == LQ_NONE)
        return;
    lq_map_del(&b->info_by_job, job_id);
    b->info[i].live = false;
    b->info_free[b->n_info_free++] = i;
}

/* ---- reserved jobs of a connection ------------------------------------------------------ */

int32_t bs_held_find(const bs_conn *c, uint64_t job_id)
{
    for (uint32_t i = 0; i < c->n_held; i++) {
        if (c->held[i].job_id == job_id)
            return (int32_t)i;
    }
    return -1;
}

void bs_held_remove(bs_conn *c, uint32_t i)
{
    c->held[i] = c->held[--c->n_held];
}

/* Jobs whose TTR ran out were requeued by the core's tick: forget them, count the timeout. */
static void held_expire(lq_server *s, bs_conn *c, uint64_t now)
{
    bs_server *b = bs_of(s);
    for (uint32_t i = 0; i < c->n_held;) {
        bs_held *h = &c->held[i];
        lq_bs_job j;
        bool mine = lq_core_bs_job(s->core, h->job_id, &j) == LQ_OK && j.state == LQ_STATE_LEASED &&
                    j.session == c->sc->session && h->expires_ms > now;
        if (mine) {
            i++;
            continue;
        }
        if (h->expires_ms <= now) {
            b->timeouts++;
            bs_jobinfo *ji = bs_info(b, h->job_id, true);
            if (ji != NULL)
                ji->timeouts++;
        }
        bs_held_remove(c, i);
    }
}

bool bs_deadline_soon(const bs_conn *c, uint64_t now)
{
    for (uint32_t i = 0; i < c->n_held; i++) {
        if (c->held[i].expires_ms <= now + BS_DEADLINE_SOON_MS)
            return true;
    }
    return false;
}

/* ---- the store: body and TTR ------------------------------------------------------------- */

bool bs_read_job(lq_server *s, uint64_t job_id, const uint8_t **body, uint32_t *len, uint32_t *ttr_s)
{
    lq_job_view v;
    if (srv_get_job(s, job_id, &v) != LQ_OK)
        return false;
    *body = v.payload;
    *len = v.payload_len;
    *ttr_s = s->cfg->beanstalk_default_ttr_s;
    if (v.headers_len > 0) {
        lq_arena_reset(&s->arena);
        Leaseq__HeaderList *hl = leaseq__header_list__unpack(&s->arena.pb, v.headers_len, v.headers);
        for (size_t i = 0; hl != NULL && i < hl->n_headers; i++) {
            if (hl->headers[i]->key != NULL && strcmp(hl->headers[i]->key, BS_TTR_HEADER) == 0)
                *ttr_s = (uint32_t)strtoul(hl->headers[i]->value ? hl->headers[i]->value : "1", NULL, 10);
        }
    }
    if (*ttr_s == 0)
        *ttr_s = 1;
    return true;
}

/* ---- reserve ------------------------------------------------------------------------------ */

bool bs_try_reserve(lq_server *s, bs_conn *c, uint64_t now)
{
    bs_server *b = bs_of(s);
    /* beanstalkd's next_eligible_job: the lowest (priority, id) over the watched tubes */
    uint32_t best_tube = LQ_NONE;
    lq_bs_job best = {0};
    uint64_t best_id = 0;
    for (uint32_t i = 0; i < c->n_watch; i++) {
        uint32_t t = c->watch[i];
        if (bs_tube_paused(b, t, now))
            continue;
        uint64_t id = 0;
        lq_bs_job j;
        if (lq_core_bs_first(s->core, bs_tube_str(b, t), LQ_STATE_READY, &id) != LQ_OK ||
            lq_core_bs_job(s->core, id, &j) != LQ_OK)
            continue;
        if (best_tube == LQ_NONE || j.priority < best.priority || (j.priority == best.priority && id < best_id)) {
            best_tube = t;
            best = j;
            best_id = id;
        }
    }
    if (best_tube == LQ_NONE)
        return false;
    lq_str q = bs_tube_str(b, best_tube);
    lq_dequeue_req dr = {.queues = &q, .n_queues = 1, .max_jobs = 1, .session = c->sc->session};
    lq_lease l;
    uint32_t n = 0;
    bool parked = false;
    lq_err e = lq_core_dequeue(s->core, now, &dr, &l, &n, &parked, &s->ev);
    srv_apply_events(s, NULL);
    if (e != LQ_OK || n == 0)
        return false;
    const uint8_t *body = NULL;
    uint32_t len = 0, ttr_s = 0;
    if (!bs_read_job(s, l.job_id, &body, &len, &ttr_s)) {
        LQ_LOGE("reserved job missing from the store", "job=%llu", (unsigned long long)l.job_id);
        (void)lq_core_release(s->core, now, l.job_id, l.token, &s->ev);
        srv_apply_events(s, NULL);
        return false;
    }
    uint64_t ttr_ms = (uint64_t)ttr_s * 1000u;
    uint64_t expires = 0;
    (void)lq_core_extend(s->core, now, l.job_id, l.token, ttr_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ttr_ms,
                         &expires);
    if (c->n_held >= BS_HELD_MAX ||
        grow((void **)&c->held, &c->cap_held, c->n_held + 1, sizeof *c->held) != LQ_OK) {
        (void)lq_core_release(s->core, now, l.job_id, l.token, &s->ev);
        srv_apply_events(s, NULL);
        bs_send(s, c, "OUT_OF_MEMORY\r\n", 15);
        return true;
    }
    c->held[c->n_held++] = (bs_held){.job_id = l.job_id, .token = l.token, .expires_ms = expires,
                                     .ttr_ms = (uint32_t)(expires - now)};
    bs_send_job(s, c, "RESERVED", l.job_id, body, len);
    return true;
}

void bs_wait(lq_server *s, bs_conn *c, uint64_t until_ms)
{
    bs_server *b = bs_of(s);
    if (grow((void **)&b->waiters, &b->cap_waiters, b->n_waiters + 1, sizeof *b->waiters) != LQ_OK) {
        bs_send(s, c, "OUT_OF_MEMORY\r\n", 15);
        return;
    }
    c->waiting = true;
    c->wait_until_ms = until_ms;
    b->waiters[b->n_waiters++] = c;
    for (uint32_t i = 0; i < c->n_watch; i++)
        b->tubes[c->watch[i]].waiting_ct++;
}

static void unwait(bs_server *b, bs_conn *c)
{
    if (!c->waiting)
        return;
    c->waiting = false;
    for (uint32_t i = 0; i < c->n_watch; i++)
        b->tubes[c->watch[i]].waiting_ct--;
    for (uint32_t i = 0; i < b->n_waiters; i++) {
        if (b->waiters[i] == c) {
            memmove(&b->waiters[i], &b->waiters[i + 1], (b->n_waiters - i - 1) * sizeof *b->waiters);
            b->n_waiters--;
            break;
        }
    }
}

/* ---- input ------------------------------------------------------------------------------- */

bool bs_op_deferrable(bs_op op)
{
    return op == BS_OP_PUT || op == BS_OP_DELETE || op == BS_OP_RELEASE || op == BS_OP_BURY ||
           op == BS_OP_KICK || op == BS_OP_KICK_JOB;
}

static void drop_input(bs_conn *c, size_t n)
{
    c->in_len -= n;
    if (c->in_len > 0)
        memmove(c->in, c->in + n, c->in_len);
}

/* Runs the connection's buffered commands until one has to wait. */
static void process(lq_server *s, bs_conn *c)
{
    bs_server *b = bs_of(s);
    size_t off = 0;
    while (!c->waiting && !c->quit && off < c->in_len) {
        const uint8_t *p = c->in + off;
        size_t avail = c->in_len - off;
        if (c->discard > 0) {
            size_t n = avail < c->discard ? avail : (size_t)c->discard;
            c->discard -= n;
            off += n;
            if (c->discard == 0 && c->after_discard != NULL) {
                bs_send(s, c, c->after_discard, strlen(c->after_discard));
                c->after_discard = NULL;
            }
            continue;
        }
        if (c->skip_line) {
            bool done = false;
            size_t n = bs_skip_line(p, avail, &done);
            off += n;
            c->skip_line = !done;
            if (n == 0)
                break;
            continue;
        }
        bs_cmd cmd;
        size_t used = 0, need = 0;
        bs_status st = bs_parse(p, avail, b->max_job, &cmd, &used, &need);
        if (st == BS_NEED_MORE)
            break;
        bool defer = st == BS_CMD && bs_op_deferrable(cmd.op);
        if (c->sc->deferred > 0 && !defer)
            break; /* answers still wait on a commit: keep the order */
        uint64_t now = srv_now(s);
        if (st == BS_ERROR) {
            const char *line = bs_error_line(cmd.err);
            if (cmd.discard > 0)
                c->after_discard = line;
            else
                bs_send(s, c, line, strlen(line));
            c->discard = cmd.discard;
            c->skip_line = cmd.skip_line;
        } else {
            bs_command(s, c, &cmd, now);
        }
        off += used;
    }
    if (off > 0)
        drop_input(c, off);
    if (c->quit)
        lq_loop_close(s->loop, c->sc->id, true);
    if (b->prune)
        bs_prune_tubes(s);
}

void bs_on_open(lq_server *s, srv_conn *sc)
{
    bs_server *b = bs_of(s);
    bs_conn *c = calloc(1, sizeof *c); /* owner: bs_server (conns), freed in bs_on_close */
    lq_session_opts so = {0};
    if (c == NULL || grow((void **)&b->conns, &b->cap_conns, b->n_conns + 1, sizeof *b->conns) != LQ_OK ||
        grow((void **)&c->watch, &c->cap_watch, 1, sizeof *c->watch) != LQ_OK ||
        lq_core_session_open(s->core, srv_now(s), &so, &sc->session) != LQ_OK) {
        if (c != NULL)
            free(c->watch);
        free(c);
        LQ_LOGW("closing beanstalk connection: out of memory or sessions", "connections=%u", b->n_conns);
        lq_loop_close(s->loop, sc->id, false);
        return;
    }
    c->sc = sc;
    sc->bs = c;
    sc->hello_done = true; /* closing it closes its session */
    uint32_t def = bs_tube_get(b, "default", 7, true);
    c->use = def;
    c->watch[c->n_watch++] = def;
    bs_tube_ref(b, def, 1, 1);
    c->conn_index = b->n_conns;
    b->conns[b->n_conns++] = c;
    b->total_conns++;
}

size_t bs_on_data(lq_server *s, srv_conn *sc, const uint8_t *data, size_t len, size_t *need)
{
    bs_server *b = bs_of(s);
    bs_conn *c = bs_conn_of(sc);
    *need = 0;
    if (c == NULL)
        return len;
    /* Input is copied out so the connection can go on later (after a commit) on its own. */
    size_t cap = (size_t)b->max_job + 2 * BS_LINE_MAX + BS_IN_CAP_EXTRA;
    if (c->in_len + len > cap + BS_IN_CAP_EXTRA) {
        LQ_LOGW("closing beanstalk connection: unprocessed input over the cap", "bytes=%zu", c->in_len + len);
        lq_loop_close(s->loop, sc->id, false);
        return len;
    }
    if (c->in_len + len > c->in_cap) {
        size_t want = c->in_cap ? c->in_cap : 512; /* idle connections stay small, as the loop's */
        while (want < c->in_len + len)
            want *= 2;
        uint8_t *p = realloc(c->in, want); /* owner: bs_conn */
        if (p == NULL) {
            lq_loop_close(s->loop, sc->id, false);
            return len;
        }
        b->in_bytes = b->in_bytes - c->in_cap + want;
        c->in = p;
        c->in_cap = want;
    }
    if (len > 0) /* c->in may be NULL (freed while idle) */
        memcpy(c->in + c->in_len, data, len);
    c->in_len += len;
    if (c->in_len > BS_IN_KEEP_BYTES)
        c->in_big_ms = srv_now(s);
    process(s, c);
    /* Reading waits while a large backlog is buffered (a reserve parked, commits pending). */
    bool full = c->in_len > cap;
    if (full != sc->paused && (full || sc->deferred == 0)) {
        sc->paused = full;
        lq_loop_pause(s->loop, sc->id, full);
    }
    return len;
}

void bs_on_close(lq_server *s, srv_conn *sc)
{
    bs_server *b = bs_of(s);
    bs_conn *c = bs_conn_of(sc);
    if (c == NULL)
        return;
    unwait(b, c);
    bs_tube_ref(b, c->use, -1, 0);
    for (uint32_t i = 0; i < c->n_watch; i++)
        bs_tube_ref(b, c->watch[i], 0, -1);
    if (c->producer)
        c->producer = false;
    uint32_t k = c->conn_index;
    b->conns[k] = b->conns[--b->n_conns];
    b->conns[k]->conn_index = k;
    free(c->watch);
    free(c->held);
    LQ_ASSERT(b->in_bytes >= c->in_cap);
    b->in_bytes -= c->in_cap;
    free(c->in);
    free(c);
    sc->bs = NULL;
    /* its leases go back to ready in server.c's on_close (lq_core_session_close) */
}

void bs_deferred_done(lq_server *s, const srv_deferred *d, bool ok, lq_err item_err)
{
    srv_conn *sc = lq_loop_user(s->loop, d->conn);
    bs_conn *c = sc != NULL ? bs_conn_of(sc) : NULL;
    if (c == NULL)
        return;
    bool stored = ok && item_err == LQ_OK;
    switch (d->nack_state) {
    case BS_R_INSERTED:
        if (stored)
            bs_sendf(s, c, "INSERTED %llu\r\n", (unsigned long long)d->job_id);
        else
            bs_send(s, c, "OUT_OF_MEMORY\r\n", 15); /* beanstalkd's word for "try again later" */
        break;
    case BS_R_NOT_FOUND: bs_send(s, c, "NOT_FOUND\r\n", 11); break;
    case BS_R_DRAINING: bs_send(s, c, "DRAINING\r\n", 10); break;
    case BS_R_OOM: bs_send(s, c, "OUT_OF_MEMORY\r\n", 15); break;
    case BS_R_DELETED: bs_send(s, c, stored ? "DELETED\r\n" : "INTERNAL_ERROR\r\n", stored ? 9 : 16); break;
    case BS_R_RELEASED: bs_send(s, c, stored ? "RELEASED\r\n" : "INTERNAL_ERROR\r\n", stored ? 10 : 16); break;
    case BS_R_BURIED: bs_send(s, c, stored ? "BURIED\r\n" : "INTERNAL_ERROR\r\n", stored ? 8 : 16); break;
    case BS_R_KICKED: bs_send(s, c, stored ? "KICKED\r\n" : "INTERNAL_ERROR\r\n", stored ? 8 : 16); break;
    case BS_R_KICKED_N:
        if (stored)
            bs_sendf(s, c, "KICKED %u\r\n", d->first);
        else
            bs_send(s, c, "INTERNAL_ERROR\r\n", 16);
        break;
    default: break;
    }
    if (sc->deferred == 0 && c->in_len > 0)
        process(s, c);
    if (sc->paused && sc->deferred == 0 && c->in_len <= (size_t)bs_of(s)->max_job + 2 * BS_LINE_MAX) {
        sc->paused = false;
        lq_loop_pause(s->loop, sc->id, false);
    }
}

/* ---- the loop's turn ----------------------------------------------------------------------- */

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

size_t bs_buffer_bytes(const bs_server *b)
{
    return b != NULL ? b->in_bytes : 0;
}

uint64_t bs_before_sleep(lq_server *s, uint64_t now)
{
    bs_server *b = bs_of(s);
    uint64_t next = LQ_TIME_NEVER;
    for (uint32_t i = 0; i < b->n_conns; i++) {
        bs_conn *c = b->conns[i];
        if (c->in_len == 0 && c->in_cap > BS_IN_KEEP_BYTES && now - c->in_big_ms >= BS_IN_IDLE_MS) {
            b->in_bytes -= c->in_cap; /* the next input starts a new copy at 512 bytes */
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
        if (c->n_held == 0)
            continue;
        held_expire(s, c, now);
        for (uint32_t k = 0; k < c->n_held; k++) {
            next = min_u64(next, c->held[k].expires_ms);
            if (c->waiting)
                next = min_u64(next, c->held[k].expires_ms - BS_DEADLINE_SOON_MS);
        }
    }
    /* parked reserves in arrival order: a job, DEADLINE_SOON, or TIMED_OUT */
    for (uint32_t i = 0; i < b->n_waiters;) {
        bs_conn *c = b->waiters[i];
        bool answered = true;
        if (bs_try_reserve(s, c, now)) {
        } else if (bs_deadline_soon(c, now)) {
            bs_send(s, c, "DEADLINE_SOON\r\n", 15);
        } else if (c->wait_until_ms <= now) {
            bs_send(s, c, "TIMED_OUT\r\n", 11);
        } else {
            answered = false;
            next = min_u64(next, c->wait_until_ms);
        }
        if (!answered) {
            i++;
            continue;
        }
        unwait(b, c);
        if (c->in_len > 0)
            process(s, c);
        i = 0; /* the list changed under us; answered ones are gone */
    }
    for (uint32_t i = 0; i < b->n_order; i++) {
        bs_tube *t = &b->tubes[b->order[i]];
        if (t->pause_until_ms != 0)
            next = min_u64(next, t->pause_until_ms);
    }
    return next;
}
