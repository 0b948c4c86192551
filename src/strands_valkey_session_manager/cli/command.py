"""``svsm``: list, show, copy, prune and migrate sessions from the command line.

A thin layer over :class:`~strands_valkey_session_manager.ValkeySessionRepository` and
:mod:`~strands_valkey_session_manager.migrate`: rendering lives in ``_render.py`` and the server
checks of ``svsm doctor`` in ``_doctor.py``. Needs the ``cli`` extra (typer, rich).

Errors print one line to stderr (no traceback) and exit with a code a script can rely on; see
``EXIT_CODES``.
"""

import base64
import binascii
import functools
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
import valkey
import valkey.cluster
import valkey.exceptions
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from strands.types.exceptions import SessionException
from strands.types.session import SessionMessage
from typer.core import TyperCommand, TyperGroup

from .. import _codec, _seal, catalog
from .._client import run_plan
from .._codec import CodecError
from .._keys import DEFAULT_KEY_PREFIX, agent_member_range, encode_id, session_id_of_member
from .._lifetime import now_ms
from .._redact import client_from_url, drop_frame_locals, redact_url
from ..catalog import DamagedSession, SessionInfo, SessionPage
from ..exceptions import (
    AccessDeniedError,
    CorruptRecordError,
    DamagedSessionError,
    DecryptionError,
    SessionStoreUnavailableError,
    SessionTooLargeError,
)
from ..migration import (
    MigrationProgress,
    MigrationReport,
    SeedSourceError,
    SourceRecordError,
    check_export_fits,
    migrate_from_file_store,
    migrate_from_seed,
)
from ..repository import ValkeySessionRepository
from ..servers import ServerError
from ..transfer import parse_export, renamed_export
from . import doctor as _doctor
from . import render as _render

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_DATA = 4
EXIT_CONFLICT = 5

EXIT_CODES = f"""Exit codes:

{EXIT_OK}  ok.

{EXIT_NOT_FOUND}  not found (no such session or agent), nothing to do (prune or migrate found nothing), or a
question answered no. doctor: warnings.

{EXIT_USAGE}  usage error: bad option or argument, bad id or key prefix. doctor: errors.

{EXIT_UNAVAILABLE}  server unavailable: unreachable, timed out, refused by its ACL, or missing something the
command needs (the JSON module for migrate seed).

{EXIT_DATA}  data error: a corrupt record, an invalid import file, an unreadable migration source.

{EXIT_CONFLICT}  conflict: the target session already exists (import without --overwrite, fork).
"""

DEFAULT_URL = "redis://127.0.0.1:6379"
URL_ENVVARS = ["VALKEY_URL", "REDIS_URL"]


class _Group(TyperGroup):
    """The top-level group: its options (``--url``, ``--timeout``, ...) are also accepted after the
    subcommand (``svsm sessions --url ...``) and are moved in front of it before parsing."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(self.params, args))


def hoist_global_options(params: Any, args: list[str]) -> list[str]:
    """``args`` with the group's own options found after the subcommand moved in front of it.

    Tokens after ``--`` stay where they are, and so does the value of an option that takes one.
    """
    takes_value: dict[str, bool] = {}
    for param in params:
        if getattr(param, "param_type_name", "") == "option":
            for name in [*param.opts, *param.secondary_opts]:
                takes_value[name] = not (param.is_flag or getattr(param, "count", False))
    head: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":  # options before the command
        head.append(args[i])
        if takes_value.get(args[i]) and i + 1 < len(args):
            head.append(args[i + 1])
            i += 1
        i += 1
    if i >= len(args) or args[i] == "--":
        return args
    hoisted: list[str] = []
    tail: list[str] = [args[i]]
    i += 1
    while i < len(args):
        token = args[i]
        if token == "--":
            tail.extend(args[i:])
            break
        name = token.split("=", 1)[0] if token.startswith("--") else token
        if name in takes_value:
            hoisted.append(token)
            if takes_value[name] and "=" not in token and i + 1 < len(args):
                hoisted.append(args[i + 1])
                i += 1
        else:
            tail.append(token)
        i += 1
    return head + hoisted + tail


class _Command(TyperCommand):
    """A command whose help shows its arguments as their placeholders (``SESSION_ID``), without
    braces or Python type names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if getattr(param, "param_type_name", "") == "argument":
                name = param.metavar or str(param.name).upper()
                param._usage_display_name = lambda name=name: name  # type: ignore[attr-defined]
                param.display_type_rich = lambda ctx: None  # type: ignore[attr-defined]


