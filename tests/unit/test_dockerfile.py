"""The container image, as far as it can be checked without a Docker engine: the Dockerfile
is read line by line, and what it runs is run against the operator's own code — its
command line through the real argument parser, its health check against the real
health endpoint."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import pytest

from chatops import cli, telemetry

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, op: str) -> str:
        found = [args for instruction, args in self.instructions if instruction == op]
        assert found, f"the stage FROM {self.base} has no {op}"
        return found[-1]

    def all(self, op: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == op]


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        op, _, args = (pending + stripped).partition(" ")
        pending = ""
        yield op.upper(), args.strip()


def stages() -> list[Stage]:
    args: dict[str, str] = {}
    found: list[Stage] = []
    for op, rest in instructions((ROOT / "Dockerfile").read_text()):
        if op == "ARG" and not found:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            words = rest.split()
            base = words[0]
            for name, value in args.items():
                base = base.replace(f"${{{name}}}", value).replace(f"${name}", value)
            alias = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            found.append(Stage(base, alias))
        else:
            assert found, f"{op} before the first FROM"
            found[-1].instructions.append((op, rest))
    return found


def final() -> Stage:
    return stages()[-1]


def exec_form(args: str) -> list[str]:
    """A JSON-array instruction's argv; the shell form is refused (no signal forwarding
    to the operator, and a shell the image may not keep)."""
    assert args.startswith("["), f"not in exec form: {args}"
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def cmd() -> list[str]:
    return exec_form(final().last("CMD"))


def healthcheck() -> list[str]:
    options, _, command = final().last("HEALTHCHECK").partition("CMD ")
    assert all(o.startswith("--") for o in options.split()), options
    return exec_form(command.strip())


def test_it_is_a_multi_stage_build_ending_on_slim_python() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    assert final().base == "python:3.11-slim"
    builder = all_stages[0]
    assert any("pip install" in run and "venv" in run for run in builder.all("RUN"))
    assert any(f"--from={builder.name}" in c for c in final().all("COPY"))


def test_the_final_stage_is_the_builders_venv_and_user_on_the_base() -> None:
    """Nothing is installed or run in the final stage: what it adds to the base is the
    venv and the user's /etc/passwd line, copied from the builder (so the base needs no
    shell, and no build tool or cache reaches the image)."""
    builder = stages()[0].name
    assert final().all("RUN") == []
    copied = [c.split() for c in final().all("COPY")]
    assert all(words[0] == f"--from={builder}" for words in copied), copied
    assert sorted(" ".join(words[1:]) for words in copied) == [
        "/etc/passwd /etc/group /etc/",
        "/opt/chatops /opt/chatops",
    ]


def test_the_operator_runs_as_a_numeric_non_root_user() -> None:
    """A numeric uid lets Kubernetes check `runAsNonRoot` without reading /etc/passwd."""
    user = final().last("USER").split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert int(user) == 10001


def test_nothing_is_written_outside_tmp() -> None:
    """With a read-only root filesystem: no bytecode caches, HOME and TMPDIR on /tmp."""
    env: dict[str, str] = {}
    for args in final().all("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == env["TMPDIR"] == "/tmp"


def test_the_entrypoint_is_the_packages_console_script() -> None:
    (script,) = exec_form(final().last("ENTRYPOINT"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert script in scripts, f"{script} is not in [project.scripts]"
    module, _, function = scripts[script].partition(":")
    assert callable(getattr(import_module(module), function))


def test_the_default_command_is_one_the_operator_accepts() -> None:
    args = cli.parser().parse_args(cmd())
    assert args.command == "run"
    assert args.func.__module__ == "chatops.commands.run"
    assert args.leader_elect and args.log_format == "json"
    assert args.metrics_port > 0


def test_the_exposed_port_is_the_metrics_port() -> None:
    args = cli.parser().parse_args(cmd())
    assert final().last("EXPOSE").split() == [str(args.metrics_port)]


def test_the_healthcheck_asks_healthz_on_the_metrics_port() -> None:
    args = cli.parser().parse_args(cmd())
    assert f"http://127.0.0.1:{args.metrics_port}/healthz" in " ".join(healthcheck())


def _run_healthcheck(port: int) -> int:
    """The image's HEALTHCHECK command against the operator's endpoint on `port`."""
    metrics_port = cli.parser().parse_args(cmd()).metrics_port
    argv = [a.replace(f":{metrics_port}/", f":{port}/") for a in healthcheck()]
    assert argv[0] == "python"
    return subprocess.run([sys.executable, *argv[1:]], timeout=30).returncode


@pytest.fixture
def working(monkeypatch: pytest.MonkeyPatch) -> telemetry.Health:
    """The operator's health as a leader whose API server answers."""
    health = telemetry.Health()
    health.leading()
    health.answered()
    monkeypatch.setattr(telemetry, "health", health)
    return health


@pytest.fixture
def served() -> Iterator[int]:
    server = telemetry.serve(0)
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_the_healthcheck_passes_while_the_operator_works(
    working: telemetry.Health, served: int
) -> None:
    assert _run_healthcheck(served) == 0


def test_the_healthcheck_fails_when_the_leaders_loop_is_hung(
    working: telemetry.Health, served: int
) -> None:
    working.last_beat = time.monotonic() - 2 * telemetry.Health.STALE
    assert _run_healthcheck(served) != 0


def test_the_healthcheck_fails_when_the_api_server_refuses_the_credentials(
    working: telemetry.Health, served: int
) -> None:
    working.not_answered("the API server answered 401 Unauthorized")
    assert _run_healthcheck(served) != 0


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**` any directories, `*` and `?` within one."""
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
        out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token) or re.escape(
            token
        )
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        regex = _pattern(pattern.removeprefix("!"))
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not pattern.startswith("!")
    return ignored


def test_the_build_context_has_what_the_build_copies_and_no_local_state() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    copied = []
    for stage in stages():
        for args in stage.all("COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            if not any(a.startswith("--from") for a in args.split()):
                copied += words[:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not _ignored(source, patterns), f"COPY {source}, but .dockerignore drops it"
    assert not _ignored("operator/chatops/cli.py", patterns)
    for local in (".chatops-env/kubeconfig", ".venv/bin/python", ".git/config", "tests/e2e"):
        assert _ignored(local, patterns), f"{local} would be sent to the Docker daemon"
    assert _ignored("operator/chatops/__pycache__/cli.cpython-311.pyc", patterns)
