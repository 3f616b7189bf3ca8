"""lmgym/data.py: the one rule every data-backed task follows to find its files."""

from __future__ import annotations

import pytest

from lmgym.data import load_hub_rows, local_files, read_jsonl, stable_bucket

FILES = {"train": "train.jsonl", "test": "test.jsonl"}


def _write(folder, names=("train.jsonl", "test.jsonl")):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text('{"question": "1+1?", "answer": "#### 2"}\n\n')
    return folder


def test_lookup_order_files_then_folder_then_variable_then_hub(tmp_path, monkeypatch):
    monkeypatch.delenv("LMGYM_DATA_DIR", raising=False)
    assert local_files("gsm8k", FILES) is None  # nothing local: the hub
    root = _write(tmp_path / "root" / "gsm8k")
    monkeypatch.setenv("LMGYM_DATA_DIR", str(tmp_path / "root"))
    assert local_files("gsm8k", FILES) == {"train": root / "train.jsonl", "test": root / "test.jsonl"}
    assert local_files("mbpp", {"all": "mbpp.jsonl"}) is None  # the variable has no mbpp/: the hub
    other = _write(tmp_path / "other")
    assert local_files("gsm8k", FILES, data_dir=other)["test"] == other / "test.jsonl"  # the keyword wins
    assert local_files("gsm8k", FILES, data_dir=tmp_path / "root")["test"] == root / "test.jsonl"  # <dataset>/ inside
    explicit = {"train": other / "train.jsonl", "test": other / "test.jsonl"}
    assert local_files("gsm8k", FILES, data_files=explicit, data_dir=tmp_path / "root") == explicit


def test_missing_paths_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        local_files("gsm8k", FILES, data_dir=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="test file not found.*from data_dir"):
        local_files("gsm8k", FILES, data_dir=_write(tmp_path / "half", ["train.jsonl"]))
    with pytest.raises(ValueError, match="exactly the keys"):
        local_files("gsm8k", FILES, data_files={"train": tmp_path / "x"})
    monkeypatch.setenv("LMGYM_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="LMGYM_DATA_DIR"):
        local_files("gsm8k", FILES)


def test_read_jsonl_skips_blank_lines_names_bad_rows_and_rereads_a_changed_file(tmp_path):
    path = _write(tmp_path, ["rows.jsonl"]) / "rows.jsonl"
    assert read_jsonl(path, {"question"}) == [{"question": "1+1?", "answer": "#### 2"}]
    with pytest.raises(ValueError, match=r"rows.jsonl:1: missing \['solution'\]"):
        read_jsonl(path, {"solution"})
    path.write_text('{"question": "a"}\n{"question": "b"}\n')
    assert [row["question"] for row in read_jsonl(path)] == ["a", "b"]


def test_an_unreachable_hub_names_the_offline_options(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"data_dir=.*LMGYM_DATA_DIR/gsm8k/"):
        load_hub_rows("gsm8k", "lmgym-test/no-such-dataset", None, "test")


def test_stable_bucket_does_not_depend_on_the_hash_seed():
    import subprocess
    import sys

    code = "from lmgym.data import stable_bucket; print(stable_bucket('12+34', 10))"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout for seed in (1, 2)}
    assert runs == {f"{stable_bucket('12+34', 10)}\n"}
