"""Benchmark suites: several envs, each with its own shipped model and budget, and one
suite-level score across them (``lmgym bench --suite cpu``).

A suite is a list of :class:`SuiteEnv`: an env id (with keyword arguments), the shipped model
that starts every agent on it (:data:`lmgym.pretrain.SHIPPED`), the budget every agent gets on
it, and the score's ceiling (the best possible test score: 1 for accuracy, 2.5 for the bandit's
best arm). Each env runs as an ordinary :func:`lmgym.bench.run_bench` into its own folder,
so cells resume and are skipped when finished exactly as in a single-env bench.

The suite-level score follows Agarwal et al. (2021, "Deep RL at the edge of the statistical
precipice", the ``rliable`` protocol): each run's test score is normalised by the base policy
on its env, ``(score - base) / (ceiling - base)`` (0: no better than where it started; 1: the
ceiling), and an agent's aggregate is the interquartile mean (IQM) of all its normalised runs
over envs and seeds, with a 95% percentile interval from a stratified bootstrap (seeds are
resampled within each env, envs are kept; 10,000 resamples). The mean of the per-env means is
reported beside it. rliable's estimators are used as they are (``rliable.metrics``); its
bootstrap (``rliable.library``) needs ``arch``, which does not import here (see
:mod:`lmgym.stats`), so the stratified resampling is written out in :func:`stratified_bootstrap`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SUITES", "SuiteEnv", "aggregate", "normalised_scores", "run_suite", "stratified_bootstrap", "suite_table"]


@dataclass(frozen=True)
class SuiteEnv:
    env: str
    model: str  # a key of lmgym.pretrain.SHIPPED
    samples: int  # generated samples per cell
    trained_tokens: int  # cap on trained (completion) tokens per cell
    ceiling: float = 1.0  # the best possible test score (the normaliser's top)
    env_kwargs: dict = field(default_factory=dict)
    label: str | None = None  # the folder name (default: from the env id)
    agent_config: dict = field(default_factory=dict)  # set on every agent (e.g. max_new_tokens for long answers)
    eval_problems: int = 200
    test_problems: int | None = 500
    eval_k: int = 4  # samples per problem for pass@k / maj@k

    @property
    def slug(self) -> str:
        return self.label or self.env.replace("/", "__")


SUITES: dict[str, list[SuiteEnv]] = {
    # every family at the scale 2 CPU cores train: math, code, summarization, the CoPG bandit
    "cpu": [
        SuiteEnv("lmgym/Arithmetic-v0", model="default", samples=10_000, trained_tokens=75_000),
        # code and summaries: long completions, so fewer samples and a lighter evaluation (the HF sampler
        # on 2 cores makes ~90 samples/s of 80 tokens; a full Arithmetic-style evaluation cost 70% of a cell)
        SuiteEnv("lmgym/TinyCode-v0", model="tinycode-tiny", samples=2_000, trained_tokens=150_000, eval_problems=100,
                 test_problems=200, eval_k=2, agent_config={"max_new_tokens": 80, "eval_every": 1_000, "eval_k_problems": 32}),
        SuiteEnv("lmgym/Bandit-v0", model="bandit-tiny", samples=2_000, trained_tokens=10_000, ceiling=2.5,
                 eval_problems=1, test_problems=None, agent_config={"max_new_tokens": 2}),
        SuiteEnv("lmgym/KeyFacts-v0", model="keyfacts-tiny", samples=1_500, trained_tokens=150_000, eval_problems=100,
                 test_problems=200, eval_k=2, env_kwargs={"facts": 2, "fillers": 1},
                 agent_config={"max_new_tokens": 100, "eval_every": 750, "eval_k_problems": 32}),
    ],
}


def bench_config(suite_env: SuiteEnv, out: str, agents: list[str], seeds: list[int]):
    from lmgym.bench import BenchConfig

    return BenchConfig(envs=[suite_env.env], agents=agents, seeds=seeds, samples=suite_env.samples,
                       trained_tokens=suite_env.trained_tokens, model=suite_env.model,
                       out=str(Path(out) / suite_env.slug), eval_problems=suite_env.eval_problems, eval_k=suite_env.eval_k,
                       test_problems=suite_env.test_problems, env_kwargs=dict(suite_env.env_kwargs),
                       agent_overrides={agent: dict(suite_env.agent_config) for agent in agents} if suite_env.agent_config else {})


def run_suite(name: str, out: str = "runs/suite", agents: list[str] | None = None, seeds: list[int] | None = None,
              progress: bool = True) -> dict[str, list[dict]]:
    """Run every env of suite ``name`` (each a bench of its own, resumable), then write the
    suite table (``summary.md``) and the per-env curves to ``out``."""
    from lmgym.bench import DEFAULT_AGENTS, run_bench

    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; suites: {sorted(SUITES)}")
    agents = list(agents or DEFAULT_AGENTS)
    if "base" not in agents:
        agents = ["base", *agents]  # the normaliser
    seeds = list(seeds if seeds is not None else [0, 1, 2])
    start, results = time.perf_counter(), {}
    for i, suite_env in enumerate(SUITES[name]):
        if progress:
            print(f"[suite {name}] env {i + 1}/{len(SUITES[name])}: {suite_env.env} ({suite_env.model}, "
                  f"{suite_env.samples:,} samples x {len(agents)} agents x {len(seeds)} seeds)", flush=True)
        results[suite_env.slug] = run_bench(bench_config(suite_env, out, agents, seeds), progress=progress)
    table = suite_table(name, results)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "summary.md").write_text(table + f"\n\n{sum(map(len, results.values()))} cells, "
                                          f"{time.perf_counter() - start:.0f} s this run\n")
    if progress:
        print(table)
    return results


def normalised_scores(name: str, results: dict[str, list[dict]]) -> dict[str, dict[str, np.ndarray]]:
    """``{agent: {env slug: normalised test scores over seeds}}``; the base policy's mean on each
    env is 0, the env's ceiling 1."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for suite_env in SUITES[name]:
        cells = results.get(suite_env.slug, [])
        base = [r["metrics"]["test/ground_truth"] for r in cells if r["agent"]["name"] == "base"]
        if not base:
            continue
        base_score = float(np.mean(base))
        span = suite_env.ceiling - base_score
        if span <= 1e-9:
            raise ValueError(f"{suite_env.env}: the base policy already scores the ceiling ({base_score}); "
                             "nothing to normalise by")
        for r in cells:
            scores = out.setdefault(r["agent"]["name"], {}).setdefault(suite_env.slug, [])
            scores.append((r["metrics"]["test/ground_truth"] - base_score) / span)
    return {agent: {env: np.asarray(v) for env, v in by_env.items()} for agent, by_env in out.items()}


