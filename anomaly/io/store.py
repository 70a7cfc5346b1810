"""Fitted model state on disk (``model_dir``): one ``.npz`` file per key, never pickle.

File format (``format_version`` 1)
----------------------------------
One uncompressed-zip ``.npz`` per key holding the caller's arrays plus a reserved member
``__meta__``: a ``uint8`` array with UTF-8 JSON::

    {"format": "anomaly-model-store", "format_version": 1, "package_version": "0.1.0",
     "created_at": 1700000000.0, "key": "<the logical key>", "meta": {<the caller's meta>}}

Data and metadata live in one file, so one ``os.replace`` swaps both together.

Guarantees
----------
* Loading uses ``numpy.load(..., allow_pickle=False)``: object arrays (pickle) are refused,
  so a planted payload is never executed. Saving refuses object arrays for the same reason.
* Writes are atomic: temp file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of
  the directory. A failed write (disk full, no permission) raises
  :class:`~anomaly.errors.StoreError` naming the path and leaves the previous file intact.
* Writers of the same key are serialised with an ``fcntl.flock`` on a per-key lock file, so
  several processes can share one ``model_dir``; readers need no lock (replace is atomic).
* A corrupt, truncated, foreign or wrong-version file makes :meth:`ModelStore.load` return
  ``None`` and log a warning naming the file: the caller refits. Bad content never raises.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anomaly.errors import StoreError

__all__ = ["FORMAT_VERSION", "ModelStore", "StoredEntry"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FORMAT = "anomaly-model-store"
_META = "__meta__"
_SUFFIX = ".npz"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("anomaly")
    except Exception:  # not installed (e.g. run from a source tree)
        return "unknown"


@dataclass(frozen=True)
class StoredEntry:
    """Everything one file holds.

    Attributes
    ----------
    arrays : dict[str, np.ndarray]
        The arrays as saved (names, dtypes and shapes preserved).
    meta : dict
        The caller's metadata as saved (JSON round-trip: tuples come back as lists).
    created_at : float
        Unix seconds when the file was written.
    package_version : str
        The ``anomaly`` version that wrote it.
    """

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    created_at: float
    package_version: str


class ModelStore:
    """A directory of fitted states, addressed by logical keys such as a metric name.

    Parameters
    ----------
    path : str or Path
        The directory; created on the first save.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ModelStore({str(self.path)!r})"

    def file_for(self, key: str) -> Path:
        """The file holding ``key``: a readable sanitised prefix plus a hash of the full key.

        Any string is a valid key; different keys never share a file name (short of a SHA-256
        prefix collision, which :meth:`load` would still detect through the stored key).
        """
        if not isinstance(key, str):
            raise TypeError(f"`key` must be a str, got {type(key).__name__}")
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        readable = _UNSAFE.sub("_", key).strip("._")[:48] or "key"
        return self.path / f"{readable}-{digest}{_SUFFIX}"

    # ----------------------------------------------------------------------- save

    def save(self, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Write ``arrays`` and ``meta`` for ``key`` atomically, replacing any previous state.

        Raises
        ------
        ValueError
            An array name is reserved/invalid, an array has object dtype, or ``meta`` is not
            JSON-serialisable.
        StoreError
            The file cannot be written (disk full, no permission, ...); the old file is kept.
        """
        target = self.file_for(key)
        payload = self._validate(arrays)
        try:
            meta_json = json.dumps(
                {
                    "format": _FORMAT,
                    "format_version": FORMAT_VERSION,
                    "package_version": _package_version(),
                    "created_at": time.time(),
                    "key": key,
                    "meta": dict(meta),
                },
                ensure_ascii=False,
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"`meta` for {key!r} must be JSON-serialisable: {e}") from None
        payload[_META] = np.frombuffer(meta_json.encode("utf-8"), dtype=np.uint8)

        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create model directory {self.path}: {_reason(e)}") from None
        with self._lock(target):
            tmp: str | None = None
            try:
                fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{target.stem}.", suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    _write_npz(f, payload)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
                tmp = None
                _fsync_dir(self.path)
            except OSError as e:
                raise StoreError(f"cannot write model file {target}: {_reason(e)}") from None
            finally:
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)

    @staticmethod
    def _validate(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            if not isinstance(name, str) or not name or name.startswith("__") or "/" in name:
                raise ValueError(
                    f"array name must be a non-empty str without '/' not starting with '__', "
                    f"got {name!r}"
                )
            arr = np.asarray(value)
            if arr.dtype.hasobject:
                raise ValueError(
                    f"array {name!r} has object dtype; only plain numeric/str arrays are stored "
                    "(object arrays would need pickle)"
                )
            out[name] = arr
        return out

    @contextlib.contextmanager
    def _lock(self, target: Path) -> Iterator[None]:
        lock_path = target.with_name(f".{target.stem}.lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot write model file {target}: {_reason(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # ----------------------------------------------------------------------- load

    def load(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The arrays and meta saved for ``key``, or ``None`` if missing or unusable."""
        entry = self.load_entry(key)
        return None if entry is None else (entry.arrays, entry.meta)

    def load_meta(self, key: str) -> dict[str, Any] | None:
        """The meta saved for ``key`` without its arrays (cheap: one member of the file), or
        ``None`` if missing or unusable."""
        entry = self.load_entry(key, arrays=False)
        return None if entry is None else entry.meta

    def load_entry(self, key: str, *, arrays: bool = True) -> StoredEntry | None:
        """Like :meth:`load`, with the file's ``created_at`` and ``package_version``
        (``arrays=False``: without the arrays)."""
        target = self.file_for(key)
        try:
            with open(target, "rb") as f:
                return self._read(f, key, target, arrays)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning(
                "model file %s cannot be read (%s); it will be refitted", target, _reason(e)
            )
            return None

    def _read(self, f: Any, key: str, target: Path, arrays: bool) -> StoredEntry | None:
        def bad(why: str) -> None:
            log.warning("model file %s is unusable (%s); it will be refitted", target, why)

        # Any failure to parse means "refit", so every exception from numpy/zipfile/zlib/json
        # is caught here. allow_pickle=False makes numpy refuse object arrays and pickles.
        try:
            loaded = np.load(f, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - bad content must never raise; see above
            bad(f"{type(e).__name__}: {_reason(e)}")
            return None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            bad("not an .npz archive")
            return None
        try:
            with loaded as npz:
                return self._entry(npz, key, bad, arrays)
        except Exception as e:  # noqa: BLE001 - as above: corrupt members fail lazily
            bad(f"{type(e).__name__}: {_reason(e)}")
            return None

    @staticmethod
    def _entry(npz: Any, key: str, bad: Any, with_arrays: bool) -> StoredEntry | None:
        names = list(npz.files)
        if _META not in names:
            bad("no metadata; not written by this store")
            return None
        raw = npz[_META]
        if raw.dtype != np.uint8 or raw.ndim != 1:
            bad("malformed metadata")
            return None
        envelope = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(envelope, dict) or envelope.get("format") != _FORMAT:
            bad("not a model-store file")
            return None
        if envelope.get("format_version") != FORMAT_VERSION:
            bad(f"format version {envelope.get('format_version')!r}, expected {FORMAT_VERSION}")
            return None
        if envelope.get("key") != key:
            bad(f"holds key {envelope.get('key')!r}, not {key!r}")
            return None
        meta = envelope.get("meta")
        if not isinstance(meta, dict):
            bad("malformed metadata")
            return None
        arrays = {n: np.array(npz[n]) for n in names if n != _META and with_arrays}
        return StoredEntry(
            arrays=arrays,
            meta=meta,
            created_at=float(envelope.get("created_at", 0.0)),
            package_version=str(envelope.get("package_version", "unknown")),
        )

    def delete(self, key: str) -> None:
        """Remove the state of ``key`` if there is one."""
        target = self.file_for(key)
        with self._lock(target):
            try:
                target.unlink(missing_ok=True)
            except OSError as e:
                raise StoreError(f"cannot delete model file {target}: {_reason(e)}") from None


def _write_npz(f: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """What ``np.savez`` does, without its keyword-argument API (an array named ``file`` or
    ``allow_pickle`` would collide with its parameters) and with pickling switched off."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno) if e.errno in errno.errorcode else str(e)
    return " ".join(str(e).split())[:200] or type(e).__name__


def _fsync_dir(path: Path) -> None:
    """Make the rename durable; not every filesystem allows fsync on a directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
