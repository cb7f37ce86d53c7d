"""`make bench`: run the benchmarks, print one table, write `.bench/results.{md,json}`.

    python -m tests.bench.run [--quick] [--long] [--only NAME ...]

Benchmarks (in this order; `kafka` feeds `latency` its load rate, `floor` feeds
`kafka` the floor): floor, instructions, kafka, latency, state, scrape, longrun. Figures are
printed with their targets, never asserted; a benchmark fails only when the
system under test misbehaves (wrong counts, a crash), and the others still run.
Inputs are generated once into `.bench/data` (about 2.2 GB for a full run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import orjson

from tests.bench.common import BENCH_DIR, BenchFailure, Figure, OthersCpu, log, machine
from tests.bench.kafka_bench import bench_kafka, bench_latency
from tests.bench.replay_bench import (
    bench_floor,
    bench_instructions,
    bench_longrun,
    bench_scrape,
    bench_state,
)

Bench = Callable[[dict[str, Any]], list[Figure]]
BENCHMARKS: dict[str, Bench] = {
    "floor": bench_floor,
    "instructions": bench_instructions,
    "kafka": bench_kafka,
    "latency": bench_latency,
    "state": bench_state,
    "scrape": bench_scrape,
    "longrun": bench_longrun,
}
HEADER = ["benchmark", "figure", "value", "target", "status"]


def table(rows: list[list[str]]) -> str:
    """A Markdown table (also readable as plain text)."""
    escaped = [[cell.replace("|", "\\|") for cell in row] for row in rows]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in escaped]
    return "\n".join(lines)


def report(info: dict[str, Any], mode: str, figures: list[Figure], failed: list[str]) -> str:
    out = [
        f"# opscockpit benchmarks ({mode})",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, "
        f"Python {info['python']} ({info['python_executable']}), "
        f"bytewax {info['bytewax']}, {info['os']}; "
        f"load average at start {info['load_average_at_start']}.",
        "",
        table([figure.row() for figure in figures]),
    ]
    if failed:
        out += ["", "Failed (the system under test misbehaved):", ""]
        out += [f"- {line}" for line in failed]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller inputs: everything in a few minutes"
    )
    parser.add_argument(
        "--long", action="store_true", help="longrun on 10M events even with --quick"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these: {', '.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    selected = [name for name in BENCHMARKS if not args.only or name in args.only]
    mode = "quick: reduced sizes" if args.quick else "full"
    if args.long:
        mode += ", --long"
    info = machine()
    ctx: dict[str, Any] = {"quick": args.quick, "long": args.long, "raw": {}}
    figures: list[Figure] = []
    failed: list[str] = []
    timings: dict[str, float] = {}
    for name in selected:
        log(f"--- {name}")
        started, others = time.monotonic(), OthersCpu()
        try:
            found = BENCHMARKS[name](ctx)
            noise, stolen = others.cores(), others.stolen()
            ctx["raw"].setdefault("other_processes_cores", {})[name] = noise
            ctx["raw"].setdefault("steal_cores", {})[name] = stolen
            figures += found
            figures.append(
                Figure(
                    found[0].bench if found else name,
                    "noise: CPU used by other processes; steal",
                    f"{noise:.2f} of {os.cpu_count()} cores on average; "
                    f"hypervisor steal {stolen:.2f} cores",
                )
            )
        except BenchFailure as exc:
            failed.append(f"{name}: {exc}")
            log(f"{name} FAILED: {exc}")
        except Exception:
            failed.append(f"{name}: error in the benchmark\n{traceback.format_exc()}")
            log(f"{name} ERROR:\n{traceback.format_exc()}")
        timings[name] = time.monotonic() - started
        log(f"{name} took {timings[name]:.0f} s")
    text = report(info, mode, figures, failed)
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "results.md").write_text(text)
    raw = {
        "mode": mode,
        "machine": info,
        "benchmarks": selected,
        "seconds": timings,
        "figures": [figure.__dict__ for figure in figures],
        "failed": failed,
        "raw": ctx["raw"],
    }
    (BENCH_DIR / "results.json").write_bytes(
        orjson.dumps(raw, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    print(text)
    log(f"written {BENCH_DIR / 'results.md'} and {BENCH_DIR / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
