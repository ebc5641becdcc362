"""The TOML configuration: parsed and validated once, at the edge, into frozen dataclasses."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .records import validate_account_id
from .redaction import Secret, mask_url

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_BASE_URL = "https://api.nugen.in"
WAREHOUSE_SCHEMES = ("duckdb", "postgresql", "postgres")
STORAGE_KEYS = ("root", "fsync", "endpoint_url", "region", "vacuum_retention_hours", "target_file_mb")
S3_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
S3_REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,49}")
_URL_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_DURATION_RE = re.compile(r"(\d+)\s*(m|min|h|d)")


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = DEFAULT_BASE_URL
    timeout_s: float = 30.0
    max_concurrency: int = 16
    max_attempts: int = 5
    deadline_s: float = 120.0
    retry_base_delay_s: float = 0.5
    verify_tls: bool = True
    max_body_bytes: int = 64 * 2**20  # a larger answer fails the account instead of filling memory


@dataclass(frozen=True)
class AccountConfig:
    id: str
    api_key_env: str
    api_key: Secret | None = None  # None when the variable is not set
    base_url: str | None = None  # per-account override of api.base_url


_MEMORY_SIZE_RE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


@dataclass(frozen=True)
class WarehouseConfig:
    url: str
    password_env: str | None = None
    password: Secret | None = None
    batch_accounts: int = 100  # accounts per warehouse transaction
    catch_up_slots: int = 24  # pending slots a run loads first (load-pending: all)
    pending_alert_hours: float = 6.0  # a load pending longer is reported as overdue
    duckdb_memory_limit: str | None = "auto"  # "auto" (a budget per load), a size, or None (DuckDB's 80 % of RAM)

    def __repr__(self) -> str:  # a password written into the URL is masked like the Secret
        return (
            f"WarehouseConfig(url={mask_url(self.url)!r}, password_env={self.password_env!r}, "
            f"password={self.password!r}, batch_accounts={self.batch_accounts!r}, "
            f"duckdb_memory_limit={self.duckdb_memory_limit!r})"
        )

    @property
    def engine(self) -> str:
        return "postgresql" if self.url.startswith(("postgresql:", "postgres:")) else "duckdb"


@dataclass(frozen=True)
class S3Config:
    """A ``s3://bucket/prefix`` storage root. Credentials are never here: they come from the AWS
    chain (environment variables, shared config/credentials files, instance or task role)."""

    bucket: str
    prefix: str = ""  # "" or "a/b": no leading or trailing slash
    endpoint_url: str | None = None  # S3-compatible stores (MinIO, Ceph, R2, ...)
    region: str | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class Config:
    api: ApiConfig
    storage_root: Path | None  # the local storage folder; None when storage is on S3 (``s3``)
    warehouse: WarehouseConfig
    accounts: tuple[AccountConfig, ...]
    granularity: timedelta = timedelta(hours=1)
    fsync: bool = True
    source: Path | None = field(default=None, compare=False)
    s3: S3Config | None = None  # set when storage.root is s3://...; opened by pipeline.open_configured_storage
    vacuum_retention_hours: float = 168.0  # lake files a version of the last 7 days needs are kept
    target_file_mb: int = 128  # compaction's target data file size

    @property
    def storage_url(self) -> str:
        """Where the raw archive and the Delta lake live, for messages: a folder or an s3:// URL."""
        return self.s3.url if self.s3 is not None else str(self.storage_root)

    def select_accounts(self, ids: list[str] | None) -> tuple[AccountConfig, ...]:
        """The named accounts (all when ``ids`` is empty); unknown ids are a ConfigError."""
        if not ids:
            return self.accounts
        known = {a.id: a for a in self.accounts}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ConfigError(f"--account: not in the configuration: {', '.join(unknown)}")
        return tuple(known[i] for i in dict.fromkeys(ids))

    def require_keys(self, accounts: tuple[AccountConfig, ...]) -> None:
        """Fail naming every selected account whose key variable is unset or empty."""
        missing = [f"{a.id} ({a.api_key_env})" for a in accounts if a.api_key is None]
        if missing:
            raise ConfigError("API key environment variable not set for account(s): " + ", ".join(missing))


def parse_duration(text: str, where: str) -> timedelta:
    match = _DURATION_RE.fullmatch(str(text).strip())
    if not match:
        raise ConfigError(f"{where}: expected a duration like '15m', '1h' or '1d', got {text!r}")
    n, unit = int(match.group(1)), match.group(2)
    delta = {"m": timedelta(minutes=n), "min": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]
    if delta <= timedelta(0) or timedelta(days=1) % delta:
        raise ConfigError(f"{where}: {text!r} must be positive and divide one day evenly")
    return delta


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML config; relative paths resolve against the file's folder."""
    environ = os.environ if environ is None else environ
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, base_dir=path.resolve().parent, environ=environ, source=path)


