/* Crash and kill acceptance test of leaseq: no acknowledged job is ever lost.
 *
 * A real leaseqd (sync full) serves 4 producer and 4 worker processes, each with its own
 * libleaseq connection. Producers enqueue 10,000 jobs (batches and single enqueues) whose
 * payloads carry a sequence number, and append every sequence number the broker acknowledged
 * to a file. Workers lease (long-poll, 2 s leases, up to 16 at a time), ack, and append every
 * sequence number they acked to a file. Mid-run:
 *   1. one worker is SIGKILLed while it holds leases: the others must lease its jobs at once
 *      (well before the 2 s lease time; asserted < 1 s);
 *   2. the broker is SIGKILLed while producers and workers are busy, and restarted on the same
 *      data dir and port; the clients reconnect.
 * At the end every acknowledged sequence number must have been acked by some worker.
 * Duplicates are allowed (at-least-once) and counted.
 */
#include "harness.h"

#include <stdatomic.h>
#include <sys/mman.h>

#include "leaseq.h"

#define N_JOBS 10000u
#define N_PRODUCERS 4u
#define N_WORKERS 4u
#define VICTIM 0u                  /* the worker that is SIGKILLed */
#define QUEUE "crash"
#define LEASE_MS 2000u
#define WAIT_MS 500u
#define MAX_JOBS 16u
#define CHUNK 25u                  /* jobs per batch enqueue */
#define CHUNK_PAUSE_MS 20u         /* paces producers so the kills land mid-run */
#define CALL_TIMEOUT_MS 5000
#define OUTAGE_MAX_MS 30000u       /* a client gives up after this long without the broker */
#define TEST_LIMIT_MS 120000u
#define STALL_MS (5u * LEASE_MS + 5000u) /* no worker progress this long: give up */
#define PAYLOAD_MAX 160u
#define REDELIVERY_MAX_US 1000000u

/* State shared by every test process (MAP_SHARED, set up before the forks). */
typedef struct {
    _Atomic uint32_t stop;             /* workers: finish now */
    _Atomic uint64_t enq_acked;        /* progress: acknowledged enqueues */
    _Atomic uint64_t acks;             /* progress: successful acks */
    _Atomic uint64_t lease_lost;       /* acks refused (LEASE_LOST/NOT_FOUND) */
    _Atomic uint64_t ack_uncertain;    /* acks whose reply was lost (connection broke) */
    _Atomic uint64_t conn_errors;      /* calls that failed with CONNECTION or timed out */
    _Atomic uint64_t corrupt;          /* payloads that did not match their sequence number */
    _Atomic uint64_t unexpected;       /* any other error code */
    _Atomic uint32_t unexpected_code;  /* the last such code */
    /* the victim's leases at the moment it froze */
    _Atomic uint32_t victim_holding;
    _Atomic uint32_t victim_n;
    _Atomic uint64_t victim_ids[MAX_JOBS];
    _Atomic uint64_t kill_us;          /* when the victim was SIGKILLed */
    _Atomic uint64_t redeliver_us[MAX_JOBS]; /* first lease of victim_ids[i] by another worker */
    _Atomic uint32_t redeliver_attempt[MAX_JOBS];
} shared_state;

static shared_state *S; /* owner: mmap in run(), inherited by the children */

/* ---- payloads -------------------------------------------------------------------------- */

static size_t payload_len_for(uint32_t seq) { return 48u + seq % 97u; }

static size_t make_payload(uint32_t seq, uint8_t *buf)
{
    size_t len = payload_len_for(seq);
    int n = snprintf((char *)buf, PAYLOAD_MAX, "leaseq-crash seq=%08u;", seq);
    for (size_t i = (size_t)n; i < len; i++)
        buf[i] = (uint8_t)(seq * 31u + i);
    return len;
}

