"""Pytest fixtures: server (filled in by its owner)."""
