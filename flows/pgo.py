"""Profile-guided build of the compiled modules: `python -m flows.pgo` (run by
`make install` after pip has built them plainly).

GCC lays out and inlines the C that Cython writes best when it knows which
branches run: the modules are built once instrumented, replay a simulated day of
each mix (the simulator's default and the order-heavy one, with a seed the
benchmarks do not use), and are built again from those counts. Code the training
never ran (Kafka, HTTP) is optimised as without profiles
(`-fprofile-partial-training`). It is the same C, so the results cannot change;
replays ran ~4% faster (README, Performance). A compiler that cannot build with
GCC's profile flags leaves pip's build as it was, and the install goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from flows import build
from flows.commands import say

ROOT = build.PACKAGE.parent
TRAINING_SEED = 7  # the benchmarks use 3
TRAINING_HOURS = 26  # past a day's close
TRAINING_START = "2026-03-02T00:00:00Z"
INSTRUMENTED = b"__gcov_"  # in a module built with -fprofile-generate


def compile_modules(flags: str) -> None:
    """setup.py build_ext in place, every module again, with `flags` added to
    Python's own C flags (the CFLAGS variable replaces those)."""
    env = {**os.environ, "CFLAGS": f"{sysconfig.get_config_var('CFLAGS')} {flags}"}
    jobs = str(os.cpu_count() or 1)
    command = [sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--force", "-j", jobs]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"setup.py build_ext failed: {done.stderr.strip()[-500:]}")


def compiled_files() -> list[Path]:
    """The built module files in the source tree."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    return [ROOT / (name.replace(".", "/") + suffix) for name in build.compiled_modules()]


def instrumented() -> list[str]:
    """The built modules that still count branches (each would write profiles at exit)."""
    return [
        str(path)
        for path in compiled_files()
        if path.exists() and INSTRUMENTED in path.read_bytes()
    ]


def train(into: Path) -> int:
    """Replay a simulated period of each mix with every family and output: the
    events replayed. Run in a child, which writes the counts as it exits."""
    from flows.replay import replay
    from flows.settings import Settings
    from flows.simulator import DEFAULT_PROFILE, ORDER_HEAVY, write_lines
    from flows.timeutil import parse_time

    start = parse_time(TRAINING_START)
    events = 0
    for name, profile in (("default", DEFAULT_PROFILE), ("order-heavy", ORDER_HEAVY)):
        path = into / f"{name}.jsonl"
        with path.open("wb") as handle:
            events += write_lines(
                handle, TRAINING_SEED, start, start + TRAINING_HOURS * 3_600_000_000, profile
            )
        out = into / name
        replay(
            Settings(),
            str(path),
            dlq=out.with_suffix(".dlq"),
            alerts=out.with_suffix(".alerts"),
            kpis=out.with_suffix(".kpis"),
        )
    return events


def profile_guided_build() -> str:
    """Instrument, train, rebuild: what was done, in a line."""
    if not (ROOT / "setup.py").exists():
        raise RuntimeError(f"no setup.py in {ROOT}: a profile-guided build needs the sources")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="opscockpit-pgo-") as tmp:
        counts = Path(tmp) / "counts"
        try:
            compile_modules(f"-fprofile-generate={counts}")
        except RuntimeError:
            if instrumented():
                compile_modules("")
            return "the C compiler cannot build with profiles (this needs GCC): built without"
        if not any(path.exists() for path in compiled_files()):
            return "no module was compiled (no C compiler?): they run interpreted"
        child = [sys.executable, "-m", "flows.pgo", "--train", tmp]
        done = subprocess.run(child, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the training replay failed: {done.stderr.strip()[-500:]}")
        events = int(done.stdout)
        compile_modules(f"-fprofile-use={counts} -fprofile-partial-training -Wno-missing-profile")
    missing = [str(path) for path in compiled_files() if not path.exists()]
    if missing:
        raise RuntimeError(f"not built with the profiles: {', '.join(missing)}")
    left = instrumented()
    if left:
        raise RuntimeError(f"still instrumented after the rebuild: {', '.join(left)}")
    seconds = time.perf_counter() - started
    return (
        f"profile-guided build of {len(compiled_files())} modules, trained on {events:,} "
        f"simulated events, in {seconds:.0f} s"
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["--train"] and len(argv) == 2:
        print(train(Path(argv[1])))
        return 0
    if argv:
        say("usage: python -m flows.pgo")
        return 2
    try:
        print(profile_guided_build())
        return 0
    except (RuntimeError, OSError) as error:
        failure = str(error)
    try:
        compile_modules("")  # never leave the modules instrumented or half built
    except RuntimeError as error:
        say(f"opscockpit: {failure}; then {error}")
        return 1
    say(f"opscockpit: {failure}; the modules were built without profiles")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
