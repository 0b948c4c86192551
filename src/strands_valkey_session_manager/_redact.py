"""Secrets out of errors: URLs redacted, clients made from a URL whose errors hold no password, and
client exceptions whose frames keep no locals.

A URL's password must never reach an error, a log line or a traceback. valkey-py's URL parsing
(``urllib.parse``) quotes parts of a password that holds ``/``, ``?`` or ``#`` in its errors
(``Port could not be cast to integer value as 'S3cr'``), and its exceptions' frames keep the URL
and the connection keywords as locals. :func:`client_from_url` makes the client and, on failure,
raises a new exception with no chained cause or context, whose text names the URL as
:func:`redact_url` writes it, after clearing the locals of every frame the failure went through.
"""

from __future__ import annotations

import difflib
import functools
import re
import traceback
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["check_client_options", "client_from_url", "client_options", "drop_frame_locals", "redact_url"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:(?://)?)(.*)\Z", re.DOTALL)
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|pass|auth)=)([^&#]*)")
#: A password shorter than this is redacted but not searched for inside messages.
_MIN_SECRET_WINDOW = 4
_SPLIT_PASSWORD = "the user name or password holds '/', '?', '#' or '@': percent-encode them (%2F, %3F, %23, %40)"


def _userinfo_end(rest: str) -> int:
    """Index of the ``@`` that ends the user information of ``rest`` (the URL after the scheme), or -1.

    The last ``@`` of the URL, so that a password holding ``@``, ``/``, ``?`` or ``#`` is covered whole:
    redacting too much is harmless, too little is a leak.
    """
    return rest.rfind("@")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``valkey://user:***@host:6379``).

    The password is everything between the first ``:`` of the user information and the URL's last
    ``@``, whatever it holds; a ``password=`` query value is replaced as well.
    """
    text = str(url)
    match = _SCHEME.match(text)
    scheme, rest = (match.group(1), match.group(2)) if match else ("", text)
    end = _userinfo_end(rest)
    if end >= 0:
        user, colon, _ = rest[:end].partition(":")
        rest = f"{user}:***@{rest[end + 1 :]}" if colon else rest
    return scheme + _QUERY_SECRET.sub(r"\1***", rest)


def _secrets(url: str) -> list[str]:
    """The password of ``url`` as written and decoded, and its ``password=`` query values."""
    match = _SCHEME.match(url)
    rest = match.group(2) if match else url
    found: list[str] = []
    end = _userinfo_end(rest)
    if end >= 0:
        _, colon, password = rest[:end].partition(":")
        if colon:
            found.append(password)
    found.extend(m.group(2) for m in _QUERY_SECRET.finditer(rest))
    found += [unquote(s) for s in found]
    return [s for s in found if s]


def _holds_secret(text: str, secrets: list[str]) -> bool:
    """Whether ``text`` holds a secret, or any run of 4 of its characters (a fragment cut by a parser)."""
    for secret in secrets:
        width = min(len(secret), _MIN_SECRET_WINDOW)
        if any(secret[i : i + width] in text for i in range(len(secret) - width + 1)):
            return True
    return False


def _split_password(url: str) -> bool:
    """Whether ``urllib.parse`` would cut the URL's user information short (an unencoded ``/?#``).

    Then the host part it sees has no ``@`` while the rest of the URL has one before any ``=``
    (an ``@`` after an ``=`` is a query value's).
    """
    match = _SCHEME.match(url)
    if match is None:
        return False
    rest = match.group(2)
    end = rest.rfind("@")
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # an invalid IPv6 host: the client's parser says so (the message holds no secret)
        return False
    if end < 0 or "@" in netloc:
        return False
    equals = rest.find("=")
    return equals < 0 or end < equals


def drop_frame_locals(error: BaseException | None, seen: set[int] | None = None) -> None:
    """Drop the locals of every finished frame in ``error``'s traceback and in its causes'.

    A client's exception keeps the frames it went through, and their locals hold what the client
    was working with: the password it sent in ``AUTH`` (valkey-py's ``on_connect``), the URL, the
    connection keywords. Called on a client exception before it becomes the cause of ours, so a
    report made with ``capture_locals`` (or a debugger) finds none of it. Frames still running
    (the one handling the exception) are left alone.
    """
    seen = set() if seen is None else seen
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        drop_frame_locals(error.__cause__, seen)
        error = error.__context__


def client_from_url(
    factory: Callable[..., Any], url: str, *, unavailable: Callable[[str], Exception], **kwargs: Any
) -> Any:
    """``factory(url, **kwargs)`` (a client class's ``from_url``), with errors that hold no secret.

    Raises:
        ValueError: If the URL cannot be parsed (its user information not percent-encoded, a bad
            port, scheme or query value); the message names the redacted URL.
        Exception: ``unavailable(message)`` if the client connects at once (cluster clients) and
            cannot; the message names the redacted URL and the client's reason.
    """
    import valkey.exceptions

    failure: BaseException
    if _split_password(url):
        failure = ValueError(f"invalid server URL {redact_url(url)}: {_SPLIT_PASSWORD}")
    else:
        try:
            return factory(url, **kwargs)
        except ValueError as e:
            reason = " ".join(str(e).split())
            failure = ValueError(
                f"invalid server URL {redact_url(url)}: "
                + (_SPLIT_PASSWORD if _holds_secret(reason, _secrets(url)) else reason)
            )
            drop_frame_locals(e)
        except (valkey.exceptions.ValkeyError, valkey.exceptions.ValkeyClusterException) as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            if _holds_secret(reason, _secrets(url)):
                reason = type(e).__name__
            failure = unavailable(f"cannot connect to {redact_url(url)}: {reason}")
            drop_frame_locals(e)
        except BaseException as e:
            drop_frame_locals(e)
            failure = e
    # Outside the except blocks, so the new exception has no __context__; and without the URL and
    # the keywords (which may hold a password) among this frame's locals, which its traceback keeps.
    del url, kwargs
    raise failure


def _parameters(*functions: Callable[..., Any]) -> set[str]:
    import inspect

    return {
        p.name
        for f in functions
        for p in inspect.signature(f).parameters.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"
    }


@functools.cache
def client_options(cluster: bool) -> frozenset[str]:
    """The keywords a valkey-py client made by ``from_url`` takes (``valkey.Valkey`` or ``ValkeyCluster``)."""
    import valkey
    import valkey.cluster
    from valkey import connection

    if cluster:
        # ValkeyCluster drops every keyword outside this list without a word.
        return frozenset(
            _parameters(valkey.cluster.ValkeyCluster.__init__) | set(valkey.cluster.VALKEY_ALLOWED_KEYS)
        ) - set(valkey.cluster.KWARGS_DISABLED_KEYS)
    return frozenset(
        {"single_connection_client"}
        | _parameters(
            valkey.Valkey.__init__,
            connection.ConnectionPool.__init__,
            connection.AbstractConnection.__init__,
            connection.Connection.__init__,
            connection.SSLConnection.__init__,
            connection.UnixDomainSocketConnection.__init__,
        )
    )


def check_client_options(where: str, given: Iterable[str], *, cluster: bool, own: Iterable[str] = ()) -> None:
    """Refuse keywords that neither ``where`` nor the valkey-py client takes, before connecting.

    valkey-py would otherwise fail on first use with a ``TypeError`` from inside its connection
    (standalone), or ignore them (cluster). A ``connection_class`` of the caller's may take more: then
    nothing is checked.

    Raises:
        TypeError: Naming each unknown keyword, with the closest known one.
    """
    names = set(given)
    if not cluster and "connection_class" in names:
        return
    known = client_options(cluster) | set(own)
    unknown = sorted(names - known)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(unknown) > 1 else ""
    raise TypeError(
        f"{where} got unexpected keyword argument{plural} {', '.join(hints)}: "
        f"not an option of {where.split('.', maxsplit=1)[0]} nor of the {'cluster ' if cluster else ''}client"
    )
