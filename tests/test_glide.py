"""The Valkey GLIDE adapters (``_glide.py``): valkey-py's reply shapes, the error mapping, scripts and
batches, sync and asyncio, standalone and cluster. The repository suite itself runs on GLIDE through
``tests/test_repository.py``'s ``glide-sync``/``glide-async`` faces."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    AccessDeniedError,
    AsyncValkeySessionRepository,
    CorruptRecordError,
    SessionStoreUnavailableError,
    ValkeySessionRepository,
)
from strands_valkey_session_manager._client import Call, ClientAdapter, CommandCall, ScriptCall, adapter_for
from strands_valkey_session_manager._engine import AsyncEngine, Engine
from strands_valkey_session_manager._glide import AsyncGlideFamily, GlideFamily
from strands_valkey_session_manager.storage import ValkeyStorage
from strands_valkey_session_manager.transfer import SessionExport
from tests.conftest import Backend


@pytest.fixture
def glide_client(backend: Backend) -> Iterator[Any]:
    """A synchronous GLIDE client on the (flushed) backend."""
    made = backend.make_client(backend.glide_kind)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def raw(backend: Backend) -> Iterator[Any]:
    """valkey-py without decoding: the shapes GLIDE's adapters must reproduce."""
    made: Any = (
        backend.make_client("valkey-cluster-bytes") if backend.is_cluster else valkey.Valkey(backend.host, backend.port)
    )
    try:
        yield made
    finally:
        made.close()


def _filled(repo: ValkeySessionRepository, session_id: str, history: int = 3) -> None:
    """A session with agent "a" and ``history`` messages, written in pipelined batches."""
    messages = [
        SessionMessage(message={"role": "user", "content": [{"text": str(i)}]}, message_id=i) for i in range(history)
    ]
    agent = SessionAgent(agent_id="a", state={"n": 1}, conversation_manager_state={})
    export = SessionExport(
        session=Session(session_id=session_id, session_type=SessionType.AGENT),
        agents=[agent],
        messages={"a": messages},
    )
    repo.write_export(export)


def _calls(repo: ValkeySessionRepository, tag: str) -> list[Call]:
    """Every command the plans send, on existing and missing keys, and scripts: writes on keys of
    their own (``tag``), reads of one shared session."""
    keys = repo.session_keys("s1")
    zset, missing = f"z:{{{tag}}}", f"missing:{{{tag}}}"
    return [
        CommandCall("zadd", (zset, {"b": 0})),
        CommandCall("zadd", (zset, {"a": 0, "c": 0})),
        CommandCall("zadd", (zset, {"a": 0})),
        CommandCall("zrevrangebylex", (zset, "+", "-", 0, 2)),
        CommandCall("zrevrangebylex", (zset, "(c", "-", 1, 5)),
        CommandCall("zrevrangebylex", (missing, "+", "-", 0, 5)),
        CommandCall("zrem", (zset, "a")),
        CommandCall("zrem", (zset, "nobody")),
        CommandCall("hget", (keys.agents, "a")),
        CommandCall("hget", (keys.agents, "nobody")),
        CommandCall("hget", (missing, "x")),
        CommandCall("hgetall", (keys.agents,)),
        CommandCall("hgetall", (missing,)),
        CommandCall("dump", (keys.messages,)),
        CommandCall("dump", (missing,)),
        ScriptCall("session_info", keys.all()),
        ScriptCall("session_info", repo.session_keys("none").all()),
        ScriptCall("list_messages", keys.all(), (-1, "[a:", "(a;", 1, -1, "a")),
        ScriptCall("read_field", keys.all(), (0, 2, "a")),
        ScriptCall("read_field", keys.all(), (0, 2, "nobody")),
        ScriptCall("delete_session", repo.session_keys("none").all()),
    ]


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_replies_have_valkey_py_shapes(backend: Backend, raw: Any, glide_client: Any, batched: bool) -> None:
    repo = ValkeySessionRepository(raw)
    _filled(repo, "s1")
    py = ClientAdapter(raw)
    expected = py.execute(_calls(repo, "py")) if batched else [py.execute(c) for c in _calls(repo, "py")]
    sync = Engine(GlideFamily(glide_client))
    got = sync.execute(_calls(repo, "sync")) if batched else [sync.execute(c) for c in _calls(repo, "sync")]

    async def run_async() -> list[Any]:
        client = await backend.make_async_client(backend.glide_kind)
        try:
            adapter = AsyncEngine(AsyncGlideFamily(client))
            if batched:
                return list(await adapter.execute(_calls(repo, "async")))
            return [await adapter.execute(call) for call in _calls(repo, "async")]
        finally:
            await client.close()

    assert got == expected
    assert asyncio.run(run_async()) == expected
    # The shapes themselves: valkey-py without decoding.
    assert expected[:8] == [1, 2, 0, [b"c", b"b"], [b"a"], [], 1, 0]
    assert isinstance(expected[8], bytes) and expected[9] is None and expected[10] is None
    assert isinstance(expected[11], dict) and list(expected[11]) == [b"a"] and expected[12] == {}
    assert isinstance(expected[13], bytes) and expected[14] is None
    assert expected[15][2] == -1 and expected[16] is None and expected[17][:2] == [4, 3]  # 1 agent + 3 messages
    # created, no members left to read, then the two records after the offset, one element each.
    assert isinstance(expected[17][2], bytes) and expected[17][3] == b"" and len(expected[17]) == 6
    assert all(isinstance(record, bytes) for record in expected[17][4:])
    assert isinstance(expected[18], bytes) and expected[19] is None and expected[20] is None


