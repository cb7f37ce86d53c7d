"""Raw message bytes to a validated event, or a reject with a reason (contract §2).

Errors are data: `decode` never raises for bad input. An accepted event is a
msgspec Struct of its type (one class per row of the event table, `kind` naming
the type), with every time in integer microseconds.

Two paths give one verdict. The fast path decodes and type-checks in one C pass
(msgspec) with bounds at least as strict as the contract's, so it only accepts
valid events. Anything it refuses goes to the full check (orjson and the table),
which is the authority: it accepts what JSON Schema accepts (`2.0` as an
integer, say) and explains every reject. The fast path's common case (RFC 3339
or epoch-millisecond times) runs compiled for a whole batch (`_fastdecode.c`).
"""

from __future__ import annotations

import base64
import json
import reprlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec
import orjson

from flows.events import (
    COUNT,
    DELIVERY_STATUSES,
    EVENT_TYPES,
    INT,
    LINES,
    MAX_UNITS,
    NUMBER,
    QTY,
    STATUS,
    STRING,
    TIME,
    EventType,
)
from flows.timeutil import TimeError, integral, parse_time

INVALID_JSON = "invalid_json"
UNKNOWN_TYPE = "unknown_type"
INVALID_EVENT = "invalid_event"
TOO_LARGE = "too_large"
REJECT_REASONS = (INVALID_JSON, UNKNOWN_TYPE, INVALID_EVENT, TOO_LARGE)

Event = Any  # a msgspec Struct of one of the generated event classes
MAX_DEPTH = 1024  # orjson's nesting limit
BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark
Fields = dict[str, Any]


@dataclass(slots=True)
class Reject:
    """An input that cannot be processed, kept whole for the dead-letter output."""

    reason: str
    error: str
    payload: bytes
    origin: dict[str, Any] = field(default_factory=dict)
    whole: int | None = None  # the payload's size, where `payload` is only its start
    ts: ClassVar[int] = -(1 << 62)  # earlier than any event: rejects never move W

    def record(self) -> dict[str, Any]:
        """The dead-letter record: reason, error, payload as text or base64, origin."""
        try:
            text, encoding = self.payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.payload).decode("ascii"), "base64"
        cut = {} if self.whole is None else {"payload_truncated": True, "payload_bytes": self.whole}
        return {
            "reason": self.reason,
            "error": self.error,
            "payload": text,
            "payload_encoding": encoding,
            **cut,
            **self.origin,
        }


def truncated(record: dict[str, Any], size: int) -> dict[str, Any]:
    """A dead-letter record in at most `size` bytes of JSON: the longest start of its
    payload that fits, saying so and how many bytes the whole payload had. For a
    Kafka message, which has a size limit; a file keeps every record whole (a line
    over --max-event-bytes keeps only its start: `sources.LineReader`)."""
    payload: str = record["payload"]
    binary = record["payload_encoding"] == "base64"
    whole = record.get("payload_bytes")  # a replayed line's, cut already
    if whole is None:
        whole = len(base64.b64decode(payload)) if binary else len(payload.encode())
    cut = {**record, "payload": "", "payload_truncated": True, "payload_bytes": whole}
    room = size - len(orjson.dumps(cut))
    low, high = 0, len(payload)  # the longest prefix whose JSON string fits the room
    while low < high:
        middle = (low + high + 1) // 2
        if len(orjson.dumps(payload[:middle])) - 2 <= room:
            low = middle
        else:
            high = middle - 1
    cut["payload"] = payload[: low - low % 4 if binary else low]  # whole base64 groups
    return cut


def _describe(value: object) -> str:
    """A short rendering of a bad value for an error message (safe for any depth)."""
    return reprlib.repr(value)


