/* The simulator's model of worker health (quarantine), from core.h: a worker id whose leases
 * were lost quarantine_losses times within quarantine_window_ms is suspect and gets no new
 * leases until its losses fall out of the window or an admin clears it. One loss = one
 * incident: a session stall that took leases, a connection closed while holding leases, or one
 * lease of the worker expiring.
 *
 * Losses are counted from what the core reports (REQUEUED for expiry, a tick's dead-lettering
 * of an expired lease, SESSION_STALLED, a close with leases), so the model knows at every
 * moment whether an id is suspect: the q-th most recent loss is younger than the window. */
#include <stdio.h>
#include <string.h>

#include "sim.h"

const char *sim_worker_name(int w, char *buf, size_t cap)
{
    snprintf(buf, cap, "gpu-%02d", w);
    return buf;
}

static int worker_index(lq_str id)
{
    char buf[16];
    for (int w = 0; w < SIM_WORKERS; w++) {
        sim_worker_name(w, buf, sizeof buf);
        if (id.len == strlen(buf) && memcmp(id.ptr, buf, id.len) == 0) return w;
    }
    return -1;
}

/* Suspect at time t: at least q losses within (t - window, t]. */
static bool suspect_at(const sim *s, const sim_worker *w, uint64_t t)
{
    uint32_t q = s->cfg.quarantine_losses;
    if (q == 0 || w->n_loss < q) return false;
    return w->loss[w->n_loss - q] + s->cfg.quarantine_window_ms > t;
}

bool health_worker_suspect(const sim *s, int w)
{
    return w >= 0 && suspect_at(s, &s->m.workers[w], s->now);
}

bool health_session_suspect(const sim *s, uint32_t session)
{
    for (int k = 0; k < SIM_SESSIONS_MAX; k++)
        if (s->m.sessions[k].live && s->m.sessions[k].id == session) return health_worker_suspect(s, s->m.sessions[k].worker);
    return false;
}

/* When the quarantine of w lifts by itself (LQ_TIME_NEVER if it is not suspect). */
uint64_t health_lift_time(const sim *s, int w)
{
    if (!health_worker_suspect(s, w)) return LQ_TIME_NEVER;
    const sim_worker *wk = &s->m.workers[w];
    return wk->loss[wk->n_loss - s->cfg.quarantine_losses] + s->cfg.quarantine_window_ms;
}

/* One loss incident of the worker of `session`, during the current call. */
void health_loss(sim *s, uint32_t session)
{
    int k = model_session_slot(s, session);
    if (k < 0 || s->m.sessions[k].worker < 0 || s->cfg.quarantine_losses == 0) return;
    sim_worker *w = &s->m.workers[s->m.sessions[k].worker];
    if (!w->loss_in_call) {
        w->suspect_before = suspect_at(s, w, s->now);
        w->loss_in_call = true;
    }
    if (w->n_loss == SIM_LOSSES_MAX) {
        memmove(w->loss, w->loss + 1, (SIM_LOSSES_MAX - 1) * sizeof w->loss[0]);
        w->n_loss--;
    }
    w->loss[w->n_loss++] = s->now;
    s->c.losses++;
}

void health_suspect_event(sim *s, const lq_ev *e)
{
    int w = worker_index(e->u.suspect.worker_id);
    SIM_CHECK(s, w >= 0, "WORKER_SUSPECT for unknown worker id '%.*s'", (int)e->u.suspect.worker_id.len,
              e->u.suspect.worker_id.ptr);
    SIM_CHECK(s, !s->m.workers[w].suspect_event, "two WORKER_SUSPECT events for worker %d in one call", w);
    SIM_CHECK(s, e->u.suspect.losses >= s->cfg.quarantine_losses, "WORKER_SUSPECT for worker %d with %u losses", w,
              e->u.suspect.losses);
    s->m.workers[w].suspect_event = true;
    s->c.suspects++;
}

/* At the end of each call's events: WORKER_SUSPECT exactly when a loss of this call made the
 * id suspect (the event and the loss may come in either order within the call). */
