"""`lmgym leaderboard check BASE HEAD` on a real git repository: a good submission passes (its cell
re-run and reproduced), and hostile changes are refused: an edited or deleted entry, files
outside the submissions folder, a huge file, a link, a misnamed or self-verified entry, and a
result whose claimed score does not reproduce."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from lmgym import leaderboard
from lmgym.bench import BenchConfig, run_bench
from lmgym.cli import main

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(repo, *args):
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Three real base cells on the shipped default model: cheap to re-run."""
    out = tmp_path_factory.mktemp("bench")
    run_bench(BenchConfig(agents=["base"], seeds=[0, 1, 2], samples=16, model="default", out=str(out),
                          eval_problems=10, eval_k=1, test_problems=20), progress=False)
    return sorted(out.rglob("result.json"))


@pytest.fixture
def repo(results, tmp_path):
    """A leaderboard repository whose main branch holds one entry; each test branches off it."""
    repo = tmp_path / "repo"
    (repo / "lmgym").mkdir(parents=True)
    (repo / "lmgym" / "code.py").write_text("print('lmgym')\n")
    git(repo, "init", "-q", "-b", "main")
    leaderboard.submit(results[0], "cpu-20k", repo / "leaderboard")
    (repo / "leaderboard" / "README.md").write_text("# board\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "change")
    return repo


def on_main(repo):
    """The entry already on main."""
    [entry] = (repo / "leaderboard" / "submissions").rglob("*.json")
    return entry


def propose(repo, message="change"):
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return leaderboard.check("main", "change", repo=repo, workdir=repo.parent)


def test_a_good_submission_passes_and_its_cell_reproduces(repo, results):
    added = leaderboard.submit(results[1], "cpu-20k", repo / "leaderboard")
    report = propose(repo)
    assert report["ok"], report["problems"]
    [entry] = report["entries"]
    assert entry["path"] == added.relative_to(repo).as_posix()
    assert entry["rerun"]["ok"] and entry["rerun"]["reproduced"] == pytest.approx(entry["rerun"]["claimed"])


def test_editing_or_deleting_an_entry_is_refused(repo):
    entry = on_main(repo)
    data = json.loads(entry.read_text())
    data["metrics"]["test/ground_truth"] = 0.99
    entry.write_text(json.dumps(data))
    report = propose(repo)
    assert not report["ok"] and "changes an existing entry" in report["problems"][0]
    git(repo, "rm", "-q", str(entry))
    report = propose(repo, "delete")
    assert not report["ok"] and "deletes an existing entry" in report["problems"][0]


def test_files_outside_the_submissions_folder_are_refused(repo, results):
    leaderboard.submit(results[1], "cpu-20k", repo / "leaderboard")
    (repo / "lmgym" / "code.py").write_text("print('owned')\n")  # e.g. the checker itself
    (repo / "leaderboard" / "README.md").write_text("# my board\n")
    (repo / ".github").mkdir()
    (repo / ".github" / "evil.yml").write_text("on: push\n")
    report = propose(repo)
    assert not report["ok"]
    refused = " ".join(report["problems"])
    for path in ("lmgym/code.py", "leaderboard/README.md", ".github/evil.yml"):
        assert f"{path}: outside leaderboard/submissions/" in refused
    assert report["entries"][0]["ok"]  # the entry itself was fine


def test_huge_files_links_and_non_json_are_refused(repo):
    folder = repo / "leaderboard" / "submissions" / "lmgym__Arithmetic-v0" / "cpu-20k"
    (folder / "huge.json").write_text('{"pad": "' + "x" * (leaderboard.MAX_ENTRY_BYTES + 10) + '"}')
    (folder / "notes.json").write_text("not json")
    os.symlink("/etc/passwd", folder / "link.json")
    report = propose(repo)
    refused = "\n".join(report["problems"])
    assert "huge.json: " in refused and "over the" in refused
    assert "notes.json: not a JSON file" in refused
    assert "link.json: mode 120000" in refused
    assert not report["ok"] and not any(e["ok"] for e in report["entries"])


def test_misnamed_self_verified_and_duplicate_entries_are_refused(repo, results):
    entry = on_main(repo)
    folder = entry.parent
    shutil.copy(results[1], folder / "base-seed1-000000000000.json")  # a name lmgym did not build
    data = json.loads(results[2].read_text())
    leaderboard.submit(results[2], "cpu-20k", repo / "leaderboard")
    right = leaderboard.entry_path(data, "cpu-20k")
    (repo / "leaderboard" / right).write_text(json.dumps({**data, "track": "cpu-20k", "verified": {"ok": True}}))
    os.makedirs(folder.parent / "100k")  # the entry on main, again, under another track
    shutil.copy(entry, folder.parent / "100k" / entry.name)
    report = propose(repo)
    refused = "\n".join(report["problems"])
    assert "base-seed1-000000000000.json: " in refused
    assert "carries a 'verified' record" in refused
    assert "its track 'cpu-20k' is not its folder's '100k'" in refused
    assert not report["ok"]


def test_a_claimed_score_that_does_not_reproduce_is_refused(repo, results, tmp_path):
    data = json.loads(results[1].read_text())
    data["metrics"]["test/ground_truth"] = min(1.0, data["metrics"]["test/ground_truth"] + 0.3)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    leaderboard.submit(tampered, "cpu-20k", repo / "leaderboard")  # well-formed, well-named, untrue
    report = propose(repo)
    assert not report["ok"]
    [entry] = report["entries"]
    assert entry["rerun"]["ok"] is False and "does not reproduce" in report["problems"][0]


def test_check_command_exit_codes(repo, results, capsys):
    leaderboard.submit(results[1], "cpu-20k", repo / "leaderboard")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "good")
    assert main(["leaderboard", "check", "main", "change", "--repo", str(repo), "--no-rerun"]) == 0
    assert "OK: 1 new entries" in capsys.readouterr().out
    (repo / "lmgym" / "code.py").write_text("x = 1\n")
    git(repo, "commit", "-qam", "bad")
    assert main(["leaderboard", "check", "main", "change", "--repo", str(repo), "--no-rerun"]) == 1
    assert "refused: lmgym/code.py: outside" in capsys.readouterr().out


def test_the_pull_request_workflow_runs_the_base_branchs_checker():
    from pathlib import Path

    import yaml

    workflow = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "leaderboard-check.yml"
    spec = yaml.safe_load(workflow.read_text())
    triggers = spec.get("on", spec.get(True))  # YAML 1.1 reads a bare `on` as True
    assert list(triggers) == ["pull_request"]  # not pull_request_target: no secrets, read-only token
    steps = spec["jobs"]["check"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"  # the checker is main's code
    runs = [s.get("run", "") for s in steps]
    assert any("refs/pull/" in r and "git fetch" in r for r in runs)
    assert any(r.startswith(".venv/bin/lmgym leaderboard check") and "pr/head" in r for r in runs)
    assert any(r == "bash scripts/install.sh" for r in runs)
