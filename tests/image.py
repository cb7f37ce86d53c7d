"""The Docker image's build stage, run on this host: `make image-check` (CI runs
it after `make test`), where Docker cannot run.

It copies the build context that docker/Dockerfile.dockerignore lets through,
then runs the build stage's instructions from its WORKDIR on: COPY, ENV and RUN.
The system packages before that are the host's own (`make install` installed the
C compiler). An absolute path an ENV names (the venv's) is moved under a
temporary root, and `python` is this host's base interpreter. Then it checks what
the image would take. Every compiled module must be built with profiles, with the
same bytes as in the sources, and none instrumented. `opscockpit replay`, run
outside the sources, must write the same alerts and KPI records as this checkout's
own build.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "docker" / "Dockerfile"
IGNORE = REPO / "docker" / "Dockerfile.dockerignore"

# What the image's Python would say of the venv's modules, run from outside the
# sources (so that `flows` is the venv's).
REPORT = """
import json
from flows import pgo
print(json.dumps({
    "root": str(pgo.ROOT),
    "files": [str(path) for path in pgo.compiled_files()],
    "missing": [str(path) for path in pgo.compiled_files() if not path.exists()],
    "instrumented": pgo.instrumented(),
}))
"""


def instructions(text: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continued lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def build_stage(text: str) -> list[tuple[str, str]]:
    """The build stage's instructions from its WORKDIR on."""
    steps = instructions(text)
    starts = [index for index, (word, _) in enumerate(steps) if word == "FROM"]
    stage = steps[starts[0] + 1 : starts[1]]
    workdir = next(index for index, (word, _) in enumerate(stage) if word == "WORKDIR")
    return stage[workdir + 1 :]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the .dockerignore `patterns` leave out the context's `path`: the
    last pattern matching it or a folder above it decides (`!` lets it in)."""
    left_out = False
    for pattern in patterns:
        wanted = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        expression = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        parts = path.split("/")
        if any(re.fullmatch(expression, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            left_out = not wanted
    return left_out


def context_files() -> list[str]:
    """The repository's files that the build context holds."""
    patterns = [
        line.strip()
        for line in IGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [path for path in listed if not ignored(path, patterns)]


def copy(arguments: str, workdir: Path, files: list[str]) -> None:
    """A COPY of context files (into a folder: `./`) and folders (their contents)."""
    *sources, destination = shlex.split(arguments)
    for source in sources:
        if source in files:
            target = workdir / destination
            if destination.endswith("/"):
                target = target / Path(source).name
            pairs = [(source, target)]
        else:
            inside = [path for path in files if path.startswith(source + "/")]
            pairs = [
                (path, workdir / destination / Path(path).relative_to(source)) for path in inside
            ]
        if not pairs:
            raise SystemExit(f"image-check: COPY {source}: not in the build context")
        for path, target in pairs:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, target)


def host_env() -> dict[str, str]:
    """This environment without what would point Python at this checkout or its
    venv (PYTHONPATH, VIRTUAL_ENV and the like)."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PYTHON") and name != "VIRTUAL_ENV"
    }


def run_stage(root: Path) -> dict[str, str]:
    """The build stage in `root`: the workdir `root/src`; return its ENV."""
    workdir = root / "src"
    workdir.mkdir()
    shims = root / "bin"
    shims.mkdir()
    (shims / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    files = context_files()
    env = host_env()
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    declared: dict[str, str] = {}
    for word, arguments in build_stage(DOCKERFILE.read_text()):
        if word == "COPY":
            copy(arguments, workdir, files)
        elif word == "ENV":
            name, _, value = arguments.partition("=")
            moved = str(root / value.lstrip("/")) if value.startswith("/") else value
            declared[name] = env[name] = moved
        elif word == "RUN":
            print(f"image-check: RUN {arguments[:100]}...", flush=True)
            subprocess.run(["bash", "-ec", arguments], cwd=workdir, env=env, check=True)
        else:
            raise SystemExit(f"image-check: {word} in the build stage is not emulated")
    return declared


def replay_outputs(opscockpit: Path, events: Path, into: Path, env: dict[str, str]) -> bytes:
    """The alerts and KPI records of a replay, as bytes."""
    into.mkdir()
    alerts, kpis = into / "alerts.jsonl", into / "kpis.jsonl"
    command = [str(opscockpit), "replay", str(events), "--quiet"]
    command += ["--alerts", str(alerts), "--kpis", str(kpis)]
    subprocess.run(command, cwd=into, env=env, check=True)
    return alerts.read_bytes() + kpis.read_bytes()


def check(root: Path, declared: dict[str, str]) -> None:
    """What the image takes: its venv's modules and a replay through them."""
    venv = Path(declared["VENV"])
    env = host_env()
    report = json.loads(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", REPORT],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    if report["missing"] or report["instrumented"]:
        raise SystemExit(f"image-check: modules missing or instrumented: {report}")
    for installed in map(Path, report["files"]):
        built = root / "src" / installed.relative_to(report["root"])
        if not built.exists() or built.read_bytes() != installed.read_bytes():
            raise SystemExit(f"image-check: {installed} is not the profile-guided {built}")
    events = root / "events.jsonl"
    simulate = [str(venv / "bin" / "opscockpit"), "simulate", "--out", str(events)]
    subprocess.run([*simulate, "--hours", "26", "--seed", "5"], env=env, check=True)
    image = replay_outputs(venv / "bin" / "opscockpit", events, root / "image", env)
    ours = replay_outputs(Path(sys.executable).parent / "opscockpit", events, root / "ours", env)
    if not image or image != ours:
        raise SystemExit("image-check: the image's replay wrote other outputs than this build's")
    print(f"image-check: {len(report['files'])} modules built with profiles; the same outputs")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="opscockpit-image-") as tmp:
        root = Path(tmp)
        check(root, run_stage(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
