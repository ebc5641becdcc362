"""``s3://bucket/prefix`` storage through boto3 (the ``s3`` extra, imported when first used)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ..errors import ConfigError
from ..redaction import Secret, redact
from .base import StorageError, check_key


@dataclass(frozen=True)
class AwsCredentials:
    """Explicit credentials (e.g. from an Airflow Connection) instead of the AWS chain. Masked repr."""

    access_key_id: Secret
    secret_access_key: Secret
    session_token: Secret | None = None


class S3Storage:
    """``s3://bucket/prefix`` on S3 or an S3-compatible store (``endpoint_url``).

    Every object is written once under its final key with a single PutObject: S3 makes it visible
    whole or not at all, so readers see the old or the new object. Deletes are idempotent. Failures
    are StorageError (an OSError) naming the operation and the object, never a credential.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        credentials: AwsCredentials | None = None,
        max_connections: int = 10,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = check_key(prefix.strip("/")) if prefix.strip("/") else ""
        self.endpoint_url, self.region = endpoint_url, region
        self._session: Any = None
        if client is None:
            self._session, client = _s3_client(
                endpoint_url=endpoint_url, region=region, credentials=credentials, max_connections=max_connections
            )
        self._client = client

    @property
    def display(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Storage({self.display!r}, endpoint_url={self.endpoint_url!r}, region={self.region!r})"

    def object_key(self, key: str) -> str:
        """The full S3 key of a storage key (prefix included)."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def write_bytes_atomic(self, key: str, data: bytes) -> None:
        full = self.object_key(key)
        self._call("write", key, lambda: self._client.put_object(Bucket=self.bucket, Key=full, Body=data))

    def read_bytes(self, key: str) -> bytes:
        full = self.object_key(key)
        data: bytes = self._call("read", key, lambda: self._client.get_object(Bucket=self.bucket, Key=full)["Body"].read())
        return data

    def delete(self, key: str) -> None:
        full = self.object_key(key)
        self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full))

    def listdir(self, folder: str) -> tuple[list[str], list[str]]:
        base = self.object_key(folder) + "/"

        def list_all() -> tuple[list[str], list[str]]:
            folders, files = [], []
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base, Delimiter="/")
            for page in pages:
                folders += [p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
                files += [o["Key"][len(base) :] for o in page.get("Contents", []) if o["Key"] != base]
            return sorted(folders), sorted(files)

        result: tuple[list[str], list[str]] = self._call("list", folder, list_all)
        return result

    def delta_location(self) -> tuple[str, dict[str, str]]:
        """``s3://bucket/prefix`` and delta-rs options: the same endpoint, region and credentials as this
        client's boto3 session (explicit, or the AWS chain resolved once), commits by conditional PUT
        (``If-None-Match``), so no DynamoDB lock table is needed."""
        region = self.region or (self._session.region_name if self._session is not None else None)
        options = {"conditional_put": "etag", "aws_region": region or "us-east-1"}
        if self.endpoint_url:
            options["aws_endpoint_url"] = self.endpoint_url
            options["aws_virtual_hosted_style_request"] = "false"
            if self.endpoint_url.startswith("http://"):
                options["aws_allow_http"] = "true"
        creds = self._session.get_credentials() if self._session is not None else None
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            options["aws_access_key_id"], options["aws_secret_access_key"] = frozen.access_key, frozen.secret_key
            if frozen.token:
                options["aws_session_token"] = frozen.token
        return self.display, options

    def close(self) -> None:
        self._client.close()

    def _call(self, op: str, key: str, action: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return action()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "?"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            self._raise(
                op, key, f"{code} (HTTP {status}): {error.get('Message', '')}", missing=op == "read" and code in ("NoSuchKey", "404")
            )
        except (BotoCoreError, OSError) as exc:
            self._raise(op, key, f"{type(exc).__name__}: {exc}")

    def _raise(self, op: str, key: str, detail: str, *, missing: bool = False) -> NoReturn:
        message = redact(f"s3 {op} {self.display}/{key} failed: {detail}", *self._secrets())
        if missing:
            raise FileNotFoundError(message) from None
        raise StorageError(message) from None

    def _secrets(self) -> list[str]:
        creds = self._session.get_credentials() if self._session is not None else None
        return [s for s in (creds.access_key, creds.secret_key, creds.token) if s] if creds else []


def _s3_client(
    *, endpoint_url: str | None, region: str | None, credentials: AwsCredentials | None, max_connections: int
) -> tuple[Any, Any]:
    try:
        import boto3
        from botocore.config import Config as BotoConfig
    except ImportError:
        raise ConfigError("storage.root is an s3:// URL: install the S3 extra, pip install 'nugen-etl[s3]'") from None
    # botocore logs signed request headers (and any session token) at DEBUG: cap it at INFO unless
    # the application has configured that logger itself.
    botocore_log = logging.getLogger("botocore")
    if botocore_log.level == logging.NOTSET:
        botocore_log.setLevel(logging.INFO)
    explicit = {}
    if credentials is not None:
        explicit = {
            "aws_access_key_id": credentials.access_key_id.reveal(),
            "aws_secret_access_key": credentials.secret_access_key.reveal(),
            "aws_session_token": credentials.session_token.reveal() if credentials.session_token else None,
        }
    session = boto3.session.Session(region_name=region, **explicit)
    config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=max_connections,
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return session, session.client("s3", endpoint_url=endpoint_url, config=config)
