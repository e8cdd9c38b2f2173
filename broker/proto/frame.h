/* Frame codec of the native protocol, shared by the broker and libleaseq.
 *
 *   u32 length | u32 meta_length | meta (protobuf) | payload
 *
 * Big-endian lengths; length counts the bytes after itself (4 + meta + payload). The limits
 * are checked on the 8 header bytes alone, before anything is allocated or buffered.
 */
#ifndef LQ_FRAME_H
#define LQ_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define LQ_FRAME_HEADER_BYTES 8u
#define LQ_FRAME_META_MAX (1u << 20)         /* 1 MiB of protobuf metadata */
#define LQ_PAYLOAD_MAX_DEFAULT (16u << 20)   /* 16 MiB payload cap (configurable lower/higher) */

typedef struct {
    uint32_t meta_len;
    uint32_t payload_len;
    const uint8_t *meta;    /* points into the parsed buffer */
    const uint8_t *payload; /* points into the parsed buffer */
} lq_frame;

typedef enum {
    LQ_FRAME_OK = 0,        /* a whole frame was parsed */
    LQ_FRAME_NEED_MORE = 1, /* the buffer holds a valid prefix; *need says how many bytes total */
    LQ_FRAME_TOO_LARGE = 2, /* meta or payload above the caps: answer FRAME_TOO_LARGE and close */
    LQ_FRAME_BAD = 3,       /* inconsistent lengths: answer PROTOCOL_ERROR and close */
} lq_frame_status;

/* Looks at buf[0..len). On LQ_FRAME_OK fills *f and sets *consumed to the frame's size.
 * On LQ_FRAME_NEED_MORE sets *need to the full frame size once the header is known
 * (8 before that). max_payload bounds payload_len; meta is bounded by LQ_FRAME_META_MAX. */
lq_frame_status lq_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload,
                               lq_frame *f, size_t *consumed, size_t *need);

/* Writes the 8 header bytes for a frame of meta_len + payload_len. */
void lq_frame_header(uint8_t hdr[LQ_FRAME_HEADER_BYTES], uint32_t meta_len, uint32_t payload_len);

static inline uint32_t lq_be32_load(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void lq_be32_store(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

#endif
