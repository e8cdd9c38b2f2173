/* The simulator's store plumbing, done as the broker does it: one open batch filled from the
 * core's store events, a second one "in flight" (submitted to the committer, which here is a
 * plain call at a random later point), commit_done for each job put once its batch is durable,
 * then a tick. A crash drops both uncommitted batches, destroys the core, reopens the LMDB
 * store and rebuilds the core from it.
 *
 * Next to the real store the shell keeps a shadow of what committed batches wrote; recovery,
 * the store read-back and the final drain compare the store with it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

uint64_t sim_hash(const void *p, uint32_t len)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < len; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

void sim_fill_bytes(uint64_t seed, uint64_t id, uint64_t salt, uint8_t *buf, uint32_t len)
{
    uint64_t base = sim_mix64(seed ^ sim_mix64(id) ^ salt);
    for (uint32_t i = 0; i < len; i += 8) {
        uint64_t w = sim_mix64(base + i);
        uint32_t n = len - i < 8 ? len - i : 8;
        memcpy(buf + i, &w, n);
    }
}

uint32_t sim_headers_len(uint64_t seed, uint64_t id)
{
    return (uint32_t)(sim_mix64(seed * 3 + id) % (SIM_HEADERS_MAX + 1));
}

#define SALT_PAYLOAD 0x5041594cull
#define SALT_HEADERS 0x48445253ull

/* ---- batches ---------------------------------------------------------------------------- */

static void oplog_push(sim *s, sim_op op)
{
    sim_batch *b = s->open;
    if (b->n_ops == b->cap_ops) {
        b->cap_ops = b->cap_ops ? b->cap_ops * 2 : 256;
        sim_op *n = realloc(b->ops, b->cap_ops * sizeof *n); /* owner: sim_batch */
        SIM_CHECK(s, n != NULL, "out of memory");
        b->ops = n;
    }
    b->ops[b->n_ops++] = op;
}

void shell_batch_put(sim *s, const lq_job_rec *rec)
{
    uint8_t hdr[SIM_HEADERS_MAX];
    uint32_t hlen = sim_headers_len(s->seed, rec->id);
    SIM_CHECK(s, rec->payload_len <= SIM_PAYLOAD_MAX, "JOB_PUT payload_len %u", rec->payload_len);
    sim_fill_bytes(s->seed, rec->id, SALT_HEADERS, hdr, hlen);
    sim_fill_bytes(s->seed, rec->id, SALT_PAYLOAD, s->buf, rec->payload_len);
    lq_err e = lq_batch_put_job(s->open->b, rec, hdr, hlen, s->buf, rec->payload_len);
    SIM_CHECK(s, e == LQ_OK, "lq_batch_put_job(%llu): %s", (unsigned long long)rec->id, lq_err_name(e));
    oplog_push(s, (sim_op){.type = SOP_PUT, .state = rec->state, .attempts = rec->attempts, .id = rec->id,
                           .nb = rec->not_before_ms, .err_len = rec->last_error.len,
                           .err_hash = sim_hash(rec->last_error.ptr, rec->last_error.len)});
}

void shell_batch_update(sim *s, uint64_t id, uint8_t state, uint32_t attempts, uint64_t nb, lq_str err)
{
    lq_err e = lq_batch_update_job(s->open->b, id, state, attempts, nb, err);
    SIM_CHECK(s, e == LQ_OK, "lq_batch_update_job(%llu): %s", (unsigned long long)id, lq_err_name(e));
    oplog_push(s, (sim_op){.type = SOP_UPDATE, .state = state, .attempts = attempts, .id = id, .nb = nb,
                           .err_len = err.len, .err_hash = sim_hash(err.ptr, err.len)});
}

void shell_batch_delete(sim *s, uint64_t id, uint8_t final_state)
{
    lq_err e = lq_batch_delete_job(s->open->b, id);
    SIM_CHECK(s, e == LQ_OK, "lq_batch_delete_job(%llu): %s", (unsigned long long)id, lq_err_name(e));
    oplog_push(s, (sim_op){.type = SOP_DELETE, .state = final_state, .id = id});
}

static void batch_drop(sim_batch *b)
{
    lq_batch_reset(b->b);
    b->n_ops = 0;
}

