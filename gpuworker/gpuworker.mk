# leaseq-gpuworker: included by the top-level Makefile (it provides BUILD, CC, CFLAGS_ALL,
# LDFLAGS_ALL, obj, LIBLEASEQ_A, SAN).
#
#   $(BUILD)/bin/leaseq-gpuworker        the worker (make / make all)
#   $(BUILD)/tests/unit/test_gpu_*       golden + property tests, GPU-vs-CPU equivalence (make tests)
#   $(BUILD)/tests/integration/gpu_workers  two workers on a real leaseqd, one hung
#   $(BUILD)/bench/gpu_thumb             1024x1024 JPEG -> 256x256 thumbnail, images/s
#   make demo                            broker + worker + sample images, results in $(BUILD)/demo-out
#
# CUDA: built with nvcc when one is found (PATH, then /usr/local/cuda/bin), never in sanitizer
# builds; the binary links cudart statically and runs on machines without a GPU or driver.

DEB_PACKAGES += libpng-dev libjpeg62-turbo-dev

GW_NVCC_FOUND := $(if $(filter 1,$(SAN)),,$(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc)))
# nvcc may be a wrapper script (/usr/local/bin/nvcc -> exec /usr/local/cuda-X/bin/nvcc), so the toolkit
# root is asked of nvcc itself (its TOP), never guessed from where the command sits; cudart_static is
# then looked for where toolkits put it. No cudart_static = no CUDA backend, never a broken link.
GW_CUDA_HOME := $(if $(GW_NVCC_FOUND),$(shell $(GW_NVCC_FOUND) --dryrun -x cu -c /dev/null -o /dev/null 2>&1 \
                  | sed -n 's/^#\$$ TOP=//p' | head -n1))
GW_CUDART := $(firstword $(foreach d,$(wildcard $(GW_CUDA_HOME)/targets/*/lib) $(GW_CUDA_HOME)/lib64 \
               $(GW_CUDA_HOME)/lib $(patsubst %/bin/nvcc,%,$(GW_NVCC_FOUND))/lib64,$(wildcard $(d)/libcudart_static.a)))
GW_NVCC := $(if $(GW_CUDART),$(GW_NVCC_FOUND))
ifneq ($(GW_NVCC_FOUND),)
ifeq ($(GW_CUDART),)
$(info gpuworker: $(GW_NVCC_FOUND) found but no libcudart_static.a under "$(GW_CUDA_HOME)"; CPU backend only)
endif
endif
# SASS for Ampere, Ada and Hopper; PTX of compute_90 so newer GPUs JIT it.
GW_CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 \
                -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=[sm_90,compute_90]
GW_NVCC_FLAGS := -O2 -std=c++17 $(GW_CUDA_ARCH) -Werror all-warnings \
                 -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter,-fPIC -Igpuworker

GW_SRC := gpuworker/codec.c gpuworker/ops.c gpuworker/pipeline.c gpuworker/log.c gpuworker/flags.c gpuworker/synth.c \
          gpuworker/cpu/backend_cpu.c
GW_OBJ := $(call obj,$(GW_SRC))
GW_LIB := $(BUILD)/lib/libgpuworker.a
GW_SYSLIBS := -lpng -ljpeg -lm
ifneq ($(GW_NVCC),)
GW_CUDA_OBJ := $(BUILD)/obj/gpuworker/cuda/backend_cuda.o
GW_SYSLIBS += -L$(dir $(GW_CUDART)) -lcudart_static -ldl -lrt -lstdc++
$(GW_CUDA_OBJ): gpuworker/cuda/backend_cuda.cu gpuworker/pixmath.h gpuworker/backend.h gpuworker/ops.h \
                gpuworker/image.h
	@mkdir -p $(dir $@)
	$(GW_NVCC) $(GW_NVCC_FLAGS) -c $< -o $@
else
GW_CUDA_OBJ := $(call obj,gpuworker/cuda/cuda_stub.c)
ifeq ($(SAN)$(GW_NVCC_FOUND),)
$(info gpuworker: nvcc not found; leaseq-gpuworker is built without CUDA (CPU backend only))
endif
endif

GW_BIN := $(BUILD)/bin/leaseq-gpuworker
GW_TOOLS := $(BUILD)/gpuworker/mkimages $(BUILD)/gpuworker/demo_producer
GW_UNIT := $(BUILD)/tests/unit/test_gpu_ops $(BUILD)/tests/unit/test_gpu_equiv
GW_INTEG := $(BUILD)/tests/integration/gpu_workers
GW_BENCH := $(BUILD)/bench/gpu_thumb

EXTRA_ALL += $(GW_BIN)
EXTRA_TESTS += $(GW_UNIT) $(GW_INTEG) $(GW_BENCH) $(GW_TOOLS)

$(GW_LIB): $(GW_OBJ) $(GW_CUDA_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(GW_BIN): $(call obj,gpuworker/main.c) $(GW_LIB) $(LIBLEASEQ_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ -lprotobuf-c $(GW_SYSLIBS)

$(BUILD)/gpuworker/%: $(call obj,gpuworker/tools/%.c) $(GW_LIB) $(LIBLEASEQ_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ -lprotobuf-c $(GW_SYSLIBS)

$(BUILD)/tests/unit/test_gpu_%: $(call obj,tests/gpuworker/test_gpu_%.c) $(GW_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(GW_SYSLIBS) -lcmocka

$(GW_INTEG): $(call obj,tests/gpuworker/gpu_integration.c) $(GW_LIB) $(LIBLEASEQ_A) $(GW_BIN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $(filter-out $(GW_BIN),$^) -lprotobuf-c $(GW_SYSLIBS)

$(GW_BENCH): $(call obj,tests/gpuworker/bench_gpu_thumb.c) $(GW_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(GW_SYSLIBS)

.PHONY: demo
demo: deps all $(GW_TOOLS)
	gpuworker/tools/demo.sh $(BUILD)
