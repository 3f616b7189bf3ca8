"""Hugging Face `evaluate` modules wrapping lmgym.metrics (load them by file path)."""
