"""lmgym eval (lmgym.evaluation): ground-truth metrics with intervals, a result in the bench's
schema, every completion kept."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lmgym.bench import validate_result
from lmgym.cli import main
from lmgym.evaluation import EvalConfig, bootstrap_interval, evaluate_model, wilson_interval


def test_wilson_and_bootstrap_intervals():
    three_of_32 = wilson_interval(np.array([1] * 3 + [0] * 29))
    assert three_of_32.point == pytest.approx(3 / 32)
    assert three_of_32.low == pytest.approx(0.0324, abs=1e-3) and three_of_32.high == pytest.approx(0.2422, abs=1e-3)
    none = wilson_interval(np.zeros(20))
    assert none.low == 0.0 and 0.1 < none.high < 0.2  # never a [0, 0] interval from 20 misses
    partial = bootstrap_interval(np.array([0.0, 0.5, 0.5, 1.0] * 10))
    assert partial.low < 0.5 < partial.high


def test_eval_writes_a_result_in_the_bench_schema(tiny_model_dir, tmp_path):
    config = EvalConfig(model=str(tiny_model_dir), env="lmgym/Arithmetic-v0", problems=12, k=3, backend="hf",
                        batch=5, max_tokens=8, out=str(tmp_path / "eval"))
    result = evaluate_model(config, progress=False)
    validate_result(result)
    metrics = result["metrics"]
    assert metrics["test/problems"] == 12
    for name in ("ground_truth", "mean_reward", "pass@3", "maj@3", "sampled_ground_truth"):
        assert metrics[f"test/{name}_low"] <= metrics[f"test/{name}"] <= metrics[f"test/{name}_high"]
    problems = result["evaluation"]["problems"]
    assert [p["index"] for p in problems] == list(range(12))
    assert metrics["test/ground_truth"] == pytest.approx(np.mean([p["greedy"] for p in problems]))
    assert metrics["test/pass@3"] == pytest.approx(np.mean([p["correct_of_k"] > 0 for p in problems]))
    assert result["evaluation"]["intervals"]["ground_truth"].startswith("Wilson")
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 + 12 * 3 and {s["run"] for s in samples} == {"greedy", "sampled"}
    assert json.loads((tmp_path / "eval" / "result.json").read_text())["metrics"] == metrics
    assert result["compute"]["generated_tokens"] == sum(s["tokens"] for s in samples)


def test_eval_command_line(tiny_model_dir, tmp_path, capsys):
    code = main(["eval", "--model", str(tiny_model_dir), "--problems", "4", "--backend", "hf", "--max-tokens", "6",
                 "--split", "validation", "--out", str(tmp_path / "v"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "ground_truth" in out and "validation" in out
    assert json.loads((tmp_path / "v" / "result.json").read_text())["metrics"]["val/problems"] == 4
    assert main(["eval", "--model", str(tmp_path / "nowhere"), "--problems", "2", "--backend", "hf", "--quiet"]) == 2


@pytest.mark.vllm
def test_eval_with_its_own_vllm_engine_scores_the_float32_weights_as_hf_does(tiny_model_dir, tmp_path):
    """vLLM's dtype "auto" would score a float32 checkpoint in bfloat16 on CPU; lmgym eval's own
    engine holds float32 (recorded in the result), and its greedy verdicts are HF's, problem by problem."""
    pytest.importorskip("vllm")
    common = ["--model", str(tiny_model_dir), "--problems", "48", "--max-tokens", "8", "--quiet"]
    # In its own process: closing a second in-process vLLM engine tears down the distributed
    # state of the session's engine.
    done = subprocess.run([sys.executable, "-m", "lmgym.cli", "eval", *common, "--backend", "vllm", "--out",
                           str(tmp_path / "vllm")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    vllm = json.loads((tmp_path / "vllm" / "result.json").read_text())
    hf = evaluate_model(EvalConfig(model=str(tiny_model_dir), env="lmgym/Arithmetic-v0", problems=48, max_tokens=8,
                                   backend="hf", out=str(tmp_path / "hf")), progress=False)
    assert vllm["agent"]["config"]["backend"] == "vllm" and vllm["agent"]["config"]["dtype"] == "float32"
    validate_result(vllm)
    assert [p["greedy"] for p in vllm["evaluation"]["problems"]] == [p["greedy"] for p in hf["evaluation"]["problems"]]