app = typer.Typer(
    name="svsm",
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Strands sessions in Valkey or Redis: list, show, export, import, fork, delete, prune, migrate, doctor.\n\n"
    + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
migrate_app = typer.Typer(
    help="Copy sessions from the original package's layout or a FileSessionManager directory (idempotent).",
    no_args_is_help=True,
)
app.add_typer(migrate_app, name="migrate")

P = ParamSpec("P")
R = TypeVar("R")


# -- errors and exit codes --------------------------------------------------------------------------


class CliError(Exception):
    """An error with its exit code, printed as one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# The fields the package's errors open with (``operation=<...>, session_id=<...>, key=<...> | ``):
# kept for --verbose, left out otherwise.
_INTERNALS = re.compile(r"^(?:[a-z_]+=<.*?>(?:, )?)+ \| ")


def _describe(error: BaseException, *, verbose: bool) -> str:
    """One line for ``error``; without ``verbose``, without the operation, key and id fields."""
    text = _one_line(error)
    return text if verbose else _INTERNALS.sub("", text, count=1)


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"svsm: error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


@contextmanager
def _exit_codes(settings: "Settings | None" = None) -> Iterator[None]:
    """Turn the package's and the client's exceptions into one line on stderr and an exit code.

    Server errors name the server (``server <url>``, or ``target server`` in a migration) with the
    URL's password hidden; the operation, key and id fields of an error are shown with --verbose.
    """
    verbose = settings is not None and settings.verbose

    def at_server(error: BaseException) -> str:
        where = settings.server_label() if settings is not None else "server"
        return f"{where}: {_describe(error, verbose=verbose)}"

    try:
        try:
            yield
        except Exception as e:
            # The exit chains to this error: its frames (the client's hold the password it sent) keep
            # no locals.
            drop_frame_locals(e)
            raise
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except CliError as e:
        _fail(e.code, str(e))
    except (SessionStoreUnavailableError, AccessDeniedError) as e:
        _fail(EXIT_UNAVAILABLE, at_server(e))
    except (SeedSourceError, ServerError) as e:
        _fail(EXIT_UNAVAILABLE, _describe(e, verbose=verbose))
    except (CorruptRecordError, SessionTooLargeError, SourceRecordError, CodecError) as e:
        # CodecError: a stored record that a bulk read (export) decoded without wrapping the error.
        _fail(EXIT_DATA, _describe(e, verbose=verbose))
    except (valkey.exceptions.ValkeyError, valkey.exceptions.ValkeyClusterException) as e:
        _fail(EXIT_UNAVAILABLE, at_server(e))
    except SessionException as e:
        _fail(EXIT_DATA, _describe(e, verbose=verbose))
    except ValueError as e:
        _fail(EXIT_USAGE, _describe(e, verbose=verbose))
    except OSError as e:
        _fail(EXIT_USAGE, _describe(e, verbose=verbose))


def _guarded(command: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = kwargs.get("ctx")
        settings = ctx.find_object(Settings) if hasattr(ctx, "find_object") else None
        with _exit_codes(settings):
            return command(*args, **kwargs)

    return run


def _not_found(what: str) -> CliError:
    return CliError(EXIT_NOT_FOUND, f"{what} not found")


# -- connection settings ----------------------------------------------------------------------------


@dataclass
class Settings:
    """The global options; the client is made on first use and closed when the command ends."""

    url: str = DEFAULT_URL
    url_given: bool = False
    cluster: bool = False
    prefix: str = DEFAULT_KEY_PREFIX
    timeout: float = 5.0
    verbose: bool = False
    #: How errors name the server of --url: ``server``, or ``target server`` in a migration.
    role: str = "server"
    key_file: Path | None = None
    key_store_dir: Path | None = None
    key_store_url: str | None = None
    _client: Any = None
    _key_store_client: Any = None

    def __repr__(self) -> str:
        return f"Settings(url={redact_url(self.url)!r}, cluster={self.cluster}, prefix={self.prefix!r})"

    def server_label(self) -> str:
        """``server <url>`` (password hidden), as errors name it."""
        return f"{self.role} {redact_url(self.url)}"

    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.url, cluster=self.cluster, timeout=self.timeout)
        return self._client

    def repository(self) -> ValkeySessionRepository:
        return ValkeySessionRepository(self.client(), key_prefix=self.prefix, key_provider=self.key_provider())

    @property
    def has_keys(self) -> bool:
        """Whether a key file or a key store was given (encrypted records can be opened)."""
        return bool(self.key_file or self.key_store_dir or self.key_store_url)

    def key_provider(self) -> Any:
        """The key provider of --key-file, --key-store-dir, --key-store-url (None without them)."""
        local = load_key_file(self.key_file) if self.key_file is not None else None
        store: Any = None
        if self.key_store_dir is not None:
            from ..encryption import FileKeyStore

            if not self.key_store_dir.is_dir():
                raise CliError(EXIT_USAGE, f"key store directory {self.key_store_dir} does not exist")
            store = FileKeyStore(self.key_store_dir)
        elif self.key_store_url is not None:
            from ..encryption import ValkeyKeyStore

            if self._key_store_client is None:
                self._key_store_client = make_client(self.key_store_url, cluster=False, timeout=self.timeout)
            store = ValkeyKeyStore(self._key_store_client)
        if store is None:
            return local
        from ..encryption import KeyStoreProvider

        return KeyStoreProvider(store, legacy=local)

    def close(self) -> None:
        for client in (self._client, self._key_store_client):
            if client is not None:
                client.close()
        self._client = self._key_store_client = None


def load_key_file(path: Path) -> Any:
    """A ``LocalKeyProvider`` from a keys file: JSON ``{"current": "<key id>", "keys": {"<key id>":
    "<base64 of 32 bytes>", ...}}``. Errors name the file and the key id, never key material.

    Raises:
        CliError: If the file cannot be read or is not such a document (usage error).
    """
    from ..encryption import LocalKeyProvider

    def bad(reason: str) -> CliError:
        return CliError(EXIT_USAGE, f"key file {path}: {reason}")

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise bad(getattr(e, "strerror", None) or "not UTF-8 text") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        message = e.msg if isinstance(e, json.JSONDecodeError) else "invalid"
        raise bad(f"not JSON ({message})") from None
    finally:
        del text
    if not isinstance(data, dict) or not isinstance(data.get("current"), str) or not isinstance(data.get("keys"), dict):
        raise bad('expected {"current": "<key id>", "keys": {"<key id>": "<base64 of 32 bytes>"}}')
    keys: dict[str, bytes] = {}
    for key_id, encoded in data["keys"].items():
        try:
            keys[key_id] = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
        except (binascii.Error, ValueError):
            raise bad(f"key {key_id!r} is not base64") from None
        if len(keys[key_id]) != _seal.DATA_KEY_BYTES:
            raise bad(f"key {key_id!r} must be 32 bytes (base64 of 32 random bytes)")
    if data["current"] not in keys:
        raise bad(f"the current key id {data['current']!r} is not among the keys")
    try:
        return LocalKeyProvider(keys, data["current"])
    except ValueError as e:
        raise bad(str(e)) from None


def make_client(url: str, *, cluster: bool, timeout: float) -> Any:
    """A valkey-py client (``decode_responses=True``) with ``timeout`` for connecting and for replies."""
    # Errors name the URL without its password, and hold it nowhere (see _redact.py).
    factory: Any = valkey.cluster.ValkeyCluster.from_url if cluster else valkey.Valkey.from_url
    try:
        return client_from_url(
            factory,
            url,
            unavailable=SessionStoreUnavailableError,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    finally:
        del url  # tracebacks keep this frame: no password among its locals


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.find_object(Settings)
    if settings is None:  # a command invoked without the app's callback (tests calling it directly)
        settings = ctx.ensure_object(Settings)
    return settings


def _print_version(value: bool) -> None:
    if value:
        try:
            found = package_version("strands-valkey-session-manager")
        except PackageNotFoundError:  # pragma: no cover (running from a source tree)
            found = "unknown"
        typer.echo(f"svsm {found}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main(  # noqa: PLR0917 (typer passes every option as a keyword)
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Option(
            "--url",
            metavar="URL",
            envvar=URL_ENVVARS,
            help="Server URL (redis://, rediss://, valkey://, valkeys://, unix://); "
            f"default $VALKEY_URL, then $REDIS_URL, then {DEFAULT_URL}.",
            show_default=False,
        ),
    ] = DEFAULT_URL,
    cluster: Annotated[bool, typer.Option("--cluster", help="Connect as a cluster client.")] = False,
    prefix: Annotated[
        str, typer.Option("--prefix", metavar="PREFIX", help="Key prefix of the sessions.")
    ] = DEFAULT_KEY_PREFIX,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.001, metavar="SECONDS", help="Seconds to wait for a connection or a reply."),
    ] = 5.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Errors also name the operation, session and key that failed.")
    ] = False,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            metavar="FILE",
            envvar="SVSM_KEY_FILE",
            help='Open encrypted sessions with the wrapping keys in FILE: {"current": "<id>", "keys": '
            '{"<id>": "<base64 of 32 bytes>"}} (LocalKeyProvider).',
            show_default=False,
        ),
    ] = None,
    key_store_dir: Annotated[
        Path | None,
        typer.Option(
            "--key-store-dir",
            metavar="DIR",
            envvar="SVSM_KEY_STORE_DIR",
            help="Open encrypted sessions with the data keys in this FileKeyStore directory.",
            show_default=False,
        ),
    ] = None,
    key_store_url: Annotated[
        str | None,
        typer.Option(
            "--key-store-url",
            metavar="URL",
            envvar="SVSM_KEY_STORE_URL",
            help="Open encrypted sessions with the data keys in this ValkeyKeyStore server.",
            show_default=False,
        ),
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Strands sessions in Valkey or Redis.

    Global options may also follow the command: svsm sessions --url URL.
    """
    # typer re-exports click's ParameterSource under different modules across versions: compare names.
    source = ctx.get_parameter_source("url")
    settings = Settings(
        url=url,
        url_given=source is not None and source.name != "DEFAULT",
        cluster=cluster,
        prefix=prefix,
        timeout=timeout,
        verbose=verbose,
        key_file=key_file,
        key_store_dir=key_store_dir,
        key_store_url=key_store_url,
    )
    ctx.obj = settings
    ctx.call_on_close(settings.close)


def _console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        # Piped or captured: print tables at their natural width instead of folding them to 80 columns.
        console.width = 1000
    return console


def _out() -> Console:
    return _console()


def _err() -> Console:
    return _console(stderr=True)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err(),
        transient=True,
    )