/* The sequence number of a payload, or UINT32_MAX if it is not one we wrote. */
static uint32_t parse_payload(const uint8_t *p, size_t len)
{
    static const char prefix[] = "leaseq-crash seq=";
    const size_t plen = sizeof prefix - 1;
    if (len < plen + 9 || memcmp(p, prefix, plen) != 0)
        return UINT32_MAX;
    uint32_t seq = 0;
    for (size_t i = plen; i < plen + 8; i++) {
        if (p[i] < '0' || p[i] > '9')
            return UINT32_MAX;
        seq = seq * 10u + (uint32_t)(p[i] - '0');
    }
    if (seq >= N_JOBS || len != payload_len_for(seq) || p[plen + 8] != ';')
        return UINT32_MAX;
    for (size_t i = plen + 9; i < len; i++)
        if (p[i] != (uint8_t)(seq * 31u + i))
            return UINT32_MAX;
    return seq;
}

static void note_unexpected(leaseq_err e, const char *what, leaseq *c)
{
    atomic_fetch_add(&S->unexpected, 1);
    atomic_store(&S->unexpected_code, (uint32_t)e);
    h_log("%s: unexpected %s (%s)", what, leaseq_strerror(e), c ? leaseq_last_error(c) : "");
}

/* Connection-level failures: the broker is down or restarting. The call's request may or may
 * not have been processed. */
static bool transient(leaseq_err e)
{
    return e == LEASEQ_E_CONNECTION || e == LEASEQ_E_DEADLINE_EXCEEDED || e == LEASEQ_E_UNAVAILABLE;
}

/* Returns a connected handle, retrying while the broker is down; NULL after OUTAGE_MAX_MS. */
static leaseq *connect_retry(const char *addr, const leaseq_opts *o)
{
    uint64_t end = h_now_ms() + OUTAGE_MAX_MS;
    for (;;) {
        leaseq *c = NULL;
        leaseq_err e = leaseq_connect(addr, o, &c);
        if (e == LEASEQ_OK)
            return c;
        if (h_now_ms() >= end) {
            h_log("connect %s: giving up: %s", addr, leaseq_strerror(e));
            return NULL;
        }
        h_sleep_ms(50);
    }
}

/* ---- producers ------------------------------------------------------------------------- */

/* Appends "seq job_id" lines for the acknowledged jobs. */
static bool record_enqueued(int fd, const uint32_t *seqs, const uint64_t *ids, size_t n)
{
    char buf[CHUNK * 48];
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%u %llu\n", seqs[i], (unsigned long long)ids[i]);
    atomic_fetch_add(&S->enq_acked, n);
    return h_write_all(fd, buf, len);
}

/* Enqueues seqs[0..n) until each is acknowledged; the ones that fail with a connection error are
 * sent again (they may then be stored twice: a duplicate, never a loss). */
