"""Bound the label values that reach Prometheus (contract §4, `--max-label-values`).

The first N distinct values of each label are kept, in arrival order; later
ones fold into `other`, and so does any value longer than MAX_LENGTH: the cap
bounds what a scrape carries, and a value of a megabyte in one event would be
repeated in every series of its label (Prometheus' `label_value_length_limit`
then refuses the whole target). An empty value shows as `unknown`, as an absent
one does (§2): Prometheus reads `fc=""` as no fc label at all. The admitted
values are part of the snapshot so that a restarted process keeps the same
series.
"""

from __future__ import annotations

import threading

OTHER = "other"
UNKNOWN = "unknown"  # an absent or empty value
MAX_LENGTH = 256  # characters of a label value


class LabelCap:
    """Admits at most `limit` distinct values per label name."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def values(self, label: str) -> dict[str, str]:
        """The admitted values of one label, as value -> shown value for fast lookups."""
        known = self.admitted.get(label)
        if known is None:
            with self._lock:
                known = self.admitted.setdefault(label, {})
        return known

    def admit(self, label: str, value: str) -> str | None:
        """Admit a new value, or return None when the label is full or the value too
        long (fold it)."""
        if len(value) > MAX_LENGTH:
            return None
        known = self.values(label)
        with self._lock:
            shown = known.get(value)
            if shown is not None:
                return shown
            if len(known) >= self.limit:
                return None
            shown = known[value] = value or UNKNOWN
            return shown

    def fold(self, label: str, value: str) -> str:
        """A value as metrics show it, counting no use: admitted, or `other` beyond
        the cap. For a value whose use its event already counted elsewhere (a
        combine step, a second family reading the same field)."""
        return self.admit(label, value) or OTHER

    def export(self) -> dict[str, list[str]]:
        """The admitted values per label, for a snapshot."""
        with self._lock:
            return {label: list(known) for label, known in self.admitted.items() if known}

    def restore(self, saved: dict[str, list[str]]) -> None:
        """Admit values from a snapshot first, so series stay stable across restarts."""
        for label, values in saved.items():
            for value in values:
                self.admit(label, value)
