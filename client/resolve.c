#include "resolve.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"

/* Shared by the caller and the lookup thread; the last of the two to let go frees it, together
 * with a result nobody collected. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC, like lqc_now_ms */
    int refs;          /* under mu */
    bool done;         /* under mu */
    int gai_rc;
    struct addrinfo *res;
    lqc_gai_fn gai;
    struct addrinfo hints;
    char host[256];
    char port[16];
} lookup;

static void lookup_unref(lookup *l)
{
    pthread_mutex_lock(&l->mu);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&l->mu);
    if (!last)
        return;
    if (l->res != NULL)
        freeaddrinfo(l->res);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static void *lookup_main(void *arg)
{
    lookup *l = arg;
    struct addrinfo *res = NULL;
    int rc = l->gai(l->host, l->port, &l->hints, &res);
    pthread_mutex_lock(&l->mu);
    l->gai_rc = rc;
    l->res = rc == 0 ? res : NULL;
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    return NULL;
}

static lqc_resolve_rc gai_failure(int rc, const char *host, char *err, size_t err_cap)
{
    if (rc == EAI_MEMORY) {
        snprintf(err, err_cap, "resolve %s: out of memory", host);
        return LQC_RESOLVE_NOMEM;
    }
    snprintf(err, err_cap, "resolve %s: %s", host, gai_strerror(rc));
    return LQC_RESOLVE_FAILED;
}

static lookup *lookup_new(lqc_gai_fn gai, const char *host, const char *port)
{
    if (strlen(host) >= sizeof(((lookup *)0)->host) || strlen(port) >= sizeof(((lookup *)0)->port))
        return NULL;
    lookup *l = calloc(1, sizeof *l); /* owner: shared by caller and thread, lookup_unref */
    if (l == NULL)
        return NULL;
    pthread_condattr_t ca;
    bool cv_ok = false;
    if (pthread_condattr_init(&ca) == 0) {
        cv_ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 && pthread_cond_init(&l->cv, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!cv_ok) {
        free(l);
        return NULL;
    }
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        pthread_cond_destroy(&l->cv);
        free(l);
        return NULL;
    }
    l->gai = gai;
    l->hints = (struct addrinfo){.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    memcpy(l->host, host, strlen(host) + 1);
    memcpy(l->port, port, strlen(port) + 1);
    return l;
}

lqc_resolve_rc lqc_resolve_with(lqc_gai_fn gai, const char *host, const char *port, uint64_t deadline_ms,
                                struct addrinfo **res, char *err, size_t err_cap)
{
    *res = NULL;
    /* Numeric addresses never touch DNS: no thread for the common 127.0.0.1 / [::1] case. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    int rc = gai(host, port, &hints, res);
    if (rc == 0)
        return LQC_RESOLVE_OK;
    if (rc != EAI_NONAME) /* EAI_NONAME: "not numeric", a name to look up */
        return gai_failure(rc, host, err, err_cap);

    lookup *l = lookup_new(gai, host, port);
    if (l == NULL) {
        snprintf(err, err_cap, "resolve %s: out of memory or name too long", host);
        return LQC_RESOLVE_NOMEM;
    }
    l->refs = 2; /* the caller and the thread */
    pthread_attr_t attr;
    pthread_t t;
    bool started = false;
    if (pthread_attr_init(&attr) == 0) {
        (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&t, &attr, lookup_main, l) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        l->refs = 1;
        lookup_unref(l);
        snprintf(err, err_cap, "resolve %s: cannot start the lookup thread", host);
        return LQC_RESOLVE_NOMEM;
    }

    struct timespec until = {.tv_sec = (time_t)(deadline_ms / 1000u), .tv_nsec = (long)(deadline_ms % 1000u) * 1000000L};
    pthread_mutex_lock(&l->mu);
    int w = 0;
    while (!l->done && w != ETIMEDOUT)
        w = pthread_cond_timedwait(&l->cv, &l->mu, &until);
    lqc_resolve_rc out = LQC_RESOLVE_OK;
    if (!l->done) {
        snprintf(err, err_cap, "resolve %s: timed out", host);
        out = LQC_RESOLVE_TIMEOUT;
    } else if (l->gai_rc != 0) {
        out = gai_failure(l->gai_rc, host, err, err_cap);
    } else {
        *res = l->res; /* now the caller's */
        l->res = NULL;
    }
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    return out;
}

lqc_resolve_rc lqc_resolve(const char *host, const char *port, uint64_t deadline_ms, struct addrinfo **res,
                           char *err, size_t err_cap)
{
    return lqc_resolve_with(getaddrinfo, host, port, deadline_ms, res, err, err_cap);
}
