"""MQTT 3.1.1 clients against psrtd's MQTT listener, crossed with psrt-py.

Real clients: paho-mqtt (PyPI) and Debian's mosquitto_pub / mosquitto_sub
(tests/run.sh installs mosquitto-clients; without them those tests are
skipped). The server is the session's `server` (conftest.py): anonymous
`_` may do everything, alice only py/#, bob subscribes to everything and
publishes under py/bob/#. Every wait has a deadline.
"""

import shutil
import socket
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as paho
import psrt
import pytest

from conftest import USERS, Collector

MOSQUITTO = shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")
needs_mosquitto = pytest.mark.skipif(not MOSQUITTO, reason="mosquitto-clients not installed")


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Mqtt:
    """A paho client with its loop running, and what it received."""

    def __init__(self, server, client_id=None, user=None, password=None, clean=True, will=None,
                 keepalive=30):
        self.connected = threading.Event()
        self.rc = None
        self.subacks = []
        self.suback = threading.Event()
        self.got = Collector()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or uid("py"),
                             clean_session=clean, protocol=paho.MQTTv311)
        if user is not None:
            self.c.username_pw_set(user, password)
        if will is not None:
            self.c.will_set(*will)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self.got
        self.c.connect("127.0.0.1", server.mqtt_port, keepalive=keepalive)
        self.c.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.rc = rc
        self.session_present = flags.session_present
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, codes, properties=None):
        self.subacks = [c.value for c in codes]
        self.suback.set()

    def subscribe(self, topic, qos=0):
        self.suback.clear()
        self.c.subscribe(topic, qos)
        assert self.suback.wait(10), "no SUBACK"
        return self.subacks

    def publish(self, topic, payload, qos=0):
        info = self.c.publish(topic, payload, qos)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def mqtt(server):
    made = []

    def make(**kwargs):
        m = Mqtt(server, **kwargs)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def psrt_client(server, collector=None, user="", password=""):
    c = psrt.Client(path=server.addr, user=user, password=password)
    if collector is not None:
        c.on_message = collector
    c.connect()
    return c


def mosquitto(args, timeout=10):
    return subprocess.run(args, capture_output=True, timeout=timeout, check=False)


def test_connect_anonymous_user_and_wrong_password(server, mqtt):
    assert mqtt().rc == 0
    for login, (password, _) in USERS.items():
        assert mqtt(user=login, password=password).rc == 0, login
    bad = mqtt(user="alice", password="wrong")
    assert bad.rc == 5 or str(bad.rc) == "Not authorized", bad.rc


def test_pubsub_both_ways_with_psrt_py(server, mqtt):
    m = mqtt()
    assert m.subscribe("x1/#", 1) == [1]
    got = Collector()
    p = psrt_client(server, got)
    p.subscribe("x1/#")
    # PSRT publishes the parent: MQTT's x1/# takes it, PSRT's does not.
    p.publish("x1", b"parent")
    (msg,) = m.got.wait(1)
    assert (msg.topic, msg.payload, msg.qos) == ("x1", b"parent", 1)
    # MQTT publishes at QoS 1: both get it.
    m.publish("x1/a", b"from paho", qos=1)
    got.wait_topic("x1/a", b"from paho")
    m.got.wait_topic("x1/a", b"from paho")
    assert [x.topic for x in got.messages] == ["x1/a"]
    p.bye()


@needs_mosquitto
def test_mosquitto_pub_and_sub_with_psrt_py(server):
    got = Collector()
    p = psrt_client(server, got)
    p.subscribe("mq/+/t")
    r = mosquitto(["mosquitto_pub", "-p", str(server.mqtt_port), "-t", "mq/a/t", "-m", "hi", "-q", "1"])
    assert r.returncode == 0, r.stderr
    got.wait_topic("mq/a/t", b"hi")
    # mosquitto_sub waits for one message that a PSRT client publishes.
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(server.mqtt_port), "-t", "mq/#", "-C", "1",
                            "-v", "-q", "1", "-W", "10"], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not server.log_lines("MQTT client") or sub.poll() is not None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    p.publish("mq", b"from psrt")
    out, _ = sub.communicate(timeout=15)
    assert out.decode().strip() == "mq from psrt"
    p.bye()


