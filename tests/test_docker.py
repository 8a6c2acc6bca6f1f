"""docker/: every command the images and compose.yaml start is a valid `tunesched` invocation.

No Docker engine is needed: Dockerfiles and compose.yaml are parsed here (compose.yaml with
PyYAML), and each `tunesched ...` argv is checked with click's own parser against the real CLI
(`cli.main.cli`) without invoking any command.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml

from cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile*") if p.suffix != ".dockerignore")
SHELLS = {"sh", "bash", "dash"}
SEPARATORS = set(";&|()\n")  # tokens made only of these end a shell command
REDIRECTS = set("<>")  # tokens made only of these take the next word as a file name


# --------------------------------------------------------------------------- Dockerfiles

Form = list[str] | str | None  # exec form (JSON list), shell form (string), or absent


@dataclass
class Image:
    path: Path
    base: str = ""
    entrypoint: Form = None
    cmd: Form = None
    healthcheck: Form = None
    volumes: list[str] = field(default_factory=list)
    user: str | None = None
    runs: list[str] = field(default_factory=list)


def logical_lines(text: str) -> list[str]:
    """Dockerfile instructions: comments dropped, backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and pending):
            continue  # comments (and blank lines) inside a continuation are dropped too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def exec_or_shell(rest: str) -> list[str] | str:
    """`["a", "b"]` (exec form) -> list; anything else (shell form) -> the string."""
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            return rest  # Docker runs an invalid JSON array as a shell command, too
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return rest


def parse_dockerfile(text: str, path: Path = Path("Dockerfile")) -> Image:
    image = Image(path)
    for line in logical_lines(text):
        word, _, rest = re.sub(r"\s+", " ", line, count=1).partition(" ")
        word = word.upper()
        rest = rest.strip()
        if word == "FROM":  # a new stage starts from scratch (the last stage is the image)
            image = Image(path, base=rest.split()[0])
        elif word == "ENTRYPOINT":
            image.entrypoint = exec_or_shell(rest)
            image.cmd = None  # Docker: setting ENTRYPOINT resets a CMD set before it
        elif word == "CMD":
            image.cmd = exec_or_shell(rest)
        elif word == "HEALTHCHECK":
            options = re.match(r"((?:--\S+\s+)*)(.*)", rest, re.S)
            assert options is not None
            body = options.group(2)
            if body.upper() == "NONE":
                image.healthcheck = None
            else:
                assert body[:4].upper() == "CMD ", f"{path}: bad HEALTHCHECK {rest!r}"
                image.healthcheck = exec_or_shell(body[4:])
        elif word == "VOLUME":
            value = exec_or_shell(rest)
            image.volumes += value if isinstance(value, list) else value.split()
        elif word == "USER":
            image.user = rest
        elif word == "RUN":
            image.runs.append(rest)
    return image


def shell_argv(form: list[str] | str) -> list[str]:
    return form if isinstance(form, list) else ["/bin/sh", "-c", form]


def effective_argv(entrypoint: Form, cmd: Form) -> list[str]:
    """What a container runs, by Docker's ENTRYPOINT/CMD rules."""
    if entrypoint is None:
        return shell_argv(cmd) if cmd is not None else []
    if isinstance(entrypoint, str):  # shell-form ENTRYPOINT ignores CMD
        return shell_argv(entrypoint)
    return [*entrypoint, *(shell_argv(cmd) if cmd is not None else [])]


def tunesched_invocations(argv: list[str]) -> list[list[str]]:
    """Every `tunesched ...` argv in a process argv, looking inside `sh -c SCRIPT` too."""
    if not argv:
        return []
    if PurePosixPath(argv[0]).name in SHELLS and len(argv) >= 3 and argv[1] == "-c":
        return script_invocations(argv[2])
    if PurePosixPath(argv[0]).name == "tunesched":
        return [list(argv)]
    return []


def script_invocations(script: str) -> list[list[str]]:
    """`tunesched ...` commands in a shell script (`exec` and `VAR=value` prefixes skipped)."""
    lexer = shlex.shlex(script.replace("\\\n", " "), posix=True,
                        punctuation_chars="();<>|&\n")  # newlines separate commands too
    lexer.whitespace_split = True
    lexer.whitespace = " \t\r"
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif set(token) <= SEPARATORS:
            commands.append([])
        elif set(token) & REDIRECTS and set(token) <= REDIRECTS | {"&"}:
            skip_next = True  # `> file`, `>& 2`; a preceding fd number such as `2>` goes too
            if commands[-1] and commands[-1][-1].isdigit():
                commands[-1].pop()
        else:
            commands[-1].append(token)
    found = []
    for words in commands:
        while words and (words[0] in {"exec", "env", "time"} or re.match(r"^\w+=", words[0])):
            words = words[1:]
        found += tunesched_invocations(words)
    return found