def stratified_bootstrap(by_env: dict[str, np.ndarray], statistic, reps: int = 10_000, seed: int = 0,
                         confidence: float = 0.95) -> tuple[float, float, float]:
    """``statistic`` of the pooled runs and its percentile interval when each env's runs are
    resampled with replacement within that env (rliable's stratified bootstrap)."""
    rng = np.random.default_rng(seed)
    envs = [np.asarray(v, dtype=np.float64) for v in by_env.values()]
    point = float(statistic(np.concatenate(envs)))
    draws = np.empty(reps)
    for i in range(reps):
        draws[i] = statistic(np.concatenate([v[rng.integers(0, v.size, v.size)] for v in envs]))
    alpha = (1 - confidence) / 2
    return point, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def present_envs(name: str, results: dict[str, list[dict]]) -> list[str]:
    """The suite's env slugs that have results with the base policy (the normaliser)."""
    return [e.slug for e in SUITES[name] if any(r["agent"]["name"] == "base" for r in results.get(e.slug, []))]


def missing_envs(name: str, results: dict[str, list[dict]]) -> list[str]:
    present = set(present_envs(name, results))
    return [e.env for e in SUITES[name] if e.slug not in present]


def aggregate(name: str, results: dict[str, list[dict]]) -> list[dict]:
    """One row per agent: IQM and mean of the base-normalised test scores over every env and
    seed, each with a stratified-bootstrap 95% interval, and the per-env normalised means. Envs
    without results are left out (:func:`missing_envs` names them; a partial aggregate must say so)."""
    from rliable.metrics import aggregate_iqm

    from lmgym.stats import Interval

    scores = normalised_scores(name, results)
    env_slugs = present_envs(name, results)
    from lmgym.stats import MIN_SEEDS_TO_RANK

    # only agents with >= 3 runs on every env: a partial set of seeds would weight envs unevenly
    complete = {agent: by_env for agent, by_env in scores.items()
                if all(slug in by_env and by_env[slug].size >= min(MIN_SEEDS_TO_RANK, scores["base"][slug].size)
                       for slug in env_slugs)}
    iqm = lambda runs: float(aggregate_iqm(runs[:, None]))
    rows, intervals = [], {}
    for agent, by_env in complete.items():
        intervals[agent] = Interval(*stratified_bootstrap(by_env, iqm))
        mean_of_means = Interval(*stratified_bootstrap(by_env, np.mean))
        rows.append({"agent": agent, "runs": sum(v.size for v in by_env.values()), "IQM (95% CI)": intervals[agent],
                     "mean (95% CI)": mean_of_means,
                     **{slug: float(by_env[slug].mean()) for slug in env_slugs}})
    # not ranked: with 3 seeds per env the bootstrap interval is too narrow to rank on (lmgym.stats);
    # the per-env tables rank with t intervals
    return sorted(rows, key=lambda row: -row["IQM (95% CI)"].point)


