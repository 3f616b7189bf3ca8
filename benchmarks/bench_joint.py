"""The joint reward-policy agent's feedback efficiency (issue: Agents II).

Runs ``agents.joint.Joint`` on ``lmgym/Arithmetic-v0`` from lmgym's pretrained tiny model under a
budget of reward *queries*, with Thompson-sampling exploration over its reward ensemble, with
greedy selection (the ensemble mean's favourite, no uncertainty), and with uniform selection,
over several seeds; prints greedy validation accuracy (ground truth) reached against the number
of queries (a comparison of exploration rules is a tuning choice: it is made on validation), and
writes ``curves.csv``, ``curves.png`` and ``summary.json`` to ``--out``.

    python benchmarks/bench_joint.py --queries 2000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

ENV = "lmgym/Arithmetic-v0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=["thompson", "greedy", "uniform"])
    parser.add_argument("--out", default="runs/joint_feedback")
    parser.add_argument("--overrides", default="{}", help="JSON of JointConfig fields")
    args = parser.parse_args()

    from agents.joint import Joint, JointConfig
    from lmgym.io import atomic_path, write_json_atomic
    from lmgym.rollout import Budget

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[list[dict]]] = {}
    for mode in args.modes:
        for seed in args.seeds:
            cache = out / f"{mode}-seed{seed}.json"
            if cache.is_file():
                curve = json.loads(cache.read_text())
            else:
                config = JointConfig(exploration=mode, seed=seed, **json.loads(args.overrides))
                # evaluate 8 times: eval_every counts samples, queries_per_prompt / samples_per_prompt of them queried
                config.eval_every = max(1, (args.queries // 8) * config.samples_per_prompt // config.queries_per_prompt)
                result = Joint(config).learn(ENV, Budget(max_queries=args.queries), progress=False, test=False)
                curve = result.curve
                write_json_atomic(cache, curve)
            curves.setdefault(mode, []).append(curve)
            print(f"{mode:9s} seed {seed}: " + ", ".join(f"{row['queries']}q {row['val/ground_truth']:.3f}" for row in curve), flush=True)

    summary = {}
    rows = []
    for mode, runs in curves.items():
        length = min(len(c) for c in runs)
        queries = [runs[0][i]["queries"] for i in range(length)]
        accuracy = np.array([[c[i]["val/ground_truth"] for i in range(length)] for c in runs])
        summary[mode] = {"queries": queries, "mean": accuracy.mean(0).tolist(), "std": accuracy.std(0).tolist(),
                         "seeds": len(runs)}
        rows += [{"mode": mode, "queries": q, "mean": m, "std": s} for q, m, s in zip(queries, accuracy.mean(0), accuracy.std(0))]
    write_json_atomic(out / "summary.json", summary)
    with atomic_path(out / "curves.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["mode", "queries", "mean", "std"])
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for mode, record in summary.items():
        mean, std = np.array(record["mean"]), np.array(record["std"])
        axis.plot(record["queries"], mean, marker="o", label=f"{mode} ({record['seeds']} seeds)")
        axis.fill_between(record["queries"], mean - std, mean + std, alpha=0.2)
    axis.set_xlabel("reward queries")
    axis.set_ylabel("greedy validation accuracy")
    axis.set_title("Joint reward-policy agent on Arithmetic-v0")
    axis.legend()
    figure.tight_layout()
    with atomic_path(out / "curves.png") as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    print(f"\n{'mode':9s} " + " ".join(f"{q:>7d}q" for q in summary[args.modes[0]]["queries"]))
    for mode, record in summary.items():
        print(f"{mode:9s} " + " ".join(f"{m:8.3f}" for m in record["mean"]))


if __name__ == "__main__":
    main()
