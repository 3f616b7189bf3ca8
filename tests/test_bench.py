"""lmgym bench: cells, result records against the schema, resume, config files, bad input."""

from __future__ import annotations

import json

import jsonschema
import pytest

from lmgym.bench import BenchConfig, load_config, run_bench, validate_result
from lmgym.cli import main
from tests.conftest import EASY_ARITHMETIC


@pytest.fixture
def config(warm_model_dir, tmp_path):
    return BenchConfig(agents=["base", "agents.exit:ExIt"], seeds=[0, 1], samples=16, model=str(warm_model_dir),
                       out=str(tmp_path / "bench"), eval_problems=10, eval_k=2, env_kwargs=EASY_ARITHMETIC,
                       agent_overrides={"agents.exit:ExIt": {"prompts_per_iteration": 4, "samples_per_prompt": 2}})


def test_bench_writes_valid_results_and_skips_finished_cells(config, tmp_path):
    results = run_bench(config, progress=False)
    assert [(r["agent"]["name"], r["seed"]) for r in results] == [("base", 0), ("base", 1), ("agents.exit:ExIt", 0), ("agents.exit:ExIt", 1)]
    for result in results:
        validate_result(result)
        assert result["model"]["weights_sha256"] and result["packages"]["torch"]
        assert {"test/mean_reward", "test/ground_truth", "test/pass@2", "test/maj@2", "test/kl_to_reference",
                "test/reward_std_zero_share", "test/solved_share", "test/stuck_share"} <= set(result["metrics"])
        assert result["metrics"]["test/problems"] == 12  # the whole (small) test split, once
        assert result["chosen"]["select_on"] == "reward"
        assert not any(k.startswith("test/") for row in result["curve"] for k in row)  # the curve is validation
        assert set(result["compute"]) >= {"optimizer_steps", "trained_tokens", "train_flops", "generation_flops"}
    exit_result = results[2]
    assert exit_result["budget"]["samples"] == 16 and exit_result["agent"]["config"]["prompts_per_iteration"] == 4
    out = tmp_path / "bench"
    files = sorted(out.rglob("result.json"))
    assert len(files) == 4 and (out / "summary.md").is_file() and (out / "curves.png").stat().st_size > 0
    assert (files[0].parent / "curve.csv").is_file()
    stamps = [f.stat().st_mtime_ns for f in files]
    again = run_bench(config, progress=False)  # finished cells are read back, not re-run
    assert [f.stat().st_mtime_ns for f in files] == stamps and again == results
    summary = (out / "summary.md").read_text()
    assert "95% Student-t interval" in summary and "opt. steps" in summary
    # two seeds: shown with an interval, but not ranked (ranks need >= 3 seeds)
    rows = [line for line in summary.splitlines() if "agents.exit:ExIt" in line or "| base " in line]
    assert len(rows) == 2 and all(row.split("|")[1].strip() == "-" for row in rows)


def test_a_finished_cell_of_another_setup_is_moved_aside_and_run_again(config, tmp_path, warm_model_dir, capsys):
    import dataclasses
    import shutil

    one = dataclasses.replace(config, agents=["base"], seeds=[0], agent_overrides={})
    run_bench(one, progress=False)
    cell = tmp_path / "bench" / "lmgym__Arithmetic-v0" / "base" / "seed0"
    # the same model name, other weights (as when lmgym's default pretraining changes)
    other = tmp_path / "other-model"
    shutil.copytree(warm_model_dir, other)
    weights = next(other.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    moved = dataclasses.replace(one, model=str(other))
    run_bench(moved, progress=False)
    assert "other model weights" in capsys.readouterr().err
    asides = list(cell.parent.glob("seed0.stale-*"))
    assert len(asides) == 1 and (asides[0] / "result.json").is_file()  # kept, not deleted
    fresh = json.loads((cell / "result.json").read_text())
    assert fresh["agent"]["config"]["model"] == str(other)
    run_bench(dataclasses.replace(moved, eval_problems=5), progress=False)  # another agent config
    assert "another agent config" in capsys.readouterr().err and len(list(cell.parent.glob("seed0.stale-*"))) == 2


def test_schema_rejects_broken_records(config):
    result = run_bench(BenchConfig(**{**config.__dict__, "agents": ["base"], "seeds": [0], "agent_overrides": {}}), progress=False)[0]
    for broken in ({**result, "schema_version": 1}, {**result, "metrics": {}}, {**result, "compute": {}}, {**result, "seed": "zero"},
                   {**result, "env": {**result["env"], "id": "Arithmetic"}}):
        with pytest.raises(jsonschema.ValidationError):
            validate_result(broken)


def test_config_files(tmp_path):
    toml = tmp_path / "bench.toml"
    toml.write_text('agents = ["ppo"]\nseeds = [1, 2]\nsamples = 100\n[agent_overrides.ppo]\nlr = 1e-5\n')
    assert load_config(toml) == BenchConfig(agents=["ppo"], seeds=[1, 2], samples=100, agent_overrides={"ppo": {"lr": 1e-5}})
    yaml = tmp_path / "bench.yaml"
    yaml.write_text("agents: [exit]\nsampels: 10\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sampels'\]"):
        load_config(yaml)
    with pytest.raises(ValueError, match="must be .toml"):
        load_config(tmp_path / "bench.json")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"samples": 0}, "positive"), ({"agents": []}, "at least one"), ({"agent_overrides": {"ppo": {}}, "agents": ["exit"]}, "not in the run")],
)
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BenchConfig(**kwargs)


