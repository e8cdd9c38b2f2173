# Benchmarks (issue 8): the load generator's protocol drivers live in tests/bench/lg/ (not
# matched by the Makefile's tests/bench/*.c, so they are no programs of their own) and link
# into loadgen; `make bench-peers` runs leaseq side by side with beanstalkd and Redis.
LG_SRC := $(wildcard tests/bench/lg/*.c)
# Its own recipe, so that the driver objects come before the static libraries on the link line.
$(BUILD)/bench/loadgen: $(call obj,tests/bench/loadgen.c $(LG_SRC)) $(LIBCLIENTONLY_A) $(LIBBROKER_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# The peers and the plotter, installed by bench-peers only (never by `make deps`/`make test`).
BENCH_PEER_PACKAGES := beanstalkd redis-server gnuplot-nox

.PHONY: bench-peers bench-peers-deps
bench-peers-deps:
	@tests/bench/peers-deps.sh $(BENCH_PEER_PACKAGES)

bench-peers: deps bench-peers-deps all $(BENCH_BIN)
	tests/bench/run-peers.sh $(BUILD)

# Where a durable commit's time goes on this machine: disk write shapes, commit time against
# batch size, and one commit's system calls (docs/PERFORMANCE.md). A few minutes; leaseq alone.
.PHONY: bench-commit
bench-commit: deps all $(BENCH_BIN)
	tests/bench/run-commit.sh $(BUILD)
