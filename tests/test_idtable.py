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
# Keys of each str kind (1, 2 and 4 bytes a character), empty, with a NUL, and
# long ones that differ only in their last character or their kind.
KEYS = [f"id{i}" for i in range(40)] + ["", "é", "🙂" * 3, "a", "a\0", "\0"]
KEYS += ["k" * 15 + "x", "k" * 15 + "y", "k" * 15, "k" * 14 + "é", "k" * 14 + "🙂"]


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
@given(operations("remember", "remember", "get", "in", "expire"))
def test_the_id_table_behaves_as_the_dict_model(ops: list[Op]) -> None:
    """Hours move on (as W does), and the ids of hours the horizon passed are
    forgotten: their slots are reused and the table rebuilt (in place while its
    capacity stays), its text compacted."""
    table, model = compiled.IdTable(), IdDict()
    since = -3
    for op, key, step in ops:
        if op == "remember":
            since += step > 1  # now and then the horizon moves on an hour
            hour = since + step  # within the horizon or before it (step < 0)
            assert table.remember(key, hour, since) == model.remember(key, hour, since)
        elif op == "get":
            assert table.get(key) == model.get(key)
            assert table.get(key, "none") == model.get(key, "none")
            if key in model:
                assert table[key] == model[key]
            else:
                with pytest.raises(KeyError):
                    table[key]
        elif op == "in":
            assert (key in table) == (key in model)
        else:
            since += abs(step)
            table.expire(since)
            model.expire(since)
        assert len(table) == len(model)
    table.prefetch([*KEYS, None, 7])  # loads slots; anything but a str is skipped
    assert table.to_dict() == model
    assert sorted(table) == sorted(model)
    assert pickle.loads(pickle.dumps(table)) == model  # a snapshot holds a plain dict
    assert (
        pickle.loads(pickle.dumps(model)) == model
        and type(pickle.loads(pickle.dumps(model))) is dict
    )
    assert compiled.IdTable(dict(model)).to_dict() == model == IdDict(dict(model))


@pytest.mark.parametrize("table", [compiled.IdTable, IdDict], ids=["IdTable", "IdDict"])
def test_remember_tells_a_duplicate_from_an_id_seen_before_the_horizon(table: type) -> None:
    seen = table()
    assert seen.remember("a", 10, 5) is False  # new: remembered in hour 10
    assert seen.remember("a", 11, 10) is True  # seen in hour 10 >= 10: a duplicate
    assert seen.get("a") == 10
    assert seen.remember("a", 12, 11) is False  # hour 10 < 11: forgotten, remembered anew
    assert seen.get("a") == 12


def test_the_id_table_takes_str_ids_and_int_hours_only() -> None:
    with pytest.raises(TypeError, match="hours"):
        compiled.IdTable({"a": "x"})
    with pytest.raises(TypeError, match="keys are str"):
        compiled.IdTable({1: 1})
    table = compiled.IdTable()
    with pytest.raises(TypeError, match="remember"):
        table.remember("a", "x", 1)
    with pytest.raises(TypeError, match="keys are str"):
        table.remember(b"a", 1, 1)
    with pytest.raises(TypeError, match="expire"):
        table.expire(None)
    # A slot keeps an hour in 32 bits: a ts within +-2**62 µs is within +-1.3e9 hours.
    with pytest.raises(TypeError, match="remember"):
        table.remember("a", 2**31, 1)
    with pytest.raises(TypeError, match="hours"):
        compiled.IdTable({"a": -(2**31)})
    assert table.remember("b", 2**31 - 1, -(2**62)) is False and table["b"] == 2**31 - 1
    assert table.remember("c", -(2**31) + 1, -(2**62)) is False and table["c"] == -(2**31) + 1
    with pytest.raises(TypeError, match="does not support item assignment"):
        table["a"] = 1  # type: ignore[index]
    with pytest.raises(KeyError):
        table["missing"]
    assert "missing" not in table and len(table) == 2


