/* Result record codec. See result_rec.h for the layout. */
#include "result_rec.h"

#include <string.h>

#include "record.h"
#include "le.h"

enum { N_STR = 3, OFF_LENS = 32, OFF_RESULT_CRC = 44, OFF_STR = 48 };

size_t lq_res_encoded_len(const lq_result_view *r)
{
    const lq_str s[N_STR] = {r->queue, r->idem_key, r->error};
    uint64_t n = LQ_RES_FIXED_LEN + (uint64_t)r->result_len;
    for (int i = 0; i < N_STR; i++) {
        if (s[i].len > LQ_REC_FIELD_MAX)
            return 0;
        n += s[i].len;
    }
    return n <= UINT32_MAX ? (size_t)n : 0;
}

void lq_res_encode(const lq_result_view *r, uint32_t result_crc, uint8_t *out)
{
    const lq_str s[N_STR] = {r->queue, r->idem_key, r->error};
    out[0] = LQ_RES_VERSION;
    out[1] = r->state;
    out[2] = out[3] = 0;
    put_u32(out + 4, r->result_len);
    put_u64(out + 8, r->id);
    put_u64(out + 16, r->finished_ms);
    put_u64(out + LQ_RES_OFF_EXPIRES, r->expires_ms);
    put_u32(out + OFF_RESULT_CRC, result_crc);
    uint8_t *p = out + OFF_STR;
    for (int i = 0; i < N_STR; i++) {
        put_u32(out + OFF_LENS + 4 * i, s[i].len);
        if (s[i].len > 0)
            memcpy(p, s[i].ptr, s[i].len);
        p += s[i].len;
    }
    put_u32(p, lq_crc32c(out, (size_t)(p - out)));
    if (r->result_len > 0)
        memcpy(p + 4, r->result, r->result_len);
}

lq_err lq_res_decode(const uint8_t *buf, size_t len, bool check_result, lq_result_view *out)
{
    if (len < LQ_RES_FIXED_LEN || buf[0] != LQ_RES_VERSION || buf[2] != 0 || buf[3] != 0)
        return LQ_E_CORRUPT;
    /* Summed in 64 bits so garbage lengths cannot wrap around into a plausible total. */
    uint32_t lens[N_STR];
    uint64_t head = LQ_RES_FIXED_LEN;
    for (int i = 0; i < N_STR; i++) {
        lens[i] = get_u32(buf + OFF_LENS + 4 * i);
        head += lens[i];
    }
    uint32_t result_len = get_u32(buf + 4);
    if (head + result_len != len)
        return LQ_E_CORRUPT;
    if (lq_crc32c(buf, head - 4) != get_u32(buf + head - 4))
        return LQ_E_CORRUPT;
    if (check_result && lq_crc32c(buf + head, result_len) != get_u32(buf + OFF_RESULT_CRC))
        return LQ_E_CORRUPT;

    memset(out, 0, sizeof(*out));
    out->state = buf[1];
    out->id = get_u64(buf + 8);
    out->finished_ms = get_u64(buf + 16);
    out->expires_ms = get_u64(buf + LQ_RES_OFF_EXPIRES);
    lq_str *dst[N_STR] = {&out->queue, &out->idem_key, &out->error};
    const uint8_t *p = buf + OFF_STR;
    for (int i = 0; i < N_STR; i++) {
        /* Never NULL, even when empty: callers may memcpy from it without a check. */
        *dst[i] = (lq_str){(const char *)p, lens[i]};
        p += lens[i];
    }
    if (check_result) {
        out->result = buf + head; /* non-NULL even when empty (then one past the end) */
        out->result_len = result_len;
    }
    return LQ_OK;
}
