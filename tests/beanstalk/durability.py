#!/usr/bin/env python3
"""Jobs put through leaseqd's beanstalk port survive SIGKILL and a restart (sync full: INSERTED
is sent only once the job is on disk); beanstalkd without a binlog loses them.

usage: durability.py BIN_DIR"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bstest import Conn, Server  # noqa: E402

N = 200


def fill(server):
    """Puts N jobs over 4 pipelined connections; returns {id: (body, pri)} as acknowledged."""
    jobs = {}
    conns = [Conn(server.port) for _ in range(4)]
    for k, c in enumerate(conns):
        c.cmd(b"use durable\r\n")
        batch = []
        for i in range(k, N, 4):
            body = b"job-%d-" % i + b"x" * (i % 37)
            pri = i % 7
            batch.append((body, pri))
            c.send(b"put %d 0 60 %d\r\n%s\r\n" % (pri, len(body), body))
        for body, pri in batch:
            r = c.read_reply(10)
            assert r is not None and r.startswith(b"INSERTED "), r
            jobs[int(r.split()[1])] = (body, pri)
    for c in conns:
        c.close()
    return jobs


def count_found(server, jobs):
    c = Conn(server.port)
    found = 0
    for jid, (body, _) in jobs.items():
        r = c.cmd(b"peek %d\r\n" % jid)
        if r.startswith(b"FOUND"):
            assert r.split(b"\r\n")[1] == body, (jid, r)
            found += 1
    c.close()
    return found


def main():
    bin_dir = sys.argv[1]
    lq = Server("leaseqd", bin_dir=bin_dir)
    data_dir = lq.data_dir
    try:
        jobs = fill(lq)
        # one reserved (leases are not durable: it comes back ready), one buried
        c = Conn(lq.port)
        c.cmd(b"watch durable\r\n")
        r = c.cmd(b"reserve\r\n")
        reserved = int(r.split()[1])
        r = c.cmd(b"reserve\r\n")
        buried = int(r.split()[1])
        assert c.cmd(b"bury %d 3\r\n" % buried) == b"BURIED\r\n"
        lq.proc.send_signal(signal.SIGKILL)
        lq.proc.wait()
        lq2 = Server("leaseqd", bin_dir=bin_dir, data_dir=data_dir)
        try:
            found = count_found(lq2, jobs)
            print("leaseqd: %d of %d acknowledged jobs found after SIGKILL + restart" % (found, len(jobs)))
            assert found == len(jobs), "jobs lost"
            c = Conn(lq2.port)
            c.cmd(b"use durable\r\n")
            st = c.cmd(b"stats-job %d\r\n" % reserved)
            assert b"state: ready" in st, st
            st = c.cmd(b"stats-job %d\r\n" % buried)
            assert b"state: buried" in st, st
            assert c.cmd(b"kick 1\r\n") == b"KICKED 1\r\n"
            c.close()
            bad = lq2.stop_clean()
            assert bad is None, bad
        finally:
            lq2.cleanup()
    finally:
        lq.cleanup()
        import shutil
        shutil.rmtree(data_dir, ignore_errors=True)

    bs = Server("beanstalkd")
    try:
        jobs = fill(bs)
        bs.proc.send_signal(signal.SIGKILL)
        bs.proc.wait()
        time.sleep(0.1)
        port = bs.port
        bs2 = Server("beanstalkd")
        try:
            found = count_found(bs2, jobs)
            print("beanstalkd (no binlog): %d of %d jobs found after SIGKILL + restart (port %d -> %d)"
                  % (found, len(jobs), port, bs2.port))
            assert found == 0
        finally:
            bs2.cleanup()
    finally:
        bs.cleanup()
    print("beanstalk durability test: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
