# leaseq — top-level build.
#
#   make run      install missing Debian packages, build, start leaseqd on 127.0.0.1:7420 (data in ./var/leaseq)
#   make test     install, build, run every test (normal build, then ASan+UBSan build)
#   make asan     build everything with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/
#   make bench    run the load generator against a fresh leaseqd
#   make install  PREFIX=/usr/local DESTDIR=
#
# Sources are picked up by directory, so adding a module means adding a .c/.h pair:
#   broker/core/*.c broker/store/*.c broker/proto/*.c broker/net/*.c broker/*.c  -> leaseqd
#   client/*.c (but leaseqctl.c) + broker/proto/*.c + generated protobuf          -> libleaseq
#   client/leaseqctl.c + client/ctl/*.c                                           -> leaseqctl
#   tests/unit/test_*.c -> one cmocka binary each; tests/sim/*.c -> sim;
#   tests/integration/*.c -> one binary each; tests/bench/*.c -> one binary each

SHELL := /bin/bash
CC ?= gcc
PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
SAN ?=

DEB_PACKAGES := gcc make pkg-config liburing-dev liblmdb-dev lmdb-utils libprotobuf-c-dev \
                protobuf-c-compiler libcmocka-dev libjansson-dev

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CSTD := -std=c17 -D_GNU_SOURCE
OPT := -O2 -g
ifeq ($(SAN),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -DLQ_DEBUG
SANLD := -fsanitize=address,undefined
endif
CFLAGS_ALL := $(CSTD) $(OPT) $(WARN) -fPIC -pthread -I$(BUILD)/gen -Ibroker -Iclient $(CFLAGS)
LDFLAGS_ALL := -pthread $(SANLD) $(LDFLAGS)
LIBS := -luring -llmdb -lprotobuf-c -ljansson -lm

GEN_DIR := $(BUILD)/gen
GEN_C := $(GEN_DIR)/leaseq.pb-c.c
GEN_H := $(GEN_DIR)/leaseq.pb-c.h

CORE_SRC := $(wildcard broker/core/*.c)
STORE_SRC := $(wildcard broker/store/*.c)
PROTO_SRC := $(wildcard broker/proto/*.c)
NET_SRC := $(wildcard broker/net/*.c)
BROKER_SRC := $(filter-out broker/main.c,$(wildcard broker/*.c))
CLIENT_SRC := $(filter-out client/leaseqctl.c,$(wildcard client/*.c))
CTL_SRC := client/leaseqctl.c $(wildcard client/ctl/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
SIM_SRC := $(wildcard tests/sim/*.c)
INTEG_SRC := $(wildcard tests/integration/*.c)
BENCH_SRC := $(wildcard tests/bench/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
WIRE_OBJ := $(call obj,$(PROTO_SRC)) $(BUILD)/obj/gen/leaseq.pb-c.o
BROKER_OBJ := $(call obj,$(CORE_SRC) $(STORE_SRC) $(NET_SRC) $(BROKER_SRC))
CLIENT_OBJ := $(call obj,$(CLIENT_SRC))

LEASEQD := $(BUILD)/bin/leaseqd
LEASEQCTL := $(BUILD)/bin/leaseqctl
LIBLEASEQ_A := $(BUILD)/lib/libleaseq.a
LIBLEASEQ_SO := $(BUILD)/lib/libleaseq.so
LIBBROKER_A := $(BUILD)/lib/libleaseqbroker.a
LIBCLIENTONLY_A := $(BUILD)/lib/libleaseqclientonly.a
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
SIM_BIN := $(if $(SIM_SRC),$(BUILD)/tests/sim/sim)
INTEG_BIN := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(INTEG_SRC))
BENCH_BIN := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all deps run test test-only asan clean install bench tests
.DEFAULT_GOAL := all
# Test objects are intermediates of pattern rules; keep them so a rebuild is incremental.
.SECONDARY:

# Components with their own build rules (the GPU worker, fuzz targets) add to these lists in
# their fragment: EXTRA_ALL (built by `all`), EXTRA_TESTS (built by `tests`), DEB_PACKAGES.
EXTRA_ALL :=
EXTRA_TESTS :=
-include $(sort $(wildcard */*.mk */*/*.mk))

all: $(LEASEQD) $(LEASEQCTL) $(LIBLEASEQ_A) $(LIBLEASEQ_SO) $(BUILD)/lib/pkgconfig/leaseq.pc $(EXTRA_ALL)

tests: all $(UNIT_BIN) $(SIM_BIN) $(INTEG_BIN) $(BENCH_BIN) $(EXTRA_TESTS)

# Installs whichever Debian packages are missing; quick when none is.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing" $$missing; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { $$sudo apt-get update -q >/dev/null && $$sudo apt-get install -y -q $$missing >/dev/null; } || \
	  { echo "deps: could not install: $$missing" >&2; exit 1; }; \
	fi

$(GEN_C) $(GEN_H): schema/leaseq.proto
	@mkdir -p $(GEN_DIR)
	protoc-c --c_out=$(GEN_DIR) -Ischema schema/leaseq.proto

$(BUILD)/obj/gen/leaseq.pb-c.o: $(GEN_C)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(OPT) -fPIC -w -I$(GEN_DIR) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# Header dependencies of every object, fragments' objects (e.g. $(BUILD)/fuzz/obj) included.
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

$(LIBBROKER_A): $(BROKER_OBJ) $(WIRE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBCLIENTONLY_A): $(CLIENT_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBLEASEQ_A): $(CLIENT_OBJ) $(WIRE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBLEASEQ_SO): $(CLIENT_OBJ) $(WIRE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libleaseq.so.1 $(LDFLAGS_ALL) -o $@ $^ -lprotobuf-c

$(BUILD)/lib/pkgconfig/leaseq.pc: client/leaseq.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|g' $< > $@

$(LEASEQD): $(call obj,broker/main.c) $(LIBBROKER_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(LEASEQCTL): $(call obj,$(CTL_SRC)) $(LIBLEASEQ_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# Test programs link the broker modules and the client, so one binary can run both ends.
TEST_LIBS := $(LIBCLIENTONLY_A) $(LIBBROKER_A)

$(BUILD)/tests/unit/%: $(call obj,tests/unit/%.c) $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS) -lcmocka

$(BUILD)/tests/sim/sim: $(call obj,$(SIM_SRC)) $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/tests/integration/%: $(call obj,tests/integration/%.c) $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/bench/%: $(call obj,tests/bench/%.c) $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

run: deps all
	@mkdir -p var/leaseq
	exec $(LEASEQD) --listen 127.0.0.1:7420 --data-dir var/leaseq --beanstalk-listen 127.0.0.1:11300

asan: deps
	$(MAKE) BUILD=build-asan SAN=1 tests

# Normal build first (fast feedback), then the sanitizer build of the same tests.
test: deps
	$(MAKE) tests
	tests/run-tests.sh build
	$(MAKE) BUILD=build-asan SAN=1 tests
	tests/run-tests.sh build-asan

# Runs the suite of an existing build without rebuilding: make test-only BUILD=build
test-only:
	tests/run-tests.sh $(BUILD)

bench: deps all $(BENCH_BIN)
	tests/bench/run-bench.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(LEASEQD) $(LEASEQCTL) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBLEASEQ_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIBLEASEQ_SO) $(DESTDIR)$(PREFIX)/lib/libleaseq.so.1
	ln -sf libleaseq.so.1 $(DESTDIR)$(PREFIX)/lib/libleaseq.so
	install -m 644 client/leaseq.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' client/leaseq.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/leaseq.pc

clean:
	rm -rf build build-asan
