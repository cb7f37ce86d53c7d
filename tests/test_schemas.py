"""The JSON Schemas in schemas/ and the decoder accept and reject the same events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from flows.decode import INVALID_EVENT, Reject, decode
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
from flows.schemas import all_schemas, render

ROOT = Path(__file__).resolve().parent.parent / "schemas"
VALIDATORS = {
    name: Draft202012Validator(
        json.loads((ROOT / f"events/{name}.json").read_text()), format_checker=FormatChecker()
    )
    for name in EVENT_TYPES
}

GOOD = {
    STRING: "FC-ATL1",
    TIME: "2026-11-21T10:15:00.250Z",
    QTY: 3,
    INT: -2,
    COUNT: 0,
    NUMBER: 12.5,
    STATUS: "delivered",
    LINES: [{"sku": "SKU-1", "qty": 2}],
}
BAD_VALUES: dict[str, list[Any]] = {
    STRING: [None, 5, 1.5, True, [], {}],
    TIME: [
        None,
        "2026-11-21",
        "2026-11-21T10:15:00",
        "2026-11-21t10:15:00Z",
        "2026-11-21T10:15:00z",
        "2026-02-30T10:15:00Z",
        "2026-11-21T10:15:60Z",
        "2026-11-21T24:00:00Z",
        "2026-11-21T10:15:00+0100",
        "21/11/2026 10:15",
        -1,
        253402300800000,
        True,
        1.5,
        "",
        [],
        "2026-11-21T10:15:00.Z",
    ],
    QTY: [None, 0, -1, 1.5, "3", True, False, []],
    INT: [None, 1.5, "3", True, {}],
    COUNT: [None, -1, 2.5, "0", False],
    NUMBER: [None, -0.5, "10", True, []],
    STATUS: [None, "lost", "DELIVERED", 1, ""],
    LINES: [
        None,
        [],
        {},
        "x",
        [1],
        [{"sku": "a"}],
        [{"qty": 1}],
        [{"sku": "a", "qty": 0}],
        [{"sku": 1, "qty": 1}],
        [{"sku": "a", "qty": "1"}],
        [{"sku": "a", "qty": 1}, 5],
    ],
}
ALSO_GOOD: dict[str, list[Any]] = {
    TIME: [
        1795256100000,
        0,
        253402300799999,
        1795256100000.0,
        "2026-11-21T10:15:00Z",
        "2026-11-21T10:15:00.123456789+05:30",
        "2026-11-21T10:15:00-03:00",
    ],
    QTY: [1, 2.0, 10**12],
    INT: [0, 5, -5.0],
    COUNT: [5, 3.0],
    NUMBER: [0, 7, 0.001],
    STATUS: list(DELIVERY_STATUSES),
    LINES: [[{"sku": "a", "qty": 1, "price": 9.5}, {"sku": "b", "qty": 4.0}]],
    STRING: ["", "ünïcødé", "x" * 1000],
}


# The contract's event table (§1), written out here: the schemas and the decoder are
# both built from flows/events.py, so only this pins that table to the contract.
CONTRACT: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "order.placed": (
        {
            "order_id": STRING,
            "fc": STRING,
            "region": STRING,
            "lines": LINES,
            "promised_ship_by": TIME,
            "promised_delivery_by": TIME,
        },
        ("customer_id",),
    ),
    "order.cancelled": ({"order_id": STRING}, ("reason",)),
    "order.shipped": ({"order_id": STRING, "fc": STRING}, ("carrier",)),
    "delivery.updated": ({"order_id": STRING, "status": STATUS}, ("carrier",)),
    "return.received": (
        {"order_id": STRING, "fc": STRING, "sku": STRING, "qty": QTY},
        ("reason",),
    ),
    "inventory.received": (
        {"receipt_id": STRING, "fc": STRING, "sku": STRING, "qty": QTY},
        ("supplier",),
    ),
    "inventory.stowed": (
        {"receipt_id": STRING, "fc": STRING, "sku": STRING, "qty": QTY},
        ("bin",),
    ),
    "inventory.picked": ({"order_id": STRING, "fc": STRING, "sku": STRING, "qty": QTY}, ()),
    "inventory.packed": ({"order_id": STRING, "fc": STRING}, ()),
    "inventory.adjusted": ({"fc": STRING, "sku": STRING, "delta": INT}, ("reason",)),
    "page.viewed": ({"session_id": STRING, "page": STRING, "load_ms": NUMBER}, ()),
    "search.performed": (
        {"session_id": STRING, "query": STRING, "results": COUNT, "latency_ms": NUMBER},
        (),
    ),
    "cart.added": ({"session_id": STRING, "sku": STRING, "qty": QTY}, ()),
    "recommendation.shown": ({"session_id": STRING, "widget": STRING, "sku": STRING}, ()),
    "recommendation.clicked": ({"session_id": STRING, "widget": STRING, "sku": STRING}, ()),
}


def test_the_event_table_is_the_contracts():
    declared = {
        name: (dict(spec.required), tuple(field for field, _kind in spec.optional))
        for name, spec in EVENT_TYPES.items()
    }
    assert declared == CONTRACT


def base_event(name: str) -> dict[str, Any]:
    spec = EVENT_TYPES[name]
    event: dict[str, Any] = {"event_id": "e-1", "type": name, "ts": GOOD[TIME]}
    event.update({field: GOOD[kind] for field, kind in spec.required})
    return event


def corpus() -> list[tuple[str, dict[str, Any]]]:
    """Valid events and one-field mutations of them, labelled for test ids."""
    items: list[tuple[str, dict[str, Any]]] = []
    for name, spec in EVENT_TYPES.items():
        base = base_event(name)
        items.append((f"{name}:base", base))
        items.append((f"{name}:extra", {**base, "unknown_field": {"x": [1]}}))
        fields = [("event_id", STRING), ("ts", TIME), *spec.required]
        for field, kind in fields:
            items.append((f"{name}:{field}:missing", {k: v for k, v in base.items() if k != field}))
            for i, value in enumerate(BAD_VALUES[kind] + ALSO_GOOD.get(kind, [])):
                items.append((f"{name}:{field}:{i}", {**base, field: value}))
        for field, _kind in spec.optional:
            for i, value in enumerate(["text", None, 5, True, ["a"]]):
                items.append((f"{name}:{field}:opt{i}", {**base, field: value}))
    return items


CORPUS = corpus()


def schema_accepts(event: dict[str, Any]) -> bool:
    return VALIDATORS[event["type"]].is_valid(event)


def decoder_accepts(event: dict[str, Any]) -> bool:
    return not isinstance(decode(orjson.dumps(event)), Reject)


def test_corpus_has_both_valid_and_invalid_events():
    verdicts = [schema_accepts(event) for _label, event in CORPUS]
    assert verdicts.count(False) > 200 and verdicts.count(True) > 100


@pytest.mark.parametrize(("label", "event"), CORPUS, ids=[label for label, _ in CORPUS])
def test_schema_and_decoder_agree(label, event):
    assert schema_accepts(event) == decoder_accepts(event), label


def test_decoder_rejects_with_reasons():
    assert decode(b"[1, 2]").reason == "invalid_json"  # type: ignore[union-attr]
    assert decode(b'{"type": "order.lost"}').reason == "unknown_type"  # type: ignore[union-attr]
    assert decode(b'{"type": 7}').reason == "unknown_type"  # type: ignore[union-attr]
    missing = decode(b'{"event_id": "x", "ts": 0}')
    assert isinstance(missing, Reject) and missing.reason == INVALID_EVENT
    assert "missing field 'type'" in missing.error
    bad = decode(orjson.dumps({**base_event("order.placed"), "lines": []}))
    assert isinstance(bad, Reject) and "lines" in bad.error
    assert decode(b"x" * 20, max_bytes=10).reason == "too_large"  # type: ignore[union-attr]


def test_times_become_microseconds():
    event = decode(
        orjson.dumps(
            {
                **base_event("order.placed"),
                "ts": 1795256100000,
                "promised_ship_by": "2026-11-21T10:15:00.5+01:00",
            }
        )
    )
    assert not isinstance(event, Reject)
    assert event.ts == 1795256100000 * 1000
    assert event.promised_ship_by == 1795252500500000


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["2026-11-21T10:15:00Z", "delivered", "2026-13-01T00:00:00Z"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=5,
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(EVENT_TYPES)), data=st.data())
def test_random_field_values_get_the_same_verdict(name, data):
    event = base_event(name)
    fields = [field for field, _kind in EVENT_TYPES[name].required] + ["event_id", "ts"]
    for field in data.draw(st.lists(st.sampled_from(fields), max_size=3, unique=True)):
        event[field] = data.draw(JSON_VALUES)
    assert schema_accepts(event) == decoder_accepts(event)


def test_committed_schemas_are_generated():
    for relative, schema in all_schemas().items():
        path = ROOT / relative
        assert path.read_bytes() == render(schema), f"{relative} is stale: run make generate"
    on_disk = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.json")}
    assert on_disk == set(all_schemas())
