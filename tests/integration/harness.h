/* Shared helpers of the integration tests: a supervisor that owns every process a test starts,
 * a real leaseqd on a free loopback port, clocks and small I/O helpers.
 *
 * The Makefile builds each tests/integration/ C file into its own binary, so everything here is
 * static and each test includes this header once.
 *
 * Process model (why a supervisor): the test body runs in a child that leads its own process
 * group; everything it starts (leaseqd, producers, workers) inherits that group and dies with
 * its parent (PR_SET_PDEATHSIG). The supervisor waits for the body, then SIGKILLs the whole
 * group and reaps the orphans (it is a child subreaper), so no path (assert, crash, sanitizer
 * abort, runner timeout) leaves a leaseqd behind or the temp dir on disk.
 */
#ifndef LQ_TEST_HARNESS_H
#define LQ_TEST_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "leaseq.h"

#define H_PATH_MAX 512

/* Not every test uses every helper. */
#define H_FN static __attribute__((unused))

/* ---- clocks and logging ---------------------------------------------------------------- */

/* CLOCK_MONOTONIC is one clock for every process of the machine, so timestamps taken in
 * different test processes can be subtracted. */
H_FN uint64_t h_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

H_FN uint64_t h_now_ms(void) { return h_now_us() / 1000u; }

H_FN void h_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

H_FN uint64_t h_t0_us; /* set by h_supervise: the origin of log timestamps */

__attribute__((format(printf, 1, 2))) H_FN void h_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One write per line so lines of concurrent processes do not interleave. */
    char out[1100];
    int n = snprintf(out, sizeof out, "[%7.3f %d] %s\n", (double)(h_now_us() - h_t0_us) / 1e6,
                     (int)getpid(), line);
    if (n > 0)
        (void)!write(STDOUT_FILENO, out, (size_t)n < sizeof out ? (size_t)n : sizeof out - 1);
}

/* ---- files ----------------------------------------------------------------------------- */

H_FN bool h_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

H_FN int h_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

H_FN void h_rm_rf(const char *dir)
{
    if (dir[0] != '\0')
        nftw(dir, h_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Prints the last `lines` lines of a text file (the broker's log on failure). */
H_FN void h_dump_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    static char buf[64 * 1024];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof buf - 1 ? size - ((long)sizeof buf - 1) : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = buf + n;
    int seen = 0;
    while (p > buf && seen <= lines) {
        p--;
        if (*p == '\n')
            seen++;
    }
    printf("---- last lines of %s ----\n%s\n---- end ----\n", path, p);
    fflush(stdout);
}

/* ---- children -------------------------------------------------------------------------- */

/* Call first thing in every forked child: die with the parent, so a killed test never leaves
 * a process behind even if the supervisor itself is SIGKILLed. */
H_FN void h_child_init(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(99); /* the parent died between fork and prctl */
}

/* Waits up to timeout_ms for pid; returns true and fills *status when it exited. */
H_FN bool h_wait_pid(pid_t pid, int *status, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
        if (h_now_ms() >= end)
            return false;
        h_sleep_ms(5);
    }
}

H_FN void h_describe_status(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, cap, "status 0x%x", status);
}

/* ---- network --------------------------------------------------------------------------- */

/* A port that was free a moment ago: bind port 0 and read back what the kernel chose. */
H_FN int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* Blocking TCP connect to 127.0.0.1:port with a timeout; returns the fd or -1. */
H_FN int h_tcp_connect(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, timeout_ms) != 1)
            goto fail;
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
            goto fail;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
fail:
    close(fd);
    return -1;
}

/* ---- the broker ------------------------------------------------------------------------ */

typedef struct {
    pid_t pid;                 /* 0 when not running */
    int port;
    char addr[64];             /* "127.0.0.1:PORT" for leaseq_connect */
    char bin[H_PATH_MAX];
    char data_dir[H_PATH_MAX];
    char log_path[H_PATH_MAX]; /* stdout+stderr of every start, appended */
    const char *sync;          /* "full" unless set */
    int starts;
    bool ever_ready;           /* it accepted connections once: the port is fixed from now on */
} h_broker;

H_FN void h_bin_path(char *out, size_t cap, const char *name)
{
    const char *dir = getenv("LEASEQ_BIN");
    if (!dir || !*dir)
        dir = "./build/bin";
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Prepares (does not start) a broker whose data and log live under tmpdir. */
H_FN bool h_broker_init(h_broker *b, const char *tmpdir)
{
    memset(b, 0, sizeof *b);
    h_bin_path(b->bin, sizeof b->bin, "leaseqd");
    if (access(b->bin, X_OK) != 0) {
        printf("leaseqd not found at %s (set LEASEQ_BIN to the build's bin folder)\n", b->bin);
        return false;
    }
    b->port = h_free_port();
    if (b->port <= 0)
        return false;
    snprintf(b->addr, sizeof b->addr, "127.0.0.1:%d", b->port);
    snprintf(b->data_dir, sizeof b->data_dir, "%s/data", tmpdir);
    snprintf(b->log_path, sizeof b->log_path, "%s/leaseqd.log", tmpdir);
    b->sync = "full";
    return mkdir(b->data_dir, 0700) == 0;
}

H_FN bool h_broker_start(h_broker *b)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", b->port);
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        h_child_init(parent);
        int fd = open(b->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        char *argv[] = {b->bin, "--listen", listen, "--data-dir", b->data_dir, "--sync", (char *)b->sync, NULL};
        execv(b->bin, argv);
        _exit(127);
    }
    b->pid = pid;
    b->starts++;
    return true;
}