void health_end_call(sim *s)
{
    for (int i = 0; i < SIM_WORKERS; i++) {
        sim_worker *w = &s->m.workers[i];
        if (!w->loss_in_call && !w->suspect_event) continue;
        bool became = w->loss_in_call && !w->suspect_before && suspect_at(s, w, s->now);
        SIM_CHECK(s, became == w->suspect_event, "worker gpu-%02d: %s (losses in the window: model %u of %u needed)", i,
                  became ? "became suspect without WORKER_SUSPECT" : "WORKER_SUSPECT, but it did not become suspect",
                  w->n_loss, s->cfg.quarantine_losses);
        w->loss_in_call = w->suspect_event = false;
    }
}

void health_reset(sim *s)
{
    memset(s->m.workers, 0, sizeof s->m.workers);
}

/* Admin: lifts a quarantine and forgets the losses. */
void health_op_clear(sim *s)
{
    int w = (int)sim_rng_below(&s->rng, SIM_WORKERS);
    char name[16];
    bool attached = false;
    for (int k = 0; k < SIM_SESSIONS_MAX; k++) attached |= s->m.sessions[k].live && s->m.sessions[k].worker == w;
    lq_err e = lq_core_clear_suspect(s->core, s->now, lq_str_c(sim_worker_name(w, name, sizeof name)));
    /* An id with no open session may or may not still be known to the core. */
    SIM_CHECK(s, e == LQ_OK || (!attached && e == LQ_E_NOT_FOUND), "clear_suspect(%s) with %s: %s", name,
              attached ? "an open session" : "no open session", lq_err_name(e));
    if (e == LQ_E_NOT_FOUND) {
        /* The core forgets an id only once it has no loss left in the window. */
        const sim_worker *wk = &s->m.workers[w];
        for (uint32_t i = 0; i < wk->n_loss; i++)
            SIM_CHECK(s, wk->loss[i] + s->cfg.quarantine_window_ms <= s->now,
                      "clear_suspect(%s): NOT_FOUND, but it lost a lease at %llu, within the window", name,
                      (unsigned long long)wk->loss[i]);
    }
    s->m.workers[w].n_loss = 0;
    s->c.clears++;
}

/* ---- the core's view of its sessions ---------------------------------------------------- */

typedef struct {
    sim *s;
    uint32_t n;
} sessions_ctx;

static void session_cb(void *ctx, const lq_session_info *si)
{
    sessions_ctx *sc = ctx;
    sim *s = sc->s;
    int k = model_session_slot(s, si->session);
    SIM_CHECK(s, k >= 0, "lq_core_sessions lists session %u, which is not open", si->session);
    const sim_session *ss = &s->m.sessions[k];
    char name[16];
    const char *want = ss->worker >= 0 ? sim_worker_name(ss->worker, name, sizeof name) : "";
    SIM_CHECK(s, si->worker_id.len == strlen(want) && memcmp(si->worker_id.ptr, want, si->worker_id.len) == 0,
              "session %u: worker id '%.*s', opened as '%s'", ss->id, (int)si->worker_id.len, si->worker_id.ptr, want);
    SIM_CHECK(s, si->heartbeat_ms == ss->hb_ms && si->leases_held == ss->n_leases,
              "session %u: heartbeat %u leases %u, model %u %u", ss->id, si->heartbeat_ms, si->leases_held, ss->hb_ms,
              ss->n_leases);
    bool suspect = health_worker_suspect(s, ss->worker);
    SIM_CHECK(s, si->suspect == suspect, "session %u (gpu-%02d): core says suspect=%d, model %d (%u losses, until %llu)",
              ss->id, ss->worker, si->suspect, suspect, si->recent_losses, (unsigned long long)si->suspect_until_ms);
    if (suspect)
        SIM_CHECK(s, si->suspect_until_ms == health_lift_time(s, ss->worker),
                  "session %u: quarantine lifts at %llu, model %llu", ss->id, (unsigned long long)si->suspect_until_ms,
                  (unsigned long long)health_lift_time(s, ss->worker));
    sc->n++;
}

void health_check_sessions(sim *s)
{
    sessions_ctx sc = {s, 0};
    lq_core_sessions(s->core, s->now, session_cb, &sc);
    uint32_t live = 0;
    for (int k = 0; k < SIM_SESSIONS_MAX; k++) live += s->m.sessions[k].live;
    SIM_CHECK(s, sc.n == live, "lq_core_sessions lists %u sessions, %u are open", sc.n, live);
}
