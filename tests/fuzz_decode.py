"""Coverage-guided fuzzing of the decoder with atheris (libFuzzer), as a script.

    python tests/fuzz_decode.py --prepare DIR  # writes DIR/corpus (seeds) and DIR/json.dict
    python tests/fuzz_decode.py -runs=100000 -seed=1 -dict=DIR/json.dict DIR/corpus

Any libFuzzer flag works (`-help=1`). Every input must decode, with and without a
size cap, to an event of a known type or to a reject with one of the contract's
reasons, a readable error and a JSON-serialisable dead-letter record. Anything else,
an exception included, is a crash: libFuzzer stops, prints the traceback and saves
the input as `crash-<sha1>` (see `-artifact_prefix=`). `tests/test_hostile.py` runs
this harness for a bounded number of inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from flows.events import COUNT, EVENT_TYPES, INT, LINES, NUMBER, QTY, STATUS, STRING, TIME

MAX_BYTES = 256  # small, so that the size check is exercised too

# Sample values per field kind of the event table, for the seed corpus.
SAMPLES = {
    STRING: "FC-1",
    TIME: "2026-11-20T10:15:00.123Z",
    QTY: 2,
    INT: -3,
    COUNT: 0,
    NUMBER: 12.5,
    STATUS: "delivered",
    LINES: [{"sku": "S1", "qty": 1}],
}
# Tokens libFuzzer splices into inputs: JSON syntax, field names, types, odd numbers.
TOKENS = [
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    '"',
    "\\u0000",
    "\\ud800",
    "null",
    "true",
    "false",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "1e19",
    "18446744073709551616",
    "9223372036854775808",
    "-0.0",
    "4.0",
    "253402300799999",
    "2026-11-20T10:15:00Z",
    "2026-11-20T10:15:00.123456789+05:30",
    *sorted({f'"{name}"' for spec in EVENT_TYPES.values() for name, _ in spec.required}),
    *sorted(f'"{name}"' for name in EVENT_TYPES),
    '"event_id"',
    '"type"',
    '"ts"',
]


def seeds() -> list[bytes]:
    """Events of every type: valid with and without optional fields, valid only for the
    full check (integers written `2.0`), and invalid; plus a few odd inputs."""
    out = []
    for number, spec in enumerate(EVENT_TYPES.values()):
        event = {"event_id": f"seed-{number}", "type": spec.name, "ts": 1795132800000}
        event.update({name: SAMPLES[kind] for name, kind in spec.required})
        out.append(orjson.dumps(event))
        out.append(orjson.dumps({**event, **{name: "x" for name, _ in spec.optional}}))
        as_floats = {k: float(v) if type(v) is int else v for k, v in event.items()}
        out.append(orjson.dumps(as_floats))
        out.append(orjson.dumps({**event, "ts": "2026-11-20T10:15:00+01:00"}))
        for name, _kind in spec.required:
            out.append(orjson.dumps({**event, name: [name]}))
    out += [b"", b"{}", b"[]", b'{"type":"nope"}', b"[" * 1100, b'{"a":' * 10 + b"1" + b"}" * 10]
    return out


def prepare(directory: Path) -> None:
    """Write the seed corpus and the libFuzzer dictionary under `directory`."""
    corpus = directory / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(seeds()):
        (corpus / f"seed-{number:03d}").write_bytes(seed)
    entries = "".join(f"{orjson.dumps(token).decode()}\n" for token in TOKENS)
    (directory / "json.dict").write_text(entries)


def check(data: bytes) -> None:
    """The property: a well-formed verdict for every input, under any size cap."""
    from flows.decode import REJECT_REASONS, Reject, decode  # imported, instrumented, by main

    for max_bytes in (0, MAX_BYTES):
        verdict = decode(data, max_bytes)
        if isinstance(verdict, Reject):
            assert verdict.reason in REJECT_REASONS, verdict.reason
            assert verdict.error.strip(), "a reject must say why"
            orjson.dumps(verdict.record())
        else:
            assert verdict.kind in EVENT_TYPES, verdict
            assert type(verdict.ts) is int, verdict
            assert not max_bytes or len(data.rstrip(b"\n")) <= max_bytes


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--prepare":
        prepare(Path(argv[2]))
        return
    import atheris

    with atheris.instrument_imports(include=["flows"]):  # coverage of the decoder's code
        import flows.decode  # noqa: F401

    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
