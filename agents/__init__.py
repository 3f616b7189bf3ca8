"""lmgym's agents: one readable file per algorithm on a small shared core (``agents/core.py``).

Each agent takes its config dataclass and implements ``learn(env_id, budget)``,
``act(observations)``, ``save(path)``/``load(path)``. ``AGENTS`` maps names to classes (as
``"module:Class"`` strings, so nothing heavy is imported until used). Other packages add
agents by name through the ``lmgym.agents`` entry-point group, e.g. in their pyproject.toml::

    [project.entry-points."lmgym.agents"]
    reinforce = "mypkg.reinforce:REINFORCE"
"""

from importlib.metadata import entry_points

AGENTS = {
    "base": "agents.core:BasePolicy",
    "sft": "agents.sft:SFT",
    "ppo": "agents.ppo:PPO",
    "exit": "agents.exit:ExIt",
    "rcrl": "agents.rcrl:RCRL",
    "copg": "agents.copg:CoPG",
    "dpo": "agents.dpo:DPO",
    "grpo": "agents.grpo:GRPO",
    "rloo": "agents.grpo:RLOO",
    "joint": "agents.joint:Joint",
}


def registered_agents() -> dict[str, str]:
    """Built-in agents plus those of installed packages (``lmgym.agents`` entry points)."""
    found = {ep.name: ep.value for ep in entry_points(group="lmgym.agents")}
    return {**found, **AGENTS}  # built-in names cannot be shadowed


def load_agent(name: str):
    """The agent class for a registered name or a ``"module:Class"`` path."""
    from lmgym.core import load_object

    path = registered_agents().get(name, name)
    if ":" not in path:
        raise ValueError(f"unknown agent {name!r}: choose one of {sorted(registered_agents())} or pass 'module:Class'")
    return load_object(path)
