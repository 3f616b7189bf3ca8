"""Third-party agents and envs are found by name through entry points, without forking lmgym."""

from __future__ import annotations

import sys
import textwrap

import gymnasium as gym
import pytest


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A real (if minimal) installed distribution: a module plus a dist-info with entry points."""
    (tmp_path / "myplugin.py").write_text(textwrap.dedent('''
        from gymnasium.envs.registration import register, registry
        from agents.exit import ExIt

        class MyExIt(ExIt):
            name = "my-exit"

        def register_envs():
            if "myplugin/Sums-v0" not in registry:
                register(id="myplugin/Sums-v0", entry_point="lmgym.core:LMEnv",
                         vector_entry_point="lmgym.vector:LMVectorEnv",
                         kwargs={"task": "lmgym.envs.math:ArithmeticTask", "operators": "+"})
    '''))
    dist = tmp_path / "myplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[lmgym.agents]\nmy-exit = myplugin:MyExIt\n\n[lmgym.envs]\nsums = myplugin:register_envs\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("myplugin", None)


def test_agents_and_envs_from_an_installed_package(installed_plugin):
    import lmgym
    from agents import load_agent, registered_agents

    assert registered_agents()["my-exit"] == "myplugin:MyExIt"
    assert load_agent("my-exit").name == "my-exit"
    assert load_agent("exit").__module__ == "agents.exit"  # built-ins cannot be shadowed
    assert "sums" in lmgym.load_env_plugins()
    env = gym.make("myplugin/Sums-v0")
    prompt, _ = env.reset(seed=0)
    assert "+" in prompt and "-" not in prompt
