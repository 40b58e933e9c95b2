"""Pytest fixtures: sample_scene (filled in by its owner)."""
