"""A cached tile response and its checksummed wire format (disk and Redis tiers).

Layout: ``MAGIC | u32 meta length | meta JSON | body | 16-byte BLAKE2b of everything before``.
Anything that does not parse, is short, or fails the digest raises ``CorruptEntryError``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

MAGIC = b"HTC1"
DIGEST_SIZE = 16
_LEN = struct.Struct(">I")


class CorruptEntryError(ValueError):
    """A stored entry failed its checksum or does not parse."""


def content_etag(body: bytes) -> str:
    """Strong ETag (quoted) of a response body: its BLAKE2b-128 hash."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


@dataclass(frozen=True, slots=True)
class Entry:
    """A 200 tile response: body, media type, ETag and the headers worth replaying."""

    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...] = ()
    etag: str = ""

    @classmethod
    def create(
        cls, body: bytes, media_type: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Entry:
        """An entry with its ETag computed from the body."""
        return cls(body, media_type, headers, content_etag(body))

    @property
    def size(self) -> int:
        """Bytes the entry holds (body plus a small fixed overhead)."""
        return len(self.body) + 256

    def encode(self) -> bytes:
        """Wire bytes with the checksum appended."""
        meta = json.dumps(
            {"t": self.media_type, "h": self.headers, "e": self.etag}, separators=(",", ":")
        ).encode()
        payload = b"".join((MAGIC, _LEN.pack(len(meta)), meta, self.body))
        return payload + hashlib.blake2b(payload, digest_size=DIGEST_SIZE).digest()

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        """Parse wire bytes, verifying the checksum."""
        if len(data) < len(MAGIC) + _LEN.size + DIGEST_SIZE or not data.startswith(MAGIC):
            raise CorruptEntryError("entry too short or bad magic")
        payload, digest = data[:-DIGEST_SIZE], data[-DIGEST_SIZE:]
        if hashlib.blake2b(payload, digest_size=DIGEST_SIZE).digest() != digest:
            raise CorruptEntryError("entry checksum mismatch")
        (meta_len,) = _LEN.unpack_from(payload, len(MAGIC))
        start = len(MAGIC) + _LEN.size
        try:
            meta = json.loads(payload[start : start + meta_len])
            headers = tuple((str(k), str(v)) for k, v in meta["h"])
            return cls(payload[start + meta_len :], str(meta["t"]), headers, str(meta["e"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptEntryError("entry metadata does not parse") from exc
