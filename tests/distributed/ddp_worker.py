"""One rank of the data-parallel test (tests/distributed/test_ddp.py): trains an agent for a
few updates and saves its parameters. Run under torchrun, or alone for the 1-process run."""

from __future__ import annotations

import json
import sys

import torch

from agents import load_agent
from lmgym import distributed
from lmgym.rollout import Budget
from tests.agents.conftest import ENV, SAME_UPDATE, small_config
from tests.conftest import EASY_ARITHMETIC


def main(model_dir: str, name: str, out: str, options: str) -> None:
    distributed.init()
    agent_class = load_agent(name)
    options = {**SAME_UPDATE, **json.loads(options)}  # plain SGD: see SAME_UPDATE
    config = small_config(agent_class, model_dir, eval_problems=4, test_problems=4, eval_k=1, seed=0, **options)
    agent = agent_class(config)
    agent.learn(ENV, Budget(max_samples=48), env_kwargs=EASY_ARITHMETIC, progress=False, test=False)
    state = {k: v.detach().cpu() for k, v in agent.policy.state_dict().items()}
    torch.save({"state": state, "optimizer_steps": agent.optimizer_steps, "world": distributed.world_size(),
                "rank": distributed.rank()}, f"{out}.rank{distributed.rank()}.pt")
    if distributed.is_distributed():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:5])
