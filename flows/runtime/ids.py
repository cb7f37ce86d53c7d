"""Tables keyed by str: a shard's de-duplication table (event id -> hour of its
ts) and state looked up by an event's key (`KeyTable`: the orders by order id).

`flows/_idtable.c` builds them as compact open-addressing tables where a C
compiler was found at install; `IdDict` and `KeyDict` are the same interfaces on
a dict. All pickle as a plain dict, so a snapshot restores into either.
"""

from __future__ import annotations

from typing import Any, Protocol


class Seen(Protocol):
    """What the runtime asks of the table: ids seen in an hour before `since` (the
    latest given, to `remember` or `expire`: W never goes back, so neither does
    it) are forgotten."""

    def remember(self, event_id: str, hour: int, since: int, /) -> bool: ...
    def expire(self, since: int, /) -> None: ...
    def prefetch(self, ids: list[str | None], /) -> None: ...
    def to_dict(self) -> dict[str, int]: ...
    def __len__(self) -> int: ...
    def __contains__(self, event_id: object, /) -> bool: ...
    def get(self, event_id: str, default: Any = None, /) -> Any: ...


class IdDict(dict[str, int]):
    """The table on a dict, where `_idtable` was not compiled: ids are dropped as
    the hours they were seen in pass `since`."""

    def __init__(self, saved: dict[str, int] | None = None, /) -> None:
        super().__init__(saved or {})
        self.since: int | None = None
        self.by_hour = ids_by_hour(self)  # the ids of each hour, to forget them

    def remember(self, event_id: str, hour: int, since: int, /) -> bool:
        """True for a duplicate (seen in an hour >= since); else remember it in
        `hour` (unless that is before `since`: it would be forgotten at once)."""
        self.expire(since)
        if event_id in self:
            return True
        if hour >= since:
            self[event_id] = hour
            self.by_hour.setdefault(hour, []).append(event_id)
        return False

    def expire(self, since: int, /) -> None:
        """Forget the ids seen in an hour before `since`."""
        if self.since is not None and since <= self.since:
            return
        self.since = since
        for hour in [hour for hour in self.by_hour if hour < since]:
            for event_id in self.by_hour.pop(hour):
                if self.get(event_id) == hour:
                    del self[event_id]

    def prefetch(self, ids: list[str | None], /) -> None:
        """Nothing to load ahead in a dict."""

    def to_dict(self) -> dict[str, int]:
        return dict(self)

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


def ids_by_hour(seen: dict[str, int]) -> dict[int, list[str]]:
    """The ids per hour they were seen in (the snapshots of builds that forgot an
    hour's ids by their list keep this too)."""
    hours: dict[int, list[str]] = {}
    for event_id, hour in seen.items():
        hours.setdefault(hour, []).append(event_id)
    return hours


class KeyDict(dict[str, Any]):
    """A KeyTable on a dict, where `_idtable` was not compiled: a missing key reads
    as None."""

    def __missing__(self, key: str) -> None:
        return None

    def prefetch(self, keys: list[Any], size: int = 64, /) -> None:
        """Nothing to load ahead in a dict."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


def _compiled_tables() -> tuple[type, type]:
    try:
        # Optional: built by `pip install` where a C compiler is found (see setup.py).
        from flows._idtable import IdTable, KeyTable
    except ImportError:  # no compiler at install time: the same results, slower
        return IdDict, KeyDict
    return IdTable, KeyTable


_ID_TABLE, _KEY_TABLE = _compiled_tables()


def id_table(saved: dict[str, int] | None = None) -> Seen:
    """A table holding `saved` (from a snapshot), compiled where it was built."""
    return _ID_TABLE(saved or {})  # type: ignore[no-any-return]


def key_table(saved: dict[str, Any] | None = None) -> Any:
    """A str -> object table holding `saved` whose missing keys read as None
    (`table[key]`), compiled where it was built. It has `prefetch(keys, size)`,
    `to_dict()`, `get`, `items()` and `values()` besides the mapping protocol."""
    return _KEY_TABLE(saved or {})