static bool produce_chunk(leaseq *c, int fd, uint32_t *seqs, size_t n, bool single)
{
    static uint8_t payloads[CHUNK][PAYLOAD_MAX];
    leaseq_job_spec specs[CHUNK];
    leaseq_enqueue_result res[CHUNK];
    uint64_t outage_end = 0;
    while (n > 0) {
        for (size_t i = 0; i < n; i++) {
            specs[i] = (leaseq_job_spec){.queue = QUEUE, .max_attempts = 100};
            specs[i].payload = payloads[i];
            specs[i].payload_len = make_payload(seqs[i], payloads[i]);
        }
        leaseq_err e = LEASEQ_OK;
        if (single) {
            for (size_t i = 0; i < n; i++) {
                res[i] = (leaseq_enqueue_result){0};
                res[i].err = leaseq_enqueue(c, &specs[i], &res[i].job_id, CALL_TIMEOUT_MS);
                if (transient(res[i].err)) {
                    e = res[i].err;
                    for (size_t j = i + 1; j < n; j++)
                        res[j].err = e;
                    break;
                }
            }
        } else {
            e = leaseq_enqueue_batch(c, specs, n, res, CALL_TIMEOUT_MS);
            if (e != LEASEQ_OK)
                for (size_t i = 0; i < n; i++)
                    res[i].err = e; /* a broken batch acknowledges nothing */
        }
        uint32_t okseq[CHUNK], again[CHUNK];
        uint64_t okid[CHUNK];
        size_t nok = 0, nagain = 0;
        for (size_t i = 0; i < n; i++) {
            if (res[i].err == LEASEQ_OK) {
                okseq[nok] = seqs[i];
                okid[nok++] = res[i].job_id;
            } else {
                if (!transient(res[i].err))
                    note_unexpected(res[i].err, "enqueue", c);
                else
                    atomic_fetch_add(&S->conn_errors, 1);
                again[nagain++] = seqs[i];
            }
        }
        if (nok > 0 && !record_enqueued(fd, okseq, okid, nok))
            return false;
        memcpy(seqs, again, nagain * sizeof *seqs);
        n = nagain;
        if (n > 0) {
            if (!outage_end)
                outage_end = h_now_ms() + OUTAGE_MAX_MS;
            if (h_now_ms() >= outage_end) {
                h_log("producer: broker unreachable for %u ms, giving up", OUTAGE_MAX_MS);
                return false;
            }
            h_sleep_ms(20);
        }
    }
    return true;
}

static int producer_main(const char *addr, const char *tmpdir, unsigned p)
{
    char path[H_PATH_MAX], name[32];
    snprintf(path, sizeof path, "%s/enqueued.%u", tmpdir, p);
    snprintf(name, sizeof name, "producer-%u", p);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return 2;
    leaseq_opts o = {.client_name = name};
    leaseq *c = connect_retry(addr, &o);
    if (!c)
        return 3;
    uint32_t per = N_JOBS / N_PRODUCERS, first = p * per, end = first + per;
    int rc = 0;
    unsigned chunk_no = 0;
    for (uint32_t s = first; s < end; chunk_no++) {
        uint32_t seqs[CHUNK];
        size_t n = 0;
        /* Every fourth chunk goes as single enqueues, the others as one batch. */
        size_t want = chunk_no % 4 == 3 ? 5 : CHUNK;
        while (n < want && s < end)
            seqs[n++] = s++;
        if (!produce_chunk(c, fd, seqs, n, chunk_no % 4 == 3)) {
            rc = 4;
            break;
        }
        /* Around the planned broker crash (at N_JOBS / 2) producers go flat out, so the crash
         * lands while enqueues are in flight, not between paced chunks. */
        uint64_t done = atomic_load(&S->enq_acked);
        if (done < N_JOBS * 2 / 5 || done >= N_JOBS * 3 / 5)
            h_sleep_ms(CHUNK_PAUSE_MS);
    }
    leaseq_close(c);
    close(fd);
    return rc;
}

/* ---- workers --------------------------------------------------------------------------- */

static void check_redelivery(uint64_t job_id, uint32_t attempt)
{
    if (!atomic_load(&S->kill_us))
        return;
    uint32_t n = atomic_load(&S->victim_n);
    for (uint32_t i = 0; i < n; i++) {
        if (atomic_load(&S->victim_ids[i]) != job_id)
            continue;
        uint64_t zero = 0;
        if (atomic_compare_exchange_strong(&S->redeliver_us[i], &zero, h_now_us()))
            atomic_store(&S->redeliver_attempt[i], attempt);
    }
}

/* The victim freezes with its leases, like a GPU worker hung in a kernel, until it is killed. */
static void freeze_holding(const leaseq_lease *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        atomic_store(&S->victim_ids[i], l[i].job_id);
    atomic_store(&S->victim_n, (uint32_t)n);
    atomic_store(&S->victim_holding, 1);
    for (;;)
        h_sleep_ms(1000);
}

