/* loadgen: one load generator for leaseqd and the brokers a team would pick instead.
 *
 * Many connections, each with `depth` requests in flight (pipelined), driven by 1-2 threads
 * each running one epoll loop over its share of the connections; raw non-blocking sockets.
 * One driver per protocol (tests/bench/lg/): leaseq's native frames (bench_native.c), the
 * beanstalkd text protocol (bench_beanstalk.c: beanstalkd itself, or leaseqd's beanstalk
 * port), and Redis RESP as a list queue or a stream with a consumer group (bench_redis.c).
 * The same payloads, connection counts and depths drive each.
 *
 *   enqueue    each request enqueues --batch jobs of --size bytes; ops = jobs acknowledged
 *   lease-ack  each slot takes up to --max-jobs and acks every one; ops = acks. An empty take
 *              (nothing ready for --wait-ms) means the queue is drained: stop.
 *   cycle      --producers of the connections (default half) enqueue, the rest lease+ack
 *   prio       connection 0 enqueues "api" jobs (open loop at --rate); the others lease+ack
 *              (holding each job --work-ms) from a queue pre-filled with "app" jobs
 *   redeliver  connection 0 leases --count jobs and goes silent (a frozen worker); connection
 *              1 then waits for them to come back (delay from the freeze to each redelivery)
 *   probe      connects (retrying) and takes one job; reports the time until it had one:
 *              recovery time after a restart
 *
 * --rate R makes the producers open-loop: R enqueues/s on a fixed schedule, latency counted from
 * each one's scheduled time. Every payload carries its send time, so the worker side measures
 * queue wait (enqueue sent -> job leased) whatever the protocol.
 *
 * Output: one human line; with --json also one flat JSON object on the next line.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "leaseq.pb-c.h"
#include "lg/lg.h"
#include "proto/arena.h"
#include "proto/frame.h"

static const char *const lat_names[LAT_N] = {"enq", "deq", "ack", "la", "wait", "waitapi", "redeliver", "pace",
                                             "waitsent"};

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen [--proto native|beanstalk|redis-list|redis-stream] [--addr HOST:PORT]\n"
            "               [--mode enqueue|lease-ack|cycle|prio|redeliver|probe] [--connections N]\n"
            "               [--producers N] [--depth D] [--size BYTES] [--batch N] [--max-jobs N]\n"
            "               [--wait-ms MS] [--lease-ms MS] [--work-ms MS] [--rate PER_S]\n"
            "               [--duration S | --count N] [--queue NAME] [--class api|app] [--lanes]\n"
            "               [--hb-ms MS] [--ttr S] [--poll-ms MS] [--threads 1|2] [--hist-out FILE] [--json]\n"
            "defaults: native, 127.0.0.1:7420, enqueue, 16 connections x 16 in flight, 100-byte jobs,\n"
            "          batch 1, max-jobs 1, wait 100 ms, lease 60000 ms, 10 s, queue \"bench\", 1 thread,\n"
            "          ttr 60 s, hb 200 ms, poll 100 ms\n");
}

static bool parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_addr(const char *a, lg_config *cfg)
{
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a || (size_t)(colon - a) >= sizeof cfg->host || strlen(colon + 1) >= sizeof cfg->port)
        return false;
    size_t hl = (size_t)(colon - a);
    if (a[0] == '[' && hl >= 2 && a[hl - 1] == ']') { /* [v6]:port */
        a++;
        hl -= 2;
    }
    memcpy(cfg->host, a, hl);
    cfg->host[hl] = '\0';
    snprintf(cfg->port, sizeof cfg->port, "%s", colon + 1);
    return true;
}

static bool parse_enum(const char *s, const char *const *names, unsigned n, unsigned *out)
{
    for (unsigned i = 0; i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return true;
        }
    return false;
}

static const char *const mode_names[] = {"enqueue", "lease-ack", "cycle", "prio", "redeliver", "probe"};
static const char *const proto_names[] = {"native", "beanstalk", "redis-list", "redis-stream"};

