"""Leaderboard: submit validates and adds atomically, render writes tables and plots, verify re-runs."""

from __future__ import annotations

import json

import pytest

from lmgym import leaderboard
from lmgym.bench import BenchConfig, run_bench
from lmgym.cli import main
from tests.conftest import EASY_ARITHMETIC


@pytest.fixture(scope="module")
def results(warm_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    config = BenchConfig(agents=["base", "exit"], seeds=[0, 1], samples=16, model=str(warm_model_dir), out=str(out),
                         eval_problems=10, eval_k=2, env_kwargs=EASY_ARITHMETIC,
                         agent_overrides={"exit": {"prompts_per_iteration": 4, "samples_per_prompt": 2}})
    run_bench(config, progress=False)
    return sorted(out.rglob("result.json"))


def snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_submit_render_and_verify(results, tmp_path):
    root = tmp_path / "board"
    paths = [leaderboard.submit(r, "cpu-20k", root) for r in results]
    assert all(p.is_relative_to(root / "submissions" / "lmgym__Arithmetic-v0" / "cpu-20k") for p in paths)
    readme = leaderboard.render(root).read_text()
    assert "## lmgym/Arithmetic-v0 — track `cpu-20k`" in readme and " exit " in readme
    assert "95% Student-t interval" in readme and "opt. steps" in readme  # the bench's statistics and compute
    assert (root / "lmgym__Arithmetic-v0__cpu-20k.png").stat().st_size > 0
    exit_entry = next(p for p in paths if p.name.startswith("exit-seed1"))
    record = leaderboard.verify(exit_entry, workdir=tmp_path)
    assert record["ok"] and record["reproduced"] == pytest.approx(record["claimed"], abs=1e-9)
    assert json.loads(exit_entry.read_text())["verified"]["ok"] is True
    assert "1/2" in leaderboard.render(root).read_text()  # one of exit's two seeds is verified


def test_verify_refuses_an_entry_trained_on_other_weights(results, tmp_path):
    """"default" is whatever lmgym pretrains today: an entry from other weights is not reproduced
    by a re-run that happens to score the same."""
    good = json.loads(results[0].read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**good, "model": {**good["model"], "weights_sha256": "0" * 64}}))
    entry = leaderboard.submit(other, "cpu-20k", tmp_path / "board")
    record = leaderboard.verify(entry, workdir=tmp_path)
    assert record["reproduced"] == pytest.approx(record["claimed"], abs=1e-9)  # same score...
    assert record["same_weights"] is False and record["ok"] is False  # ...but not the same model
    assert "verified" not in json.loads(entry.read_text())


def test_bad_submissions_change_nothing(results, tmp_path):
    root = tmp_path / "board"
    leaderboard.submit(results[0], "cpu-20k", root)
    before = snapshot(root)
    good = json.loads(results[1].read_text())

    def write(name, payload):
        path = tmp_path / name
        path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
        return path

    cases = [
        (write("broken.json", "{not json"), "cpu-20k", "not valid JSON"),
        (write("list.json", [1, 2]), "cpu-20k", "JSON object"),
        (write("schema.json", {**good, "seed": "one"}), "cpu-20k", "result schema at seed"),
        (write("env.json", {**good, "env": {**good["env"], "id": "lmgym/Nope-v0"}}), "cpu-20k", "unknown env id"),
        (write("budget.json", {**good, "budget": {**good["budget"], "max_samples": 50_000}}), "cpu-20k", "exceeds track"),
        (write("capped.json", {**good, "budget": {**good["budget"], "max_trained_tokens": None}}), "capped", "caps trained tokens"),
        (results[0], "cpu-20k", "already on the leaderboard"),
        (results[1], "gpu-9000", "unknown track"),
    ]
    leaderboard.TRACKS["capped"] = {"samples": 20_000, "trained_tokens": 1_000}  # a track that caps compute
    try:
        for path, track, match in cases:
            with pytest.raises(ValueError, match=match):
                leaderboard.submit(path, track, root)
            assert snapshot(root) == before
    finally:
        del leaderboard.TRACKS["capped"]


