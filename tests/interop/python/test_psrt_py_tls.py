"""The published Python client (psrt 0.0.19) over TLS against our psrtd.

psrt-py's TLS: the plain greeting byte 01, then ssl.SSLContext(TLSv1_2) with
CERT_REQUIRED, the CA from `tls_ca` (a path) and no hostname check, on both
sockets. The server (`tls_server` in conftest.py) is TLS-only, with a
certificate made for this run by a throwaway CA.
"""

import ssl
import time

import psrt
import pytest

from conftest import TLS_SERVER_TIMEOUT, USERS

# psrt-py asks for ssl.PROTOCOL_TLSv1_2, which Python marks deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore:ssl.PROTOCOL_TLSv1_2 is deprecated:DeprecationWarning"
)


def tls_client(srv, on_message=None, ca=None, **kwargs):
    c = psrt.Client(
        path=srv.addr,
        tls=True,
        tls_ca=ca or srv.ca,
        timeout=TLS_SERVER_TIMEOUT,
        **kwargs,
    )
    if on_message is not None:
        c.on_message = on_message
    c.connect()
    assert c.is_connected()
    return c


def test_tls_pubsub_small_and_1mib(tls_server, collector):
    # A 1 MiB receive buffer: psrt-py's default buf_size (1024) also sets
    # SO_RCVBUF to 1 KiB, and with a window that small Linux may stall the
    # transfer on its zero-window probes (seen here: the server's send queue
    # full, the client's empty, the persist timer running), longer than the
    # client's whole-message timeout.
    sub = tls_client(tls_server, collector, buf_size=1 << 20)
    pub = psrt.Client(
        path=tls_server.addr, tls=True, tls_ca=tls_server.ca, timeout=TLS_SERVER_TIMEOUT
    )
    pub.need_data_socket = False
    pub.connect()
    try:
        sub.subscribe("tls/#")
        big = bytes(i % 251 for i in range(1024 * 1024))
        for topic, payload in [("tls/a", b"hello over tls"), ("tls/big", big)]:
            pub.publish(topic, payload)
            got = collector.wait_topic(topic)
            m = [m for m in got if m.topic == topic][-1]
            assert m.payload == payload
        # 200 messages in order over the TLS data socket.
        for i in range(200):
            pub.publish("tls/many", str(i))
        got = collector.wait(2 + 200)
        assert [m.payload for m in got[2:]] == [str(i).encode() for i in range(200)]
    finally:
        pub.bye()
        sub.bye()
    assert not sub.is_connected()


def test_tls_user_password(tls_server, collector):
    password = USERS["alice"][0]
    c = tls_client(tls_server, collector, user="alice", password=password)
    try:
        c.subscribe("py/alice/tls")
        c.publish("py/alice/tls", b"hi")
        (m,) = collector.wait(1)
        assert (m.topic, m.payload) == ("py/alice/tls", b"hi")
        # A denied publish keeps the TLS session, as in plain TCP.
        with pytest.raises(psrt.AccessError):
            c.publish("not/alices", b"x")
        assert c.is_connected()
    finally:
        c.bye()
    bad = psrt.Client(
        path=tls_server.addr, tls=True, tls_ca=tls_server.ca, user="alice", password="wrong"
    )
    with pytest.raises(psrt.AccessError):
        bad.connect()


def test_tls_keepalive(tls_server, collector):
    """Idle past the server's 2 s timeout: the client's NOPs (every 1 s)
    and the server's data beacons keep both TLS sockets up."""
    c = tls_client(tls_server, collector)
    try:
        c.subscribe("tls/idle")
        time.sleep(TLS_SERVER_TIMEOUT * 1.5)
        assert c.is_connected()
        c.publish("tls/idle", b"awake")
        (m,) = collector.wait(1)
        assert m.payload == b"awake"
    finally:
        c.bye()


def test_tls_wrong_ca_fails(tls_server):
    c = psrt.Client(path=tls_server.addr, tls=True, tls_ca=tls_server.other_ca)
    with pytest.raises(ssl.SSLError):
        c.connect()
    assert not c.is_connected()
    # The server carries on.
    ok = tls_client(tls_server)
    ok.bye()


def test_tls_only_server_refuses_plain(tls_server):
    c = psrt.Client(path=tls_server.addr)
    with pytest.raises(Exception):
        c.connect()
    assert not c.is_connected()


def test_tls_client_against_plain_server(server, tls_server):
    """The plain server has no TLS identity: it closes after the 01 byte."""
    c = psrt.Client(path=server.addr, tls=True, tls_ca=tls_server.ca)
    with pytest.raises((ssl.SSLError, OSError)):
        c.connect()
    assert not c.is_connected()
