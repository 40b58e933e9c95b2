"""Shared pytest configuration: fixtures live in tests/plugins, one module per concern."""

pytest_plugins = [
    "tests.plugins.sample_scene",
    "tests.plugins.server",
    "tests.plugins.redis_server",
    "tests.plugins.canary",
    "tests.plugins.remote_http",
    "tests.plugins.moto_s3",
]