def _check(obj: Fields, name: str, kind: str) -> str | None:
    """Check (and normalise in place) one field; return an error or None."""
    value = obj.get(name)
    if value is None:
        return f"missing field {name!r}" if name not in obj else f"field {name!r} is null"
    if kind is STRING:
        if type(value) is str:
            return None
        return f"field {name!r} must be a string, got {_describe(value)}"
    if kind is TIME:
        try:
            obj[name] = parse_time(value)
        except TimeError as exc:
            return f"field {name!r}: {exc}"
        return None
    if kind is QTY or kind is COUNT or kind is INT:
        number = integral(value)
        if number is None:
            return f"field {name!r} must be an integer, got {_describe(value)}"
        low, high = _BOUNDS[kind]
        if number < low:
            bound = "> 0" if kind is QTY else f">= {low}"
        elif high is not None and number > high:
            bound = f"<= {high}"
        else:
            obj[name] = number
            return None
        return f"field {name!r} must be an integer {bound}, got {number}"
    if kind is NUMBER:
        if (type(value) is int or type(value) is float) and value >= 0:
            return None
        return f"field {name!r} must be a number >= 0, got {_describe(value)}"
    if kind is STATUS:
        if value in DELIVERY_STATUSES and type(value) is str:
            return None
        return (
            f"field {name!r} must be one of {', '.join(DELIVERY_STATUSES)}, got {_describe(value)}"
        )
    if kind is LINES:
        return _check_lines(obj, name, value)
    raise AssertionError(f"unknown field kind {kind}")


# The integers each kind allows (None: no bound but the 64 bits read exactly).
_BOUNDS: dict[str, tuple[int, int | None]] = {
    QTY: (1, MAX_UNITS),
    INT: (-MAX_UNITS, MAX_UNITS),
    COUNT: (0, None),
}


def _check_lines(obj: Fields, name: str, value: object) -> str | None:
    if type(value) is not list or not value:
        return f"field {name!r} must be a non-empty list of {{sku, qty}}"
    for index, line in enumerate(value):
        if type(line) is not dict:
            return f"{name}[{index}] must be an object with sku and qty"
        for part, kind in (("sku", STRING), ("qty", QTY)):
            error = _check(line, part, kind)
            if error is not None:
                return f"{name}[{index}]: {error}"
    obj[name] = value
    return None


def _validator(spec: EventType) -> Callable[[Fields], str | None]:
    """A validator for one type: strings, times, numbers, then the rest, with fast
    paths for valid values; `_check` explains the first failure."""
    required = (("event_id", STRING), ("ts", TIME), *spec.required)
    strings = tuple(name for name, kind in required if kind is STRING)
    times = tuple(name for name, kind in required if kind is TIME)
    numbers = tuple((name, kind) for name, kind in required if kind in (QTY, COUNT, INT, NUMBER))
    others = tuple((name, kind) for name, kind in required if kind in (STATUS, LINES))
    optional = tuple(name for name, _kind in spec.optional)

    def validate(obj: Fields) -> str | None:
        get = obj.get
        for name in strings:
            if type(get(name)) is not str:
                return _check(obj, name, STRING)
        for name in times:
            try:
                obj[name] = parse_time(get(name))
            except TimeError:
                return _check(obj, name, TIME)
        for name, kind in numbers:
            value = get(name)
            if type(value) is int and 0 < value <= MAX_UNITS:
                continue  # the common valid case
            error = _check(obj, name, kind)
            if error is not None:
                return error
        for name, kind in others:
            error = _check(obj, name, kind)
            if error is not None:
                return error
        for name in optional:
            value = get(name)
            if value is not None and type(value) is not str:
                return f"optional field {name!r} must be a string or null, got {_describe(value)}"
        return None

    return validate


_VALIDATORS = {name: _validator(spec) for name, spec in EVENT_TYPES.items()}
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

# --- the fast path: one msgspec Struct per event type, bounded to what the table allows

INT64_MAX = 2**63 - 1  # what msgspec reads as an int


def _bounds(kind: str) -> msgspec.Meta:
    """The fast path's bounds of an integer kind: the `_BOUNDS` the full check has."""
    low, high = _BOUNDS[kind]
    return msgspec.Meta(ge=low, le=INT64_MAX if high is None else high)


_Qty = Annotated[int, _bounds(QTY)]


class Line(msgspec.Struct, gc=False):
    """One line of an order."""

    sku: str
    qty: _Qty


