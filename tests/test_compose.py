"""docker-compose.yml checked statically (no Docker engine where CI runs): it parses, every service can
be built or pulled, every file it mounts or builds exists, every service has a health check, and the
environment it sets is what Airflow, the DAGs and the package read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nugen_etl.airflow.settings import ACCOUNTS_VARIABLE, ALL_ENV, DEFAULT_CONNECTION, WAREHOUSE_CONNECTION

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}
# Options owned by providers the official image ships (not in airflow-core's config.yml).
PROVIDER_OPTIONS = {("celery", "broker_url"), ("celery", "result_backend")}
# Set for the official image's entrypoint / init, not Airflow config.
ENTRYPOINT_VARS = {
    "_AIRFLOW_DB_MIGRATE",
    "_AIRFLOW_WWW_USER_CREATE",
    "_AIRFLOW_WWW_USER_USERNAME",
    "_AIRFLOW_WWW_USER_PASSWORD",
    "DUMB_INIT_SETSID",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def test_compose_follows_the_official_airflow_pattern(compose: dict) -> None:
    assert "x-airflow-common" in compose
    assert AIRFLOW_SERVICES | {"postgres", "warehouse", "redis", "nugen-api", "metabase"} <= set(services(compose))
    common = compose["x-airflow-common"]
    assert common["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "build" in common, "the Airflow image is built from the project's Dockerfile"
    assert "pip install" not in COMPOSE.read_text(), "no pip install at container start"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        depends = services(compose)[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
    assert services(compose)["metabase"]["profiles"] == ["bi"]
    assert services(compose)["nugen-api"]["command"][:3] == ["simulate-api", "--host", "0.0.0.0"]
    assert services(compose)["nugen-api"]["entrypoint"] == ["nugen-etl"]


def test_every_service_has_an_image_or_build_and_a_healthcheck(compose: dict) -> None:
    for name, service in services(compose).items():
        assert service.get("image") or service.get("build"), name
        if name != "airflow-init":  # a one-shot job: others wait for its completion
            test = service.get("healthcheck", {}).get("test")
            assert test and test != ["NONE"], f"{name} has no health check"
    for name, service in services(compose).items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services(compose), f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services(compose)[dependency], dependency


def test_every_mounted_or_built_file_exists(compose: dict) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in services(compose).items():
        build = service.get("build")
        if build:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: {context / dockerfile}"
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named, f"{name} uses undeclared volume {source}"
        for env_file in service.get("env_file") or []:
            if isinstance(env_file, dict) and env_file.get("required") is False:
                continue
            assert (REPO / (env_file if isinstance(env_file, str) else env_file["path"])).is_file()
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.\d+\.\d+", dockerfile, re.M)
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.M):
        for part in source.split():
            assert (REPO / part).exists(), f"Dockerfile copies missing {part}"
    assert (REPO / ".env.example").is_file() and ".env" in (REPO / ".gitignore").read_text().split()


def airflow_config_options() -> set[tuple[str, str]]:
    spec = Path(__import__("airflow").__file__).parent / "config_templates" / "config.yml"
    return {(section, option) for section, body in yaml.safe_load(spec.read_text()).items() for option in (body.get("options") or {})}


def test_the_environment_it_sets_is_what_airflow_and_the_package_read(compose: dict) -> None:
    pytest.importorskip("airflow")
    known = airflow_config_options() | PROVIDER_OPTIONS
    seen = set()
    for name, service in services(compose).items():
        if name not in AIRFLOW_SERVICES:
            continue
        for var in service.get("environment") or {}:
            seen.add(var)
            if var.startswith("AIRFLOW__"):
                section, option = var[len("AIRFLOW__") :].lower().split("__", 1)
                assert (section, option) in known, f"{name}: {var} is not an Airflow option"
            elif var.startswith("AIRFLOW_CONN_"):
                conn_id = var[len("AIRFLOW_CONN_") :].lower()
                assert conn_id in (WAREHOUSE_CONNECTION, DEFAULT_CONNECTION) or conn_id.startswith("nugen_"), var
            elif var.startswith("AIRFLOW_VAR_"):
                assert var[len("AIRFLOW_VAR_") :].lower() == ACCOUNTS_VARIABLE, var
            elif var.startswith("NUGEN_"):
                assert var in ALL_ENV, f"{name}: {var} is read by neither the DAGs nor nugen_etl.airflow"
            else:
                assert var in ENTRYPOINT_VARS, f"{name}: unexpected variable {var}"
    assert {"NUGEN_STORAGE_ROOT", "AIRFLOW_CONN_NUGEN_WAREHOUSE"} <= seen


def test_the_warehouse_connection_is_json_once_interpolated(compose: dict) -> None:
    import json

    raw = compose["x-airflow-common"]["environment"]["AIRFLOW_CONN_NUGEN_WAREHOUSE"]
    value = re.sub(r"\$\{(\w+)(?::[-?][^}]*)?\}", lambda m: f"value-of-{m.group(1)}", raw)
    conn = json.loads(value)
    assert conn["conn_type"] == "postgres" and conn["host"] == "warehouse"
    assert conn["password"] == "value-of-NUGEN_WAREHOUSE_PASSWORD"


def test_the_dags_read_only_documented_variables() -> None:
    for dag_file in (REPO / "dags").glob("*.py"):
        for var in re.findall(r"environ\.get\(\"([A-Z_]+)\"", dag_file.read_text()):
            assert var in ALL_ENV, f"{dag_file.name} reads {var}, missing from nugen_etl.airflow.settings"
