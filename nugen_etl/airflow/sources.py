"""Build a ``Config`` inside a task from Airflow's Variables and Connections (and the optional TOML file).

Accounts: Variable ``nugen_accounts`` (a JSON list of ids), else the TOML file's ``[[accounts]]``.
Keys: Connection ``nugen_<account_id>`` (or ``nugen_<id with every [-.] as _>``, so that
``AIRFLOW_CONN_NUGEN_ACCT_0001`` works from a shell), else ``nugen_default``: password = key, host =
base URL override. Without a Connection a TOML account keeps its ``api_key_env``. Warehouse:
Connection ``nugen_warehouse`` (postgres), else the TOML's ``[warehouse]``, else DuckDB under the
storage root. S3 storage credentials: Connection ``nugen_storage`` (aws), else the AWS chain.
Airflow is reached only through the two injected lookups, so this is testable alone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import quote, urlencode

from ..config import Config, parse_config
from ..errors import ConfigError
from ..records import validate_account_id
from ..redaction import Secret
from .settings import ACCOUNTS_VARIABLE, DEFAULT_CONNECTION, STORAGE_CONNECTION, WAREHOUSE_CONNECTION, DagSettings

if TYPE_CHECKING:
    from ..storage import Storage

log = logging.getLogger(__name__)

_KEY_ENV = "NUGEN_AIRFLOW_CONN_KEY_{}"  # synthetic names, only inside the mapping given to parse_config
_WAREHOUSE_PASSWORD_ENV = "NUGEN_AIRFLOW_WAREHOUSE_PASSWORD"


class ConnectionLike(Protocol):
    conn_type: str | None
    host: str | None
    schema: str | None
    login: str | None
    password: str | None
    port: int | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


GetVariable = Callable[[str], str | None]
GetConnection = Callable[[str], ConnectionLike | None]


def account_connection_ids(account_id: str) -> list[str]:
    """Connection ids tried for an account, most specific first.

    >>> account_connection_ids("acct-0001")
    ['nugen_acct-0001', 'nugen_acct_0001', 'nugen_default']
    """
    exact = f"nugen_{account_id}"
    safe = "nugen_" + re.sub(r"[^A-Za-z0-9_]", "_", account_id)
    return list(dict.fromkeys([exact, safe, DEFAULT_CONNECTION]))


def read_toml(settings: DagSettings) -> tuple[dict[str, Any], Path]:
    """The TOML file's tables (empty without ``NUGEN_ETL_CONFIG``) and the folder relative paths resolve in."""
    if settings.config_path is None:
        return {}, Path.cwd()
    path = settings.config_path
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), path.resolve().parent
    except FileNotFoundError:
        raise ConfigError(f"NUGEN_ETL_CONFIG: config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"NUGEN_ETL_CONFIG: cannot read {path}: {exc}") from None


def list_account_ids(settings: DagSettings, get_variable: GetVariable) -> list[str]:
    """The configured account ids, in order, without duplicates (Variable first, else the TOML file)."""
    raw = get_variable(ACCOUNTS_VARIABLE)
    if raw is not None:
        try:
            ids = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Variable {ACCOUNTS_VARIABLE}: not JSON: {exc}") from None
        if not isinstance(ids, list):
            raise ConfigError(f"Variable {ACCOUNTS_VARIABLE}: expected a JSON list of account ids")
        return list(dict.fromkeys(validate_account_id(i, f"Variable {ACCOUNTS_VARIABLE}") for i in ids))
    data, _ = read_toml(settings)
    items = data.get("accounts") or []
    if not items:
        raise ConfigError(
            f"no accounts: set the Variable {ACCOUNTS_VARIABLE} (a JSON list of ids) "
            "or name a TOML config with [[accounts]] in NUGEN_ETL_CONFIG"
        )
    return list(dict.fromkeys(validate_account_id(i.get("id") if isinstance(i, dict) else i, "accounts.id") for i in items))


def build_config(
    settings: DagSettings,
    *,
    get_variable: GetVariable,
    get_connection: GetConnection,
    accounts: Sequence[str] | None = None,
    with_keys: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The ``Config`` of a task: ``accounts`` (default: all configured), with keys when ``with_keys``.

    An account whose key cannot be found keeps ``api_key=None``; the caller decides what that means.
    """
    environ = dict(os.environ if environ is None else environ)
    data, base_dir = read_toml(settings)
    data = dict(data)
    wanted = list(accounts) if accounts is not None else list_account_ids(settings, get_variable)
    toml_accounts = {a.get("id"): a for a in data.get("accounts") or [] if isinstance(a, dict)}
    data["accounts"] = []
    for n, account_id in enumerate(wanted):
        entry = dict(toml_accounts.get(account_id) or {"id": account_id})
        conn = _first_connection(account_connection_ids(account_id), get_connection) if with_keys else None
        if conn is not None and conn.password:
            entry["api_key_env"] = _KEY_ENV.format(n)
            environ[entry["api_key_env"]] = conn.password
            base_url = connection_base_url(conn)
            if base_url:
                entry["base_url"] = base_url
        entry.setdefault("api_key_env", _KEY_ENV.format(n))
        data["accounts"].append(entry)
    if settings.storage_root:
        data["storage"] = {**data.get("storage", {}), "root": settings.storage_root}
    elif "root" not in data.get("storage", {}) and environ.get("AIRFLOW_HOME"):
        data["storage"] = {**data.get("storage", {}), "root": str(Path(environ["AIRFLOW_HOME"]) / "nugen-data")}
    if settings.granularity:
        data["schedule"] = {**data.get("schedule", {}), "granularity": settings.granularity}
    warehouse = get_connection(WAREHOUSE_CONNECTION)
    if warehouse is not None:
        url, password = warehouse_url(warehouse)
        table = {k: v for k, v in data.get("warehouse", {}).items() if k not in ("url", "password_env")}
        table["url"] = url
        if password:
            table["password_env"] = _WAREHOUSE_PASSWORD_ENV
            environ[_WAREHOUSE_PASSWORD_ENV] = password
        data["warehouse"] = table
    return parse_config(data, base_dir=base_dir, environ=environ, source=settings.config_path)


def connection_base_url(conn: ConnectionLike) -> str | None:
    """The base URL a Connection's host names: a full URL as is, else scheme from schema/conn_type (http[s]).

    >>> from types import SimpleNamespace as C
    >>> connection_base_url(C(host="http://nugen-api:8080", port=None, schema=None, conn_type="http"))
    'http://nugen-api:8080'
    >>> connection_base_url(C(host="api.nugen.in", port=None, schema=None, conn_type="generic"))
    'https://api.nugen.in'
    >>> connection_base_url(C(host="nugen-api", port=8080, schema=None, conn_type="http"))
    'http://nugen-api:8080'
    """
    host = (conn.host or "").strip()
    if not host:
        return None
    if "://" in host:
        return host.rstrip("/") + (f":{conn.port}" if conn.port and host.count(":") < 2 else "")
    scheme = next((s for s in (conn.schema, conn.conn_type) if s in ("http", "https")), "https")
    return f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")


def warehouse_url(conn: ConnectionLike) -> tuple[str, str | None]:
    """(postgresql:// URL without the password, password) of a postgres Connection; extras become libpq options."""
    if (conn.conn_type or "postgres") not in ("postgres", "postgresql"):
        raise ConfigError(f"Connection {WAREHOUSE_CONNECTION}: expected conn_type postgres, got {conn.conn_type!r}")
    if not conn.host:
        raise ConfigError(f"Connection {WAREHOUSE_CONNECTION}: host is empty")
    user = quote(conn.login, safe="") + "@" if conn.login else ""
    port = f":{conn.port}" if conn.port else ""
    query = {k: str(v) for k, v in (conn.extra_dejson or {}).items() if isinstance(v, str | int)}
    url = f"postgresql://{user}{conn.host}{port}/{quote(conn.schema or 'postgres', safe='')}"
    return (url + ("?" + urlencode(query) if query else "")), (conn.password or None)


def open_task_storage(config: Config, get_connection: GetConnection) -> Storage:
    """The configured storage; on S3 with credentials from Connection ``nugen_storage`` when it exists
    (login = access key id, password = secret key, extra ``session_token``), else the AWS chain."""
    from ..pipeline import open_configured_storage
    from ..storage import AwsCredentials

    conn = get_connection(STORAGE_CONNECTION) if config.s3 is not None else None
    if conn is None or not conn.login or not conn.password:
        return open_configured_storage(config)
    token = (conn.extra_dejson or {}).get("session_token") or (conn.extra_dejson or {}).get("aws_session_token")
    return open_configured_storage(
        config, credentials=AwsCredentials(Secret(conn.login), Secret(conn.password), Secret(token) if token else None)
    )


def _first_connection(conn_ids: list[str], get_connection: GetConnection) -> ConnectionLike | None:
    for conn_id in conn_ids:
        conn = get_connection(conn_id)
        if conn is not None:
            return conn
    return None


def airflow_lookups() -> tuple[GetVariable, GetConnection]:
    """The Variable and Connection lookups of a running task (Airflow's secrets backends, env vars first)."""
    from airflow.sdk import Connection, Variable
    from airflow.sdk.exceptions import AirflowNotFoundException

    def get_variable(key: str) -> str | None:
        return cast(str | None, Variable.get(key, default=None))

    def get_connection(conn_id: str) -> ConnectionLike | None:
        try:
            return cast(ConnectionLike, Connection.get(conn_id))
        except AirflowNotFoundException:
            return None

    return get_variable, get_connection
