"""Process set-up for reading sources: GDAL options, the egress guard, the allowlist."""

from __future__ import annotations

from tileserver.egress_guard import EgressGuard
from tileserver.gdal_env import configure_gdal, remote_options
from tileserver.remote import RemoteObjects
from tileserver.security import Allowlist
from tileserver.settings import Settings

_guard: EgressGuard | None = None


def build_allowlist(settings: Settings) -> Allowlist:
    """Configure GDAL for this process (timeouts and retries from ``settings``, every GDAL
    connection through an ``EgressGuard`` of the allowlist) and return the allowlist."""
    configure_gdal(
        remote_options(
            settings.remote_timeout_s,
            settings.remote_connect_timeout_s,
            settings.remote_max_retry,
            settings.remote_retry_delay_s,
        )
    )
    remote = RemoteObjects(
        timeout_s=settings.remote_timeout_s,
        connect_timeout_s=settings.remote_connect_timeout_s,
        max_retry=settings.remote_max_retry,
        ttl_s=settings.remote_identity_ttl_s,
    )
    allowlist = Allowlist(settings.allowed_prefixes, remote)
    # one guard per process (GDAL's options are process-wide): the last app built sets its
    # rules (one app per server process; tests build several)
    global _guard
    if _guard is None:
        _guard = EgressGuard(allowlist.allows_egress, settings.remote_connect_timeout_s).start()
    _guard.allows = allowlist.allows_egress
    _guard.install()
    return allowlist