_FIELD_TYPES: dict[str, Any] = {
    STRING: str,
    TIME: Union[str, int],  # parsed by parse_time afterwards  # noqa: UP007
    QTY: _Qty,
    INT: Annotated[int, _bounds(INT)],
    COUNT: Annotated[int, _bounds(COUNT)],
    NUMBER: Annotated[float, msgspec.Meta(ge=0)],
    STATUS: Literal[DELIVERY_STATUSES],
    LINES: Annotated[list[Line], msgspec.Meta(min_length=1)],
}


def _struct(spec: EventType) -> type[msgspec.Struct]:
    """The Struct of one event type, registered in this module so it pickles."""
    fields: list[Any] = [("event_id", str), ("ts", _FIELD_TYPES[TIME])]
    fields += [(name, _FIELD_TYPES[kind]) for name, kind in spec.required]
    fields += [(name, Union[str, None], None) for name, _kind in spec.optional]  # noqa: UP007
    name = "".join(part.title() for part in spec.name.split("."))
    cls = msgspec.defstruct(
        name,
        fields,
        tag_field="type",
        tag=spec.name,
        module=__name__,
        gc=False,  # strings, numbers and lines: never in a cycle, so never tracked
        namespace={"kind": spec.name},
    )
    setattr(sys.modules[__name__], name, cls)
    return cls


STRUCTS: dict[str, type[msgspec.Struct]] = {
    name: _struct(spec) for name, spec in EVENT_TYPES.items()
}
# Time fields other than `ts`, per class, to convert after the fast decode.
_MORE_TIMES = {
    STRUCTS[name]: tuple(field for field, kind in spec.required if kind is TIME)
    for name, spec in EVENT_TYPES.items()
}
_fast = msgspec.json.Decoder(Union[tuple(STRUCTS.values())]).decode  # noqa: UP007
# What the fast decode refuses, for the full check to explain.
_RETRY = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_FAST_FAILURES = (*_RETRY, TimeError)


# Time fields per class, `ts` first, for the compiled path to convert.
_TIME_FIELDS = {cls: ("ts", *more) for cls, more in _MORE_TIMES.items()}
_compiled: Callable[..., tuple[list[Any], list[int]]] | None
try:
    # Optional: built by `pip install` where a C compiler is found (see pyproject).
    from flows._fastdecode import decode_batch as _compiled
    from flows._fastdecode import fast_fields
except ImportError:  # no compiler at install time: the same verdicts, slower
    _compiled = None
else:
    # Families read event fields by name: from the slot, not the generic lookup.
    FAST_FIELDS = fast_fields((*STRUCTS.values(), Line))


def decode_all(payloads: list[bytes], max_bytes: int = 0) -> tuple[list[Event | Reject], list[int]]:
    """Decode a batch: its events and rejects in order, and the positions of the rejects.

    The common case (ASCII, msgspec accepts it, RFC 3339 times with at most six
    fraction digits, or epoch milliseconds) runs compiled, without a Python step
    per event: decoding was half the cost of a replay. The compiled code leaves
    every other payload to `_decode_one`, which gives the verdict, so both paths
    give the same result (a property test checks it).
    """
    if _compiled is None:
        items: list[Event | Reject] = [None] * len(payloads)
        refused: Iterable[int] = range(len(payloads))
    else:
        items, refused = _compiled(payloads, max_bytes, _fast, _TIME_FIELDS, _RETRY)
    rejects = []
    for position in refused:
        item = items[position] = _decode_one(payloads[position], max_bytes)
        if type(item) is Reject:
            rejects.append(position)
    return items, rejects


def decode(payload: bytes, max_bytes: int = 0) -> Event | Reject:
    """Decode and validate one message, in the contract's order of checks."""
    return decode_all([payload], max_bytes)[0][0]


def too_large(
    payload: bytes,
    size: int,
    max_bytes: int,
    origin: dict[str, Any] | None = None,
    whole: int | None = None,
) -> Reject:
    """A payload of `size` bytes over `max_bytes` (`payload` only its start where
    `whole` says so: a replayed line cut as it was read)."""
    return Reject(
        TOO_LARGE, f"payload of {size} bytes exceeds {max_bytes}", payload, origin or {}, whole
    )