def test_the_id_table_keeps_a_million_ids_and_gives_memory_back() -> None:
    """It holds no str of its own (a batch's ids are freed with its events), and an
    hour's ids cost nothing to forget: they are skipped till the table is rebuilt."""
    ids = [f"ev-{i}" for i in range(1_000_000)]
    table = compiled.IdTable()
    for i, event_id in enumerate(ids):
        assert table.remember(event_id, i % 30, 0) is False
    unseen = [f"ev-{i}" for i in range(8)]  # the same, never given to the table
    assert sys.getrefcount(ids[7]) == sys.getrefcount(unseen[7])  # no reference kept
    assert len(table) == 1_000_000 and table["ev-1"] == 1 and table.get("ev-999999") == 9
    assert table.remember("ev-30", 99, 0) is True  # a duplicate
    full = sys.getsizeof(table)
    # Slots, at most half full, and text (mapped apart, in huge pages if allowed).
    assert full > 16 * 2_000_000
    table.expire(29)  # a burst passes: all but hour 29 are forgotten
    assert len(table) == 33_333 and "ev-30" not in table and table["ev-29"] == 29
    for i in range(100_000):  # new ids reuse forgotten slots, then the table is rebuilt
        assert table.remember(f"new-{i}", 30, 29) is False
    assert len(table) == 133_333 and sys.getsizeof(table) * 2 < full
    assert all(f"ev-{i}" in table for i in range(29, 1_000_000, 30))
    assert table.remember("ev-59", 31, 29) is True and table.remember("ev-60", 31, 29) is False


def test_the_id_table_grows_in_place_and_keeps_every_id() -> None:
    """Doubled in place (in the heap, across into a mapping of its own, then by the
    kernel) while the horizon moves on: after each growth every id not forgotten
    is found, with its hour, and none forgotten is."""

    def hour_of(i: int) -> int:
        return i // 20_000  # an hour of 20k ids; those of the latest 5 hours are kept

    def id_of(i: int) -> str:
        return f"{i * 7919 % 400_009:x}-{hour_of(i)}"  # in no order

    table, model = compiled.IdTable(), IdDict()
    size, growths = sys.getsizeof(table), 0
    for i in range(400_000):
        hour = hour_of(i)
        assert table.remember(id_of(i), hour, hour - 5) == model.remember(id_of(i), hour, hour - 5)
        if sys.getsizeof(table) != size:
            size, growths = sys.getsizeof(table), growths + 1
            assert len(table) == len(model)
            assert all(table[key] == held for key, held in model.items())
            forgotten = (id_of(j) for j in range(0, i, 97) if hour_of(j) < hour - 5)
            assert not any(key in table for key in forgotten)
    assert growths >= 10 and table.to_dict() == model


def test_the_id_table_stays_the_same_size_while_ids_churn() -> None:
    """An hour of long ids at a time, each forgotten an hour later: new ids take
    forgotten slots, and the text they leave behind is given back, so the table
    does not grow with the hours."""
    table = compiled.IdTable()
    sizes = []
    for hour in range(24):
        for i in range(5_000):
            assert table.remember(f"{hour}-{i}-" + "x" * 200, hour, hour - 1) is False
        assert len(table) == (5_000 if hour == 0 else 10_000)
        sizes.append(sys.getsizeof(table))
    assert max(sizes[4:]) < 2 * sizes[3]  # 24 hours of 1 MB of text each
    assert table.remember("23-7-" + "x" * 200, 24, 23) is True


@settings(max_examples=300, deadline=None)
@given(operations("set", "del", "get", "[]", "in", "prefetch"))
def test_the_key_table_behaves_as_a_dict_whose_missing_keys_read_as_none(ops: list[Op]) -> None:
    table, model = compiled.KeyTable(), KeyDict()
    for op, name, number in ops:
        # Half the time a key equal to the one named but another str (as a decoded
        # event's is): the table compares a stored key's text, not its identity.
        key = name if number % 2 else "".join(list(name))
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
