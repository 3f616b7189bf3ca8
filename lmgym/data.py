"""Where a task's data comes from: a local copy, or the Hugging Face Hub through ``datasets``.

Every data-backed task (GSM8K, MBPP, TL;DR, CNN/DailyMail) resolves its files with the same
rule, in this order:

1. ``data_files=``: explicit paths, one per file the task needs (e.g. ``{"train": ..., "test": ...}``);
2. ``data_dir=``: a folder holding those files, or holding a ``<dataset>/`` subfolder with them;
3. ``$LMGYM_DATA_DIR/<dataset>/`` when that folder exists (one variable for every dataset);
4. the Hub dataset, through ``datasets.load_dataset``.

A path given in 1 or 2 that does not exist is a ``FileNotFoundError``; ``$LMGYM_DATA_DIR`` set to
something that is not a folder is one too. A Hub load that fails (offline, say) is a
``RuntimeError`` that names the local options. Local files are jsonl in the dataset's original
format, read once per process (per path, size and modification time).

Splits that a source does not publish are carved out by a stable hash (:func:`stable_bucket`),
so they are the same on every machine and never overlap.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["held_out_split", "DATA_DIR_ENV", "load_hub_rows", "local_files", "read_jsonl", "stable_bucket"]

DATA_DIR_ENV = "LMGYM_DATA_DIR"


def stable_bucket(text: str, buckets: int = 10) -> int:
    """A bucket in ``range(buckets)`` that depends only on ``text`` (not on PYTHONHASHSEED)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


def held_out_split(text: str, buckets: int = 10) -> str:
    """The split a procedurally generated problem belongs to, from a stable hash of its text:
    one bucket in ``buckets`` is held out (``stable_bucket(text, buckets) == 0``) and halved
    into ``"test"`` and ``"validation"``; everything else is ``"train"``. The train split is
    the same as when the held-out bucket was the test split alone, so a model trained on it
    has seen neither validation nor test problems."""
    bucket = stable_bucket(text, 2 * buckets)  # x % 2b in {0, b}  <=>  x % b == 0
    return "test" if bucket == 0 else "validation" if bucket == buckets else "train"


def local_files(
    dataset: str,
    files: Mapping[str, str],
    *,
    data_dir: str | os.PathLike | None = None,
    data_files: Mapping[str, str | os.PathLike] | None = None,
) -> dict[str, Path] | None:
    """The local copies of ``dataset``'s ``files`` (``{key: file name}``), or None: use the Hub.

    ``dataset`` names the subfolder (``"gsm8k"``); ``files`` what the task reads, e.g.
    ``{"train": "train.jsonl", "test": "test.jsonl"}`` or ``{"all": "mbpp.jsonl"}``.
    """
    if data_files is not None:
        paths = {key: Path(path) for key, path in data_files.items()}
        if set(paths) != set(files):
            raise ValueError(f"{dataset}: data_files needs exactly the keys {sorted(files)}, got {sorted(paths)}")
        return _existing(dataset, paths, "data_files")
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"{dataset}: data_dir={str(root)!r} is not a directory")
        folder = root / dataset if (root / dataset).is_dir() else root
        return _existing(dataset, {key: folder / name for key, name in files.items()}, "data_dir")
    if os.environ.get(DATA_DIR_ENV):
        root = Path(os.environ[DATA_DIR_ENV])
        if not root.is_dir():
            raise FileNotFoundError(f"${DATA_DIR_ENV}={str(root)!r} is not a directory")
        if (root / dataset).is_dir():
            return _existing(dataset, {key: root / dataset / name for key, name in files.items()}, f"${DATA_DIR_ENV}")
    return None


def _existing(dataset: str, paths: dict[str, Path], source: str) -> dict[str, Path]:
    for key, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{dataset}: {key} file not found at {str(path)!r} (from {source})")
    return paths


def read_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> list[dict]:
    """The rows of a jsonl file (blank lines skipped), cached per file state; a row missing a
    ``required`` key is a ``ValueError`` naming the file and line. Callers must not mutate rows."""
    stat = os.stat(path)
    return _read_jsonl(str(path), stat.st_size, stat.st_mtime_ns, frozenset(required))


@functools.lru_cache(maxsize=32)
def _read_jsonl(path: str, size: int, mtime: int, required: frozenset[str]) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = required - set(row)
            if missing:
                raise ValueError(f"{path}:{line_number}: missing {sorted(missing)}")
            rows.append(row)
    return rows


def load_hub_rows(dataset: str, hub_id: str, config: str | None, split: str | None = None) -> list[dict]:
    """Rows of a Hub dataset's split (every split, concatenated, when ``split`` is None)."""
    try:
        import datasets

        loaded = datasets.load_dataset(hub_id, config, split=split)
    except Exception as error:  # offline, unknown id, moved dataset: name the way out
        raise RuntimeError(
            f"could not load {hub_id!r} from the Hugging Face Hub ({type(error).__name__}: {error}). Offline, "
            f"pass data_dir=<a folder with the {dataset} files> or data_files=, or put them in "
            f"${DATA_DIR_ENV}/{dataset}/"
        ) from error
    if split is None:
        return [dict(row) for part in loaded.values() for row in part]
    return [dict(row) for row in loaded]