static int worker_main(const char *addr, const char *tmpdir, unsigned w)
{
    char path[H_PATH_MAX], name[32];
    snprintf(path, sizeof path, "%s/acked.%u", tmpdir, w);
    snprintf(name, sizeof name, "worker-%u", w);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return 2;
    leaseq_opts o = {.client_name = name, .worker_id = name};
    leaseq *c = connect_retry(addr, &o);
    if (!c)
        return 3;
    const char *queues[] = {QUEUE};
    uint64_t last_ok = h_now_ms();
    int rc = 0;
    while (!atomic_load(&S->stop)) {
        leaseq_lease *l = NULL;
        size_t n = 0;
        leaseq_err e = leaseq_dequeue(c, queues, 1, MAX_JOBS, WAIT_MS, LEASE_MS, &l, &n, CALL_TIMEOUT_MS);
        if (e != LEASEQ_OK) {
            if (transient(e))
                atomic_fetch_add(&S->conn_errors, 1);
            else
                note_unexpected(e, "dequeue", c);
            if (h_now_ms() - last_ok > OUTAGE_MAX_MS) {
                h_log("%s: broker unreachable for %u ms, giving up", name, OUTAGE_MAX_MS);
                rc = 4;
                break;
            }
            h_sleep_ms(20);
            continue;
        }
        last_ok = h_now_ms();
        if (w == VICTIM && n > 0 && atomic_load(&S->enq_acked) >= N_JOBS / 5)
            freeze_holding(l, n);
        char buf[MAX_JOBS * 64];
        size_t len = 0;
        for (size_t i = 0; i < n; i++) {
            check_redelivery(l[i].job_id, l[i].attempt);
            uint32_t seq = parse_payload(l[i].payload, l[i].payload_len);
            if (seq == UINT32_MAX) {
                atomic_fetch_add(&S->corrupt, 1);
                h_log("%s: job %llu has a payload we never wrote (%zu bytes)", name,
                      (unsigned long long)l[i].job_id, l[i].payload_len);
                continue;
            }
            e = leaseq_ack(c, l[i].job_id, l[i].lease_token, NULL, 0, CALL_TIMEOUT_MS);
            if (e == LEASEQ_OK) {
                atomic_fetch_add(&S->acks, 1);
                len += (size_t)snprintf(buf + len, sizeof buf - len, "%u %llu %u\n", seq,
                                        (unsigned long long)l[i].job_id, l[i].attempt);
            } else if (e == LEASEQ_E_LEASE_LOST || e == LEASEQ_E_NOT_FOUND) {
                atomic_fetch_add(&S->lease_lost, 1); /* redelivered elsewhere, or broker restarted */
            } else if (transient(e)) {
                /* The ack may have committed just before the broker died: the job is then gone
                 * and will not come back. We did process it, so note it as an uncertain ack. */
                atomic_fetch_add(&S->ack_uncertain, 1);
                len += (size_t)snprintf(buf + len, sizeof buf - len, "%u %llu %u ?\n", seq,
                                        (unsigned long long)l[i].job_id, l[i].attempt);
            } else {
                note_unexpected(e, "ack", c);
            }
        }
        leaseq_leases_free(l, n);
        if (len > 0 && !h_write_all(fd, buf, len)) {
            rc = 2;
            break;
        }
    }
    leaseq_close(c);
    close(fd);
    return rc;
}

/* ---- the verdict ----------------------------------------------------------------------- */

typedef struct {
    uint8_t enqueued[N_JOBS];   /* acknowledged by the broker */
    uint32_t acked[N_JOBS];     /* acks that succeeded */
    uint32_t uncertain[N_JOBS]; /* acks whose reply was lost */
    uint64_t n_enqueued_lines, n_ack_lines, bad_lines;
} tally;

