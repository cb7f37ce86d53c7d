"""Hostile input (issue 5): whatever a producer sends, nothing crashes and nothing is lost.

Every input is either accepted (an event of one of the contract's types) or
dead-lettered with one of the contract's reasons, and the verdict agrees with the
independent reference in `tests/reference.py`. The bulk fuzz runs well over
100,000 inputs from a seeded generator (deterministic, fast); hypothesis adds
shrinking searches on top. A flood of distinct label values keeps the exposed
series at the cap and memory bounded.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from flows.decode import REJECT_REASONS, Reject, decode
from flows.events import (
    COUNT,
    DELIVERY_STATUSES,
    EVENT_TYPES,
    INT,
    LINES,
    NUMBER,
    QTY,
    STATUS,
    STRING,
    TIME,
)
from flows.kpis import FAMILIES
from flows.labels import LabelCap
from flows.runtime.core import Shard
from flows.runtime.outputs import DeadLetter
from flows.schemas import output_schemas
from flows.settings import EngineConfig
from tests import reference
from tests.bench.child import PEAK_MARK
from tests.reference import parse_exposition

MIB = 1 << 20  # the default --max-event-bytes
TEN_MB = 10 * 1000 * 1000
FUZZ_COUNT = 100_000
REFERENCE_SAMPLE = 5_000
START_MS = 1_795_132_800_000  # 2026-11-20T00:00:00Z
KINDS = sorted(EVENT_TYPES)
REPLAY = (sys.executable, "-m", "flows.cli", "replay", "--quiet")
MEASURED_REPLAY = (sys.executable, "-m", "tests.bench.child", "replay", "--quiet")
# Hypothesis: reproducible, no example database in the work tree, no deadline.
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- building inputs

PLACEHOLDER = "\x01literal\x01"


def text(rng: random.Random) -> str:
    """A short string, sometimes with unicode, escapes or control characters."""
    roll = rng.random()
    if roll < 0.6:
        return f"{rng.choice(['FC', 'S', 'o', 'r', 'x'])}{rng.randrange(1000)}"
    if roll < 0.8:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(8)))
    return rng.choice(["", " ", "\u0000", "a\u0000b", "\n", '"', "\\", "\ufeff", "\U0001f4e6"])


def event_time(rng: random.Random) -> str | int:
    """A valid time: epoch milliseconds or RFC 3339 with an offset."""
    ms = START_MS + rng.randrange(3 * 86_400_000)
    if rng.random() < 0.5:
        return ms
    seconds, fraction = divmod(ms, 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return rng.choice([f"{stamp}Z", f"{stamp}.{fraction:03d}Z", f"{stamp}.{fraction:03d}000+00:00"])


def field_value(rng: random.Random, kind: str) -> Any:
    """A valid value of one field kind of the event table."""
    if kind == STRING:
        return text(rng)
    if kind == TIME:
        return event_time(rng)
    if kind == QTY:
        return rng.randrange(1, 100)
    if kind == INT:
        return rng.randrange(-100, 100)
    if kind == COUNT:
        return rng.randrange(0, 100)
    if kind == NUMBER:
        return rng.choice([0, rng.randrange(5000), rng.random() * 5000])
    if kind == STATUS:
        return rng.choice(DELIVERY_STATUSES)
    assert kind == LINES
    return [{"sku": text(rng), "qty": rng.randrange(1, 5)} for _ in range(rng.randrange(1, 4))]


def valid_event(rng: random.Random, number: int, kind: str | None = None) -> dict[str, Any]:
    """A valid event of `kind` (or a random type) with a unique id."""
    spec = EVENT_TYPES[kind or rng.choice(KINDS)]
    event: dict[str, Any] = {"event_id": f"fz-{number}", "type": spec.name, "ts": event_time(rng)}
    for name, field_kind in spec.required:
        event[name] = field_value(rng, field_kind)
    for name, _kind in spec.optional:
        if rng.random() < 0.5:
            event[name] = rng.choice([None, text(rng)])
    return event


def with_literal(event: dict[str, Any], name: str, literal: bytes) -> bytes:
    """The event as JSON with the value of `name` replaced by raw JSON text `literal`."""
    marked = {**event, name: PLACEHOLDER}
    return orjson.dumps(marked).replace(orjson.dumps(PLACEHOLDER), literal)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value (no NaN), small."""
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(
            [None, True, False, 0, -1, 2**53, -(2**63), 1.5, -0.0, 1e300, text(rng), ""]
        )
    if roll < 0.75:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {text(rng): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


# Literals that are not valid JSON numbers, or are at the edge of what JSON allows.
HUGE_NUMBERS = [
    b"9223372036854775807",  # 2^63 - 1
    b"9223372036854775808",  # 2^63
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",  # 2^64 - 1
    b"18446744073709551616",  # 2^64
    b"-18446744073709551616",
    b"1" + b"0" * 400,  # 10^400
    b"-1" + b"0" * 400,
    b"9" * 5000,  # beyond Python's int-to-text limit
    b"1e19",
    b"1e308",
    b"1.7976931348623157e308",
    b"-1e308",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"5e-324",
    b"4.0e0",
    b"1E2",
    b"-0",
    b"-0.0",
    b"0.0",
    b"100.000000000000000000001",
]
NOT_NUMBERS = [
    b"NaN",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"+Infinity",
    b"nan",
    b"inf",
    b"+1",
    b"01",
    b".5",
    b"1.",
    b"0x10",
    b"1e",
    b"--1",
    b"1_000",
    b"\xef\xbc\x91",  # a fullwidth digit
]
WRONG_VALUES: list[bytes] = [
    b"null",
    b"true",
    b"false",
    b"0",
    b"-1",
    b"1.5",
    b"1e400",
    b'""',
    b'"x"',
    b'"2026-11-20T00:00:00"',
    b'"2026-02-30T00:00:00Z"',
    b'"2026-11-20T00:00:60Z"',
    b'"2026-11-20t00:00:00z"',
    b'"\\u0000"',
    b"[]",
    b"[1]",
    b'[{"sku":"s","qty":0}]',
    b'[{"sku":1,"qty":1}]',
    b"{}",
    b'{"a":1}',
    b"253402300800000",
    b"-1",
]
BAD_UTF8 = [
    b"\xff",
    b"\xfe",
    b"\xc0\xaf",  # overlong "/"
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xc3",  # truncated
    b"\xe2\x82",
    b"\x80",
    b"\xf8\x88\x80\x80\x80",
]
BAD_ESCAPES = [
    b"\\ud800",
    b"\\udfff",
    b"\\ud800\\u0041",
    b"\\u00",
    b"\\x41",
    b"\\'",
    b"\\U0001F600",
]
JSONISH = b'{}[]":,0123456789.eE+-tfnrul\\ \t\n\x00\xff\x7f'


def random_bytes(rng: random.Random, number: int) -> bytes:
    """Noise: uniformly random bytes, or random JSON-ish characters."""
    size = rng.randrange(0, 200)
    if rng.random() < 0.5:
        return rng.randbytes(size)
    return bytes(rng.choice(JSONISH) for _ in range(size))


def invalid_utf8(rng: random.Random, number: int) -> bytes:
    """A valid event with a broken UTF-8 sequence inside one of its strings."""
    data = orjson.dumps(valid_event(rng, number))
    quotes = [i for i, byte in enumerate(data) if byte == ord('"')]
    at = rng.choice(quotes) + 1
    return data[:at] + rng.choice(BAD_UTF8) + data[at:]


def deep_nesting(rng: random.Random, number: int) -> bytes:
    """Arrays or objects nested 10 to 100,000 deep, alone or as a field of an event."""
    depth = rng.choice([10, 100, 1000, 1023, 1024, 1025, 5000])
    if rng.random() < 0.005:  # rare: each is 100-600 KB
        depth = 100_000
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"a":', b"}]")])
    closed = rng.random() < 0.8
    inner = opener * depth + b"1" + (closer * depth if closed else b"")
    if rng.random() < 0.5:
        return inner
    return with_literal(valid_event(rng, number), rng.choice(["extra", "ts", "fc"]), inner)


def huge_number(rng: random.Random, number: int) -> bytes:
    """A valid event with a number (or time) replaced by a huge, tiny or odd number."""
    event = valid_event(rng, number)
    numeric = [k for k, v in event.items() if type(v) in (int, float)] or ["ts"]
    name = rng.choice([*numeric, "ts", "extra"])
    return with_literal(event, name, rng.choice(HUGE_NUMBERS))


def huge_line_qty(rng: random.Random, number: int) -> bytes:
    """An order whose line quantity is huge or odd."""
    event = valid_event(rng, number, "order.placed")
    literal = rng.choice(HUGE_NUMBERS).decode()
    data = orjson.dumps({**event, "lines": [{"sku": "s", "qty": PLACEHOLDER}]})
    return data.replace(orjson.dumps(PLACEHOLDER), literal.encode())


def not_a_number(rng: random.Random, number: int) -> bytes:
    """NaN, Infinity and other number forms JSON does not have."""
    event = valid_event(rng, number)
    return with_literal(event, rng.choice([*event, "extra"]), rng.choice(NOT_NUMBERS))


def null_bytes(rng: random.Random, number: int) -> bytes:
    """NUL characters: escaped in strings (valid), raw in strings or outside (invalid)."""
    event = valid_event(rng, number)
    roll = rng.randrange(5)
    if roll == 0:  # escaped, in a value: valid JSON
        name = rng.choice([k for k, v in event.items() if type(v) is str])
        event[name] = event[name] + "\u0000" * rng.randrange(1, 4)
        return orjson.dumps(event)
    if roll == 1:  # escaped, in a key
        event["\u0000"] = "\u0000"
        return orjson.dumps(event)
    data = orjson.dumps(event)
    if roll == 2:  # raw, inside a string
        quotes = [i for i, byte in enumerate(data) if byte == ord('"')]
        at = rng.choice(quotes) + 1
        return data[:at] + b"\x00" + data[at:]
    if roll == 3:  # raw, after the document
        return data + b"\x00"
    return b"\x00" + data


def bad_escape(rng: random.Random, number: int) -> bytes:
    """Lone surrogates and escapes JSON does not have, inside a string."""
    data = orjson.dumps(valid_event(rng, number))
    quotes = [i for i, byte in enumerate(data) if byte == ord('"')]
    at = rng.choice(quotes) + 1
    return data[:at] + rng.choice(BAD_ESCAPES) + data[at:]


def extra_fields(rng: random.Random, number: int) -> bytes:
    """A valid event with random extra fields (allowed and ignored)."""
    event = valid_event(rng, number)
    for _ in range(rng.randrange(1, 6)):
        key = rng.choice([text(rng), "Type", "TYPE", "event_id ", "ts\u0000", "__proto__"])
        if key not in event:
            event[key] = random_json(rng)
    return orjson.dumps(event)


def not_an_object(rng: random.Random, number: int) -> bytes:
    """Valid JSON that is not an object, or an event wrapped in something."""
    event = valid_event(rng, number)
    return rng.choice(
        [
            orjson.dumps([event]),
            orjson.dumps(random_json(rng)),
            orjson.dumps(event) * 2,
            orjson.dumps(json.dumps(event)),
            b" \t" + orjson.dumps(event) + b"\r\n",
        ]
    )


def mutated(rng: random.Random, number: int) -> bytes:
    """A valid event's bytes with a few random flips, deletions, insertions or a cut."""
    data = bytearray(orjson.dumps(valid_event(rng, number)))
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(data))
        roll = rng.randrange(4)
        if roll == 0:
            data[at] = rng.randrange(256)
        elif roll == 1:
            del data[at]
        elif roll == 2:
            data.insert(at, rng.choice(JSONISH))
        else:
            del data[at:]
        if not data:
            break
    return bytes(data)


