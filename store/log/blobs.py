"""Blob stores: files named by their sha256 (`objects/ab/cdef…`), or memory for tests."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from contract.errors import NotFoundError


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha(sha: str) -> str:
    """`sha` if it is a blob id (64 lowercase hex digits); NotFoundError otherwise."""
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise NotFoundError(f"not a blob id: {sha!r}")
    return sha


class FileBlobStore:
    """Write to a temp file, fsync, rename, fsync the folder: a blob exists whole or not at all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha: str) -> Path:
        check_sha(sha)
        return self.root / sha[:2] / sha[2:]

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        path = self._path(sha)
        if path.exists():
            return sha
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return sha

    def get(self, sha: str) -> bytes:
        path = self._path(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"blob {sha} is missing from {self.root}") from None
        if sha256_hex(data) != sha:
            raise NotFoundError(f"blob {sha} is corrupt (its content has another sha256)")
        return data

    def has(self, sha: str) -> bool:
        return self._path(sha).exists()


class MemoryBlobStore:
    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        with self._lock:
            self._data[sha] = data
        return sha

    def get(self, sha: str) -> bytes:
        try:
            return self._data[check_sha(sha)]
        except KeyError:
            raise NotFoundError(f"blob {sha} is missing") from None

    def has(self, sha: str) -> bool:
        return check_sha(sha) in self._data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
