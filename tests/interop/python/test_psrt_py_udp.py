"""psrt-py's pub_udp (psrt 0.0.19) against psrtd's UDP listener.

Every publish goes through psrt.pub_udp (plain login/password, anonymous,
AES-128-GCM and AES-256-GCM with keys from keys.yml) and is checked at a TCP
subscriber (psrt.Client, on_message), which is how the messages are used.

What pub_udp does (psrt/__init__.py, 0.0.19), which shapes these tests:
- the frame is `EE AA 01 00 AUTH ...` with op+priority `01 7F` (ack wanted) or
  `21 7F` (no ack);
- AES: a str password is unhexlified, bytes are taken as they are, and
  `AES.new(password, MODE_GCM, nonce)` picks AES-128/192/256 from the key
  length; the auth byte (AUTH_KEY_AES_128_GCM / _256_) is sent as given, so a
  key length that does not match it gives a frame the server cannot open;
- with need_ack it waits `timeout` s for 5 bytes: 01 -> returns, FE ->
  AccessError, anything else -> RuntimeError('Server error: 238') (it prints
  byte 0), nothing -> socket.timeout;
- check_ack_src (default True): the host of a "host:port" target is resolved
  with gethostbyname and the ack must come from exactly (ip, port), else
  RuntimeError('Invalid ack source').

Where psrtd deliberately differs from the reference (README.md): a source
that did not authenticate (wrong password, unknown user or key, bad seal,
refused anonymous) gets no ack at all, so pub_udp raises socket.timeout where
the reference's FE would give AccessError; an oversize datagram is dropped,
not truncated; allow_anonymous applies to plain UDP.
"""

import socket
import time

import psrt
import pytest

from conftest import MAX_TOPIC_DEPTH, UDP_FRAME_SIZE, UDP_KEYS, USERS, Collector

ALICE_PW = USERS["alice"][0]
BOB_PW = USERS["bob"][0]
AES128 = psrt.AUTH_KEY_AES_128_GCM
AES256 = psrt.AUTH_KEY_AES_256_GCM

# How long a test waits for an ack that must not come (s). On 127.0.0.1 a
# real ack takes well under a millisecond.
NO_ACK = 0.75


def key_hex(login):
    """The login's 32-byte key as the 64 hex chars of keys.yml."""
    return UDP_KEYS[login]


def key_bytes(login, n=32):
    """The first n bytes of the login's key (16 for AES-128)."""
    return bytes.fromhex(UDP_KEYS[login])[:n]


def pub(server, topic, message, **kwargs):
    """pub_udp to the server's UDP address; must return without error."""
    kwargs.setdefault("timeout", 5)
    assert psrt.pub_udp(server.udp_addr, topic, message, **kwargs) is None


def no_ack(server, topic, message, **kwargs):
    """pub_udp that must get no ack at all: socket.timeout after NO_ACK s.

    This is deliberate in psrtd (see the module docstring): nothing is sent
    back to a source that did not authenticate, so the UDP port cannot be
    used to reflect traffic at a spoofed address. The reference answers FE
    here (pub_udp would raise AccessError)."""
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        psrt.pub_udp(server.udp_addr, topic, message, timeout=NO_ACK, **kwargs)
    assert time.monotonic() - started >= NO_ACK * 0.9


@pytest.fixture
def subscriber(server):
    """A TCP subscriber on `server`: subscriber(topics, user, password)
    returns a Collector; the clients say bye at the end of the test."""
    made = []

    def subscribe(topics, user="", password="", srv=None, **kwargs):
        collector = Collector()
        c = psrt.Client(path=(srv or server).addr, user=user, password=password, **kwargs)
        c.on_message = collector
        c.connect()
        for t in [topics] if isinstance(topics, str) else topics:
            c.subscribe(t)
        made.append(c)
        return collector

    yield subscribe
    for c in made:
        c.bye()


def received(collector, topic, sentinel_via):
    """Sends a sentinel on `topic` with `sentinel_via(topic, payload)` and
    returns every (topic, payload) the collector got up to and including it.
    The server reads its UDP socket in order, so anything sent before the
    sentinel has been handled by then."""
    sentinel_via(topic, b"sentinel")
    msgs = collector.wait_topic(topic, payload=b"sentinel")
    return [(m.topic, m.payload) for m in msgs]


# ------------------------------------------------------------ delivered ---


