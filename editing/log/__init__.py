"""The edit log: accepted requests, revisions, snapshots and content-addressed blobs. No torch.

`EditLog` is the interface; `SqliteEditLog` is the embedded implementation (WAL,
synchronous=FULL), `editing.log.postgres.PostgresEditLog` the shared one (psycopg 3, blobs in
the database, imported only for `postgresql://` URLs), and `open_log(settings)` picks the
implementation a configuration asks for. The same database holds the API keys (`KeyStore`).
"""

from editing.log.base import BlobStore, EditLog
from editing.log.blobs import FileBlobStore, MemoryBlobStore
from editing.log.factory import open_log
from editing.log.keys import ApiKeyRecord, KeyStore, key_digest, new_secret
from editing.log.sqlite import SqliteEditLog

__all__ = [
    "ApiKeyRecord", "BlobStore", "EditLog", "FileBlobStore", "KeyStore", "MemoryBlobStore", "SqliteEditLog",
    "key_digest", "new_secret", "open_log",
]