static bool parse_args(int argc, char **argv, lg_config *cfg)
{
    *cfg = (lg_config){.mode = MODE_ENQUEUE, .conns = 16, .depth = 16, .batch = 1, .max_jobs = 1, .threads = 1,
                       .wait_ms = 100, .lease_ms = 60000, .size = 100, .duration_s = 10, .queue = "bench",
                       .ttr_s = 60, .hb_ms = 200, .poll_ms = 100};
    snprintf(cfg->host, sizeof cfg->host, "127.0.0.1");
    snprintf(cfg->port, sizeof cfg->port, "7420");
    static const struct option opts[] = {
        {"addr", 1, 0, 'a'},     {"mode", 1, 0, 'm'},      {"connections", 1, 0, 'c'}, {"depth", 1, 0, 'd'},
        {"size", 1, 0, 's'},     {"batch", 1, 0, 'b'},     {"max-jobs", 1, 0, 'j'},    {"wait-ms", 1, 0, 'w'},
        {"lease-ms", 1, 0, 'l'}, {"duration", 1, 0, 't'},  {"count", 1, 0, 'n'},       {"queue", 1, 0, 'q'},
        {"threads", 1, 0, 'T'},  {"json", 0, 0, 'J'},      {"help", 0, 0, 'h'},        {"proto", 1, 0, 'p'},
        {"rate", 1, 0, 'r'},     {"work-ms", 1, 0, 'W'},   {"poll-ms", 1, 0, 'P'},     {"hb-ms", 1, 0, 'H'},
        {"ttr", 1, 0, 'R'},      {"producers", 1, 0, 'N'}, {"class", 1, 0, 'C'},       {"lanes", 0, 0, 'L'},
        {"hist-out", 1, 0, 'O'}, {0, 0, 0, 0}};
    int o;
    uint64_t v;
    unsigned e;
    bool conns_set = false, depth_set = false;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'a': if (!parse_addr(optarg, cfg)) return false; break;
        case 'm': if (!parse_enum(optarg, mode_names, 6, &e)) return false; cfg->mode = (lg_mode)e; break;
        case 'p': if (!parse_enum(optarg, proto_names, 4, &e)) return false; cfg->proto = (lg_proto)e; break;
        case 'c': if (!parse_uint(optarg, 1, LG_CONNS_MAX, &v)) return false; cfg->conns = (unsigned)v; conns_set = true; break;
        case 'd': if (!parse_uint(optarg, 1, LG_DEPTH_MAX, &v)) return false; cfg->depth = (unsigned)v; depth_set = true; break;
        case 's': if (!parse_uint(optarg, 0, LG_SIZE_MAX, &v)) return false; cfg->size = (uint32_t)v; break;
        case 'b': if (!parse_uint(optarg, 1, LG_BATCH_MAX, &v)) return false; cfg->batch = (unsigned)v; break;
        case 'j': if (!parse_uint(optarg, 1, LG_MAX_JOBS_MAX, &v)) return false; cfg->max_jobs = (unsigned)v; break;
        case 'w': if (!parse_uint(optarg, 0, 600000, &v)) return false; cfg->wait_ms = (unsigned)v; break;
        case 'l': if (!parse_uint(optarg, 1, 43200000, &v)) return false; cfg->lease_ms = (unsigned)v; break;
        case 'W': if (!parse_uint(optarg, 0, 600000, &v)) return false; cfg->work_ms = (unsigned)v; break;
        case 'P': if (!parse_uint(optarg, 1, 600000, &v)) return false; cfg->poll_ms = (unsigned)v; break;
        case 'H': if (!parse_uint(optarg, 1, 600000, &v)) return false; cfg->hb_ms = (unsigned)v; break;
        case 'R': if (!parse_uint(optarg, 1, 86400, &v)) return false; cfg->ttr_s = (unsigned)v; break;
        case 'N': if (!parse_uint(optarg, 1, LG_CONNS_MAX, &v)) return false; cfg->producers = (unsigned)v; break;
        case 'n': if (!parse_uint(optarg, 1, UINT64_C(1) << 40, &v)) return false; cfg->count = v; break;
        case 'T': if (!parse_uint(optarg, 1, LG_THREADS_MAX, &v)) return false; cfg->threads = (unsigned)v; break;
        case 'C': if (!parse_enum(optarg, (const char *const[]){"app", "api"}, 2, &e)) return false; cfg->cls = (lg_class)e; break;
        case 'L': cfg->lanes = true; break;
        case 'O': cfg->hist_out = optarg; break;
        case 'r':
        case 't': {
            char *end;
            double d = strtod(optarg, &end);
            if (*end || !(d > 0 && d <= (o == 't' ? 3600 : 1e8)))
                return false;
            *(o == 't' ? &cfg->duration_s : &cfg->rate) = d;
            break;
        }
        case 'q': cfg->queue = optarg; break;
        case 'J': cfg->json = true; break;
        default: return false;
        }
    }
    if (optind != argc || (uint64_t)cfg->size * cfg->batch > LQ_PAYLOAD_MAX_DEFAULT)
        return false;
    if (cfg->proto != PROTO_NATIVE && cfg->proto != PROTO_REDIS_STREAM && cfg->max_jobs != 1) {
        fprintf(stderr, "loadgen: --max-jobs above 1 needs native or redis-stream\n");
        return false;
    }
    switch (cfg->mode) {
    case MODE_CYCLE:
    case MODE_PRIO:
        if (cfg->conns < 2)
            return false;
        if (cfg->mode == MODE_PRIO && !(cfg->rate > 0)) {
            fprintf(stderr, "loadgen: prio needs --rate (the api trickle)\n");
            return false;
        }
        break;
    case MODE_REDELIVER:
        if (!cfg->count || cfg->count > LG_DEPTH_MAX || cfg->proto == PROTO_REDIS_LIST) {
            fprintf(stderr, "loadgen: redeliver needs --count (at most %u) and a protocol with redelivery\n",
                    LG_DEPTH_MAX);
            return false;
        }
        cfg->conns = 2;
        cfg->depth = (unsigned)cfg->count; /* the frozen worker leases them all at once */
        cfg->max_jobs = cfg->proto == PROTO_REDIS_STREAM ? (unsigned)cfg->count : 1;
        cfg->threads = 1;
        break;
    case MODE_PROBE:
        if (!conns_set)
            cfg->conns = 1;
        if (!depth_set)
            cfg->depth = 1;
        break;
    default:
        break;
    }
    if (cfg->threads > cfg->conns)
        cfg->threads = cfg->conns;
    return true;
}