void shell_submit(sim *s)
{
    if (s->inflight) return;
    uint64_t next_id = 0, next_seq = 0;
    lq_core_counters(s->core, &next_id, &next_seq);
    lq_batch_set_counters(s->open->b, next_id, next_seq);
    SIM_CHECK(s, lq_batch_count(s->open->b) >= s->open->n_ops, "lq_batch_count %u < %u operations queued",
              lq_batch_count(s->open->b), s->open->n_ops);
    s->inflight = s->open;
    s->open = s->inflight == &s->batch[0] ? &s->batch[1] : &s->batch[0];
    LQ_ASSERT(s->open->n_ops == 0);
}

/* Applies a committed batch to the shadow (without its puts when the map refused them). */
static void shadow_apply(sim *s, const sim_batch *b, bool puts_dropped)
{
    for (uint32_t i = 0; i < b->n_ops; i++) {
        const sim_op *op = &b->ops[i];
        sim_job *j = model_job(s, op->id);
        SIM_CHECK(s, j != NULL, "model: committed op for unknown job %llu", (unsigned long long)op->id);
        unsigned long long id = (unsigned long long)op->id;
        if (puts_dropped && op->type == SOP_PUT) continue;
        /* Early dispatch: the store skips changes of a job whose put it never got (dropped in
         * this batch, or refused in an earlier one); so does the shadow. */
        if (op->type != SOP_PUT && !j->durable && (j->unsynced || j->put_refused)) continue;
        switch (op->type) {
        case SOP_PUT:
            SIM_CHECK(s, !j->durable && !j->acked_put, "model: job %llu put twice", id);
            j->durable = true;
            j->acked_put = true;
            j->d_state = op->state;
            j->d_attempts = op->attempts;
            j->d_nb = op->nb;
            j->d_err_len = op->err_len;
            j->d_err_hash = op->err_hash;
            s->m.n_durable++;
            s->c.puts_committed++;
            break;
        case SOP_UPDATE:
            SIM_CHECK(s, j->durable, "the core updated job %llu, which is not stored", id);
            j->d_state = op->state;
            j->d_attempts = op->attempts;
            j->d_nb = op->nb;
            j->d_err_len = op->err_len;
            j->d_err_hash = op->err_hash;
            break;
        case SOP_DELETE:
            SIM_CHECK(s, j->durable, "the core deleted job %llu, which is not stored", id);
            SIM_CHECK(s, j->outcome == 0, "job %llu reached a second terminal outcome (%u after %u)", id, op->state,
                      j->outcome);
            j->durable = false;
            j->outcome = op->state;
            s->m.n_durable--;
            if (j->st == MJ_GONE_PENDING) model_set_state(s, j, MJ_GONE);
            if (op->state == LQ_STATE_DONE) s->c.acks_committed++;
            if (op->state == LQ_STATE_EXPIRED) s->c.expired++;
            break;
        }
    }
}

/* LQ_OK (maybe with *dropped: the map was full, the puts were left out) or
 * LQ_E_STORAGE_FULL (nothing applied); anything else fails the run. */
static lq_err commit_inflight(sim *s, bool *dropped)
{
    *dropped = false;
    lq_err e = lq_store_commit(s->store, s->inflight->b, dropped);
    if (e == LQ_E_STORAGE_FULL && s->small_map) {
        s->c.storage_full++;
        s->storage_full_run++;
        return e;
    }
    SIM_CHECK(s, e == LQ_OK, "lq_store_commit: %s (%s)", lq_err_name(e), lq_store_last_error(s->store));
    SIM_CHECK(s, !*dropped || s->small_map, "lq_store_commit dropped puts with a 1 GiB map");
    shadow_apply(s, s->inflight, *dropped);
    s->c.commits++;
    s->storage_full_run = 0;
    return LQ_OK;
}