def test_unknown_ids_fail_before_training(tmp_path, capsys):
    assert main(["bench", "--env", "lmgym/Nope-v0", "--out", str(tmp_path)]) == 2
    assert "unknown env id 'lmgym/Nope-v0'" in capsys.readouterr().err
    assert main(["bench", "--agent", "a3c", "--out", str(tmp_path)]) == 2
    assert "unknown agent 'a3c'" in capsys.readouterr().err
    assert main(["bench", "--samples", "0", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())  # nothing written


def test_unknown_agent_override_key_is_an_error(config):
    bad = BenchConfig(**{**config.__dict__, "agents": ["exit"], "seeds": [0], "agent_overrides": {"exit": {"learning_rate": 1}}})
    with pytest.raises(ValueError, match="unknown ExItConfig field"):
        run_bench(bad, progress=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bench_fans_cells_out_over_a_local_ray_instance(config, tmp_path):
    ray = pytest.importorskip("ray")
    local = run_bench(BenchConfig(**{**config.__dict__, "out": str(tmp_path / "local")}), progress=False)
    try:
        fanned = run_bench(BenchConfig(**{**config.__dict__, "out": str(tmp_path / "ray"), "ray": "local"}), progress=False)
    finally:
        ray.shutdown()
    assert len(list((tmp_path / "ray").rglob("result.json"))) == 4  # written by the driver
    # same cells, same seeds: the same numbers whether run in-process or on Ray workers (up to
    # float reduction order: a worker runs torch with its own thread count)
    for ray_result, local_result in zip(fanned, local):
        assert ray_result["metrics"] == pytest.approx(local_result["metrics"], abs=1e-4)
        assert [p["val/mean_reward"] for p in ray_result["curve"]] == [p["val/mean_reward"] for p in local_result["curve"]]


def test_a_cells_saved_model_starts_another_agent(warm_model_dir, tmp_path):
    """--save-model: SFT's validation-chosen policy becomes an HF folder that --model takes; the
    untrained base policy from it scores exactly what the SFT cell's test said (same weights)."""
    from lmgym.io import weights_hash

    sft = BenchConfig(agents=["sft"], seeds=[0], samples=48, model=str(warm_model_dir), out=str(tmp_path / "sft"),
                      eval_problems=12, eval_k=1, env_kwargs=EASY_ARITHMETIC, save_models=True,
                      agent_overrides={"sft": {"prompts_per_iteration": 8, "eval_every": 16}})
    [trained] = run_bench(sft, progress=False)
    folder = next((tmp_path / "sft").rglob("model"))
    record = json.loads((folder / "lmgym_agent.json").read_text())
    assert record["agent"] == "sft" and record["which"] == "chosen"
    assert record["iteration"] == trained["chosen"]["iteration"]
    after = BenchConfig(agents=["base"], seeds=[0], samples=16, model=str(folder), out=str(tmp_path / "base"),
                        eval_problems=12, eval_k=1, env_kwargs=EASY_ARITHMETIC)
    [base] = run_bench(after, progress=False)
    assert base["model"]["weights_sha256"] == weights_hash(str(folder)) != trained["model"]["weights_sha256"]
    assert base["metrics"]["test/ground_truth"] == trained["metrics"]["test/ground_truth"]
    with pytest.raises(ValueError, match="in-process only"):
        BenchConfig(save_models=True, ray="local")


def test_a_result_from_before_a_new_config_field_still_counts_as_finished(config, tmp_path):
    """An agent field added later (e.g. optimizer) with its default value is the behaviour the
    old result had: its cell is not re-run."""
    run_bench(config, progress=False)
    result_file = next(p for p in (tmp_path / "bench").rglob("result.json") if "ExIt" in str(p) and p.parent.name == "seed0")
    old = json.loads(result_file.read_text())
    del old["agent"]["config"]["optimizer"]
    result_file.write_text(json.dumps(old))
    assert [r["seed"] for r in run_bench(config, progress=False)].count(0) == 2  # base and ExIt, neither re-run
    assert not list((tmp_path / "bench").rglob("*.stale-*"))
