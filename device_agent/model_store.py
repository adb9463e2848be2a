"""Content-addressed model cache on the board, bounded in size.

A model is stored as ``<sha256>.onnx`` only after its bytes hashed to that name, written to
a temporary file first and renamed, so a half-written or corrupted model is never found
under a valid name. Least recently used models are evicted to stay under the bound.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, List, Optional

from .errors import AgentError
from .protocol import ErrorCode

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and bool(_SHA256.match(value))


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwnas-bench" / "models"


class PendingModel:
    """A model being uploaded: bytes go to a temporary file in the cache directory."""

    def __init__(self, store: ModelStore, sha256: str, size: int) -> None:
        self.sha256 = sha256
        self.size = size
        self.received = 0
        self._store = store
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=str(store.root))
        self._path = Path(name)
        self._file: Optional[BinaryIO] = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise AgentError(ErrorCode.UPLOAD_STATE, "upload already finished")
        if self.received + len(data) > self.size:
            raise AgentError(
                ErrorCode.UPLOAD_STATE,
                f"chunk ends at byte {self.received + len(data)}, past the declared size "
                f"{self.size}",
            )
        self._file.write(data)
        self._hash.update(data)
        self.received += len(data)

    def commit(self) -> Path:
        """Verify the digest and move the model under its name; discard it on mismatch."""
        assert self._file is not None
        self._file.close()
        self._file = None
        actual = self._hash.hexdigest()
        if actual != self.sha256:
            self._path.unlink()
            raise AgentError(
                ErrorCode.DIGEST_MISMATCH,
                f"uploaded bytes hash to {actual[:16]}…, not the declared {self.sha256[:16]}…; "
                "the model was discarded",
            )
        final = self._store.path_for(self.sha256)
        os.replace(self._path, final)
        self._store.evict(keep=self.sha256)
        return final

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path.exists():
            self._path.unlink()


class ModelStore:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".upload-*.part"):  # left by an agent that was killed mid-upload
            stale.unlink()

    def path_for(self, sha256: str) -> Path:
        return self.root / f"{sha256}.onnx"

    def get(self, sha256: str) -> Optional[Path]:
        """The model's path if the board holds it (and mark it recently used)."""
        if not is_sha256(sha256):
            return None
        path = self.path_for(sha256)
        if not path.is_file():
            return None
        os.utime(path)
        return path

    def begin(self, sha256: str, size: int) -> PendingModel:
        if size > self.max_bytes:
            raise AgentError(
                ErrorCode.MODEL_TOO_LARGE,
                f"model of {size} bytes exceeds the board's cache bound of {self.max_bytes} "
                "bytes (agent option --cache-max-mb)",
            )
        return PendingModel(self, sha256, size)

    def models(self) -> List[Path]:
        return sorted(self.root.glob("*.onnx"), key=lambda p: p.stat().st_mtime)

    def evict(self, keep: str) -> None:
        models = self.models()
        total = sum(p.stat().st_size for p in models)
        for path in models:  # oldest first
            if total <= self.max_bytes:
                break
            if path.stem == keep:
                continue
            total -= path.stat().st_size
            path.unlink()
