"""The container files agree with each other, with the settings and with the nginx files.

Dockerfile, .dockerignore and compose.yaml are read and cross-checked without Docker: the
paths they name exist, every ``TICKCAST_*`` variable is a setting that accepts its value,
ports and addresses line up with deploy/nginx/, and the image's health check and build-time
check run for real against this checkout. With nginx installed, ``nginx -t`` checks the
configuration compose mounts.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tickcast.settings import Settings

from .support import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NGINX = ROOT / "deploy" / "nginx"
NGINX_MOUNT = "/etc/nginx"
NODES = ("tickcast-1", "tickcast-2")
NGINX_BIN = Path("/usr/sbin/nginx")


# Dockerfile ---------------------------------------------------------------------------


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """Each build stage's instructions as (INSTRUCTION, arguments), continuations joined
    and comments dropped."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        instruction, _, args = (pending + stripped).partition(" ")
        pending = ""
        if instruction.upper() == "FROM":
            stages.append([])
        assert stages, f"Dockerfile: {instruction} before the first FROM"
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions(stage, "ENV"):
        for item in shlex.split(args):
            key, eq, value = item.partition("=")
            assert eq, f"Dockerfile: use ENV KEY=value, not {args!r}"
            env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    """The JSON array of a CMD/HEALTHCHECK CMD (exec form: no shell inside the image)."""
    assert args.startswith("["), f"expected the exec form [...], got {args!r}"
    value = yaml.safe_load(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


@pytest.fixture(scope="module")
def runtime_stage() -> list[tuple[str, str]]:
    return dockerfile_stages(DOCKERFILE.read_text())[-1]


def healthcheck_command(stage: list[tuple[str, str]]) -> list[str]:
    (args,) = instructions(stage, "HEALTHCHECK")
    _, cmd, command = args.partition(" CMD ")
    assert cmd, f"HEALTHCHECK without CMD: {args!r}"
    return exec_form(command.strip())


def healthcheck_port(stage: list[tuple[str, str]]) -> int:
    """The port the health check asks when TICKCAST_PORT is not set."""
    code = healthcheck_command(stage)[-1]
    found = re.search(r"(?:getenv|get)\('TICKCAST_PORT', '(\d+)'\)", code) or re.search(
        r"127\.0\.0\.1:(\d+)/", code
    )
    assert found, f"no port in the health check: {code}"
    return int(found.group(1))


# .dockerignore ------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last matching pattern decides, and a
    pattern matching a directory matches everything under it (Docker's rules)."""
    parts = path.split("/")
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _pattern_regex(raw.removeprefix("!").strip().strip("/"))
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# compose.yaml -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    for key, value in env.items():
        assert isinstance(value, str), f"{key}: quote {value!r} (compose wants strings)"
    return dict(env)


def node_settings(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, str], Settings]:
    """A node's TICKCAST_* environment in the container (the image's ENV, then compose's)
    and the Settings it makes, read from the environment as the server reads them."""
    image_env = dockerfile_env(dockerfile_stages(DOCKERFILE.read_text())[-1])
    env = {**image_env, **service_env(compose["services"][name])}
    env = {k: v for k, v in env.items() if k.startswith("TICKCAST_")}
    with monkeypatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("TICKCAST_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        settings = Settings(_env_file=None)
    return env, settings


def published_container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


# nginx files --------------------------------------------------------------------------


def nginx_directives(path: Path, name: str) -> list[str]:
    """The arguments of every ``name ...;`` directive in an nginx file (comments dropped)."""
    text = re.sub(r"#[^\n]*", "", path.read_text())
    return [m.group(1).strip() for m in re.finditer(rf"(?:^|[;{{}}\s]){name}\s+([^;]*);", text)]


def upstream_servers(path: Path) -> list[tuple[str, int]]:
    servers = []
    for args in nginx_directives(path, "server"):
        address = args.split()[0]
        host, colon, port = address.rpartition(":")
        servers.append((host, int(port)) if colon else (address, 80))
    return servers


def listen_ports(path: Path) -> set[int]:
    return {int(args.split()[0].rsplit(":", 1)[-1]) for args in nginx_directives(path, "listen")}


def nginx_mount_source(compose: dict[str, Any]) -> Path:
    for volume in compose["services"]["nginx"].get("volumes", []):
        source, _, rest = str(volume).partition(":")
        if rest.split(":")[0].rstrip("/") == NGINX_MOUNT:
            return (ROOT / source).resolve()
    raise AssertionError(f"nginx: nothing mounted at {NGINX_MOUNT}")


# Tests --------------------------------------------------------------------------------


def test_compose_has_redis_two_nodes_and_nginx(compose: dict[str, Any]) -> None:
    """compose.yaml parses and runs the four services, on declared networks and volumes."""
    services = compose["services"]
    assert set(services) == {"redis", *NODES, "nginx"}
    for name, service in services.items():
        for network in service.get("networks", []):
            assert network in compose.get("networks", {}), f"{name}: undeclared {network}"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose.get("volumes", {}), f"{name}: undeclared {source}"


def test_every_referenced_path_exists(compose: dict[str, Any]) -> None:
    """Build contexts, Dockerfiles and bind-mounted files or folders are in the repository."""
    checked = 0
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: no build context {context}"
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / (dockerfile or "Dockerfile")).is_file(), f"{name}: no Dockerfile"
            checked += 1
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                path = ROOT / source
                assert path.exists(), f"{name}: {source} does not exist"
                assert not source.endswith("/") or path.is_dir(), f"{name}: {source} not a dir"
                checked += 1
    assert checked >= len(NODES) + 1


def test_the_build_context_holds_what_the_build_copies() -> None:
    """Every COPY source exists and .dockerignore keeps its tracked files; pyproject's
    readme and package folder are copied; .git, .venv, tests and a local .env stay out."""
    patterns = dockerignore_patterns()
    copied: list[str] = []
    for stage in dockerfile_stages(DOCKERFILE.read_text()):
        for args in instructions(stage, "COPY"):
            if "--from=" in args:
                continue
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            copied += [source.rstrip("/") for source in words[:-1]]
    assert copied
    tracked = subprocess.run(
        ["git", "ls-files", "--", *copied], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert any(f == source or f.startswith(source + "/") for f in tracked), source
    left_out = [f for f in tracked if dockerignored(f, patterns)]
    assert not left_out, f".dockerignore leaves out files the build copies: {left_out[:5]}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = [
        project["project"]["readme"],
        *project["tool"]["setuptools"]["packages"]["find"]["where"],
    ]
    for path in needed:
        assert path in copied, f"pip install needs {path}: COPY it"
    for path in (".git/HEAD", ".venv/bin/python", "tests/support.py", ".env", "bench-results/x"):
        assert dockerignored(path, patterns), f"{path} would be sent to the build"
    for path in ("src/tickcast/__pycache__/api.cpython-311.pyc", "src/tickcast.egg-info/PKG-INFO"):
        assert dockerignored(path, patterns), f"{path}: build output of this checkout"


def test_every_tickcast_variable_is_a_setting_and_accepted(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each TICKCAST_* name in the Dockerfile and compose.yaml is a setting, and each node's
    environment makes valid Settings carrying those values."""
    fields = Settings.model_fields
    image_env = dockerfile_env(dockerfile_stages(DOCKERFILE.read_text())[-1])
    names = [k for k in image_env if k.startswith("TICKCAST_")]
    for service in compose["services"].values():
        names += [k for k in service_env(service) if k.startswith("TICKCAST_")]
    unknown = [n for n in names if n.removeprefix("TICKCAST_").lower() not in fields]
    assert not unknown, f"not settings: {unknown}"
    node_ids = set()
    for name in NODES:
        env, settings = node_settings(compose, name, monkeypatch)
        assert env["TICKCAST_HOST"] == settings.host == "0.0.0.0"
        assert settings.redis_url == env["TICKCAST_REDIS_URL"]
        node_ids.add(settings.node_id)
    assert node_ids == set(NODES), "each node needs its own TICKCAST_NODE_ID"


def test_nodes_reach_redis_and_believe_only_their_network(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes wait for a healthy Redis that their URL names, and trust forwarded addresses
    from the compose network (where nginx is) only."""
    services = compose["services"]
    subnets = [
        ipaddress.ip_network(pool["subnet"])
        for network in compose["networks"].values()
        for pool in network["ipam"]["config"]
    ]
    assert subnets
    for name in NODES:
        service = services[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        _, settings = node_settings(compose, name, monkeypatch)
        url = urlparse(settings.redis_url)
        assert url.hostname in services, f"{name}: {url.hostname} is not a service"
        assert (url.port or 6379) == 6379
        trusted = [ipaddress.ip_network(entry) for entry in settings.trusted_proxies]
        assert trusted, f"{name}: TICKCAST_TRUSTED_PROXIES is empty behind nginx"
        for subnet in subnets:
            covered = any(subnet.subnet_of(t) for t in trusted if t.version == subnet.version)
            assert covered, f"{name}: nginx's network {subnet} is not in {trusted}"
        assert all(any(t.subnet_of(s) for s in subnets) for t in trusted), (
            f"{name}: trusts addresses outside the compose network: {trusted}"
        )


def test_redis_keeps_its_data_and_never_evicts(compose: dict[str, Any]) -> None:
    """Redis runs with AOF, noeviction and a memory cap, on a volume, with a ping health check."""
    redis = compose["services"]["redis"]
    command = redis["command"]
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    options = dict(zip(words[1::2], words[2::2], strict=False))
    assert words[0] == "redis-server"
    assert options.get("--appendonly") == "yes"
    assert options.get("--maxmemory-policy") == "noeviction"
    assert re.fullmatch(r"\d+[kmg]b?", options.get("--maxmemory", ""), re.IGNORECASE)
    assert "--port" not in options or options["--port"] == "6379"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    test = redis["healthcheck"]["test"]
    assert "redis-cli ping" in " ".join(test if isinstance(test, list) else [test])


def test_the_image_runs_tickcast_unprivileged_with_a_health_check(
    runtime_stage: list[tuple[str, str]],
) -> None:
    """Slim Python 3.11 stages; the runtime stage runs `tickcast serve` as a non-root user,
    stops with SIGTERM, exposes the port and checks /healthz."""
    for stage in dockerfile_stages(DOCKERFILE.read_text()):
        base = instructions(stage, "FROM")[0].split()[0]
        assert base == "python:3.11-slim-bookworm", base
    (user,) = instructions(runtime_stage, "USER")
    assert all(part not in ("root", "0") for part in user.split(":")), user
    assert instructions(runtime_stage, "STOPSIGNAL") == ["SIGTERM"]
    (cmd,) = instructions(runtime_stage, "CMD")
    assert exec_form(cmd) == ["tickcast", "serve"]
    assert "/healthz" in healthcheck_command(runtime_stage)[-1]
    assert dockerfile_env(runtime_stage)["TICKCAST_HOST"] == "0.0.0.0"


def test_ports_line_up(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, runtime_stage: list[tuple[str, str]]
) -> None:
    """The nodes' port is the image's EXPOSE, the health check's and the one nginx's upstream
    servers use; nginx publishes the port it listens on."""
    ports = {node_settings(compose, name, monkeypatch)[1].port for name in NODES}
    assert len(ports) == 1, f"the nodes listen on different ports: {ports}"
    (port,) = ports
    assert instructions(runtime_stage, "EXPOSE") == [str(port)]
    assert healthcheck_port(runtime_stage) == port
    servers = upstream_servers(NGINX / "tickcast-nodes.conf")
    assert sorted(host for host, _ in servers) == sorted(NODES)
    assert {p for _, p in servers} == {port}
    published = published_container_ports(compose["services"]["nginx"])
    assert published
    assert published == listen_ports(NGINX / "tickcast-listen.conf")


def test_nginx_finds_its_files_in_the_mounted_folder(compose: dict[str, Any]) -> None:
    """The mount replaces the image's /etc/nginx/ (read-only): nginx.conf and every file it
    includes must come from deploy/nginx/, and nginx must not write there."""
    source = nginx_mount_source(compose)
    assert source == NGINX.resolve()
    volume = next(v for v in compose["services"]["nginx"]["volumes"] if NGINX_MOUNT in str(v))
    assert str(volume).endswith(":ro"), f"mount {NGINX_MOUNT} read-only: {volume}"
    conf = NGINX / "nginx.conf"
    includes = nginx_directives(conf, "include")
    assert {"tickcast-nodes.conf", "tickcast-listen.conf"} <= {Path(i).name for i in includes}
    for include in includes:
        relative = include.removeprefix(NGINX_MOUNT + "/")
        assert not Path(relative).is_absolute(), f"include {include}: outside the mount"
        matches = list(NGINX.glob(relative)) if "*" in relative else [NGINX / relative]
        for path in matches:
            assert path.is_file(), f"include {include}: no {path} (the mount hides the image's)"
    for directive in ("pid", "error_log", "access_log", "client_body_temp_path"):
        for args in nginx_directives(conf, directive):
            target = args.split()[0]
            assert target in ("off", "stderr", "/dev/stderr", "/dev/stdout") or (
                target.startswith("/") and not target.startswith(NGINX_MOUNT)
            ), f"{directive} {target}: inside the read-only {NGINX_MOUNT}"


def test_the_health_check_runs_against_a_real_server(
    runtime_stage: list[tuple[str, str]], tmp_path: Path
) -> None:
    """The image's HEALTHCHECK command passes against `tickcast serve` and fails where
    nothing answers."""
    python, *rest = healthcheck_command(runtime_stage)
    assert python == "python"
    command = [sys.executable, *rest]

    def check(port: int) -> int:
        env = {"TICKCAST_PORT": str(port), "PATH": "/usr/bin:/bin"}
        return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode

    with running_server(tmp_path, ["--source", "sim"], ready="/healthz") as server:
        assert check(server.port) == 0
    assert check(free_port()) != 0


def test_the_build_time_fast_path_check_passes_here(runtime_stage: list[tuple[str, str]]) -> None:
    """The image build fails unless the fast write path is available; the same check passes
    with this checkout's dependencies."""
    runs = [a for a in instructions(runtime_stage, "RUN") if "fast_path_problem" in a]
    assert len(runs) == 1
    first = shlex.split(runs[0].split("&&")[0])
    assert first[:2] == ["python", "-c"]
    done = subprocess.run([sys.executable, "-c", first[2]], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()


def nginx_copy(tmp_path: Path) -> Path:
    """deploy/nginx/ copied, with the nodes' names replaced by 127.0.0.1 (nginx resolves
    upstream names while checking)."""
    prefix = tmp_path / "nginx"
    shutil.copytree(NGINX, prefix)
    nodes = prefix / "tickcast-nodes.conf"
    text = nodes.read_text()
    for name in NODES:
        text = re.sub(rf"\b{re.escape(name)}:", "127.0.0.1:", text)
    nodes.write_text(text)
    return prefix


@pytest.mark.skipif(not NGINX_BIN.exists(), reason="nginx is not installed")
def test_nginx_accepts_the_mounted_configuration(tmp_path: Path) -> None:
    """`nginx -t` passes on deploy/nginx/ as mounted (upstream names aside)."""
    nginx_prefix = nginx_copy(tmp_path)
    conf = nginx_prefix / "nginx.conf"
    command = [str(NGINX_BIN), "-t", "-q", "-p", f"{nginx_prefix}/", "-c", str(conf)]
    command += ["-e", str(nginx_prefix / "error.log")]
    if not nginx_directives(conf, "pid"):
        command += ["-g", f"pid {nginx_prefix / 'nginx.pid'};"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
