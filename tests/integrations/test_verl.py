"""lmgym.integrations.verl: verl's parquet format and reward-function interface, checked the way
verl reads and calls them (verl's training stack itself needs Ray + GPUs and does not run here):
the files through ``datasets.load_dataset("parquet")`` and a chat template as verl's
``RLHFDataset`` does, the scorer file loaded by path as ``custom_reward_function.path`` is, and
called with the keyword arguments of verl's ``naive`` and ``batch`` reward managers."""

from __future__ import annotations

import importlib.util
import json

import gymnasium as gym
import pytest

import lmgym  # noqa: F401
import lmgym.integrations.verl as verl_module
from lmgym.cli import main
from lmgym.integrations import scorer
from lmgym.integrations.verl import write_parquet


def load_like_verl():
    """verl's get_custom_reward_fn: spec_from_file_location on the configured path."""
    spec = importlib.util.spec_from_file_location("custom_module", verl_module.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tinycode_files(tmp_path_factory):
    return write_parquet("lmgym/TinyCode-v0", tmp_path_factory.mktemp("verl"), splits=("train", "test"),
                         num_problems={"train": 24, "test": 10})


def test_rows_have_verls_five_fields_and_no_reference(tinycode_files):
    from datasets import load_dataset

    rows = load_dataset("parquet", data_files=str(tinycode_files["test"]))["train"]
    assert set(rows.column_names) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert len(rows) == 10 and len(load_dataset("parquet", data_files=str(tinycode_files["train"]))["train"]) == 24
    task = scorer("lmgym/TinyCode-v0").task
    indices = [row["extra_info"]["index"] for row in rows]
    assert len(set(indices)) == 10  # drawn without repeats from the 500 test problems
    for i, row in zip(indices, rows):
        problem = task.problem("test", i)
        assert row["data_source"] == "lmgym/TinyCode-v0" and row["ability"] == "code"
        assert row["prompt"] == task.chat_messages(problem)
        assert row["reward_model"]["style"] == "rule"
        key = json.loads(row["reward_model"]["ground_truth"])
        assert key == {"lmgym": "lmgym/TinyCode-v0", "kwargs": {}, "split": "test", "index": i}
        assert row["extra_info"] == {"split": "test", "index": i}
        for test in problem.meta.get("tests", []):  # no unit test and no expected value in the file
            assert str(test) not in json.dumps(row)


def test_prompts_take_a_chat_template_as_verls_dataset_applies_it(tinycode_files):
    import pandas as pd

    from lmgym.models import bpe_tokenizer

    tokenizer = bpe_tokenizer()
    frame = pd.read_parquet(tinycode_files["test"])
    text = tokenizer.apply_chat_template(list(frame.iloc[0]["prompt"]), add_generation_prompt=True, tokenize=False)
    assert frame.iloc[0]["prompt"][0]["content"] in text and text.rstrip().endswith("assistant")


def test_naive_and_batch_managers_get_lmgyms_own_rewards(tinycode_files):
    import pandas as pd

    module = load_like_verl()
    frame = pd.read_parquet(tinycode_files["test"])
    task = scorer("lmgym/TinyCode-v0").task
    indices = [e["index"] for e in frame.extra_info]
    solutions = [task.problem("test", i).solution for i in indices]
    solutions[0] = solutions[0].replace("return", "return 1 +", 1)
    solutions[1] = "Here it is.\n```python\n" + solutions[1] + "\n```\n"  # a chat reply: the env extracts the code block
    env = gym.make("lmgym/TinyCode-v0", split="test")
    expected = []
    for i, solution in zip(indices, solutions):
        env.reset(options={"index": i})
        expected.append(env.step(solution)[1])
    assert expected[0] == 0.0 and expected[1] == 1.0
    per_item = [module.compute_score(data_source=row.data_source, solution_str=s, ground_truth=row.reward_model["ground_truth"],
                                     extra_info=dict(row.extra_info)) for row, s in zip(frame.itertuples(), solutions)]
    calls = scorer("lmgym/TinyCode-v0").calls
    batched = module.compute_score_batch(data_sources=list(frame.data_source), solution_strs=solutions,
                                         ground_truths=[r["ground_truth"] for r in frame.reward_model],
                                         extra_infos=[dict(e, rollout_reward_scores={}) for e in frame.extra_info])
    assert scorer("lmgym/TinyCode-v0").calls == calls + 1  # one call for the batch
    assert [s["score"] for s in per_item] == [s["score"] for s in batched] == expected
    assert all(set(s) == {"score", "ground_truth", "rejected"} for s in batched)  # same keys: verl's extras lists


def test_mixed_envs_in_one_batch_and_bad_keys(tmp_path):
    files = write_parquet("lmgym/Arithmetic-v0", tmp_path, splits=("test",))
    import pandas as pd

    frame = pd.read_parquet(files["test"])
    arithmetic = frame.reward_model.iloc[3]["ground_truth"]
    answer = str(scorer("lmgym/Arithmetic-v0").task.problem("test", 3).answer)
    code_key = verl_module.problem_key("lmgym/TinyCode-v0", "test", 0)
    code = scorer("lmgym/TinyCode-v0").task.problem("test", 0).solution
    scores = verl_module.compute_score_batch(["lmgym/Arithmetic-v0", "lmgym/TinyCode-v0", "lmgym/Arithmetic-v0"],
                                             [answer, code, "x" * 70_000], [arithmetic, code_key, arithmetic])
    assert [s["score"] for s in scores] == [1.0, 1.0, 0.0] and scores[2]["rejected"] == 1.0
    with pytest.raises(ValueError, match="not an lmgym problem key"):
        verl_module.compute_score("lmgym/Arithmetic-v0", "1", "42")
    with pytest.raises(ValueError, match="does not match"):
        verl_module.compute_score("lmgym/TinyCode-v0", "1", arithmetic)
    with pytest.raises(ValueError, match="procedural"):
        write_parquet("lmgym/Arithmetic-v0", tmp_path, splits=("train",))


def test_export_verl_command_writes_files_and_prints_the_overrides(tmp_path, capsys):
    assert main(["export-verl", "--env", "lmgym/Arithmetic-v0", "--out", str(tmp_path), "--train-problems", "8"]) == 0
    printed = capsys.readouterr().out
    for split in ("train", "validation", "test"):
        assert (tmp_path / f"{split}.parquet").is_file()
    assert f"data.train_files={tmp_path / 'train.parquet'}" in printed
    assert f"custom_reward_function.path={verl_module.__file__}" in printed
    assert "custom_reward_function.name=compute_score_batch" in printed and "reward_manager=batch" in printed
