"""Verifiers and judges: pure scoring code, usable without any environment."""
