"""What the agent tests share: the env they train on and a shrunk config."""

from __future__ import annotations

ENV = "lmgym/Arithmetic-v0"


def small_config(agent_class, model_dir, **overrides):
    # shrunk for tests: 4 prompts x 2 samples per iteration, 20 validation and test problems (2
    # samples each for pass@2), short completions
    options = dict(model=str(model_dir), prompts_per_iteration=4, samples_per_prompt=2, eval_problems=20,
                   test_problems=20, eval_k=2, eval_k_problems=10, max_new_tokens=6, eval_every=0, lr=1e-3)
    if agent_class.name == "sft":
        options.update(prompts_per_iteration=8, samples_per_prompt=1)  # one reference per problem
    options.update(overrides)
    return agent_class.Config(**options)
