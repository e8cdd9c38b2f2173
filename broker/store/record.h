/* The on-disk job record of the "jobs" database, and the CRC32C that guards it.
 *
 * Layout (version 1), all integers little-endian, no padding, never a raw struct:
 *
 *   off  size  field
 *     0     1  format version (LQ_REC_VERSION)
 *     1     1  state
 *     2     2  reserved, 0
 *     4     4  attempts
 *     8     8  id            (equals the key: a record copied under the wrong key is caught)
 *    16     8  seq
 *    24     8  priority      (two's complement)
 *    32     8  enqueued_ms
 *    40     8  not_before_ms
 *    48     8  deadline_ms
 *    56     4  max_attempts
 *    60     4  payload_len
 *    64  6x 4  lengths of queue, lane, tenant, idem_key, last_error, headers
 *    88     .  those six byte strings, back to back
 *   end-4   4  CRC32C of every byte before it
 *
 * A later version may change anything after byte 0; readers check the version first.
 * Internal to the store module (tests include it too).
 */
#ifndef LQ_STORE_RECORD_H
#define LQ_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

#define LQ_REC_VERSION 1
#define LQ_REC_FIXED_LEN 92u          /* header + trailing checksum, no strings */
#define LQ_REC_FIELD_MAX (64u << 10)  /* each string field; the core keeps them far shorter */
#define LQ_REC_HEADERS_MAX (1u << 20) /* the opaque headers blob */

/* CRC32C (Castagnoli), the iSCSI/ext4 variant: crc32c("123456789") == 0xE3069283.
 * Uses the SSE4.2 instruction when the CPU has it, a table otherwise; both give equal results. */
uint32_t lq_crc32c(const void *buf, size_t len);
uint32_t lq_crc32c_sw(const void *buf, size_t len); /* table only: for tests */

/* Bytes the encoding of rec + headers takes, or 0 if a field exceeds its cap. */
size_t lq_rec_encoded_len(const lq_job_rec *rec, uint32_t headers_len);

/* Writes exactly lq_rec_encoded_len() bytes into out. */
void lq_rec_encode(const lq_job_rec *rec, const void *headers, uint32_t headers_len, uint8_t *out);

/* Checks version, length consistency and checksum, then fills rec (strings point into buf)
 * and the headers blob. LQ_E_CORRUPT on any mismatch, including a version this build does
 * not know. */
lq_err lq_rec_decode(const uint8_t *buf, size_t len, lq_job_rec *rec, const uint8_t **headers,
                     uint32_t *headers_len);

#endif
