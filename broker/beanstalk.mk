# The beanstalk listener (issue 7): its sources join the broker; beanstalkd itself is installed
# for the differential test (tests/beanstalk/run-in-make-test.sh) and the side-by-side bench.
BROKER_OBJ += $(call obj,$(wildcard broker/beanstalk/*.c))
DEB_PACKAGES += beanstalkd python3  # python3: the differential and durability tests

# Same beanstalk load against beanstalkd and leaseqd in one run (docs/PERFORMANCE.md).
.PHONY: bench-beanstalk
bench-beanstalk: deps all $(BUILD)/bench/bs_load
	tests/bench/run-bs-bench.sh $(BUILD)
