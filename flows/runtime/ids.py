"""The de-duplication table of a shard: event id -> hour of its ts.

`flows/_idtable.c` builds it as a compact open-addressing table where a C
compiler was found at install; `IdDict` is the same interface on a dict. Both
pickle as a plain dict, so a snapshot restores into either.
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


def _compiled_table() -> type | None:
    try:
        # Optional: built by `pip install` where a C compiler is found (see setup.py).
        from flows._idtable import IdTable
    except ImportError:  # no compiler at install time: the same results, slower
        return None
    return IdTable


_TABLE = _compiled_table()


def id_table(saved: dict[str, int] | None = None) -> Seen:
    """A table holding `saved` (from a snapshot), compiled where it was built."""
    table: Any = IdDict if _TABLE is None else _TABLE
    return table(saved or {})  # type: ignore[no-any-return]
