"""Atomic writes of folders: reward models and pretrained models are written through these."""

from __future__ import annotations

import pytest

from lmgym.io import atomic_dir


def test_atomic_dir_replaces_or_refuses_and_never_leaves_a_half_written_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as staging:
        (staging / "weights").write_text("v1")
    assert (target / "weights").read_text() == "v1"
    with atomic_dir(target) as staging:
        (staging / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    with pytest.raises(FileExistsError), atomic_dir(target, overwrite=False) as staging:
        (staging / "weights").write_text("v3")
    assert (target / "weights").read_text() == "v2"
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "other") as staging:
        (staging / "half").write_text("x")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folders, no half-written one
