"""A real psrtd for the Python interop tests.

One server per test session: a temp folder with config.yml (TCP on
127.0.0.1:0, the port is read from the "listening on tcp:..." log line),
acl.yml and an htpasswd file with bcrypt hashes. The binary is $PSRTD_BIN, or
target/release/psrtd in the repository. At the end the server gets SIGTERM and
must exit 0 with no ERROR line in its log.

The server also takes UDP publishes on 127.0.0.1:0 (the port is read from the
same log line, "udp:127.0.0.1:..."), with a keys.yml holding fresh random
AES keys (UDP_KEYS) for alice and for `_` (the empty key id), plus one for a
login without an ACL entry, which the server must skip.

The TLS tests get a second, TLS-only server (`tls_server`): the same ACL and
users, a CA and a server certificate for localhost/127.0.0.1 made on the spot
(pki.py), and a 2 s protocol timeout so that the keep-alive check is short.
The UDP tests also use `noanon_server`: like `server` but with
allow_anonymous off.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import bcrypt
import pytest

from pki import write_pki

ROOT = Path(__file__).resolve().parents[3]

# The server's protocol timeout (s): the clients must ping within it.
SERVER_TIMEOUT = 5
MAX_TOPIC_DEPTH = 32

USERS = {
    # login: (password, hash prefix). $2b$ is what Python bcrypt writes,
    # $2y$ what `htpasswd -B` writes; the server must take both.
    "alice": ("alice-pw", "$2b$"),
    "bob": ("bob-pw", "$2y$"),
}

# UDP: the largest datagram the server takes (a longer one is dropped).
UDP_FRAME_SIZE = 4096

# UDP AES keys (keys.yml: login -> 64 hex chars), new every session.
# "stranger" has no ACL entry, so the server must skip its key.
UDP_KEYS = {login: os.urandom(32).hex() for login in ("alice", "_", "stranger")}

ACL = """\
_:
  sub: '#'
  pub: '#'
alice:
  sub: ['py/#']
  pub: ['py/#']
bob:
  sub: ['#']
  pub: ['py/bob/#']
"""


def _config(allow_anonymous):
    return f"""\
server:
  workers: 1
  latency_warn: 500000
  data_queue: 4096
  max_topic_depth: {MAX_TOPIC_DEPTH}
  max_topic_length: 100000
  max_pub_size: 2000000
  pid_file: psrtd.pid
proto:
  bind: 127.0.0.1:0
  bind_udp: 127.0.0.1:0
  udp_frame_size: {UDP_FRAME_SIZE}
  timeout: {SERVER_TIMEOUT}
  allow_no_tls: true
auth:
  allow_anonymous: {"true" if allow_anonymous else "false"}
  password_file: passwd
  acl: acl.yml
  key_file: keys.yml
mqtt:
  bind: 127.0.0.1:0
  retain: true
  retain_bytes: 65536
"""


CONFIG = _config(allow_anonymous=True)
NOANON_CONFIG = _config(allow_anonymous=False)


# The TLS server's protocol timeout (s); its clients use the same timeout, so
# they ping every second.
TLS_SERVER_TIMEOUT = 2

TLS_CONFIG = f"""\
server:
  workers: 1
  data_queue: 4096
  max_topic_depth: {MAX_TOPIC_DEPTH}
  max_pub_size: 2000000
  pid_file: psrtd.pid
proto:
  bind: 127.0.0.1:0
  bind_udp: []
  timeout: {TLS_SERVER_TIMEOUT}
  allow_no_tls: false
  tls_cert: server.crt
  tls_key: server.key
auth:
  allow_anonymous: true
  password_file: passwd
  acl: acl.yml
mqtt:
  bind_tls: 127.0.0.1:0
