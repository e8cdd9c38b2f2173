#include "conn.h"
#include "resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RBUF_INITIAL (64u << 10)
/* While sending, unasked-for reads may grow the buffer only this far: enough for the replies
 * of every pipelined frame in flight, small enough that a flooding peer costs little. */
#define RBUF_READAHEAD_MAX (1u << 20)
/* Keep a grown buffer across calls only up to this size. */
#define RBUF_KEEP_MAX (1u << 20)

_Noreturn void lqc_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "libleaseq: assertion failed: %s at %s:%d\n", expr, file, line);
    fflush(stderr);
    abort();
}

uint64_t lqc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void set_err(lqc_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(lqc_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

/* Milliseconds left before deadline_ms, or -1 when it has passed. */
static int remaining_ms(uint64_t deadline_ms)
{
    uint64_t now = lqc_now_ms();
    if (now >= deadline_ms)
        return -1;
    uint64_t left = deadline_ms - now;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits for events on fd until deadline_ms. Returns OK when an event is ready. */
static lqc_io wait_fd(lqc_conn *c, int fd, short events, uint64_t deadline_ms, short *revents)
{
    for (;;) {
        int left = remaining_ms(deadline_ms);
        if (left < 0) {
            set_err(c, "timed out");
            return LQC_IO_TIMEOUT;
        }
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, left);
        if (r > 0) {
            *revents = p.revents;
            return LQC_IO_OK;
        }
        if (r < 0 && errno != EINTR) {
            set_err(c, "poll: %s", strerror(errno));
            return LQC_IO_CLOSED;
        }
        /* r == 0: loop re-checks the deadline, which has passed or is within a millisecond */
    }
}

bool lqc_addr_parse(const char *addr, char *host, size_t host_cap, char *port, size_t port_cap,
                    bool *is_unix)
{
    if (addr == NULL || addr[0] == '\0')
        return false;
    if (strncmp(addr, "unix:", 5) == 0) {
        size_t n = strlen(addr + 5);
        if (n == 0 || n >= host_cap || n >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return false;
        memcpy(host, addr + 5, n + 1);
        port[0] = '\0';
        *is_unix = true;
        return true;
    }
    *is_unix = false;
    const char *h = addr, *colon;
    size_t hlen;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return false;
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || memchr(addr, ':', (size_t)(colon - addr)) != NULL)
            return false; /* bare IPv6 needs brackets: "::1:7420" is ambiguous */
        hlen = (size_t)(colon - addr);
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (hlen == 0 || hlen >= host_cap || plen == 0 || plen >= port_cap)
        return false;
    for (size_t i = 0; i < plen; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, p, plen + 1);
    return true;
}

void lqc_conn_init(lqc_conn *c)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->max_frame_payload = LQ_PAYLOAD_MAX_DEFAULT;
    pthread_mutex_init(&c->wlock, NULL);
}

/* fd changes under wlock, so a frame of the second thread never goes to a closed socket or,
 * worse, to a new socket that reused the number before its hello. */
static void set_fd(lqc_conn *c, int fd)
{
    pthread_mutex_lock(&c->wlock);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = fd;
    c->greeted = false;
    pthread_mutex_unlock(&c->wlock);
}

void lqc_conn_set_greeted(lqc_conn *c)
{
    pthread_mutex_lock(&c->wlock);
    c->greeted = c->fd >= 0;
    pthread_mutex_unlock(&c->wlock);
}

bool lqc_conn_is_open(const lqc_conn *c)
{
    return c->fd >= 0;
}

void lqc_conn_close(lqc_conn *c)
{
    if (c->fd >= 0)
        set_fd(c, -1);
    c->rstart = c->rend = 0;
}

void lqc_conn_free(lqc_conn *c)
{
    lqc_conn_close(c);
    free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = 0;
    pthread_mutex_destroy(&c->wlock);
}

/* One non-blocking connect to sa, finished before deadline_ms. Returns the socket or -1. */
static int connect_one(lqc_conn *c, int family, const struct sockaddr *sa, socklen_t salen,
                       uint64_t deadline_ms, const char *what)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(c, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, sa, salen) != 0) {
        if (errno != EINPROGRESS) {
            set_err(c, "connect %s: %s", what, strerror(errno));
            close(fd);
            return -1;
        }
        short rev = 0;
        lqc_io io = wait_fd(c, fd, POLLOUT, deadline_ms, &rev);
        if (io != LQC_IO_OK) {
            set_err(c, "connect %s: %s", what, io == LQC_IO_TIMEOUT ? "timed out" : c->err);
            close(fd);
            return -1;
        }
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
            soerr = errno;
        if (soerr != 0) {
            set_err(c, "connect %s: %s", what, strerror(soerr));
            close(fd);
            return -1;
        }
    }
    if (family != AF_UNIX) {
        /* Requests are small and latency-bound; Nagle would hold each one for an ACK. */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

lqc_io lqc_conn_open(lqc_conn *c, const char *addr, uint64_t deadline_ms)
{
    lqc_conn_close(c);
    char host[256], port[16];
    bool is_unix;
    if (!lqc_addr_parse(addr, host, sizeof host, port, sizeof port, &is_unix)) {
        set_err(c, "bad address \"%s\" (want HOST:PORT, [V6]:PORT or unix:/path)", addr);
        return LQC_IO_CLOSED;
    }
    if (remaining_ms(deadline_ms) < 0) {
        set_err(c, "connect %s: timed out", addr);
        return LQC_IO_TIMEOUT;
    }
    int fd = -1;
    if (is_unix) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        memcpy(sun.sun_path, host, strlen(host) + 1);
        fd = connect_one(c, AF_UNIX, (const struct sockaddr *)&sun, sizeof sun, deadline_ms, addr);
    } else {
        struct addrinfo *res = NULL; /* owner: freed below */
        char why[sizeof c->err];
        switch (lqc_resolve(host, port, deadline_ms, &res, why, sizeof why)) {
        case LQC_RESOLVE_OK: break;
        case LQC_RESOLVE_TIMEOUT: set_err(c, "%s", why); return LQC_IO_TIMEOUT;
        case LQC_RESOLVE_NOMEM: set_err(c, "%s", why); return LQC_IO_NOMEM;
        case LQC_RESOLVE_FAILED: set_err(c, "%s", why); return LQC_IO_CLOSED;
        }
        for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
            fd = connect_one(c, ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline_ms, addr);
        freeaddrinfo(res);
    }
    if (fd < 0)
        return remaining_ms(deadline_ms) < 0 ? LQC_IO_TIMEOUT : LQC_IO_CLOSED;
    set_fd(c, fd);
    if (c->rbuf == NULL) {
        c->rbuf = malloc(RBUF_INITIAL); /* owner: conn, freed by lqc_conn_free */
        if (c->rbuf == NULL) {
            lqc_conn_close(c);
            set_err(c, "out of memory");
            return LQC_IO_NOMEM;
        }
        c->rcap = RBUF_INITIAL;
    }
    return LQC_IO_OK;
}