# -- sessions ---------------------------------------------------------------------------------------


@app.command("sessions")
@_guarded
def sessions_command(  # noqa: PLR0917 (typer passes every option as a keyword)
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", metavar="USER", help="Only this user's sessions.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", metavar="TAG", help="Only sessions with this tag.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, metavar="N", help="Sessions per page.")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", metavar="CURSOR", help="Next-page cursor printed by the last call.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: sessions and cursor.")] = False,
) -> None:
    """List sessions, newest first, with their agents, messages, times and TTL."""
    if cursor is not None:
        check_cursor(cursor)
    repo = _settings(ctx).repository()
    page = repo.list_sessions(user_id=user, tag=tag, cursor=cursor, limit=limit)
    multi = orchestrator_ids(repo, [i.session_id for i in page.sessions])
    if as_json:
        damaged = [{"session_id": d.session_id, "key": d.key, "reason": d.reason} for d in page.damaged]
        rows = [_render.session_row(i, multi.get(i.session_id, [])) for i in page.sessions]
        typer.echo(json.dumps({"sessions": rows, "cursor": page.cursor, "damaged": damaged}))
        return
    out = _out()
    if page.sessions:
        out.print(_render.sessions_view(page.sessions, width=out.width, orchestrators=multi))
    elif not page.damaged:
        out.print("no sessions")
    _report_damaged(page.damaged)
    if page.cursor is not None:
        out.print(Text(f"next cursor: {page.cursor}"))