def test_names_come_from_lmgym_not_the_submission(results, tmp_path):
    root = tmp_path / "board"
    evil = json.loads(results[1].read_text())
    evil["agent"]["name"] = "../../../../tmp/evil"
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(evil))
    entry = leaderboard.submit(path, "cpu-20k", root)
    assert entry.parent == root / "submissions" / "lmgym__Arithmetic-v0" / "cpu-20k"
    assert ".." not in entry.name and "/" not in entry.name


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[")
    assert main(["leaderboard", "--root", str(tmp_path / "b"), "submit", str(bad), "--track", "cpu-20k"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_shipped_entries_are_valid_and_rendered():
    """The entries in the repository's leaderboard/ come from lmgym bench on the embedded default."""
    from pathlib import Path

    from lmgym.bench import validate_result

    from lmgym.pretrain import DEFAULT_MODEL_SHA256

    root = Path(__file__).resolve().parents[1] / "leaderboard"
    shipped = leaderboard.entries(root)
    agents = [e["agent"]["name"] for _, e in shipped]
    assert set(agents) >= {"base", "sft", "ppo", "exit", "rcrl", "grpo", "rloo", "copg", "dpo", "joint"}
    assert all(agents.count(name) >= 3 for name in agents)  # anything ranked has >= 3 seeds
    from lmgym.pretrain import SHIPPED

    for _, entry in shipped:
        validate_result(entry)
        assert entry["track"] in ("cpu-20k", "cpu-suite")
        if entry["track"] == "cpu-20k":
            assert entry["agent"]["config"]["model"] == "default"
            assert entry["model"]["weights_sha256"] == DEFAULT_MODEL_SHA256  # the shipped model: reproducible anywhere
        else:  # every suite env from its own shipped model
            limits = leaderboard.track_limits("cpu-suite", entry["env"]["id"])
            assert entry["model"]["weights_sha256"] == SHIPPED[limits["model"]][1]
            assert entry["env"]["kwargs"] == limits["env_kwargs"]
    text = (root / "README.md").read_text()
    assert "lmgym/Arithmetic-v0" in text
    suite_envs = {e["env"]["id"] for _, e in shipped if e["track"] == "cpu-suite"}
    if suite_envs:  # the suite's entries: every env, every agent, >= 3 seeds, and the aggregate rendered
        from lmgym.suite import SUITES

        assert suite_envs == {e.env for e in SUITES["cpu"]}
        for env_id in suite_envs:
            runs = [e for _, e in shipped if e["track"] == "cpu-suite" and e["env"]["id"] == env_id]
            names = [e["agent"]["name"] for e in runs]
            assert set(names) >= {"base", "sft", "ppo", "exit", "rcrl", "grpo", "rloo", "copg", "dpo", "joint"}
            assert all(names.count(name) >= 3 for name in names)
        assert "## Suite `cpu`" in text and (root / "site" / "index.html").is_file()


def test_the_suite_track_takes_each_envs_own_budget_and_shipped_model(results, tmp_path):
    from lmgym.pretrain import DEFAULT_MODEL_SHA256, SHIPPED

    root = tmp_path / "board"
    good = json.loads(results[0].read_text())
    good = {**good, "env": {**good["env"], "kwargs": {}}, "model": {**good["model"], "weights_sha256": DEFAULT_MODEL_SHA256},
            "budget": {**good["budget"], "max_trained_tokens": 75_000}}

    def write(name, payload):
        path = tmp_path / name
        path.write_text(json.dumps(payload))
        return path

    entry = leaderboard.submit(write("ok.json", good), "cpu-suite", root)
    assert entry.parent == root / "submissions" / "lmgym__Arithmetic-v0" / "cpu-suite"
    before = snapshot(root)
    code = {**good, "env": {**good["env"], "id": "lmgym/TinyCode-v0"}}
    cases = [
        (write("weights.json", {**good, "seed": 5, "model": {**good["model"], "weights_sha256": "0" * 64}}), "shipped model"),
        (write("code.json", code), "shipped model 'tinycode-tiny'"),  # the Arithmetic model on the code env
        (write("gsm.json", {**good, "env": {**good["env"], "id": "lmgym/GSM8K-v0"}}), "has no env"),
        (write("kwargs.json", {**good, "seed": 6, "env": {**good["env"], "kwargs": {"digits": 1}}}), "with kwargs"),
        (write("budget.json", {**good, "budget": {**good["budget"], "max_samples": 20_000}}), "exceeds track"),
        (write("tokens.json", {**good, "budget": {**good["budget"], "max_trained_tokens": 150_000}}), "caps trained tokens"),
    ]
    for path, match in cases:
        with pytest.raises(ValueError, match=match):
            leaderboard.submit(path, "cpu-suite", root)
        assert snapshot(root) == before
    assert SHIPPED["tinycode-tiny"][1] != DEFAULT_MODEL_SHA256


@pytest.mark.parametrize("env_id", ["lmgym/TinyCode-v0", "lmgym/KeyFacts-v0", "lmgym/KeyFacts-RM-v0", "lmgym/Bandit-v0"])
def test_what_submit_refuses_it_refuses_on_every_suite_env(results, tmp_path, env_id):
    root = tmp_path / "board"
    good = json.loads(results[1].read_text())
    good = {**good, "env": {**good["env"], "id": env_id}}

    def write(name, payload):
        path = tmp_path / name
        path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
        return path

    entry = leaderboard.submit(write("ok.json", good), "cpu-20k", root)
    assert entry.parent == root / "submissions" / env_id.replace("/", "__") / "cpu-20k"
    before = snapshot(root)
    cases = [
        (write("again.json", good), "cpu-20k", "already on the leaderboard"),
        (write("budget.json", {**good, "budget": {**good["budget"], "max_samples": 50_000}}), "cpu-20k", "exceeds track"),
        (write("schema.json", {**good, "seed": "one"}), "cpu-20k", "result schema at seed"),
        (write("version.json", {**good, "env": {**good["env"], "id": env_id.replace("-v0", "-v9")}}), "cpu-20k", "unknown env id"),
        (write("suite.json", good), "cpu-suite", "shipped model|kwargs|caps trained tokens|exceeds track|has no env"),
    ]
    for path, track, match in cases:
        with pytest.raises(ValueError, match=match):
            leaderboard.submit(path, track, root)
        assert snapshot(root) == before
    evil = {**good, "seed": 7, "agent": {**good["agent"], "name": "../../x/<script>alert(1)</script>"}}
    entry = leaderboard.submit(write("evil.json", evil), "cpu-20k", root)
    assert entry.parent == root / "submissions" / env_id.replace("/", "__") / "cpu-20k" and "<" not in entry.name
    text = leaderboard.render(root).read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