lqc_io lqc_conn_check_idle(lqc_conn *c)
{
    if (c->fd < 0) {
        set_err(c, "not connected");
        return LQC_IO_CLOSED;
    }
    if (c->rend > c->rstart) {
        set_err(c, "unexpected data from broker");
        return LQC_IO_PROTOCOL;
    }
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    if (poll(&p, 1, 0) <= 0)
        return LQC_IO_OK;
    uint8_t b;
    ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return LQC_IO_OK;
    if (r > 0) {
        set_err(c, "unexpected data from broker");
        return LQC_IO_PROTOCOL;
    }
    set_err(c, "connection closed by broker");
    return LQC_IO_CLOSED;
}

/* Makes room for `want` bytes past rend, compacting and growing up to `limit` total bytes.
 * Returns the room obtained (0 only when limit is reached or memory is short). */
static size_t make_room(lqc_conn *c, size_t want, size_t limit)
{
    if (c->rstart > 0 && c->rcap - c->rend < want) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
    }
    if (c->rcap - c->rend < want && c->rcap < limit) {
        size_t ncap = c->rcap * 2;
        if (ncap < c->rend + want)
            ncap = c->rend + want;
        if (ncap > limit)
            ncap = limit;
        uint8_t *n = realloc(c->rbuf, ncap); /* owner: conn */
        if (n != NULL) {
            c->rbuf = n;
            c->rcap = ncap;
        }
    }
    return c->rcap - c->rend;
}

/* Reads what the socket has into the buffer. OK with *got 0 when nothing is ready. */
static lqc_io recv_some(lqc_conn *c, size_t room, size_t *got)
{
    *got = 0;
    for (;;) {
        ssize_t r = recv(c->fd, c->rbuf + c->rend, room, MSG_DONTWAIT);
        if (r > 0) {
            c->rend += (size_t)r;
            *got = (size_t)r;
            return LQC_IO_OK;
        }
        if (r == 0) {
            set_err(c, "connection closed by broker");
            return LQC_IO_CLOSED;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return LQC_IO_OK;
        set_err(c, "recv: %s", strerror(errno));
        return LQC_IO_CLOSED;
    }
}

static lqc_io send_locked(lqc_conn *c, struct iovec *iov, int iovcnt, uint64_t deadline_ms, bool *wrote_any)
{
    if (c->fd < 0) {
        set_err(c, "not connected");
        return LQC_IO_CLOSED;
    }
    while (iovcnt > 0) {
        if (iov->iov_len == 0) {
            iov++;
            iovcnt--;
            continue;
        }
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)(iovcnt < IOV_MAX ? iovcnt : IOV_MAX) };
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            *wrote_any = true;
            size_t left = (size_t)w;
            while (left > 0 && left >= iov->iov_len) {
                left -= iov->iov_len;
                iov++;
                iovcnt--;
            }
            if (left > 0) {
                iov->iov_base = (uint8_t *)iov->iov_base + left;
                iov->iov_len -= left;
            }
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            set_err(c, "send: %s", strerror(errno));
            return LQC_IO_CLOSED;
        }
        size_t room = make_room(c, 4096, RBUF_READAHEAD_MAX > c->rcap ? RBUF_READAHEAD_MAX : c->rcap);
        short rev = 0;
        lqc_io io = wait_fd(c, c->fd, (short)(POLLOUT | (room > 0 ? POLLIN : 0)), deadline_ms, &rev);
        if (io != LQC_IO_OK)
            return io;
        if ((rev & POLLIN) && room > 0) {
            size_t got;
            io = recv_some(c, room, &got);
            if (io != LQC_IO_OK)
                return io;
        }
        /* POLLERR/POLLHUP: the next sendmsg reports the error */
    }
    return LQC_IO_OK;
}

