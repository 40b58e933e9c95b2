"""Pytest fixtures: redis_server (filled in by its owner)."""