@pytest.mark.parametrize("login", sorted(USERS))
def test_plain_user_password_acked_and_delivered(server, subscriber, login):
    # alice's hash is $2b$, bob's $2y$; the first datagram of a login waits
    # for bcrypt, the second one hits the server's verified-login cache.
    topic = {"alice": "py/udp/plain", "bob": "py/bob/udp"}[login]
    col = subscriber(topic)
    password = USERS[login][0]
    payload = b"\x00binary\xffudp\x00"
    pub(server, topic, payload, user=login, password=password)
    pub(server, topic, "second", user=login, password=password)
    msgs = col.wait(2)
    assert [(m.topic, m.payload) for m in msgs] == [
        (topic, payload),
        (topic, b"second"),
    ]


def test_plain_without_ack_delivered(server, subscriber):
    col = subscriber("py/udp/noack")
    pub(server, "py/udp/noack", "fire and forget", need_ack=False, user="alice", password=ALICE_PW)
    (m,) = col.wait(1)
    assert (m.topic, m.payload) == ("py/udp/noack", b"fire and forget")


def test_anonymous_plain_delivered(server, subscriber):
    # No user/password: the `_` ACL entry (pub '#').
    col = subscriber("udp/anon/x")
    pub(server, "udp/anon/x", b"anon")
    pub(server, "udp/anon/x", b"anon, no ack", need_ack=False)
    msgs = col.wait(2)
    assert [(m.topic, m.payload) for m in msgs] == [
        ("udp/anon/x", b"anon"),
        ("udp/anon/x", b"anon, no ack"),
    ]


def test_payload_kinds_and_topic_normalisation(server, subscriber):
    col = subscriber(["udp/kinds", "udp/norm/x"])
    pub(server, "udp/kinds", b"")  # empty payload: the frame ends at the topic NUL
    pub(server, "udp/kinds", 42)  # not bytes/str: sent as str(42)
    pub(server, "udp/kinds", "unicode: \u00e9\u20ac")
    pub(server, "/udp//norm///x", b"normalised")  # `//` -> `/`, one leading `/` off
    msgs = col.wait(4)
    assert [(m.topic, m.payload) for m in msgs] == [
        ("udp/kinds", b""),
        ("udp/kinds", b"42"),
        ("udp/kinds", "unicode: \u00e9\u20ac".encode()),
        ("udp/norm/x", b"normalised"),
    ]


@pytest.mark.parametrize("form", ["hex-str", "bytes"])
def test_aes256_delivered(server, subscriber, form):
    """AUTH_KEY_AES_256_GCM with alice's 32-byte key (as keys.yml's hex
    string, which pub_udp unhexlifies, or as raw bytes)."""
    topic = f"py/udp/aes256/{form}"
    col = subscriber(topic)
    key = key_hex("alice") if form == "hex-str" else key_bytes("alice")
    pub(server, topic, b"sealed 256", auth=AES256, user="alice", password=key)
    pub(server, topic, b"sealed 256, no ack", need_ack=False, auth=AES256, user="alice",
        password=key)
    msgs = col.wait(2)
    assert [(m.topic, m.payload) for m in msgs] == [
        (topic, b"sealed 256"),
        (topic, b"sealed 256, no ack"),
    ]


@pytest.mark.parametrize("form", ["hex-str", "bytes"])
def test_aes128_delivered(server, subscriber, form):
    """AES-128-GCM uses the first 16 bytes of the login's 32-byte key.
    pub_udp sizes the cipher from the key it is given, so it gets those 16
    bytes (the first 32 hex chars, or the bytes) with AUTH_KEY_AES_128_GCM."""
    topic = f"py/udp/aes128/{form}"
    col = subscriber(topic)
    key = key_hex("alice")[:32] if form == "hex-str" else key_bytes("alice", 16)
    pub(server, topic, b"sealed 128", auth=AES128, user="alice", password=key)
    pub(server, topic, b"sealed 128, no ack", need_ack=False, auth=AES128, user="alice",
        password=key)
    msgs = col.wait(2)
    assert [(m.topic, m.payload) for m in msgs] == [
        (topic, b"sealed 128"),
        (topic, b"sealed 128, no ack"),
    ]


@pytest.mark.parametrize("key_id", ["", "_"], ids=["empty-key-id", "explicit-underscore"])
@pytest.mark.parametrize("bits", [128, 256])
def test_aes_anonymous_key(server, subscriber, key_id, bits):
    """An empty key id means the `_` key; `_` given explicitly works too."""
    topic = f"udp/aes-anon/{bits}/{key_id or 'empty'}"
    col = subscriber(topic)
    auth, key = (AES128, key_bytes("_", 16)) if bits == 128 else (AES256, key_hex("_"))
    pub(server, topic, b"anon sealed", auth=auth, user=key_id, password=key)
    (m,) = col.wait(1)
    assert (m.topic, m.payload) == (topic, b"anon sealed")


