/* A core on the stack with one plain session open, for unit tests that drive the core directly
 * (lanes, overload, admin, waiters). Define FX_SEED before including it: each test file keeps its own
 * seed so their random choices (jitter) stay independent. Header-only. */
#ifndef LQ_TEST_CORE_SESSION_FX_H
#define LQ_TEST_CORE_SESSION_FX_H

#include "core/core.h"

#ifndef FX_SEED
#error "define FX_SEED before including core_session_fx.h"
#endif

typedef struct {
    lq_core *c;
    lq_events ev;
    uint32_t session;
} fx;

static void fx_init(fx *f)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.seed = FX_SEED;
    assert_int_equal(lq_core_create(&cfg, &f->c), LQ_OK);
    lq_events_init(&f->ev);
    lq_session_opts o = {0};
    assert_int_equal(lq_core_session_open(f->c, 0, &o, &f->session), LQ_OK);
}

/* Checks the core's invariants before freeing it. */
static void fx_fini(fx *f)
{
    lq_core_check(f->c);
    lq_core_destroy(f->c);
    lq_events_free(&f->ev);
}

#endif
