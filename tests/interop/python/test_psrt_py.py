"""The published Python client (psrt 0.0.19) against our psrtd.

The client is AF_INET only and resolves nothing special, so every path is
'127.0.0.1:PORT'. Client quirks that shape these tests (see the reference,
section 7): any exception in subscribe/unsubscribe -- AccessError included --
closes the client, while a denied publish raises AccessError and keeps it.

pub_udp (plain and AES) is tested in test_psrt_py_udp.py.
"""

import os
import socket
import time

import psrt
import pytest

from conftest import MAX_TOPIC_DEPTH, SERVER_TIMEOUT, USERS, Collector


def make_client(server, on_message=None, user="", password="", **kwargs):
    c = psrt.Client(path=server.addr, user=user, password=password, **kwargs)
    if on_message is not None:
        c.on_message = on_message
    c.connect()
    assert c.is_connected()
    return c


@pytest.fixture
def clients(server):
    """Connects clients for a test and says bye to them afterwards."""
    made = []

    def connect(*args, **kwargs):
        c = make_client(server, *args, **kwargs)
        made.append(c)
        return c

    yield connect
    for c in made:
        c.bye()


def sentinel(publisher, collector, topic):
    """Publishes a marker and waits for it: everything the same publisher
    sent before it has been delivered by then (one session, in order)."""
    publisher.publish(topic, b"sentinel")
    return collector.wait_topic(topic, payload=b"sentinel")


# ------------------------------------------------------------- connect ---


def test_connect_anonymous(server):
    c = psrt.Client(path=server.addr)
    connected = []
    c.on_connect = lambda client, userdata, flags, rc: connected.append(client)
    c.connect()
    assert c.is_connected()
    assert connected == [c]
    c.bye()
    assert not c.is_connected()


@pytest.mark.parametrize("login", sorted(USERS))
def test_connect_user_password(server, clients, collector, login):
    # alice's hash is $2b$ (Python bcrypt), bob's $2y$ (htpasswd -B).
    password = USERS[login][0]
    c = clients(collector, user=login, password=password)
    topic = f"py/{login}/hello"
    c.subscribe(topic)
    c.publish(topic, f"hi from {login}")
    (m,) = collector.wait(1)
    assert (m.topic, m.payload) == (topic, f"hi from {login}".encode())


def test_paho_style_connect(server, collector):
    """username_pw_set + connect(host, port) + the no-op loop calls."""
    c = psrt.Client()
    c.username_pw_set("alice", USERS["alice"][0])
    c.on_message = collector
    c.loop_start()
    c.connect(host="127.0.0.1", port=server.port)
    try:
        assert c.path == server.addr
        c.subscribe("py/paho")
        c.publish("py/paho", 42)  # not bytes/str: sent as str(42)
        (m,) = collector.wait(1)
        assert (m.topic, m.payload) == ("py/paho", b"42")
        assert (m.qos, m.retain) == (2, False)
    finally:
        c.loop_stop()
        c.disconnect()
    assert not c.is_connected()


@pytest.mark.parametrize(
    "user,password",
    [("alice", "wrong-password"), ("nobody", "x"), ("alice", "")],
    ids=["wrong-password", "unknown-user", "empty-password"],
)
def test_login_failure_raises(server, user, password):
    c = psrt.Client(path=server.addr, user=user, password=password)
    with pytest.raises(psrt.AccessError):
        c.connect()
    assert not c.is_connected()
    # The server goes on serving.
    ok = make_client(server)
    ok.bye()


