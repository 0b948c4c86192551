"""No secret leaks: canary passwords, wrapping keys and data keys through every error path we can reach.

The canaries are a URL password holding ``/?#@:%`` (each 5-character run distinctive, so that a
fragment cut out by a URL parser is caught too), a second password for the server's default user,
a wrapping key and the data keys a key provider wraps. For each failure (bad URL, wrong password,
unreachable server, undecryptable record, key provider failing) of the session manager, the
repositories (sync and asyncio), ``ValkeyStorage``, the ``svsm`` CLI and the web viewer, nothing a
caller or an operator can see holds them: output (stdout, stderr), log records at DEBUG, the
exception's text, ``repr`` and ``args``, its chained ``__cause__``/``__context__``, and the locals
of the frames its traceback keeps (``traceback.TracebackException(..., capture_locals=True)``, as
error reporters capture them). Frames of this test module, which holds the canaries by design, and
of click (whose frames hold the command line the user typed) are not searched.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import valkey
import valkey.asyncio
from starlette.testclient import TestClient
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType
from typer.testing import CliRunner

from strands_valkey_session_manager import (
    AccessDeniedError,
    SessionStoreUnavailableError,
    ValkeySessionManager,
    ValkeySessionRepository,
)
from strands_valkey_session_manager.aio import AsyncValkeySessionRepository
from strands_valkey_session_manager.cli.command import app as cli_app
from strands_valkey_session_manager.encryption import LocalKeyProvider
from strands_valkey_session_manager.storage import ValkeyStorage, ValkeyStorageError
from tests.servers import ServerProcess, free_port, start_server

#: The ACL user's password: every URL-special character, each 5-character run distinctive.
PASSWORD = "Kx9Qp/Wm7Zr?Jt4Ns#Vb8Yd@Ln2Ff:Hc6Gg%zzRw5Tq"
#: A wrong password given for the same user (what a typo or an old secret would be).
WRONG_PASSWORD = "Pd3Lk/Xe8Mv?Qa2Wc#Zn6Ry@Bt9Hs:Fj4Ku%zzGm7Np"
#: The default user's password (``requirepass``).
SERVER_PASSWORD = "Sv2Jq/Cy5Lo?Ew8Ui#Ta3Kd@Nf6Mh%Xb"
#: A wrapping key.
WRAPPING_KEY = bytes(range(101, 133))
USER = "canary"
HOST = "127.0.0.1"
HERE = str(Path(__file__).resolve())


def _forms(secret: str | bytes) -> list[str]:
    """The ways a secret shows in text: whole (raw, percent-encoded, repr, hex, base64) and 5-char runs."""
    if isinstance(secret, bytes):
        return [repr(secret)[2:-1], secret.hex(), base64.b64encode(secret).decode(), secret.decode("latin-1")]
    runs = [secret[i : i + 5] for i in range(len(secret) - 4)]
    return [secret, quote(secret, safe=""), repr(secret)[1:-1], *runs]


CANARY_TEXTS: list[str] = [
    form for s in (PASSWORD, WRONG_PASSWORD, SERVER_PASSWORD, WRAPPING_KEY) for form in _forms(s)
]


def _found(text: str, extra: list[bytes] = ()) -> list[str]:  # type: ignore[assignment]
    forms = CANARY_TEXTS + [form for key in extra for form in _forms(key)]
    return [form for form in forms if form and form in text]


def _excluded(filename: str) -> bool:
    return filename == HERE or "/click/" in filename or "/typer/" in filename or "/_pytest/" in filename


def _exception_texts(error: BaseException) -> list[str]:
    """Everything about ``error`` and its chain that a log, a report or a debugger shows."""
    texts: list[str] = []
    seen: set[int] = set()

    def visit(e: BaseException | None) -> None:
        if e is None or id(e) in seen:
            return
        seen.add(id(e))
        texts.extend([str(e), repr(e), repr(e.args), *map(str, e.args), repr(getattr(e, "__notes__", None))])
        texts.extend(repr(value) for value in vars(e).values()) if hasattr(e, "__dict__") else None
        visit(e.__cause__)
        visit(e.__context__)
        for inner in getattr(e, "exceptions", ()):
            visit(inner)

    visit(error)
    pending = [traceback.TracebackException(type(error), error, error.__traceback__, capture_locals=True)]
    while pending:
        summary = pending.pop()
        texts.extend(summary.format_exception_only())
        for frame in summary.stack:
            if not _excluded(frame.filename):
                texts.extend(
                    f"{frame.filename}:{frame.name}: {name}={value}" for name, value in (frame.locals or {}).items()
                )
        pending.extend(s for s in (summary.__cause__, summary.__context__) if s is not None)
        pending.extend(getattr(summary, "exceptions", None) or ())
    return texts


def assert_no_secret(error: BaseException | None = None, *texts: str, extra: list[bytes] = ()) -> None:  # type: ignore[assignment]
    """No canary in ``error`` (text, repr, args, chain, captured locals) nor in ``texts``."""
    everything = list(texts) + (_exception_texts(error) if error is not None else [])
    leaks = [(form, text[:300]) for text in everything for form in _found(text, extra)]
    assert not leaks, leaks


def raised(call: Callable[[], object]) -> BaseException:
    """The exception ``call`` raises (it must raise)."""
    try:
        call()
    except Exception as e:
        return e
    raise AssertionError("no exception")


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at DEBUG; none may hold a canary."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    for record in caplog.records:
        text = record.getMessage() + (
            "".join(traceback.format_exception(*record.exc_info)) if record.exc_info and record.exc_info[0] else ""
        )
        assert_no_secret(None, text, repr(record.args))


# -- servers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked_server() -> Iterator[ServerProcess]:
    """A Valkey 9 whose default user needs ``SERVER_PASSWORD`` and with a user ``canary`` (``PASSWORD``)."""
    server = start_server("valkey9")
    try:
        admin: Any = valkey.Valkey(HOST, server.port)
        admin.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{PASSWORD}", "~*", "&*", "+@all")
        admin.config_set("requirepass", SERVER_PASSWORD)
        admin.close()
        yield server
    finally:
        server.stop()


def url_for(server: ServerProcess | None, password: str, *, encoded: bool = True, user: str = USER) -> str:
    port = server.port if server is not None else free_port()
    return f"valkey://{user}:{quote(password, safe='') if encoded else password}@{HOST}:{port}"


def test_the_canary_user_can_connect(locked_server: ServerProcess) -> None:
    """The fixture is what the other tests assume: the right password works, a wrong one does not."""
    good: Any = valkey.Valkey.from_url(url_for(locked_server, PASSWORD))
    assert good.ping() is True
    good.close()
    with pytest.raises(valkey.exceptions.AuthenticationError):
        valkey.Valkey.from_url(url_for(locked_server, WRONG_PASSWORD)).ping()


# -- URLs ------------------------------------------------------------------------------------------


def _url_entry_points() -> dict[str, Callable[[str], object]]:
    from strands_valkey_session_manager.cli.viewer import serve

    def manager(url: str) -> object:
        return ValkeySessionManager.from_url(url, "s", socket_connect_timeout=0.5, socket_timeout=0.5)

    def manager_cluster(url: str) -> object:
        return ValkeySessionManager.from_url(url, "s", cluster=True, socket_connect_timeout=0.5)

    def storage(url: str) -> object:
        return asyncio.run(ValkeyStorage.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).read("k"))

    def storage_cluster(url: str) -> object:
        return ValkeyStorage.from_url(url, cluster=True, socket_connect_timeout=0.5)

    def viewer(url: str) -> object:
        serve(url, cluster=False, prefix="strands", host=HOST, port=free_port(), timeout=0.5)
        return None

    def viewer_cluster(url: str) -> object:
        serve(url, cluster=True, prefix="strands", host=HOST, port=free_port(), timeout=0.5)
        return None

    return {
        "manager": manager,
        "manager-cluster": manager_cluster,
        "storage": storage,
        "storage-cluster": storage_cluster,
        "viewer": viewer,
        "viewer-cluster": viewer_cluster,
    }


ENTRY_POINTS = list(_url_entry_points())


@pytest.fixture(autouse=True)
def no_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` must fail before uvicorn starts."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("started listening"))


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unencoded_password_is_a_clear_error_naming_the_redacted_url(entry: str) -> None:
    url = url_for(None, PASSWORD, encoded=False)
    error = raised(lambda: _url_entry_points()[entry](url))
    assert isinstance(error, ValueError), repr(error)
    assert f"valkey://{USER}:***@" in str(error)
    assert "percent-encode" in str(error)
    assert error.__cause__ is None and error.__context__ is None
    assert_no_secret(error)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    "template",
    [
        "valkey://{user}:{password}@127.0.0.1:notaport",
        "valkey://{user}:{password}@127.0.0.1:6379/0?db=nine",
        "ftp://{user}:{password}@127.0.0.1:6379",
        "valkey://{user}:{password}@[::1:6379",
    ],
    ids=["port", "db", "scheme", "ipv6"],
)
def test_malformed_urls_hold_no_password(entry: str, template: str) -> None:
    url = template.format(user=USER, password=quote(PASSWORD, safe=""))
    error = raised(lambda: _url_entry_points()[entry](url))
    assert isinstance(error, ValueError), repr(error)
    assert_no_secret(error)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unreachable_server_holds_no_password(entry: str) -> None:
    url = url_for(None, PASSWORD)
    error = raised(lambda: _url_entry_points()[entry](url))
    assert isinstance(error, SessionStoreUnavailableError), repr(error)
    assert_no_secret(error)


@pytest.mark.parametrize("entry", [e for e in ENTRY_POINTS if "cluster" not in e])
def test_a_wrong_password_holds_no_password(entry: str, locked_server: ServerProcess) -> None:
    url = url_for(locked_server, WRONG_PASSWORD)
    error = raised(lambda: _url_entry_points()[entry](url))
    assert isinstance(error, (AccessDeniedError, SessionStoreUnavailableError, ValkeyStorageError)), repr(error)
    assert_no_secret(error)


@pytest.mark.parametrize("entry", ["storage-cluster", "manager-cluster", "viewer-cluster"])
def test_a_cluster_client_on_a_server_with_a_wrong_password_holds_no_password(
    entry: str, locked_server: ServerProcess
) -> None:
    url = url_for(locked_server, WRONG_PASSWORD)
    error = raised(lambda: _url_entry_points()[entry](url))
    assert isinstance(error, SessionStoreUnavailableError), repr(error)
    assert_no_secret(error)


def test_the_right_password_from_a_percent_encoded_url_works(locked_server: ServerProcess) -> None:
    manager = ValkeySessionManager.from_url(url_for(locked_server, PASSWORD), "s")
    try:
        assert manager.read_session("s") is not None
        assert_no_secret(None, repr(manager), repr(manager.client))
    finally:
        manager.delete_session("s")
        manager.close()
    storage = ValkeyStorage.from_url(url_for(locked_server, PASSWORD))
    try:
        asyncio.run(storage.write("k", b"v"))
        assert asyncio.run(storage.read("k")) == b"v"
        assert_no_secret(None, repr(storage))
    finally:
        asyncio.run(storage.delete("k"))
        storage.close()


# -- the CLI ---------------------------------------------------------------------------------------


def _svsm(*args: str) -> Any:
    """``svsm <args>`` in process, stderr apart; the result after checking its exception chain."""
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(cli_app, list(args))
    assert_no_secret(result.exception, result.stdout, result.stderr)
    return result


CLI_COMMANDS = [
    ("sessions",),
    ("show", "s"),
    ("doctor",),
    ("prune", "--older-than", "1d", "--dry-run"),
    ("export", "s"),
    ("ui",),
]


@pytest.mark.parametrize("command", CLI_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("cluster", [False, True], ids=["standalone", "cluster"])
def test_cli_with_an_unencoded_password_says_how_to_fix_the_url(command: tuple[str, ...], cluster: bool) -> None:
    url = url_for(None, PASSWORD, encoded=False)
    result = _svsm("--url", url, "--timeout", "0.5", *(("--cluster",) if cluster else ()), *command)
    assert result.exit_code == 2, result.output
    assert f"valkey://{USER}:***@" in result.stderr and "percent-encode" in result.stderr


@pytest.mark.parametrize("command", CLI_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("cluster", [False, True], ids=["standalone", "cluster"])
def test_cli_with_an_unreachable_server(command: tuple[str, ...], cluster: bool) -> None:
    url = url_for(None, PASSWORD)
    result = _svsm("--url", url, "--timeout", "0.5", *(("--cluster",) if cluster else ()), *command)
    assert result.exit_code == 3, result.output
    assert "svsm: error:" in result.stderr


@pytest.mark.parametrize("command", CLI_COMMANDS, ids=lambda c: c[0])
def test_cli_with_a_wrong_password(command: tuple[str, ...], locked_server: ServerProcess) -> None:
    result = _svsm("--url", url_for(locked_server, WRONG_PASSWORD), "--timeout", "2", *command)
    assert result.exit_code == 3, result.output
    assert "svsm: error:" in result.stderr


def test_cli_doctor_names_the_server_without_its_password(locked_server: ServerProcess) -> None:
    result = _svsm("--url", url_for(locked_server, PASSWORD), "doctor")
    assert f"server valkey://{USER}:***@{HOST}:{locked_server.port}" in result.stdout


def test_the_installed_command_with_a_bad_url_prints_one_clean_line() -> None:
    import subprocess
    import sys

    svsm = Path(sys.executable).with_name("svsm")
    command = [str(svsm)] if svsm.exists() else [sys.executable, "-m", "strands_valkey_session_manager._svsm"]
    for url in (url_for(None, PASSWORD, encoded=False), url_for(None, PASSWORD)):
        done = subprocess.run(
            [*command, "--timeout", "0.5", "sessions"],
            capture_output=True,
            text=True,
            env={"VALKEY_URL": url, "PATH": "/usr/bin:/bin"},
            timeout=60,
            check=False,
        )
        assert done.returncode in (2, 3), done.stderr
        assert done.stderr.startswith("svsm: error:") and "Traceback" not in done.stderr
        assert_no_secret(None, done.stdout, done.stderr)


# -- the viewer ------------------------------------------------------------------------------------


def test_viewer_error_pages_hold_no_password(locked_server: ServerProcess) -> None:
    from strands_valkey_session_manager.cli.viewer import create_app

    for password in (WRONG_PASSWORD, PASSWORD):
        client: Any = valkey.Valkey.from_url(url_for(locked_server, password), socket_timeout=2)
        storage = ValkeyStorage(client)
        app = create_app(ValkeySessionRepository(client), storage=storage, allow_delete=True)
        with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as http:
            for path in ("/", "/sessions/s", "/sessions/s/agents/a", "/sessions/s/export", "/sessions/s/delete"):
                response = http.get(path)
                assert_no_secret(None, response.text, repr(response.headers))
                if password == WRONG_PASSWORD:
                    assert response.status_code in (403, 503), (path, response.status_code)
        client.close()


# -- repositories, sync and asyncio ----------------------------------------------------------------


def _session() -> Session:
    return Session(session_id="s", session_type=SessionType.AGENT)


def test_repository_errors_with_a_wrong_password(locked_server: ServerProcess) -> None:
    client: Any = valkey.Valkey.from_url(url_for(locked_server, WRONG_PASSWORD))
    repo = ValkeySessionRepository(client)
    calls: list[Callable[[], object]] = [
        lambda: repo.create_session(_session()),
        lambda: repo.read_session("s"),
        lambda: repo.list_messages("s", "a"),
        repo.list_sessions,
        lambda: repo.delete_session("s"),
        lambda: repo.export_session("s"),
    ]
    try:
        for call in calls:
            error = raised(call)
            assert isinstance(error, (AccessDeniedError, SessionStoreUnavailableError)), repr(error)
            assert_no_secret(error)
    finally:
        client.close()


def test_asyncio_repository_errors_with_a_wrong_password(locked_server: ServerProcess) -> None:
    async def run() -> list[BaseException]:
        client: Any = valkey.asyncio.Valkey.from_url(url_for(locked_server, WRONG_PASSWORD))
        repo = AsyncValkeySessionRepository(client)
        errors: list[BaseException] = []
        for call in (
            lambda: repo.create_session(_session()),
            lambda: repo.read_session("s"),
            lambda: repo.list_messages("s", "a"),
        ):
            try:
                await call()
            except Exception as e:
                errors.append(e)
        await client.aclose()
        return errors

    errors = asyncio.run(run())
    assert len(errors) == 3
    for error in errors:
        assert isinstance(error, (AccessDeniedError, SessionStoreUnavailableError)), repr(error)
        assert_no_secret(error)


def test_storage_errors_with_a_wrong_password(locked_server: ServerProcess) -> None:
    storage = ValkeyStorage.from_url(url_for(locked_server, WRONG_PASSWORD))
    try:
        for call in (
            lambda: asyncio.run(storage.read("k")),
            lambda: asyncio.run(storage.write("k", b"v")),
            lambda: asyncio.run(storage.list("")),
            lambda: asyncio.run(storage.delete("k")),
        ):
            error = raised(call)
            assert isinstance(error, ValkeyStorageError), repr(error)
            assert_no_secret(error)
    finally:
        storage.close()


# -- keys ------------------------------------------------------------------------------------------


class _RecordingProvider(LocalKeyProvider):
    """A ``LocalKeyProvider`` that remembers the data keys it wraps (the canaries)."""

    def __init__(self, keys: dict[str, bytes], current: str, *, failing: bool = False) -> None:
        super().__init__(keys, current)
        self.data_keys: list[bytes] = []
        self.failing = failing

    def wrap(self, data_key: bytes, context: dict[str, str]) -> bytes:
        self.data_keys.append(bytes(data_key))
        if self.failing:
            raise RuntimeError("the key service is down")
        return super().wrap(data_key, context)


def test_key_material_stays_out_of_errors_and_reprs(standalone_client: Any) -> None:
    from strands_valkey_session_manager._seal import DataKey

    provider = _RecordingProvider({"k1": WRAPPING_KEY}, "k1")
    writer = ValkeySessionRepository(standalone_client, key_provider=provider)
    writer.create_session(_session())
    writer.create_agent("s", SessionAgent(agent_id="a", state={"x": 1}, conversation_manager_state={}))
    writer.create_message("s", "a", SessionMessage(message={"role": "user", "content": [{"text": "hi"}]}, message_id=0))
    (data_key,) = provider.data_keys
    keys = [WRAPPING_KEY, data_key]
    assert_no_secret(None, repr(provider), repr(writer), repr(DataKey(wrapped=b"w", key=data_key)), extra=keys)

    other = LocalKeyProvider({"k1": bytes(32)}, "k1")  # the same key id, another key: unwrapping fails
    for reader in (
        ValkeySessionRepository(standalone_client, key_provider=other),
        ValkeySessionRepository(standalone_client),
    ):
        for call in (functools.partial(reader.read_agent, "s", "a"), functools.partial(reader.list_messages, "s", "a")):
            assert_no_secret(raised(call), extra=keys)

    failing = _RecordingProvider({"k1": WRAPPING_KEY}, "k1", failing=True)
    error = raised(
        lambda: ValkeySessionRepository(standalone_client, key_provider=failing).create_session(
            Session(session_id="t", session_type=SessionType.AGENT)
        )
    )
    assert_no_secret(error, extra=[WRAPPING_KEY, *failing.data_keys])


def test_svsm_demo_keeps_the_password_off_child_command_lines(locked_server: ServerProcess) -> None:
    """The demo's two processes get the URL from the environment: a command line is public (``ps``),
    and a failed child's ``CalledProcessError`` names its command."""
    import subprocess
    import sys

    svsm = Path(sys.executable).with_name("svsm")
    done = subprocess.run(
        [str(svsm), "--url", url_for(locked_server, WRONG_PASSWORD), "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert_no_secret(None, done.stdout, done.stderr)
    result = _svsm("--url", url_for(locked_server, WRONG_PASSWORD), "demo")
    assert result.exit_code == 3


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("valkey://user:pw@host:6379/0", "valkey://user:***@host:6379/0"),
        ("rediss://:pw@host", "rediss://:***@host"),
        ("valkey://user@host", "valkey://user@host"),
        ("valkey://host:6379", "valkey://host:6379"),
        (f"valkey://u:{PASSWORD}@host:1", "valkey://u:***@host:1"),
        ("valkey://host?password=pw&db=1", "valkey://host?password=***&db=1"),
        ("unix://:pw@/tmp/valkey.sock?db=0", "unix://:***@/tmp/valkey.sock?db=0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    from strands_valkey_session_manager._redact import redact_url

    assert redact_url(url) == shown
