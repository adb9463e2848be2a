"""Content-addressed model cache on the board, bounded in size.

A model is stored as ``<sha256>.onnx`` only after its bytes hashed to that name, written to
a temporary file first and renamed, so a half-written or corrupted model is never found
under a valid name. Least recently used models are evicted to stay under the bound.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from .errors import AgentError, os_failure
from .protocol import ErrorCode

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    # fullmatch: "$" would also accept a trailing newline
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwnas-bench" / "models"


class PendingModel:
    """A model being uploaded: bytes go to a temporary file in the cache directory.

    Writes are unbuffered (``os.write`` on the descriptor), so a full disk fails the chunk
    that hit it, not a later close; any failure discards the partial file.
    """

    def __init__(self, store: ModelStore, sha256: str, size: int) -> None:
        self.sha256 = sha256
        self.size = size
        self.received = 0
        self._store = store
        self._hash = hashlib.sha256()
        try:
            fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=str(store.root))
        except OSError as exc:
            raise os_failure(exc, "creating the upload's file") from exc
        self._path = Path(name)
        self._fd: Optional[int] = fd

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise AgentError(ErrorCode.UPLOAD_STATE, "upload already finished")
        if self.received + len(data) > self.size:
            raise AgentError(
                ErrorCode.UPLOAD_STATE,
                f"chunk ends at byte {self.received + len(data)}, past the declared size "
                f"{self.size}",
            )
        view = memoryview(data)
        try:
            while view:  # os.write may write less than asked (a limit reached mid-chunk)
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.discard()
            raise os_failure(exc, f"writing model {self.sha256[:12]}… to the cache") from exc
        self._hash.update(data)
        self.received += len(data)

    def commit(self) -> Path:
        """Verify the digest and move the model under its name; discard it on mismatch."""
        if self._fd is None:
            raise AgentError(ErrorCode.UPLOAD_STATE, "upload already finished")
        actual = self._hash.hexdigest()
        if actual != self.sha256:
            self.discard()
            raise AgentError(
                ErrorCode.DIGEST_MISMATCH,
                f"uploaded bytes hash to {actual[:16]}…, not the declared {self.sha256[:16]}…; "
                "the model was discarded",
            )
        final = self._store.path_for(self.sha256)
        try:
            os.close(self._fd)
            self._fd = None
            os.replace(self._path, final)
        except OSError as exc:
            self.discard()
            raise os_failure(exc, f"storing model {self.sha256[:12]}… in the cache") from exc
        self._store.evict(keep=self.sha256)
        return final

    def discard(self) -> None:
        """Drop the partial file; never raises (it runs on clean-up paths)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self._path.unlink()


#: an upload's part file untouched this long was left by a killed agent
STALE_UPLOAD_S = 3600.0


class ModelStore:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)
        # Uploads left by an agent killed mid-upload. Other agents may share the directory
        # and be uploading now: only parts untouched for an hour go, and a part another
        # agent finished (renamed) or removed meanwhile is no error.
        now = time.time()
        for stale in root.glob(".upload-*.part"):
            with contextlib.suppress(FileNotFoundError):
                if now - stale.stat().st_mtime > STALE_UPLOAD_S:
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
        self.evict(keep=sha256, reserve=size)  # the upload in flight counts against the bound
        return PendingModel(self, sha256, size)

    def models(self) -> List[Path]:
        return sorted(self.root.glob("*.onnx"), key=lambda p: p.stat().st_mtime)

    def evict(self, keep: str, reserve: int = 0) -> None:
        """Delete least recently used models until they and ``reserve`` bytes fit the bound."""
        models = self.models()
        total = sum(p.stat().st_size for p in models) + reserve
        for path in models:  # oldest first
            if total <= self.max_bytes:
                break
            if path.stem == keep:
                continue
            total -= path.stat().st_size
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
