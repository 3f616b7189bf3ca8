"""lmgym's agents: one readable file per algorithm on a small shared core (``agents/core.py``).

Each agent takes its config dataclass and implements ``learn(env_id, budget)``,
``act(observations)``, ``save(path)``/``load(path)``. ``AGENTS`` maps names to classes (as
``"module:Class"`` strings, so nothing heavy is imported until used).
"""

AGENTS = {
    "base": "agents.core:BasePolicy",
    "sft": "agents.sft:SFT",
    "ppo": "agents.ppo:PPO",
    "exit": "agents.exit:ExIt",
    "rcrl": "agents.rcrl:RCRL",
}


def load_agent(name: str):
    """The agent class for a registered name or a ``"module:Class"`` path."""
    from lmgym.core import load_object

    path = AGENTS.get(name, name)
    if ":" not in path:
        raise ValueError(f"unknown agent {name!r}: choose one of {sorted(AGENTS)} or pass 'module:Class'")
    return load_object(path)
