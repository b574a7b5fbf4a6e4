#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/.

Every seed is a real frame written out byte by byte from the PSRT wire facts
(not produced by the Rust encoders), so the targets start from what real
clients and servers send. Run it from anywhere:

    python3 fuzz/seeds.py

The two sealed UDP datagrams need the `cryptography` package; without it the
script keeps the committed ones. Files the fuzzer adds are never committed
(tests/run.sh fuzzes a copy of this directory).
"""

import os
import struct
import sys

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

CONTROL = b"\xee\xaa"
DATA = b"\xee\xab"
VERSION = b"\x01\x00"
# user1's key from the reference repository's keys.yml; the udp_encrypted
# target opens blocks with the same key.
USER1_KEY = bytes.fromhex(
    "26fd38045707792a9bc50f3761a58987c4a9362cf60389f341c28e37b1125d93"
)
TOKEN = bytes(range(0x10, 0x30))


def u32(n):
    return struct.pack("<I", n)


def u64(n):
    return struct.pack("<Q", n)


def lp(body):
    """LEN(u32 LE) + body."""
    return u32(len(body)) + body


def publish(prio, topic, message):
    return b"\x01" + bytes([prio]) + lp(topic + b"\x00" + message)


def sub(op, body):
    return bytes([op]) + lp(body)


def be16(n):
    return struct.pack(">H", n)


def mstr(b):
    """MQTT string: u16 BE length + bytes."""
    return be16(len(b)) + b


def rl(n):
    """MQTT remaining length (variable byte integer)."""
    out = b""
    while True:
        byte, n = n % 128, n // 128
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def mqtt(first, body):
    return bytes([first]) + rl(len(body)) + body


def mqtt_connect(flags, client_id, rest=b"", name=b"MQTT", level=4, keepalive=60):
    return mqtt(0x10, mstr(name) + bytes([level, flags]) + be16(keepalive) + mstr(client_id) + rest)


def udp_body(op, prio, topic, data):
    return bytes([op, prio]) + topic + b"\x00" + data


SEEDS = {
    "greeting": {
        "control_plain": CONTROL + b"\x00",
        "control_tls": CONTROL + b"\x01",
        "data_plain": DATA + b"\x00",
        "data_tls": DATA + b"\x01",
        "reply_control": CONTROL + VERSION,
        "reply_data": DATA + VERSION,
        "http_get_on_psrt_port": b"GET / HTTP/1.1\r\n\r\n",
        "tls_client_hello_on_plain_port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    },
    "login": {
        "anonymous_login": b"\x01\x00\x00\x00\x00",
        "user1_password_123": lp(b"user1\x00123"),
        "password_with_nul": lp(b"a\x00b\x00c"),
        "no_nul": lp(b"abc"),
        "len_1025_refused": u32(1025),
        "len_1024_header": u32(1024),
        "token": TOKEN,
    },
    "request_stream": {
        "nop": b"\x00",
        "bye": b"\xff",
        "publish_a_b_xyz": publish(0x10, b"a/b", b"xyz"),
        "publish_empty_message": publish(0x7F, b"t", b""),
        "publish_message_with_nul": publish(0x7F, b"t", b"a\x00b"),
        "publish_to_slash": publish(0x7F, b"/", b"empty topic"),
        "publish_len_too_large": b"\x01\x7f" + u32(0xFFFFFFFF),
        "subscribe_rust_layout": sub(0x02, b"a/b\x00c/#\x00"),
        "bulk_subscribe_python_layout": sub(0x02, b"t1\x00t2/+\x00t3/#"),
        "unsubscribe_python_layout": sub(0x03, b"a/b\x00c/#"),
        "subscribe_empty_frame": sub(0x02, b""),
        "subscribe_only_nuls": sub(0x02, b"\x00\x00\x00"),
        "publish_repl_two_phases": sub(0x11, b"a/b")
        + b"\x7f"
        + u64(0x0102030405060708)
        + lp(b"hello"),
        "pipelined_session": b"\x00"
        + sub(0x02, b"unit/#\x00")
        + publish(0x7F, b"unit/1/temp", b"21.5")
        + sub(0x03, b"unit/#\x00")
        + b"\xff",
        "replies": b"\x01\x02\xe0\xfe\xff",
    },
    "data_hello": {
        "hello_timeout_5": TOKEN + b"\x05",
        "hello_timeout_0_beacon_storm": TOKEN + b"\x00",
        "hello_timeout_255": TOKEN + b"\xff",
    },
    "data_stream": {
        "push_a_b_xyz": b"\x01\x10" + lp(b"a/b\x00xyz"),
        "nop_beacon": b"\x00",
        "push_empty_topic": b"\x01\x7f" + lp(b"\x00to the empty topic"),
        "beacons_and_pushes": b"\x00"
        + b"\x01\x7f"
        + lp(b"unit/1/temp\x0021.5")
        + b"\x00\x00"
        + b"\x01\x00"
        + lp(b"t\x00"),
        "push_len_too_large": b"\x01\x7f" + u32(0xFFFFFFFF),
    },
    "udp_plain": {
        "user1_publish_ack": CONTROL
        + VERSION
        + b"\x00user1\x00123\x00"
        + udp_body(0x01, 0x7F, b"abcxxx", b"hello"),
        "anonymous_no_ack_bench": CONTROL
        + VERSION
        + b"\x00\x00\x00"
        + udp_body(0x21, 0x7F, b"bench/t0", b"payload"),
        "priority_zero": CONTROL
        + VERSION
        + b"\x00\x00\x00"
        + udp_body(0x01, 0x00, b"t", b"data"),
        "body_publish": udp_body(0x01, 0x7F, b"a/b", b"data"),
        "ack_ok": CONTROL + VERSION + b"\x01",
        "ack_access_denied": CONTROL + VERSION + b"\xfe",
        "ack_error": CONTROL + VERSION + b"\xff",
    },
    "udp_encrypted": {
        # Read by the target as a plaintext body to seal and open.
        "body_publish_mytopic": udp_body(0x01, 0x7F, b"mytopic", b"hello"),
        "body_no_ack_priority_zero": udp_body(0x21, 0x00, b"a/b", b""),
        # One byte short of nonce + tag + 1.
        "aes256_block_too_short": CONTROL + VERSION + b"\x03\x00" + bytes(28),
    },
    "topic": {
        # MASK 00 PATTERN 00 TOPIC
        "hash_covers_all": b"#\x00a/+/c\x00a/x/c",
        "a_hash_does_not_match_a": b"a/#\x00a/#\x00a",
        "plus_matches_empty_level": b"w/+\x00w/+\x00w/",
        "plus_xxx_leading_slash": b"+/xxx\x00/xxx\x00/xxx",
        "data_plus_does_not_cover_data_hash": b"data/+\x00data/#\x00data/x/y",
        "hash_mid_mask": b"q/#/z\x00q/#\x00q/a/b/c",
        "wildcard_inside_word": b"a+b\x00a+b\x00a#b",
        "normalise_slashes": b"//a///b\x00/a/b\x00a//b//",
        "too_deep": b"a/b/c/d/e/f\x00+/+/+/+/+/+\x00a/b/c/d/e/f",
        "utf8_levels": "é/+\x00é/ü\x00é//ü".encode(),
    },
    "mqtt_stream": {
        "connect_clean_anonymous": mqtt_connect(0x02, b"mosq-sub-1"),
        "connect_user_password_will": mqtt_connect(
            0xEE, b"c1", mstr(b"w/t") + mstr(b"bye") + mstr(b"u") + mstr(b"pw")
        ),
        "connect_mqtt31": mqtt_connect(0x02, b"", name=b"MQIsdp", level=3),
        "connect_mqtt5_refused": mqtt_connect(0x02, b"v5", level=5) + b"\x00",
        "publish_qos0": mqtt(0x30, mstr(b"a/b") + b"xyz"),
        "publish_qos1_dup_retain": mqtt(0x3B, mstr(b"t") + be16(0x1234) + b"hi"),
        "publish_qos2_flow": mqtt(0x34, mstr(b"q2") + be16(7) + b"once")
        + mqtt(0x62, be16(7)),
        "publish_len_too_large": b"\x30\xff\xff\x7f",
        "subscribe_two_filters": mqtt(0x82, be16(10) + mstr(b"a/#") + b"\x01" + mstr(b"+/b/") + b"\x00"),
        "unsubscribe": mqtt(0xA2, be16(2) + mstr(b"a/#") + mstr(b"/x")),
        "acks_and_pings": mqtt(0x40, be16(1)) + mqtt(0x50, be16(2)) + mqtt(0x70, be16(3))
        + b"\xc0\x00\xd0\x00\xe0\x00",
        "server_side": b"\x20\x02\x00\x00" + mqtt(0x90, be16(10) + b"\x01\x80") + mqtt(0xB0, be16(2)),
        "pipelined_session": mqtt_connect(0x02, b"p")
        + mqtt(0x82, be16(1) + mstr(b"s/#") + b"\x00")
        + mqtt(0x30, mstr(b"s") + b"parent")
        + b"\xc0\x00\xe0\x00",
        "http_on_mqtt_port": b"GET / HTTP/1.1\r\n\r\n",
    },
    # What a broker sends a bridge (psrtd as an MQTT client).
    "mqtt_client": {
        "connack_suback_pingresp": b"\x20\x02\x00\x00" + mqtt(0x90, be16(1) + b"\x01") + b"\xd0\x00",
        "publish_qos1_puback": mqtt(0x32, mstr(b"cmd") + be16(7) + b"valve") + mqtt(0x40, be16(7)),
        "publish_len_too_large": b"\x30\xe9\x07",
        "connect_from_server": mqtt_connect(0x02, b""),
    },
}


def sealed_seeds():
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        print("cryptography not installed: keeping the committed sealed seeds", file=sys.stderr)
        return {}
    body = udp_body(0x01, 0x7F, b"mytopic", b"hello")
    out = {}
    # Type 02 uses the first 16 key bytes, type 03 all 32; the AAD is empty
    # and the tag follows the ciphertext. An empty key id names the key "_".
    for name, kind, key, key_id, nonce in [
        ("aes128_anonymous_key_publish", 0x02, USER1_KEY[:16], b"", b"seed-nonce-1"),
        ("aes256_user1_publish", 0x03, USER1_KEY, b"user1", b"seed-nonce-2"),
    ]:
        block = AESGCM(key).encrypt(nonce, body, None)
        out[name] = CONTROL + VERSION + bytes([kind]) + key_id + b"\x00" + nonce + block
    return out


def main():
    SEEDS["udp_encrypted"].update(sealed_seeds())
    for target, seeds in SEEDS.items():
        directory = os.path.join(CORPUS, target)
        os.makedirs(directory, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
    print(f"wrote {sum(map(len, SEEDS.values()))} seeds under {CORPUS}")


if __name__ == "__main__":
    main()
