"""lmgym: Gymnasium environments and a benchmark suite for RL fine-tuning of language models.

``import lmgym`` registers every environment id below with Gymnasium::

    import gymnasium as gym
    import lmgym

    env = gym.make("lmgym/Arithmetic-v0")
    prompt, info = env.reset(seed=0)
    prompt, reward, terminated, truncated, info = env.step("42")

Ids are versioned: a change to a task's data, prompt or reward bumps its version.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

# id -> the keyword arguments of its registration: the task class ("task") and, for a variant,
# the task's own options. Every id uses the same env (entry point) and vector env, so adding a
# task is one class and one line here, and a variant of a task is one line (as Gymnasium's
# ``register(..., kwargs=...)``; keyword arguments given to ``gym.make`` override these).
TASKS: dict[str, dict] = {
    "lmgym/Arithmetic-v0": {"task": "lmgym.envs.math:ArithmeticTask"},
    # 2-3 operations worked one step at a time ("84+38+30-86=" -> "84+38=122, 122+30=152, 152-86=66");
    # gym.make(..., dense=True) adds the per-step reward (Havrilla et al.'s dense setting)
    "lmgym/MultiStepArithmetic-v0": {"task": "lmgym.envs.math:ArithmeticTask", "steps": (2, 3)},
    "lmgym/GSMSymbolic-v0": {"task": "lmgym.envs.math:GSMSymbolicTask"},
    "lmgym/GSM8K-v0": {"task": "lmgym.envs.math:GSM8KTask"},
    "lmgym/HumanEval-v0": {"task": "lmgym.envs.code:HumanEvalTask"},
    "lmgym/MBPP-v0": {"task": "lmgym.envs.code:MBPPTask"},
    "lmgym/HumanEval-Feedback-v0": {"task": "lmgym.envs.code:HumanEvalTask", "max_turns": 3},
    "lmgym/MBPP-Feedback-v0": {"task": "lmgym.envs.code:MBPPTask", "max_turns": 3},
    "lmgym/TinyCode-v0": {"task": "lmgym.envs.code:TinyCodeTask"},
    "lmgym/Bandit-v0": {"task": "lmgym.envs.bandit:BanditTask"},
    "lmgym/KeyFacts-v0": {"task": "lmgym.envs.summarization:KeyFactsTask"},
    # trained on lmgym's shipped learned reward model, evaluated (ground truth) by the exact key facts;
    # documents of 2 facts and 1 filler, as the RM's training pairs and the suite's KeyFacts
    "lmgym/KeyFacts-RM-v0": {"task": "lmgym.envs.summarization:KeyFactsTask", "judge": "reward_model",
                             "reward_model": "keyfacts-rm", "facts": 2, "fillers": 1},
    "lmgym/TLDR-Entailment-v0": {"task": "lmgym.envs.summarization:TLDRTask"},
    "lmgym/TLDR-RM-v0": {"task": "lmgym.envs.summarization:TLDRTask", "judge": "reward_model",
                          "ground_truth": "entailment"},
    "lmgym/CNNDM-Entailment-v0": {"task": "lmgym.envs.summarization:CNNDMTask"},
}

# Ids whose data or judge comes from the hub (or a local copy / a trained reward model that
# you pass in): everything else runs offline as it is.
NEEDS_DOWNLOAD = frozenset({"lmgym/TLDR-Entailment-v0", "lmgym/TLDR-RM-v0", "lmgym/CNNDM-Entailment-v0"})


def register_envs() -> None:
    """Register lmgym's ids with Gymnasium (idempotent; also the ``gymnasium.envs`` entry point)."""
    for env_id, kwargs in TASKS.items():
        if env_id not in registry:
            register(id=env_id, entry_point="lmgym.core:LMEnv", vector_entry_point="lmgym.vector:LMVectorEnv",
                     kwargs=dict(kwargs))


def load_env_plugins() -> list[str]:
    """Import the modules named in the ``lmgym.envs`` entry-point group (each registers its own
    ids with Gymnasium when imported, or is a callable that does); returns their names.

    ``lmgym bench`` calls this, so a package that declares::

        [project.entry-points."lmgym.envs"]
        mytasks = "mypkg.envs:register"

    is benchmarked by id without an explicit import.
    """
    from importlib.metadata import entry_points

    loaded = []
    for entry_point in entry_points(group="lmgym.envs"):
        target = entry_point.load()
        if callable(target):
            target()
        loaded.append(entry_point.name)
    return loaded


register_envs()

__all__ = ["NEEDS_DOWNLOAD", "TASKS", "__version__", "load_env_plugins", "register_envs"]