static lg_role role_of(const lg_config *cfg, unsigned i)
{
    switch (cfg->mode) {
    case MODE_ENQUEUE: return ROLE_PRODUCER;
    case MODE_CYCLE: {
        /* spread the producers evenly, so that each thread gets both kinds */
        uint64_t p = cfg->producers ? cfg->producers : cfg->conns / 2;
        return (uint64_t)i * p / cfg->conns != (uint64_t)(i + 1) * p / cfg->conns ? ROLE_PRODUCER : ROLE_WORKER;
    }
    case MODE_PRIO: return i == 0 ? ROLE_PRODUCER : ROLE_WORKER;
    case MODE_REDELIVER: return i == 0 ? ROLE_FROZEN : ROLE_RESCUER;
    default: return ROLE_WORKER;
    }
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

static uint64_t total_errors(const lg_stats *st)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < ERR_SLOTS; i++)
        n += st->err_by_code[i];
    return n;
}

/* The latency-by-percentile curve of one histogram, for gnuplot: "latency_us percentile". */
static void write_hist(const char *path, const hist *h)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return;
    }
    fprintf(f, "# latency_us percentile 1/(1-p) (%llu samples)\n", (unsigned long long)h->total);
    static const double qs[] = {0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0};
    for (unsigned i = 0; i < sizeof qs / sizeof qs[0] && h->total; i++) {
        double q = qs[i] < 1.0 ? qs[i] : 1.0 - 1.0 / (double)h->total;
        fprintf(f, "%.1f %.4f %.1f\n", us(qs[i] < 1.0 ? hist_quantile(h, q) : h->max_ns), q * 100, 1.0 / (1.0 - q));
    }
    fclose(f);
}

