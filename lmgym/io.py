"""Atomic file writes: results, checkpoints, leaderboard entries and plots are written to a
temporary file in the target's folder and moved into place, so a crash never leaves a
half-written file and readers never see one."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_dir", "atomic_path", "write_json_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path (same folder, same suffix) to write; on success it becomes ``path``.

    ``overwrite=False`` refuses to replace an existing file (``FileExistsError``), atomically.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the name exists: never replaces a file
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, payload: Any, overwrite: bool = True) -> None:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder (beside ``path``) to fill; on success it becomes ``path``.

    ``overwrite=True`` replaces an existing folder (removed just before the rename);
    ``overwrite=False`` raises ``FileExistsError`` if ``path`` exists by then (e.g. a
    concurrent writer won). On failure the temporary folder is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield staging
        if overwrite and path.exists():
            shutil.rmtree(path)
        try:
            staging.rename(path)
        except OSError as error:
            if path.exists():
                raise FileExistsError(f"{path} exists") from error
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def weights_hash(model_path: str) -> str | None:
    """SHA-256 over a local model folder's weight files (None for a hub name). Read once per
    process for each state of the files (path, size, mtime): a bench checks it for every cell."""
    folder = Path(model_path)
    files = sorted(p for p in folder.glob("*") if p.suffix in (".safetensors", ".bin")) if folder.is_dir() else []
    if not files:
        return None
    return _hash_files(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=16)
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
