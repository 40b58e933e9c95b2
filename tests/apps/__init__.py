"""Test-only upscalers and app factories that the runtime tests launch in a real server."""
