"""Two builds, interleaved: `python -m tests.bench.compare REV [--rounds N] [--mix M]`.

The working tree's build (as `make` left it) against revision REV, built from
its own sources into `.bench/builds/<commit>` as its `make install` did: by
`python -m flows.pgo` where it has one (profile-guided), else by pip with the
project's build system; both run with bytecode. Each round starts one child per
build, in alternating order, that replays a mix's file `--repeats` times and
reports its best CPU time. On a busy host single timings move by a third while
the ratio of two taken in one round holds, so the figure is the median of the
per-round ratios. Both builds must also write the same outputs (metrics, KPI,
alert and dead-letter files), byte for byte.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench.common import BENCH_DIR, BenchFailure, log
from tests.bench.replay_bench import mixes

ROOT = Path(__file__).resolve().parents[2]
# A child's replays, timed: it imports `flows` from its working directory.
CHILD = """
import gc, sys, time
from flows.cli import tune_gc
from flows.replay import replay
from flows.settings import Settings
tune_gc()
for _ in range(int(sys.argv[2])):
    gc.collect()
    started = time.process_time()
    replay(Settings(), sys.argv[1])
    print(time.process_time() - started)
"""
OUTPUTS = ("--metrics-file", "--kpis", "--alerts", "--dlq")


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchFailure(f"git {' '.join(args)}: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout.strip()


def build(revision: str) -> Path:
    """The package of `revision`, built once by pip into .bench/builds/<commit>."""
    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
    target = BENCH_DIR / "builds" / commit
    if target.exists():
        return target
    log(f"building {revision} ({commit[:12]})")
    partial = target.with_name(commit + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # an interrupted build's
    with tempfile.TemporaryDirectory() as tmp:
        archive, sources = Path(tmp) / "sources.tar", Path(tmp) / "sources"
        git("archive", "--output", str(archive), commit)
        shutil.unpack_archive(archive, sources)
        if (sources / "flows" / "pgo.py").exists():  # built as `make install` does
            shutil.copytree(sources, partial)
            subprocess.run([sys.executable, "-m", "flows.pgo"], cwd=partial, check=True)
        else:
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
            subprocess.run([*pip, "--target", str(partial), str(sources)], check=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(partial / "flows")], check=True)
    partial.replace(target)
    return target


def child(where: Path, *args: str) -> str:
    """What a Python child that imports `flows` from `where` only prints."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(where)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchFailure(f"the replay of {where} failed: {done.stderr[-2000:]}")
    return done.stdout


def best_time(where: Path, path: Path, repeats: int) -> float:
    return min(float(line) for line in child(where, "-c", CHILD, str(path), str(repeats)).split())


def outputs(where: Path, path: Path, into: Path) -> list[bytes]:
    """What `opscockpit replay` of this build writes for `path`."""
    files = [into / name.strip("-") for name in OUTPUTS]
    options = [
        part for option, file in zip(OUTPUTS, files, strict=True) for part in (option, str(file))
    ]
    child(where, "-m", "flows", "replay", str(path), "--quiet", *options)
    return [file.read_bytes() for file in files]


def compare(path: Path, builds: dict[str, Path], rounds: int, repeats: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        written = {}
        for name, where in builds.items():
            (Path(tmp) / name).mkdir()
            written[name] = outputs(where, path, Path(tmp) / name)
    base, new = builds
    if written[base] != written[new]:
        raise BenchFailure(f"the builds write different outputs for {path.name}")
    times: dict[str, list[float]] = {name: [] for name in builds}
    order = list(builds)
    for round_ in range(rounds):
        for name in order if round_ % 2 == 0 else order[::-1]:
            times[name].append(best_time(builds[name], path, repeats))
        log(
            f"{path.name} round {round_ + 1}/{rounds}: "
            + ", ".join(f"{name} {times[name][-1]:.3f} s" for name in order)
        )
    ratios = [b / a for a, b in zip(times[base], times[new], strict=True)]
    return [
        f"{path.name}: {new} against {base}, {rounds} rounds, outputs identical",
        *(
            f"  {name}: best {min(spent):.3f} s, median {statistics.median(spent):.3f} s"
            for name, spent in times.items()
        ),
        f"  per-round ratio {new} / {base}: median {statistics.median(ratios):.3f} "
        f"(from {min(ratios):.3f} to {max(ratios):.3f})",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.compare", description=__doc__)
    parser.add_argument("revision", help="the build to compare the working tree's with")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="replays per child (default 3)")
    parser.add_argument("--mix", choices=("default", "order-heavy", "both"), default="both")
    args = parser.parse_args(argv)
    files = mixes({"quick": True})  # the quick bench's files
    shown = list(files) if args.mix == "both" else [args.mix]
    try:
        builds = {args.revision: build(args.revision), "working tree": ROOT}
        report = [
            line for mix in shown for line in compare(files[mix], builds, args.rounds, args.repeats)
        ]
    except (BenchFailure, subprocess.CalledProcessError) as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
