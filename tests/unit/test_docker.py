"""docker/: the two images and the compose stack, checked without a Docker engine.

The compose file is parsed with PyYAML (anchors and merge keys resolved as Compose resolves
them) and checked for its services, references to files that must exist, well-formed images,
ports and volumes, healthchecks behind every ``service_healthy`` condition, and secrets that only
ever come from ``${VAR}`` references filled from docker/.env. ``docker compose config`` runs too
when the Compose plugin is installed (it is not on the CI machine).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from skewless.runtime.settings import is_remote, load_settings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKER_CONF = REPO / "conf" / "docker.yaml"
CONTAINER_CONF = "/opt/skewless/conf/docker.yaml"

EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "minio",
    "minio-init",
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "jobs",
    "feature-server",
}
ONE_SHOT = {"minio-init", "airflow-init"}

# A variable reference as Compose interpolates it: ${VAR}, ${VAR:?msg}, ${VAR?msg}, ${VAR:-x},
# ${VAR-x}; $$ escapes a dollar.
REFERENCE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|ACCESS_KEY|(^|_)KEY$|AUTH$")
IMAGE = re.compile(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")
PORT = re.compile(r"^127\.0\.0\.1:(?P<host>\d{1,5}):(?P<container>\d{1,5})(?:/(?:tcp|udp))?$")


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def with_defaults(text: str) -> str:
    """``text`` with ``${VAR:-default}`` replaced by its default (ports and the like)."""
    return REFERENCE.sub(lambda m: m["arg"] if m["op"] in (":-", "-") else m[0], text)


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


# --- Dockerfiles ---------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, container path)
    runs: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile: enough of its instructions to check what the image holds."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), rest)  # ARG defaults
        if instruction == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        elif instruction == "FROM":
            words = rest.split()
            base = words[0]
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=alias))
        elif instruction == "WORKDIR":
            stages[-1].workdir = rest
        elif instruction == "ENV":
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                stages[-1].env[key] = value
        elif instruction == "USER":
            stages[-1].user = rest
        elif instruction == "RUN":
            stages[-1].runs.append(rest)
        elif instruction == "ENTRYPOINT":
            stages[-1].entrypoint = yaml.safe_load(rest)
        elif instruction == "COPY":
            words = rest.split()
            if any(word.startswith("--from") for word in words):
                continue
            paths = [word for word in words if not word.startswith("--")]
            sources, dest = paths[:-1], paths[-1]
            if not dest.startswith("/"):
                dest = f"{stages[-1].workdir.rstrip('/')}/{dest.removeprefix('./')}"
            stages[-1].copies.append((sources, dest.rstrip("/")))
    return stages


def dockerfiles() -> dict[str, Path]:
    """Every Dockerfile a compose service builds, by image name."""
    found = {}
    for service in services().values():
        if build := service.get("build"):
            found[service["image"]] = (DOCKER / build["context"] / build["dockerfile"]).resolve()
    return found


def copied_paths(stage: Stage) -> set[str]:
    return {dest for _, dest in stage.copies}


def test_the_stack_has_its_services_and_nothing_else() -> None:
    assert set(services()) == EXPECTED_SERVICES
    assert compose()["name"] == "skewless"
    # The CLI and the feature server run on demand only.
    assert services()["jobs"]["profiles"] == ["jobs"]
    assert services()["feature-server"]["profiles"] == ["serve"]
    always = [s for name, s in services().items() if name not in {"jobs", "feature-server"}]
    assert all("profiles" not in s for s in always)


def test_both_images_are_built_from_the_repository_root_with_existing_dockerfiles() -> None:
    built = dockerfiles()
    assert set(built) == {"skewless-jobs:dev", "skewless-airflow:dev"}
    assert built["skewless-jobs:dev"] == DOCKER / "jobs.Dockerfile"
    assert built["skewless-airflow:dev"] == DOCKER / "airflow.Dockerfile"
    for name, service in services().items():
        if build := service.get("build"):
            assert (DOCKER / build["context"]).resolve() == REPO, name
            assert (REPO / build["dockerfile"]).is_file(), name
        for entry in service.get("env_file") or []:
            path = entry["path"] if isinstance(entry, dict) else entry
            assert (DOCKER / path).is_file(), f"{name}: env_file {path} does not exist"
    assert ENV_EXAMPLE.is_file()
    assert (REPO / ".dockerignore").is_file()


def test_images_are_well_formed_and_pinned() -> None:
    for name, service in services().items():
        image = service["image"]
        assert IMAGE.match(image), f"{name}: malformed image {image!r}"
        assert not image.endswith(":latest"), f"{name}: {image} is not pinned"


@pytest.mark.parametrize("dockerfile", ["jobs.Dockerfile", "airflow.Dockerfile"])
def test_dockerfile_builds_from_the_lock_on_python_311_with_java_17(dockerfile: str) -> None:
    stages = parse_dockerfile(DOCKER / dockerfile)
    final = stages[-1]
    assert {stage.base for stage in stages} == {"python:3.11-slim-bookworm"}
    runs = "\n".join(run for stage in stages for run in stage.runs)
    assert "pip install --no-deps -r requirements.lock" in runs
    assert "pip install --no-deps ." in runs
    assert "pip check" in runs
    assert "openjdk-17-jre-headless" in runs
    # Every COPY source exists in the build context (the repository root).
    for stage in stages:
        for sources, _ in stage.copies:
            for source in sources:
                assert (REPO / source).exists(), f"{dockerfile}: COPY {source}: no such file"
    # The runtime stage: non-root, UTC, Java, the code where conf/docker.yaml expects it.
    assert final.user is not None
    uid, _, gid = final.user.partition(":")
    assert int(uid) >= 1000, "a numeric, non-root user"  # int(): numeric, as Kubernetes wants
    assert int(gid) >= 1000
    assert final.env["TZ"] == "UTC"
    assert final.env["JAVA_HOME"]
    assert final.entrypoint is not None
    assert final.entrypoint[:2] == ["tini", "--"]
    code = {f"/opt/skewless/{name}" for name in ("jobs", "dags", "conf", "feature_defs")}
    assert code <= copied_paths(final)


def test_the_entrypoints_run_skewless_and_airflow() -> None:
    jobs = parse_dockerfile(DOCKER / "jobs.Dockerfile")[-1]
    airflow = parse_dockerfile(DOCKER / "airflow.Dockerfile")[-1]
    assert jobs.entrypoint is not None
    assert airflow.entrypoint is not None
    assert jobs.entrypoint[-1] == "skewless"
    assert airflow.entrypoint[-1] == "airflow"
    assert airflow.env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/skewless/dags"
    assert jobs.user == airflow.user, "one uid in both images: both write the shared volumes"
    assert "apache-airflow==3.3.2" in (REPO / "requirements.lock").read_text(encoding="utf-8").split()
    for line in (DOCKER / "requirements-postgres.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9_.]*", line.strip()), line


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_entrypoint_script_dispatches(tmp_path: Path) -> None:
    for program in ("skewless", "spark-submit"):
        fake = tmp_path / program
        fake.write_text(f'#!/bin/sh\necho {program} "$@"\n', encoding="utf-8")
        fake.chmod(0o755)
    script = str(DOCKER / "entrypoint.sh")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}

    def run(*args: str) -> str:
        result = subprocess.run(["sh", script, *args], env=env, capture_output=True, text=True, check=True)
        return result.stdout.strip()

    assert run("skewless") == "skewless"
    assert run("skewless", "backfill", "v", "--start", "2024-01-01") == (
        "skewless backfill v --start 2024-01-01"
    )
    assert run("skewless", "--help") == "skewless --help"
    assert run("skewless", "spark-submit", "/opt/skewless/jobs/run_view.py") == (
        "spark-submit /opt/skewless/jobs/run_view.py"
    )


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    local = {".venv", ".git", ".skewless", "bench/data", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    assert local <= patterns
    assert {".env", "**/.env"} <= patterns
    stages = [stage for path in dockerfiles().values() for stage in parse_dockerfile(path)]
    copied = {source for stage in stages for sources, _ in stage.copies for source in sources}
    assert not copied & patterns, "the images copy what the context leaves out"


# --- compose: ports, volumes, dependencies, healthchecks -----------------------------------------


def test_ports_are_published_on_loopback_only() -> None:
    published = {}
    for name, service in services().items():
        for port in service.get("ports") or []:
            match = PORT.match(with_defaults(str(port)))
            assert match, f"{name}: malformed or non-loopback port {port!r}"
            assert 0 < int(match["host"]) < 65536
            assert 0 < int(match["container"]) < 65536
            published[int(match["host"])] = name
    assert published == {
        8080: "airflow-api-server",
        6379: "redis",
        9000: "minio",
        9001: "minio",
        8000: "feature-server",
    }


def test_volumes_are_declared_named_volumes_on_absolute_paths() -> None:
    declared = set(compose()["volumes"])
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes") or []:
            parts = str(volume).split(":")
            assert len(parts) in (2, 3), f"{name}: malformed volume {volume!r}"
            source, target = parts[0], parts[1]
            assert target.startswith("/"), f"{name}: {volume!r} has a relative target"
            if len(parts) == 3:
                assert parts[2] in ("ro", "rw"), f"{name}: {volume!r}"
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared


def test_dependencies_wait_for_health_or_completion() -> None:
    all_services = services()
    for name, service in all_services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in all_services[dependency], f"{dependency} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {dependency}: {condition}"
                assert dependency in ONE_SHOT
    for name in ONE_SHOT:
        assert all_services[name]["restart"] == "no"
    for name in ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor"):
        depends = all_services[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
    scheduler = all_services["airflow-scheduler"]["depends_on"]
    assert scheduler["airflow-api-server"]["condition"] == "service_healthy"  # the execution API


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        if name in ONE_SHOT or name == "jobs":
            continue
        test = service["healthcheck"]["test"]
        assert isinstance(test, list), name
        assert test[0] in ("CMD", "CMD-SHELL"), name
        assert len(test) > 1, name


def test_airflow_runs_three_components_on_postgres_with_the_local_executor() -> None:
    all_services = services()
    commands = {name: all_services[name]["command"] for name in all_services if name.startswith("airflow-")}
    assert commands == {
        "airflow-init": ["db", "migrate"],
        "airflow-api-server": ["api-server"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
    }
    for name in commands:
        env = environment(all_services[name])
        assert all_services[name]["image"] == "skewless-airflow:dev"
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"
        assert env["SKEWLESS_CONF"] == CONTAINER_CONF
    assert all_services["redis"]["image"].startswith("redis:7")
    assert all_services["minio"]["image"].startswith("minio/minio:RELEASE.")


# --- secrets --------------------------------------------------------------------------------------


def references(text: str) -> list[re.Match[str]]:
    return list(REFERENCE.finditer(text))


def test_secrets_only_come_from_variables_without_defaults() -> None:
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                match = REFERENCE.fullmatch(value)
                assert match, f"{name}: {key} is not a ${{VAR}} reference"
                assert match["op"] in (None, ":?", "?"), f"{name}: {key} has a default value"
            # Credentials inside a URL (scheme://user:password@host) are references too.
            for userinfo in re.findall(r"://([^/@\s]*)@", value):
                password = userinfo.partition(":")[2]
                match = REFERENCE.fullmatch(password)
                assert match, f"{name}: {key} has a literal password in its URL"
                assert match["op"] in (None, ":?", "?"), f"{name}: {key}: URL password has a default"
    # Nowhere in the file (commands included) does a secret-looking variable carry a default.
    for match in references(COMPOSE.read_text(encoding="utf-8")):
        if SECRET_NAME.search(match["name"]):
            assert match["op"] in (None, ":?", "?"), f"${{{match['name']}}} has a default value"


def test_env_example_lists_every_variable_and_holds_no_secret() -> None:
    example = env_file(ENV_EXAMPLE)
    text = COMPOSE.read_text(encoding="utf-8")
    required = {m["name"] for m in references(text) if m["op"] in (None, ":?", "?")}
    mentioned = {m["name"] for m in references(text)}
    assert required <= set(example), f"missing from .env.example: {sorted(required - set(example))}"
    assert set(example) <= mentioned, f"unused in compose.yaml: {sorted(set(example) - mentioned)}"
    secrets = {key for key in example if SECRET_NAME.search(key)}
    assert secrets == {
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_API_SECRET_KEY",
        "AIRFLOW_JWT_SECRET",
    }
    assert all(example[key] == "" for key in secrets), "the example must not hold secret values"
    assert "docker/.env" in (REPO / ".gitignore").read_text(encoding="utf-8").split()


def test_make_env_fills_every_secret(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    out = tmp_path / ".env"
    make_env = [sys.executable, str(DOCKER / "make_env.py"), "--output", str(out)]
    subprocess.run(make_env, check=True, capture_output=True)
    values = env_file(out)
    example = env_file(ENV_EXAMPLE)
    assert set(values) == set(example)
    assert all(values.values()), "every variable has a value"
    for key, value in example.items():
        if value:
            assert values[key] == value  # non-secret settings are kept as they are
        elif key.endswith("FERNET_KEY"):
            Fernet(values[key].encode())  # a valid key, or this raises
        else:
            assert re.fullmatch(r"[0-9a-f]{48}", values[key]), key  # URL-safe
    assert out.stat().st_mode & 0o077 == 0, "readable by its owner only"
    # An existing file is kept.
    again = subprocess.run(make_env, capture_output=True, text=True)
    assert again.returncode == 1
    assert env_file(out) == values


# --- conf/docker.yaml ---------------------------------------------------------------------------


def mount_targets(service: dict[str, Any]) -> set[str]:
    return {str(volume).split(":")[1] for volume in service.get("volumes") or []}


def test_docker_conf_loads_and_matches_the_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # never the repository's conf/local.yaml
    settings = load_settings(DOCKER_CONF, environ={})
    # The embedded Delta writer needs a local offline_root: an absolute path on a shared volume.
    assert not is_remote(settings.offline_root)
    assert settings.offline_root.startswith("/")
    assert settings.data_root.startswith("/")
    assert not settings.spark.submit
    assert "@" not in settings.redis_url, "the Redis password belongs in SKEWLESS_REDIS_URL"

    all_services = services()
    for name in ("jobs", "airflow-scheduler", "airflow-dag-processor", "feature-server"):
        assert settings.offline_root in mount_targets(all_services[name]), name
        assert environment(all_services[name])["SKEWLESS_CONF"] == CONTAINER_CONF, name
    for name in ("jobs", "airflow-scheduler"):
        assert settings.data_root in mount_targets(all_services[name]), name

    # What the config names inside the containers is what the images copy there.
    for path in dockerfiles().values():
        copied = copied_paths(parse_dockerfile(path)[-1])
        assert {settings.defs, str(settings.airflow.jobs_dir), str(Path(CONTAINER_CONF).parent)} <= copied

    # Inside the stack the Redis URL (with its password) comes from the environment.
    redis_url = environment(all_services["jobs"])["SKEWLESS_REDIS_URL"]
    assert redis_url.startswith("redis://:${REDIS_PASSWORD")
    assert redis_url.endswith("@redis:6379/0")
    overridden = load_settings(DOCKER_CONF, environ={"SKEWLESS_REDIS_URL": "redis://:pw@redis:6379/0"})
    assert overridden.redis_url == "redis://:pw@redis:6379/0"


# --- docker compose itself, where it is installed --------------------------------------------------


def compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@pytest.mark.skipif(not compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    subprocess.run([sys.executable, str(DOCKER / "make_env.py"), "--output", str(env)], check=True)
    command = ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env)]
    for profiles in ([], ["--profile", "jobs", "--profile", "serve"]):
        result = subprocess.run(
            [*command, *profiles, "config", "-q"], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
    # Without docker/.env values, Compose refuses to start and names the missing secret.
    bare = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bare.returncode != 0
    assert "PASSWORD" in bare.stderr or "SECRET" in bare.stderr or "FERNET" in bare.stderr
