"""``gym.make_vec("lmgym/<Task>-v0", num_envs=N)``: N episodes scored in one batched call.

Observations are a tuple of N prompts; actions a sequence of N completions. ``step`` checks
every action, then calls ``task.score_batch`` once for all valid ones: that is where a code
task fans out to its process pool and a judge runs one batched forward pass.

Autoreset is ``SAME_STEP``: an episode that ends is reset inside the same ``step``, so the
returned observations are already the next prompts (what an LM rollout loop wants), and the
ended episode's last observation and info are in ``info["final_obs"]`` and
``info["final_info"]`` (Gymnasium's vector convention, with ``_key`` masks).

Sub-env ``i`` is seeded with ``seed + i`` on ``reset(seed=seed)``; ``reset(options={"index":
[i0, i1, ...]})`` selects problems by index per sub-env (for ordered evaluation).

An action of ``None`` leaves its sub-env as it is: not stepped, not scored, reward 0, neither
terminated nor truncated, no info. :func:`lmgym.rollout.rollout` uses it for the sub-envs
whose multi-turn episode has already ended while others go on, for sub-envs it does not need,
and for samples an agent chooses not to ask the reward about.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from lmgym.core import LMEnv, build_template, load_object, score_completions


class LMVectorEnv(VectorEnv):
    """A batch of :class:`~lmgym.core.LMEnv` sharing one task object (and its data)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["ansi"]}

    def __init__(self, num_envs: int, task, **env_kwargs: Any):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        env_kwargs.pop("max_episode_steps", None)  # episodes end by themselves
        env_options = {
            key: env_kwargs.pop(key)
            for key in ("split", "prompt_template", "tokenizer", "num_shots", "max_completion_chars", "render_mode",
                        "reward_fn")
            if key in env_kwargs
        }
        if isinstance(task, str):
            task = load_object(task)(**env_kwargs)  # built once, shared by every sub-env
        elif env_kwargs:
            raise TypeError(f"unexpected keyword arguments for a ready-made task: {sorted(env_kwargs)}")
        # One prompt function for all sub-envs (a chat tokenizer is loaded once, not N times).
        env_options["prompt_template"] = build_template(
            task,
            env_options.get("prompt_template", "plain"),
            tokenizer=env_options.pop("tokenizer", None),
            num_shots=env_options.pop("num_shots", 4),
        )
        self.envs = [LMEnv(task, **env_options) for _ in range(num_envs)]
        self.task, self.num_envs = task, num_envs
        self.render_mode = env_options.get("render_mode")
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = spaces.Tuple([self.single_observation_space] * num_envs)
        self.action_space = spaces.Tuple([self.single_action_space] * num_envs)

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        options = dict(options or {})
        indices = options.pop("index", None)
        if indices is not None and len(indices) != self.num_envs:
            raise ValueError(f"options['index'] needs {self.num_envs} indices, got {len(indices)}")
        observations, infos = [], {}
        for i, env in enumerate(self.envs):
            sub_options = dict(options, index=int(indices[i])) if indices is not None else options
            observation, info = env.reset(seed=seeds[i], options=sub_options)
            observations.append(observation)
            infos = self._add_info(infos, info, i)
        return tuple(observations), infos

    @property
    def num_problems(self) -> int:
        """Problems in the split the sub-envs draw from."""
        return self.envs[0].num_problems

    def reference_solutions(self) -> list[str | None]:
        """Each sub-env's current problem's worked reference solution (``None`` where the task
        has none), for agents that learn from demonstrations (SFT). Never part of an
        observation; call it after ``reset``."""
        if any(env.problem is None for env in self.envs):
            raise gym.error.ResetNeeded("call reset() before reference_solutions()")
        return [env.problem.solution for env in self.envs]

    def step(self, actions: Sequence[str | None]):
        if isinstance(actions, str) or len(actions) != self.num_envs:
            raise ValueError(f"step() needs a sequence of {self.num_envs} completions")
        stepped = [i for i, action in enumerate(actions) if action is not None]
        errors = {i: self.envs[i].begin_step(actions[i]) for i in stepped}
        valid = [i for i in stepped if errors[i] is None]
        scored = score_completions(self.task, [self.envs[i].problem for i in valid], [self.envs[i].prompt for i in valid],
                                   [actions[i] for i in valid], self.envs[0].reward_fn)
        results: dict[int, tuple[float, dict]] = {i: (0.0, {"error": errors[i]}) for i in stepped}
        for i, result in zip(valid, scored):
            results[i] = result

        observations, infos = [], {}
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        for i, (env, action) in enumerate(zip(self.envs, actions)):
            if action is None:
                observations.append(env.prompt)
                continue
            reward, info = results[i]
            observation, rewards[i], terminations[i], truncations[i], info = env.finish_step(action, reward, info)
            if terminations[i] or truncations[i]:
                infos = self._add_info(infos, {"final_obs": observation, "final_info": info}, i)
                observation, info = env.reset()
            observations.append(observation)
            infos = self._add_info(infos, info, i)
        return tuple(observations), rewards, terminations, truncations, infos

    def render(self) -> tuple[str | None, ...] | None:
        if self.render_mode is None:
            return None
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
