/* libFuzzer target: the broker's whole request path on a scratch store. Each input is the byte
 * stream of one fresh connection (a socketpair end adopted by the real loop): the real input
 * handler parses its frames and runs the real request code against the core and the store;
 * the loop is pumped until the commits it caused are done; then the connection closes (its
 * leases are requeued, its waits dropped). Replies go to the other end and are discarded.
 * State carries over between inputs, like a broker serving many clients. An input whose first
 * byte is odd gets a valid Hello in front, so most inputs reach past the handshake. */
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "leaseq.pb-c.h"
#include "log.h"
#include "proto/frame.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lq_server *g_srv;
static lq_config g_cfg;
static char g_dir[64];
static uint8_t g_hello[64];
static size_t g_hello_len;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void teardown(void)
{
    lq_server_destroy(g_srv);
    g_srv = NULL;
    lq_config_free(&g_cfg);
    if (g_dir[0])
        nftw(g_dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/leaseq-fuzz-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        abort();
    char *argv[] = {"leaseqd", "--listen", "127.0.0.1:0", "--data-dir", g_dir, "--sync", "none", "--map-size",
                    "64M", "--max-payload", "1M", "--log-level", "error", "--lanes", "q=api:9,app:1",
                    "--lane-config", "q/app:max_queued=50,sheddable=1", "--result-retention", "1000", NULL};
    char err[256];
    if (lq_config_parse((int)(sizeof argv / sizeof argv[0]) - 1, argv, &g_cfg, err, sizeof err) != LQ_CONFIG_RUN)
        abort();
    lq_log_set_level(g_cfg.log_level);
    if (lq_server_create(&g_cfg, -1, &g_srv) != LQ_OK)
        abort();
    Leaseq__Hello h = LEASEQ__HELLO__INIT;
    h.protocol_version = 1;
    h.worker_id = (char *)"fuzz";
    Leaseq__Request r = LEASEQ__REQUEST__INIT;
    r.request_id = 1;
    r.body_case = LEASEQ__REQUEST__BODY_HELLO;
    r.hello = &h;
    size_t meta = leaseq__request__get_packed_size(&r);
    lq_frame_header(g_hello, (uint32_t)meta, 0);
    leaseq__request__pack(&r, g_hello + LQ_FRAME_HEADER_BYTES);
    g_hello_len = LQ_FRAME_HEADER_BYTES + meta;
    atexit(teardown);
}

static void drain(int fd)
{
    uint8_t buf[65536];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_srv == NULL)
        setup();
    if (size > (1u << 20))
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return 0;
    uint64_t conn = 0;
    if (lq_server_test_conn(g_srv, sv[0], &conn) != LQ_OK) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    /* the input handler sees everything the connection sent at once, as after one recv */
    uint8_t *in = malloc(g_hello_len + size + 1);
    size_t n = 0;
    if (size > 0 && (data[0] & 1)) {
        memcpy(in, g_hello, g_hello_len);
        n = g_hello_len;
    }
    if (size > 0)
        memcpy(in + n, data, size);
    n += size;
    lq_server_test_feed(g_srv, conn, in, n);
    free(in);
    for (int i = 0; i < 50; i++) {
        lq_server_test_pump(g_srv, 2);
        drain(sv[1]);
        if (i >= 1 && lq_server_test_idle(g_srv))
            break;
    }
    lq_server_test_close(g_srv, conn);
    for (int i = 0; i < 50; i++) {
        lq_server_test_pump(g_srv, 2);
        drain(sv[1]);
        if (i >= 1 && lq_server_test_idle(g_srv))
            break;
    }
    close(sv[1]);
    return 0;
}
