"""The two builds: every module with a compiled build was compiled from the
sources here (not older ones), the constants each build computes with agree, and
OPSCOCKPIT_PURE_PYTHON=1 runs every one of them interpreted."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows import build, pgo
from flows.runtime import consts, core

SCRIPT = """
import importlib, json
from flows import build
from flows.runtime import core
names = build.compiled_modules()[len(build.C_MODULES):]
modules = [importlib.import_module(name) for name in names]
constants = {
    module.__name__: {k: v for k, v in vars(module).items() if k.isupper() and type(v) is int}
    for module in modules
}
compiled = [module.__name__ for module in modules if build.is_compiled(module)]
print(json.dumps({"constants": constants, "compiled": compiled, "core": core.constants()}))
"""


def constants_of(pure: bool) -> dict[str, object]:
    env = {**os.environ}
    env.pop(build.PURE_ENV, None)
    if pure:
        env[build.PURE_ENV] = "1"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def compiled_here() -> list[str]:
    """The modules this process loads compiled."""
    here = []
    for name in build.compiled_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # a C module not built, or not used in the interpreted run
            continue
        if build.is_compiled(module):
            here.append(name)
    return here


def test_every_module_with_a_compiled_build_runs_compiled() -> None:
    if build.PURE_ENV in os.environ:
        pytest.skip("this run is the interpreted build's")
    here = compiled_here()
    if not here:
        pytest.skip("nothing compiled here (no C compiler at install?)")
    missing = sorted(set(build.compiled_modules()) - set(here))
    assert not missing, f"built without (run `make install`): {', '.join(missing)}"


def test_the_compiled_modules_are_no_older_than_their_sources() -> None:
    """A .py or .pxd changed after its module was compiled: the compiled build
    would run the old code (`make` rebuilds it)."""
    stale = []
    for name in compiled_here():
        module = importlib.import_module(name)
        built = Path(str(module.__file__)).stat().st_mtime
        source = build.PACKAGE.parent / Path(*name.split("."))
        paths = (source.with_suffix(suffix) for suffix in (".py", ".pxd", ".c"))
        stale += [str(path) for path in paths if path.exists() and path.stat().st_mtime > built]
    assert not stale, f"changed since compiled (run `make install`): {', '.join(stale)}"


def test_no_compiled_module_is_left_counting_branches() -> None:
    """`make install` rebuilds every module from its training's branch counts
    (flows.pgo): one left instrumented runs slower and writes counts at each exit."""
    here = compiled_here()
    assert here, "no compiled module is loaded here"
    counting = [name for name in here if pgo.INSTRUMENTED in module_bytes(name)]
    assert not counting, f"instrumented (run `make install`): {', '.join(counting)}"


def module_bytes(name: str) -> bytes:
    return Path(str(importlib.import_module(name).__file__)).read_bytes()


FAILS_ON_PROFILES = """#!/bin/sh
case "$*" in *-fprofile-*) echo "unknown flag" >&2; exit 1;; esac
exec gcc "$@"
"""


def test_a_compiler_without_gcc_profiles_leaves_the_build_as_it_was(tmp_path: Path) -> None:
    """`python -m flows.pgo` where the C compiler cannot build with GCC's profile
    flags says so, exits 0 (the install goes on) and leaves the modules as pip
    built them."""
    compiler = tmp_path / "cc"
    compiler.write_text(FAILS_ON_PROFILES)
    compiler.chmod(0o755)
    tree = build.PACKAGE.parent
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(tree / name, tmp_path / name)
    shutil.copytree(build.PACKAGE, tmp_path / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    built = {path: path.read_bytes() for path in (tmp_path / "flows").rglob("*.so")}
    assert len(built) == len(build.compiled_modules())
    command = [sys.executable, "-m", "flows.pgo"]
    env = {**os.environ, "CC": str(compiler)}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "needs GCC" in done.stdout
    assert {path: path.read_bytes() for path in (tmp_path / "flows").rglob("*.so")} == built


def test_both_builds_compute_with_the_same_constants() -> None:
    """core.pxd and the .pxd enums repeat constants of the .py files for C (the
    compiled build shows those; the others are C globals of one source line)."""
    interpreted, compiled = constants_of(pure=True), constants_of(pure=False)
    assert interpreted["compiled"] == []
    shown: dict[str, dict[str, int]] = compiled["constants"]  # type: ignore[assignment]
    assert {"PLACED", "EXPIRED", "STAGE_PACKED"} <= shown["flows.entities.orders"].keys()
    for module, values in shown.items():
        assert values.items() <= interpreted["constants"][module].items(), module  # type: ignore[index]
    expected = {name: getattr(consts, name) for name in interpreted["core"]}  # type: ignore[union-attr]
    assert interpreted["core"] == compiled["core"] == expected
    assert core.constants() == expected


def test_the_compiled_sources_are_found_by_their_directive() -> None:
    names = build.compiled_modules()
    assert {"flows.runtime.core", "flows.entities.orders", "flows.kpis.orders"} <= set(names)
    assert "flows.kpis.upgrade" not in names  # plain Python: runs once per restore


WITHOUT_CYTHON = """
import sys
sys.modules["cython"] = None  # not installed: flows/_cython.py stands in for it
from flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_install_without_cython_replays_the_same(tmp_path: Path) -> None:
    """Cython is needed only to compile: where it is not installed the modules run
    interpreted on flows/_cython.py, which must have all they use of Cython."""
    events = tmp_path / "events.jsonl"
    simulate = ["-m", "flows.cli", "simulate", "--out", str(events), "--hours", "26"]
    subprocess.run([sys.executable, *simulate, "--scale", "0.05"], check=True)
    written = {}
    for name, command in {"usual": ["-m", "flows.cli"], "bare": ["-c", WITHOUT_CYTHON]}.items():
        out = tmp_path / name
        out.mkdir()
        env = {**os.environ, build.PURE_ENV: "1"} if name == "bare" else os.environ
        files = [
            *("--metrics-file", str(out / "metrics.prom")),
            *(f for kind in ("kpis", "alerts", "dlq") for f in (f"--{kind}", str(out / kind))),
        ]
        subprocess.run(
            [sys.executable, *command, "replay", str(events), "--quiet", *files],
            check=True,
            env=env,
        )
        written[name] = {path.name: path.read_bytes() for path in out.iterdir()}
    assert written["bare"] == written["usual"]
    assert b"sku_health" in written["usual"]["kpis"]
