/* libFuzzer target: bytes -> the beanstalk line parser, driven the way the listener drives it
 * (units one after another, JOB_TOO_BIG bodies dropped, over-long lines skipped to their end).
 * It checks the parser's promises: progress or NEED_MORE, consumed within the input, bodies and
 * names inside the input, names valid.
 *   clang -fsanitize=fuzzer,address,undefined -Ibroker tests/fuzz/fuzz_beanstalk.c broker/beanstalk/parse.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "beanstalk/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)            \
    do {                    \
        if (!(x))           \
            abort();        \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the first byte picks a small job size limit, so JOB_TOO_BIG paths are reached */
    uint32_t max_job = size > 0 ? (uint32_t)data[0] * 4u : BS_JOB_SIZE_DEFAULT;
    size_t off = 0;
    uint64_t discard = 0;
    bool skip = false;
    while (off < size) {
        const uint8_t *p = data + off;
        size_t avail = size - off;
        if (discard > 0) {
            size_t n = avail < discard ? avail : (size_t)discard;
            discard -= n;
            off += n;
            continue;
        }
        if (skip) {
            bool done = false;
            size_t n = bs_skip_line(p, avail, &done);
            CHECK(n <= avail);
            skip = !done;
            if (n == 0)
                break;
            off += n;
            continue;
        }
        bs_cmd c;
        size_t used = 0, need = 0;
        bs_status st = bs_parse(p, avail, max_job, &c, &used, &need);
        if (st == BS_NEED_MORE) {
            CHECK(used == 0 && need > avail);
            break;
        }
        CHECK(used > 0 && used <= avail);
        if (st == BS_ERROR) {
            CHECK(c.err != BS_ERR_NONE && bs_error_line(c.err)[0] != '\0');
            discard = c.discard;
            skip = c.skip_line;
        } else {
            CHECK(c.op > BS_OP_NONE && c.op < BS_OP_COUNT_);
            CHECK(bs_op_name(c.op)[0] != '?');
            if (c.body != NULL)
                CHECK(c.body >= p && c.body + c.body_len + 2 <= p + used && c.body_len <= max_job);
            if (c.name != NULL)
                CHECK((const uint8_t *)c.name >= p && (const uint8_t *)c.name + c.name_len <= p + used &&
                      bs_name_ok(c.name, c.name_len));
        }
        off += used;
    }
    return 0;
}
