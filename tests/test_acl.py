"""Least privilege: the exact ACL rule set the package needs, proven on real servers.

``ACL_COMMANDS`` is the command list documented in README ("ACL") and docs/least-privilege.md ("Least
privilege"). The tests check it from three sides:

- it is exactly what the package sends, client side and inside its Lua scripts (MONITOR on Valkey 9
  and Redis 7 while the whole package runs: nothing missing, nothing unused);
- a user with exactly these rules and the key pattern ``~<prefix>:*`` runs the whole package
  (session manager with an agent, repository with lifetime, catalog, fork, export/import, records
  compressed and encrypted at rest with a key rotation, the asyncio repository, ValkeyStorage) with
  every client, standalone and cluster;
- that user reaches nothing outside the pattern: a repository with another prefix gets
  ``AccessDeniedError``, raw commands outside the pattern or the list are refused, and a user
  limited to one session's keys can work on that session only, so the scripts touch no key but
  the ones they declare.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.cluster
import valkey
import valkey.asyncio
import valkey.cluster
import valkey.commands.core
from strands import Agent
from strands.types.exceptions import StorageError
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    AccessDeniedError,
    ValkeySessionManager,
    ValkeySessionRepository,
)
from strands_valkey_session_manager.aio import AsyncValkeySessionRepository
from strands_valkey_session_manager.encryption import LocalKeyProvider, rotate_wrapping_key
from strands_valkey_session_manager.scripted_model import ScriptedModel, Turn, TurnLike
from strands_valkey_session_manager.storage import KeyQuery, ValkeyStorage

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "src" / "strands_valkey_session_manager" / "lua"

#: What the session repository (sync and asyncio) sends, and what its Lua scripts call: ACL checks
#: both, so a script's ``redis.call`` needs the command as much as the client does.
REPOSITORY_COMMANDS = (
    "del",
    "dump",
    "evalsha",
    "exists",
    "hdel",
    "hexists",
    "hget",
    "hgetall",
    "hincrby",
    "hkeys",
    "hmget",
    "hset",
    "pexpireat",
    "pexpiretime",
    "pttl",
    "restore",
    "script|load",
    "time",
    "zadd",
    "zlexcount",
    "zrangebylex",
    "zrem",
    "zrevrangebylex",
)
#: What ValkeyStorage needs on top.
STORAGE_COMMANDS = ("get", "persist", "rename", "set", "zrangebyscore")
ACL_COMMANDS = tuple(sorted({*REPOSITORY_COMMANDS, *STORAGE_COMMANDS}))
#: Cluster clients read the topology and the command table when they connect.
CLUSTER_COMMANDS = ("cluster|slots", "command")
#: Sent only when a script is still unknown to the node after SCRIPT LOAD (a valkey-py cluster client
#: whose view went stale in a failover): the whole script with EVAL, routed by its keys.
FALLBACK_COMMANDS = ("eval",)
#: Sent by the clients when they connect; a refusal is ignored, so granting them is optional.
HANDSHAKE_COMMANDS = frozenset({"client|setinfo", "hello", "auth", "select", "ping"})

PREFIX = "app"
USER = "svsm"
PASSWORD = "correct horse battery staple"


def acl_rules(prefix: str, *, cluster: bool = False) -> list[str]:
    """The rules after ``ACL SETUSER <user> on >password``: keys under the prefix, the commands (and on
    a cluster the topology commands and the EVAL fallback)."""
    commands = [*ACL_COMMANDS, *((*CLUSTER_COMMANDS, *FALLBACK_COMMANDS) if cluster else ())]
    return ["resetkeys", f"~{prefix}:*", "resetchannels", "-@all", *(f"+{c}" for c in commands)]


def documented_command(prefix: str = "strands") -> str:
    """The ``ACL SETUSER`` line README and docs/least-privilege.md show."""
    return " ".join(["ACL SETUSER", "strands", "on", ">password", *acl_rules(prefix)])


# -- the documentation is the tested rule set ------------------------------------------------


@pytest.mark.parametrize("document", ["README.md", "docs/least-privilege.md"])
def test_documented_rule_set_is_the_tested_one(document: str) -> None:
    text = (ROOT / document).read_text()
    assert documented_command() in text
    cluster_extra = " ".join(f"+{c}" for c in CLUSTER_COMMANDS)
    assert cluster_extra in text
    for command in FALLBACK_COMMANDS:
        assert f"`+{command}`" in text


# -- the scripts ------------------------------------------------------------------------------

_CALL = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'\s*(?:,\s*([^,)]+))?")
# Commands whose first argument is a key, and those with no key at all.
_KEYLESS = frozenset({"TIME"})
# Keys the storage prelude derives from the declared postings prefix (the only keys a script builds).
_POSTING_KEYS = frozenset({"postings .. word", "postings .. term"})


def test_scripts_name_only_declared_keys_and_documented_commands() -> None:
    """Every ``redis.call`` in ``lua/`` names its key through ``KEYS`` (directly or through a local
    or a parameter holding a ``KEYS`` entry), never a string or an ``ARGV``: a script can only
    touch keys its caller declared, which the ACL checks against the key pattern."""
    called: set[str] = set()
    for path in sorted(LUA.glob("*.lua")):
        source = path.read_text()
        for match in _CALL.finditer(source):
            command, first = match.group(1).upper(), (match.group(2) or "").strip()
            called.add(command.lower())
            if command in _KEYLESS:
                continue
            assert first, f"{path.name}: {match.group(0)} names no key"
            if first.startswith(("KEYS[", "unpack(KEYS")):
                continue  # declared keys, whichever index the caller chose
            assert "ARGV" not in first, f"{path.name}: {match.group(0)} takes its key from ARGV"
            if path.name == "_storage_prelude.lua" and first in _POSTING_KEYS:
                # The search index's posting keys: a declared prefix (it carries the group's hash
                # tag, so the same slot) and a term stored with the value; see docs/least-privilege.md.
                assert re.search(r"function \w+\([^)]*\bpostings\b", source), first
                continue
            assert "'" not in first, f"{path.name}: {match.group(0)} names a literal key"
            assert "'" not in first and ".." not in first, f"{path.name}: {match.group(0)} builds a key"
            assert re.fullmatch(r"[a-z_]+", first), f"{path.name}: {match.group(0)}"
            # A local: it must be bound to a KEYS entry (or be a function parameter passed one).
            bound = re.search(rf"local {first} = KEYS\[", source)
            parameter = re.search(rf"function \w+\([^)]*\b{first}\b", source)
            assert bound or parameter, f"{path.name}: {first} is not a KEYS entry"
    assert called <= set(ACL_COMMANDS), f"scripts call commands the rules do not grant: {called - set(ACL_COMMANDS)}"


def test_doctor_probes_the_documented_commands() -> None:
    from strands_valkey_session_manager._keys import KeyLayout
    from strands_valkey_session_manager.cli.doctor import acl_probes

    probed = {"|".join(p[:2]).lower() if p[0] == "SCRIPT" else p[0].lower() for p in acl_probes(KeyLayout(PREFIX))}
    assert probed == set(ACL_COMMANDS)


# -- servers and clients -----------------------------------------------------------------------


def _admin(node: Any) -> Any:
    return valkey.Valkey(node.host, node.port, decode_responses=True)


@contextmanager
def _acl_user(backend: Any, user: str, rules: list[str]) -> Iterator[None]:
    """Create ``user`` with ``rules`` on every node of the backend; delete it afterwards."""
    admins = [_admin(node) for node in backend.nodes]
    try:
        for admin in admins:
            admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{PASSWORD}", *rules)
            admin.execute_command("ACL", "LOG", "RESET")
        yield
    finally:
        for admin in admins:
            admin.execute_command("ACL", "DELUSER", user)
            admin.close()


def _acl_log(backend: Any) -> list[str]:
    """What the servers refused (but the connection handshake, whose refusals clients ignore)."""
    entries = []
    for node in backend.nodes:
        admin = _admin(node)
        try:
            for entry in admin.execute_command("ACL", "LOG"):
                fields = dict(zip(entry[::2], entry[1::2], strict=False)) if isinstance(entry, list) else entry
                if fields.get("object") in HANDSHAKE_COMMANDS:
                    continue
                entries.append(f"{fields.get('reason')}: {fields.get('object')} ({fields.get('context')})")
        finally:
            admin.close()
    return entries


def _client(backend: Any, kind: str, user: str | None = USER) -> Any:
    """A client of ``kind`` (see ``Backend.client_kinds``) logged in as ``user``."""
    decode = kind.endswith("-str")
    auth: dict[str, Any] = {"username": user, "password": PASSWORD} if user else {}
    if kind.startswith("valkey-py-"):
        return valkey.Valkey(backend.host, backend.port, decode_responses=decode, **auth)
    if kind.startswith("redis-py-"):
        return redis.Redis(host=backend.host, port=backend.port, decode_responses=decode, **auth)
    if kind.startswith("valkey-cluster-"):
        node_type: Any = valkey.cluster.ClusterNode
        nodes = [node_type(host, port) for host, port in backend.startup_nodes]
        return valkey.cluster.ValkeyCluster(startup_nodes=nodes, decode_responses=decode, **auth)
    redis_node_type: Any = redis.cluster.ClusterNode
    redis_nodes = [redis_node_type(host, port) for host, port in backend.startup_nodes]
    return redis.cluster.RedisCluster(startup_nodes=redis_nodes, decode_responses=decode, **auth)


def _async_client(backend: Any, kind: str, user: str | None = USER) -> Any:
    """The asyncio counterpart of ``_client``."""
    decode = kind.endswith("-str")
    auth: dict[str, Any] = {"username": user, "password": PASSWORD} if user else {}
    if kind.startswith("valkey-py-"):
        return valkey.asyncio.Valkey(host=backend.host, port=backend.port, decode_responses=decode, **auth)
    if kind.startswith("redis-py-"):
        return redis.asyncio.Redis(host=backend.host, port=backend.port, decode_responses=decode, **auth)
    if kind.startswith("valkey-cluster-"):
        host, port = backend.startup_nodes[0]
        return valkey.asyncio.ValkeyCluster(host=host, port=port, decode_responses=decode, **auth)
    host, port = backend.startup_nodes[0]
    return redis.asyncio.RedisCluster(host=host, port=port, decode_responses=decode, **auth)


# -- the workload: everything the package does ------------------------------------------------


def _message(message_id: int, text: str) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": text}]}, message_id=message_id)


class _Orchestrator:
    def __init__(self, orchestrator_id: str, status: str) -> None:
        self.id = orchestrator_id
        self.status = status

    def serialize_state(self) -> dict[str, Any]:
        return {"status": self.status}


def _run_manager(client: Any, prefix: str, session_id: str) -> None:
    """An agent with a guardrail turn and a redaction, then a restore in a new manager."""
    # No lifetime: writes keep the session's own expiry (PEXPIRETIME), where the repository below sets one.
    manager = ValkeySessionManager(session_id=session_id, client=client, key_prefix=prefix)
    script: list[TurnLike] = ["Hello!", Turn(text="I cannot help with that.", redact_user="[input blocked]")]
    agent = Agent(model=ScriptedModel(script), session_manager=manager, agent_id="agent", callback_handler=None)
    agent("hi")
    agent("something blocked")
    manager.redact_latest_message({"role": "assistant", "content": [{"text": "[removed]"}]}, agent)
    restored_manager = ValkeySessionManager(session_id=session_id, client=client, key_prefix=prefix)
    restored = Agent(model=ScriptedModel([]), session_manager=restored_manager, agent_id="agent", callback_handler=None)
    assert restored.messages[-1]["content"] == [{"text": "[removed]"}]
    assert restored.messages[-2]["content"] == [{"text": "[input blocked]"}]
    restored_manager.delete_session(session_id)


def _run_repository(client: Any, prefix: str, session_id: str) -> None:
    """The repository's whole surface, with lifetime, owner, tags and version checks on."""
    repo = ValkeySessionRepository(
        client,
        key_prefix=prefix,
        ttl=timedelta(hours=1),
        max_age=timedelta(days=1),
        touch_on_read=True,
        user_id="ann",
        tags=["support"],
        check_versions=True,
    )
    repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repo.create_agent(session_id, SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
    for i in range(3):
        repo.create_message(session_id, "a", _message(i, f"m{i}"))
    redacted = _message(1, "m1")
    redacted.redact_message = {"role": "user", "content": [{"text": "[redacted]"}]}
    repo.update_message(session_id, "a", redacted)
    repo.update_agent(session_id, SessionAgent(agent_id="a", state={"k": 1}, conversation_manager_state={}))
    repo.create_multi_agent(session_id, _Orchestrator("swarm", "running"))  # type: ignore[arg-type]
    repo.update_multi_agent(session_id, _Orchestrator("swarm", "done"))  # type: ignore[arg-type]
    assert repo.read_session(session_id) is not None
    assert repo.read_agent(session_id, "a") is not None
    assert repo.read_multi_agent(session_id, "swarm") == {"status": "done"}
    read = repo.read_message(session_id, "a", 1)
    assert read is not None
    assert read.redact_message is not None
    assert [m.message_id for m in repo.list_messages(session_id, "a", limit=2, offset=1)] == [1, 2]
    info = repo.session_info(session_id)
    assert info is not None
    assert info.message_counts == {"a": 3}
    assert info.expires_in is not None
    assert session_id in [s.session_id for s in repo.list_sessions().sessions]
    assert session_id in [s.session_id for s in repo.iter_sessions(user_id="ann")]
    assert session_id in [s.session_id for s in repo.list_sessions(tag="support").sessions]
    assert session_id in [s.session_id for s in repo.list_sessions(user_id="ann", tag="support").sessions]
    fork = f"{session_id}-fork"
    repo.fork_session(session_id, fork)
    assert len(repo.list_messages(fork, "a")) == 3
    exported = repo.export_session(fork)
    repo.delete_session(fork)
    assert repo.import_session(exported) == fork
    assert repo.import_session(exported, overwrite=True) == fork
    assert repo.prune(timedelta(days=1), dry_run=True) == 0
    time.sleep(0.01)
    assert repo.prune(timedelta(milliseconds=1), dry_run=True) >= 2
    repo.delete_session(fork)
    repo.delete_session(session_id)


def _run_sealed_repository(client: Any, prefix: str, session_id: str) -> None:
    """Records compressed and encrypted at rest, with a data key per session and a key rotation."""
    old_key, new_key = LocalKeyProvider.generate_key(), LocalKeyProvider.generate_key()
    repo = ValkeySessionRepository(
        client, key_prefix=prefix, compress_threshold=64, key_provider=LocalKeyProvider({"k1": old_key}, "k1")
    )
    repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repo.create_agent(session_id, SessionAgent(agent_id="a", state={"secret": 1}, conversation_manager_state={}))
    repo.create_message(session_id, "a", _message(0, "sealed " * 40))
    rotated = ValkeySessionRepository(
        client, key_prefix=prefix, key_provider=LocalKeyProvider({"k1": old_key, "k2": new_key}, "k2")
    )
    assert rotate_wrapping_key(rotated, session_id)
    assert [m.message["content"] for m in rotated.list_messages(session_id, "a")] == [[{"text": "sealed " * 40}]]
    rotated.delete_session(session_id)


def _run_async_repository(client: Any, prefix: str, session_id: str) -> None:
    async def run() -> None:
        repo = AsyncValkeySessionRepository(client, key_prefix=prefix, ttl=60)
        await repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
        await repo.create_agent(session_id, SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
        await repo.create_message(session_id, "a", _message(0, "async"))
        assert [m.message_id for m in await repo.list_messages(session_id, "a")] == [0]
        assert await repo.session_info(session_id) is not None
        await repo.fork_session(session_id, f"{session_id}-fork")
        await repo.delete_session(f"{session_id}-fork")
        await repo.delete_session(session_id)
        await client.aclose()

    asyncio.run(run())


def _run_storage(client: Any, namespace: str) -> None:
    async def run() -> None:
        storage = ValkeyStorage(client, namespace=namespace)
        await storage.write("session/s1/scopes/agent/a/state.json", b"{}")
        await storage.write("notes", b"remember")
        assert await storage.read("notes") == b"remember"
        assert await storage.list("session/s1/") == ["session/s1/scopes/agent/a/state.json"]
        assert "notes" in await storage.list("")
        assert await storage.list("no") == ["notes"]
        await storage.delete("notes")
        await storage.delete("session/s1/scopes/agent/a/state.json")
        assert await storage.list("") == []
        # Every other path: a page of keys, compare-and-set, a value staged and renamed (64 KiB and
        # more), the search index (write, search, backfill, delete), a prefix deleted in bulk.
        await storage.write("session/s2/a", b"1")
        await storage.write("session/s2/b", b"2")
        assert await storage.list(KeyQuery("session/s2/", start_after="session/s2/a", limit=1)) == ["session/s2/b"]
        await storage.compare_and_write("session/s2/a", b"3", b"1")
        big = b"x" * (256 * 1024)
        await storage.write("session/s2/big", big)
        assert await storage.read("session/s2/big") == big
        assert await storage.delete_prefix("session/s2/") == 3
        indexed = ValkeyStorage(client, namespace=namespace, search_index=("memory/",))
        await indexed.write("memory/u/note", b"valkey remembers conversations")
        assert [hit.key for hit in await indexed.search("conversations")] == ["memory/u/note"]
        await indexed.build_search_index("memory/")
        await indexed.delete("memory/u/note")
        assert await indexed.search("conversations") == []

    asyncio.run(run())


def _run_everything(backend: Any, kind: str, prefix: str, user: str | None, tag: str) -> None:
    client = _client(backend, kind, user)
    try:
        _run_manager(client, prefix, f"manager-{tag}")
        _run_repository(client, prefix, f"repo:{{{tag}}}")
        _run_sealed_repository(client, prefix, f"sealed {tag}")
        _run_storage(client, prefix)
    finally:
        client.close()
    _run_async_repository(_async_client(backend, kind, user), prefix, f"async {tag}")


# -- the rule set is exactly what the package sends -------------------------------------------

_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_SUBCOMMANDS = frozenset({"script", "client", "cluster", "command", "acl", "config", "object", "memory"})


@contextmanager
def _monitor(host: str, port: int) -> Iterator[set[tuple[str, str]]]:
    """Every (source, command) the server executes while the block runs; source is ``lua`` for
    commands a script called, ``client`` otherwise. Subcommands are named ``command|sub``."""
    seen: set[tuple[str, str]] = set()
    stop = threading.Event()
    ready = threading.Event()

    def read() -> None:
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"MONITOR\r\n")
            sock.settimeout(0.1)
            buffer = b""
            while True:
                try:
                    chunk = sock.recv(1 << 20)
                except TimeoutError:
                    if stop.is_set():
                        return
                    continue
                if not chunk:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for line in lines:
                    if line == b"+OK":
                        ready.set()
                    match = re.match(rb"\+\S+ \[\d+ ([^\]]+)\] (.*)", line)
                    if match is None:
                        continue
                    tokens = [t.decode(errors="replace").lower() for t in _TOKEN.findall(match.group(2))]
                    name = tokens[0]
                    if name in _SUBCOMMANDS and len(tokens) > 1:
                        name = f"{name}|{tokens[1]}"
                    seen.add(("lua" if match.group(1) == b"lua" else "client", name))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert ready.wait(5), "MONITOR did not start"
    try:
        yield seen
    finally:
        time.sleep(0.2)  # let the last replies arrive
        stop.set()
        thread.join(5)


@pytest.mark.backends("valkey9", "redis7")
def test_rule_set_is_exactly_what_the_package_sends(backend: Any) -> None:
    with _monitor(backend.host, backend.port) as seen:
        _run_everything(backend, "valkey-py-bytes", PREFIX, None, "monitor")
    commands = {name for _, name in seen} - HANDSHAKE_COMMANDS
    assert commands - set(ACL_COMMANDS) == set(), "sent but not granted"
    assert set(ACL_COMMANDS) - commands == set(), "granted but never sent"
    scripts = {name for source, name in seen if source == "lua"}
    assert scripts <= set(ACL_COMMANDS)


# -- a user with exactly the rules ------------------------------------------------------------


@pytest.mark.backends("valkey9", "redis7")
def test_acl_user_runs_the_whole_package_inside_its_prefix(backend: Any) -> None:
    with _acl_user(backend, USER, acl_rules(PREFIX)):
        for kind in backend.client_kinds():
            try:
                _run_everything(backend, kind, PREFIX, USER, kind)
            except Exception as e:
                raise AssertionError(f"{kind}: {e!r}; refused: {_acl_log(backend)}") from e
        assert _acl_log(backend) == []
    admin = _admin(backend.nodes[0])
    try:
        assert admin.keys("*") == []  # everything the workload wrote, it deleted
    finally:
        admin.close()


@pytest.mark.backends("cluster")
def test_acl_user_runs_the_whole_package_on_a_cluster(backend: Any) -> None:
    with _acl_user(backend, USER, acl_rules(PREFIX, cluster=True)):
        for kind in backend.client_kinds():
            try:
                _run_everything(backend, kind, PREFIX, USER, kind)
            except Exception as e:
                raise AssertionError(f"{kind}: {e!r}; refused: {_acl_log(backend)}") from e
        assert _acl_log(backend) == []


@pytest.mark.backends("cluster")
def test_cluster_clients_need_the_topology_commands(backend: Any) -> None:
    with _acl_user(backend, USER, acl_rules(PREFIX)), pytest.raises(Exception, match=r"(?i)cluster|permission"):
        _client(backend, "valkey-cluster-str").close()


@pytest.mark.backends("valkey9")
@pytest.mark.parametrize("granted", [False, True], ids=["without-eval", "with-eval"])
def test_eval_fallback_needs_eval(backend: Any, granted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """When NOSCRIPT persists after SCRIPT LOAD, the adapter sends the whole script with EVAL; a user
    without ``+eval`` then gets AccessDeniedError, one with it carries on."""

    def load_does_not_help(self: Any, script: Any) -> Any:
        return None  # as a load that reached another node than the one the call goes to

    rules = acl_rules(PREFIX) + [f"+{c}" for c in FALLBACK_COMMANDS if granted]
    with _acl_user(backend, USER, rules):
        client = _client(backend, "valkey-py-str")
        admin = _admin(backend.nodes[0])
        try:
            repo = ValkeySessionRepository(client, key_prefix=PREFIX)
            admin.script_flush()
            monkeypatch.setattr(valkey.Valkey, "script_load", load_does_not_help)
            session = Session(session_id="fallback", session_type=SessionType.AGENT)
            if granted:
                repo.create_session(session)
                assert repo.session_info("fallback") is not None
            else:
                with pytest.raises(AccessDeniedError, match="eval"):
                    repo.create_session(session)
        finally:
            client.close()
            admin.close()


# -- nothing outside the prefix ---------------------------------------------------------------


def _refused(call: Callable[[], object]) -> None:
    with pytest.raises((valkey.exceptions.NoPermissionError, redis.exceptions.NoPermissionError)):
        call()


@pytest.mark.backends("valkey9", "redis7")
def test_acl_user_reaches_nothing_outside_its_prefix(backend: Any) -> None:
    admin = _admin(backend.nodes[0])
    owner = ValkeySessionRepository(admin)  # the default prefix, "strands": outside the user's pattern
    owner.create_session(Session(session_id="private", session_type=SessionType.AGENT))
    owner.create_agent("private", SessionAgent(agent_id="a", state={"secret": 1}, conversation_manager_state={}))
    admin.set("secret", "42")
    admin.set(f"{PREFIX}s:near", "not under the prefix either")
    before = {k: admin.dump(k) for k in admin.keys("*")}
    try:
        with _acl_user(backend, USER, acl_rules(PREFIX)):
            client = _client(backend, "valkey-py-str")
            try:
                for prefix in ["strands", f"{PREFIX}s", "other"]:
                    repo = ValkeySessionRepository(client, key_prefix=prefix)
                    calls: dict[str, Callable[[ValkeySessionRepository], object]] = {
                        "read_session": lambda r: r.read_session("private"),
                        "read_agent": lambda r: r.read_agent("private", "a"),
                        "list_messages": lambda r: r.list_messages("private", "a"),
                        "session_info": lambda r: r.session_info("private"),
                        "list_sessions": lambda r: r.list_sessions(),
                        "create_session": lambda r: r.create_session(
                            Session(session_id="mine", session_type=SessionType.AGENT)
                        ),
                        "create_agent": lambda r: r.create_agent(
                            "private", SessionAgent(agent_id="b", state={}, conversation_manager_state={})
                        ),
                        "delete_session": lambda r: r.delete_session("private"),
                        "fork_session": lambda r: r.fork_session("private", "copy"),
                        "export_session": lambda r: r.export_session("private"),
                    }
                    for name, call in calls.items():
                        with pytest.raises(AccessDeniedError, match="ACL"):
                            call(repo)
                        assert name
                    storage = ValkeyStorage(client, namespace=prefix)
                    with pytest.raises(StorageError):
                        asyncio.run(storage.write("notes", b"x"))
                    with pytest.raises(StorageError):
                        asyncio.run(storage.read("notes"))
                # Raw commands: allowed commands on keys outside the pattern, and commands outside the list.
                _refused(lambda: client.get("secret"))
                _refused(lambda: client.set("secret", "0"))
                _refused(lambda: client.set(f"{PREFIX}s:near", "0"))
                _refused(lambda: client.hgetall("strands:{private}:agents"))
                _refused(lambda: client.delete("secret"))
                _refused(lambda: client.keys(f"{PREFIX}:*"))
                _refused(client.scan)
                _refused(client.flushall)
                _refused(lambda: client.config_get("*"))
                _refused(lambda: client.eval("return 1", 0))
                _refused(client.script_flush)
                _refused(lambda: client.execute_command("ACL", "WHOAMI"))
                # A script of ours cannot be pointed at a key outside the pattern either.
                sha = client.script_load((LUA / "session_info.lua").read_text())  # loading is allowed: it runs nothing
                _refused(lambda: client.evalsha(sha, 2, "strands:{private}:session", "strands:{private}:agents"))
            finally:
                client.close()
        assert {k: admin.dump(k) for k in admin.keys("*")} == before
    finally:
        admin.flushall()
        admin.close()


@pytest.mark.backends("valkey9", "redis7")
def test_server_refuses_a_script_touching_a_key_outside_the_pattern(backend: Any) -> None:
    """The premise of the per-session test below: ACL checks the keys a script touches, not only
    the keys it declares."""
    with _acl_user(backend, "canary", ["resetkeys", f"~{PREFIX}:*", "-@all", "+eval", "+get"]):
        client = _client(backend, "valkey-py-str", "canary")
        try:
            assert client.eval("return redis.call('GET', KEYS[1])", 1, f"{PREFIX}:x") is None
            with pytest.raises(valkey.exceptions.ResponseError, match=r"(?i)can't access|permission|NOPERM"):
                client.eval("return redis.call('GET', 'secret')", 1, f"{PREFIX}:x")
        finally:
            client.close()


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_scripts_touch_only_the_keys_of_their_own_session(backend: Any) -> None:
    """A user whose pattern covers two sessions' keys and the catalog, nothing else, can do
    everything on those sessions: no script reaches beyond the session it was called for."""
    source, target = "a:{1}*", "b [2]?"
    layout = ValkeySessionRepository(_admin(backend.nodes[0]), key_prefix=PREFIX)
    tags = [layout.session_keys(s).session.rsplit(":", 1)[0] for s in (source, target)]
    rules = ["resetkeys", *(f"~{tag}:*" for tag in tags), f"~{PREFIX}:catalog:*", "resetchannels", "-@all"]
    rules += [f"+{c}" for c in (*ACL_COMMANDS, *(CLUSTER_COMMANDS if backend.is_cluster else ()))]
    with _acl_user(backend, USER, rules):
        client = _client(backend, "valkey-cluster-bytes" if backend.is_cluster else "valkey-py-bytes")
        try:
            repo = ValkeySessionRepository(client, key_prefix=PREFIX, ttl=60, user_id="u", tags=["t"])
            repo.create_session(Session(session_id=source, session_type=SessionType.AGENT))
            repo.create_agent(source, SessionAgent(agent_id="x", state={}, conversation_manager_state={}))
            repo.create_message(source, "x", _message(0, "hi"))
            repo.update_message(source, "x", _message(0, "hello"))
            assert [m.message["content"] for m in repo.list_messages(source, "x")] == [[{"text": "hello"}]]
            repo.fork_session(source, target)
            assert [s.session_id for s in repo.iter_sessions(user_id="u")] == [target, source]
            exported = repo.export_session(target)
            repo.import_session(exported, overwrite=True)
            repo.delete_session(source)
            assert repo.session_info(target) is not None
            with pytest.raises(AccessDeniedError):
                repo.create_session(Session(session_id="c", session_type=SessionType.AGENT))
            with pytest.raises(AccessDeniedError):
                repo.fork_session(target, "c")
            repo.delete_session(target)
        except Exception as e:
            raise AssertionError(f"{e!r}; refused: {_acl_log(backend)}") from e
        finally:
            client.close()


# -- connecting as the user from a URL --------------------------------------------------------


@pytest.mark.backends("valkey9", "redis7")
def test_manager_from_a_url_with_user_and_password(backend: Any) -> None:
    with _acl_user(backend, USER, acl_rules(PREFIX)):
        url = f"redis://{USER}:{PASSWORD.replace(' ', '%20')}@{backend.host}:{backend.port}/0"
        manager = ValkeySessionManager.from_url(url, session_id="from-url", key_prefix=PREFIX)
        try:
            agent = Agent(model=ScriptedModel(["hi"]), session_manager=manager, agent_id="a", callback_handler=None)
            agent("hello")
            assert [m.message["role"] for m in manager.list_messages("from-url", "a")] == ["user", "assistant"]
            manager.delete_session("from-url")
        finally:
            manager.close()


@pytest.mark.backends("valkey9")
def test_wrong_password_is_access_denied(backend: Any) -> None:
    with _acl_user(backend, USER, acl_rules(PREFIX)):
        url = f"redis://{USER}:wrong@{backend.host}:{backend.port}"
        with pytest.raises(AccessDeniedError):
            ValkeySessionManager.from_url(url, session_id="s", key_prefix=PREFIX)
