# The top-level Makefile includes */*.mk; the fuzz rules live next to their targets.
include tests/fuzz/fuzz.mk
