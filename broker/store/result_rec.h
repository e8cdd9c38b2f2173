/* The on-disk result record of the "results" database.
 *
 * Layout (version 1), all integers little-endian, no padding, never a raw struct:
 *
 *   off  size  field
 *     0     1  format version (LQ_RES_VERSION)
 *     1     1  state (DONE, EXPIRED, PURGED or CANCELLED)
 *     2     2  reserved, 0
 *     4     4  result_len
 *     8     8  id            (equals the key)
 *    16     8  finished_ms
 *    24     8  expires_ms
 *    32  3x 4  lengths of queue, idem_key, error
 *    44     4  CRC32C of the result bytes
 *    48     .  queue, idem_key, error, back to back
 *     m     4  CRC32C of every byte before it (the head)
 *   m+4     .  result bytes (result_len)
 *
 * Two checksums because the result can be MBs while the head is a few hundred bytes: the
 * start-up walk (idempotency keys) checks and touches only the heads, so it reads one page per
 * result instead of the whole database; a read of the result checks both.
 * A later version may change anything after byte 0; readers check the version first.
 * Internal to the store module (tests include it too).
 */
#ifndef LQ_STORE_RESULT_REC_H
#define LQ_STORE_RESULT_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define LQ_RES_VERSION 1
#define LQ_RES_FIXED_LEN 52u /* head without strings, head checksum included */
#define LQ_RES_OFF_EXPIRES 24u

/* Bytes of the encoding of r (its result_len included), or 0 if a string exceeds
 * LQ_REC_FIELD_MAX or the total does not fit in 32 bits. */
size_t lq_res_encoded_len(const lq_result_view *r);

/* Writes exactly lq_res_encoded_len() bytes into out; result_crc is lq_crc32c of r->result
 * (computed by the caller, which may have done it on another thread). */
void lq_res_encode(const lq_result_view *r, uint32_t result_crc, uint8_t *out);

/* Checks version, lengths and the head checksum, and the result checksum too if
 * check_result; then fills out (strings and result point into buf). Without check_result,
 * out->result is NULL and out->result_len 0: unchecked bytes are never handed out.
 * LQ_E_CORRUPT on any mismatch, including a version this build does not know. */
lq_err lq_res_decode(const uint8_t *buf, size_t len, bool check_result, lq_result_view *out);

#endif
