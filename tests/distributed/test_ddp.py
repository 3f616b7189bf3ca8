"""Data-parallel training across 2 processes (lmgym.distributed, gloo on CPU): after N updates
the parameters equal those of one process on the same data, within float summation order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.agents.conftest import SAME_UPDATE_TOLERANCE

ROOT = Path(__file__).resolve().parents[2]


def run(model_dir, name, out, options, processes):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    worker = ["-m", "tests.distributed.ddp_worker", str(model_dir), name, str(out), json.dumps(options)]
    if processes == 1:
        command = [sys.executable, *worker]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *worker]
    subprocess.run(command, check=True, cwd=ROOT, env=env, timeout=600, capture_output=True)
    return [torch.load(f"{out}.rank{r}.pt") for r in range(processes)]


CASES = [("grpo", {}), ("grpo", {"lora_rank": 4, "beta": 0.05}),
         pytest.param("ppo", {}, marks=pytest.mark.slow), pytest.param("sft", {}, marks=pytest.mark.slow)]


@pytest.mark.parametrize("name,options", CASES)
def test_two_processes_train_the_same_parameters_as_one(name, options, warm_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    single = run(warm_model_dir, name, tmp_path / "single", options, 1)[0]
    ranks = run(warm_model_dir, name, tmp_path / "ddp", options, 2)
    assert [r["world"] for r in ranks] == [2, 2] and single["world"] == 1
    assert single["optimizer_steps"] == ranks[0]["optimizer_steps"] == ranks[1]["optimizer_steps"] > 0
    for key, value in single["state"].items():
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key  # the ranks never diverge
        assert (ranks[0]["state"][key] - value).abs().max() < SAME_UPDATE_TOLERANCE, key
    # and they did train: the adapters (or the weights) moved away from the warm model
    initial = AutoModelForCausalLM.from_pretrained(warm_model_dir).state_dict()
    if options.get("lora_rank"):
        moved = max(v.abs().max().item() for k, v in single["state"].items() if "lora_B" in k)
    else:
        moved = max((single["state"][k] - v).abs().max().item() for k, v in initial.items())
    assert moved > 1e-3
