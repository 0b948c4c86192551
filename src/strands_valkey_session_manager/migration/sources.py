"""Where migrations read sessions from: the original package's layout and ``FileSessionManager`` directories.

Two sources are read:

* **the original package's layout** (``strands-valkey-session-manager`` 0.1, RedisJSON values)::

      session:<session id>                                        Session.to_dict()
      session:<session id>:agent:<agent id>                       SessionAgent.to_dict()
      session:<session id>:agent:<agent id>:message:<message id>  SessionMessage.to_dict()

  The values are JSON documents of the JSON module (RedisJSON / valkey-json), read with
  ``JSON.GET <key>``: the source server must have the module loaded. Sessions are discovered with
  ``SCAN MATCH session:*``, which walks the source's whole keyspace once. That is acceptable for a
  one-off migration (it is how the old package itself listed messages) and it is the only place in
  this package that scans; normal operation never does.

  Keys are parsed exactly, by splitting on ``:``. The old package refused ``:`` in session and agent
  ids (``ValueError`` in its key builders), so a key of the old layout has exactly 2, 4 or 6
  components, with ``agent`` and ``message`` at fixed places and an integer message id. Any other key
  under ``session:`` (written by something else, or by a hand-made id holding ``:``) is counted as
  unrecognised and left alone, rather than guessed at.

* **the SDK's** ``FileSessionManager`` **directory**::

      session_<session id>/session.json
      session_<session id>/agents/agent_<agent id>/agent.json
      session_<session id>/agents/agent_<agent id>/messages/message_<message id>.json
      session_<session id>/multi_agents/multi_agent_<id>/multi_agent.json

  Symlinks are refused, as the SDK itself refuses them.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from strands.types.session import Session, SessionMessage, SessionType

from .. import _codec
from ..exceptions import (
    SeedSourceError,
    SourceRecordError,
)
from ..transfer import SessionExport
from .report import MigrationReport

#: Keys the old layout keeps under this first component.
SEED_PREFIX = "session"
#: Keys per ``JSON.GET`` pipeline when reading the old layout.
FETCH_BATCH = 500
# Unrecognised keys or paths kept by name in a report (all are counted).
_KEEP_NAMES = 20


class SessionSource(Protocol):
    """Where sessions are migrated from."""

    def session_ids(self, report: MigrationReport) -> list[str]:
        """Ids of the source's sessions, sorted; notes unrecognised keys or paths in ``report``."""
        ...

    def read(self, session_id: str, report: MigrationReport) -> SessionExport:
        """One whole session.

        Raises:
            SourceRecordError: If a record of the session cannot be read.
        """
        ...


# -- the driver ---------------------------------------------------------------------------------


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _session_from_dict(data: Any, where: str) -> Session:
    if not isinstance(data, dict):
        raise SourceRecordError(f"{where} | not a JSON object")
    try:
        return Session(
            session_id=data["session_id"],
            session_type=SessionType(data.get("session_type", SessionType.AGENT.value)),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
        )
    except (KeyError, ValueError) as e:
        raise SourceRecordError(f"{where} | not a session record: {e!r}") from e