@needs_mosquitto
def test_qos2_from_paho_reaches_mosquitto_sub_once(server, mqtt):
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(server.mqtt_port), "-t", "q2/t", "-q", "2",
                            "-v", "-W", "4"], stdout=subprocess.PIPE)
    time.sleep(0.5)
    mqtt().publish("q2/t", b"exactly once", qos=2)
    out, _ = sub.communicate(timeout=15)
    assert out.decode().splitlines() == ["q2/t exactly once"]


def test_acl_denial_is_suback_0x80(server, mqtt):
    alice = mqtt(user="alice", password=USERS["alice"][0])
    assert alice.subscribe("secret/#", 0) == [0x80]
    assert alice.subscribe("py/alice/#", 1) == [1]
    # A denied publish is dropped (and acknowledged): the session goes on.
    alice.publish("secret/x", b"no", qos=1)
    alice.publish("py/alice/ok", b"yes", qos=1)
    (msg,) = alice.got.wait(1)
    assert msg.topic == "py/alice/ok"


def test_last_will_on_a_dropped_connection(server, mqtt):
    got = Collector()
    p = psrt_client(server, got)
    p.subscribe("will/#")
    dev = mqtt(will=("will/dev", b"offline", 0, False))
    mqtt().publish("will/other", b"x")
    # Not DISCONNECT: the socket just goes away.
    dev.c.loop_stop()
    dev.c.socket().close()
    got.wait_topic("will/dev", b"offline")
    p.bye()


def test_no_will_after_disconnect_and_keepalive(server, mqtt):
    watcher = mqtt()
    watcher.subscribe("will2/#")
    dev = mqtt(will=("will2/dev", b"offline", 0, False))
    dev.close()
    # A raw client that says CONNECT with keep-alive 1 and then nothing.
    s = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10)
    cid = b"silent"
    body = b"\x00\x04MQTT\x04\x02\x00\x01" + len(cid).to_bytes(2, "big") + cid
    s.sendall(bytes([0x10, len(body)]) + body)
    assert s.recv(4) == b"\x20\x02\x00\x00"
    start = time.monotonic()
    assert s.recv(10) == b"", "closed after 1.5 x keep-alive"
    assert 1.0 < time.monotonic() - start < 5
    s.close()
    watcher.publish("will2/marker", b"m")
    watcher.got.wait_topic("will2/marker")
    assert [m.topic for m in watcher.got.messages] == ["will2/marker"]


def test_persistent_session_resume(server, mqtt):
    cid = uid("keep")
    first = mqtt(client_id=cid, clean=False)
    assert first.session_present is False
    first.subscribe("keep/#", 1)
    first.close()
    p = psrt_client(server)
    p.publish("keep/1", b"while away")
    again = mqtt(client_id=cid, clean=False)
    assert again.session_present is True
    (msg,) = again.got.wait(1)
    assert (msg.topic, msg.payload) == ("keep/1", b"while away")
    p.bye()


def test_bad_input_closes_that_connection_only(server, mqtt):
    good = mqtt()
    good.subscribe("bad/ok")
    for junk in [b"GET / HTTP/1.1\r\n\r\n", b"\xee\xaa\x00", b"\x10\xff\xff\xff\x7f", b"\xc0\x00"]:
        s = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10)
        s.sendall(junk)
        assert s.recv(10) in (b"",), junk
        s.close()
    good.publish("bad/ok", b"still here")
    good.got.wait_topic("bad/ok", b"still here")


