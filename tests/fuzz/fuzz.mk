# libFuzzer targets: every tests/fuzz/fuzz_*.c becomes $(BUILD)/fuzz/fuzz_<name>, built with clang
# under ASan+UBSan against every broker source (main.c aside), so a new target needs no rule of
# its own. Seed inputs: tests/fuzz/corpus/<name>/ (written by gen_corpus: make fuzz-corpus).
#   make test        a short run of each (tests/fuzz/run-in-make-test.sh, about a minute in all)
#   make fuzz        a long run of each: FUZZ_SECONDS (600) per target; new inputs land in
#                    $(BUILD)/fuzz/found/<name>/, crashes in $(BUILD)/fuzz/artifacts/
ifndef LQ_FUZZ_MK_INCLUDED
LQ_FUZZ_MK_INCLUDED := 1

DEB_PACKAGES += clang

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 600
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_LIB_SRC := $(filter-out broker/main.c,$(wildcard broker/*.c broker/*/*.c))
FUZZ_LIB_OBJ := $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(FUZZ_LIB_SRC)) $(BUILD)/fuzz/obj/gen/leaseq.pb-c.o
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined -DLQ_DEBUG -pthread -I$(BUILD)/gen -Ibroker -Iclient

.PHONY: fuzz fuzz-corpus bench-memory

# The fuzz targets join `make tests` in the normal build only: they carry their own sanitizers,
# so the ASan pass has nothing to add. Without clang they are left out (make deps installs it).
ifneq ($(SAN),1)
ifneq ($(shell command -v $(FUZZ_CC) 2>/dev/null),)
EXTRA_TESTS += $(FUZZ_BIN)
endif
endif

$(BUILD)/fuzz/obj/gen/leaseq.pb-c.o: $(GEN_C)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -w -c $< -o $@

$(BUILD)/fuzz/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -Wall -Wno-unused-parameter -MMD -MP -c $< -o $@

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Wall -o $@ $< $(FUZZ_LIB_OBJ) $(LIBS)

$(BUILD)/fuzz/gen_corpus: tests/fuzz/gen_corpus.c $(WIRE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ -lprotobuf-c

# Rewrites the committed seed corpus of the native-protocol targets (other targets bring their own).
FUZZ_NATIVE := frame server
fuzz-corpus: $(BUILD)/fuzz/gen_corpus
	for t in $(FUZZ_NATIVE); do mkdir -p tests/fuzz/corpus/$$t; done
	$(BUILD)/fuzz/gen_corpus $(addprefix tests/fuzz/corpus/,$(FUZZ_NATIVE))

fuzz: deps $(FUZZ_BIN)
	@mkdir -p $(BUILD)/fuzz/artifacts
	@for t in $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC)); do \
	  mkdir -p $(BUILD)/fuzz/found/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/fuzz/artifacts/$$t- $(BUILD)/fuzz/found/$$t tests/fuzz/corpus/$$t \
	    || exit 1; \
	done

# RSS of leaseqd with 1,000,000 queued 1 KiB jobs (docs/PERFORMANCE.md, "Memory per queued job").
bench-memory: deps all $(BUILD)/bench/memory
	LEASEQ_BIN=$(BUILD)/bin $(BUILD)/bench/memory

endif
