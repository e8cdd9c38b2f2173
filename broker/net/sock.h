/* Listening sockets for the loop: TCP (HOST:PORT, IPv6 in brackets) and Unix. */
#ifndef LQ_NET_SOCK_H
#define LQ_NET_SOCK_H

#include <stddef.h>

#include "core/lq_err.h"

/* Binds and listens; *fd_out owned by the caller. bound gets "HOST:PORT" as bound. */
lq_err lq_sock_listen_tcp(const char *host_port, int *fd_out, char *bound, size_t bound_cap);
/* Replaces a stale socket file at path (never another kind of file). */
lq_err lq_sock_listen_unix(const char *path, int *fd_out);
/* TCP_NODELAY on an accepted TCP socket; a no-op on a Unix socket. */
void lq_sock_tune_accepted(int fd);

struct sockaddr;
/* "HOST:PORT", "[V6]:PORT", "unix" or "?" into out. */
void lq_sock_format_addr(const struct sockaddr *sa, char *out, size_t cap);

#endif