def test_connect_cluster_skips_dead_node(server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    # Nothing listens on `dead` any more: refused, then the live node.
    c = psrt.Client()
    assert c.connect_cluster([dead, server.addr], randomize=False) == server.addr
    assert c.is_connected()
    c.bye()


# ------------------------------------------------------- publish/receive ---


def test_publish_receive_on_message(server, clients, collector):
    c = clients(collector, userdata={"tag": 1})
    c.subscribe("py/basic")
    c.publish("py/basic", "hello")
    (m,) = collector.wait(1)
    assert isinstance(m, psrt.Message)
    assert (m.topic, m.payload) == ("py/basic", b"hello")
    assert collector.userdata == [{"tag": 1}]


def test_delivery_between_sessions_and_fanout(server, clients):
    subs = []
    for _ in range(3):
        col = Collector()
        c = clients(col)
        c.subscribe("py/fanout")
        subs.append(col)
    pub = clients(user="alice", password=USERS["alice"][0])
    pub.publish("py/fanout", b"to all")
    for col in subs:
        (m,) = col.wait(1)
        assert (m.topic, m.payload) == ("py/fanout", b"to all")


def test_binary_and_empty_payload(server, clients, collector):
    c = clients(collector)
    c.subscribe("py/bin")
    binary = bytes(range(256)) * 4  # every byte value, NULs included
    c.publish("py/bin", binary)
    c.publish("py/bin", b"")
    c.publish("py/bin", b"\x00")
    msgs = collector.wait(3)
    assert [m.payload for m in msgs] == [binary, b"", b"\x00"]
    assert all(m.topic == "py/bin" for m in msgs)


@pytest.mark.parametrize("buf_size", [None, 1 << 20], ids=["buf-1KiB", "buf-1MiB"])
def test_one_megabyte_round_trip(server, clients, collector, buf_size):
    kwargs = {} if buf_size is None else {"buf_size": buf_size}
    sub = clients(collector, **kwargs)
    sub.subscribe("py/big")
    pub = clients(**kwargs)
    payload = os.urandom(1 << 20)
    pub.publish("py/big", payload)
    (m,) = collector.wait(1, within=20)
    assert m.topic == "py/big"
    assert len(m.payload) == len(payload)
    assert m.payload == payload


def test_many_messages_in_order(server, clients, collector):
    n = 2000
    sub = clients(collector)
    sub.subscribe("py/many")
    pub = clients()
    for i in range(n):
        pub.publish("py/many", str(i))
    msgs = collector.wait(n, within=30)
    assert [m.payload for m in msgs] == [str(i).encode() for i in range(n)]


def test_wildcards(server, clients, collector):
    c = clients(collector)
    c.subscribe("py/wild/+/temp")
    c.subscribe("py/tree/#")
    c.subscribe("py/empty/+")
    c.subscribe("py/sentinel")
    # A trailing `/` makes an empty last level, which `+` matches.
    delivered = ["py/wild/a/temp", "py/tree/x", "py/tree/x/y/z", "py/empty/"]
    # `+` is exactly one level; `a/#` needs at least one more level.
    not_delivered = ["py/wild/a/b/temp", "py/wild/a/hum", "py/tree", "py/other"]
    for t in not_delivered + delivered:
        c.publish(t, t)
    # Published topics are normalised: `//` -> `/`, one leading `/` dropped.
    c.publish("/py//tree///n", "normalised")
    msgs = sentinel(c, collector, "py/sentinel")
    assert [m.topic for m in msgs] == delivered + ["py/tree/n", "py/sentinel"]
    assert [m.payload for m in msgs[:-2]] == [t.encode() for t in delivered]


def test_one_copy_when_several_patterns_match(server, clients, collector):
    c = clients(collector)
    c.subscribe_bulk(["py/dup/#", "py/dup/+", "py/dup/x", "py/sentinel2"])
    c.publish("py/dup/x", "once")
    msgs = sentinel(c, collector, "py/sentinel2")
    assert [m.topic for m in msgs] == ["py/dup/x", "py/sentinel2"]


# ------------------------------------------------- subscribe/unsubscribe ---


def test_subscribe_bulk_unsubscribe_bulk(server, clients, collector):
    c = clients(collector)
    topics = ["py/bulk/a", "py/bulk/b", "py/bulk/c"]
    c.subscribe_bulk(topics)
    for t in topics:
        c.publish(t, t)
    msgs = collector.wait(3)
    assert [(m.topic, m.payload) for m in msgs] == [(t, t.encode()) for t in topics]

    collector.clear()
    c.unsubscribe_bulk(["py/bulk/a", "py/bulk/b"])
    for t in topics:
        c.publish(t, "again")
    msgs = sentinel(c, collector, "py/bulk/c")
    assert [m.topic for m in msgs] == ["py/bulk/c", "py/bulk/c"]
    assert [m.payload for m in msgs] == [b"again", b"sentinel"]


def test_unsubscribe(server, clients, collector):
    c = clients(collector)
    c.subscribe("py/unsub")
    c.subscribe("py/unsub-sentinel")
    c.publish("py/unsub", "1")
    collector.wait(1)
    c.unsubscribe("py/unsub")
    c.publish("py/unsub", "2")
    msgs = sentinel(c, collector, "py/unsub-sentinel")
    assert [(m.topic, m.payload) for m in msgs] == [
        ("py/unsub", b"1"),
        ("py/unsub-sentinel", b"sentinel"),
    ]


# ------------------------------------------------------------- errors ---


def test_publish_denied_keeps_connection(server, clients, collector):
    c = clients(collector, user="alice", password=USERS["alice"][0])
    c.subscribe("py/after-deny")
    with pytest.raises(psrt.AccessError) as e:
        c.publish("elsewhere/x", "nope")
    assert "pub access denied" in str(e.value)
    assert c.is_connected()
    # The session is still usable, publish and subscribe alike.
    c.publish("py/after-deny", "still here")
    (m,) = collector.wait(1)
    assert (m.topic, m.payload) == ("py/after-deny", b"still here")
    c.subscribe("py/after-deny2")
    c.publish("py/after-deny2", "yes")
    assert collector.wait(2)[1].payload == b"yes"


def test_subscribe_denied_raises(server):
    """The server answers FE; psrt-py raises AccessError and -- a documented
    client quirk -- closes itself. Only the reply is checked here."""
    c = make_client(server, user="alice", password=USERS["alice"][0])
    with pytest.raises(psrt.AccessError) as e:
        c.subscribe("elsewhere/#")
    assert "sub access denied" in str(e.value)
    assert not c.is_connected()  # the client's own doing
    # The server keeps serving the same user.
    again = make_client(server, user="alice", password=USERS["alice"][0])
    again.bye()


def test_too_deep_topic_gets_ff(server):
    """A topic deeper than max_topic_depth is answered with FF (not a
    close): psrt-py reports the code, then drops the connection itself."""
    c = make_client(server)
    deep = "/".join(["d"] * (MAX_TOPIC_DEPTH + 2))
    with pytest.raises(RuntimeError) as e:
        c.subscribe(deep)
    assert str(e.value).endswith("0xff"), str(e.value)
    assert not c.is_connected()


# ----------------------------------------------------- keep-alive, bye ---


def test_idle_longer_than_server_timeout(server, clients, collector):
    """The client pings every timeout/2 s; idling past the server's timeout
    must not drop the session."""
    c = clients(collector)  # client timeout 5 s -> a NOP every 2.5 s
    c.subscribe("py/idle")
    time.sleep(SERVER_TIMEOUT + 1.5)
    assert c.is_connected()
    c.publish("py/idle", "awake")
    (m,) = collector.wait(1)
    assert m.payload == b"awake"


def test_bye_closes_cleanly(server, collector):
    c = make_client(server, collector)
    c.subscribe("py/bye")
    control = c.control_socket.getsockname()
    data = c.data_socket.getsockname()
    peers = [f"{h}:{p}:" for h, p in (control, data)]
    c.bye()
    assert not c.is_connected()
    # The server saw the BYE on the control socket ...
    assert server.wait_log(f"{peers[0]} control: bye") is not None, server.log_text()[-2000:]
    time.sleep(0.2)
    # ... and logged nothing bad about either socket of this session.
    bad = [
        l
        for l in server.log_lines()
        if any(p in l for p in peers) and ("[ERROR]" in l or "[WARN]" in l)
    ]
    assert bad == []
    # And a client may come back right away.
    again = make_client(server)
    again.bye()