def test_dump_payloads_restore_across_clients(raw: Any, glide_client: Any) -> None:
    repo = ValkeySessionRepository(glide_client)
    _filled(repo, "src")
    repo.fork_session("src", "copy")
    keys = repo.session_keys("src")
    payload = Engine(GlideFamily(glide_client)).execute(CommandCall("dump", (keys.messages,)))
    assert payload == ClientAdapter(raw).execute(CommandCall("dump", (keys.messages,)))
    assert [m.message_id for m in ValkeySessionRepository(raw).list_messages("copy", "a")] == [0, 1, 2]


@pytest.mark.backends("valkey9", "cluster")
def test_scripts_load_again_after_script_flush(backend: Backend, raw: Any, glide_client: Any) -> None:
    repo = ValkeySessionRepository(glide_client, user_id="u")
    repo.create_session(Session(session_id="s0", session_type=SessionType.AGENT))
    for node in backend.nodes:
        admin: Any = valkey.Valkey(node.host, node.port)
        try:
            admin.script_flush()
        finally:
            admin.close()
    # A batch (catalog ZADDs + EVALSHA create_session) meets NOSCRIPT, then a single script call does.
    repo.create_session(Session(session_id="s1", session_type=SessionType.AGENT))
    repo.create_agent("s1", SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
    assert [s.session_id for s in repo.list_sessions(user_id="u").sessions] == ["s1", "s0"]


def test_client_of_the_other_kind_is_a_type_error(backend: Backend, glide_client: Any) -> None:
    with pytest.raises(TypeError, match=r"asyncio Valkey GLIDE client \(glide\.GlideClient"):
        AsyncValkeySessionRepository(glide_client)

    async def wrong_face() -> None:
        client = await backend.make_async_client(backend.glide_kind)
        try:
            with pytest.raises(TypeError, match=r"synchronous Valkey GLIDE client \(glide_sync\.GlideClient"):
                ValkeySessionRepository(client)
        finally:
            await client.close()

    asyncio.run(wrong_face())
    assert isinstance(adapter_for(glide_client, None, is_async=False).family, GlideFamily)
    with pytest.raises(TypeError, match="or Valkey GLIDE client"):
        ValkeySessionRepository(object())


@pytest.mark.backends("valkey9")
@pytest.mark.parametrize(
    ("reply", "raised"),
    [
        ("READONLY You can't write against a read only replica.", SessionStoreUnavailableError),
        ("OOM command not allowed when used memory > 'maxmemory'.", SessionStoreUnavailableError),
        ("LOADING Valkey is loading the dataset in memory", SessionStoreUnavailableError),
        ("TRYAGAIN Multiple keys request during rehashing of slot", SessionStoreUnavailableError),
        ("CLUSTERDOWN The cluster is down", SessionStoreUnavailableError),
        ("MASTERDOWN Link with MASTER is down", SessionStoreUnavailableError),
        ("NOPERM User has no permissions to run the 'hset' command", AccessDeniedError),
        ("NOAUTH Authentication required.", AccessDeniedError),
        ("WRONGPASS invalid username-password pair or user is disabled.", AccessDeniedError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", CorruptRecordError),
        ("SVSM-CORRUPT stored record has no trailing created_at", CorruptRecordError),
        ("ERR something else", CorruptRecordError),
    ],
)
def test_server_errors_map_to_the_package_errors(glide_client: Any, reply: str, raised: type[Exception]) -> None:
    """The server's error codes as GLIDE reports them (its own names for the codes it knows)."""
    adapter = Engine(GlideFamily(glide_client))
    with pytest.raises(raised) as caught, adapter.errors("read_session", "s1", "strands:{s1}:session"):
        glide_client.custom_command(["EVAL", f"return redis.error_reply({reply!r})", "0"])
    assert type(caught.value) is raised
    assert str(caught.value).startswith("operation=<read_session>, session_id=<s1>, key=<strands:{s1}:session> | ")
    assert reply.split(" ", 1)[1] in str(caught.value)
    # The same reply inside a batch: the first error reply is raised, mapped alike.
    failing = CommandCall("eval", (f"return redis.error_reply({reply!r})", 0))
    with pytest.raises(raised), adapter.errors("read_session", "s1", "strands:{s1}:session"):
        adapter.execute([CommandCall("hget", ("k", "f")), failing, CommandCall("hget", ("k", "f"))])


@pytest.mark.backends("valkey9")
def test_acl_refusal_is_access_denied(backend: Backend, raw: Any) -> None:
    import glide_sync

    # GLIDE runs INFO while it connects.
    commands = ["+@read", "+@connection", "+info"]
    raw.acl_setuser("svsm-glide-reader", enabled=True, passwords=["+pw"], keys=["*"], commands=commands)
    config = glide_sync.GlideClientConfiguration(
        [glide_sync.NodeAddress(backend.host, backend.port)],
        credentials=glide_sync.ServerCredentials("pw", "svsm-glide-reader"),
    )
    limited = glide_sync.GlideClient.create(config)
    try:
        repo = ValkeySessionRepository(limited)
        with pytest.raises(AccessDeniedError, match=r"operation=<create_session>, session_id=<s1>.*ACL"):
            repo.create_session(Session(session_id="s1", session_type=SessionType.AGENT))
        assert repo.read_session("s1") is None
    finally:
        limited.close()
        raw.acl_deluser("svsm-glide-reader")


def test_closed_client_is_unavailable(glide_client: Any) -> None:
    repo = ValkeySessionRepository(glide_client, retries=0)
    glide_client.close()
    with pytest.raises(SessionStoreUnavailableError, match=r"operation=<read_session>, session_id=<s1>"):
        repo.read_session("s1")
    with pytest.raises(SessionStoreUnavailableError, match=r"operation=<create_session>"):
        repo.create_session(Session(session_id="s1", session_type=SessionType.AGENT))


# -- round trips ------------------------------------------------------------------------------


class _Requests:
    """The commands GLIDE sends, read from MONITOR (GLIDE's sends cannot be hooked like valkey-py's;
    ``INFO commandstats`` and ``tot-cmds`` also count what scripts run)."""

    def __init__(self, backend: Backend) -> None:
        self._admin: Any = valkey.Valkey(backend.host, backend.port)
        self._monitor = valkey.Valkey(backend.host, backend.port).monitor()
        self._monitor.__enter__()
        self._marks = 0

    def take(self) -> list[str]:
        """Command names sent by other clients since the last call, in order (not those scripts run)."""
        self._marks += 1
        mark = f"svsm-mark-{self._marks}"
        self._admin.echo(mark)
        sent: list[str] = []
        while True:
            seen = self._monitor.next_command()
            if mark in seen["command"]:
                return sent
            if seen["client_type"] != "lua":
                sent.append(seen["command"].split(" ", 1)[0].upper())

    def close(self) -> None:
        self._monitor.__exit__(None, None, None)
        self._admin.close()


@pytest.mark.backends("valkey9", "valkey8", "redis7")
@pytest.mark.parametrize("history", [10, 3000])
def test_round_trips_are_constant(backend: Backend, glide_client: Any, history: int) -> None:
    """``test_repository.test_round_trips_are_constant`` on GLIDE. Every step of these operations is
    one command (the catalog step a pipeline of one ``ZREM``), so the commands are the round trips,
    except ``read_agent``'s one pipeline of six commands."""
    repo = ValkeySessionRepository(glide_client)
    _filled(repo, "s1", history)
    with pytest.raises(SessionException):
        repo.delete_session("not-there")  # loads the scripts, as in steady state
    repo.list_messages("s1", "a", limit=1)
    requests = _Requests(backend)
    try:
        requests.take()
        repo.create_message("s1", "a", SessionMessage(message={"role": "user", "content": []}, message_id=history))
        assert requests.take() == ["EVALSHA"]
        assert repo.read_agent("s1", "a") is not None
        assert len(repo.list_messages("s1", "a", offset=history // 2)) == history + 1 - history // 2
        # read_agent is one pipeline (its record, the session hash's view of it, which keys exist).
        # Up to 1,000 records in the first step, then one HMGET + EVALSHA step per 1,000 more.
        further = ["HMGET", "EVALSHA"] * (1 if history == 3000 else 0)
        assert requests.take() == ["HGET", "HMGET", "EXISTS", "EXISTS", "EXISTS", "EXISTS", "EVALSHA", *further]
        repo.delete_session("s1")  # the five keys in one script, then the catalog entries
        assert requests.take() == ["EVALSHA", "ZREM"]
    finally:
        requests.close()


@pytest.mark.backends("valkey9")
def test_storage_round_trips(backend: Backend, glide_client: Any) -> None:
    """``ValkeyStorage`` on GLIDE: one command per operation, as on valkey-py
    (``tests/storage/test_loops.py::test_round_trips_per_operation``)."""
    storage = ValkeyStorage(glide_client)
    key = "session/s1/scopes/agent/a1/snapshots/snapshot_latest.json"
    asyncio.run(storage.write(key, b"0"))  # loads the scripts, as in steady state
    asyncio.run(storage.delete("session/s1/missing"))
    requests = _Requests(backend)
    try:
        requests.take()
        asyncio.run(storage.write(key, b"1"))
        assert requests.take() == ["EVALSHA"]
        assert asyncio.run(storage.read(key)) == b"1"
        assert requests.take() == ["GET"]
        assert asyncio.run(storage.list("session/s1/")) == [key]
        assert requests.take() == ["ZRANGEBYLEX"]
        asyncio.run(storage.delete(key))
        assert requests.take() == ["EVALSHA"]
    finally:
        requests.close()
        storage.close()
    glide_client.custom_command(["PING"])  # a client passed in stays open


@pytest.mark.backends("valkey9", "cluster")
def test_storage_from_glide_config_works_from_many_loops(backend: Backend) -> None:
    """``ValkeyStorage.from_glide`` makes an asyncio GLIDE client on the storage's loop: every
    ``asyncio.run`` (a new loop each, as the SDK's ``run_async``) reaches it."""
    import glide

    addresses = [glide.NodeAddress(host, port) for host, port in backend.startup_nodes]
    config: Any = (
        glide.GlideClusterClientConfiguration(addresses)
        if backend.is_cluster
        else glide.GlideClientConfiguration(addresses)
    )
    storage = ValkeyStorage.from_glide(config, namespace="fromglide")
    try:
        for i in range(5):
            asyncio.run(storage.write(f"session/s/k{i}", bytes([i])))
        assert asyncio.run(storage.list("session/s/")) == [f"session/s/k{i}" for i in range(5)]
        assert asyncio.run(storage.read("session/s/k3")) == b"\x03"
    finally:
        storage.close()
    with pytest.raises(Exception, match="storage is closed"):
        asyncio.run(storage.read("session/s/k3"))


@pytest.mark.backends("valkey9")
def test_storage_refuses_an_asyncio_glide_client_of_another_loop(backend: Backend) -> None:
    async def made_here() -> None:
        client = await backend.make_async_client(backend.glide_kind)
        try:
            with pytest.raises(TypeError, match="from_glide"):
                ValkeyStorage(client)
        finally:
            await client.close()

    asyncio.run(made_here())