def _decode_one(payload: bytes, max_bytes: int) -> Event | Reject:
    """The Python path: fast (msgspec, any valid time) or, failing that, full."""
    if max_bytes and len(payload) > max_bytes and len(payload.rstrip(b"\n")) > max_bytes:
        return too_large(payload, len(payload.rstrip(b"\n")), max_bytes)
    # msgspec skips unknown fields without checking their UTF-8: ASCII payloads only.
    if payload.isascii():
        try:
            event = _fast(payload)
            event.ts = parse_time(event.ts)
            for name in _MORE_TIMES[type(event)]:
                setattr(event, name, parse_time(getattr(event, name)))
        except _FAST_FAILURES:
            return _decode_fully(payload)
        return event
    return _decode_fully(payload)


def _decode_fully(payload: bytes) -> Event | Reject:
    """The authoritative check, for whatever the fast path refused."""
    # A byte order mark before the JSON is ignored, as RFC 8259 (8.1) lets a parser
    # do: editors on Windows write one at the start of a file (its first line).
    text = payload[len(BOM) :] if payload.startswith(BOM) else payload
    try:
        obj = _loads(text)
    except _JSONDecodeError as exc:
        obj = _parse_out_of_range(text, exc)
        if obj is None:
            return Reject(INVALID_JSON, f"not UTF-8 JSON: {exc}", payload)
    if type(obj) is not dict:
        return Reject(INVALID_JSON, f"not a JSON object but {type(obj).__name__}", payload)
    kind = obj.get("type")
    validate = _VALIDATORS.get(kind) if type(kind) is str else None
    if validate is None:
        if kind is None:
            return Reject(INVALID_EVENT, "missing field 'type'", payload)
        return Reject(UNKNOWN_TYPE, f"unknown event type {_describe(kind)}", payload)
    name = str(kind)
    if _reads_out_of_range(obj, EVENT_TYPES[name]):
        return Reject(INVALID_JSON, "not UTF-8 JSON: a number too large for a double", payload)
    error = validate(obj)
    if error is not None:
        return Reject(INVALID_EVENT, f"{name}: {error}", payload)
    return _struct_of(obj, STRUCTS[name])


def _parse_out_of_range(payload: bytes, error: Exception) -> Any:
    """Numbers beyond a double only matter in fields we read (as in the fast path,
    which skips unknown fields): parse again keeping them, as inf or big ints."""
    if "infinity" not in str(error):
        return None
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * MAX_DEPTH))  # orjson's depth, not Python's
    try:
        return json.loads(payload, parse_constant=_no_constant, parse_int=_parse_int)
    except (ValueError, RecursionError):
        return None
    finally:
        sys.setrecursionlimit(limit)


def _parse_int(text: str) -> float | int:
    """Integers too long for a double are infinite (and `int()` refuses > 4300 digits)."""
    return float(text) if len(text) > 310 else int(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _too_big(value: object) -> bool:
    if isinstance(value, float):
        return value in (float("inf"), float("-inf"))
    return (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) > sys.float_info.max
    )


def _reads_out_of_range(obj: Fields, spec: EventType) -> bool:
    """Does a field of the event table hold a number too large for a double?"""
    names = ("event_id", "ts", *(n for n, _ in spec.required), *(n for n, _ in spec.optional))
    values = [obj.get(name) for name in names]
    lines = obj.get("lines") if spec.name == "order.placed" else None
    if isinstance(lines, list):
        values += [
            line.get(part) for line in lines if isinstance(line, dict) for part in ("sku", "qty")
        ]
    return any(_too_big(value) for value in values)


def _struct_of(obj: Fields, cls: type[msgspec.Struct]) -> Event:
    """The Struct of a validated, normalised event (constructed: the full check
    already validated what the Struct's own bounds would refuse, like big integers)."""
    fields = {name: obj[name] for name in cls.__struct_fields__ if name in obj}
    if "lines" in fields:
        fields["lines"] = [Line(sku=line["sku"], qty=line["qty"]) for line in fields["lines"]]
    return cls(**fields)
