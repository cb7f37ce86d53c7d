"""Snapshots of a shard and of the combine stage, versioned so that an upgrade
restores them or refuses them clearly.

A snapshot is plain data, pickled: a format name and version for the runtime's
own state, and per family (by NAME) its state version, its metric series and
its state. A family new since the snapshot starts empty; a family at another
version than this build's is refused with one line naming both versions.
Snapshots written before families existed are upgraded by the caller's
`upgrade` (see `flows.kpis.upgrade`). The versions sit in a small header, with
the window size the state is kept on (windows, closes and days are on its grid),
so that `opscockpit run` checks a recovery directory before it starts.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

from flows.labels import LabelCap
from flows.runtime.combine import CombineStage
from flows.runtime.consts import TAG_BITS, TAG_MASK
from flows.runtime.core import Family, Shard
from flows.timeutil import US_PER_MINUTE, US_PER_MS, US_PER_SECOND

SHARD_FORMAT = "opscockpit.shard"
COMBINE_FORMAT = "opscockpit.combine"
VERSION = 2  # of the runtime's own state in both formats (1: histogram sums in seconds)

Upgrade = Callable[[Any], dict[str, Any]]


class SnapshotError(Exception):
    """Recovery state this build cannot read, said in one line."""


class Damaged(SnapshotError):
    """Bytes that are no snapshot at all: damaged, or not opscockpit's."""


def loads(data: bytes, unpickler: type[pickle.Unpickler] = pickle.Unpickler) -> Any:
    """`data` unpickled, or `Damaged` saying why not in one line."""
    try:
        return unpickler(io.BytesIO(data)).load()
    except Exception as exc:  # bytes pickle cannot read raise many kinds of error
        raise Damaged(str(exc).rstrip(".") or type(exc).__name__) from None


def check(kind: str, name: str, saved: object, ours: object) -> None:
    """Refuse state at a version this build does not read."""
    if saved != ours:
        raise SnapshotError(
            f"the recovery state of {kind} {name!r} is at version {saved}, and this "
            f"opscockpit reads version {ours}: run the release that wrote it, or start "
            f"from an empty --recovery-dir"
        )


def dump_shard(shard: Shard) -> bytes:
    """A shard's snapshot."""
    series = shard.ledger.series
    body = {
        "runtime": shard.export(),
        "family_order": [family.NAME for family in shard.families],
        "labels": shard.labels.export(),
        "families": {
            family.NAME: {
                "series": {m.name: series[m.name] for m in family.METRICS},
                "state": family.export_state(),
            }
            for family in shard.families
        },
    }
    versions = {family.NAME: family.VERSION for family in shard.families}
    return _pack(SHARD_FORMAT, versions, shard.window, body)


def load_shard(
    data: bytes,
    config: Any,
    labels: LabelCap,
    families: tuple[type[Family], ...],
    upgrade: Upgrade,
) -> Shard:
    """A shard restored from its snapshot (upgraded first if it is older)."""
    versions = {f.NAME: f.VERSION for f in families}
    saved = body_of(read(data, SHARD_FORMAT, versions, upgrade, config.window))
    runtime = saved["runtime"]
    shard = Shard(runtime["shard"], config, labels, families)
    labels.restore(saved["labels"])  # before any new label: series stay stable
    runtime["timers"] = _reslot(runtime["timers"], saved["family_order"], shard)
    shard.restore(runtime)
    family: Family
    for family in shard.families:
        entry = saved["families"].get(family.NAME)
        if entry is None:
            continue  # a family new since the snapshot starts empty
        shard.ledger.series.update(entry["series"])
        family.restore_state(entry["state"])
    shard.attach(config, labels)  # rewire the families to the restored series
    return shard


def dump_combine(stage: CombineStage) -> bytes:
    """The combine stage's snapshot."""
    versions = {name: combiner.VERSION for name, combiner in stage.combiners.items()}
    return _pack(COMBINE_FORMAT, versions, stage.context.window, stage.export())


def load_combine(data: bytes, stage: CombineStage, upgrade: Upgrade) -> CombineStage:
    """Restore `stage` (new, for this layout) from its snapshot."""
    versions = {name: combiner.VERSION for name, combiner in stage.combiners.items()}
    stage.restore(body_of(read(data, COMBINE_FORMAT, versions, upgrade, stage.context.window)))
    return stage


def _pack(kind: str, versions: dict[str, int], window: int, body: Any) -> bytes:
    """A header that says what the snapshot holds, at which versions, on which
    window size, and the body pickled apart, so that reading the header costs
    little (`read`)."""
    header = {
        "format": kind,
        "version": VERSION,
        "versions": versions,
        "window": window,
        "body": pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL),
    }
    return pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL)


def read(
    data: bytes, expected: str, ours: dict[str, int], upgrade: Upgrade, window: int
) -> dict[str, Any]:
    """A snapshot's header, refused in one line unless this build reads it: the
    runtime's version, and each part's (family or combine step) it has too; and
    unless it was kept on this `window` (one of a release that recorded no window
    is taken as kept on it)."""
    saved = upgrade(data)
    kind = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
    if kind != expected:
        raise SnapshotError(f"the recovery state holds {kind!r}, not {expected!r} state")
    check("the runtime", expected, saved.get("version"), VERSION)
    for name, version in saved["versions"].items():
        if name in ours:  # a part this build no longer has is dropped
            check("part", name, version, ours[name])
    saved_window = saved.get("window", window)
    if saved_window != window:
        raise SnapshotError(
            f"its windows are {duration_text(saved_window)} long, and this run's --window "
            f"is {duration_text(window)}: run with --window {duration_text(saved_window)}, "
            "or start from an empty --recovery-dir"
        )
    return saved


def duration_text(us: int) -> str:
    """A duration as the command line takes it: 1h, 90m, 45s, 250ms."""
    for unit, size in (("h", 60 * US_PER_MINUTE), ("m", US_PER_MINUTE), ("s", US_PER_SECOND)):
        if us % size == 0:
            return f"{us // size}{unit}"
    return f"{us / US_PER_MS:g}ms"


def body_of(header: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's body: pickled apart by `_pack`, or plain from an upgrade."""
    body = header["body"]
    return pickle.loads(body) if isinstance(body, bytes) else body  # type: ignore[no-any-return]


def _reslot(timers: list[Any], saved_order: list[str], shard: Shard) -> list[Any]:
    """Timers name their family by its place in the shard: move them where this
    build keeps each family (a timer of a family it no longer has is dropped)."""
    now = {family.NAME: index for index, family in enumerate(shard.families)}
    if saved_order == list(now):
        return timers
    moved = [
        (when, now[saved_order[slot >> TAG_BITS]] << TAG_BITS | slot & TAG_MASK, key, ref)
        for when, slot, key, ref in timers
        if saved_order[slot >> TAG_BITS] in now
    ]
    moved.sort(key=lambda timer: timer[:3])
    return moved
