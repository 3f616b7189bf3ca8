"""``lmgym sweep``: equal tuning effort for every agent, on the validation split, with Optuna.

An agent declares its search space as a class attribute, ``search_space = {field: spec}``, with
``spec`` one of ``("log", low, high)`` (float, log-uniform), ``("float", low, high)``,
``("int", low, high)`` or ``("choice", [values])``. A sweep runs a fixed number of trials of
Optuna's TPE sampler (seeded, so a sweep is reproducible) for each agent, every trial one
``learn`` under the same budget on the same env and seed, scored by the best validation score
of its curve (the score the bench's checkpoint choice uses: ``select_on``). The test split is
never evaluated during a sweep.

Every trial is recorded: ``<out>/<env>/<agent>.json`` holds the search space, the fixed
settings, each trial's parameters, validation score, compute and wall time, and the best
parameters (written atomically after each trial). Optuna's journal beside it
(``<agent>.journal``) lets an interrupted sweep resume where it stopped; finished trials are not
re-run. The built-in agents' defaults are the best parameters of the sweeps committed in
``sweeps/`` (``tests/test_sweep.py`` checks that they still agree).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SweepConfig", "run_sweep", "suggest"]


@dataclass
class SweepConfig:
    agents: list[str]
    env: str = "lmgym/Arithmetic-v0"
    trials: int = 8  # the same for every agent
    samples: int = 10_000  # budget per trial, in generated samples
    trained_tokens: int | None = 75_000  # and in trained tokens (the default track's compute envelope, pro rata)
    seed: int = 0  # the training seed of every trial, and the sampler's seed
    eval_problems: int = 500  # validation problems per evaluation
    eval_every: int = 2_500
    model: str = "default"
    out: str = "sweeps"
    env_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.trials < 1 or self.samples < 1:
            raise ValueError("trials and samples must be >= 1")


def suggest(trial, space: dict) -> dict:
    """One parameter set from ``space`` (see the module docstring) through an Optuna trial."""
    params = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "log":
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=True)
        elif kind == "float":
            params[name] = trial.suggest_float(name, spec[1], spec[2])
        elif kind == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2])
        elif kind == "choice":
            params[name] = trial.suggest_categorical(name, list(spec[1]))
        else:
            raise ValueError(f"unknown search-space kind {kind!r} for {name}: log, float, int or choice")
    return params


def _record_path(config: SweepConfig, agent: str) -> Path:
    return Path(config.out) / config.env.replace("/", "__") / f"{agent.replace(':', '_')}.json"


def run_sweep(config: SweepConfig, progress: bool = True) -> dict[str, dict]:
    """Sweep every agent in ``config.agents``; returns ``{agent: record}`` (also written)."""
    return {agent: sweep_agent(config, agent, progress) for agent in config.agents}


def sweep_agent(config: SweepConfig, agent_name: str, progress: bool = True) -> dict:
    import optuna

    from agents import load_agent
    from agents.core import config_from_dict
    from lmgym.io import write_json_atomic
    from lmgym.rollout import Budget

    agent_class = load_agent(agent_name)
    space = dict(getattr(agent_class, "search_space", {}))
    if not space:
        raise ValueError(f"agent {agent_name!r} declares no search_space")
    fixed = {"model": config.model, "seed": config.seed, "eval_problems": config.eval_problems, "eval_k": 1,
             "eval_every": config.eval_every}
    path = _record_path(config, agent_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path.with_suffix(".journal"))))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=agent_name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=min(4, config.trials)))

    def objective(trial) -> float:
        params = suggest(trial, space)
        agent = agent_class(config_from_dict(agent_class.Config, {**fixed, **params}))
        start = time.perf_counter()
        budget = Budget(max_samples=config.samples, max_trained_tokens=config.trained_tokens)
        learned = agent.learn(config.env, budget, env_kwargs=config.env_kwargs, progress=False, test=False)
        last = learned.curve[-1]
        trial.set_user_attr("chosen", learned.chosen)
        trial.set_user_attr("compute", {key: last[key] for key in ("optimizer_steps", "trained_tokens", "train_flops",
                                                                    "generation_flops", "train_seconds")})
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - start, 1))
        trial.set_user_attr("curve", [{k: row[k] for k in ("samples", "val/mean_reward", "val/ground_truth")}
                                      for row in learned.curve])
        if progress:
            print(f"{agent_name} trial {trial.number}: {params} -> validation {learned.chosen['score']:.3f} "
                  f"({trial.user_attrs['wall_seconds']} s)", flush=True)
        return float(learned.chosen["score"])

    def write(study, _trial=None) -> None:
        trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(trials, key=lambda t: t.value) if trials else None
        write_json_atomic(path, {
            "agent": agent_name, "class": f"{agent_class.__module__}:{agent_class.__name__}", "env": config.env,
            "env_kwargs": config.env_kwargs, "sampler": f"optuna {optuna.__version__} TPESampler(seed={config.seed})",
            "trials_planned": config.trials, "budget": {"max_samples": config.samples,
                                                        "max_trained_tokens": config.trained_tokens}, "fixed": fixed,
            "objective": "best validation score on the curve (greedy, select_on='reward')",
            "search_space": {k: list(v) if isinstance(v, tuple) else v for k, v in space.items()},
            "trials": [{"number": t.number, "params": t.params, "validation": t.value, **t.user_attrs} for t in trials],
            "best": None if best is None else {"number": best.number, "params": best.params, "validation": best.value},
        })

    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if done < config.trials:
        study.optimize(objective, n_trials=config.trials - done, callbacks=[write])
    write(study)
    return json.loads(path.read_text())


def config_from_args(args) -> SweepConfig:
    values = {k: v for k, v in {"agents": args.agent, "env": args.env, "trials": args.trials, "samples": args.samples,
                                "trained_tokens": args.trained_tokens,
                                "seed": args.seed, "eval_problems": args.eval_problems, "out": args.out}.items()
              if v is not None}
    return dataclasses.replace(SweepConfig(agents=values.pop("agents")), **values)
