"""Verifier throughput and the cost of the Gymnasium step around it (issue: Foundation).

Scores the 1,319 GSM8K test reference solutions (i) with ``lmgym.rewards.math.verify``
directly, (ii) through ``LMEnv.step`` and (iii) through ``gym.make``'s wrapped env and the
vector env's batched step, and prints answers/s and the step overhead over (i).

    python benchmarks/bench_verifier.py [--data-dir ../shared/data] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import gymnasium as gym

import lmgym  # noqa: F401  (registers the ids)
from lmgym.core import LMEnv
from lmgym.envs.math import GSM8KTask
from lmgym.rewards.math import verify


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    task = GSM8KTask(data_dir=args.data_dir)
    n = task.num_problems("test")
    problems = [task.problem("test", i) for i in range(n)]
    solutions = [p.solution for p in problems]
    answers = [p.answer for p in problems]

    def direct():
        for solution, answer in zip(solutions, answers):
            assert verify(solution, answer).correct

    raw = LMEnv(task, split="test")
    wrapped = gym.make("lmgym/GSM8K-v0", split="test", data_dir=args.data_dir)

    def stepping(env, step_times):
        def run():
            step_times.clear()
            for i, solution in enumerate(solutions):
                env.reset(options={"index": i})
                start = time.perf_counter()
                reward = env.step(solution)[1]
                step_times.append(time.perf_counter() - start)
                assert reward == 1.0
        return run

    def per_call(fn):
        def run(times):
            times.clear()
            for solution, answer in zip(solutions, answers):
                start = time.perf_counter()
                fn(solution, answer)
                times.append(time.perf_counter() - start)
        return run

    # Per-call timing on both sides, so that the timer's own cost cancels out.
    verify_times, raw_times, wrapped_times = [], [], []
    verify_total = statistics.median(
        [per_call(verify)(verify_times) or sum(verify_times) for _ in range(args.repeats)]
    )
    raw_total = statistics.median([stepping(raw, raw_times)() or sum(raw_times) for _ in range(args.repeats)])
    wrapped_total = statistics.median(
        [stepping(wrapped, wrapped_times)() or sum(wrapped_times) for _ in range(args.repeats)]
    )
    loop_total = timed(direct, args.repeats)

    num_envs = 64
    vec = gym.make_vec("lmgym/GSM8K-v0", num_envs=num_envs, split="test", data_dir=args.data_dir)
    batches = [list(range(s, s + num_envs)) for s in range(0, n - num_envs + 1, num_envs)]

    def vector_steps(times):
        times.clear()
        for batch in batches:
            vec.reset(options={"index": batch})
            start = time.perf_counter()
            rewards = vec.step([solutions[i] for i in batch])[1]
            times.append(time.perf_counter() - start)
            assert rewards.min() == 1.0

    vec_times: list[float] = []
    vec_total = statistics.median([vector_steps(vec_times) or sum(vec_times) for _ in range(args.repeats)])
    vec_answers = len(batches) * num_envs

    print(f"GSM8K test reference solutions: {n}, median of {args.repeats} runs")
    print(f"verify() loop                : {n / loop_total:10,.0f} answers/s")
    print(f"verify() timed per call      : {n / verify_total:10,.0f} answers/s")
    print(f"LMEnv.step (unwrapped)       : {n / raw_total:10,.0f} answers/s   overhead {raw_total / verify_total - 1:+.1%}")
    print(f"gym.make env.step (wrapped)  : {n / wrapped_total:10,.0f} answers/s   overhead {wrapped_total / verify_total - 1:+.1%}")
    print(
        f"make_vec step, {num_envs} envs      : {vec_answers / vec_total:10,.0f} answers/s   "
        f"overhead {vec_total / vec_answers / (verify_total / n) - 1:+.1%} (incl. SAME_STEP autoreset)"
    )


if __name__ == "__main__":
    main()