def orchestrator_ids(repo: ValkeySessionRepository, session_ids: list[str]) -> dict[str, list[str]]:
    """The Graph/Swarm orchestrator ids stored in each session (one pipelined ``HKEYS`` per
    session, one round trip); a session whose orchestrator key cannot be read counts none."""
    if not session_ids:
        return {}
    client = repo.client
    cluster = isinstance(client, valkey.cluster.ValkeyCluster)
    pipe = client.pipeline() if cluster else client.pipeline(transaction=False)
    for session_id in session_ids:
        pipe.hkeys(repo.session_keys(session_id).multi)
    replies = pipe.execute(raise_on_error=False)
    return {
        session_id: sorted(_codec.text(k) for k in reply) if isinstance(reply, list) else []
        for session_id, reply in zip(session_ids, replies, strict=True)
    }


_CURSOR = re.compile(r"\d{15}:(.+)")


def check_cursor(cursor: str) -> None:
    """Refuse (usage error) a ``--cursor`` that no listing printed: ``<15 digits>:<encoded id>``."""
    match = _CURSOR.fullmatch(cursor)
    try:
        if match is None or encode_id(session_id_of_member(cursor), "session_id") != match.group(1):
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise typer.BadParameter(
            f"{cursor!r} is not a cursor printed by svsm sessions (next cursor: ...)", param_hint="'--cursor'"
        ) from None


def _report_damaged(damaged: list[DamagedSession]) -> None:
    """One stderr line per damaged session met (skipped by listings and prune)."""
    for entry in damaged:
        _err().print(
            Text(f"damaged session {entry.session_id!r}, key {entry.key}: {entry.reason} (svsm delete removes it)")
        )


@app.command("show")
@_guarded
def show_command(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="SESSION_ID", help="Session id.", show_default=False)],
    agent: Annotated[str | None, typer.Option("--agent", metavar="AGENT", help="Only this agent.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, metavar="N", help="Only the last N messages of each agent.")
    ] = None,
) -> None:
    """Show a session's conversation: messages, tool calls and results, agent and conversation-manager state."""
    repo = _settings(ctx).repository()
    info = repo.session_info(session_id)
    session = repo.read_session(session_id)
    if info is None or session is None:
        raise _not_found(f"session {session_id!r}")
    if agent is not None and agent not in info.message_counts:
        raise _not_found(f"agent {agent!r} in session {session_id!r}")
    out = _out()
    out.print(_render.session_header(info, session.session_type.value))
    agent_ids = [agent] if agent is not None else info.agent_ids
    multi_ids = [] if agent is not None else orchestrator_ids(repo, [session_id])[session_id]
    if not agent_ids and not multi_ids:
        out.print(Text("(no agents)", style="dim"))
    sealed = False
    for agent_id in agent_ids:
        stored = info.message_counts[agent_id]
        offset = max(0, stored - limit) if limit is not None else 0
        messages = _messages(repo, session_id, agent_id, offset)
        try:
            record: Any = repo.read_agent(session_id, agent_id)
        except DecryptionError:
            record = _render.SEALED_AGENT
        sealed = sealed or record is _render.SEALED_AGENT or any(isinstance(m, _render.Sealed) for m in messages)
        out.print()
        out.print(_render.agent_header(record, agent_id, len(messages), stored))
        for message in messages:
            out.print(
                _render.sealed_message(message) if isinstance(message, _render.Sealed) else _render.message(message)
            )
    for multi_id in multi_ids:
        try:
            state: Any = repo.read_multi_agent(session_id, multi_id)
        except DecryptionError:
            state = _render.Sealed()
            sealed = True
        if state is not None:
            out.print()
            out.print(_render.orchestrator(multi_id, state))
    if sealed:
        hint = (
            "the keys given do not open them"
            if _settings(ctx).has_keys
            else "pass --key-file, --key-store-dir or --key-store-url to open them"
        )
        _err().print(Text(f"session {session_id!r} holds encrypted records, shown as [encrypted]: {hint}"))


