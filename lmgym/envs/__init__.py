"""Task families: one module each."""
