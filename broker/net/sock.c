#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define LISTEN_BACKLOG 4096

void lq_sock_format_addr(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%u", host, port);
    } else if (sa->sa_family == AF_UNIX) {
        snprintf(out, cap, "unix");
    } else {
        snprintf(out, cap, "?");
    }
}

lq_err lq_sock_listen_tcp(const char *host_port, int *fd_out, char *bound, size_t bound_cap)
{
    char host[256];
    const char *colon = strrchr(host_port, ':');
    if (colon == NULL || (size_t)(colon - host_port) >= sizeof host)
        return LQ_E_INVALID_ARGUMENT;
    size_t hlen = (size_t)(colon - host_port);
    memcpy(host, host_port, hlen);
    host[hlen] = '\0';
    /* [::1]:7420 */
    char *h = host;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host[hlen - 1] = '\0';
        h = host + 1;
    }
    const char *port = colon + 1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(*h ? h : NULL, port, &hints, &res);
    if (gai != 0) {
        LQ_LOGE("cannot resolve listen address", "addr=%s error=\"%s\"", host_port, gai_strerror(gai));
        return LQ_E_INVALID_ARGUMENT;
    }
    lq_err err = LQ_E_IO;
    int saved_errno = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
            saved_errno = errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
            lq_sock_format_addr((struct sockaddr *)&ss, bound, bound_cap);
        else
            snprintf(bound, bound_cap, "%s", host_port);
        *fd_out = fd;
        err = LQ_OK;
        break;
    }
    freeaddrinfo(res);
    if (err != LQ_OK)
        LQ_LOGE("cannot listen", "addr=%s error=\"%s\"", host_port, strerror(saved_errno));
    return err;
}

lq_err lq_sock_listen_unix(const char *path, int *fd_out)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path)
        return LQ_E_INVALID_ARGUMENT;
    strcpy(sun.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            LQ_LOGE("unix socket path exists and is not a socket", "path=%s", path);
            return LQ_E_INVALID_ARGUMENT;
        }
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return LQ_E_IO;
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        LQ_LOGE("cannot listen", "unix=%s error=\"%s\"", path, strerror(errno));
        close(fd);
        return LQ_E_IO;
    }
    *fd_out = fd;
    return LQ_OK;
}

void lq_sock_tune_accepted(int fd)
{
    int one = 1;
    /* Replies are coalesced per loop pass already; Nagle would only add latency. Fails
     * harmlessly (EOPNOTSUPP) on Unix sockets. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