# --------------------------------------------------------------------------- compose.yaml

def load_compose(text: str) -> Any:
    """compose.yaml as data (yaml.safe_load); a key repeated in one mapping is an error.

    PyYAML lets the last duplicate win, but docker compose rejects such a file.
    """
    def no_duplicates(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key, value in node.value:
                assert key.value not in seen, (
                    f"line {key.start_mark.line + 1}: duplicate key {key.value!r}")
                seen.add(key.value)
                no_duplicates(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                no_duplicates(item)

    root = yaml.compose(text)
    if root is not None:
        no_duplicates(root)
    return yaml.safe_load(text)


def compose_argv(service: dict[str, Any], image: Image | None) -> list[str]:
    """What a compose service runs: its entrypoint/command over the image's, by compose's rules."""
    def form(value: Any) -> Form:
        if value is None or isinstance(value, list):
            return value
        return shlex.split(value)  # compose splits a string command itself (no shell)

    entrypoint = image.entrypoint if image else None
    cmd = image.cmd if image else None
    if "entrypoint" in service:
        entrypoint, cmd = form(service["entrypoint"]), None  # overriding it drops the image CMD
    if "command" in service:
        cmd = form(service["command"])
    return effective_argv(entrypoint, cmd)


# --------------------------------------------------------------------------- click

def check_invocation(argv: list[str], volumes: Sequence[str] = (),
                     group: click.Group = cli) -> click.Context:
    """Parse `tunesched ARGS` with the real CLI without invoking it; returns the leaf context.

    An existing-path check (click.Path(exists=True)) is skipped for values on one of the
    container's `volumes`: those paths exist inside the container, not on this machine.
    """
    assert PurePosixPath(argv[0]).name == "tunesched", argv
    assert not any("$" in a for a in argv), f"cannot check a command with variables: {argv}"
    ctx = group.make_context("tunesched", list(argv[1:]), resilient_parsing=False)
    command: click.Command = group
    while isinstance(command, click.Group):
        args = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not args:
            raise click.UsageError("missing command", ctx)
        name, sub, rest = command.resolve_command(ctx, args)
        assert name is not None and sub is not None
        command = relax_container_paths(sub, name, rest, ctx, volumes)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def relax_container_paths(command: click.Command, name: str, rest: list[str],
                          parent: click.Context, volumes: Sequence[str]) -> click.Command:
    """A copy of `command` whose Path parameters do not require values on `volumes` to exist."""
    try:
        probe = command.make_context(name, list(rest), parent=parent, resilient_parsing=True)
        raw = command.make_parser(probe).parse_args(args=list(rest))[0]
    except click.ClickException:
        return command  # the real parse reports it
    params = []
    for param in command.params:
        value = raw.get(param.name)
        values = list(value) if isinstance(value, list | tuple) else [value]
        if (isinstance(param.type, click.Path) and param.type.exists and values
                and all(isinstance(v, str) and on_volume(v, volumes) for v in values)):
            param = copy.copy(param)
            param.type = copy.copy(param.type)
            param.type.exists = False
        params.append(param)
    relaxed = copy.copy(command)
    relaxed.params = params
    return relaxed


def assert_valid(invocations: list[tuple[str, list[str], Sequence[str]]]) -> None:
    """Check every (where, argv, volumes); fail once, listing every invalid command."""
    problems = []
    for where, argv, volumes in invocations:
        try:
            check_invocation(argv, volumes)
        except click.ClickException as exc:
            problems.append(f"{where}: `{shlex.join(argv)}`: {exc.format_message()}")
    assert not problems, "invalid tunesched commands:\n" + "\n".join(problems)


def option(argv: list[str], name: str) -> str | None:
    """The value of `--name X` / `--name=X` in argv (last one wins), else None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def on_volume(path: str, mounts: Sequence[str]) -> bool:
    p = PurePosixPath(path)
    return p.is_absolute() and any(p.is_relative_to(PurePosixPath(m)) for m in mounts)


def cpu_set(spec: str | None) -> set[int]:
    """`0-1,4` -> {0, 1, 4}."""
    cpus: set[int] = set()
    for part in (spec or "").split(","):
        if part:
            low, _, high = part.partition("-")
            cpus |= set(range(int(low), int(high or low) + 1))
    return cpus


def subcommand(argv: list[str]) -> str:
    words = [a for a in argv[1:] if not a.startswith("-")]
    return words[0] if words else ""


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def images() -> dict[str, Image]:
    assert DOCKERFILES, "no docker/Dockerfile.*"
    return {p.name: parse_dockerfile(p.read_text(), p) for p in DOCKERFILES}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_compose(COMPOSE.read_text())
    assert isinstance(data, dict), f"{COMPOSE}: not a mapping"
    return data


def service_image(compose: dict[str, Any], service: dict[str, Any]) -> Image | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    dockerfile = (COMPOSE.parent / build.get("context", ".") / build.get("dockerfile",
                                                                          "Dockerfile"))
    assert dockerfile.is_file(), f"compose builds from missing {dockerfile}"
    return parse_dockerfile(dockerfile.read_text(), dockerfile)


def service_mounts(compose: dict[str, Any], name: str) -> dict[str, str]:
    """Container path -> volume name (or host path, for a bind mount) for a service's mounts."""
    declared = compose.get("volumes") or {}
    mounts = {}
    for entry in compose["services"][name].get("volumes") or []:
        source, target = entry.split(":")[:2]
        assert source.startswith(("/", ".", "~")) or source in declared, (
            f"{name}: volume {source!r} is not declared at top level")
        mounts[target] = source
    return mounts


def compose_invocations(compose: dict[str, Any]) -> dict[str, list[list[str]]]:
    return {name: tunesched_invocations(compose_argv(svc, service_image(compose, svc)))
            for name, svc in compose["services"].items()}


# --------------------------------------------------------------------------- parser self-tests

@pytest.mark.parametrize(("text", "expected"), [
    ('CMD ["tunesched", "jobs"]', [["tunesched", "jobs"]]),
    ("CMD tunesched jobs --scheduler 'a:1'", [["tunesched", "jobs", "--scheduler", "a:1"]]),
    ('ENTRYPOINT ["tunesched"]\nCMD ["runner", "--work-dir", "/w"]',
     [["tunesched", "runner", "--work-dir", "/w"]]),
    ('ENTRYPOINT ["/usr/local/bin/tunesched", "-v"]\nCMD ["jobs"]',
     [["/usr/local/bin/tunesched", "-v", "jobs"]]),
    ('CMD ["jobs"]\nENTRYPOINT ["tunesched"]', [["tunesched"]]),  # ENTRYPOINT resets CMD
    ('ENTRYPOINT tunesched jobs\nCMD ["ignored"]', [["tunesched", "jobs"]]),
    ('ENTRYPOINT ["sh", "-c", "mkdir -p /w && exec tunesched runner \\"$@\\"", "x"]',
     [["tunesched", "runner", "$@"]]),
    ("CMD set -e; \\\n  # comment inside a continuation\n  A=1 exec tunesched \\\n  jobs",
     [["tunesched", "jobs"]]),
    ('CMD ["bash", "-c", "tunesched jobs >/tmp/j 2>&1\\ntunesched runners|cat"]',
     [["tunesched", "jobs"], ["tunesched", "runners"]]),
    ('FROM a AS build\nCMD ["tunesched", "jobs"]\nFROM b\nCMD ["python"]', []),
])
def test_dockerfile_parser(text: str, expected: list[list[str]]) -> None:
    image = parse_dockerfile("FROM base\n" + text)
    assert tunesched_invocations(effective_argv(image.entrypoint, image.cmd)) == expected


def test_compose_override_rules() -> None:
    image = parse_dockerfile('FROM x\nENTRYPOINT ["tunesched"]\nCMD ["jobs"]')
    assert compose_argv({}, image) == ["tunesched", "jobs"]
    assert compose_argv({"command": ["runners"]}, image) == ["tunesched", "runners"]
    assert compose_argv({"entrypoint": "tunesched -v"}, image) == ["tunesched", "-v"]


def test_load_compose_rejects_duplicate_keys() -> None:
    assert load_compose("a:\n  b: 1\n  c: [1, 2]\n") == {"a": {"b": 1, "c": [1, 2]}}
    with pytest.raises(AssertionError, match="line 3: duplicate key 'b'"):
        load_compose("a:\n  b: 1\n  b: 2\n")


def test_check_invocation_uses_click_without_invoking() -> None:
    invoked = []

    @click.group()
    def toy() -> None:
        invoked.append("group")

    @toy.command()
    @click.argument("model")
    @click.option("--trials", type=int, required=True)
    @click.option("--work-dir", type=click.Path(exists=True, file_okay=False))
    def submit(model: str, trials: int, work_dir: str | None) -> None:
        invoked.append("submit")

    ok = check_invocation(["tunesched", "submit", "m.onnx", "--trials", "3"], group=toy)
    assert ok.params["trials"] == 3 and ok.info_name == "submit"
    for bad in (["nope"], [], ["submit", "m", "--trials", "x"], ["submit", "m"],
                ["submit", "m", "--trials", "3", "--bogus"], ["submit", "m", "--trials=3", "x"],
                ["submit", "m", "--trials", "3", "--work-dir", "/no/such/dir"]):
        with pytest.raises(click.UsageError):
            check_invocation(["tunesched", *bad], group=toy)
    on_vol = ["tunesched", "submit", "m", "--trials", "3", "--work-dir", "/vol/work"]
    assert check_invocation(on_vol, ["/vol"], group=toy).params["work_dir"] == "/vol/work"
    with pytest.raises(click.BadParameter):
        check_invocation(on_vol, ["/other"], group=toy)
    assert invoked == []


# --------------------------------------------------------------------------- the images

def test_expected_files_exist() -> None:
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile.scheduler", "Dockerfile.runner", "Dockerfile.runner-cuda"} <= names
    assert COMPOSE.is_file() and (DOCKER / "README.md").is_file()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_starts_a_valid_tunesched_command(dockerfile: Path) -> None:
    image = parse_dockerfile(dockerfile.read_text(), dockerfile)
    invocations = tunesched_invocations(effective_argv(image.entrypoint, image.cmd))
    assert invocations, f"{dockerfile.name} starts no tunesched command"
    for argv in invocations:
        assert_valid([(dockerfile.name, argv, image.volumes)])
        for flag in ("--state", "--work-dir"):
            path = option(argv, flag)
            assert path is None or on_volume(path, image.volumes), (
                f"{dockerfile.name}: {flag} {path} is not on a VOLUME {image.volumes}")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_build_recipe(dockerfile: Path) -> None:
    image = parse_dockerfile(dockerfile.read_text(), dockerfile)
    expected_base = ("nvidia/cuda:12.4.1-runtime-ubuntu22.04" if "cuda" in dockerfile.name
                     else "python:3.11-slim-bookworm")
    assert image.base == expected_base
    assert image.user not in (None, "root", "0"), f"{dockerfile.name} runs as root"
    steps = " ;; ".join(image.runs)
    generate = steps.find("python -m proto.generate")
    install = steps.find("pip install --no-cache-dir --no-deps .")
    requirements = steps.find("pip install --no-cache-dir -r requirements.lock")
    assert -1 < requirements < generate < install, (
        f"{dockerfile.name}: want requirements, then proto.generate, then the non-editable install")
    if "runner" in dockerfile.name:
        assert re.search(r"apt-get install[^;]*\bg\+\+", steps), f"{dockerfile.name} lacks g++"
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert ignore.is_file() and ".venv" in ignore.read_text().split()


def test_cuda_runner_offers_gpus(images: dict[str, Image]) -> None:
    image = images["Dockerfile.runner-cuda"]
    (argv,) = tunesched_invocations(effective_argv(image.entrypoint, image.cmd))
    assert subcommand(argv) == "runner" and option(argv, "--gpus") == "auto"


# --------------------------------------------------------------------------- compose

def test_compose_commands_are_valid(compose: dict[str, Any]) -> None:
    checks = []
    for name, invocations in compose_invocations(compose).items():
        mounts = service_mounts(compose, name)
        for argv in invocations:
            checks.append((f"compose service {name}", argv, list(mounts)))
            for flag in ("--state", "--work-dir"):
                path = option(argv, flag)
                assert path is None or on_volume(path, list(mounts)), (
                    f"compose {name}: {flag} {path} is not on a mounted volume {mounts}")
    assert_valid(checks)


def test_compose_topology(compose: dict[str, Any]) -> None:
    services = compose["services"]
    invocations = compose_invocations(compose)
    assert {"scheduler", "runner-1", "runner-2"} <= set(services)
    assert all(len(v) == 1 for v in invocations.values()), invocations
    argv = {name: found[0] for name, found in invocations.items()}
    assert subcommand(argv["scheduler"]) == "scheduler"
    runners = sorted(n for n in services if subcommand(argv[n]) == "runner")
    assert runners == ["runner-1", "runner-2"]

    listen = option(argv["scheduler"], "--listen")
    state = option(argv["scheduler"], "--state")
    assert listen and state
    port = listen.rsplit(":", 1)[1]
    scheduler_volumes = set(service_mounts(compose, "scheduler").values())

    work_volumes = set()
    for name in runners:
        assert option(argv[name], "--scheduler") == f"scheduler:{port}", name
        depends = services[name].get("depends_on") or {}
        assert (depends.get("scheduler") or {}).get("condition") == "service_healthy", name
        work_dir = option(argv[name], "--work-dir")
        assert work_dir, f"{name} has no --work-dir"
        mounts = service_mounts(compose, name)
        (volume,) = (v for t, v in mounts.items() if on_volume(work_dir, [t]))
        work_volumes.add(volume)
        assert volume not in scheduler_volumes, "runners must not share the scheduler's volume"
    assert len(work_volumes) == 1, "runners on one box share one work-dir volume"
    assert len({option(argv[n], "--host-id") for n in runners}) == 1, "one host id per box"
    assert None not in {option(argv[n], "--host-id") for n in runners}
    cores = [cpu_set(option(argv[n], "--cores")) for n in runners]
    assert all(cores) and len(set.union(*cores)) == sum(map(len, cores)), (
        "runners on one box offer disjoint --cores")
    assert set(compose["volumes"]) == scheduler_volumes | work_volumes


# --------------------------------------------------------------------------- health checks

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_code(test: list[str] | str, where: str, port: str) -> str:
    assert isinstance(test, list), f"{where}: health check must be exec form"
    if test[0] == "CMD":
        test = test[1:]
    assert test[:2] == ["python", "-c"] and len(test) == 3, f"{where}: want python -c CODE"
    code = test[2]
    compile(code, where, "exec")
    assert "grpc_health.v1" in code and "curl" not in code
    assert f"127.0.0.1:{port}" in code, f"{where}: health check does not probe port {port}"
    return code.replace(f"127.0.0.1:{port}", "127.0.0.1:{port}")


def health_checks(compose: dict[str, Any], images: dict[str, Image]) -> list[tuple[str, str]]:
    port = option(compose_invocations(compose)["scheduler"][0], "--listen").rsplit(":", 1)[1]
    checks = [("compose scheduler", health_code(
        compose["services"]["scheduler"]["healthcheck"]["test"], "compose", port))]
    image = images["Dockerfile.scheduler"]
    image_port = option(tunesched_invocations(effective_argv(image.entrypoint, image.cmd))[0],
                        "--listen").rsplit(":", 1)[1]
    checks.append(("Dockerfile.scheduler",
                   health_code(image.healthcheck, "Dockerfile.scheduler", image_port)))
    return checks


def test_health_checks_talk_grpc_health(compose: dict[str, Any],
                                        images: dict[str, Image]) -> None:
    """Run each health one-liner against a real gRPC health server: 0 if SERVING, else not."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        for where, template in health_checks(compose, images):
            code = template.replace("{port}", str(port))
            for status, want_ok in ((health_pb2.HealthCheckResponse.SERVING, True),
                                    (health_pb2.HealthCheckResponse.NOT_SERVING, False)):
                servicer.set("", status)
                done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                      text=True, timeout=60)
                assert (done.returncode == 0) == want_ok, (where, status, done.stderr)
    finally:
        server.stop(None)


# --------------------------------------------------------------------------- README

def readme_commands() -> list[list[str]]:
    text = (DOCKER / "README.md").read_text()
    found = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        script = "\n".join(line for line in block.replace("\\\n", " ").splitlines()
                           if not line.lstrip().startswith("#"))
        for argv in script_invocations(script):
            found.append(argv)
        # `docker ... exec SERVICE tunesched ...` / `docker run ... IMAGE tunesched ...`
        for line in script.splitlines():
            words = shlex.split(line)
            if words[:1] == ["docker"] and "tunesched" in words:
                found.append(words[words.index("tunesched"):])
    return found


def test_readme_commands_are_valid() -> None:
    commands = readme_commands()
    assert {subcommand(a) for a in commands} >= {"runner", "submit", "jobs", "runners"}
    assert_valid([("docker/README.md", argv, ["/var/lib/tunesched"]) for argv in commands])
