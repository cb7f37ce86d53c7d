"""The tables keyed by str: the compiled IdTable and KeyTable (flows/_idtable.c)
behave as IdDict and KeyDict, the same interfaces on a dict."""

from __future__ import annotations

import gc
import pickle
import sys
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.runtime.ids import IdDict, KeyDict

compiled = pytest.importorskip(
    "flows._idtable", reason="flows._idtable was not compiled (no C compiler at install)"
)

Op = tuple[str, str, int]
KEYS = [f"id{i}" for i in range(40)] + ["", "é", "🙂" * 3]


def operations(*names: str) -> st.SearchStrategy[list[Op]]:
    """Up to 400 (operation, key, number): 40 keys churn, so collisions, growth and
    deletions (backward shifts) all happen."""
    return st.lists(
        st.tuples(st.sampled_from(names), st.sampled_from(KEYS), st.integers(-3, 3)),
        max_size=400,
    )


def mapping_step(table: Any, model: dict[str, Any], op: str, key: str, value: Any) -> bool:
    """Do a mapping operation (set, del, get, in) on both and compare; False for
    any other operation."""
    if op == "set":
        table[key] = model[key] = value
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
    else:
        return False
    assert len(table) == len(model)
    return True


@settings(max_examples=300, deadline=None)
@given(operations("set", "del", "get", "in", "forget", "remember"))
def test_the_id_table_behaves_as_a_dict(ops: list[Op]) -> None:
    table, model = compiled.IdTable(), IdDict()
    for op, key, hour in ops:
        if mapping_step(table, model, op, key, hour):
            continue
        if op == "remember":
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


@settings(max_examples=300, deadline=None)
@given(operations("set", "del", "get", "[]", "in", "prefetch"))
def test_the_key_table_behaves_as_a_dict_whose_missing_keys_read_as_none(ops: list[Op]) -> None:
    table, model = compiled.KeyTable(), KeyDict()
    for op, key, number in ops:
        # A new object each time: references are counted right.
        if mapping_step(table, model, op, key, (key, number)):
            continue
        if op == "[]":
            assert table[key] == model[key]  # None when missing, and nothing stored
        else:
            table.prefetch([key, None, 7, *list(model)[:3]], abs(number) * 100)
        assert len(table) == len(model)
    assert table.to_dict() == model.to_dict() == dict(model)
    assert sorted(table) == sorted(model)
    assert sorted(table.items()) == sorted(model.items())
    assert sorted(table.values()) == sorted(model.values())
    for saved in (table, model):  # a snapshot holds a plain dict
        restored = pickle.loads(pickle.dumps(saved))
        assert type(restored) is dict and restored == model
    assert compiled.KeyTable(dict(model)).to_dict() == model


def test_the_key_table_takes_str_keys_and_lets_its_values_go() -> None:
    class Record:
        pass

    table, record = compiled.KeyTable(), Record()
    gone = weakref.ref(record)
    table["a"] = record
    with pytest.raises(TypeError, match="keys are str"):
        table[1] = record
    with pytest.raises(KeyError):
        del table["missing"]
    for wrong in (("a",), ([], -1), ([], "64"), ([], 64, 1)):
        with pytest.raises(TypeError, match="prefetch"):
            table.prefetch(*wrong)
    assert table[b"a".decode()] is record and table["b"] is None
    del record
    table["a"] = 1  # the record replaced: released
    assert gone() is None
    table["b"] = Record()
    gone = weakref.ref(table["b"])
    del table
    assert gone() is None


def test_the_key_table_is_scanned_for_cycles_only_while_it_holds_what_can_be_in_one() -> None:
    """Open orders are acyclic records: a table of them is never scanned, as a dict
    of them is not; a value that may be in a cycle makes it tracked, and a cycle
    through it is collected."""

    class Holder:
        pass

    table = compiled.KeyTable({"a": 1, "b": "x", "c": (1, "y")})
    assert not gc.is_tracked(table)
    holder = Holder()
    table["d"] = holder
    assert gc.is_tracked(table)
    holder.table = table  # type: ignore[attr-defined]  # table -> holder -> table
    gone = weakref.ref(holder)
    del table, holder
    gc.collect()
    assert gone() is None
