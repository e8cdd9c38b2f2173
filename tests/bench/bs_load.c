/* Beanstalk-protocol load generator: N connections put jobs (pipelined `depth` deep), then
 * reserve + delete them (reserves pipelined, then their deletes). Prints puts/s and takes/s.
 * Speaks only the beanstalk protocol, so it runs the same against beanstalkd and leaseqd.
 *   bs_load HOST:PORT [--conns 16] [--depth 16] [--jobs 100000] [--size 100] [--tube bench] */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 30
#define DEPTH_MAX 1024

typedef struct {
    const char *host;
    int port, depth, size, jobs;
    const char *tube;
    pthread_barrier_t *bar;
    int fd;
    char in[1 << 16];
    size_t in_len;
    uint64_t ids[DEPTH_MAX];
    long done_put, done_take;
    int failed;
} worker;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(worker *w)
{
    w->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->port)};
    inet_pton(AF_INET, w->host, &a.sin_addr);
    int one = 1;
    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(w->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(w->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return connect(w->fd, (struct sockaddr *)&a, sizeof a);
}

static int send_all(worker *w, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(w->fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* One reply line (without CRLF) into line; a RESERVED body is skipped. */
static int read_reply(worker *w, char *line, size_t cap)
{
    for (;;) {
        char *e = memmem(w->in, w->in_len, "\r\n", 2);
        if (e != NULL) {
            size_t n = (size_t)(e - w->in);
            size_t total = n + 2;
            if (strncmp(w->in, "RESERVED ", 9) == 0) {
                unsigned long long id = 0;
                unsigned len = 0;
                sscanf(w->in, "RESERVED %llu %u", &id, &len);
                total += len + 2;
                if (w->in_len < total)
                    goto more;
            }
            snprintf(line, cap, "%.*s", (int)n, w->in);
            memmove(w->in, w->in + total, w->in_len - total);
            w->in_len -= total;
            return 0;
        }
    more:;
        ssize_t k = recv(w->fd, w->in + w->in_len, sizeof w->in - w->in_len, 0);
        if (k <= 0)
            return -1;
        w->in_len += (size_t)k;
    }
}

static void *run(void *arg)
{
    worker *w = arg;
    char line[256];
    char *buf = malloc((size_t)w->depth * ((size_t)w->size + 64) + 64);
    char *body = malloc((size_t)w->size);
    memset(body, 'j', (size_t)w->size);
    if (buf == NULL || body == NULL || dial(w) != 0) {
        w->failed = 1;
        pthread_barrier_wait(w->bar);
        pthread_barrier_wait(w->bar);
        pthread_barrier_wait(w->bar);
        free(buf);
        free(body);
        return NULL;
    }
    size_t n = (size_t)sprintf(buf, "use %s\r\nwatch %s\r\nignore default\r\n", w->tube, w->tube);
    send_all(w, buf, n);
    for (int i = 0; i < 3; i++)
        read_reply(w, line, sizeof line);
    pthread_barrier_wait(w->bar);
    /* puts: depth at a time */
    for (long left = w->jobs; left > 0 && !w->failed;) {
        int k = left < w->depth ? (int)left : w->depth;
        n = 0;
        for (int i = 0; i < k; i++) {
            n += (size_t)sprintf(buf + n, "put 0 0 60 %d\r\n", w->size);
            memcpy(buf + n, body, (size_t)w->size);
            n += (size_t)w->size;
            memcpy(buf + n, "\r\n", 2);
            n += 2;
        }
        if (send_all(w, buf, n) != 0)
            w->failed = 1;
        for (int i = 0; i < k && !w->failed; i++) {
            if (read_reply(w, line, sizeof line) != 0 || strncmp(line, "INSERTED", 8) != 0)
                w->failed = 1;
        }
        w->done_put += k;
        left -= k;
    }
    pthread_barrier_wait(w->bar);
    /* takes: depth reserves, then their deletes */
    for (;;) {
        n = 0;
        for (int i = 0; i < w->depth; i++)
            n += (size_t)sprintf(buf + n, "reserve-with-timeout 0\r\n");
        if (send_all(w, buf, n) != 0)
            break;
        int got = 0;
        for (int i = 0; i < w->depth; i++) {
            if (read_reply(w, line, sizeof line) != 0)
                break;
            unsigned long long id;
            if (sscanf(line, "RESERVED %llu", &id) == 1)
                w->ids[got++] = id;
        }
        if (got == 0)
            break;
        n = 0;
        for (int i = 0; i < got; i++)
            n += (size_t)sprintf(buf + n, "delete %llu\r\n", (unsigned long long)w->ids[i]);
        send_all(w, buf, n);
        for (int i = 0; i < got; i++) {
            if (read_reply(w, line, sizeof line) != 0 || strcmp(line, "DELETED") != 0)
                w->failed = 1;
        }
        w->done_take += got;
    }
    pthread_barrier_wait(w->bar);
    close(w->fd);
    free(buf);
    free(body);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bs_load HOST:PORT [--conns N] [--depth N] [--jobs N] [--size BYTES] [--tube NAME]\n");
        return 2;
    }
    char host[64];
    int port = 0;
    if (sscanf(argv[1], "%63[^:]:%d", host, &port) != 2)
        return 2;
    int conns = 16, depth = 16, jobs = 100000, size = 100;
    const char *tube = "bench";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--conns") == 0)
            conns = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--depth") == 0)
            depth = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--jobs") == 0)
            jobs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--tube") == 0)
            tube = argv[i + 1];
    }
    if (conns < 1 || conns > 1024 || depth < 1 || depth > DEPTH_MAX || size < 0 || size > 65535 || jobs < 1)
        return 2;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)conns + 1);
    worker *ws = calloc((size_t)conns, sizeof *ws);
    pthread_t *ts = calloc((size_t)conns, sizeof *ts);
    for (int i = 0; i < conns; i++) {
        ws[i] = (worker){.host = host, .port = port, .depth = depth, .size = size,
                         .jobs = jobs / conns + (i < jobs % conns), .tube = tube, .bar = &bar};
        pthread_create(&ts[i], NULL, run, &ws[i]);
    }
    pthread_barrier_wait(&bar);
    double t0 = now_s();
    pthread_barrier_wait(&bar);
    double t1 = now_s();
    pthread_barrier_wait(&bar);
    double t2 = now_s();
    long puts = 0, takes = 0;
    int failed = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(ts[i], NULL);
        puts += ws[i].done_put;
        takes += ws[i].done_take;
        failed |= ws[i].failed;
    }
    printf("puts=%ld put_per_s=%.0f takes=%ld take_per_s=%.0f conns=%d depth=%d size=%d%s\n", puts,
           (double)puts / (t1 - t0), takes, (double)takes / (t2 - t1), conns, depth, size, failed ? " FAILED" : "");
    free(ws);
    free(ts);
    return failed ? 1 : 0;
}