"""


def _passwd():
    lines = []
    for login, (password, prefix) in USERS.items():
        h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        lines.append(f"{login}:{prefix}{h[4:]}")
    return "\n".join(lines) + "\n"


class Server:
    """A running psrtd child process and its log."""

    def __init__(self, binary, workdir):
        self.workdir = workdir
        self.log_path = workdir / "psrtd.log"
        self._log = open(self.log_path, "wb")
        # -v: debug lines (connects, logins, bye) that the tests look at.
        self.proc = subprocess.Popen(
            [str(binary), "-C", str(workdir / "config.yml"), "-v"],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.port = self._wait_port(10)
        self.addr = f"127.0.0.1:{self.port}"
        # The UDP listener, if the config has one (the same log line).
        m = re.search(r"listening on .*\budp:127\.0\.0\.1:(\d+)", self.log_text())
        self.udp_port = int(m.group(1)) if m else None
        self.udp_addr = f"127.0.0.1:{self.udp_port}" if m else None
        # The MQTT listener, if the config has one (the same log line).
        m = re.search(r"listening on .*\bmqtt\+tcp:127\.0\.0\.1:(\d+)", self.log_text())
        self.mqtt_port = int(m.group(1)) if m else None
        m = re.search(r"listening on .*\bmqtts\+tcp:127\.0\.0\.1:(\d+)", self.log_text())
        self.mqtts_port = int(m.group(1)) if m else None

    def _wait_port(self, within):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            m = re.search(r"listening on tcp:127\.0\.0\.1:(\d+)", self.log_text())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError(
            f"psrtd did not report a TCP listener (exit {self.proc.returncode}); "
            f"log:\n{self.log_text()}"
        )

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def log_lines(self, needle=None):
        lines = self.log_text().splitlines()
        return [l for l in lines if needle is None or needle in l]

    def wait_log(self, needle, within=5.0):
        """The first log line containing needle, waiting up to `within` s."""
        deadline = time.monotonic() + within
        while True:
            found = self.log_lines(needle)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def stop(self):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                return None
        self._log.close()
        return self.proc.returncode


def _binary():
    b = os.environ.get("PSRTD_BIN") or str(ROOT / "target" / "release" / "psrtd")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.exit(
            f"no psrtd binary at {b}: build it (cargo build --release --bin psrtd) "
            "or set PSRTD_BIN",
            returncode=4,
        )
    return b


def _start(prefix, config):
    """A psrtd in a new temp folder with this config, the ACL and the users."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    (workdir / "config.yml").write_text(config)
    (workdir / "acl.yml").write_text(ACL)
    (workdir / "passwd").write_text(_passwd())
    (workdir / "keys.yml").write_text(
        "".join(f"'{login}': '{key}'\n" for login, key in UDP_KEYS.items())
    )
    return workdir


def _finish(srv, workdir):
    """SIGTERM; the server must exit 0 with no ERROR line."""
    code = srv.stop()
    log = srv.log_text()
    errors = [l for l in log.splitlines() if "[ERROR]" in l]
    if code != 0 or errors or "terminating" not in log:
        raise AssertionError(
            f"psrtd after SIGTERM: exit {code} (expected 0), "
            f"{len(errors)} ERROR line(s); log kept in {workdir}:\n{log[-4000:]}"
        )
    if not os.environ.get("PSRT_KEEP_TMP"):
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    workdir = _start("psrt-interop-py-", CONFIG)
    srv = Server(_binary(), workdir)
    yield srv
    _finish(srv, workdir)


@pytest.fixture(scope="session")
def noanon_server():
    """Like `server`, with allow_anonymous: false."""
    workdir = _start("psrt-interop-py-noanon-", NOANON_CONFIG)
    srv = Server(_binary(), workdir)
    yield srv
    _finish(srv, workdir)


@pytest.fixture(scope="session")
def tls_server():
    """A TLS-only psrtd. Extra attributes: ca (the CA file that signed its
    certificate) and other_ca (a CA that did not)."""
    workdir = _start("psrt-interop-py-tls-", TLS_CONFIG)
    pki = write_pki(workdir)
    srv = Server(_binary(), workdir)
    srv.ca = str(pki["ca.pem"])
    srv.other_ca = str(pki["other-ca.pem"])
    yield srv
    _finish(srv, workdir)


class Collector:
    """An on_message callback that records messages and lets tests wait."""

    def __init__(self):
        self.messages = []
        self.userdata = []
        self._cond = threading.Condition()

    def __call__(self, client, userdata, message):
        with self._cond:
            self.messages.append(message)
            self.userdata.append(userdata)
            self._cond.notify_all()

    def wait(self, n, within=10.0):
        """Waits until at least n messages arrived; returns all of them."""
        deadline = time.monotonic() + within
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(m.topic, m.payload[:40]) for m in self.messages]
                    raise AssertionError(
                        f"expected {n} message(s) within {within}s, got "
                        f"{len(self.messages)}: {got}"
                    )
                self._cond.wait(left)
            return list(self.messages)

    def wait_topic(self, topic, payload=None, within=10.0):
        """Waits for a message on topic (with this payload, if given);
        returns everything received so far."""
        deadline = time.monotonic() + within
        with self._cond:
            while not any(
                m.topic == topic and (payload is None or m.payload == payload)
                for m in self.messages
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [m.topic for m in self.messages]
                    raise AssertionError(
                        f"no message on {topic!r} within {within}s; got {got}"
                    )
                self._cond.wait(left)
            return list(self.messages)

    def clear(self):
        with self._cond:
            self.messages.clear()
            self.userdata.clear()


@pytest.fixture
def collector():
    return Collector()