static void report(const lg_config *cfg, const lg_stats *st, double elapsed_s)
{
    double enq_rate = (double)st->enq_ok / elapsed_s, la_rate = (double)st->ack_ok / elapsed_s;
    const hist *h_enq = &st->lat[LAT_ENQ], *h_la = &st->lat[LAT_CYCLE], *h_w = &st->lat[LAT_WAIT];
    printf("loadgen %s %s: %u conn x %u in flight, %u B jobs, batch %u, max-jobs %u, %u thread(s), %.2f s:",
           proto_names[cfg->proto], mode_names[cfg->mode], cfg->conns, cfg->depth, cfg->size, cfg->batch,
           cfg->max_jobs, cfg->threads, elapsed_s);
    if (st->enq_ok)
        printf(" enqueue %.0f jobs/s (%llu), latency p50 %.0f us p99 %.0f us p99.9 %.0f us;", enq_rate,
               (unsigned long long)st->enq_ok, us(hist_quantile(h_enq, 0.5)), us(hist_quantile(h_enq, 0.99)),
               us(hist_quantile(h_enq, 0.999)));
    if (st->ack_ok || cfg->mode == MODE_LEASE_ACK)
        printf(" lease+ack %.0f jobs/s (%llu), latency p50 %.0f us p99 %.0f us p99.9 %.0f us"
               " (take rtt p50 %.0f us, ack rtt p50 %.0f us, %llu empty takes);",
               la_rate, (unsigned long long)st->ack_ok, us(hist_quantile(h_la, 0.5)), us(hist_quantile(h_la, 0.99)),
               us(hist_quantile(h_la, 0.999)), us(hist_quantile(&st->lat[LAT_DEQ], 0.5)),
               us(hist_quantile(&st->lat[LAT_ACK], 0.5)), (unsigned long long)st->empty_takes);
    if (h_w->total && cfg->mode != MODE_LEASE_ACK)
        printf(" queue wait p50 %.0f us p99 %.0f us p99.9 %.0f us;", us(hist_quantile(h_w, 0.5)),
               us(hist_quantile(h_w, 0.99)), us(hist_quantile(h_w, 0.999)));
    if (st->lat[LAT_WAIT_SENT].total && cfg->rate > 0)
        printf(" from the send p50 %.0f us p99 %.0f us p99.9 %.0f us;", us(hist_quantile(&st->lat[LAT_WAIT_SENT], 0.5)),
               us(hist_quantile(&st->lat[LAT_WAIT_SENT], 0.99)), us(hist_quantile(&st->lat[LAT_WAIT_SENT], 0.999)));
    if (st->lat[LAT_WAIT_API].total)
        printf(" api wait p50 %.0f us p99 %.0f us p99.9 %.0f us max %.0f us (%llu);",
               us(hist_quantile(&st->lat[LAT_WAIT_API], 0.5)), us(hist_quantile(&st->lat[LAT_WAIT_API], 0.99)),
               us(hist_quantile(&st->lat[LAT_WAIT_API], 0.999)), us(st->lat[LAT_WAIT_API].max_ns),
               (unsigned long long)st->lat[LAT_WAIT_API].total);
    if (cfg->mode == MODE_REDELIVER)
        printf(" redelivered %llu of %llu, last after %.1f ms;", (unsigned long long)st->lat[LAT_REDELIVER].total,
               (unsigned long long)cfg->count, us(st->lat[LAT_REDELIVER].max_ns) / 1000);
    if (cfg->mode == MODE_PROBE)
        printf(" first job after %.1f ms;", elapsed_s * 1000);
    if (st->lat[LAT_PACE].total)
        printf(" pacer lateness p50 %.0f us p99 %.0f us;", us(hist_quantile(&st->lat[LAT_PACE], 0.5)),
               us(hist_quantile(&st->lat[LAT_PACE], 0.99)));
    if (st->late_sends)
        printf(" %llu late sends;", (unsigned long long)st->late_sends);
    printf(" errors %llu\n", (unsigned long long)total_errors(st));
    if (!cfg->json)
        return;
    printf("{\"proto\":\"%s\",\"mode\":\"%s\",\"connections\":%u,\"depth\":%u,\"size\":%u,\"batch\":%u,"
           "\"max_jobs\":%u,\"threads\":%u,\"rate\":%.1f,\"elapsed_s\":%.4f,\"requests\":%llu,\"errors\":%llu,"
           "\"enq_ok\":%llu,\"ack_ok\":%llu,\"empty_dequeues\":%llu,\"late_sends\":%llu,\"enq_per_s\":%.1f,"
           "\"la_per_s\":%.1f",
           proto_names[cfg->proto], mode_names[cfg->mode], cfg->conns, cfg->depth, cfg->size, cfg->batch,
           cfg->max_jobs, cfg->threads, cfg->rate, elapsed_s, (unsigned long long)st->requests,
           (unsigned long long)total_errors(st), (unsigned long long)st->enq_ok, (unsigned long long)st->ack_ok,
           (unsigned long long)st->empty_takes, (unsigned long long)st->late_sends, enq_rate, la_rate);
    for (unsigned l = 0; l < LAT_N; l++)
        printf(",\"%s_n\":%llu,\"%s_p50_us\":%.1f,\"%s_p99_us\":%.1f,\"%s_p999_us\":%.1f,\"%s_max_us\":%.1f",
               lat_names[l], (unsigned long long)st->lat[l].total, lat_names[l], us(hist_quantile(&st->lat[l], 0.5)),
               lat_names[l], us(hist_quantile(&st->lat[l], 0.99)), lat_names[l],
               us(hist_quantile(&st->lat[l], 0.999)), lat_names[l], us(st->lat[l].max_ns));
    printf("}\n");
}

