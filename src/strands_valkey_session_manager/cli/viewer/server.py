"""``serve``: run the viewer with uvicorn on a server given by URL (what ``svsm ui`` calls)."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from typing import Any

from ..._redact import client_from_url, drop_frame_locals, redact_url
from .app import DEFAULT_ALLOWED_HOSTS, create_app

logger = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?\Z")


def check_allowed_host(name: str) -> str:
    """``name`` as the ``Host`` check compares it: lower case, an IPv6 address in brackets.

    A host name, ``*.<domain>`` for every name under a domain, an IPv4 address or an IPv6 address
    (with or without brackets); without a port, since the check ignores the port.

    Raises:
        ValueError: If ``name`` is none of these (``*`` alone included: the check cannot be turned off).
    """
    text = name.strip().lower()
    try:
        address = ipaddress.ip_address(text[1:-1] if text.startswith("[") and text.endswith("]") else text)
    except ValueError:
        address = None
    if address is not None:
        return f"[{address}]" if address.version == 6 else str(address)
    if not _HOSTNAME.match(text):
        raise ValueError(
            f"allowed host {name!r} must be a host name, *.<domain>, or an IP address, without a port "
            "(the Host check cannot be turned off)"
        )
    return text


def allowed_hosts_for(host: str, allowed_hosts: Sequence[str] = ()) -> list[str]:
    """``Host`` headers to accept when bound to ``host``: the loopback names, ``host`` itself unless
    it is a wildcard (``0.0.0.0``, ``::``), and ``allowed_hosts``.

    A wildcard bind (what a container needs) keeps the check: reaching the viewer by another name
    (a DNS name, the machine's address) takes that name in ``allowed_hosts``. Without the check, any
    web page could read the sessions through DNS rebinding.

    Raises:
        ValueError: If an entry of ``allowed_hosts`` is not a host name, ``*.<domain>`` or an IP
            address (see :func:`check_allowed_host`).
    """
    hosts = list(DEFAULT_ALLOWED_HOSTS)
    extra = [check_allowed_host(name) for name in allowed_hosts]
    if host.strip() not in _WILDCARD_BINDS:
        extra.insert(0, check_allowed_host(host))
    hosts.extend(name for name in dict.fromkeys(extra) if name not in hosts)
    return hosts


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def serve(
    url: str,
    *,
    cluster: bool = False,
    prefix: str = "strands",
    host: str = "127.0.0.1",
    port: int = 8765,
    allow_delete: bool = False,
    timeout: float = 5.0,
    allowed_hosts: Sequence[str] = (),
) -> None:
    """Serve the viewer until interrupted.

    Args:
        url: ``valkey://``, ``valkeys://``, ``redis://``, ``rediss://`` or ``unix://`` URL.
        cluster: Connect with ``valkey.cluster.ValkeyCluster`` (default: a standalone client).
        prefix: The key prefix the sessions were written with (``key_prefix``, default ``strands``);
            also the namespace of snapshot storage (``ValkeyStorage``) shown with each session.
        host: Interface to bind; loopback by default. Anything else exposes every session to the
            network, without authentication: a warning is logged.
        port: TCP port.
        allow_delete: Enable the delete pages.
        timeout: Seconds to wait for a connection or a reply from the server.
        allowed_hosts: Further ``Host`` header values to accept (host names, ``*.<domain>``, IP
            addresses), besides the loopback names and ``host`` itself. Binding to every interface
            (``0.0.0.0``, ``::``) does not accept other names: requests naming another host are refused
            (400), which keeps web pages from reading the sessions through DNS rebinding.

    Raises:
        SessionStoreUnavailableError: If the server does not answer a PING at start.
        ValueError: If ``prefix`` is not a valid key prefix, an allowed host is not a host name or an
            address, or the URL cannot be parsed. Errors show the URL with its password as ``***``.
    """
    import uvicorn
    import valkey
    import valkey.cluster
    import valkey.exceptions

    from ...exceptions import SessionStoreUnavailableError
    from ...repository import ValkeySessionRepository
    from ...storage import ValkeyStorage

    hosts = allowed_hosts_for(host, allowed_hosts)  # bad names fail before connecting
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
            drop_frame_locals(e)
        if unreachable is not None:
            raise unreachable
        repository = ValkeySessionRepository(client, key_prefix=prefix)
        storage = ValkeyStorage(client, namespace=prefix)
        app = create_app(repository, allow_delete=allow_delete, storage=storage, allowed_hosts=hosts)
        if not _is_loopback(host):
            logger.warning(
                "host=<%s>, allowed_hosts=<%s> | the viewer has no authentication: every session is readable%s "
                "from the network",
                host,
                ",".join(hosts),
                " and deletable" if allow_delete else "",
            )
        uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
    finally:
        client.close()
