"""Crash recovery and scale-out against the real broker: nothing lost, nothing twice."""

from __future__ import annotations

import pickle
import random
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from flows.metrics import BY_NAME
from tests.kafka_broker import consume_all, create_topic, free_port, produce
from tests.processes import (
    WaitFailed,
    cockpit,
    events_read,
    metrics_text,
    progress_of,
    wait_for,
)
from tests.reference import Samples, alert_key, compare, parse_exposition
from tests.test_kafka import LIVE_METRICS, run_args, topics, wait_equal
from tests.test_snapshots import restored_series

pytestmark = pytest.mark.kafka


def snapshot_events(directory: Path) -> float:
    """The events the shard snapshots a restart resumes from had counted: those of
    epochs before every part's commit (bytewax resumes at the least of them)."""
    commits: list[int] = []
    snaps: list[tuple[str, int, bytes | None]] = []
    for path in directory.glob("part-*.sqlite3"):
        with closing(sqlite3.connect(path)) as db:
            commits += [epoch for (epoch,) in db.execute("SELECT commit_epoch FROM commits")]
            snaps += db.execute(
                "SELECT state_key, snap_epoch, ser_change FROM snaps "
                "WHERE step_id = 'opscockpit.shards'"
            ).fetchall()
    resume = min(commits, default=0)
    latest: dict[str, tuple[int, bytes | None]] = {}
    for key, epoch, blob in snaps:
        if epoch < resume and epoch > latest.get(key, (-1, None))[0]:
            latest[key] = (epoch, blob)
    return sum(
        sum(restored_series(pickle.loads(blob))["cockpit_events_total"].values())
        for _, blob in latest.values()
        if blob is not None
    )


def test_random_kills_change_no_final_metric(kafka, day, tmp_path):
    names = topics()
    create_topic(kafka, names["input"], 3)
    produce(kafka, names["input"], day["messages"])
    args = run_args(
        kafka,
        names,
        "--idle-timeout",
        "3s",
        "--recovery-dir",
        str(tmp_path / "recovery"),
        "--batch-size",
        "200",
    )
    rng = random.Random(2026)
    kills = 0
    recovery = tmp_path / "recovery"
    for _ in range(3):
        with cockpit(*args, "--snapshot-interval", "500ms") as running:
            # Let it read part of the backlog and take a few snapshots, then crash. On
            # a busy machine the first run's first snapshot can take longer than the
            # random wait: it is waited for (then the later runs restore from one).
            wait_for(
                lambda r=running: events_read(r.samples()) > 0,  # its series start at 0
                60,
                "progress",
                progress=running.progress,
            )
            wait_for(
                lambda: snapshot_events(recovery) > 0,
                120,
                "a snapshot to resume from",
                progress=running.progress,
            )
            time.sleep(rng.uniform(0.5, 3.0))
            running.process.send_signal(signal.SIGKILL)
            running.process.wait()
            kills += 1
    # The last run restores like the others but is not killed: no snapshot of it is
    # read, so it takes them at the default interval (10 s). Every 500 ms, they made
    # most of the test's time (the state of a day's items is large).
    # A run that ignored the directory would read the topic again from its start and
    # end with the same metrics: the kills must have left snapshots, and the restart
    # must show their counts at its first scrape (a fresh run shows a batch or two).
    resumed_from = snapshot_events(recovery)
    assert resumed_from > 0, "no snapshot to resume from"
    with cockpit(*args) as running:
        restored = running.samples()
        wait_equal(running, day["metrics"], timeout=180)
    assert kills == 3
    # The restart resumed from snapshots: counters did not start again from zero.
    assert sum(restored.get("cockpit_events_total", {}).values()) >= resumed_from
    alerts = consume_all(kafka, names["alerts"])
    # At-least-once: records may repeat after a crash, but with the same keys.
    assert {k for k, _ in alerts} == {alert_key(r).encode() for r in day["alerts"]}


def summed(expositions: list[Samples]) -> Samples:
    """What `sum by (...)` (and `min` for the watermark) shows across processes."""
    total: Samples = {}
    for samples in expositions:
        for name, series in samples.items():
            target = total.setdefault(name, {})
            for key, value in series.items():
                metric = BY_NAME.get(
                    name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
                )
                if metric is not None and metric.merge == "min" and key in target:
                    target[key] = min(target[key], value)
                else:
                    target[key] = target.get(key, 0.0) + value
    return total


@pytest.mark.parametrize(
    "scale", [["--workers", "2"], ["--processes", "2"]], ids=["2 workers", "2 processes"]
)
def test_several_workers_or_processes_equal_one(kafka, day, scale):
    names = topics()
    create_topic(kafka, names["input"], 3)
    produce(kafka, names["input"], day["messages"])
    port = free_port(2)  # a second process serves on port + 1
    processes = 2 if "--processes" in scale else 1
    with cockpit(*run_args(kafka, names, "--idle-timeout", "2s"), *scale, port=port) as running:
        diffs: list[str] = []
        latest: list[Samples] = [{}]  # the cluster's last scrape, summed

        def equal() -> bool:
            nonlocal diffs
            try:  # the second process may not serve yet
                texts = [parse_exposition(metrics_text(port + i)) for i in range(processes)]
            except OSError:
                return False
            latest[0] = summed(texts)
            diffs = compare(day["metrics"], latest[0], metrics=LIVE_METRICS)
            return not diffs

        try:
            what = "the cluster to equal one worker"
            wait_for(equal, 180, what, progress=lambda: progress_of(latest[0]))
        except WaitFailed as failure:
            raise AssertionError("\n".join([str(failure), *diffs[:30]])) from None
        assert running.alive()
