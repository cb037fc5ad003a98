"""The edit log: accepted requests, revisions, snapshots and content-addressed blobs. No torch.

`EditLog` is the interface; `SqliteEditLog` is the embedded implementation (WAL,
synchronous=FULL), `store.log.postgres.PostgresEditLog` the shared one (psycopg 3, blobs in
the database, imported only for `postgresql://` URLs), and `open_log(settings)` picks the
implementation a configuration asks for. The same database holds the API keys (`KeyStore`).
"""

from store.log.base import BlobStore, EditLog
from store.log.blobs import FileBlobStore, MemoryBlobStore
from store.log.factory import open_log
from store.log.keys import ApiKeyRecord, KeyStore, key_digest, new_secret
from store.log.sqlite import SqliteEditLog

__all__ = [
    "ApiKeyRecord", "BlobStore", "EditLog", "FileBlobStore", "KeyStore", "MemoryBlobStore", "SqliteEditLog",
    "key_digest", "new_secret", "open_log",
]
