"""Verdicts of every canonical solution (and of a wrong variant of each) on HumanEval (all 164) and
MBPP (all 974, test_list and challenge tests as lmgym runs them), written to a JSON file, so that two
sandbox versions can be compared verdict by verdict.

    python scripts/sandbox_verdicts.py OUT.json [--mbpp-dir ../shared/data]
    python scripts/sandbox_verdicts.py --compare BEFORE.json AFTER.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def collect(out: str, mbpp_dir: str | None) -> None:
    from lmgym.envs.code import HumanEvalTask, MBPPTask
    from lmgym.sandbox import Sandbox

    verdicts = {}
    with Sandbox() as sandbox:
        for name, task, split in (("HumanEval", HumanEvalTask(sandbox=sandbox), "full"),
                                  ("MBPP", MBPPTask(sandbox=sandbox, data_dir=mbpp_dir), None)):
            splits = [split] if split else list(task.splits)
            problems = [task.problem(s, i) for s in splits for i in range(task.num_problems(s))]
            for variant, make in (("canonical", lambda p: p.solution),
                                  ("wrong", lambda p: p.solution + "\n\n" + _wrong(p))):
                start = time.perf_counter()
                scored = task.score_batch(problems, [make(p) for p in problems])
                print(f"{name} {variant}: {sum(info['passed'] for _, info in scored)}/{len(problems)} pass "
                      f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
                for problem, (_, info) in zip(problems, scored):
                    verdicts[f"{name}/{variant}/{problem.meta['task_id']}"] = {
                        "passed": info["passed"], "kind": info["kind"],
                        "tests": [t["passed"] for t in info["tests"]]}
    with open(out, "w") as handle:
        json.dump(verdicts, handle, indent=0, sort_keys=True)


def _wrong(problem) -> str:
    """The entry point redefined to return a value of another type (every test must fail)."""
    entry = problem.meta["entry_point"]
    return f"def {entry}(*args, **kwargs):\n    return '__lmgym_wrong__'\n"


def compare(before: str, after: str) -> int:
    a, b = json.load(open(before)), json.load(open(after))
    differ = [key for key in sorted(a) if a[key]["passed"] != b.get(key, {}).get("passed")
              or a[key]["tests"] != b.get(key, {}).get("tests")]
    for key in differ:
        print(f"{key}: {a[key]} -> {b.get(key)}")
    print(f"{len(a) - len(differ)}/{len(a)} verdicts identical (pass and per-test outcomes)")
    return 1 if differ else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--mbpp-dir", default=None)
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    sys.exit(compare(*args.compare) if args.compare else collect(args.out, args.mbpp_dir))
