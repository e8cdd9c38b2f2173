/* Name resolution that never waits past a deadline (internal to libleaseq).
 *
 * getaddrinfo has no timeout: a DNS name whose server does not answer holds the caller for the
 * resolver's own retries (5 s x attempts x servers). Numeric addresses are resolved in place;
 * any other name is looked up on a short-lived thread while the caller waits at most until its
 * deadline. A lookup that outlives its caller is abandoned and cleans up after itself. */
#ifndef LQC_RESOLVE_H
#define LQC_RESOLVE_H

#include <netdb.h>
#include <stdint.h>

typedef enum {
    LQC_RESOLVE_OK = 0,
    LQC_RESOLVE_TIMEOUT, /* the deadline passed first */
    LQC_RESOLVE_FAILED,  /* the name does not resolve (message in err) */
    LQC_RESOLVE_NOMEM,   /* no memory or no thread for the lookup */
} lqc_resolve_rc;

/* Same contract as getaddrinfo; a seam so tests can stand in a resolver that hangs. */
typedef int (*lqc_gai_fn)(const char *host, const char *port, const struct addrinfo *hints,
                          struct addrinfo **res);

/* TCP addresses of host:port, by deadline_ms (lqc_now_ms clock). On OK *res is the caller's, to
 * free with freeaddrinfo; otherwise err holds why. */
lqc_resolve_rc lqc_resolve(const char *host, const char *port, uint64_t deadline_ms, struct addrinfo **res,
                           char *err, size_t err_cap);
lqc_resolve_rc lqc_resolve_with(lqc_gai_fn gai, const char *host, const char *port, uint64_t deadline_ms,
                                struct addrinfo **res, char *err, size_t err_cap);

#endif
