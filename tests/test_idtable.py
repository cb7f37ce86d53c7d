"""The de-duplication table: the compiled IdTable (flows/_idtable.c) behaves as
IdDict, the same interface on a dict."""

from __future__ import annotations

import pickle
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.runtime.ids import IdDict

compiled = pytest.importorskip(
    "flows._idtable", reason="flows._idtable was not compiled (no C compiler at install)"
)

Op = tuple[str, str, int]
KEYS = [f"id{i}" for i in range(40)] + ["", "é", "🙂" * 3]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "del", "get", "in", "forget", "remember"]),
            st.sampled_from(KEYS),
            st.integers(-3, 3),
        ),
        max_size=400,
    )
)
def test_the_id_table_behaves_as_a_dict(ops: list[Op]) -> None:
    """Collisions, growth and deletions (backward shifts) included: 40 keys churn."""
    table, model = compiled.IdTable(), IdDict()
    for op, key, hour in ops:
        if op == "set":
            table[key] = model[key] = hour
        elif op == "del":
            if key in model:
                del table[key], model[key]
            else:
                with pytest.raises(KeyError):
                    del table[key]
        elif op == "get":
            assert table.get(key) == model.get(key)
            assert table.get(key, "none") == model.get(key, "none")
        elif op == "in":
            assert (key in table) == (key in model)
        elif op == "remember":
            since = hour - 1
            assert table.remember(key, hour, since) == model.remember(key, hour, since)
        else:
            ids = [k for k in model if model[k] == hour]
            table.forget(ids, hour)
            model.forget(ids, hour)
        assert len(table) == len(model)
    table.prefetch([*KEYS, None, 7])  # loads slots; anything but a str is skipped
    assert table.to_dict() == model
    assert sorted(table) == sorted(model)
    assert pickle.loads(pickle.dumps(table)) == model  # a snapshot holds a plain dict
    assert (
        pickle.loads(pickle.dumps(model)) == model
        and type(pickle.loads(pickle.dumps(model))) is dict
    )
    assert compiled.IdTable(dict(model)).to_dict() == model


@pytest.mark.parametrize("table", [compiled.IdTable, IdDict], ids=["IdTable", "IdDict"])
def test_remember_tells_a_duplicate_from_an_id_seen_before_the_horizon(table: type) -> None:
    seen = table()
    assert seen.remember("a", 10, 5) is False  # new: remembered in hour 10
    assert seen.remember("a", 11, 10) is True  # seen in hour 10 >= 10: a duplicate
    assert seen.get("a") == 10
    assert seen.remember("a", 12, 11) is False  # hour 10 < 11: forgotten, remembered anew
    assert seen.get("a") == 12


def test_the_id_table_takes_str_ids_and_int_hours_only() -> None:
    table = compiled.IdTable()
    with pytest.raises(TypeError, match="keys are str"):
        table[1] = 1
    with pytest.raises(TypeError, match="hours"):
        table["a"] = "x"
    with pytest.raises(TypeError, match="remember"):
        table.remember("a", "x", 1)
    with pytest.raises(TypeError, match="keys are str"):
        table.remember(b"a", 1, 1)
    with pytest.raises(KeyError):
        table["missing"]
    assert "missing" not in table and len(table) == 0


def test_the_id_table_keeps_a_million_ids_and_gives_memory_back() -> None:
    table = compiled.IdTable()
    for i in range(1_000_000):
        table[f"ev-{i}"] = i % 30
    table.forget([f"ev-{i}" for i in range(0, 1_000_000, 30)], 0)
    assert len(table) == 1_000_000 - 33_334
    assert table["ev-1"] == 1 and "ev-30" not in table and table.get("ev-999999") == 9
    full = sys.getsizeof(table)
    assert full > 24 * 1_000_000  # slots included (mapped apart, in huge pages if allowed)
    for hour in range(1, 29):  # a burst passes: all but hour 29 expire
        table.forget([f"ev-{i}" for i in range(hour, 1_000_000, 30)], hour)
    assert len(table) == 33_333 and sys.getsizeof(table) * 8 < full
    assert table["ev-29"] == 29 and all(f"ev-{i}" in table for i in range(29, 1_000_000, 30))
