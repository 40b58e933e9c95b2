"""Egress guard: every network connection GDAL makes goes through a local SOCKS5 proxy that
only connects to allowed hosts and ports.

GDAL (3.10) always lets libcurl follow redirects and has no option to stop it, so a remote
that answers the server's own checked lookup normally and then redirects GDAL's range
reads could send GDAL anywhere. ``GDAL_HTTP_PROXY=socks5h://127.0.0.1:PORT`` routes every
connection of GDAL's HTTP client (``/vsicurl/``, ``/vsis3/``, ``/vsigs/``, redirects
included) through ``EgressGuard``, which refuses any ``host:port`` that ``allows`` does
not accept before connecting anywhere. ``NO_PROXY`` is cleared so that no host bypasses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable

from prometheus_client import Counter

log = logging.getLogger(__name__)

SOCKS_VERSION = 5
REPLY_OK, REPLY_NOT_ALLOWED, REPLY_UNREACHABLE, REPLY_UNSUPPORTED = 0, 2, 4, 7
PUMP_CHUNK = 256 * 1024
EGRESS_REFUSED = Counter(
    "hndsr_egress_refused",
    "Connections GDAL tried to a host or port outside the allowlist (refused by the guard).",
)


class EgressGuard:
    """A SOCKS5 proxy on 127.0.0.1 (in its own thread) connecting only where ``allows`` says.

    ``allows(host, port)`` gets the lower-cased host name or IP literal as the client asked;
    refusals are logged and counted (``hndsr_egress_refused_total``).
    """

    def __init__(self, allows: Callable[[str, int], bool], connect_timeout_s: float = 5.0):
        self.allows = allows
        self.connect_timeout_s = connect_timeout_s
        self.port = 0
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def proxy_url(self) -> str:
        """The value of ``GDAL_HTTP_PROXY`` (``socks5h``: host names resolved by the guard)."""
        return f"socks5h://127.0.0.1:{self.port}"

    def start(self) -> EgressGuard:
        """Start serving in a daemon thread; returns once the port is bound."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        self.port = sock.getsockname()[1]
        threading.Thread(target=self._run, args=(sock,), name="egress-guard", daemon=True).start()
        self._started.wait(10)
        return self

    def install(self) -> None:
        """Point this process's GDAL HTTP client at the guard, for every scheme and host (a
        process-wide GDAL option, not an environment variable: child processes keep theirs)."""
        from rasterio._env import set_gdal_config

        for name in ("GDAL_HTTP_PROXY", "GDAL_HTTPS_PROXY"):
            set_gdal_config(name, self.proxy_url)
        for name in ("NO_PROXY", "no_proxy"):  # libcurl would connect to these directly
            os.environ.pop(name, None)

    def _run(self, sock: socket.socket) -> None:
        loop = self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, sock=sock)
            self._started.set()
            async with server:
                await server.serve_forever()

        loop.run_until_complete(serve())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target = await self._negotiate(reader, writer)
            if target is not None:
                await self._connect(target, reader, writer)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _negotiate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, int] | None:
        """The CONNECT target of a SOCKS5 greeting and request, or None (refused)."""
        version, n_methods = await reader.readexactly(2)
        await reader.readexactly(n_methods)
        if version != SOCKS_VERSION:
            return None
        writer.write(bytes([SOCKS_VERSION, 0]))  # no authentication
        version, command, _, address_type = await reader.readexactly(4)
        if address_type == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif address_type == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif address_type == 3:
            length = (await reader.readexactly(1))[0]
            host = (await reader.readexactly(length)).decode("idna").lower().rstrip(".")
        else:
            self._reply(writer, REPLY_UNSUPPORTED)
            return None
        port = int.from_bytes(await reader.readexactly(2), "big")
        if command != 1:
            self._reply(writer, REPLY_UNSUPPORTED)
            return None
        if not self.allows(host, port):
            EGRESS_REFUSED.inc()
            log.warning("egress guard refused a GDAL connection to %s:%d", host, port)
            self._reply(writer, REPLY_NOT_ALLOWED)
            return None
        return host, port

    def _reply(self, writer: asyncio.StreamWriter, code: int) -> None:
        writer.write(bytes([SOCKS_VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]))

    async def _connect(
        self, target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*target), self.connect_timeout_s
            )
        except (OSError, TimeoutError):
            self._reply(writer, REPLY_UNREACHABLE)
            return
        self._reply(writer, REPLY_OK)
        try:
            await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
        finally:
            with contextlib.suppress(OSError):
                upstream_writer.close()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(PUMP_CHUNK):
            sink.write(chunk)
            await sink.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            if sink.can_write_eof():
                sink.write_eof()
