"""The README's user-written agent is complete and runs under lmgym bench."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from lmgym.bench import BenchConfig, run_bench
from tests.conftest import EASY_ARITHMETIC

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"<!-- reinforce -->\n```python\n(.*?)```", text, re.S).group(1)


def test_readme_example_is_the_example_file():
    assert readme_example() == (ROOT / "examples" / "reinforce.py").read_text()


def test_readme_agent_benchmarks_beside_a_builtin_one(warm_model_dir, tmp_path):
    module_file = tmp_path / "my_reinforce.py"
    module_file.write_text(readme_example())
    spec = importlib.util.spec_from_file_location("my_reinforce", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import sys

    sys.modules["my_reinforce"] = module
    try:
        config = BenchConfig(agents=["my_reinforce:REINFORCE", "exit"], samples=16, model=str(warm_model_dir),
                             out=str(tmp_path / "bench"), eval_problems=10, eval_k=2, env_kwargs=EASY_ARITHMETIC,
                             agent_overrides={"my_reinforce:REINFORCE": {"prompts_per_iteration": 4},
                                              "exit": {"prompts_per_iteration": 4}})
        results = run_bench(config, progress=False)
    finally:
        del sys.modules["my_reinforce"]
    mine = results[0]
    assert mine["agent"]["class"] == "my_reinforce:REINFORCE" and mine["budget"]["samples"] == 16
    assert "losses/policy" not in mine["metrics"] and 0 <= mine["metrics"]["test/mean_reward"] <= 1