def valid(rng: random.Random, number: int) -> bytes:
    return orjson.dumps(valid_event(rng, number))


STRATEGIES: dict[str, Callable[[random.Random, int], bytes]] = {
    "random bytes": random_bytes,
    "invalid utf-8": invalid_utf8,
    "deep nesting": deep_nesting,
    "huge number": huge_number,
    "huge line qty": huge_line_qty,
    "not a number": not_a_number,
    "null bytes": null_bytes,
    "bad escape": bad_escape,
    "extra fields": extra_fields,
    "not an object": not_an_object,
    "mutated": mutated,
    "valid": valid,
}


def wrong_types() -> Iterator[tuple[str, bytes]]:
    """Every field of every event type, missing or given each wrong value in turn."""
    rng = random.Random(5)
    number = 0
    for kind in KINDS:
        spec = EVENT_TYPES[kind]
        names = ["event_id", "type", "ts"] + [n for n, _ in spec.required + spec.optional]
        for name in names:
            event = valid_event(rng, number, kind)
            number += 1
            yield "wrong type", orjson.dumps({k: v for k, v in event.items() if k != name})
            for literal in WRONG_VALUES:
                yield "wrong type", with_literal(event, name, literal)


def seeded_inputs(count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """`count` labelled inputs, the strategies taking turns, from a seeded generator."""
    rng = random.Random(seed)
    names = list(STRATEGIES)
    for number in range(count):
        name = names[number % len(names)]
        yield name, STRATEGIES[name](rng, number)


def hostile_inputs(count: int, seed: int = 5) -> Iterator[tuple[str, bytes]]:
    """`count` labelled inputs: every wrong-type case, then seeded draws of each strategy."""
    cases = list(wrong_types())
    yield from cases
    yield from seeded_inputs(count - len(cases), seed)


# --- checking verdicts


def check_verdict(verdict: object) -> str | None:
    """The reject reason (None when accepted); fails unless the verdict is well-formed."""
    if isinstance(verdict, Reject):
        assert verdict.reason in REJECT_REASONS, verdict.reason
        assert verdict.error.strip(), "a reject must say why"
        record = verdict.record()
        assert orjson.loads(orjson.dumps(record))["reason"] == verdict.reason
        return verdict.reason
    assert getattr(verdict, "kind", None) in EVENT_TYPES, f"neither event nor reject: {verdict!r}"
    assert type(verdict.ts) is int, "event times are integer microseconds"
    return None


def reference_verdict(payload: bytes, max_bytes: int = MIB) -> str | None:
    """The reference's reason for one payload (None when valid)."""
    line = payload.removesuffix(b"\n")
    if max_bytes and len(line) > max_bytes:
        return "too_large"
    # jsonschema's messages repr the whole value: room for values nested ~1000 deep.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        return reference.classify(reference.decode(line))
    finally:
        sys.setrecursionlimit(limit)


def decode_all(
    inputs: Iterator[tuple[str, bytes]], max_bytes: int = MIB
) -> tuple[Counter[tuple[str, str]], list[str], list[tuple[str, bytes, str | None]]]:
    """Decode every input: verdict counts per strategy, crashes, and every verdict."""
    counts: Counter[tuple[str, str]] = Counter()
    crashes: list[str] = []
    verdicts: list[tuple[str, bytes, str | None]] = []
    for strategy, payload in inputs:
        try:
            reason = check_verdict(decode(payload, max_bytes))
        except Exception as exc:
            crashes.append(f"{strategy}: {type(exc).__name__}: {exc} on {payload[:160]!r}")
            continue
        counts[strategy, reason or "accepted"] += 1
        verdicts.append((strategy, payload, reason))
    return counts, crashes, verdicts


@pytest.fixture(scope="module")
def fuzzed() -> tuple[Counter[tuple[str, str]], list[str], list[tuple[str, bytes, str | None]]]:
    started = time.perf_counter()
    result = decode_all(hostile_inputs(FUZZ_COUNT))
    counts, crashes, _ = result
    by_verdict: Counter[str] = Counter()
    for (_strategy, verdict), n in counts.items():
        by_verdict[verdict] += n
    print(
        f"\n{FUZZ_COUNT:,} fuzzed inputs in {time.perf_counter() - started:.1f}s: "
        f"{dict(by_verdict)}, {len(crashes)} crashes"
    )
    return result


def test_100k_fuzzed_inputs_never_crash_and_each_is_accepted_or_dead_lettered(fuzzed):
    """Done when: 100 k fuzzed inputs, zero crashes, every one accounted for."""
    counts, crashes, verdicts = fuzzed
    assert not crashes, f"{len(crashes)} of {FUZZ_COUNT:,} inputs crashed decode:\n" + "\n".join(
        crashes[:15]
    )
    assert sum(counts.values()) == len(verdicts) == FUZZ_COUNT
    seen = {verdict for (_strategy, verdict) in counts}
    assert seen == {"accepted", *REJECT_REASONS} - {"too_large"}, seen
    for strategy in STRATEGIES:  # every strategy really ran
        assert sum(n for (s, _), n in counts.items() if s == strategy) > 1000, strategy


def test_fuzzed_verdicts_agree_with_the_reference(fuzzed):
    """A sample of the fuzzed inputs gets the same verdict from the independent reference."""
    _counts, _crashes, verdicts = fuzzed
    by_strategy: dict[str, list[tuple[bytes, str | None]]] = defaultdict(list)
    for strategy, payload, reason in verdicts:
        by_strategy[strategy].append((payload, reason))
    rng = random.Random(11)
    per_strategy = REFERENCE_SAMPLE // len(by_strategy)
    sample = [
        item
        for items in by_strategy.values()
        for item in rng.sample(items, min(per_strategy, len(items)))
    ]
    disagreements = [
        f"decode: {reason}, reference: {expected} for {payload[:160]!r}"
        for payload, reason in sample
        if reason != (expected := reference_verdict(payload))
    ]
    assert len(sample) >= REFERENCE_SAMPLE * 0.9
    assert not disagreements, f"{len(disagreements)} of {len(sample)}:\n" + "\n".join(
        disagreements[:15]
    )


BIG = {
    "qty 1e19": b'"type":"cart.added","session_id":"s","sku":"k","qty":1e19',
    "qty 2^31": b'"type":"inventory.picked","order_id":"o","fc":"F","sku":"k","qty":2147483648',
    "delta 2^64": b'"type":"inventory.adjusted","fc":"F","sku":"k","delta":18446744073709551616',
    "delta -2^31": b'"type":"inventory.adjusted","fc":"F","sku":"k","delta":-2147483648',
    "line qty 1e308": b'"type":"order.placed","order_id":"o","fc":"F","region":"r",'
    b'"lines":[{"sku":"k","qty":1e308}],"promised_ship_by":0,"promised_delivery_by":0',
    "results 2^63": b'"type":"search.performed","session_id":"s","query":"q",'
    b'"results":9223372036854775808,"latency_ms":1',
}


@pytest.mark.parametrize("case", BIG)
def test_units_beyond_max_units_are_invalid_and_other_integers_beyond_64_bits_are_doubles(case):
    """README: integers beyond 64 bits are read as doubles; a quantity or delta must
    lie within ±MAX_UNITS (sums of them stay exact in 64 bits), a count need not."""
    payload = b'{"event_id":"x","ts":0,' + BIG[case] + b"}"
    expected = None if case.startswith("results") else "invalid_event"
    assert reference_verdict(payload) == expected
    verdict = decode(payload, MIB)
    assert check_verdict(verdict) == expected
    if expected:
        assert "2147483647" in verdict.error  # type: ignore[attr-defined]


def test_units_at_max_units_are_valid():
    for fields in (b'"qty":2147483647', b'"qty":1'):
        payload = b'{"event_id":"x","ts":0,"type":"cart.added","session_id":"s","sku":"k",' + fields
        assert check_verdict(decode(payload + b"}", MIB)) is None
    delta = b'"type":"inventory.adjusted","fc":"F","sku":"k","delta":-2147483647'
    assert check_verdict(decode(b'{"event_id":"x","ts":0,' + delta + b"}", MIB)) is None


IGNORED_FIELD_CASES = {
    "invalid UTF-8 in an unknown key": (b'"\xffnote":1', "invalid_json"),
    "invalid UTF-8 in an unknown field": (b'"note":"\xff"', "invalid_json"),
    "a UTF-8 surrogate in an unknown field": (b'"note":["\xed\xa0\x80"]', "invalid_json"),
    "a truncated sequence, nested": (b'"note":{"a":"\xc3"}', "invalid_json"),
    "1e400 in an unknown field": (b'"note":1e400', None),
    "10^400 in an unknown field": (b'"note":1' + b"0" * 400, None),
    "1e400 in a field of the table": (b'"note":1,"sku":1e400', "invalid_json"),
    "NaN in an unknown field": (b'"note":NaN', "invalid_json"),
    "a lone surrogate escape in an unknown field": (b'"note":"\\ud800"', "invalid_json"),
    "2^64 in an unknown field": (b'"note":18446744073709551616', None),
    "valid UTF-8 and an escaped NUL": (b'"note":"\xc3\xa9\\u0000"', None),
}


@pytest.mark.parametrize("case", list(IGNORED_FIELD_CASES))
def test_unknown_fields_are_still_checked_as_utf8_json(case):
    """Unknown fields are ignored, whatever numbers they hold, but the payload must still
    be UTF-8 JSON (README): an event is not accepted around broken bytes."""
    member, expected = IGNORED_FIELD_CASES[case]
    payload = b'{"event_id":"e","type":"cart.added","ts":0,"session_id":"s","sku":"k","qty":1,%s}'
    payload %= member
    assert reference_verdict(payload) == expected
    assert check_verdict(decode(payload, MIB)) == expected


@pytest.mark.parametrize("depth", [10, 1000, 1023, 1024, 100_000])
@pytest.mark.parametrize("shape", ["array", "object"])
@pytest.mark.parametrize("field", ["extra", "ts", "sku"])
def test_deep_nesting_is_decided_without_recursion_errors(field, shape, depth):
    """Nesting deeper than 1024 (the event object included) is invalid_json; shallower
    nesting in a field is judged like any other wrong value, with a readable error."""
    opener, closer = (b"[", b"]") if shape == "array" else (b'{"a":', b"}")
    nested = opener * depth + b"1" + closer * depth
    event = with_literal(valid_event(random.Random(depth), 1, "cart.added"), field, nested)
    for payload in (nested, event):
        assert check_verdict(decode(payload, 0)) == reference_verdict(payload, 0)
    expected = "invalid_json" if depth + 1 > 1024 else None if field == "extra" else "invalid_event"
    assert check_verdict(decode(event, 0)) == expected


def _event_with(seed: int, kind: str, **extra: Any) -> bytes:
    return orjson.dumps({**valid_event(random.Random(seed), seed, kind), **extra})


# 10 MB payloads, built only when their test runs, with the verdict when there is no cap.
TEN_MB_PAYLOADS: dict[str, tuple[Callable[[], bytes], str | None]] = {
    "valid event, 10 MB extra string": (
        lambda: _event_with(1, "inventory.adjusted", x="y" * TEN_MB),
        None,
    ),
    "valid event, 10 MB of escaped NULs": (
        lambda: _event_with(2, "cart.added", x="\0" * TEN_MB),
        None,
    ),
    "random bytes": (lambda: random.Random(3).randbytes(TEN_MB), "invalid_json"),
    "open brackets": (lambda: b"[" * TEN_MB, "invalid_json"),
    # An unknown field: ignored, whatever its number (the event lacks its fields).
    "a 10 MB number": (
        lambda: b'{"type":"cart.added","n":' + b"9" * TEN_MB + b"}",
        "invalid_event",
    ),
    "a 10 MB string": (lambda: b'"' + b"a" * TEN_MB + b'"', "invalid_json"),
    "spaces": (lambda: b" " * TEN_MB, "invalid_json"),
}


@pytest.mark.parametrize("name", list(TEN_MB_PAYLOADS))
def test_10_mb_payloads_are_too_large_by_default_and_harmless_without_a_cap(name):
    """Over --max-event-bytes (1 MiB by default) is too_large before parsing; with no cap
    (max_bytes=0) a 10 MB payload is still decided, not a crash."""
    build, expected = TEN_MB_PAYLOADS[name]
    payload = build()
    assert len(payload) >= TEN_MB
    capped = decode(payload, MIB)
    assert check_verdict(capped) == "too_large"
    assert str(MIB) in capped.error
    started = time.perf_counter()
    assert check_verdict(decode(payload, 0)) == expected
    assert time.perf_counter() - started < 10


def test_a_line_without_end_is_read_in_bounded_memory_and_dead_lettered_by_its_start(tmp_path):
    """A line was read whole before its size was checked: /dev/zero or a binary file
    (no newline) filled the host's memory. A line over --max-event-bytes keeps its
    first that many bytes, and says how long it was; the lines around it are read
    as before. The replay's peak RSS stays far below the 200 MB line."""
    event = orjson.dumps(valid_event(random.Random(5), 5, "inventory.adjusted"))
    path, dlq, metrics = tmp_path / "in.jsonl", tmp_path / "dlq.jsonl", tmp_path / "m.prom"
    huge = 200 * 10**6
    with path.open("wb") as out:
        out.write(event + b"\n" + b"{" * 1000 + b"\n")
        for _ in range(huge // 10**6):
            out.write(b"x" * 10**6)
        out.write(b"\n" + event.replace(b'"event_id":"', b'"event_id":"2') + b"\n" + b"{" * 1001)
    peak, _took = replay_peak_rss(path, metrics, "--dlq", str(dlq), "--max-event-bytes", "1000")
    assert peak < 150 * 10**6, peak  # the line alone is 200 MB
    dead = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    assert [(d["line"], d["reason"], d.get("payload_bytes")) for d in dead] == [
        (2, "invalid_json", None),  # 1,000 bytes: decided on its merits
        (3, "too_large", huge),
        (5, "too_large", 1001),  # the last line, without its newline
    ]
    assert dead[1]["payload"] == "x" * 1000 and dead[1]["payload_truncated"] is True
    assert dead[1]["error"] == f"payload of {huge} bytes exceeds 1000"
    assert dead[2]["payload"] == "{" * 1000
    schema = Draft202012Validator(output_schemas()["dead-letter"])
    assert all(schema.is_valid(record) for record in dead)
    samples = parse_exposition(metrics.read_text())
    assert sum(samples["cockpit_events_total"].values()) == 2


def test_max_event_bytes_is_exact_and_ignores_the_trailing_newline():
    """A payload of exactly the cap is decided on its merits; one byte more is too_large."""
    event = orjson.dumps(valid_event(random.Random(4), 4, "inventory.adjusted"))
    limit = len(event)
    assert check_verdict(decode(event, limit)) is None
    assert check_verdict(decode(event + b"\n", limit)) is None
    assert check_verdict(decode(event + b" ", limit)) == "too_large"
    assert check_verdict(decode(b"x" * (limit + 1), limit)) == "too_large"
    assert check_verdict(decode(b"x" * limit, limit)) == "invalid_json"


BOM = "\ufeff".encode()


@pytest.mark.parametrize(
    ("where", "expected"),
    [("before the object", None), ("twice", "invalid_json"), ("after the object", "invalid_json")],
)
def test_a_byte_order_mark_is_ignored_only_at_the_start(where, expected):
    """RFC 8259 lets a parser ignore a leading byte order mark (files saved on Windows
    start with one); anywhere else it is not JSON."""
    event = orjson.dumps(valid_event(random.Random(5), 5, "inventory.adjusted"))
    payload = {
        "before the object": BOM + event,
        "twice": BOM + BOM + event,
        "after the object": event + BOM,
    }[where]
    assert reference_verdict(payload) == expected
    verdict = decode(payload, MIB)
    assert check_verdict(verdict) == expected
    if expected is None:
        assert verdict == decode(event, MIB)
    else:
        assert verdict.payload == payload  # the dead letter keeps what came


# --- hypothesis: shrinking searches over the same properties


def json_text(value: Any) -> bytes:
    """JSON as Python writes it: big integers in full, NaN and Infinity as bare words."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from([10**19, 2**64, -(2**63) - 1, 10**400, 1e308]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


def assert_agrees(payload: bytes, max_bytes: int = MIB) -> None:
    verdict = decode(payload, max_bytes)
    assert check_verdict(verdict) == reference_verdict(payload, max_bytes), getattr(
        verdict, "error", verdict
    )


@settings(FUZZ_SETTINGS, max_examples=3000)
@given(st.binary(max_size=300))
def test_any_bytes_are_decided_like_the_reference(payload):
    assert_agrees(payload)


@settings(FUZZ_SETTINGS, max_examples=500)
@given(JSON_VALUES)
def test_any_json_value_is_decided_like_the_reference(value):
    assert_agrees(json_text(value))


@settings(FUZZ_SETTINGS, max_examples=1500)
@given(
    st.sampled_from(KINDS),
    st.integers(0, 2**32),
    st.data(),
)
def test_an_event_with_one_field_replaced_is_decided_like_the_reference(kind, seed, data):
    event = valid_event(random.Random(seed), seed, kind)
    name = data.draw(st.sampled_from([*event, "extra"]), label="field")
    how = data.draw(st.sampled_from(["value", "literal", "drop"]), label="how")
    if how == "value":
        payload = json_text({**event, name: data.draw(JSON_VALUES, label="value")})
    elif how == "literal":
        literal = data.draw(st.sampled_from(HUGE_NUMBERS + NOT_NUMBERS + WRONG_VALUES))
        payload = with_literal(event, name, literal)
    else:
        payload = orjson.dumps({k: v for k, v in event.items() if k != name})
    assert_agrees(payload)


@settings(FUZZ_SETTINGS, max_examples=1000)
@given(st.integers(0, 2**32), st.binary(min_size=1, max_size=8), st.integers(0, 10_000))
def test_an_event_with_bytes_spliced_in_is_decided_like_the_reference(seed, junk, where):
    data = orjson.dumps(valid_event(random.Random(seed), seed))
    at = where % len(data)
    assert_agrees(data[:at] + junk + data[at:])


@settings(FUZZ_SETTINGS, max_examples=1000)
@given(
    st.integers(0, 2**32),
    st.sampled_from(["2026-11-20T23:59:", "2028-02-29T00:00:", "2026-02-28T12:30:"]),
    st.sampled_from(["00", "07", "59", "60", "99", "5", "5.", "-1", "0x", ""])
    | st.text("0123456789:.Z+-x ", max_size=3),
    st.sampled_from(["Z", ".5Z", ".250Z", ".123456Z", ".1234567Z", "", ".Z", "z", "Z "]),
)
def test_times_built_from_cached_parts_are_decided_like_the_reference(
    seed, minute, second, fraction
):
    """Parsing reuses the minute and fraction of times parsed before: any second and
    suffix put between parts it has seen are still judged (and valued) exactly."""
    event = valid_event(random.Random(seed), seed)
    for warm in (f"{minute}00Z", f"{minute}00{fraction}"):
        decode(orjson.dumps({**event, "ts": warm}))
    stamp = f"{minute}{second}{fraction}"
    payload = orjson.dumps({**event, "ts": stamp})
    assert_agrees(payload)
    verdict = decode(payload)
    if type(verdict) is not Reject:
        assert verdict.ts == reference.to_us(stamp)


# --- accounting through the engine and the replay command


def test_every_fuzzed_input_is_counted_exactly_once_by_the_engine(fuzzed):
    """accepted + duplicate + late + rejected == inputs, with the DLQ holding every reject."""
    _counts, _crashes, verdicts = fuzzed
    rng = random.Random(13)
    # Valid events in ts order (accepted), some of them again (duplicates), the fuzzed
    # inputs, then events far behind the watermark (late).
    in_order = [
        orjson.dumps({**valid_event(rng, FUZZ_COUNT + i), "ts": START_MS + 1000 * i})
        for i in range(5000)
    ]
    fuzz = [payload for _strategy, payload, _reason in verdicts]
    random.Random(17).shuffle(fuzz)
    stale = valid_event(rng, 10 * FUZZ_COUNT, "inventory.adjusted")
    late = [orjson.dumps({**stale, "event_id": f"late-{i}", "ts": 0}) for i in range(500)]
    lines = in_order + in_order[:700] + fuzz + late
    items = [decode(line, MIB) for line in lines]

    engine = Shard("0", EngineConfig(), LabelCap(1000), FAMILIES)
    for start in range(0, len(items), 1000):
        engine.process("input", items[start : start + 1000])
    engine.finish()
    series = engine.ledger.series
    totals = {
        name: sum(series[f"cockpit_events_{name}_total"].values())
        for name in ("rejected", "duplicate", "late")
    }
    accepted = sum(series["cockpit_events_total"].values())
    print(f"\n{len(items):,} inputs through the engine: accepted {accepted:,}, {totals}")
    assert accepted + sum(totals.values()) == len(items)
    assert accepted >= 5000 and totals["duplicate"] >= 700 and totals["late"] >= 500, totals
    rejects = Counter(item.reason for item in items if isinstance(item, Reject))
    assert {k: v for k, v in series["cockpit_events_rejected_total"].items() if v} == rejects
    dead = [output.record for output in engine.drain() if type(output) is DeadLetter]
    assert len(dead) == totals["rejected"]
    orjson.dumps(dead)  # every dead letter is serialisable


def test_replay_accounts_for_every_fuzzed_line_and_dead_letters_the_rest(tmp_path):
    """Every line of a hostile file is counted or in the DLQ with its line number and the
    reason the reference gives; a 5 KB line is too_large under --max-event-bytes 1000."""
    rng = random.Random(23)
    hostile = list(seeded_inputs(2500, seed=29)) + rng.sample(list(wrong_types()), 500)
    lines: list[bytes] = []
    for number, (_strategy, payload) in enumerate(hostile):
        lines.append(payload.replace(b"\n", b" "))  # one input per line
        if number % 4 == 0:
            lines.append(orjson.dumps(valid_event(rng, 10**6 + number)))
    big_line = _event_with(2 * 10**6, "inventory.adjusted", note="n" * 5000)
    repeated = _event_with(3 * 10**6, "inventory.adjusted")
    middle = len(lines) // 2
    lines[middle:middle] = [big_line, b"", repeated, repeated]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))

    expected = reference.run(lines, max_event_bytes=1000)
    metrics, dlq = tmp_path / "metrics.prom", tmp_path / "dlq.jsonl"
    result = subprocess.run(
        [
            *REPLAY,
            str(path),
            *("--max-event-bytes", "1000", "--metrics-file", str(metrics), "--dlq", str(dlq)),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]

    samples = parse_exposition(metrics.read_text())
    counted = sum(
        sum(samples.get(f"cockpit_events{name}_total", {}).values())
        for name in ("", "_duplicate", "_late", "_rejected")
    )
    dead = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    assert counted == len(lines)
    assert len(dead) == sum(samples["cockpit_events_rejected_total"].values())
    assert sorted((d["line"], d["reason"]) for d in dead) == expected.dead_letters
    assert all(d["error"] and d["file"] == str(path) for d in dead)
    assert dead_at(dead, middle + 1)["reason"] == "too_large"  # the 5 KB line
    assert dead_at(dead, middle + 2)["reason"] == "invalid_json"  # the empty line
    counters = [
        "cockpit_events_total",
        "cockpit_events_duplicate_total",
        "cockpit_events_late_total",
        "cockpit_events_rejected_total",
    ]
    assert not reference.compare(expected.metrics, samples, metrics=counters)
    assert sum(samples["cockpit_events_duplicate_total"].values()) >= 1


def dead_at(dead: list[dict[str, Any]], line: int) -> dict[str, Any]:
    """The dead letter of one line."""
    [record] = [d for d in dead if d["line"] == line]
    return record


# --- label flood


ADJUSTMENT = (
    b'{"event_id":"a%d","type":"inventory.adjusted","ts":%d,"fc":"FC-%d","sku":"S%d","delta":1}\n'
)


def write_adjustments(path: Path, count: int, distinct_fc: int) -> None:
    """`count` inventory.adjusted events over ~3 h of event time, fc cycling
    `distinct_fc`, each of a new item (fc, sku)."""
    with path.open("wb") as out:
        for start in range(0, count, 100_000):
            out.write(
                b"".join(
                    ADJUSTMENT % (i, START_MS + 10 * i, i % distinct_fc, i // distinct_fc)
                    for i in range(start, min(start + 100_000, count))
                )
            )


def replay_peak_rss(path: Path, metrics: Path, *extra: str) -> tuple[int, float]:
    """`opscockpit replay` as a measured child (tests/bench/child.py): its peak RSS,
    and its duration. Not ru_maxrss: a child's is at least this process's RSS when
    it spawned it, so late in a run both runs measured pytest, at ~585 MiB."""
    started = time.perf_counter()
    result = subprocess.run(
        [*MEASURED_REPLAY, str(path), "--metrics-file", str(metrics), *extra],
        capture_output=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr[-3000:]
    peak = re.search(rf"^{PEAK_MARK} (\d+)$", stderr, re.MULTILINE)
    assert peak is not None, stderr[-3000:]
    return int(peak[1]) * 1024, time.perf_counter() - started


FLOOD_EVENTS = 1_000_000
LABEL_CAP = 1000
# What a distinct fc may cost beyond its items: their table, the fc's place
# (lead time, label cells), its entries in the family's dicts (~370 B measured).
FC_BYTES = 512


def test_a_flood_of_a_million_distinct_fc_keeps_series_at_the_cap_and_memory_bounded(tmp_path):
    """1 M distinct fc values fold into `other` past the cap (999,000 overflows). The
    cap bounds series, not state: each event's (fc, sku) is an item inventory health
    tracks (§3.2), as are those of a run of as many items at 1,000 fc, and the flood
    costs no more than that run and FC_BYTES per distinct fc."""
    flood, few = tmp_path / "flood.jsonl", tmp_path / "few.jsonl"
    write_adjustments(flood, FLOOD_EVENTS, FLOOD_EVENTS)
    write_adjustments(few, FLOOD_EVENTS, LABEL_CAP)
    cap = ("--max-label-values", str(LABEL_CAP))
    few_rss, few_s = replay_peak_rss(few, tmp_path / "few.prom", *cap)
    flood_rss, flood_s = replay_peak_rss(flood, tmp_path / "flood.prom", *cap)
    print(
        f"\npeak RSS, {FLOOD_EVENTS:,} events, as many items: {LABEL_CAP:,} fc "
        f"{few_rss / MIB:.0f} MiB ({few_s:.1f}s), {FLOOD_EVENTS:,} fc {flood_rss / MIB:.0f} MiB "
        f"({flood_s:.1f}s): {(flood_rss - few_rss) / FLOOD_EVENTS:.0f} B per distinct fc"
    )

    samples = parse_exposition((tmp_path / "flood.prom").read_text())
    assert samples["cockpit_label_overflow_total"][(("label", "fc"),)] == FLOOD_EVENTS - LABEL_CAP
    assert samples["cockpit_events_total"][(("type", "inventory.adjusted"),)] == FLOOD_EVENTS
    fc_metrics = 0
    for name, series in samples.items():
        values = {dict(key)["fc"] for key in series if "fc" in dict(key)}
        if values:
            fc_metrics += 1
            assert len(values - {"other"}) <= LABEL_CAP, name
            assert len(values) <= LABEL_CAP + 1, name
    on_hand = samples["cockpit_units_on_hand"]
    assert on_hand[(("fc", "other"),)] == FLOOD_EVENTS - LABEL_CAP
    assert sum(on_hand.values()) == FLOOD_EVENTS
    assert fc_metrics > 0
    assert flood_rss <= few_rss + FLOOD_EVENTS * FC_BYTES


# --- coverage-guided fuzzing with atheris

HARNESS = Path(__file__).with_name("fuzz_decode.py")
ATHERIS_RUNS = 100_000


def test_atheris_fuzzes_100k_inputs_without_a_crash(tmp_path):
    """The libFuzzer harness (tests/fuzz_decode.py) runs 100 k inputs, seeded, crash-free."""
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    subprocess.run([sys.executable, str(HARNESS), "--prepare", str(tmp_path)], check=True)
    result = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-runs={ATHERIS_RUNS}",
            "-seed=1",
            "-max_len=8192",
            "-timeout=10",
            f"-dict={tmp_path / 'json.dict'}",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path / "corpus"),
        ],
        capture_output=True,
        timeout=300,
        check=False,
    )
    log = result.stderr.decode(errors="replace")
    crashes = [path.read_bytes()[:300] for path in tmp_path.glob("crash-*")]
    assert result.returncode == 0, f"crashing inputs {crashes}:\n{log[-4000:]}"
    assert f"Done {ATHERIS_RUNS} runs" in log, log[-2000:]
