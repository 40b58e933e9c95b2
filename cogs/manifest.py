"""A ``sha256sum``-format checksum manifest (``SHA256SUMS``) over a folder's outputs."""

from __future__ import annotations

from pathlib import Path

from cogs.download import sha256_of

MANIFEST_NAME = "SHA256SUMS"


def manifest_text(folder: Path, names: list[str]) -> str:
    """The manifest lines (``<sha256>  <name>``) for files in ``folder``, in the given order."""
    return "".join(f"{sha256_of(folder / name)}  {name}\n" for name in names)


def manifest_verifies(folder: Path, names: list[str]) -> bool:
    """True when ``folder/SHA256SUMS`` lists exactly ``names`` and every checksum matches."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return False
    listed: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        digest, sep, name = line.partition("  ")
        if not sep:
            return False
        listed[name] = digest
    if sorted(listed) != sorted(names):
        return False
    return all((folder / n).is_file() and sha256_of(folder / n) == listed[n] for n in names)