static void read_records(const char *tmpdir, tally *t)
{
    memset(t, 0, sizeof *t);
    char path[H_PATH_MAX], line[128];
    for (unsigned i = 0; i < N_PRODUCERS; i++) {
        snprintf(path, sizeof path, "%s/enqueued.%u", tmpdir, i);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) {
            unsigned seq;
            if (sscanf(line, "%u", &seq) == 1 && seq < N_JOBS) {
                t->enqueued[seq] = 1;
                t->n_enqueued_lines++;
            } else {
                t->bad_lines++;
            }
        }
        if (f)
            fclose(f);
    }
    for (unsigned i = 0; i < N_WORKERS; i++) {
        snprintf(path, sizeof path, "%s/acked.%u", tmpdir, i);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) {
            unsigned seq;
            if (sscanf(line, "%u", &seq) != 1 || seq >= N_JOBS) {
                t->bad_lines++;
                continue;
            }
            if (strchr(line, '?')) {
                t->uncertain[seq]++;
            } else {
                t->acked[seq]++;
                t->n_ack_lines++;
            }
        }
        if (f)
            fclose(f);
    }
}

/* Acknowledged jobs that no worker has acked (yet). */
static uint32_t missing_count(const tally *t)
{
    uint32_t missing = 0;
    for (uint32_t s = 0; s < N_JOBS; s++)
        if (t->enqueued[s] && !t->acked[s] && !t->uncertain[s])
            missing++;
    return missing;
}

/* ---- the conductor --------------------------------------------------------------------- */

static pid_t spawn(int (*fn)(const char *, const char *, unsigned), const char *addr, const char *tmpdir,
                   unsigned i)
{
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        h_child_init(parent);
        _exit(fn(addr, tmpdir, i));
    }
    return pid;
}

