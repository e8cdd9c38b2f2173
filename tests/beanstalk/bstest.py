"""Shared helpers of the beanstalk tests: starting beanstalkd and leaseqd on free ports, and a
small protocol-aware client (raw sockets, no packages)."""
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port free right now, taken below the kernel's ephemeral range: a port from bind(0)
    could be handed out again at once to a server's own "127.0.0.1:0" listener (seen: leaseqd's
    --listen took the port chosen for its --beanstalk-listen, which then failed)."""
    hi = _ephemeral_low() - 1
    for _ in range(200):
        port = random.randint(20000, hi) if hi > 20000 else 0
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port")


def wait_port(port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited early (status %s)" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


class Server:
    """A beanstalkd or a leaseqd with its beanstalk port; killed by stop()."""

    def __init__(self, kind, bin_dir=None, data_dir=None, extra=()):
        self.kind = kind
        self.tmp = None
        self.proc = None
        self.log = tempfile.TemporaryFile()
        # A port is only a guess until the server holds it: another process may take it first,
        # and then the start is tried again on another one.
        for attempt in range(5):
            self.port = free_port()
            try:
                self._start(bin_dir, data_dir, extra)
                return
            except RuntimeError:
                if attempt == 4 or self.proc is None or self.proc.poll() is None:
                    self.cleanup()  # nobody else holds this object: leave no server behind
                    raise

    def _start(self, bin_dir, data_dir, extra):
        kind = self.kind
        if kind == "beanstalkd":
            exe = shutil.which("beanstalkd")
            if exe is None:
                raise RuntimeError("beanstalkd is not installed (make deps installs it)")
            cmd = [exe, "-l", "127.0.0.1", "-p", str(self.port)]
        else:
            if data_dir is None and self.tmp is None:
                self.tmp = tempfile.mkdtemp(prefix="lq-bs-")
            if data_dir is None:
                data_dir = self.tmp
            self.data_dir = data_dir
            cmd = [os.path.join(bin_dir, "leaseqd"), "--listen", "127.0.0.1:0",
                   "--beanstalk-listen", "127.0.0.1:%d" % self.port, "--data-dir", data_dir,
                   "--log-level", "warn"] + list(extra)
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        wait_port(self.port, self.proc)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop_clean(self):
        """SIGTERM, then the exit status and the sanitizers' verdict (ASan builds): an error
        text, or None when it stopped cleanly."""
        self.stop(signal.SIGTERM)
        log = self.logs()
        if "Sanitizer" in log or "runtime error" in log:
            return "sanitizer report:\n" + log[-4000:]
        if self.proc.returncode != 0:
            return "exit status %s:\n%s" % (self.proc.returncode, log[-2000:])
        return None

    def logs(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def cleanup(self):
        if self.proc is not None:
            self.stop(signal.SIGKILL)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Conn:
    """One client connection; read_reply() returns one whole response (line + body)."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        d = self.sock.recv(1 << 16)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def read_reply(self, timeout=5.0):
        """One response, or None if nothing complete arrives within timeout."""
        end = time.time() + timeout
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = self.buf[:i]
                word = line.split(b" ")[0]
                if word in (b"RESERVED", b"FOUND", b"OK"):
                    n = int(line.split(b" ")[-1])
                    total = i + 2 + n + 2
                    if len(self.buf) >= total:
                        r = self.buf[:total]
                        self.buf = self.buf[total:]
                        return r
                else:
                    self.buf = self.buf[i + 2:]
                    return line + b"\r\n"
            left = end - time.time()
            if left <= 0:
                return None
            try:
                self._fill(left)
            except socket.timeout:
                return None
            except EOFError:
                if self.buf:
                    continue
                return b"<EOF>"

    def cmd(self, data, timeout=5.0):
        self.send(data)
        return self.read_reply(timeout)

    def close(self):
        self.sock.close()