static const lg_driver *driver_of(lg_proto p)
{
    switch (p) {
    case PROTO_BEANSTALK: return &lg_beanstalk_driver;
    case PROTO_REDIS_LIST: return &lg_redis_list_driver;
    case PROTO_REDIS_STREAM: return &lg_redis_stream_driver;
    default: return &lg_native_driver;
    }
}

int main(int argc, char **argv)
{
    lg_config cfg;
    if (!parse_args(argc, argv, &cfg)) {
        usage();
        return 2;
    }
    lg_drv = driver_of(cfg.proto);
    /* 10,000 connections need as many descriptors; root may raise the hard limit too. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < cfg.conns + 64u) {
        rlim_t want = cfg.conns + 64u;
        rl.rlim_cur = want;
        if (rl.rlim_max < want)
            rl.rlim_max = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fprintf(stderr, "loadgen: cannot raise the descriptor limit to %llu\n", (unsigned long long)want);
    }
    int rc = 1;
    lg_conn *conns = calloc(cfg.conns, sizeof *conns);          /* owner: main */
    lg_thread *threads = calloc(cfg.threads, sizeof *threads);  /* owner: main */
    lq_arena *arenas = calloc(cfg.threads, sizeof *arenas);     /* owner: main */
    lg_stats *total = calloc(1, sizeof *total);                 /* owner: main */
    if (!conns || !threads || !arenas || !total)
        goto out;
    for (unsigned i = 0; i < cfg.conns; i++)
        conns[i].fd = -1;
    unsigned per = (cfg.conns + cfg.threads - 1) / cfg.threads;
    for (unsigned ti = 0; ti < cfg.threads; ti++) {
        lg_thread *t = &threads[ti];
        t->cfg = &cfg;
        t->tid = ti + 1;
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        t->payload = malloc((size_t)cfg.size + LG_FILLER_POOL); /* owner: thread */
        t->t_cap = per * cfg.depth + 16;
        t->timers = calloc(t->t_cap, sizeof *t->timers); /* owner: thread */
        if (t->ep < 0 || !t->payload || !t->timers || lq_arena_init(&arenas[ti], 256 << 10, (size_t)64 << 20) != 0)
            goto out;
        t->arena = &arenas[ti];
        /* Random filler, a different window of it in every job (lg_out_payload): Redis's AOF
         * rewrite (an RDB preamble, LZF over whole blocks of entries) would shrink a repeating
         * or a shared one, and flatter its data on disk and its recovery. */
        uint64_t x = 0x9e3779b97f4a7c15ull * (ti + 1);
        for (size_t b = 0; b < (size_t)cfg.size + LG_FILLER_POOL; b++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t->payload[b] = (uint8_t)(x >> 24);
        }
    }
    if (cfg.mode == MODE_PROBE)
        lg_t_start_ns = lg_now_ns(); /* recovery: counted from (about) the server's start */
    /* Each thread owns a contiguous block of the connections. */
    unsigned producers[LG_THREADS_MAX] = {0}, all_producers = 0;
    for (unsigned i = 0; i < cfg.conns; i++) {
        lg_conn *c = &conns[i];
        lg_thread *t = &threads[i / per];
        if (!t->conns)
            t->conns = c;
        t->n_conns++;
        c->index = i;
        c->role = role_of(&cfg, i);
        if (c->role == ROLE_PRODUCER) {
            producers[i / per]++;
            all_producers++;
        }
        c->fd = lg_connect(&cfg, cfg.mode == MODE_PROBE ? (int)(cfg.duration_s * 1000) : 0);
        if (c->fd < 0 || !lg_conn_setup(t, c))
            goto out;
    }
    for (unsigned ti = 0; ti < cfg.threads; ti++)
        if (cfg.rate > 0 && producers[ti])
            threads[ti].interval_ns = 1e9 / (cfg.rate * producers[ti] / all_producers);
    if (cfg.mode != MODE_PROBE)
        lg_t_start_ns = lg_now_ns();
    for (unsigned ti = 0; ti < cfg.threads; ti++)
        for (unsigned i = 0; i < threads[ti].n_conns; i++)
            if (!lg_conn_flush(&threads[ti], &threads[ti].conns[i]))
                goto out;
    pthread_t th[LG_THREADS_MAX];
    unsigned started = 0;
    while (started < cfg.threads && pthread_create(&th[started], NULL, lg_thread_main, &threads[started]) == 0)
        started++;
    if (started < cfg.threads)
        atomic_store(&lg_stop, 1); /* the started ones drain and end; the run counts as failed */
    rc = started < cfg.threads;
    uint64_t t_last = lg_t_start_ns, t_first = 0;
    for (unsigned ti = 0; ti < started; ti++) {
        pthread_join(th[ti], NULL);
        const lg_stats *s = &threads[ti].st;
        rc |= threads[ti].rc;
        for (unsigned l = 0; l < LAT_N; l++)
            hist_merge(&total->lat[l], &s->lat[l]);
        total->enq_ok += s->enq_ok;
        total->ack_ok += s->ack_ok;
        total->requests += s->requests;
        total->empty_takes += s->empty_takes;
        total->leased += s->leased;
        total->late_sends += s->late_sends;
        for (unsigned e = 0; e < ERR_SLOTS; e++)
            total->err_by_code[e] += s->err_by_code[e];
        if (s->t_last_ns > t_last)
            t_last = s->t_last_ns;
        if (s->t_first_ns && (!t_first || s->t_first_ns < t_first))
            t_first = s->t_first_ns;
    }
    double elapsed = (double)(t_last - lg_t_start_ns) / 1e9;
    report(&cfg, total, elapsed > 1e-6 ? elapsed : 1e-6);
    if (cfg.hist_out)
        write_hist(cfg.hist_out, &total->lat[cfg.mode == MODE_PRIO ? LAT_WAIT_API
                                             : cfg.mode == MODE_REDELIVER ? LAT_REDELIVER : LAT_WAIT]);
    /* Runs that measured nothing fail, so that a script does not report an empty number. */
    if (cfg.mode == MODE_LEASE_ACK && total->ack_ok == 0)
        rc = 1;
    if (cfg.mode == MODE_PROBE && !atomic_load(&lg_probe_ok))
        rc = 1;
    if (cfg.mode == MODE_REDELIVER && atomic_load(&lg_rescued) < cfg.count)
        rc = 1;
out:
    if (rc && !total)
        fprintf(stderr, "loadgen: out of memory\n");
    for (unsigned i = 0; conns && i < cfg.conns; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].out);
        free(conns[i].in);
        free(conns[i].slots);
        free(conns[i].ack_times);
        for (size_t h = 0; conns[i].handles && h < (size_t)cfg.depth * cfg.max_jobs; h++)
            free(conns[i].handles[h].val);
        free(conns[i].handles);
        free(conns[i].fifo);
    }
    for (unsigned ti = 0; threads && ti < cfg.threads; ti++) {
        if (threads[ti].ep > 0)
            close(threads[ti].ep);
        free(threads[ti].payload);
        free(threads[ti].timers);
        if (arenas[ti].chunk)
            lq_arena_free(&arenas[ti]);
    }
    free(conns);
    free(threads);
    free(arenas);
    free(total);
    return rc;
}
