"""docker/compose.yaml runs what scripts/stack.sh runs (the stack tested in test_celery_stack.py).

No container engine on this machine: the compose file is checked for structure here. Same services
(PostgreSQL, Redis, API server, scheduler, DAG processor, triggerer, a worker per queue), same
executor, broker, queues and variable names as scripts/stack-env.sh, a shared artifact volume, and
every secret it interpolates is in the committed docker/env.template (docker/.env is not committed).
"""

from __future__ import annotations

import re
import subprocess

import yaml

from pipelines.config import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW = ("api-server", "scheduler", "dag-processor", "triggerer", "worker-default",
           "worker-heavy")


def _stack_env() -> dict[str, str]:
    """What scripts/stack-env.sh exports over scripts/airflow-env.sh, for sample ports."""
    script = ("export STACK_DIR=$(mktemp -d) PG_PORT=5432 REDIS_PORT=6379; source scripts/stack-env.sh;"
              " env -0; rm -rf \"$STACK_DIR\"")
    out = subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, capture_output=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}, timeout=30)
    return dict(i.split("=", 1) for i in out.stdout.decode().split("\0") if "=" in i)


def _stack_services() -> dict[str, str]:
    """Service name -> its command line in scripts/stack.sh's start_service."""
    text = (REPO_ROOT / "scripts" / "stack.sh").read_text()
    body = text[text.index("start_service() {"):text.index("stop_stack() {")]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s+([a-z|-]+)\)\n(.*?);;", body,
                                                        re.M | re.S)}


def test_same_services_as_the_stack_script():
    stack = _stack_services()
    names = {n for key in stack for n in key.split("|")} - {"*"}
    assert names == {"postgres", "redis", *AIRFLOW}
    assert names <= set(SERVICES)
    for name in AIRFLOW:
        assert SERVICES[name]["image"] == "retrain-pipelines"
        assert "pipelines-data:/data" in SERVICES[name]["volumes"]  # the shared artifact store


def test_workers_listen_on_the_queues_of_the_stack_and_the_dag():
    stack = _stack_services()
    env = _stack_env()
    for worker, queue in (("worker-default", "default"), ("worker-heavy", "heavy")):
        cmd = SERVICES[worker]["command"]
        assert cmd[:3] == ["airflow", "celery", "worker"]
        assert cmd[cmd.index("--queues") + 1] == queue
        assert "--queues" in stack[worker]
    assert env["PIPELINES_HEAVY_QUEUE"] == SERVICES["api-server"]["environment"][
        "PIPELINES_HEAVY_QUEUE"] == "heavy"
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "default"


def test_same_executor_broker_and_variables_as_the_stack():
    env = _stack_env()
    compose_env = SERVICES["scheduler"]["environment"]
    for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CELERY__BROKER_URL",
                "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE", "PIPELINES_HEAVY_QUEUE",
                "PIPELINES_LINEAGE_URL", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert key in env and key in compose_env, key
    assert env["AIRFLOW__CORE__EXECUTOR"] == compose_env["AIRFLOW__CORE__EXECUTOR"] == \
        "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert compose_env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    for url in (env["PIPELINES_LINEAGE_URL"], compose_env["PIPELINES_LINEAGE_URL"]):
        assert url.startswith("postgresql+psycopg2://") and url.endswith("/lineage")
    for svc in ("postgres", "redis"):
        assert "healthcheck" in SERVICES[svc]
    assert set(SERVICES["scheduler"]["depends_on"]) | set(SERVICES["airflow-init"]["depends_on"]) \
        >= {"airflow-init", "postgres", "redis"}


def test_every_interpolated_secret_is_in_the_committed_template():
    text = (DOCKER / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    template = {line.split("=", 1)[0] for line in (DOCKER / "env.template").read_text().splitlines()
                if "=" in line and not line.startswith("#")}
    assert used and used <= template, used - template
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "docker/.env" in ignored


def test_dockerfile_ships_what_the_services_import():
    text = (DOCKER / "Dockerfile").read_text()
    for folder in ("pipelines", "transforms", "dags", "configs", "expectations"):
        assert f"COPY {folder} ./{folder}" in text, folder
    assert "uv sync --frozen --no-dev" in text  # the locked stack, Celery provider included