def test_retained_messages_with_paho_and_psrt_py(server, mqtt):
    """mqtt.retain: true. A later subscription gets the retained message
    with retain=1; current subscribers get retain=0; an empty payload
    deletes it; a PSRT publish is never retained."""
    t = uid("rt")
    pub = mqtt()
    pub.c.publish(f"{t}/a", b"kept", qos=1, retain=True).wait_for_publish(10)
    late = mqtt()
    assert late.subscribe(f"{t}/#", 1) == [1]
    (msg,) = late.got.wait(1)
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (f"{t}/a", b"kept", 1, True)
    # Now a current subscriber: a retained publish comes with retain=0.
    pub.c.publish(f"{t}/a", b"newer", qos=0, retain=True).wait_for_publish(10)
    got = late.got.wait_topic(f"{t}/a", b"newer")
    assert [m.retain for m in got if m.payload == b"newer"] == [False]
    # PSRT has no retain flag: not retained.
    p = psrt_client(server)
    p.publish(f"{t}/psrt", b"live only")
    late.got.wait_topic(f"{t}/psrt", b"live only")
    again = mqtt()
    assert again.subscribe(f"{t}/#", 0) == [0]
    (msg,) = again.got.wait(1)
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (f"{t}/a", b"newer", 0, True)
    # Deleted by an empty retained payload.
    pub.c.publish(f"{t}/a", b"", qos=1, retain=True).wait_for_publish(10)
    gone = mqtt()
    assert gone.subscribe(f"{t}/#", 1) == [1]
    pub.publish(f"{t}/marker", b"m")
    got = gone.got.wait_topic(f"{t}/marker")
    assert [(m.topic, m.retain) for m in got] == [(f"{t}/marker", False)], "nothing retained"
    p.bye()


@needs_mosquitto
def test_mosquitto_pub_retained_reaches_a_later_mosquitto_sub(server):
    t = uid("mr")
    r = mosquitto(["mosquitto_pub", "-p", str(server.mqtt_port), "-t", f"{t}/x", "-m", "stays",
                   "-q", "1", "-r"])
    assert r.returncode == 0, r.stderr
    # %r is the retain flag: 1 for a message sent because of the subscription.
    r = mosquitto(["mosquitto_sub", "-p", str(server.mqtt_port), "-t", f"{t}/+", "-C", "1",
                   "-q", "1", "-W", "5", "-F", "%r %q %t %p"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == f"1 1 {t}/x stays"
    # `mosquitto_pub -r -n` (a null message) deletes it: a later mosquitto_sub
    # gets nothing retained, only what is published while it waits.
    r = mosquitto(["mosquitto_pub", "-p", str(server.mqtt_port), "-t", f"{t}/x", "-n", "-r"])
    assert r.returncode == 0, r.stderr
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(server.mqtt_port), "-t", f"{t}/+", "-C",
                            "1", "-W", "10", "-F", "%r %t %p"], stdout=subprocess.PIPE)
    time.sleep(0.5)
    r = mosquitto(["mosquitto_pub", "-p", str(server.mqtt_port), "-t", f"{t}/y", "-m", "live"])
    assert r.returncode == 0, r.stderr
    out, _ = sub.communicate(timeout=15)
    assert out.decode().strip() == f"0 {t}/y live"


def test_tls_listener_with_paho_and_psrt_py(tls_server):
    """mqtt.bind_tls: TLS from the first byte, the proto certificate."""
    got = Collector()
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=uid("tls"), protocol=paho.MQTTv311)
    c.tls_set(ca_certs=tls_server.ca)
    c.tls_insecure_set(True)  # the certificate names localhost and 127.0.0.1
    c.on_message = got
    acks = threading.Event()
    c.on_subscribe = lambda *a, **k: acks.set()
    c.connect("127.0.0.1", tls_server.mqtts_port, keepalive=30)
    c.loop_start()
    c.subscribe("tls/#", 1)
    assert acks.wait(10), "no SUBACK over TLS"
    p = psrt.Client(path=tls_server.addr, tls=True, tls_ca=tls_server.ca)
    p.connect()
    p.publish("tls/x", b"over TLS")
    got.wait_topic("tls/x", b"over TLS")
    p.bye()
    c.disconnect()
    c.loop_stop()
