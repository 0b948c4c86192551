"""``serve``: run the viewer with uvicorn on a server given by URL (what ``svsm ui`` calls)."""

from __future__ import annotations

import ipaddress
import logging
import traceback
from typing import Any

from .._redact import client_from_url, redact_url
from .app import DEFAULT_ALLOWED_HOSTS, create_app

logger = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(host: str) -> list[str]:
    """``Host`` headers to accept when bound to ``host``: loopback names, plus ``host`` itself;
    any for a wildcard bind (``0.0.0.0``, ``::``)."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    hosts = list(DEFAULT_ALLOWED_HOSTS)
    if host not in hosts:
        hosts.append(host)
    return hosts


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def serve(
    url: str,
    *,
    cluster: bool,
    prefix: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    allow_delete: bool = False,
    timeout: float = 5.0,
) -> None:
    """Serve the viewer until interrupted.

    Args:
        url: ``valkey://``, ``valkeys://``, ``redis://``, ``rediss://`` or ``unix://`` URL.
        cluster: Connect with ``valkey.cluster.ValkeyCluster``.
        prefix: The key prefix the sessions were written with (``key_prefix``, default ``strands``);
            also the namespace of snapshot storage (``ValkeyStorage``) shown with each session.
        host: Interface to bind; loopback by default. Anything else exposes every session to the
            network, without authentication: a warning is logged.
        port: TCP port.
        allow_delete: Enable the delete pages.
        timeout: Seconds to wait for a connection or a reply from the server.

    Raises:
        SessionStoreUnavailableError: If the server does not answer a PING at start.
        ValueError: If ``prefix`` is not a valid key prefix, or the URL cannot be parsed. Errors show
            the URL with its password as ``***``.
    """
    import uvicorn
    import valkey
    import valkey.cluster
    import valkey.exceptions

    from ..exceptions import SessionStoreUnavailableError
    from ..repository import ValkeySessionRepository
    from ..storage import ValkeyStorage

    # Errors name the URL without its password, and hold it nowhere (see _redact.py).
    factory: Any = valkey.cluster.ValkeyCluster.from_url if cluster else valkey.Valkey.from_url
    where = redact_url(url)
    try:
        client = client_from_url(
            factory,
            url,
            unavailable=SessionStoreUnavailableError,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    finally:
        del url  # tracebacks keep this frame: no password among its locals
    try:
        unreachable = None
        try:
            client.ping()
        except (valkey.exceptions.ValkeyError, valkey.exceptions.ValkeyClusterException) as e:
            # Raised outside this block: the client's exception (whose frames hold the connection's
            # password) is neither the cause nor the context of ours.
            unreachable = SessionStoreUnavailableError(f"cannot reach the server at {where}: {_one_line(e)}")
            traceback.clear_frames(e.__traceback__)
        if unreachable is not None:
            raise unreachable
        repository = ValkeySessionRepository(client, key_prefix=prefix)
        storage = ValkeyStorage(client, namespace=prefix)
        app = create_app(repository, allow_delete=allow_delete, storage=storage, allowed_hosts=allowed_hosts_for(host))
        if not _is_loopback(host):
            logger.warning(
                "host=<%s> | the viewer has no authentication: every session is readable%s from the network",
                host,
                " and deletable" if allow_delete else "",
            )
        uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
    finally:
        client.close()
