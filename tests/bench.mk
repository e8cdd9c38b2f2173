# The Makefile includes */*.mk (one folder deep); the benchmark rules live beside their sources.
include tests/bench/bench.mk
