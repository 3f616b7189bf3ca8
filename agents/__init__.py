"""lmgym's agents: one readable file per algorithm on a small shared core (``agents/core.py``).

See ../shared/DESIGN.md ("Agents"). Each agent implements ``learn(env, budget)``,
``act(observations)``, ``save``/``load``.
"""