def parse_config(data: Mapping[str, Any], *, base_dir: Path, environ: Mapping[str, str], source: Path | None = None) -> Config:
    unknown = set(data) - {"api", "storage", "warehouse", "accounts", "schedule"}
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    api = _parse_api(_table(data, "api"))
    storage = _table(data, "storage")
    root, s3 = _parse_storage(storage, base_dir)
    fsync = _bool(storage, "fsync", "storage", _default(Config, "fsync"))
    retention = _number(storage, "vacuum_retention_hours", "storage", _default(Config, "vacuum_retention_hours"), minimum=0)
    target_mb = int(_number(storage, "target_file_mb", "storage", _default(Config, "target_file_mb"), minimum=1, integer=True))
    schedule = _table(data, "schedule")
    granularity: timedelta = _default(Config, "granularity")
    if "granularity" in schedule:
        granularity = parse_duration(schedule["granularity"], "schedule.granularity")
    warehouse = _parse_warehouse(_table(data, "warehouse"), base_dir, root, environ)
    accounts = _parse_accounts(data.get("accounts", []), environ)
    return Config(
        api=api,
        storage_root=root,
        warehouse=warehouse,
        accounts=accounts,
        granularity=granularity,
        fsync=fsync,
        source=source,
        s3=s3,
        vacuum_retention_hours=retention,
        target_file_mb=target_mb,
    )


def _parse_storage(t: Mapping[str, Any], base_dir: Path) -> tuple[Path | None, S3Config | None]:
    """``storage.root`` is a local folder or ``s3://bucket/prefix``; the S3 keys apply to the latter only."""
    unknown = set(t) - set(STORAGE_KEYS)
    if unknown:
        hint = (
            " (credentials never sit in the file: use the AWS environment variables or config files)"
            if any(w in k.lower() for k in unknown for w in ("key", "secret", "token", "password"))
            else ""
        )
        raise ConfigError(f"storage: unknown key(s) {', '.join(sorted(unknown))}{hint}")
    root = _str(t, "root", "storage", "./nugen-data")
    scheme = _URL_SCHEME_RE.match(root)
    if scheme is None:
        for key in ("endpoint_url", "region"):
            if key in t:
                raise ConfigError(f"storage.{key}: only applies when storage.root is an s3:// URL")
        return _resolve(base_dir, root), None
    if scheme.group(1).lower() != "s3":
        raise ConfigError(f"storage.root: unsupported scheme {scheme.group(1)!r}; use a local folder or s3://bucket/prefix")
    bucket, _, prefix = root[scheme.end() :].partition("/")
    if not S3_BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(f"storage.root: invalid S3 bucket name {bucket!r}")
    prefix = prefix.removesuffix("/")
    if prefix and any(p in ("", ".", "..") or "\\" in p or not p.isprintable() for p in prefix.split("/")):
        raise ConfigError(f"storage.root: invalid S3 prefix {prefix!r} (no empty, '.' or '..' segments)")
    endpoint_url = t.get("endpoint_url")
    if endpoint_url is not None:
        endpoint_url = _url(endpoint_url, "storage.endpoint_url")
        if "@" in endpoint_url.split("/", 3)[2]:
            raise ConfigError("storage.endpoint_url: credentials never sit in the URL; use the AWS environment variables or config files")
    region = t.get("region")
    if region is not None and (not isinstance(region, str) or not S3_REGION_RE.fullmatch(region)):
        raise ConfigError(f"storage.region: expected a region name like 'eu-west-1', got {region!r}")
    return None, S3Config(bucket=bucket, prefix=prefix, endpoint_url=endpoint_url, region=region)


def _default(cls: type[Any], name: str) -> Any:
    """The dataclass field's default: each setting's default is written once, on its field."""
    return {f.name: f.default for f in fields(cls)}[name]


def _parse_api(t: Mapping[str, Any]) -> ApiConfig:
    base_url = _url(_str(t, "base_url", "api", _default(ApiConfig, "base_url")), "api.base_url")
    return ApiConfig(
        base_url=base_url,
        timeout_s=_number(t, "timeout_s", "api", _default(ApiConfig, "timeout_s"), minimum=0.001),
        max_concurrency=int(_number(t, "max_concurrency", "api", _default(ApiConfig, "max_concurrency"), minimum=1, integer=True)),
        max_attempts=int(_number(t, "max_attempts", "api", _default(ApiConfig, "max_attempts"), minimum=1, integer=True)),
        deadline_s=_number(t, "deadline_s", "api", _default(ApiConfig, "deadline_s"), minimum=0.001),
        retry_base_delay_s=_number(t, "retry_base_delay_s", "api", _default(ApiConfig, "retry_base_delay_s"), minimum=0.0),
        verify_tls=_bool(t, "verify_tls", "api", _default(ApiConfig, "verify_tls")),
        max_body_bytes=int(_number(t, "max_body_bytes", "api", _default(ApiConfig, "max_body_bytes"), minimum=1, integer=True)),
    )


