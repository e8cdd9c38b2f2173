#!/usr/bin/env bash
# make test hook: beanstalk compatibility. $1 = build folder (its bin/ has leaseqd).
#  - differential test against a real beanstalkd (scripted sessions + seeded random ones), also
#    with --dispatch early
#  - durability: jobs put over the beanstalk port survive SIGKILL + restart
set -eu
build=${1:-build}
cd "$(dirname "$0")/../.."
bin="$PWD/$build/bin"
if ! command -v beanstalkd >/dev/null; then
    echo "beanstalkd is not installed (make deps installs it: DEB_PACKAGES in broker/beanstalk.mk)" >&2
    exit 1
fi
python3 tests/beanstalk/difftest.py "$bin" --seeds 3 --ops 200
# the same sessions with jobs reservable before their commit (read from the batch holding them)
python3 tests/beanstalk/difftest.py "$bin" --seeds 1 --ops 200 --lq-flag --dispatch=early
python3 tests/beanstalk/durability.py "$bin"
