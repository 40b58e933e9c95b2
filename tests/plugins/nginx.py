"""The real nginx in a temporary prefix, as the current user: ``NginxProcess(prefix,
server_conf)`` writes a main config that includes ``server_conf`` (the ``server`` blocks),
checks it (``nginx -t``), runs it in the foreground and stops it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from training.tilepath.server import free_port, stop_process, wait_until_up

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class NginxProcess:
    """nginx with ``server_conf`` (``{port}`` is replaced by ``self.port``) in ``prefix``."""

    def __init__(self, prefix: Path, server_conf: str = "") -> None:
        self.prefix = prefix
        self.port = free_port()
        self.access_log = prefix / "access.log"
        self.error_log = prefix / "error.log"
        for sub in ("conf.d", "cache", "temp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        if server_conf:
            (prefix / "conf.d" / "default.conf").write_text(
                server_conf.replace("{port}", str(self.port))
            )
        temp = prefix / "temp"
        # as root nginx would switch its workers to `nobody`, who cannot enter pytest's
        # private tmp folders; keep them on the current user
        user = "user root root;\n" if os.geteuid() == 0 else ""
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(
            f"{user}worker_processes 1;\n"
            f"pid {prefix / 'nginx.pid'};\n"
            f"error_log {self.error_log} info;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            f"  client_body_temp_path {temp / 'body'};\n"
            f"  proxy_temp_path {temp / 'proxy'};\n"
            f"  fastcgi_temp_path {temp / 'fastcgi'};\n"
            f"  uwsgi_temp_path {temp / 'uwsgi'};\n"
            f"  scgi_temp_path {temp / 'scgi'};\n"
            f"  include {prefix / 'conf.d' / '*.conf'};\n"
            "}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *args: str) -> list[str]:
        paths = ["-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log)]
        return [NGINX, *paths, *args]

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> str:
        self.process = subprocess.Popen(self.command("-g", "daemon off;"))
        wait_until_up(self.process, f"{self.url}/nginx-health", 15, self.error_log)
        return self.url

    def stop(self) -> None:
        if self.process:
            stop_process(self.process, signal.SIGQUIT)  # graceful: finish requests in flight

    def log_lines(self, needle: str) -> list[str]:
        # the access log is written when a request completes; nothing is buffered
        return [line for line in self.access_log.read_text().splitlines() if needle in line]
