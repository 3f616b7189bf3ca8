"""What the agent tests share: the env they train on and a shrunk config."""

from __future__ import annotations

ENV = "lmgym/Arithmetic-v0"

# Where two runs must reach the same parameters up to float summation order (micro-batches,
# gradient checkpointing, data-parallel ranks), they train with plain SGD, whose step is linear
# in the gradient: rounding differences stay rounding-sized (about 1e-7 after 4-8 steps at this
# lr, against 5e-3 to 2e-2 of movement). Adam divides by the gradient's running RMS, so where a
# coordinate's gradient is near zero it turns a 1e-9 difference in summation order into a good
# part of a step: with Adam at lr 1e-3 the same comparisons differed by 1e-5 to 2.4e-5 on
# torch's AVX-512 kernels, and on its AVX2 kernels too once the warm model trained 160 steps.
SAME_UPDATE = dict(optimizer="sgd", lr=0.1)
SAME_UPDATE_TOLERANCE = 2e-6


def small_config(agent_class, model_dir, **overrides):
    # shrunk for tests: 4 prompts x 2 samples per iteration, 20 validation and test problems (2
    # samples each for pass@2), short completions
    options = dict(model=str(model_dir), prompts_per_iteration=4, samples_per_prompt=2, eval_problems=20,
                   test_problems=20, eval_k=2, eval_k_problems=10, max_new_tokens=6, eval_every=0, lr=1e-3)
    if agent_class.name == "sft":
        options.update(prompts_per_iteration=8, samples_per_prompt=1)  # one reference per problem
    options.update(overrides)
    return agent_class.Config(**options)