def _parse_warehouse(t: Mapping[str, Any], base_dir: Path, root: Path | None, environ: Mapping[str, str]) -> WarehouseConfig:
    if root is None and "url" not in t:
        raise ConfigError(
            "warehouse.url: required when storage.root is an s3:// URL (the default DuckDB file lives in the local storage folder)"
        )
    default = f"duckdb:///{root / 'warehouse.duckdb'}" if root is not None else ""
    url = _str(t, "url", "warehouse", default)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in WAREHOUSE_SCHEMES:
        raise ConfigError(
            f"warehouse.url: unknown scheme {scheme or url!r}; use duckdb:///path/file.duckdb or postgresql://user@host:5432/db"
        )
    if scheme == "duckdb":
        target = url[len("duckdb://") :].removeprefix("/")
        if not url.startswith("duckdb:///") or not target:
            raise ConfigError("warehouse.url: write duckdb:///relative/file.duckdb or duckdb:////abs/file.duckdb")
        if target != ":memory:":
            url = f"duckdb:///{_resolve(base_dir, target)}"
    password_env = t.get("password_env")
    password = None
    if password_env is not None:
        if not isinstance(password_env, str) or not ENV_NAME_RE.fullmatch(password_env):
            raise ConfigError(f"warehouse.password_env: not an environment variable name: {password_env!r}")
        if not environ.get(password_env):
            raise ConfigError(f"warehouse.password_env: environment variable {password_env} is not set")
        password = Secret(environ[password_env])
    batch = int(_number(t, "batch_accounts", "warehouse", _default(WarehouseConfig, "batch_accounts"), minimum=1, integer=True))
    catch_up = int(_number(t, "catch_up_slots", "warehouse", _default(WarehouseConfig, "catch_up_slots"), minimum=0, integer=True))
    alert = float(_number(t, "pending_alert_hours", "warehouse", _default(WarehouseConfig, "pending_alert_hours"), minimum=0))
    return WarehouseConfig(
        url=url,
        password_env=password_env,
        password=password,
        batch_accounts=batch,
        catch_up_slots=catch_up,
        pending_alert_hours=alert,
        duckdb_memory_limit=_duckdb_memory_limit(t, scheme),
    )


def _duckdb_memory_limit(t: Mapping[str, Any], scheme: str) -> str | None:
    """``warehouse.duckdb_memory_limit``: "auto" (the default), a size such as "512MB", or "none" (what
    each means: ``DuckDBWarehouse``). Not applicable (None) to PostgreSQL."""
    if "duckdb_memory_limit" not in t:
        return "auto" if scheme == "duckdb" else None
    if scheme != "duckdb":
        raise ConfigError("warehouse.duckdb_memory_limit: only applies to a duckdb:/// warehouse")
    value = t["duckdb_memory_limit"]
    if isinstance(value, str) and value.strip().lower() in ("none", "auto"):
        return None if value.strip().lower() == "none" else "auto"
    if not isinstance(value, str) or not _MEMORY_SIZE_RE.fullmatch(value.strip()):
        raise ConfigError(f'warehouse.duckdb_memory_limit: expected "auto", a size such as "256MB" or "2GiB", or "none", got {value!r}')
    return value.strip()


def _parse_accounts(items: Any, environ: Mapping[str, str]) -> tuple[AccountConfig, ...]:
    if not isinstance(items, list) or not items:
        raise ConfigError("accounts: configure at least one [[accounts]] entry")
    seen: set[str] = set()
    accounts = []
    for n, item in enumerate(items, start=1):
        where = f"accounts[{n}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(item) - {"id", "api_key_env", "base_url"}
        if unknown:
            hint = " (keys never sit in the file: name an environment variable with api_key_env)" if {"api_key", "key"} & unknown else ""
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}{hint}")
        account_id = validate_account_id(item.get("id"), f"{where}.id")
        if account_id in seen:
            raise ConfigError(f"{where}.id: duplicate account id {account_id!r}")
        seen.add(account_id)
        env = item.get("api_key_env")
        if not isinstance(env, str) or not ENV_NAME_RE.fullmatch(env):
            raise ConfigError(f"account {account_id}: api_key_env must name an environment variable, got {env!r}")
        value = environ.get(env)
        base_url = item.get("base_url")
        if base_url is not None:
            base_url = _url(base_url, f"account {account_id}: base_url")
        accounts.append(AccountConfig(id=account_id, api_key_env=env, api_key=Secret(value) if value else None, base_url=base_url))
    return tuple(accounts)


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _str(t: Mapping[str, Any], key: str, section: str, default: str) -> str:
    value = t.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{section}.{key}: expected a non-empty string, got {value!r}")
    return value


def _bool(t: Mapping[str, Any], key: str, section: str, default: bool) -> bool:
    value = t.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{section}.{key}: expected true or false, got {value!r}")
    return value


def _number(t: Mapping[str, Any], key: str, section: str, default: float, *, minimum: float, integer: bool = False) -> float:
    value = t.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{section}.{key}: expected a{'n integer' if integer else ' number'}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{section}.{key}: must be >= {minimum}, got {value!r}")
    return value


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.match(r"https?://[^\s/]+", value):
        raise ConfigError(f"{where}: expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _resolve(base_dir: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base_dir / p).resolve()
