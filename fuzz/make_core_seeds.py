#!/usr/bin/env python3
"""Writes the seed corpora of frame_fuzz and utf8_fuzz (fuzz/corpus/frame,
fuzz/corpus/utf8). Byte 0 of each seed is the mode byte (read sizes, options)."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def frame(b0, payload, key=None):
    n = len(payload)
    mbit = 0x80 if key is not None else 0
    if n <= 125:
        head = bytes([b0, mbit | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if key is None:
        return head + payload
    return head + bytes(key) + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


K = [0x37, 0xFA, 0x21, 0x3D]


def both(b0, payload):
    # A masked frame (server role accepts it) followed by nothing else: the
    # client role sees the same bytes and must reject the mask.
    return frame(b0, payload, K)


frame_seeds = {
    "rfc_hello_masked": bytes([0x03]) + frame(0x81, b"Hello", K),
    "rfc_hello_unmasked": bytes([0x05]) + frame(0x81, b"Hello"),
    "rfc_fragmented": bytes([0x01]) + frame(0x01, b"Hel", K) + frame(0x80, b"lo", K),
    "ping_between_fragments": bytes([0x17]) + frame(0x01, b"a", K) + frame(0x89, b"p", K)
    + frame(0x80, b"b", K),
    "binary_256": bytes([0x0F]) + frame(0x82, bytes(range(256)), K),
    "close_normal": bytes([0x02]) + frame(0x88, b"\x03\xe8bye", K),
    "close_empty": bytes([0x00]) + frame(0x88, b""),
    "close_bad_code": bytes([0x04]) + frame(0x88, b"\x03\xed", K),
    "utf8_split_emoji": bytes([0x41]) + frame(0x01, b"\xf0\x9f", K) + frame(0x80, b"\x98\x80", K),
    "utf8_invalid": bytes([0x06]) + frame(0x81, b"ok\xed\xa0\x80", K),
    "reserved_bits": bytes([0x83]) + frame(0xC1, b"zz", K) + frame(0xA1, b"zz", K),
    "reserved_opcode": bytes([0x07]) + frame(0x83, b"", K),
    "length_64": bytes([0x29]) + bytes([0x82, 0xFF]) + struct.pack(">Q", 70) + bytes(K) + bytes(70),
    "non_minimal": bytes([0x08]) + bytes([0x82, 0x7E, 0x00, 0x05]) + b"hello",
    "top_bit": bytes([0x09]) + bytes([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
    "echo_many": bytes([0x1F]) + b"".join(frame(0x81, b"m%d" % i, K) for i in range(20)),
    "pong_unmasked": bytes([0x0A]) + frame(0x8A, b"beat") + frame(0x82, b"x"),
    # Messages large enough for receive_holding to hold (16 KiB and more), in
    # full and in partial mode.
    "large_whole_messages": bytes([0x0F]) + frame(0x81, "\u00e9".encode() * 8200, K)
    + frame(0x89, b"p", K) + frame(0x82, bytes(range(256)) * 65, K),
    "large_partial_messages": bytes([0x4F]) + frame(0x82, bytes(range(256)) * 65, K)
    + frame(0x81, b"after", K),
}

utf8_seeds = {
    "ascii": b"\x00Hello, world",
    "mixed": b"\x05caf\xc3\xa9 \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80",
    "surrogate": b"\x01a\xed\xa0\x80b",
    "above_max": b"\x02\xf4\x90\x80\x80",
    "overlong": b"\x03\xc0\xaf\xe0\x80\xaf\xf0\x80\x80\xaf",
    "truncated": b"\x07abc\xe2\x82",
    "long_ascii_then_bad": b"\x3f" + b"x" * 100 + b"\xff",
    "edges": b"\x11\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\xc2\x80\xdf\xbf",
}

for sub, seeds in (("frame", frame_seeds), ("utf8", utf8_seeds)):
    d = os.path.join(here, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
