#!/usr/bin/env python3
"""Regenerate the decoder seed corpus (tests/fuzz/corpus/decoder/seed-*).

  python3 tests/fuzz/gen_decoder_seeds.py [SHARED_DIR]   (default: ../shared beside the repository)

seed-qemu-*: what real QEMU 11.1.3 sent in each recorded session of SHARED_DIR/qemu11/transcripts (its S: lines,
CRLF-terminated as on the wire), cut at a whole line after ~16 KiB so the fuzzer stays fast.
seed-edge-*: hand-made streams for what the decoder must get right or refuse cleanly.
Files not named seed-* (fuzzed-*, crash-*, regress-*: see tests/fuzz/README.md) are left alone.
"""
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fuzz" / "corpus" / "decoder"
CAP = 16 * 1024

GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 3, "minor": 1, "major": 11}, '
            b'"package": "Debian 1:11.1.3+ds-1~bpo13+1"}, "capabilities": ["oob"]}}\r\n')

EDGE = {
    # strings holding every framing character, escaped quotes and backslashes at the end of a string
    "edge-nested-strings": b'{"a":"}{][\\"}","b":{"c":["\\\\",{"d":"\\\\\\""}],"e":"\\\\"},"f":"{\\"g\\":[1,{}]}"}\r\n',
    "edge-escapes": b'{"u":"\\u00e9\\u20ac\\ud83d\\ude00","t":"\\t\\n\\r\\b\\f\\/","q":"\\""}\r\n',
    # QEMU prints uint64 properties beyond json_int_t
    "edge-bigint": b'{"return":{"max":18446744073709551615,"min":-9223372036854775808,'
                   b'"under":-9223372036854775809,"s":"18446744073709551615"}}\r\n',
    "edge-bigint-and-real": b'{"a":18446744073709551615,"b":0.12345678901234567890123,"c":1e-12345678901234567890}\r\n',
    "edge-bigint-fraction": b'{"a":18446744073709551615,"b":3.14159265358979323846264}\r\n',
    "edge-real-overflow": b'{"a":1e400}\r\n',
    # bad UTF-8: a lone continuation byte, an overlong encoding, a surrogate encoded directly, truncated
    "edge-bad-utf8": b'{"a":"ok"}\r\n{"b":"\x80"}\r\n',
    "edge-bad-utf8-overlong": b'{"a":"\xc0\xaf"}\r\n',
    "edge-bad-utf8-surrogate": b'{"a":"\xed\xa0\x80"}\r\n',
    "edge-bad-utf8-truncated": b'{"\xe2\x82":1}\r\n',
    "edge-lone-surrogate-escape": b'{"a":"\\ud800"}\r\n',
    "edge-nul-escape": b'{"a":"x\\u0000y"}\r\n',
    "edge-raw-nul": b'{"a":"x\x00y"}\r\n',
    "edge-control-char": b'{"a":"x\x01y"}\r\n',
    # top-level values that are not objects
    "edge-top-array": b'[{"return":{}}]\r\n',
    "edge-top-string": b'"{}"\r\n',
    "edge-top-number": b'{"return":{}}\r\n42\r\n',
    "edge-top-literal": b'true\r\n',
    "edge-top-null": b'null',
    "edge-garbage": b'this is not json\r\n',
    # framing: several per chunk, none or odd separators, whitespace only, an empty object
    "edge-no-separator": b'{"a":1}{"b":[]}{}{"c":{"d":{}}}',
    "edge-lf-and-spaces": b'  {"a":1}\n\t{"b":2}   \r\n\r\n{"c":3}\n',
    "edge-whitespace-only": b' \r\n\t \n',
    "edge-empty-object": b'{}',
    # truncated messages: inside a string, after an escape, between members
    "edge-truncated": GREETING + b'{"return": {"status": "prel',
    "edge-truncated-escape": b'{"a":"x\\',
    "edge-truncated-member": b'{"return":{"a":[1,2',
    # mismatched or unbalanced brackets: the frame ends, then fails to parse
    "edge-mismatched": b'{"a":[}]}\r\n',
    "edge-extra-close": b'{"a":1}}\r\n',
    "edge-invalid-inside": b'{"a":tru}\r\n',
    "edge-trailing-comma": b'{"a":1,}\r\n',
    "edge-duplicate-keys": b'{"id":1,"id":2,"return":{}}\r\n',
    # deeper than jansson's nesting limit (2048), and just under it
    "edge-deep": b'{"a":' + b'[' * 3000 + b']' * 3000 + b'}',
    "edge-deep-ok": b'{"a":' + b'[' * 1000 + b']' * 1000 + b'}',
    # QEMU's replies to broken input (a64-12): an error without id, then a normal reply
    "edge-idless-error": b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'this\'"}}\r\n'
                         b'{"return": {}, "id": 1}\r\n',
    "edge-event-before-reply": b'{"timestamp": {"seconds": 1764460801, "microseconds": 96823}, "event": "DEVICE_DELETED", '
                               b'"data": {"device": "nic1", "path": "/machine/peripheral/nic1"}}\r\n'
                               b'{"return": {}, "id": "del-1"}\r\n',
}


def s_lines(path):
    out = bytearray()
    for line in path.read_bytes().split(b"\n"):
        if line.startswith(b"S: "):
            if out and len(out) + len(line) > CAP:
                break
            out += line[3:].rstrip(b"\r") + b"\r\n"
    return bytes(out)


def main():
    shared = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared"
    tdir = shared / "qemu11" / "transcripts"
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("seed-*"):
        old.unlink()
    n = 0
    for t in sorted(tdir.glob("*.txt")):
        data = s_lines(t)
        if data:
            (OUT / ("seed-qemu-" + t.stem)).write_bytes(data)
            n += 1
    for name, data in EDGE.items():
        (OUT / ("seed-" + name)).write_bytes(data)
        n += 1
    print(f"{n} seeds in {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
