#include "frame.h"

lq_frame_status lq_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload,
                               lq_frame *f, size_t *consumed, size_t *need)
{
    *consumed = 0;
    if (len < LQ_FRAME_HEADER_BYTES) {
        *need = LQ_FRAME_HEADER_BYTES;
        return LQ_FRAME_NEED_MORE;
    }
    uint32_t length = lq_be32_load(buf);
    uint32_t meta_len = lq_be32_load(buf + 4);
    /* length covers meta_length itself, so anything under 4 cannot be a frame, and meta
     * cannot be longer than what length leaves for it. */
    if (length < 4 || meta_len > length - 4)
        return LQ_FRAME_BAD;
    uint32_t payload_len = length - 4 - meta_len;
    if (meta_len > LQ_FRAME_META_MAX || payload_len > max_payload)
        return LQ_FRAME_TOO_LARGE;
    if (meta_len == 0)
        return LQ_FRAME_BAD; /* every request has at least a request id */
    size_t total = (size_t)length + 4;
    if (len < total) {
        *need = total;
        return LQ_FRAME_NEED_MORE;
    }
    f->meta_len = meta_len;
    f->payload_len = payload_len;
    f->meta = buf + LQ_FRAME_HEADER_BYTES;
    f->payload = buf + LQ_FRAME_HEADER_BYTES + meta_len;
    *consumed = total;
    *need = total;
    return LQ_FRAME_OK;
}

void lq_frame_header(uint8_t hdr[LQ_FRAME_HEADER_BYTES], uint32_t meta_len, uint32_t payload_len)
{
    lq_be32_store(hdr, 4 + meta_len + payload_len);
    lq_be32_store(hdr + 4, meta_len);
}