def suite_table(name: str, results: dict[str, list[dict]]) -> str:
    """The suite aggregate, then the per-env tables of :func:`lmgym.bench.summary_table`."""
    from tabulate import tabulate

    from lmgym.bench import summary_table

    rows = aggregate(name, results)
    present = present_envs(name, results)
    slugs = {e.slug: e.env.removeprefix("lmgym/") for e in SUITES[name] if e.slug in present}
    shown = [{"agent": r["agent"], "runs": r["runs"], "IQM (95% CI)": r["IQM (95% CI)"].format(),
              "mean (95% CI)": r["mean (95% CI)"].format(), **{slugs[s]: f"{r[s]:+.3f}" for s in slugs}} for r in rows]
    missing = missing_envs(name, results)
    caveat = f"\n\n**Partial: no results yet for {', '.join(missing)}; the aggregate covers the other envs only.**" if missing else ""
    head = (f"## Suite `{name}`: base-normalised test score over every env and seed\n\n"
            + tabulate(shown, headers="keys", tablefmt="github") + "\n\n" + SUITE_NOTE + caveat)
    envs = "\n\n".join(summary_table(cells) for cells in results.values() if cells)
    return head + "\n\n" + envs


SUITE_NOTE = (
    "Normalised score of a run: (test ground truth - base policy's) / (ceiling - base policy's), on each env (0: the "
    "starting model, 1: the ceiling; negative: worse than the start). IQM: interquartile mean of all of an agent's "
    "normalised runs (every env, every seed); mean: their mean. 95% intervals: percentile stratified bootstrap "
    "(seeds resampled within each env, 10,000 resamples). Not ranked: with 3 seeds per env a bootstrap interval is "
    "too narrow to rank on (see lmgym.stats); the per-env tables rank with Student-t intervals. Per-env columns: the "
    "mean normalised score on that env."
)


def describe(name: str) -> str:
    rows = [dataclasses.asdict(e) for e in SUITES[name]]
    from tabulate import tabulate

    return tabulate([{k: r[k] for k in ("env", "model", "samples", "trained_tokens", "ceiling")} for r in rows],
                    headers="keys", tablefmt="github")
