/* leaseqd: flags, signals, file-descriptor limit, then the server until a clean stop.
 * Exit status: 0 clean stop (or --help), 1 runtime failure, 2 bad flags. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "server.h"

/* Each connection is one descriptor; LMDB, the rings and the listeners need a few more. The
 * soft limit goes up to the hard one: a broker is the process that should hold them. */
static void raise_fd_limit(uint32_t max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)max_connections + 256;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        LQ_LOGW("file descriptor limit below --max-connections", "limit=%llu max_connections=%u",
                (unsigned long long)rl.rlim_cur, max_connections);
}

int main(int argc, char **argv)
{
    lq_config cfg;
    char err[512];
    int status = 1;
    int sfd = -1;
    lq_server *srv = NULL;
    lq_config_result cr = lq_config_parse(argc, argv, &cfg, err, sizeof err);
    if (cr == LQ_CONFIG_HELP) {
        lq_config_usage(stdout);
        status = 0;
        goto out;
    }
    if (cr == LQ_CONFIG_ERROR) {
        fprintf(stderr, "leaseqd: %s\n", err);
        status = 2;
        goto out;
    }
    lq_log_set_level(cfg.log_level);

    /* Stop signals are taken through a signalfd on the loop: no handler runs between the
     * loop's check and its wait, so a signal can never be missed. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 || (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        LQ_LOGE("cannot set up signals", "error=\"%s\"", strerror(errno));
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(cfg.max_connections);

    lq_err e = lq_server_create(&cfg, sfd, &srv);
    if (e != LQ_OK) {
        status = e == LQ_E_INVALID_ARGUMENT ? 2 : 1;
        if (status == 1)
            LQ_LOGE("cannot start", "error=%s", lq_err_name(e));
        goto out;
    }
    e = lq_server_run(srv);
    status = e == LQ_OK ? 0 : 1;
    if (e != LQ_OK)
        LQ_LOGE("stopped on an error", "error=%s", lq_err_name(e));
out:
    lq_server_destroy(srv);
    if (sfd >= 0)
        close(sfd);
    lq_config_free(&cfg);
    return status;
}