void shell_complete(sim *s)
{
    if (!s->inflight) return;
    sim_batch *b = s->inflight;
    bool dropped = false;
    bool failed = commit_inflight(s, &dropped) != LQ_OK;
    s->inflight = NULL;
    if (failed) {
        /* As the broker does: nothing of the batch is stored, its puts are refused, and the
         * core, which already acted on its acks and nacks, goes on. A deleted job whose delete
         * failed stays in the store unseen until the next restart brings it back. A store that
         * refuses batches without puts again and again is wedged. */
        SIM_CHECK(s, s->storage_full_run < 50, "store wedged: %u commits in a row failed with STORAGE_FULL "
                  "(batch of %u ops: %s)", s->storage_full_run, b->n_ops, lq_store_last_error(s->store));
        sim_log(s, "commit refused: STORAGE_FULL (%u ops)", b->n_ops);
    }
    /* The producers may now be answered: each job put in the batch becomes dispatchable (or,
     * when the map was full, is refused and forgotten). The events this causes go to the open
     * batch, as in the broker. */
    for (uint32_t i = 0; i < b->n_ops; i++) {
        if (b->ops[i].type != SOP_PUT) continue;
        sim_job *j = model_job(s, b->ops[i].id);
        bool durable = !dropped && !failed;
        bool early = j->unsynced;
        lq_core_commit_done(s->core, s->now, j->id, durable, &s->ev);
        s->c.commit_done_calls++;
        if (early) {
            j->unsynced = false;
            if (durable) {
                SIM_CHECK(s, s->ev.n == 0, "commit_done of early job %llu emitted %zu events",
                          (unsigned long long)j->id, s->ev.n);
                continue;
            }
            j->put_refused = true;
            if (j->st == MJ_GONE_PENDING) {
                /* Finished before its batch failed: the core no longer holds it, its JOB_DELETE
                 * (in a later batch) is a no-op for the store, and it never existed. */
                SIM_CHECK(s, s->ev.n == 0, "commit_done(durable=false) of finished early job %llu emitted %zu events",
                          (unsigned long long)j->id, s->ev.n);
                model_set_state(s, j, MJ_VOID);
                s->c.puts_dropped++;
                continue;
            }
        }
        if (!durable) {
            /* Only its job waits may hear of it (CANCELLED), and an early job's revocation. */
            for (size_t k = 0; k < s->ev.n; k++)
                SIM_CHECK(s, s->ev.v[k].type == LQ_EV_JOB_WAIT_DONE || (early && s->ev.v[k].type == LQ_EV_REVOKED),
                          "commit_done(durable=false) of job %llu emitted event type %d", (unsigned long long)j->id,
                          (int)s->ev.v[k].type);
            SIM_CHECK(s, early || j->st == MJ_PENDING, "job %llu left PENDING before its put was refused",
                      (unsigned long long)j->id);
            sim_call call = {.kind = CALL_COMMIT_DONE, .job_id = j->id, .refused = true};
            sim_events_apply(s, &call);
            uint8_t st = 0;
            SIM_CHECK(s, lq_core_job_state(s->core, j->id, &st) == LQ_E_NOT_FOUND,
                      "job %llu still held (state %u) after commit_done(durable=false)", (unsigned long long)j->id, st);
            model_set_state(s, j, MJ_VOID);
            s->c.puts_dropped++;
            continue;
        }
        if (j->st == MJ_PENDING) model_set_state(s, j, MJ_WAITING);
        sim_call call = {.kind = CALL_COMMIT_DONE, .job_id = j->id};
        sim_events_apply(s, &call);
    }
    batch_drop(b);
    sim_tick(s);
}

/* The broker's storage watermark, played by the shell: LMDB cannot even delete in a map that
 * is full to the last page (a delete copies pages too), so new work must be refused while
 * there is still room for acks. */
bool shell_storage_high(sim *s)
{
    if (!s->small_map || s->no_watermark) return false;
    uint64_t used = 0, map = 0;
    lq_err e = lq_store_usage(s->store, &used, &map);
    SIM_CHECK(s, e == LQ_OK && map > 0, "lq_store_usage: %s", lq_err_name(e));
    SIM_CHECK(s, used <= map, "lq_store_usage: %llu bytes used of a %llu byte map", (unsigned long long)used,
              (unsigned long long)map);
    return used * 1000 >= map * SIM_WATERMARK_PERMILLE;
}

/* With no batch pending: jobs whose stored record lags the core because the batch holding
 * their change failed: deleted ones still stored, dead-lettered ones stored as live. */