def _record(convert: Callable[[dict[str, Any]], Any], data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise SourceRecordError(f"{where} | not a JSON object")
    try:
        return convert(data)
    except _codec.CodecError as e:
        raise SourceRecordError(f"{where} | {e}") from e


def _check_message_id(message_id: Any, where: str) -> None:
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        raise SourceRecordError(f"{where} | message_id {message_id!r} is not an integer")


# -- the original package's layout ----------------------------------------------------------------


@dataclass(frozen=True)
class SeedKey:
    """One key of the old layout, parsed."""

    kind: Literal["session", "agent", "message"]
    session_id: str
    agent_id: str | None = None
    message_id: int | None = None


def parse_seed_key(key: str) -> SeedKey | None:
    """Parse a key of the old layout, or ``None`` if the key is not one.

    Exact: ``session:<sid>``, ``session:<sid>:agent:<aid>`` and
    ``session:<sid>:agent:<aid>:message:<int>``, where no id holds ``:`` (the old package refused
    such ids) and no id is empty.
    """
    parts = key.split(":")
    if parts[0] != SEED_PREFIX or not all(parts[1:]):
        return None
    if len(parts) == 2:
        return SeedKey("session", parts[1])
    if len(parts) == 4 and parts[2] == "agent":
        return SeedKey("agent", parts[1], parts[3])
    if len(parts) == 6 and parts[2] == "agent" and parts[4] == "message":
        try:
            message_id = int(parts[5], 10)
        except ValueError:
            return None
        # int() accepts "+1", " 1" and "1_0"; the old package only ever wrote str(int).
        if str(message_id) != parts[5]:
            return None
        return SeedKey("message", parts[1], parts[3], message_id)
    return None


@dataclass
class _SeedSession:
    has_record: bool = False
    agents: set[str] = field(default_factory=set)
    messages: dict[str, list[int]] = field(default_factory=dict)


class SeedLayoutReader:
    """Reads sessions of the original package's layout.

    The reader knows the layout and the SDK's record shapes; it does no I/O of its own. Key names come
    from ``keys`` (:func:`scan_seed_keys` on a real server) and values from ``fetch``
    (:func:`json_fetch`: one ``JSON.GET`` per key, pipelined), so everything but those two small
    functions can be exercised without a JSON module.

    Args:
        keys: Every key of the source under ``session:`` (others are counted as unrecognised).
        fetch: Given keys, their decoded JSON values in the same order (``None`` for a missing key);
            raises :class:`SourceRecordError` for a value that cannot be read.
        fetch_batch: Keys per ``fetch`` call.
    """

    def __init__(
        self,
        keys: Iterable[str],
        fetch: Callable[[Sequence[str]], Sequence[Any]],
        *,
        fetch_batch: int = FETCH_BATCH,
    ) -> None:
        self._keys = keys
        self._fetch = fetch
        self._fetch_batch = fetch_batch
        self._sessions: dict[str, _SeedSession] | None = None

    def session_ids(self, report: MigrationReport) -> list[str]:
        """Ids of sessions that have a session key, sorted.

        Agent and message keys whose session key is missing (in the old package each key expired on
        its own, so a session key could expire before its messages) are counted as unrecognised.
        """
        sessions: dict[str, _SeedSession] = {}
        for key in self._keys:
            parsed = parse_seed_key(key)
            if parsed is None:
                report.note_unrecognised(key)
                continue
            entry = sessions.setdefault(parsed.session_id, _SeedSession())
            if parsed.kind == "session":
                entry.has_record = True
            elif parsed.kind == "agent":
                assert parsed.agent_id is not None
                entry.agents.add(parsed.agent_id)
            else:
                assert parsed.agent_id is not None and parsed.message_id is not None
                entry.messages.setdefault(parsed.agent_id, []).append(parsed.message_id)
        for session_id, entry in sessions.items():
            if not entry.has_record:
                for agent_id in sorted(entry.agents):
                    report.note_unrecognised(_agent_key(session_id, agent_id))
                for agent_id, ids in sorted(entry.messages.items()):
                    for message_id in sorted(ids):
                        report.note_unrecognised(_message_key(session_id, agent_id, message_id))
                continue
            for agent_id, ids in sorted(entry.messages.items()):
                if agent_id not in entry.agents:
                    for message_id in sorted(ids):
                        report.note_unrecognised(_message_key(session_id, agent_id, message_id))
        self._sessions = {s: e for s, e in sessions.items() if e.has_record}
        return sorted(self._sessions)

    def read(self, session_id: str, report: MigrationReport) -> SessionExport:
        """One whole session: its record, agents, and their messages sorted by id.

        An agent or message whose key vanished since the scan is left out (counted as unrecognised);
        the session itself vanishing is a :class:`SourceRecordError`.
        """
        if self._sessions is None:
            self.session_ids(report)
        assert self._sessions is not None
        entry = self._sessions.get(session_id)
        if entry is None:
            raise SourceRecordError(f"key=<{_session_key(session_id)}> | no such session in the source")
        agent_ids = sorted(entry.agents)
        message_keys = [
            (agent_id, message_id, _message_key(session_id, agent_id, message_id))
            for agent_id in agent_ids
            for message_id in sorted(entry.messages.get(agent_id, ()))
        ]
        keys = (
            [_session_key(session_id)] + [_agent_key(session_id, a) for a in agent_ids] + [k for *_, k in message_keys]
        )
        values = self._fetch_all(keys)
        session_key = keys[0]
        if values[0] is None:
            raise SourceRecordError(f"key=<{session_key}> | the session record vanished (expired or deleted)")
        session = _session_from_dict(values[0], f"key=<{session_key}>")
        if session.session_id != session_id:
            raise SourceRecordError(f"key=<{session_key}> | record holds session_id {session.session_id!r}")
        export = SessionExport(session=session)
        present: set[str] = set()
        agent_keys = keys[1 : 1 + len(agent_ids)]
        for agent_id, key, value in zip(agent_ids, agent_keys, values[1 : 1 + len(agent_ids)], strict=True):
            if value is None:
                report.note_unrecognised(key)
                continue
            agent = _record(_codec.agent_from_dict, value, f"key=<{key}>")
            if agent.agent_id != agent_id:
                raise SourceRecordError(f"key=<{key}> | record holds agent_id {agent.agent_id!r}")
            export.agents.append(agent)
            export.messages[agent_id] = []
            present.add(agent_id)
        for (agent_id, message_id, key), value in zip(message_keys, values[1 + len(agent_ids) :], strict=True):
            if value is None or agent_id not in present:
                report.note_unrecognised(key)
                continue
            message = _record(_codec.message_from_dict, value, f"key=<{key}>")
            _check_message_id(message.message_id, f"key=<{key}>")
            if message.message_id != message_id:
                raise SourceRecordError(f"key=<{key}> | record holds message_id {message.message_id!r}")
            export.messages[agent_id].append(message)
        return export

    def _fetch_all(self, keys: Sequence[str]) -> list[Any]:
        values: list[Any] = []
        for start in range(0, len(keys), self._fetch_batch):
            chunk = keys[start : start + self._fetch_batch]
            got = list(self._fetch(chunk))
            if len(got) != len(chunk):
                raise SourceRecordError(f"fetch returned {len(got)} values for {len(chunk)} keys")
            values.extend(got)
        return values


def _session_key(session_id: str) -> str:
    return f"{SEED_PREFIX}:{session_id}"


def _agent_key(session_id: str, agent_id: str) -> str:
    return f"{SEED_PREFIX}:{session_id}:agent:{agent_id}"


def _message_key(session_id: str, agent_id: str, message_id: int) -> str:
    return f"{SEED_PREFIX}:{session_id}:agent:{agent_id}:message:{message_id}"


def scan_seed_keys(client: Any, *, count: int = 1000) -> Iterator[str]:
    """Every key matching ``session:*`` on the source (every primary of a cluster), via ``SCAN``.

    A one-off walk of the whole keyspace, for migration only.
    """
    for key in client.scan_iter(match=f"{SEED_PREFIX}:*", count=count):
        yield _codec.text(key)


def _is_unknown_command(error: BaseException) -> bool:
    """Whether the server (or a cluster client) does not know the command: JSON.GET without a JSON
    module.

    Matched on the text because nothing else tells: a server's reply is ``ERR unknown command ...``,
    whose only code, ERR, every generic error shares (the client maps it to its plain
    ``ResponseError``); a cluster client refuses before sending with its base ``ValkeyError`` or
    ``RedisError`` (``... command doesn't exist in Valkey/Redis commands``).
    """
    text = str(error).lower()
    return "unknown command" in text or "doesn't exist" in text


def _missing_module_error(error: BaseException) -> SeedSourceError:
    return SeedSourceError(
        "the source server has no JSON module: reading the old layout (session:<id> JSON documents) "
        "needs JSON.GET, from RedisJSON or valkey-json (load the module, or run the migration against "
        f"a server that has it, e.g. a copy of the data): {one_line(error)}"
    )


def check_json_module(client: Any) -> None:
    """Make sure the source answers ``JSON.GET`` (one probe on a key that need not exist).

    Raises:
        SeedSourceError: If the server has no JSON module.
    """
    try:
        client.execute_command("JSON.GET", f"{SEED_PREFIX}:")
    except Exception as e:  # the client's own exception types; the check below decides
        if _is_unknown_command(e):
            raise _missing_module_error(e) from e
        raise


def json_fetch(client: Any) -> Callable[[Sequence[str]], list[Any]]:
    """A ``fetch`` for :class:`SeedLayoutReader`: one pipeline of ``JSON.GET <key>`` per call."""
    standalone = not hasattr(client, "get_nodes")

    def fetch(keys: Sequence[str]) -> list[Any]:
        pipe = client.pipeline(transaction=False) if standalone else client.pipeline()
        for key in keys:
            pipe.execute_command("JSON.GET", key)
        replies = pipe.execute(raise_on_error=False)
        values: list[Any] = []
        for key, reply in zip(keys, replies, strict=True):
            if isinstance(reply, Exception):
                if _is_unknown_command(reply):
                    raise _missing_module_error(reply)
                raise SourceRecordError(f"key=<{key}> | JSON.GET failed: {one_line(reply)}")
            if reply is None:
                values.append(None)
                continue
            try:
                values.append(json.loads(reply))
            except ValueError as e:
                raise SourceRecordError(f"key=<{key}> | not JSON: {e}") from e
        return values

    return fetch


# -- the SDK's FileSessionManager directory --------------------------------------------------------

_SESSION_DIR = "session_"
_AGENT_DIR = "agent_"
_MESSAGE_FILE = "message_"
_MULTI_DIR = "multi_agent_"


class FileStoreReader:
    """Reads sessions from a ``FileSessionManager`` storage directory.

    Args:
        directory: The ``storage_dir`` the ``FileSessionManager`` was given.

    Raises:
        FileNotFoundError: If ``directory`` is not a directory.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"path=<{self.directory}> | not a directory")

    def session_ids(self, report: MigrationReport) -> list[str]:
        """Ids of the ``session_<id>`` directories, sorted; other entries count as unrecognised."""
        found: list[str] = []
        for entry in sorted(self.directory.iterdir()):
            if entry.name.startswith(_SESSION_DIR) and len(entry.name) > len(_SESSION_DIR) and _is_dir(entry):
                found.append(entry.name[len(_SESSION_DIR) :])
            elif not entry.name.startswith("."):
                report.note_unrecognised(str(entry))
        return found

    def read(self, session_id: str, report: MigrationReport) -> SessionExport:
        """One whole session: record, agents with their messages sorted by id, orchestrator states."""
        root = self.directory / f"{_SESSION_DIR}{session_id}"
        session = _session_from_dict(_read_json(root / "session.json"), f"path=<{root / 'session.json'}>")
        if session.session_id != session_id:
            raise SourceRecordError(f"path=<{root}> | session.json holds session_id {session.session_id!r}")
        export = SessionExport(session=session)
        for agent_dir in _subdirs(root / "agents", _AGENT_DIR, report):
            path = agent_dir / "agent.json"
            if not path.exists() and not path.is_symlink():
                report.note_unrecognised(str(agent_dir))
                continue
            agent = _record(_codec.agent_from_dict, _read_json(path), f"path=<{path}>")
            export.agents.append(agent)
            export.messages[agent.agent_id] = self._messages(agent_dir / "messages", report)
        export.agents.sort(key=lambda a: a.agent_id)
        for multi_dir in _subdirs(root / "multi_agents", _MULTI_DIR, report):
            path = multi_dir / "multi_agent.json"
            if not path.exists() and not path.is_symlink():
                report.note_unrecognised(str(multi_dir))
                continue
            state = _read_json(path)
            if not isinstance(state, dict):
                raise SourceRecordError(f"path=<{path}> | not a JSON object")
            export.multi_agents[multi_dir.name[len(_MULTI_DIR) :]] = state
        return export

    @staticmethod
    def _messages(directory: Path, report: MigrationReport) -> list[SessionMessage]:
        if directory.is_symlink():
            raise SourceRecordError(f"path=<{directory}> | refusing to follow a symlink")
        if not _is_dir(directory):
            return []
        numbered: list[tuple[int, Path]] = []
        for path in directory.iterdir():
            name = path.name
            number = name[len(_MESSAGE_FILE) : -len(".json")]
            if name.startswith(_MESSAGE_FILE) and name.endswith(".json") and _is_int(number):
                numbered.append((int(number), path))
            elif not name.startswith("."):  # the SDK's temporary files start with a dot
                report.note_unrecognised(str(path))
        messages: list[SessionMessage] = []
        for _, path in sorted(numbered):
            message: SessionMessage = _record(_codec.message_from_dict, _read_json(path), f"path=<{path}>")
            _check_message_id(message.message_id, f"path=<{path}>")
            messages.append(message)
        return messages


def _is_int(text: str) -> bool:
    try:
        return str(int(text, 10)) == text
    except ValueError:
        return False


def _is_dir(path: Path) -> bool:
    """A real directory (not a symlink to one)."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _subdirs(parent: Path, prefix: str, report: MigrationReport) -> list[Path]:
    if parent.is_symlink():
        raise SourceRecordError(f"path=<{parent}> | refusing to follow a symlink")
    if not _is_dir(parent):
        return []
    found = []
    for entry in sorted(parent.iterdir()):
        if entry.is_symlink():
            raise SourceRecordError(f"path=<{entry}> | refusing to follow a symlink")
        if entry.name.startswith(prefix) and len(entry.name) > len(prefix) and _is_dir(entry):
            found.append(entry)
        elif not entry.name.startswith("."):
            report.note_unrecognised(str(entry))
    return found


def _read_json(path: Path) -> Any:
    if path.is_symlink():
        raise SourceRecordError(f"path=<{path}> | refusing to read through a symlink")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise SourceRecordError(f"path=<{path}> | missing") from e
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise SourceRecordError(f"path=<{path}> | cannot read: {e}") from e
