#include "lq_assert.h"

#include <stdio.h>
#include <stdlib.h>

_Noreturn void lq_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "level=fatal msg=\"assertion failed\" expr=\"%s\" at=%s:%d\n", expr, file, line);
    fflush(stderr);
    abort();
}