uint32_t shell_diverged(const sim *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->m.n_jobs; i++) {
        const sim_job *j = &s->m.jobs[i];
        if ((j->st == MJ_GONE_PENDING && j->durable) || (j->st == MJ_DEAD && j->d_state != LQ_STATE_DEAD)) n++;
    }
    return n;
}

void shell_commit_all(sim *s)
{
    for (int i = 0; i < 16 && (s->inflight || s->open->n_ops > 0); i++) {
        shell_submit(s);
        shell_complete(s);
    }
    SIM_CHECK(s, !s->inflight && s->open->n_ops == 0, "commit_all: batches do not settle");
}

void shell_configure(sim *s)
{
    lq_lane_cfg img[2] = {{lq_str_c("api"), 9}, {lq_str_c("app"), 1}};
    lq_lane_cfg video[2] = {{lq_str_c("main"), 1}, {lq_str_c("bg"), 0}};
    lq_err e = lq_core_configure_queue(s->core, lq_str_c("img"), img, 2);
    SIM_CHECK(s, e == LQ_OK, "configure img: %s", lq_err_name(e));
    e = lq_core_configure_queue(s->core, lq_str_c("video"), video, 2);
    SIM_CHECK(s, e == LQ_OK, "configure video: %s", lq_err_name(e));
}

/* ---- comparing stored records with the shadow ------------------------------------------- */

static bool str_is(lq_str a, const char *c)
{
    size_t n = strlen(c);
    return a.len == n && (n == 0 || memcmp(a.ptr, c, n) == 0);
}

static void check_rec(sim *s, const sim_job *j, const lq_job_rec *r, const char *where)
{
    unsigned long long id = (unsigned long long)j->id;
    SIM_CHECK(s, j->durable, "%s: job %llu is stored, the shadow says it is not (outcome %u, state %u)", where, id,
              j->outcome, j->st);
    SIM_CHECK(s, r->id == j->id && r->seq == j->seq && r->priority == j->priority && r->enqueued_ms == j->enq_ms,
              "%s: job %llu id/seq/priority/enqueued differ (seq %llu vs %llu)", where, id,
              (unsigned long long)r->seq, (unsigned long long)j->seq);
    SIM_CHECK(s, r->deadline_ms == j->deadline && r->max_attempts == j->max_attempts &&
                     r->payload_len == j->payload_len,
              "%s: job %llu deadline/max_attempts/payload_len differ", where, id);
    SIM_CHECK(s, r->state == j->d_state && r->attempts == j->d_attempts && r->not_before_ms == j->d_nb,
              "%s: job %llu stored state %u attempts %u not_before %llu, committed %u %u %llu", where, id, r->state,
              r->attempts, (unsigned long long)r->not_before_ms, j->d_state, j->d_attempts,
              (unsigned long long)j->d_nb);
    SIM_CHECK(s, r->last_error.len == j->d_err_len && sim_hash(r->last_error.ptr, r->last_error.len) == j->d_err_hash,
              "%s: job %llu last_error differs (%u bytes, committed %u)", where, id, r->last_error.len, j->d_err_len);
    SIM_CHECK(s, str_is(r->queue, sim_queue_names[j->q]) && str_is(r->lane, sim_lane_names[j->q][j->l]) &&
                     str_is(r->tenant, sim_tenant_names[j->t]),
              "%s: job %llu queue/lane/tenant differ", where, id);
}

void shell_verify_job(sim *s, const sim_job *j)
{
    lq_job_view v;
    lq_err e = lq_store_get_job(s->store, j->id, &v);
    SIM_CHECK(s, e == LQ_OK, "store: job %llu (stored per the shadow) not readable: %s", (unsigned long long)j->id,
              lq_err_name(e));
    check_rec(s, j, &v.rec, "read-back");
    uint8_t hdr[SIM_HEADERS_MAX];
    uint32_t hlen = sim_headers_len(s->seed, j->id);
    sim_fill_bytes(s->seed, j->id, SALT_HEADERS, hdr, hlen);
    SIM_CHECK(s, v.headers_len == hlen && (hlen == 0 || memcmp(v.headers, hdr, hlen) == 0),
              "store: job %llu headers differ (%u bytes, expected %u)", (unsigned long long)j->id, v.headers_len, hlen);
    sim_fill_bytes(s->seed, j->id, SALT_PAYLOAD, s->buf, j->payload_len);
    SIM_CHECK(s, v.payload_len == j->payload_len && (j->payload_len == 0 || memcmp(v.payload, s->buf, j->payload_len) == 0),
              "store: job %llu payload differs (%u bytes, expected %u)", (unsigned long long)j->id, v.payload_len,
              j->payload_len);
    s->c.verified_payloads++;
}