def _messages(
    repo: ValkeySessionRepository, session_id: str, agent_id: str, offset: int
) -> list[SessionMessage | _render.Sealed]:
    """An agent's messages from ``offset``; records that cannot be opened (encrypted, without the
    right key) as :class:`_render.Sealed` in their place instead of failing the whole list."""
    try:
        return list(repo.list_messages(session_id, agent_id, offset=offset))
    except DecryptionError:
        pass
    # Read the stored records as they are (one ZRANGEBYLEX, then HMGETs of 500) and open each alone.
    keys = repo.session_keys(session_id)
    client = repo.client
    low, high = agent_member_range(encode_id(agent_id, "agent_id"))
    members = [_codec.text(m) for m in client.zrangebylex(keys.order, low, high)][offset:]
    shown: list[SessionMessage | _render.Sealed] = []
    for start in range(0, len(members), 500):
        batch = members[start : start + 500]
        for raw in client.hmget(keys.messages, batch):
            if raw is None:
                continue
            shown.append(_open_message(repo, session_id, agent_id, raw))
    return shown


def _open_message(repo: ValkeySessionRepository, session_id: str, agent_id: str, raw: Any) -> Any:
    envelope = _codec.loads(raw)
    if not isinstance(envelope, dict) or _codec.SEALED_MARKER not in envelope:
        return _codec.decode_message(raw)
    placeholder = _render.Sealed(envelope.get("message_id"), envelope.get("created_at"))
    try:
        encrypted = bool(base64.b64decode(envelope[_codec.SEALED_MARKER])[0] & _seal.ENCRYPTED)
    except (binascii.Error, ValueError, TypeError, IndexError):
        encrypted = True
    if encrypted and repo._sealer.key_provider is None:
        return placeholder
    message_id = envelope.get("message_id")
    try:
        opened = repo.read_message(session_id, agent_id, message_id) if isinstance(message_id, int) else None
    except DecryptionError:
        return placeholder
    return opened if opened is not None else placeholder


# -- copies -----------------------------------------------------------------------------------------


