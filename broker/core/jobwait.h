/* Job waits (lq_core_wait_job): producers parked until a job reaches a terminal state.
 *
 * Most jobs are never waited on, so nothing lives in the job struct but a flag bit: a map
 * job id -> first wait leads to a circular list of that job's waits (in arrival order), and a
 * heap orders every wait by its timeout. */
#ifndef LQ_JOBWAIT_H
#define LQ_JOBWAIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

typedef struct {
    uint64_t handle;
    uint64_t job_id;
    uint64_t expires_ms;
    uint32_t heap_pos;
    uint32_t prev, next; /* the job's waits, circular; free slots: next = next free */
    bool live;
} lq_jobwait;

/* The job at slot reached a terminal state: answers all its waits (JOB_WAIT_DONE with state)
 * right where the caller is in the event list. No-op for a job nobody waits on. */
void lq_jobwait_wake(lq_core *c, uint32_t slot, uint8_t state, lq_events *ev);
/* Answers waits whose timeout ran out (state 0). */
void lq_jobwait_expire(lq_core *c, uint64_t now_ms, lq_events *ev);
uint64_t lq_jobwait_next(const lq_core *c); /* earliest timeout, or LQ_TIME_NEVER */

void lq_jobwait_free(lq_core *c);
void lq_jobwait_check(const lq_core *c);

#endif
