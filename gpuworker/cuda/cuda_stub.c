/* Linked instead of backend_cuda.cu when nvcc was not found at build time (or in sanitizer
 * builds): the worker says so at start and runs on the CPU backend. */
#include "../backend.h"

#include <stdio.h>

bool gw_cuda_compiled(void)
{
    return false;
}

gw_backend *gw_backend_cuda_open(int device, char *err, size_t err_cap)
{
    (void)device;
    snprintf(err, err_cap, "built without CUDA (nvcc was not found at build time)");
    return NULL;
}