def test_many_in_order(server, subscriber):
    """One UDP socket is read in order: acked and unacked publishes arrive
    at the subscriber in the order they were sent."""
    col = subscriber("udp/many")
    n = 200
    for i in range(n):
        # Plain anonymous and sealed, acked and not, interleaved.
        kw = [
            {},
            {"need_ack": False},
            {"auth": AES256, "password": key_hex("_")},
            {"auth": AES128, "password": key_bytes("_", 16), "need_ack": False},
        ][i % 4]
        pub(server, "udp/many", str(i), **kw)
    msgs = col.wait(n)
    assert [m.payload for m in msgs] == [str(i).encode() for i in range(n)]


# --------------------------------------------------------- ack source ---


def test_ack_source_check(server, subscriber):
    """pub_udp's default check_ack_src=True compares the ack's source with
    the resolved target: the ack must come from the address the datagram
    was sent to, whatever form the target takes."""
    col = subscriber("udp/acksrc")
    port = server.udp_port
    pub(server, "udp/acksrc", b"1")  # "127.0.0.1:PORT"
    assert psrt.pub_udp(f"localhost:{port}", "udp/acksrc", b"2", timeout=5) is None
    assert psrt.pub_udp(("127.0.0.1", port), "udp/acksrc", b"3", timeout=5) is None
    assert psrt.pub_udp(("localhost", port), "udp/acksrc", b"4", timeout=5) is None
    assert (
        psrt.pub_udp(f"127.0.0.1:{port}", "udp/acksrc", b"5", check_ack_src=False, timeout=5)
        is None
    )
    msgs = col.wait(5)
    assert [m.payload for m in msgs] == [b"1", b"2", b"3", b"4", b"5"]

    # The same thing by hand: the frame pub_udp sends for an anonymous
    # publish, and the ack it checks (5 bytes, from the server's address).
    frame = (
        b"\xee\xaa\x01\x00" + psrt.AUTH_LOGIN_PASS + b"\x00\x00"
        + b"\x01\x7f" + b"udp/acksrc\x00raw"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(frame, ("127.0.0.1", port))
        data, src = s.recvfrom(64)
    assert src == ("127.0.0.1", port)
    assert data == b"\xee\xaa\x01\x00\x01"


# ------------------------------------------------------- error answers ---


def test_acl_denied_is_access_error(server, subscriber):
    """An authenticated source publishing outside its pub ACL gets FE, which
    pub_udp raises as AccessError; nothing is delivered."""
    col = subscriber(["denied/udp", "py/alice/udp"])
    with pytest.raises(psrt.AccessError):
        pub(server, "denied/udp", b"no", user="alice", password=ALICE_PW)
    with pytest.raises(psrt.AccessError):
        pub(server, "denied/udp", b"no", auth=AES256, user="alice", password=key_hex("alice"))
    with pytest.raises(psrt.AccessError):
        pub(server, "denied/udp", b"no", auth=AES128, user="alice",
            password=key_bytes("alice", 16))
    # bob may publish under py/bob/ only.
    with pytest.raises(psrt.AccessError):
        pub(server, "py/alice/udp", b"no", user="bob", password=BOB_PW)
    # Without an ack wanted, a denied publish is silently not delivered.
    pub(server, "denied/udp", b"no", need_ack=False, user="alice", password=ALICE_PW)
    got = received(col, "denied/udp", lambda t, p: pub(server, t, p))
    assert got == [("denied/udp", b"sentinel")]


@pytest.mark.parametrize(
    "topic",
    ["udp/+/wild", "udp/#", "/".join(["d"] * (MAX_TOPIC_DEPTH + 2))],
    ids=["plus", "hash", "too-deep"],
)
def test_bad_topic_is_ff(server, topic):
    """A wildcard or too-deep publish topic gets FF; pub_udp raises
    RuntimeError for any code other than 01/FE (printing byte 0 of the ack,
    238, not the code)."""
    with pytest.raises(RuntimeError, match="Server error"):
        pub(server, topic, b"x")
    with pytest.raises(RuntimeError, match="Server error"):
        pub(server, topic, b"x", auth=AES256, user="alice", password=key_hex("alice"))


UNAUTHENTICATED = {
    # id: pub_udp keyword arguments
    "wrong-password": dict(user="alice", password="wrong-password"),
    "other-users-password": dict(user="alice", password=BOB_PW),
    "empty-password": dict(user="alice", password=""),
    "unknown-user": dict(user="nobody", password="x"),
    "aes256-wrong-key": dict(auth=AES256, user="alice", password=key_hex("_")),
    "aes128-wrong-key": dict(auth=AES128, user="alice", password=key_bytes("_", 16)),
    "aes-unknown-key-id": dict(auth=AES256, user="nobody", password=key_hex("alice")),
    # keys.yml has a key for "stranger", but no ACL entry: skipped at load.
    "aes-key-without-acl": dict(auth=AES256, user="stranger", password=key_hex("stranger")),
    # The auth byte says AES-128 but pub_udp seals with AES-256 (32-byte
    # key), and the other way round.
    "aes128-byte-32-byte-key": dict(auth=AES128, user="alice", password=key_hex("alice")),
    "aes256-byte-16-byte-key": dict(auth=AES256, user="alice", password=key_bytes("alice", 16)),
}


@pytest.mark.parametrize("kwargs", list(UNAUTHENTICATED.values()), ids=list(UNAUTHENTICATED))
def test_unauthenticated_gets_no_ack(server, subscriber, kwargs):
    """Deliberate (README.md, "Where psrtd deliberately differs"): no ack at
    all to a source that did not authenticate, so pub_udp times out
    (socket.timeout) instead of raising AccessError on the reference's FE.
    The message is not delivered either."""
    col = subscriber("py/udp/unauth")
    no_ack(server, "py/udp/unauth", b"must not arrive", **kwargs)
    # The server still serves: a good publish right after is delivered, and
    # is the only message.
    sentinel = lambda t, p: pub(server, t, p, user="alice", password=ALICE_PW)
    assert received(col, "py/udp/unauth", sentinel) == [("py/udp/unauth", b"sentinel")]


def test_oversize_datagram_dropped(server, subscriber):
    """udp_frame_size is the largest datagram taken. A longer one is dropped
    (deliberate; the reference truncates it and delivers the rest), so
    pub_udp gets no ack."""
    topic = "udp/size"
    # buf_size is also psrt-py's SO_RCVBUF: with the default 1 KiB a 4 KiB
    # message trickles in through TCP zero-window probes (about 1.2 s here).
    col = subscriber(topic, buf_size=1 << 16)
    # An anonymous plain frame: EE AA 01 00 00 | "" 00 | "" 00 | 01 7F | topic 00 | data
    overhead = 5 + 1 + 1 + 2 + len(topic) + 1
    fits = b"f" * (UDP_FRAME_SIZE - overhead)
    pub(server, topic, fits)
    no_ack(server, topic, b"o" * (UDP_FRAME_SIZE - overhead + 1))
    # The same for a sealed frame:
    # EE AA 01 00 03 | "" 00 | nonce(12) | 01 7F topic 00 data | tag(16)
    overhead = 5 + 1 + 12 + 2 + len(topic) + 1 + 16
    fits_sealed = b"s" * (UDP_FRAME_SIZE - overhead)
    pub(server, topic, fits_sealed, auth=AES256, password=key_hex("_"))
    too_big = b"o" * (UDP_FRAME_SIZE - overhead + 1)
    no_ack(server, topic, too_big, auth=AES256, password=key_hex("_"))
    got = received(col, topic, lambda t, p: pub(server, t, p))
    assert got == [(topic, fits), (topic, fits_sealed), (topic, b"sentinel")]


# ------------------------------------------------ allow_anonymous: false ---


def test_anonymous_refused_when_not_allowed(noanon_server, subscriber):
    """allow_anonymous applies to plain UDP (deliberate): an anonymous plain
    publish is refused, and as the source did not authenticate it gets no
    ack (socket.timeout). Logged-in and keyed publishes still work."""
    col = subscriber(
        ["udp/noanon", "py/bob/noanon"], user="bob", password=BOB_PW, srv=noanon_server
    )
    no_ack(noanon_server, "udp/noanon", b"anonymous, refused")
    pub(noanon_server, "udp/noanon", b"anonymous, no ack wanted", need_ack=False)
    # The `_` key is a credential of its own: like the reference, a sealed
    # publish with it is taken even with anonymous logins off.
    pub(noanon_server, "udp/noanon", b"sealed with _", auth=AES256, password=key_hex("_"))
    # bob may only publish under py/bob/: the sentinel goes there.
    sentinel = lambda t, p: pub(noanon_server, t, p, user="bob", password=BOB_PW)
    assert received(col, "py/bob/noanon", sentinel) == [
        ("udp/noanon", b"sealed with _"),
        ("py/bob/noanon", b"sentinel"),
    ]