@app.command("export")
@_guarded
def export_command(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="SESSION_ID", help="Session id.", show_default=False)],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write a whole session as JSON Lines (the format svsm import reads)."""
    repo = _settings(ctx).repository()
    if repo.read_session(session_id) is None:
        raise _not_found(f"session {session_id!r}")
    text = repo.export_session(session_id)
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output.write_text(text, encoding="utf-8")
    _err().print(Text(f"exported session {session_id} to {output} ({text.count(chr(10))} lines)"))


@app.command("import")
@_guarded
def import_command(
    ctx: typer.Context,
    file: Annotated[
        typer.FileText,
        typer.Argument(metavar="FILE", help="JSON Lines from svsm export; - for stdin.", encoding="utf-8"),
    ],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a session with the same id.")] = False,
    new_id: Annotated[
        str | None,
        typer.Option("--as", metavar="NEW_ID", help="Import under this session id instead of the exported one."),
    ] = None,
) -> None:
    """Write a session from svsm export output."""
    try:
        export = parse_export(file.read())
    except (ValueError, UnicodeDecodeError) as e:
        raise CliError(EXIT_DATA, f"invalid import file {file.name}: {_one_line(e)}") from e
    if new_id is not None:
        try:
            export = renamed_export(export, new_id)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="'--as'") from e
    if not export.checked:
        _err().print(
            Text(
                f"{file.name}: no end line (an export of an earlier version): counts and checksum not checked, "
                "a truncated file would import what it holds"
            )
        )
    repo = _settings(ctx).repository()
    session_id = export.session.session_id
    # Before any delete: a record over the size limit must not cost the existing session.
    check_export_fits(repo, export)
    if not overwrite and repo.read_session(session_id) is not None:
        raise CliError(EXIT_CONFLICT, f"session {session_id!r} already exists; pass --overwrite to replace it")
    # With --overwrite: staged beside the session and swapped in one step (all or nothing).
    repo.write_export(export, overwrite=overwrite)
    _out().print(Text(f"imported session {session_id}: {len(export.agents)} agents, {export.message_count} messages"))


@app.command("fork")
@_guarded
def fork_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE_ID", help="Session to copy.")],
    target: Annotated[str, typer.Argument(metavar="TARGET_ID", help="Id of the copy (must not exist).")],
) -> None:
    """Copy a session, with all its agents, messages and orchestrator state, to a new id."""
    repo = _settings(ctx).repository()
    if repo.read_session(source) is None:
        raise _not_found(f"session {source!r}")
    if repo.read_session(target) is not None:
        raise CliError(EXIT_CONFLICT, f"session {target!r} already exists")
    repo.fork_session(source, target)
    _out().print(Text(f"forked {source} -> {target}"))


# -- deletion ---------------------------------------------------------------------------------------


@app.command("delete")
@_guarded
def delete_command(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="SESSION_ID", help="Session id.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a session with everything in it (asks first unless --yes)."""
    repo = _settings(ctx).repository()
    try:
        info = repo.session_info(session_id)
        what = f"({len(info.message_counts)} agents, {info.message_count} messages)" if info is not None else ""
    except DamagedSessionError as e:
        info, what = None, "(damaged)"
        _err().print(Text(f"session {session_id!r} is damaged: {_one_line(e)}"))
    if info is None and not what:
        raise _not_found(f"session {session_id!r}")
    if not yes:
        typer.confirm(f"Delete session {session_id!r} {what}?", abort=True, err=True)
    repo.delete_session(session_id)
    _out().print(Text(f"deleted session {session_id}"))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` or a combination such as ``1d12h``.

    Raises:
        ValueError: If the text is not such a duration, or is zero.
    """
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 12h, 30d or 1d12h")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


_PREVIEW = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def delete_if_idle(repo: ValkeySessionRepository, info: SessionInfo, *, cutoff_ms: int) -> bool:
    """Delete a listed session only if it is still idle since before ``cutoff_ms`` and still the
    session listed, in one atomic step (what ``repository.prune`` does per session); True when
    deleted. A write after the listing keeps the session."""
    return bool(run_plan(repo._db, catalog.p_delete_idle(repo, info, cutoff_ms)))


def _stale_sessions(
    repo: ValkeySessionRepository, user: str | None, tag: str | None, cutoff_ms: int
) -> tuple[list[SessionInfo], list[DamagedSession]]:
    """The listed sessions (of ``user``, with ``tag``) last written before ``cutoff_ms``."""
    stale: list[SessionInfo] = []
    damaged: list[DamagedSession] = []
    with _progress() as progress:
        task = progress.add_task("scanning the catalog", total=None)
        cursor: str | None = None
        while True:
            page: SessionPage = repo.list_sessions(user_id=user, tag=tag, cursor=cursor, limit=200)
            progress.advance(task, len(page.sessions))
            stale.extend(info for info in page.sessions if _ms(info.updated_at) < cutoff_ms)
            damaged.extend(page.damaged)
            if page.cursor is None:
                return stale, damaged
            cursor = page.cursor


def _preview(console: Console, stale: list[SessionInfo]) -> None:
    """The first few sessions of a long list, and how many more there are."""
    console.print(_render.sessions_view(stale[:_PREVIEW], width=console.width))
    if len(stale) > _PREVIEW:
        console.print(Text(f"... and {len(stale) - _PREVIEW} more", style="dim"))


@app.command("prune")
@_guarded
def prune_command(  # noqa: PLR0917 (typer passes every option as a keyword)
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", metavar="DURATION", help="Idle time: 90s, 15m, 12h, 30d, 2w (or 1d12h).", show_default=False
        ),
    ],
    user: Annotated[str | None, typer.Option("--user", metavar="USER", help="Only this user's sessions.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", metavar="TAG", help="Only sessions with this tag.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --dry-run: every session that would be deleted, as JSON.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every session whose last write is older than --older-than (of --user, with --tag).

    Shows how many and the first few, then asks (unless --yes). Each delete checks again, in one
    atomic step, that the session is still idle: a session written meanwhile is kept.
    """
    try:
        seconds = parse_duration(older_than)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="'--older-than'") from e
    if as_json and not dry_run:
        raise typer.BadParameter("--json lists what would be deleted: use it with --dry-run", param_hint="'--json'")
    repo = _settings(ctx).repository()
    if not dry_run:
        repo.sweep_catalog()  # entries of expired sessions first, as repository.prune does
    cutoff = now_ms() - round(seconds * 1000)
    stale, damaged = _stale_sessions(repo, user, tag, cutoff)
    _report_damaged(damaged)
    which = (
        f"idle for more than {older_than}" + (f" of user {user}" if user else "") + (f" tagged {tag}" if tag else "")
    )
    if as_json:
        typer.echo(json.dumps({"sessions": [_render.session_row(i) for i in stale]}))
        return
    if not stale:
        _out().print(Text(f"nothing to prune: no session {which}"))
        raise typer.Exit(EXIT_NOT_FOUND)
    if dry_run:
        out = _out()
        _preview(out, stale)
        out.print(Text(f"would delete {len(stale)} sessions {which}"))
        return
    if not yes:
        err = _err()
        _preview(err, stale)
        typer.confirm(f"Delete these {len(stale)} sessions {which}?", abort=True, err=True)
    count = 0
    with _progress() as progress:
        task = progress.add_task("deleting", total=len(stale))
        for info in stale:
            count += delete_if_idle(repo, info, cutoff_ms=cutoff)
            progress.advance(task)
    kept = f" ({len(stale) - count} written meanwhile or gone, kept)" if count < len(stale) else ""
    _out().print(Text(f"deleted {count} sessions {which}{kept}"))


# -- migrations -------------------------------------------------------------------------------------


def _run_migration(what: str, migrate: Callable[[Callable[[MigrationProgress], None]], MigrationReport]) -> None:
    with _progress() as progress:
        task = progress.add_task(what, total=None)

        def step(event: MigrationProgress) -> None:
            progress.update(task, total=event.total, completed=event.done)

        report = migrate(step)
    out = _out()
    for line in _render.migration_summary(report):
        out.print(line)
    if report.failures:
        raise typer.Exit(EXIT_DATA)
    if report.sessions_found == 0:  # nothing to migrate; everything already migrated is success
        raise typer.Exit(EXIT_NOT_FOUND)


@migrate_app.command("seed")
@_guarded
def migrate_seed_command(
    ctx: typer.Context,
    source_url: Annotated[
        str,
        typer.Option(
            "--source-url", metavar="URL", help="Server holding the old session:<id> keys.", show_default=False
        ),
    ],
    source_cluster: Annotated[bool, typer.Option("--source-cluster", help="The source is a cluster.")] = False,
    session: Annotated[
        list[str] | None, typer.Option("--session", metavar="ID", help="Only this session (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and compare only; write nothing.")] = False,
) -> None:
    """Copy sessions from the original package's layout (session:<id> JSON documents; needs the JSON module).

    Walks the source's keyspace once with SCAN MATCH session:*. Sessions already complete in the target
    are skipped, partial copies from an interrupted run are rewritten.
    """
    settings = _settings(ctx)
    settings.role = "target server"
    target = settings.repository()
    source = make_client(source_url, cluster=source_cluster, timeout=settings.timeout)
    try:
        _run_migration(
            "migrating",
            lambda step: migrate_from_seed(source, target, session_ids=session, dry_run=dry_run, on_session=step),
        )
    except (valkey.exceptions.ValkeyError, valkey.exceptions.ValkeyClusterException, SeedSourceError) as e:
        # The target's errors are the package's own; the source client's are the client library's.
        where = f"source server {redact_url(source_url)}"
        raise CliError(EXIT_UNAVAILABLE, f"{where}: {_describe(e, verbose=settings.verbose)}") from None
    finally:
        source.close()


@migrate_app.command("files")
@_guarded
def migrate_files_command(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIRECTORY",
            help="The FileSessionManager storage_dir.",
            exists=True,
            file_okay=False,
            dir_okay=True,
        ),
    ],
    session: Annotated[
        list[str] | None, typer.Option("--session", metavar="ID", help="Only this session (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and compare only; write nothing.")] = False,
) -> None:
    """Copy sessions from a FileSessionManager directory (session_<id>/...).

    Sessions already complete in the target are skipped, partial copies from an interrupted run are
    rewritten.
    """
    settings = _settings(ctx)
    settings.role = "target server"
    target = settings.repository()
    _run_migration(
        "migrating",
        lambda step: migrate_from_file_store(directory, target, session_ids=session, dry_run=dry_run, on_session=step),
    )


@migrate_app.command("snapshots")
@_guarded
def migrate_snapshots_command(  # noqa: PLR0917 (typer passes every option as a keyword)
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="SESSION_ID", help="The message-log session to convert.")],
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from-dir",
            metavar="DIR",
            help="Read the session from this FileSessionManager storage_dir instead of the server.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    target_session: Annotated[
        str | None,
        typer.Option("--target-session", metavar="ID", help="SnapshotSessionManager session id (default: the same)."),
    ] = None,
    agent: Annotated[
        list[str] | None, typer.Option("--agent", metavar="AGENT", help="Only this agent (repeatable).")
    ] = None,
    namespace: Annotated[
        str, typer.Option("--storage-namespace", metavar="NAME", help="The ValkeyStorage namespace of the snapshots.")
    ] = "strands",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and compare only; write nothing.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace snapshots that differ from the source.")
    ] = False,
) -> None:
    """Write a message-log session as SnapshotSessionManager snapshots in a ValkeyStorage on the server.

    Agents restored from the snapshots hold the same messages and state as from the message log.
    Idempotent: snapshots already there unchanged are not written again (exit 0); snapshots that
    differ are conflicts (exit 5) unless --overwrite.
    """
    from ..migration import SnapshotMigrationError, SourceNotFoundError, migrate_to_snapshots
    from ..storage import ValkeyStorage

    settings = _settings(ctx)
    storage = ValkeyStorage(settings.client(), namespace=namespace)
    source: Any = from_dir if from_dir is not None else settings.repository()
    try:
        report = migrate_to_snapshots(
            source,
            storage,
            session_id,
            agent_ids=agent,
            target_session_id=target_session,
            dry_run=dry_run,
            overwrite=overwrite,
        )
    except SourceNotFoundError as e:
        raise CliError(EXIT_NOT_FOUND, _describe(e, verbose=settings.verbose)) from None
    except SnapshotMigrationError as e:
        raise CliError(EXIT_DATA, _describe(e, verbose=settings.verbose)) from None
    _out().print(Text(report.summary()))
    if report.conflicts:
        raise typer.Exit(EXIT_CONFLICT)


# -- the server -------------------------------------------------------------------------------------

_STATUS_STYLE = {"ok": "green", "warn": "yellow", "error": "bold red", "skip": "dim"}


@app.command("doctor")
@_guarded
def doctor_command(ctx: typer.Context) -> None:
    """Check the server for this package: version, cluster, persistence, eviction policy, ACL, latency.

    Exit code 0 when all is well, 1 with warnings, 2 with errors (3 when the server cannot be reached).
    """
    settings = _settings(ctx)
    client = settings.client()
    repo = settings.repository()

    def sample_ttls(n: int) -> list[float | None]:
        return [info.expires_in for info in repo.list_sessions(limit=n).sessions]

    checks = _doctor.run_checks(client, key_prefix=settings.prefix, cluster=settings.cluster, sample_ttls=sample_ttls)
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(check.name, Text(check.status, style=_STATUS_STYLE[check.status]), Text(check.detail))
    out = _out()
    out.print(Text(f"server {redact_url(settings.url)}", style="bold"))
    out.print(table)
    raise typer.Exit(_doctor.exit_code(checks))


class Flavour(str, Enum):
    """Embedded server flavours (see ``servers.py``)."""

    valkey9 = "valkey9"
    valkey8 = "valkey8"
    redis7 = "redis7"


@app.command("server")
@_guarded
def server_command(
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, metavar="PORT", help="Port (default: a free one).")
    ] = None,
    flavour: Annotated[Flavour, typer.Option("--flavour", help="Which server binary.")] = Flavour.valkey9,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Keep the data in DIR (append-only file, fsync always) and load it again at the next start; "
            "without it the data lives in memory only and is gone when the server stops.",
        ),
    ] = None,
) -> None:
    """Start an embedded server on 127.0.0.1 for local use; prints its URL, stops on Ctrl-C."""
    from ..servers import start_server

    server = start_server(flavour.value, port=port, appendonly=data_dir is not None, data_dir=data_dir)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT explicitly too: a shell starts background jobs with SIGINT ignored, and Python then
    # never raises KeyboardInterrupt.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        typer.echo(server.url)
        _err().print(f"{flavour.value} (pid {server.pid}) listening; Ctrl-C to stop")
        while server.is_running():
            time.sleep(0.2)
        raise CliError(EXIT_UNAVAILABLE, f"the server exited: {server.log_tail(5)}")
    except KeyboardInterrupt:
        _err().print("stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()


@app.command("ui")
@_guarded
def ui_command(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="HOST",
            help="Interface to bind (loopback by default; 0.0.0.0 for every interface, as in a container: "
            "requests must still name a loopback host or an --allowed-host).",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, metavar="PORT", help="Port.")] = 8765,
    allow_delete: Annotated[
        bool, typer.Option("--allow-delete", help="Allow deleting sessions from the page.")
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="HOST",
            help="Also answer requests addressed to HOST (a name the viewer is reached by, *.<domain>, or "
            "an IP address; repeatable). Loopback names are always answered, other names never, even "
            "with --host 0.0.0.0.",
        ),
    ] = None,
) -> None:
    """Serve a local web viewer of the sessions (needs the ui extra); Ctrl-C to stop."""
    try:
        from .viewer import serve
    except ImportError as e:
        raise CliError(
            EXIT_USAGE, f"svsm ui needs the ui extra: pip install 'strands-valkey-session-manager[ui]' ({e})"
        ) from e
    from .viewer.server import check_allowed_host

    for name in allowed_host or ():
        try:
            check_allowed_host(name)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="'--allowed-host'") from None
    settings = _settings(ctx)
    serve(
        settings.url,
        cluster=settings.cluster,
        prefix=settings.prefix,
        host=host,
        port=port,
        allow_delete=allow_delete,
        timeout=settings.timeout,
        allowed_hosts=list(allowed_host or ()),
    )


@app.command("demo")
@_guarded
def demo_command(ctx: typer.Context) -> None:
    """Run the README demo: a conversation that survives a process restart (scripted model, offline).

    Uses --url when given (or $VALKEY_URL/$REDIS_URL), else starts an embedded Valkey.
    """
    from .. import demo

    settings = _settings(ctx)
    argv = ["--url", settings.url] if settings.url_given else []
    try:
        code = demo.main(argv)
    except subprocess.CalledProcessError as e:
        raise CliError(EXIT_UNAVAILABLE, f"the demo failed (exit code {e.returncode})") from e
    raise typer.Exit(code)


for _typer in (app, migrate_app):
    for _info in _typer.registered_commands:
        if _info.cls in (None, TyperCommand):
            _info.cls = _Command