/* Reads back up to max stored jobs (all with UINT32_MAX) and probes finished ones. */
void shell_verify_store(sim *s, uint32_t max)
{
    sim_model *m = &s->m;
    if (m->n_jobs == 0) return;
    lq_err e = lq_store_read_begin(s->store);
    SIM_CHECK(s, e == LQ_OK, "lq_store_read_begin: %s", lq_err_name(e));
    uint32_t start = (uint32_t)sim_rng_below(&s->rng, m->n_jobs), done = 0, probes = 0;
    for (uint32_t k = 0; k < m->n_jobs && done < max; k++) {
        const sim_job *j = &m->jobs[(start + k) % m->n_jobs];
        if (j->durable) {
            shell_verify_job(s, j);
            done++;
        } else if (j->outcome && probes < 16) {
            lq_job_view v;
            e = lq_store_get_job(s->store, j->id, &v);
            SIM_CHECK(s, e == LQ_E_NOT_FOUND, "store: finished job %llu (outcome %u) still readable: %s",
                      (unsigned long long)j->id, j->outcome, lq_err_name(e));
            probes++;
        }
    }
    lq_store_read_end(s->store);
}

/* ---- open, crash, recover --------------------------------------------------------------- */

typedef struct {
    sim *s;
    uint32_t loaded;
    uint64_t last_id;
    bool first;
} load_ctx;

static lq_err load_cb(void *ctx, const lq_job_rec *rec)
{
    load_ctx *lc = ctx;
    sim *s = lc->s;
    SIM_CHECK(s, lc->first || rec->id > lc->last_id, "load: job %llu after %llu (not in id order)",
              (unsigned long long)rec->id, (unsigned long long)lc->last_id);
    lc->first = false;
    lc->last_id = rec->id;
    sim_job *j = model_job(s, rec->id);
    SIM_CHECK(s, j != NULL, "load: store holds job %llu, which was never put", (unsigned long long)rec->id);
    check_rec(s, j, rec, "load");
    lq_err e = lq_core_restore_job(s->core, s->now, rec);
    SIM_CHECK(s, e == LQ_OK, "lq_core_restore_job(%llu): %s", (unsigned long long)rec->id, lq_err_name(e));
    lc->loaded++;
    return LQ_OK;
}

static void store_open(sim *s)
{
    lq_store_opts o = {.dir = s->dir, .map_size_bytes = s->small_map ? SIM_SMALL_MAP_BYTES : 1ull << 30,
                       .sync = LQ_SYNC_NONE};
    lq_err e = lq_store_open(&o, &s->store);
    SIM_CHECK(s, e == LQ_OK, "lq_store_open(%s): %s", s->dir, lq_err_name(e));
}

/* Creates a core and fills it from the store; the model must already hold the shadow. */
static void recover(sim *s)
{
    s->cfg.seed = sim_rng_next(&s->rng);
    lq_err e = lq_core_create(&s->cfg, &s->core);
    SIM_CHECK(s, e == LQ_OK, "lq_core_create: %s", lq_err_name(e));
    load_ctx lc = {.s = s, .first = true};
    uint64_t next_id = 0, next_seq = 0;
    e = lq_store_load(s->store, load_cb, &lc, &next_id, &next_seq);
    SIM_CHECK(s, e == LQ_OK, "lq_store_load: %s (%s)", lq_err_name(e), lq_store_last_error(s->store));
    SIM_CHECK(s, lc.loaded == s->m.n_durable, "load: %u jobs loaded, %u committed and not deleted", lc.loaded,
              s->m.n_durable);
    lq_core_restore_finish(s->core, s->now, next_id, next_seq);
    uint64_t cid = 0, cseq = 0;
    lq_core_counters(s->core, &cid, &cseq);
    SIM_CHECK(s, cid >= next_id && cseq >= next_seq, "restore_finish lowered the stored counters");
    shell_configure(s);
}

