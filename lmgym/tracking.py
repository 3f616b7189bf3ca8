"""Experiment tracking, as TRL users know it: ``report_to="tensorboard"`` (and/or ``"wandb"``)
on any agent's config logs every training metric (each iteration), every validation evaluation
and the final test, against the samples generated so far (the x axis of every lmgym curve).
Off by default (``"none"``).

TensorBoard writes through ``torch.utils.tensorboard.SummaryWriter`` (the ``tensorboard``
package) into ``logging_dir`` (default: ``<run_dir>/tensorboard``, else
``runs/tensorboard/<agent>-seed<k>``); wandb through ``wandb.init``/``wandb.log`` when the package
is installed (its own settings, ``WANDB_PROJECT`` and so on, apply; the project defaults to
``lmgym``). Only numbers are logged; the agent's config goes in as hyper-parameters/config.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

__all__ = ["Tracker", "parse_report_to"]

BACKENDS = ("tensorboard", "wandb")


def parse_report_to(report_to: str | list[str] | None) -> list[str]:
    """``"none"``, ``"tensorboard"``, ``"wandb"``, ``"all"``, or several (a list or a comma-
    separated string) -> the backends, checked."""
    if report_to is None:
        return []
    names = [part.strip() for part in (report_to.split(",") if isinstance(report_to, str) else report_to) if part.strip()]
    if names in (["none"], []):
        return []
    if names == ["all"]:
        return [name for name in BACKENDS if name != "wandb" or _has_wandb()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise ValueError(f"report_to: unknown {unknown}; choose 'none', 'all' or some of {list(BACKENDS)}")
    if "wandb" in names and not _has_wandb():
        raise ImportError("report_to='wandb' needs the wandb package: pip install wandb")
    if "tensorboard" in names:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ImportError("report_to='tensorboard' needs the tensorboard package: pip install tensorboard") from None
    return names


def _has_wandb() -> bool:
    import importlib.util

    return importlib.util.find_spec("wandb") is not None


class Tracker:
    """Where an agent's metrics go besides its curve. A no-op when ``report_to`` is ``"none"``."""

    def __init__(self, report_to: str | list[str] | None, logging_dir: str | os.PathLike | None = None,
                 run_name: str = "lmgym", config: dict | None = None):
        self.backends = parse_report_to(report_to)
        self.logging_dir = Path(logging_dir) if logging_dir is not None else Path("runs") / "tensorboard" / run_name
        self._writer = None
        self._wandb = None
        if "tensorboard" in self.backends:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.logging_dir))
            if config:
                self._writer.add_text("config", "\n".join(f"    {k} = {v!r}" for k, v in sorted(config.items())))
        if "wandb" in self.backends:
            import wandb

            self._wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "lmgym"), name=run_name,
                                     config=config or {}, dir=str(self.logging_dir), reinit=True)

    @property
    def enabled(self) -> bool:
        return bool(self.backends)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Every finite number in ``metrics`` under its own name at ``step``."""
        if not self.backends:
            return
        numbers = {key: float(value) for key, value in metrics.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))}
        if self._writer is not None:
            for key, value in numbers.items():
                self._writer.add_scalar(key, value, global_step=int(step))
            self._writer.flush()
        if self._wandb is not None:
            self._wandb.log(numbers, step=int(step))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
