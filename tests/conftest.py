"""Shared pytest configuration: fixtures live in tests/plugins, one module per concern."""

pytest_plugins = [
    "tests.plugins.sample_scene",
    "tests.plugins.server",
    "tests.plugins.redis_server",
]
