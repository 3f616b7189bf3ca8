"""``lmgym reproduce NAME``: the seed papers' findings (../shared/PAPERS.md) as experiments with a
claim stated before the run, a declared measurement and test, and a verdict ("reproduced", "not
reproduced" or "inconclusive") computed from the numbers, never edited after them.

Each reproduction is a module with ``CLAIMS`` (the declared claims and tests, printed into the
report before any number) and ``run(out, quick, progress) -> dict``; its cells are ordinary
``lmgym bench`` cells under ``out/runs/`` (so an interrupted run resumes and finished cells are
skipped), its choices are made on the validation split and recorded in ``out/tuning.json``, and
it writes ``out/report.md``, plots and ``out/summary.json``. ``--quick`` runs the same code at a
tiny scale for tests; its verdicts mean nothing and the report says so.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

REPRODUCTIONS = {
    "copg": "lmgym.reproduce.copg",  # off-policy learning without importance weights (Flet-Berliac et al., 2024)
    "havrilla": "lmgym.reproduce.havrilla",  # ExIt vs PPO vs RC-RL for reasoning (Havrilla et al., 2024)
    "razin": "lmgym.reproduce.razin",  # vanishing gradients (Razin et al., ICLR 2024)
    "swamy": "lmgym.reproduce.swamy",  # the generation-verification gap: RM + online RL vs offline DPO (Swamy et al., 2025)
    "xu": "lmgym.reproduce.xu",  # joint reward-policy learning with epistemic exploration (Xu et al., 2023)
}


def load(name: str):
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}: choose one of {sorted(REPRODUCTIONS)}")
    return importlib.import_module(REPRODUCTIONS[name])


def verdict(holds: bool | None) -> str:
    """A claim's verdict from its declared test: True, False, or None (the test could not decide)."""
    return {True: "reproduced", False: "not reproduced", None: "inconclusive"}[holds]


def log(name: str, message: str, progress: bool) -> None:
    if progress:
        print(f"[reproduce {name}] {message}", flush=True)


def trial(folder: Path, env: str, agent_name: str, overrides: dict, *, model: str, samples: int, eval_problems: int,
          eval_every: int, env_kwargs: dict, progress: bool, save_model: bool = False, seed: int = 0,
          measure=None) -> dict:
    """One tuning trial: train on ``seed`` and read the validation split only (never test); resumable
    (the agent checkpoints into ``folder``) and skipped once its record exists. The record has the
    best and the last validation ground truth along the curve, the trial's compute, and whatever
    ``measure(agent)`` returns (a dict: a reproduction's own validation measurement)."""
    from agents import load_agent
    from lmgym.io import write_json_atomic
    from lmgym.rollout import Budget

    record_file = folder / "trial.json"
    if record_file.is_file():
        return json.loads(record_file.read_text())
    agent_class = load_agent(agent_name)
    config = agent_class.Config(model=model, seed=seed, eval_problems=eval_problems, eval_every=eval_every, eval_k=1,
                                **overrides)
    agent = agent_class(config)
    learned = agent.learn(env, Budget(max_samples=samples), run_dir=folder, env_kwargs=env_kwargs, progress=progress,
                          test=False)
    record = {"agent": agent_name, "params": overrides, "env_kwargs": env_kwargs, "samples": learned.budget["samples"],
              "validation_ground_truth": max(row["val/ground_truth"] for row in learned.curve),
              "validation_last": learned.curve[-1]["val/ground_truth"],
              "validation_by_subset": {k: v for k, v in learned.curve[-1].items() if k.startswith("val/ground_truth[")},
              "optimizer_steps": agent.optimizer_steps, "trained_tokens": agent.trained_tokens}
    if measure is not None:
        record.update(measure(agent))
    if save_model:
        agent.save_model(folder / "model")
    write_json_atomic(record_file, record)
    return record


def arm(folder: Path, env: str, agent_name: str, overrides: dict, *, seeds, samples: int, model: str,
        eval_problems: int, eval_k: int, test_problems: int | None, env_kwargs: dict, progress: bool) -> list[dict]:
    """One arm of a reproduction: ordinary ``lmgym bench`` cells (one per seed) under ``folder``,
    so an interrupted run resumes and finished cells are read back."""
    from lmgym.bench import BenchConfig, run_bench

    config = BenchConfig(envs=[env], agents=[agent_name], seeds=list(seeds), samples=samples, trained_tokens=None,
                         model=model, out=str(folder), eval_problems=eval_problems, eval_k=eval_k,
                         test_problems=test_problems, env_kwargs=dict(env_kwargs),
                         agent_overrides={agent_name: dict(overrides)})
    return run_bench(config, progress=progress)


def declare(out: Path, claims: dict, plan) -> None:
    """Write the declared claims and plan (``out/claims.json``) before anything runs."""
    import dataclasses

    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps({"claims": claims, "plan": dataclasses.asdict(plan)}, indent=2))


def save_figure(fig, axes, path: Path) -> None:
    """A reproduction's plot: legends on ``axes``, laid out, written at 110 dpi, closed."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_head(title: str, name: str, summary: dict, quick_scale: str, timing: str, preamble=()) -> list[str]:
    """The report's head: its title, the ``--quick`` banner (``quick_scale`` says how tiny), the
    command and how long it took (``timing``), then the claims and tests as declared (after any
    ``preamble`` lines)."""
    lines = [f"# Reproduction: {title}", ""]
    if summary["quick"]:
        lines += [f"**`--quick` run: a smoke test at a tiny scale{quick_scale}. Its verdicts mean nothing.**", ""]
    lines += [f"Command: `lmgym reproduce {name}" + (" --quick" if summary["quick"] else "") + f"`; {timing}", "",
              "## Claims and tests (declared before the run)", "", *preamble]
    for key, (claim, test) in summary["claims"].items():
        lines += [f"- **({key})** {claim}  \n  *Test:* {test}"]
    return lines


def verdict_lines(verdicts: dict, evidence: dict, deviations: str = "none.") -> list[str]:
    """The report's tail: each claim's verdict, the numbers its test read, and the deviations."""
    lines = [f"- **({key}) {result}**" for key, result in verdicts.items()]
    if evidence:
        lines += ["", "What the tests read:", ""]
        for key, value in evidence.items():
            shown = fmt(value) if isinstance(value, list) and len(value) == 3 else value
            lines.append(f"- {key}: {shown}")
    return lines + ["", f"Deviations from the declared plan: {deviations}", ""]


def fmt(interval) -> str:
    """``point [low, high]``, or the point alone when there is no interval; ``-`` for none."""
    if interval is None:
        return "-"
    point, low, high = interval
    return f"{point:.3f}" if low == high else f"{point:.3f} [{low:.3f}, {high:.3f}]"
