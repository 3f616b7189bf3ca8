"""lmgym's math metrics as a Hugging Face ``evaluate`` module.

    import evaluate, lmgym.metrics
    metric = evaluate.load(lmgym.metrics.EVALUATE_MATH)
    metric.compute(predictions=[["... #### 5", "#### 4"]], references=["5"], k=[1, 2])
    # {"mean_reward": 0.5, "pass@1": 0.5, "pass@2": 1.0, "maj@1": 1.0, "maj@2": 1.0, "reward_std_zero_share": 0.0}

Each prediction is the list of n sampled completions for one problem; each reference is the
problem's final answer. Completions are scored with ``lmgym.rewards.math.verify``.
"""

import datasets
import evaluate
import numpy as np

from lmgym.metrics import maj_at_k, pass_at_k, vanishing_gradient_share
from lmgym.rewards.math import verify

_DESCRIPTION = "Unbiased pass@k, maj@k, mean reward and the vanishing-gradient share for math answers (lmgym)."
_KWARGS = "predictions: list of lists of completions; references: list of final answers; k: list of ints."


class LmgymMath(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Chen et al. 2021 (pass@k); Razin et al. 2024 (vanishing gradients)",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("string")), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, k=(1,)):
        verdicts = [[verify(c, ref) for c in completions] for completions, ref in zip(predictions, references)]
        n = min(len(v) for v in verdicts)
        results = {"mean_reward": float(np.mean([v.reward for row in verdicts for v in row]))}
        for kk in k:
            results[f"pass@{kk}"] = float(np.mean([pass_at_k(len(row), sum(v.correct for v in row), kk) for row in verdicts]))
            results[f"maj@{kk}"] = float(np.mean([maj_at_k([v.canonical for v in row], [v.correct for v in row], kk) for row in verdicts]))
        if n >= 2:
            results["reward_std_zero_share"] = vanishing_gradient_share(np.array([[v.reward for v in row[:n]] for row in verdicts]))
        return results