void shell_open(sim *s)
{
    strcpy(s->dir, "/tmp/leaseq-sim-XXXXXX");
    SIM_CHECK(s, mkdtemp(s->dir) != NULL, "mkdtemp failed");
    for (int i = 0; i < 2; i++) {
        s->batch[i].b = lq_batch_create(); /* owner: sim, shell_close */
        SIM_CHECK(s, s->batch[i].b != NULL, "lq_batch_create failed");
    }
    s->open = &s->batch[0];
    s->inflight = NULL;
    store_open(s);
    recover(s);
    sim_tick(s);
}

void shell_remove_dir(const char *dir)
{
    if (!dir[0]) return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char path[512];
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

void shell_close(sim *s)
{
    if (s->core) lq_core_destroy(s->core);
    s->core = NULL;
    if (s->store) lq_store_close(s->store);
    s->store = NULL;
    for (int i = 0; i < 2; i++) {
        if (s->batch[i].b) lq_batch_destroy(s->batch[i].b);
        free(s->batch[i].ops);
        s->batch[i] = (sim_batch){0};
    }
    shell_remove_dir(s->dir);
    s->dir[0] = 0;
}

/* The model after a restart: what the shadow says is stored comes back (leases are not
 * durable), what never reached the store is forgotten (it was never acknowledged). */
static void model_restart(sim *s)
{
    sim_model *m = &s->m;
    for (uint32_t i = 0; i < m->n_leases; i++) {
        sim_job *j = &m->jobs[m->leases[i]];
        model_stale_push(s, j->id, j->token);
    }
    m->n_leases = 0;
    memset(m->sessions, 0, sizeof m->sessions);
    memset(m->waiters, 0, sizeof m->waiters);
    health_reset(s);
    s->max_seq = 0;
    for (uint32_t i = 0; i < m->n_jobs; i++) {
        sim_job *j = &m->jobs[i];
        j->unsynced = false; /* durable or gone, below */
        if (j->st == MJ_VOID) continue;
        if (j->acked_put && j->seq > s->max_seq) s->max_seq = j->seq;
        if (j->durable) {
            j->st = j->d_state == LQ_STATE_DEAD ? MJ_DEAD : MJ_WAITING;
            j->nb = j->d_state == LQ_STATE_DELAYED ? j->d_nb : 0;
            j->deliveries = j->d_attempts;
            j->over_limit_ok = j->d_attempts >= j->max_attempts;
            j->token = 0;
            j->gone_final = 0;
        } else if (j->outcome) {
            j->st = MJ_GONE;
        } else {
            SIM_CHECK(s, !j->acked_put, "model: acknowledged job %llu lost from the shadow", (unsigned long long)j->id);
            j->st = MJ_VOID;
        }
    }
    model_recount(s);
    idem_after_crash(s);
}

void shell_crash(sim *s)
{
    s->c.crashes++;
    /* Half the time the batch in flight had reached the disk when the process died, but the
     * loop never heard: its producers were not answered, its jobs still come back. */
    bool dropped = false;
    if (s->inflight && sim_rng_chance(&s->rng, 500) && commit_inflight(s, &dropped) == LQ_OK)
        sim_log(s, "crash: the batch in flight committed (%u ops%s)", s->inflight->n_ops,
                dropped ? ", puts dropped" : "");
    uint32_t lost = s->open->n_ops + (s->inflight ? s->inflight->n_ops : 0);
    for (int i = 0; i < 2; i++) batch_drop(&s->batch[i]);
    s->inflight = NULL;
    s->open = &s->batch[0];
    lq_core_destroy(s->core);
    s->core = NULL;
    lq_events_clear(&s->ev);
    lq_store_close(s->store);
    s->store = NULL;
    /* The restart takes a moment of (simulated) time. */
    s->now += sim_rng_below(&s->rng, 3000);
    sim_log(s, "crash: %u uncommitted ops dropped, restarting at %llu", lost, (unsigned long long)s->now);
    model_restart(s);
    store_open(s);
    recover(s);
    sim_tick(s);
    model_check_full(s);
}
