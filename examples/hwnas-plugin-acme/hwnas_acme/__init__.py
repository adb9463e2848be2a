"""Example hwnas-bench plugin (see README.md)."""
