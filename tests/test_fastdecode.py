"""The compiled decoding path (flows/_fastdecode.c) gives the Python path's verdicts."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flows.decode as decoding
from flows import timeutil
from flows.decode import Reject, decode_all
from flows.timeutil import MAX_EPOCH_MS, parse_time
from tests.test_hostile import hostile_inputs, valid_event

compiled = pytest.importorskip(
    "flows._fastdecode", reason="flows._fastdecode was not compiled (no C compiler at install)"
)


def python_path(payloads: list[bytes], max_bytes: int = 0) -> list[Any]:
    return [decoding._decode_one(payload, max_bytes) for payload in payloads]


def same(compiled_item: Any, python_item: Any) -> bool:
    if type(python_item) is Reject:
        return type(compiled_item) is Reject and (compiled_item.reason, compiled_item.error) == (
            python_item.reason,
            python_item.error,
        )
    return type(compiled_item) is type(python_item) and compiled_item == python_item


def assert_same(compiled_items: list[Any], python_items: list[Any]) -> None:
    assert len(compiled_items) == len(python_items)
    for position, (a, b) in enumerate(zip(compiled_items, python_items, strict=True)):
        assert same(a, b), (position, a, b)


def taken_by_compiled(payload: bytes, max_bytes: int = 0) -> bool:
    """Did the compiled code decode this payload itself (not leave it to Python)?"""
    _items, refused = compiled.decode_batch(
        [payload], max_bytes, decoding._fast, decoding._TIME_FIELDS, decoding._RETRY
    )
    return not refused


def page_view(ts: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": "e1",
            "type": "page.viewed",
            "ts": ts,
            "session_id": "s",
            "page": "home",
            "load_ms": 12.5,
        }
    )


def order(ts: object, ship_by: object, deliver_by: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": "o1",
            "type": "order.placed",
            "ts": ts,
            "order_id": "o1",
            "fc": "FC1",
            "region": "north",
            "lines": [{"sku": "k", "qty": 2}],
            "promised_ship_by": ship_by,
            "promised_delivery_by": deliver_by,
        }
    )


@pytest.mark.parametrize(
    ("ts", "fast"),
    [
        ("2026-11-21T10:15:00Z", True),
        ("2026-11-21T10:15:00.5Z", True),
        ("2026-11-21T10:15:00.123456Z", True),
        ("2024-02-29T23:59:59.999999Z", True),
        ("2000-02-29T00:00:00Z", True),
        ("1969-12-31T23:59:59.5Z", True),
        ("0001-01-02T00:00:00Z", True),
        ("9999-12-30T23:59:59.999999Z", True),
        ("2026-11-21T10:15:00+00:00", True),
        ("2026-11-21T10:15:00-00:00", True),
        ("2026-11-21T10:15:00.25+05:30", True),
        ("2026-11-21T10:15:00.123456-23:59", True),
        ("0001-01-02T00:59:59+00:59", True),
        ("9999-12-30T00:00:59-23:59", True),
        (0, True),
        (MAX_EPOCH_MS, True),
        # Left to Python, which accepts or rejects them.
        ("2026-11-21T10:15:00+24:00", False),
        ("2026-11-21T10:15:00+01:60", False),
        ("2026-11-21T10:15:00+0100", False),
        ("2026-11-21T10:15:00+01", False),
        ("2026-11-21T10:15:00 01:00", False),
        ("2026-11-21T10:15:00+01:00Z", False),
        ("2026-11-21T10:15:00.+01:00", False),
        ("2026-11-21T10:15:00.1234567+01:00", False),
        ("2023-02-29T00:00:00+01:00", False),
        ("2026-11-21T10:15:00.1234567Z", False),
        ("2026-11-21T10:15:00.Z", False),
        ("2023-02-29T00:00:00Z", False),
        ("1900-02-29T00:00:00Z", False),
        ("2026-04-31T00:00:00Z", False),
        ("0000-01-01T00:00:00Z", False),
        # Valid RFC 3339, outside the event times (a day holding one would end in
        # year 10000, or begin in year 0): Python refuses them.
        ("0001-01-01T23:59:59.999999Z", False),
        ("0001-01-02T00:00:00+00:01", False),
        ("9999-12-31T00:00:00Z", False),
        ("9999-12-30T00:01:00-23:59", False),
        ("9999-12-31T23:59:59.999999Z", False),
        ("2026-11-21T24:00:00Z", False),
        ("2026-11-21T10:60:00Z", False),
        ("2026-11-21T10:15:60Z", False),
        ("2026-13-01T00:00:00Z", False),
        ("2026-00-01T00:00:00Z", False),
        ("2026-11-00T00:00:00Z", False),
        ("2026-11-21t10:15:00Z", False),
        ("2026-11-21T10:15:00z", False),
        ("2026-11-21 10:15:00Z", False),
        ("2026-11-21T10:15Z", False),
        ("+2026-11-21T10:15:00Z", False),
        ("2026-11-21T10:15:0aZ", False),
        ("2026-11-21T10:15:00.12a4Z", False),
        (MAX_EPOCH_MS + 1, False),
        (-1, False),
        (2**63, False),
        (1.0, False),
        (True, False),
        (None, False),
    ],
)
def test_event_times_the_compiled_code_takes_and_leaves(ts: object, fast: bool) -> None:
    payload = page_view(ts)
    assert taken_by_compiled(payload) is fast
    (item,), _rejects = decode_all([payload])
    assert same(item, python_path([payload])[0])


def test_every_time_field_of_an_event_is_converted() -> None:
    payload = order("2026-11-21T10:15:00Z", "2026-11-22T00:00:00.250Z", 1795392000000)
    assert taken_by_compiled(payload)
    (event,), _ = decode_all([payload])
    assert (event.ts, event.promised_ship_by, event.promised_delivery_by) == (
        1795256100000000,
        1795305600250000,
        1795392000000000,
    )
    # One time field the compiled code cannot read sends the whole event to Python.
    mixed = order("2026-11-21T10:15:00Z", "2026-11-22T01:00:00.0000000+01:00", 1795392000000)
    assert not taken_by_compiled(mixed)
    assert decode_all([mixed])[0][0].promised_ship_by == 1795305600000000


@settings(max_examples=400, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30, 23, 59, 59, 999999)),
    st.integers(min_value=0, max_value=6),
)
def test_utc_texts_give_the_python_parsers_microseconds(moment: datetime, digits: int) -> None:
    moment = moment.replace(
        microsecond=moment.microsecond // 10 ** (6 - digits) * 10 ** (6 - digits)
    )
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    payload = page_view(text + "Z")
    assert taken_by_compiled(payload)
    (event,), _ = decode_all([payload])
    expected = (moment.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )
    assert event.ts == expected == python_path([payload])[0].ts


@settings(max_examples=400, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30, 23, 59, 59, 999999)),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
    st.integers(min_value=0, max_value=6),
)
def test_texts_with_an_offset_give_the_python_parsers_microseconds(
    moment: datetime, offset_minutes: int, digits: int
) -> None:
    moment = moment.replace(
        microsecond=moment.microsecond // 10 ** (6 - digits) * 10 ** (6 - digits)
    )
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    hours, minutes = divmod(abs(offset_minutes), 60)
    text += f"{'-' if offset_minutes < 0 else '+'}{hours:02d}:{minutes:02d}"
    payload = page_view(text)
    assert taken_by_compiled(payload)
    (event,), _ = decode_all([payload])
    local = moment.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    expected = (local - timedelta(minutes=offset_minutes)) // timedelta(microseconds=1)
    assert event.ts == expected == python_path([payload])[0].ts


@pytest.mark.parametrize(
    "text",
    ["0193-09-25T00:51:00.999999Z", "1600-01-01T00:00:59.999999Z", "2199-12-31T23:59:59.999999Z"],
)
def test_the_python_parser_is_exact_far_from_1970(text: str) -> None:
    """It once read these a second late (a float timestamp) and cached the error."""
    timeutil._MINUTES.clear()
    timeutil._FRACTIONS.clear()
    moment = datetime.fromisoformat(text)
    expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert parse_time(text) == expected  # parsed in full
    assert parse_time(text) == expected  # from the caches that parse filled
    assert taken_by_compiled(page_view(text))
    assert decode_all([page_view(text)])[0][0].ts == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=64) | st.sampled_from([page_view(1), b"{}", b"[1]"]), max_size=8)
)
def test_any_bytes_get_the_python_verdict_in_order(payloads: list[bytes]) -> None:
    items, rejects = decode_all(payloads)
    assert_same(items, python_path(payloads))
    assert rejects == [i for i, item in enumerate(items) if type(item) is Reject]


def test_20k_hostile_inputs_get_the_python_verdict_with_and_without_a_size_limit() -> None:
    payloads = [payload for _strategy, payload in hostile_inputs(20_000, seed=11)]
    for max_bytes in (0, 120):
        for start in range(0, len(payloads), 1000):
            batch = payloads[start : start + 1000]
            items, _ = decode_all(batch, max_bytes)
            assert_same(items, python_path(batch, max_bytes))


def test_a_payload_over_the_limit_only_by_its_newline_is_decoded() -> None:
    payload = page_view(0)
    (item,), rejects = decode_all([payload + b"\n"], len(payload))
    assert not rejects and item.ts == 0
    (item,), rejects = decode_all([payload + b"\n"], len(payload) - 1)
    assert rejects == [0] and item.reason == "too_large"


def test_without_the_compiled_module_the_verdicts_are_the_same(monkeypatch) -> None:
    payloads = [payload for _strategy, payload in hostile_inputs(3000, seed=12)]
    expected = decode_all(payloads)
    monkeypatch.setattr(decoding, "_compiled", None)
    items, rejects = decode_all(payloads)
    assert rejects == expected[1]
    assert_same(items, expected[0])


def test_errors_other_than_a_refusal_propagate_and_nothing_leaks() -> None:
    def broken(payload: bytes) -> object:
        raise MemoryError("out of memory")

    with pytest.raises(MemoryError):
        compiled.decode_batch([b"{}"], 0, broken, {}, decoding._RETRY)
    payload = page_view("2026-11-21T10:15:00Z")
    before = sys.getrefcount(payload)
    items, refused = compiled.decode_batch(
        [payload] * 100, 0, decoding._fast, decoding._TIME_FIELDS, decoding._RETRY
    )
    held = sys.getrefcount(items[0])  # outside `assert`, which keeps its operands
    assert not refused and held == 2  # the list's and the argument's
    del items
    after = sys.getrefcount(payload)
    assert after == before


def test_event_fields_read_from_their_slots_as_the_generic_lookup_reads_them() -> None:
    """`fast_fields`: every event class (and Line) reads its fields from their slots,
    and every read gives what the generic lookup gives (other names too)."""
    classes = (*decoding.STRUCTS.values(), decoding.Line)
    assert list(classes) == decoding.FAST_FIELDS
    assert compiled.fast_fields(classes) == list(classes)  # a second call changes nothing
    generic = object.__getattribute__
    rng = random.Random(3)
    for number, kind in enumerate(sorted(decoding.STRUCTS) * 5):
        event = decoding.decode(orjson.dumps(valid_event(rng, number, kind)))
        assert type(event) is decoding.STRUCTS[kind]
        for reader in (event, *getattr(event, "lines", ())):
            for name in (*type(reader).__struct_fields__, "__struct_fields__"):
                assert getattr(reader, name) is generic(reader, name), (kind, name)
            with pytest.raises(AttributeError, match="no attribute 'missing'"):
                _ = reader.missing
        assert event.kind is generic(event, "kind") == kind  # a class attribute
        made = "".join(["event", "_id"])  # not interned: read the generic way
        assert getattr(event, made) is generic(event, "event_id")


def test_fast_fields_leaves_other_classes_as_they_were() -> None:
    class Plain:
        __slots__ = ("a",)

    class WithGetattr(msgspec.Struct):
        a: int

        def __getattr__(self, name: str) -> int:
            return 7

    assert compiled.fast_fields((Plain, WithGetattr, int)) == []
    assert WithGetattr(1).a == 1 and WithGetattr(1).b == 7
    with pytest.raises(TypeError, match="not a class"):
        compiled.fast_fields((Plain(),))
