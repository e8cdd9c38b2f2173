/* libFuzzer target: the frame decoder and the Request decoder, as the broker runs them on
 * every byte a client sends: lq_frame_parse over a buffer holding any number of frames, each
 * frame's meta unpacked through the capped arena, then packed again and unpacked once more. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "leaseq.pb-c.h"
#include "proto/arena.h"
#include "proto/frame.h"

#define MAX_PAYLOAD (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lq_arena arena;
    static bool init;
    if (!init) {
        check(lq_arena_init(&arena, 64u << 10, 32u << 20) == 0);
        init = true;
    }
    size_t off = 0;
    while (off < size) {
        lq_frame f;
        size_t consumed = 0, need = 0, left = size - off;
        lq_frame_status st = lq_frame_parse(data + off, left, MAX_PAYLOAD, &f, &consumed, &need);
        if (st == LQ_FRAME_NEED_MORE) {
            /* more is needed, and never more than one largest frame */
            check(need > left && need <= LQ_FRAME_HEADER_BYTES + LQ_FRAME_META_MAX + MAX_PAYLOAD);
            break;
        }
        if (st != LQ_FRAME_OK)
            break; /* TOO_LARGE / BAD: the broker answers and closes */
        check(consumed >= LQ_FRAME_HEADER_BYTES && consumed <= left);
        check(f.meta_len <= LQ_FRAME_META_MAX && f.payload_len <= MAX_PAYLOAD);
        check(f.meta >= data + off && f.meta + f.meta_len <= data + off + consumed);
        check(f.payload + f.payload_len == data + off + consumed);
        lq_arena_reset(&arena);
        Leaseq__Request *r = leaseq__request__unpack(&arena.pb, f.meta_len, f.meta);
        if (r != NULL) {
            size_t n = leaseq__request__get_packed_size(r);
            uint8_t *buf = malloc(n ? n : 1);
            check(buf != NULL);
            check(leaseq__request__pack(r, buf) == n);
            /* protobuf-c keeps unknown fields as they came (even odd ones it accepted), so the
             * round trip is only required not to crash; a known body must survive it */
            Leaseq__Request *again = leaseq__request__unpack(NULL, n, buf);
            if (again != NULL)
                check(again->request_id == r->request_id && again->body_case == r->body_case);
            leaseq__request__free_unpacked(again, NULL);
            free(buf);
        }
        off += consumed;
    }
    return 0;
}