lqc_io lqc_conn_send(lqc_conn *c, struct iovec *iov, int iovcnt, uint64_t deadline_ms, bool *wrote_any)
{
    *wrote_any = false;
    /* Held for the whole frame, waits included: a heartbeat between two halves of our frame
     * would garble the stream. Uncontended in the common case, so cheap. */
    pthread_mutex_lock(&c->wlock);
    lqc_io io = send_locked(c, iov, iovcnt, deadline_ms, wrote_any);
    pthread_mutex_unlock(&c->wlock);
    return io;
}

lqc_io lqc_conn_send_shared(lqc_conn *c, const void *frame, size_t len, uint64_t deadline_ms)
{
    /* pthread_mutex_timedlock counts on the wall clock (pthread_mutex_clocklock would not, but
     * ThreadSanitizer does not know it). A clock jump only makes this one wait end early
     * (a beat skipped) or late (still bounded: the owner lets go when its write ends). */
    int left_ms = remaining_ms(deadline_ms);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    if (left_ms > 0) {
        until.tv_sec += left_ms / 1000;
        until.tv_nsec += (long)(left_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    if (pthread_mutex_timedlock(&c->wlock, &until) != 0)
        return LQC_IO_TIMEOUT; /* the owner is busy writing a big frame: skip this one */
    lqc_io io = LQC_IO_OK;
    const uint8_t *p = frame;
    size_t left = len;
    if (c->fd < 0 || !c->greeted) {
        io = LQC_IO_CLOSED;
        goto out;
    }
    while (left > 0) {
        ssize_t w = send(c->fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            left -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            io = LQC_IO_CLOSED; /* the owner learns it from its own next read or write */
            break;
        }
        int ms = remaining_ms(deadline_ms);
        struct pollfd pf = { .fd = c->fd, .events = POLLOUT };
        if (ms < 0 || (poll(&pf, 1, ms) < 0 && errno != EINTR)) {
            io = LQC_IO_TIMEOUT;
            break;
        }
    }
    if (left > 0 && left < len)
        (void)shutdown(c->fd, SHUT_RDWR); /* half a frame went out: nothing after it can parse */
out:
    pthread_mutex_unlock(&c->wlock);
    return io;
}

lqc_io lqc_conn_read_frame(lqc_conn *c, uint64_t deadline_ms, lq_frame *f)
{
    if (c->fd < 0) {
        set_err(c, "not connected");
        return LQC_IO_CLOSED;
    }
    if (c->rstart == c->rend)
        c->rstart = c->rend = 0;
    for (;;) {
        size_t consumed = 0, need = 0;
        lq_frame_status st = lq_frame_parse(c->rbuf + c->rstart, c->rend - c->rstart,
                                            c->max_frame_payload, f, &consumed, &need);
        if (st == LQ_FRAME_OK) {
            c->rstart += consumed;
            return LQC_IO_OK;
        }
        if (st == LQ_FRAME_TOO_LARGE) {
            set_err(c, "frame from broker above the limits (meta %u, payload cap %u)",
                    lq_be32_load(c->rbuf + c->rstart + 4), c->max_frame_payload);
            return LQC_IO_PROTOCOL;
        }
        if (st == LQ_FRAME_BAD) {
            set_err(c, "malformed frame from broker");
            return LQC_IO_PROTOCOL;
        }
        size_t have = c->rend - c->rstart;
        LQC_ASSERT(need > have);
        size_t want = need - have;
        /* Read ahead a little past the frame: the next reply is often already there. */
        size_t room = make_room(c, want, c->rstart + need > c->rcap ? c->rstart + need : c->rcap);
        if (room < want) {
            set_err(c, "out of memory for a %zu-byte frame", need);
            return LQC_IO_NOMEM;
        }
        size_t got;
        lqc_io io = recv_some(c, room, &got);
        if (io != LQC_IO_OK)
            return io;
        if (got == 0) {
            short rev = 0;
            io = wait_fd(c, c->fd, POLLIN, deadline_ms, &rev);
            if (io != LQC_IO_OK)
                return io;
        }
    }
}

void lqc_conn_trim(lqc_conn *c)
{
    if (c->rstart != c->rend || c->rcap <= RBUF_KEEP_MAX)
        return;
    uint8_t *n = realloc(c->rbuf, RBUF_INITIAL); /* owner: conn */
    if (n != NULL) {
        c->rbuf = n;
        c->rcap = RBUF_INITIAL;
        c->rstart = c->rend = 0;
    }
}