static int run(const char *tmpdir)
{
    int failures = 0;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            h_log("FAILED: " __VA_ARGS__);                                                         \
        }                                                                                          \
    } while (0)

    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S == MAP_FAILED)
        return 1;
    memset(S, 0, sizeof *S);
    const uint64_t t_end = h_now_ms() + TEST_LIMIT_MS;

    h_broker b;
    if (!h_broker_init(&b, tmpdir) || !h_broker_start_ready(&b, 15000)) {
        h_dump_tail(b.log_path, 40);
        return 1;
    }
    h_log("leaseqd pid %d on %s, data in %s, sync %s", (int)b.pid, b.addr, b.data_dir, b.sync);

    pid_t workers[N_WORKERS], producers[N_PRODUCERS];
    for (unsigned i = 0; i < N_WORKERS; i++)
        workers[i] = spawn(worker_main, b.addr, tmpdir, i);
    for (unsigned i = 0; i < N_PRODUCERS; i++)
        producers[i] = spawn(producer_main, b.addr, tmpdir, i);

    /* 1. Kill the victim worker as soon as it froze holding leases. */
    while (!atomic_load(&S->victim_holding) && h_now_ms() < t_end && h_broker_alive(&b))
        h_sleep_ms(2);
    CHECK(atomic_load(&S->victim_holding), "the victim worker never held leases");
    uint64_t enq_at_kill = atomic_load(&S->enq_acked);
    atomic_store(&S->kill_us, h_now_us());
    kill(workers[VICTIM], SIGKILL);
    waitpid(workers[VICTIM], NULL, 0);
    uint32_t vn = atomic_load(&S->victim_n);
    h_log("SIGKILLed worker-%u (pid %d) holding %u leases (last leased job %llu); %llu jobs acknowledged",
          VICTIM, (int)workers[VICTIM], vn, (unsigned long long)(vn ? atomic_load(&S->victim_ids[vn - 1]) : 0),
          (unsigned long long)enq_at_kill);

    /* Wait for every one of its jobs to be leased by another worker (bounded: 3 lease times). */
    uint64_t redeliver_wait_end = h_now_ms() + 3 * LEASE_MS;
    for (;;) {
        uint32_t got = 0;
        for (uint32_t i = 0; i < vn; i++)
            got += atomic_load(&S->redeliver_us[i]) != 0;
        if (got == vn || h_now_ms() >= redeliver_wait_end)
            break;
        h_sleep_ms(2);
    }
    uint64_t kill_us = atomic_load(&S->kill_us), last_delay_us = UINT64_MAX, all_delay_us = 0;
    uint32_t redelivered = 0;
    for (uint32_t i = 0; i < vn; i++) {
        uint64_t t = atomic_load(&S->redeliver_us[i]);
        if (!t) {
            all_delay_us = UINT64_MAX;
            continue;
        }
        redelivered++;
        if (all_delay_us != UINT64_MAX && t - kill_us > all_delay_us)
            all_delay_us = t - kill_us;
        if (i == vn - 1)
            last_delay_us = t - kill_us;
    }
    if (vn > 0)
        h_log("redelivery after the worker kill: last leased job after %.1f ms (attempt %u), %u/%u of its jobs "
              "within %.1f ms (lease time %u ms)",
              last_delay_us == UINT64_MAX ? -1.0 : (double)last_delay_us / 1000.0,
              atomic_load(&S->redeliver_attempt[vn - 1]), redelivered, vn,
              all_delay_us == UINT64_MAX ? -1.0 : (double)all_delay_us / 1000.0, LEASE_MS);
    CHECK(vn > 0 && last_delay_us < REDELIVERY_MAX_US,
          "the killed worker's last leased job was not redelivered within %u ms", REDELIVERY_MAX_US / 1000u);
    CHECK(redelivered == vn, "only %u of the killed worker's %u jobs were redelivered", redelivered, vn);

    /* 2. Kill the broker mid-run: at least half the jobs acknowledged, producers still going. */
    while (atomic_load(&S->enq_acked) < N_JOBS / 2 && h_now_ms() < t_end && h_broker_alive(&b))
        h_sleep_ms(2);
    uint64_t enq_at_crash = atomic_load(&S->enq_acked), acks_at_crash = atomic_load(&S->acks);
    CHECK(h_broker_alive(&b), "leaseqd died on its own before the planned crash");
    h_broker_kill9(&b);
    h_log("SIGKILLed leaseqd with %llu jobs acknowledged and %llu acked so far",
          (unsigned long long)enq_at_crash, (unsigned long long)acks_at_crash);
    CHECK(enq_at_crash < N_JOBS, "producers were already done when the broker was killed");
    h_sleep_ms(300);
    uint64_t t_restart = h_now_us();
    if (!h_broker_start_ready(&b, 20000)) {
        failures++;
        h_log("FAILED: leaseqd did not come back on %s", b.addr);
        goto out;
    }
    h_log("leaseqd restarted (pid %d) in %.1f ms on the same data dir and port", (int)b.pid,
          (double)(h_now_us() - t_restart) / 1000.0);

    /* 3. Producers finish, then workers drain every acknowledged job. */
    for (unsigned i = 0; i < N_PRODUCERS; i++) {
        int st = 0;
        int left = (int)(t_end > h_now_ms() ? t_end - h_now_ms() : 1);
        if (!h_wait_pid(producers[i], &st, left)) {
            CHECK(false, "producer-%u did not finish in time", i);
            continue;
        }
        producers[i] = 0;
        char how[64];
        h_describe_status(st, how, sizeof how);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer-%u ended with %s", i, how);
    }
    h_log("producers done: %llu jobs acknowledged", (unsigned long long)atomic_load(&S->enq_acked));

    tally *t = malloc(sizeof *t); /* owner: freed at out */
    if (!t) {
        failures++;
        goto out;
    }
    /* Every job still missing is ready or leased (its lease runs out within LEASE_MS), so with no
     * progress for several lease times nothing more will come. */
    uint32_t missing = 0, last_missing = UINT32_MAX;
    uint64_t progress_ms = h_now_ms();
    for (;;) {
        read_records(tmpdir, t);
        missing = missing_count(t);
        if (missing != last_missing) {
            last_missing = missing;
            progress_ms = h_now_ms();
        }
        if (missing == 0 || h_now_ms() >= t_end || !h_broker_alive(&b) || h_now_ms() - progress_ms > STALL_MS)
            break;
        h_sleep_ms(100);
    }
    atomic_store(&S->stop, 1);
    for (unsigned i = 0; i < N_WORKERS; i++) {
        if (i == VICTIM)
            continue;
        int st = 0;
        if (!h_wait_pid(workers[i], &st, CALL_TIMEOUT_MS * 2)) {
            CHECK(false, "worker-%u did not stop", i);
            continue;
        }
        char how[64];
        h_describe_status(st, how, sizeof how);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker-%u ended with %s", i, how);
    }
    read_records(tmpdir, t); /* the last acks of the stopped workers */
    missing = missing_count(t);

    uint32_t n_enq = 0, n_acked_distinct = 0, only_uncertain = 0, extra = 0;
    uint64_t dups = 0;
    for (uint32_t s = 0; s < N_JOBS; s++) {
        n_enq += t->enqueued[s];
        if (t->acked[s]) {
            n_acked_distinct++;
            dups += t->acked[s] - 1;
        }
        if (t->enqueued[s] && !t->acked[s] && t->uncertain[s])
            only_uncertain++;
        if (!t->enqueued[s] && t->acked[s])
            extra++;
    }
    h_log("summary: %u/%u jobs acknowledged by the broker (%llu acknowledgements), %llu acks for %u distinct "
          "jobs, %llu duplicates (at-least-once), %u acked jobs whose enqueue was never acknowledged, "
          "%u covered only by an ack whose reply was lost in the crash, %u lost",
          n_enq, N_JOBS, (unsigned long long)t->n_enqueued_lines, (unsigned long long)t->n_ack_lines,
          n_acked_distinct, (unsigned long long)dups, extra, only_uncertain, missing);
    h_log("summary: worker redelivery after SIGKILL %.1f ms (limit %u ms, lease time %u ms); "
          "%llu enqueued jobs or calls failed with a connection error while the broker was down, %llu stale acks refused, %llu unexpected errors",
          last_delay_us == UINT64_MAX ? -1.0 : (double)last_delay_us / 1000.0, REDELIVERY_MAX_US / 1000u, LEASE_MS,
          (unsigned long long)atomic_load(&S->conn_errors), (unsigned long long)atomic_load(&S->lease_lost),
          (unsigned long long)atomic_load(&S->unexpected));
    if (missing) {
        unsigned shown = 0;
        for (uint32_t s = 0; s < N_JOBS && shown < 10; s++)
            if (t->enqueued[s] && !t->acked[s] && !t->uncertain[s]) {
                h_log("lost: seq %u", s);
                shown++;
            }
    }
    CHECK(n_enq == N_JOBS, "only %u of %u jobs were ever acknowledged", n_enq, N_JOBS);
    CHECK(missing == 0, "%u acknowledged jobs were never acked by a worker (lost)", missing);
    CHECK(t->bad_lines == 0, "%llu malformed record lines", (unsigned long long)t->bad_lines);
    CHECK(atomic_load(&S->corrupt) == 0, "%llu payloads were corrupted", (unsigned long long)atomic_load(&S->corrupt));
    CHECK(atomic_load(&S->unexpected) == 0, "%llu unexpected errors (last %s)",
          (unsigned long long)atomic_load(&S->unexpected),
          leaseq_strerror((leaseq_err)atomic_load(&S->unexpected_code)));
    free(t);

    char how[96];
    bool clean = h_broker_stop(&b, 15000, how, sizeof how);
    CHECK(clean, "leaseqd did not stop cleanly on SIGTERM: %s", how);
out:
    if (failures)
        h_dump_tail(b.log_path, 40);
    /* Stragglers die with the process group (see h_supervise). */
    return failures ? 1 : 0;
#undef CHECK
}

int main(void) { return h_supervise("test_crash_recovery", 200, run); }
