"""Data-parallel training of one agent across processes, on ``torch.distributed``.

Launch any lmgym training command under ``torchrun`` (one process per GPU, or several CPU
processes with the gloo backend)::

    torchrun --nproc-per-node 2 -m lmgym.cli train --agent grpo --env lmgym/Arithmetic-v0 --samples 20000

What is split, and what is not (agents/core.py):

- **Training compute is sharded.** Every forward/backward pass of the policy runs on
  1/world of the micro-batches on each rank. Each rank computes its micro-batches' log-probs
  without a graph and the ranks all-gather them, so every rank computes the agent's loss on the
  whole batch exactly as one process would; the loss's gradients with respect to those
  log-probs are pushed back through each rank's own micro-batches only (the deferred backward of
  ``micro_batch_tokens``), and the policy's parameter gradients are summed across ranks
  (all-reduce). The result is the one-process gradient, whatever the loss (token means across
  the batch, group baselines, DPO pairs): the ranks' parameters stay identical, and equal to a
  single process's within float summation order (tested, 2 gloo processes).
- **Rollouts are replicated.** Every rank samples the same problems with the same seeds
  (identical samples); generation is not divided. This keeps budgets, group statistics and
  checkpoints identical on every rank, at the price of each rank generating everything; sharding
  generation by prompt groups is the next step.
- Only rank 0 writes checkpoints, results and tracking logs.

Why torch.distributed and not accelerate/DeepSpeed/FSDP: the agents' updates are not the
``loss.backward()`` of one forward pass that DDP's gradient hooks assume (several forward passes
per loss, reference passes, deferred backward), so the all-reduce is done explicitly on the
gradients, which torch.distributed offers as it is and which works the same on gloo and NCCL.
FSDP/DeepSpeed ZeRO (sharded parameters and optimizer states) are what a model larger than
one GPU needs; that is not done here.
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["all_gather_objects", "all_reduce_gradients", "init", "is_distributed", "is_main", "local_rank", "rank",
           "world_size"]


def is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def init() -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1); NCCL on GPUs, else
    gloo. Returns whether training is distributed. A no-op in a plain process."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend=backend)
    return is_distributed()


def device() -> torch.device:
    """This rank's device: its GPU (``LOCAL_RANK``) when there are GPUs, else the CPU."""
    return torch.device(f"cuda:{local_rank()}") if torch.cuda.is_available() else torch.device("cpu")


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (picklable objects, tensors moved to the CPU)."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def all_reduce_gradients(parameters) -> None:
    """Sum every parameter's gradient across ranks (a missing gradient counts as zeros), one
    flat buffer per dtype and device so that there is one collective per group, not per tensor."""
    import torch.distributed as dist

    groups: dict[tuple, list] = {}
    for parameter in parameters:
        groups.setdefault((parameter.dtype, parameter.device), []).append(parameter)
    for params in groups.values():
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset: offset + n].view_as(p).clone()
            offset += n
