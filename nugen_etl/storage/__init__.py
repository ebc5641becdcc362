"""Where the raw archive and the Delta lake live: a local folder or an S3 bucket, one interface.

Keys are relative POSIX paths (``raw/account_id=acme/...``), identical on both backends, and can
never leave their root: absolute keys, empty, ``.`` and ``..`` segments are refused.

    base.py   the ``Storage`` protocol, ``StorageError`` and the key check
    local.py  ``LocalStorage``: write aside, fsync, rename; readers see the old or the new file
    s3.py     ``S3Storage``: one PUT under the final key (boto3, extra ``s3``); readers see the old or
              the new object; credentials from the AWS chain or given explicitly, never logged
"""

from .base import Storage, StorageError, check_key
from .local import LocalStorage, as_storage
from .s3 import AwsCredentials, S3Storage

__all__ = ["AwsCredentials", "LocalStorage", "S3Storage", "Storage", "StorageError", "as_storage", "check_key"]
