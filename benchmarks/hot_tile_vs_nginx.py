"""One hot tile: the server (cache hit path) versus nginx serving the same bytes from disk.

Both are measured in the same run with the same client (wrk), one after the other:

    .venv/bin/python benchmarks/hot_tile_vs_nginx.py --data-dir ./data --duration 10

Needs ``nginx`` and ``wrk`` (``make system-deps``) and the sample scene (``make sample-data``).
Both servers get one process (uvicorn: one worker; nginx: ``worker_processes 1``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import morecantile

from tests.plugins.server import free_port

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
CENTRE = (-54.535, -25.34)

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    types {{ image/png png; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}/www; add_header X-Cache HIT-disk; etag on; }}
    }}
}}
"""


def bare_app() -> object:
    """The floor of any Python server here: a bare ASGI app that returns the tile bytes."""
    body = Path(os.environ["HOT_TILE_FILE"]).read_bytes()
    headers = [(b"content-type", b"image/png"), (b"content-length", str(len(body)).encode())]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    message = {"type": "http.response.body", "body": body}

    async def app(scope: dict, receive: object, send: object) -> None:
        await send(start)  # type: ignore[operator]
        await send(message)  # type: ignore[operator]

    return app


def uvicorn_process(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    """One uvicorn worker (httptools + uvloop when installed) serving ``factory``."""
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", factory, "--factory", "--port", str(port)]
        + ["--log-level", "warning", "--no-access-log"],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )


def wait_http(url: str, timeout: float = 60) -> None:
    """Poll ``url`` until it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def wrk(url: str, duration: int, connections: int, threads: int) -> float:
    """Requests per second that wrk measured (non-2xx responses make it fail)."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors from {url}:\n{out}")
    latency = re.search(r"99%\s+(\S+)", out)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    print(f"  {rate:,.0f} req/s, p99 {latency[1] if latency else '?'}  ({url.split('?')[0]})")
    return rate


def main() -> None:
    """Run both measurements and print them with the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("./data"))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--zoom", type=int, default=14)
    parser.add_argument("--sr", default="bicubic")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: run scripts/system-deps.sh")
    data_dir = args.data_dir.resolve()
    tile = morecantile.tms.get("WebMercatorQuad").tile(*CENTRE, args.zoom)
    path = (
        f"/cog/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        f"?url={data_dir / SCENE}&sr={args.sr}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx workers run as an unprivileged user
        (root / "www").mkdir()
        (root / "tmp").mkdir()
        port = free_port()
        env = {
            **os.environ,
            "HNDSR_DATA_DIR": str(data_dir),
            "HNDSR_CACHE_DIR": str(root / "cache"),
        }
        env.pop("HNDSR_REDIS_URL", None)
        server = uvicorn_process("tileserver.app:create_app", port, env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/healthz")
            first = httpx.get(base + path, timeout=120)
            second = httpx.get(base + path, timeout=120)
            assert second.headers["x-cache"] == "HIT-memory", second.headers
            assert first.content == second.content
            (root / "www" / "tile.png").write_bytes(second.content)
            print(
                f"tile z{tile.z} {len(second.content):,} bytes, X-SR-Mode "
                f"{second.headers.get('x-sr-mode')}; wrk -t{args.threads} -c{args.connections} "
                f"-d{args.duration}s"
            )
            print("server (cache hit, one uvicorn worker):")
            server_rate = wrk(base + path, args.duration, args.connections, args.threads)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        bare_port = free_port()
        env["HOT_TILE_FILE"] = str(root / "www" / "tile.png")
        bare = uvicorn_process("benchmarks.hot_tile_vs_nginx:bare_app", bare_port, env)
        try:
            wait_http(f"http://127.0.0.1:{bare_port}/")
            print("bare ASGI app (same bytes, one uvicorn worker; the floor of Python serving):")
            bare_rate = wrk(
                f"http://127.0.0.1:{bare_port}/tile.png",
                args.duration,
                args.connections,
                args.threads,
            )
        finally:
            bare.send_signal(signal.SIGTERM)
            bare.wait(timeout=30)
        nginx_port = free_port()
        (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=nginx_port))
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        nginx = subprocess.Popen([nginx_bin, "-c", str(root / "nginx.conf"), "-p", str(root)])
        try:
            wait_http(f"http://127.0.0.1:{nginx_port}/tile.png")
            print("nginx (same bytes from disk, worker_processes 1):")
            nginx_rate = wrk(
                f"http://127.0.0.1:{nginx_port}/tile.png",
                args.duration,
                args.connections,
                args.threads,
            )
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(timeout=30)
    print(f"bare ASGI / nginx: {bare_rate / nginx_rate:.1%}")
    print(f"server / bare ASGI: {server_rate / bare_rate:.1%}")
    print(f"ratio server/nginx: {server_rate / nginx_rate:.1%}")


if __name__ == "__main__":
    main()