/* Waits until the broker accepts a TCP connection (bounded); false if it died or never did. */
H_FN bool h_broker_wait_ready(h_broker *b, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (h_now_ms() < end) {
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            char how[64];
            h_describe_status(status, how, sizeof how);
            printf("leaseqd exited during start-up (%s)\n", how);
            b->pid = 0;
            return false;
        }
        /* A TCP connect alone could reach someone else's listener on a reused port: a hello
         * and a ping through libleaseq prove it is our broker and that it serves requests. */
        int fd = h_tcp_connect(b->port, 200);
        if (fd >= 0) {
            close(fd);
            leaseq_opts o = {.client_name = "harness-ready", .connect_timeout_ms = 1000};
            leaseq *c = NULL;
            bool ok = leaseq_connect(b->addr, &o, &c) == LEASEQ_OK && leaseq_ping(c, 1000) == LEASEQ_OK;
            if (c)
                leaseq_close(c);
            if (ok && waitpid(b->pid, NULL, WNOHANG) == 0)
                return true;
        }
        h_sleep_ms(20);
    }
    printf("leaseqd did not accept connections on port %d within %d ms\n", b->port, timeout_ms);
    return false;
}

/* Starts and waits; starts again (up to a few times) when it exits during start-up, e.g. because
 * the port is held by a ghost of the previous run. Before the first successful start the port is
 * only a guess (another test may have taken it since h_free_port), so a new one is picked;
 * afterwards it stays, because clients reconnect to it. */
H_FN bool h_broker_start_ready(h_broker *b, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (int attempt = 0; attempt < 5 && h_now_ms() < end; attempt++) {
        if (attempt > 0 && !b->ever_ready) {
            int port = h_free_port();
            if (port > 0) {
                b->port = port;
                snprintf(b->addr, sizeof b->addr, "127.0.0.1:%d", b->port);
            }
        }
        if (!h_broker_start(b))
            return false;
        int left = (int)(end - h_now_ms());
        if (h_broker_wait_ready(b, left > 0 ? left : 1)) {
            b->ever_ready = true;
            return true;
        }
        if (b->pid) { /* alive but not listening: give up */
            kill(b->pid, SIGKILL);
            waitpid(b->pid, NULL, 0);
            b->pid = 0;
            return false;
        }
        h_sleep_ms(200);
    }
    return false;
}

H_FN void h_broker_kill9(h_broker *b)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, SIGKILL);
    waitpid(b->pid, NULL, 0);
    b->pid = 0;
}

/* SIGTERM and wait; returns true when it exited with status 0 in time. */
H_FN bool h_broker_stop(h_broker *b, int timeout_ms, char *how, size_t how_cap)
{
    snprintf(how, how_cap, "not running");
    if (b->pid <= 0)
        return false;
    kill(b->pid, SIGTERM);
    int status = 0;
    if (!h_wait_pid(b->pid, &status, timeout_ms)) {
        snprintf(how, how_cap, "still running %d ms after SIGTERM (killed)", timeout_ms);
        h_broker_kill9(b);
        return false;
    }
    b->pid = 0;
    h_describe_status(status, how, how_cap);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

H_FN bool h_broker_alive(h_broker *b)
{
    if (b->pid <= 0)
        return false;
    int status;
    if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
        char how[64];
        h_describe_status(status, how, sizeof how);
        printf("leaseqd is gone (%s)\n", how);
        b->pid = 0;
        return false;
    }
    return true;
}

/* ---- the supervisor -------------------------------------------------------------------- */

static volatile sig_atomic_t h_sup_signal __attribute__((unused));

H_FN void h_sup_on_signal(int sig) { h_sup_signal = sig; }

/* Runs body(tmpdir) in a child that leads a fresh process group, within limit_s seconds.
 * Whatever happens, every process of that group is killed and reaped and tmpdir removed.
 * Returns the exit code for main: 0 pass, 1 fail. */
H_FN int h_supervise(const char *name, int limit_s, int (*body)(const char *tmpdir))
{
    h_t0_us = h_now_us();
    setvbuf(stdout, NULL, _IOLBF, 0);
    char tmpdir[] = "/tmp/leaseq-itest-XXXXXX";
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    /* Orphans of the body (a worker whose parent died) are reparented to us, so we can reap
     * every one of them before deleting their files. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    struct sigaction sa = {.sa_handler = h_sup_on_signal}; /* no SA_RESTART: waitpid gets EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    pid_t sup = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        h_rm_rf(tmpdir);
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        h_child_init(sup);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        int rc = body(tmpdir);
        fflush(stdout);
        exit(rc == 0 ? 0 : 1);
    }
    setpgid(pid, pid); /* also here, so the group exists before we might signal it */
    alarm((unsigned)limit_s);
    int status = 0, rc = 1;
    for (;;) {
        pid_t r = waitpid(pid, &status, 0);
        if (r == pid) {
            rc = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
            if (!WIFEXITED(status)) {
                char how[64];
                h_describe_status(status, how, sizeof how);
                printf("%s: test body ended by %s\n", name, how);
            }
            break;
        }
        if (r < 0 && errno == EINTR && h_sup_signal) {
            printf("%s: %s, killing every test process\n", name,
                   h_sup_signal == SIGALRM ? "time limit reached" : "interrupted");
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            rc = 1;
            break;
        }
        if (r < 0 && errno != EINTR)
            break;
    }
    alarm(0);
    kill(-pid, SIGKILL);
    /* Reap everything that was ours (bounded: SIGKILLed processes go quickly). */
    uint64_t end = h_now_ms() + 5000;
    while (h_now_ms() < end) {
        pid_t r = waitpid(-1, NULL, WNOHANG);
        if (r < 0 && errno == ECHILD)
            break;
        if (r <= 0)
            h_sleep_ms(5);
    }
    h_rm_rf(tmpdir);
    printf("%s: %s\n", name, rc == 0 ? "PASS" : "FAIL");
    return rc;
}

#endif
