"""Tables keyed by str: a shard's de-duplication table (event id -> hour of its
ts) and state looked up by an event's key (`KeyTable`: the orders by order id).

`flows/_idtable.c` builds them as compact open-addressing tables where a C
compiler was found at install; `IdDict` and `KeyDict` are the same interfaces on
a dict. All pickle as a plain dict, so a snapshot restores into either.
"""

from __future__ import annotations

from typing import Any, Protocol


class Seen(Protocol):
    """What the runtime asks of the table."""

    def remember(self, event_id: str, hour: int, since: int, /) -> bool: ...
    def prefetch(self, ids: list[str | None], /) -> None: ...
    def forget(self, ids: list[str], hour: int, /) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, event_id: object, /) -> bool: ...
    def get(self, event_id: str, default: Any = None, /) -> Any: ...


class IdDict(dict[str, int]):
    """The table on a dict, where `_idtable` was not compiled."""

    def remember(self, event_id: str, hour: int, since: int, /) -> bool:
        """True for a duplicate (seen in an hour >= since); else remember it in `hour`."""
        known = self.get(event_id)
        if known is not None and known >= since:
            return True
        self[event_id] = hour
        return False

    def prefetch(self, ids: list[str | None], /) -> None:
        """Nothing to load ahead in a dict."""

    def forget(self, ids: list[str], hour: int, /) -> None:
        """Forget the ids seen in `hour`, unless seen again later."""
        for event_id in ids:
            if self.get(event_id) == hour:
                del self[event_id]

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


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
