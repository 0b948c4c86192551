"""``RepositoryOptions``: the options every repository face and the session manager share, once.

The constructors of :class:`ValkeySessionRepository`, :class:`AsyncValkeySessionRepository` and
:class:`ValkeySessionManager` accept these options as keyword arguments (as they always have) or as
one ``options=RepositoryOptions(...)``; either way one frozen object is passed down to the core
(``_core.SessionCore``) and the engine (retries, waits). A keyword argument given next to
``options=`` replaces that option.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict

from ._engine import DEFAULT_WAIT_TIMEOUT, Durability, RetryPolicy
from ._keys import DEFAULT_KEY_PREFIX, encode_id, validate_key_prefix
from ._lifetime import Duration, to_ms
from ._seal import KeyProvider, Sealer

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "RepositoryKwargs", "RepositoryOptions", "options_from"]

#: Default ceiling for one stored record. Far below the server's 512 MB value limit and small
#: enough for managed services' request limits; raise it with ``max_record_bytes``.
DEFAULT_MAX_RECORD_BYTES: Final = 32 * 1024 * 1024


@dataclass(frozen=True)
class RepositoryOptions:
    """Options of a session repository (sync or asyncio) and of the session manager.

    Each option is documented on :class:`~strands_valkey_session_manager.ValkeySessionRepository`.
    Values are checked when the object is made (``ValueError``). ``check_versions=None`` takes the
    face's default: off for a repository, on for the session manager.
    """

    key_prefix: str = DEFAULT_KEY_PREFIX
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    ttl: Duration | None = None
    max_age: Duration | None = None
    touch_on_read: bool = False
    user_id: str | None = None
    tags: Sequence[str] = ()
    check_versions: bool | None = None
    retries: int = 2
    retry_backoff: float = 0.05
    compress_threshold: int | None = None
    key_provider: KeyProvider | None = dataclasses.field(default=None, repr=False)
    wait_for_replicas: int = 0
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    wait_aof: bool = False

    def __post_init__(self) -> None:
        validate_key_prefix(self.key_prefix)
        size = self.max_record_bytes
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"max_record_bytes=<{size!r}> | must be a positive int")
        to_ms(self.ttl, "ttl")
        to_ms(self.max_age, "max_age")
        if self.user_id is not None:
            encode_id(self.user_id, "user_id")
        if isinstance(self.tags, str):
            raise ValueError(f"tags=<{self.tags!r}> | tags must be a sequence of str, not one str")
        for tag in self.tags:
            encode_id(tag, "tag")
        # A tuple, so the options stay hashable and nobody changes them through a list they passed.
        object.__setattr__(self, "tags", tuple(dict.fromkeys(self.tags)))
        self.retry_policy()
        self.durability()
        Sealer(self.compress_threshold, self.key_provider)

    def retry_policy(self) -> RetryPolicy:
        """The engine's retry policy for these options."""
        return RetryPolicy(retries=self.retries, backoff=self.retry_backoff)

    def durability(self) -> Durability:
        """The engine's waits for these options."""
        return Durability(self.wait_for_replicas, self.wait_timeout, self.wait_aof)

    def versions_checked(self, default: bool) -> bool:
        """``check_versions``, or the face's ``default`` when it is None."""
        return default if self.check_versions is None else bool(self.check_versions)


class RepositoryKwargs(TypedDict, total=False):
    """The options as keyword arguments (for ``**kwargs: Unpack[RepositoryKwargs]``)."""

    key_prefix: str
    max_record_bytes: int
    ttl: Duration | None
    max_age: Duration | None
    touch_on_read: bool
    user_id: str | None
    tags: Sequence[str]
    check_versions: bool | None
    retries: int
    retry_backoff: float
    compress_threshold: int | None
    key_provider: KeyProvider | None
    wait_for_replicas: int
    wait_timeout: float
    wait_aof: bool


OPTION_NAMES: Final = frozenset(f.name for f in dataclasses.fields(RepositoryOptions))


def options_from(where: str, options: RepositoryOptions | None, kwargs: Mapping[str, Any]) -> RepositoryOptions:
    """The options a constructor got: ``options`` (default: all defaults) with ``kwargs`` replacing
    the options they name.

    Raises:
        TypeError: If ``options`` is not a :class:`RepositoryOptions`, or a keyword argument is not
            an option (the message suggests the closest name).
        ValueError: If an option is invalid.
    """
    unknown = kwargs.keys() - OPTION_NAMES
    if unknown:
        raise unexpected_arguments(where, unknown, OPTION_NAMES)
    if options is None:
        return RepositoryOptions(**kwargs)
    if not isinstance(options, RepositoryOptions):
        raise TypeError(f"{where} options must be a RepositoryOptions, not {type(options).__name__}")
    return dataclasses.replace(options, **kwargs) if kwargs else options


def unexpected_arguments(where: str, given: Iterable[str], known: Iterable[str]) -> TypeError:
    """A ``TypeError`` naming the unknown keyword arguments, each with the closest known name."""
    names = sorted(given)
    hints = []
    for name in names:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(names) > 1 else ""
    return TypeError(f"{where} got unexpected keyword argument{plural} {', '.join(hints)}")
