"""Property tests: ids drawn from all of Unicode and the key-syntax characters never cross sessions or agents.

Every example runs against a real server under its own key prefix (``fz<n>``), so examples never see
each other's data and no example needs a FLUSHALL. The standalone profile runs on one Valkey 9
server (the bulk of the cases); a smaller profile runs on the 3-primary cluster with every cluster
client. The last tests record every command the repository puts on the wire and check the
ElastiCache Serverless argument limit and the one-slot rule.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import valkey
import valkey.crc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionRepository
from strands_valkey_session_manager._keys import encode_id

# -- strategies -------------------------------------------------------------------------------

#: The characters that mean something in a key, a hash tag, a glob pattern or a percent-encoding.
SYNTAX_CHARS = ":{}*?[]\\% \t"
#: Every code point but the surrogates (refused with ValueError; see test_lone_surrogates_are_refused).
_SURROGATE_CATEGORY: tuple[Literal["Cs"]] = ("Cs",)
UNICODE = st.characters(exclude_categories=_SURROGATE_CATEGORY)
# Strategies are flat (``builds`` over primitive draws, no nested ``composite``): with thousands of
# examples, Hypothesis's own cost per draw matters more than the server's. For the same reason
# ids are Unicode text (one in five holds a syntax character by itself) put in a syntax frame,
# rather than text drawn char by char from a mix of two alphabets (three times the cost).
_FRAMES = (
    "{}",
    "{}",
    "{}",
    "{}:",
    ":{}",
    "{{{}}}",
    "}}{}{{",
    "{}*",
    "*{}?",
    "[{}]",
    "{}\\",
    "%{}%25",
    "{}%3A",
    "{} {}",
    "\t{}",
    "a:{}:b",
    "{}{{x}}*?",
)
_TEXT = st.text(UNICODE, min_size=1, max_size=12)
_FRAME = st.sampled_from(_FRAMES)
_ANY_CHAR = st.sampled_from(SYNTAX_CHARS) | UNICODE
LONG_ID_CHARS = 10_000
#: Examples per test. The standalone tests run on one Valkey 9 server, together over 10,000 cases.
EXAMPLES = {"sessions": 2500, "catalog": 250, "agents": 2200, "surrogates": 4850, "long": 100, "cluster": 20}


def _framed(frame: str, text: str, size: int | None = None) -> str:
    """``text`` in ``frame``; stretched to exactly ``size`` characters by repetition when given."""
    unit = frame.replace("{}", text)
    return unit if size is None else (unit * (size // len(unit) + 1))[:size]


#: Short ids: up to 12 code points from all of Unicode, framed in key syntax.
SHORT_IDS = st.builds(_framed, _FRAME, _TEXT)
#: Ids of 100 to 10,000 characters: a short framed unit repeated.
LONG_IDS = st.builds(_framed, _FRAME, _TEXT, st.integers(100, LONG_ID_CHARS))
#: Mostly short ids; one in sixteen is stretched to 100..1,000 characters (the 10,000-character ids
#: have a test of their own, as their keys cost more).
HOSTILE_IDS = st.one_of(*[SHORT_IDS] * 15, st.builds(_framed, _FRAME, _TEXT, st.integers(100, 1_000)))


def _swapped(pair: tuple[str, str], swap: bool) -> tuple[str, str]:
    return (pair[1], pair[0]) if swap else pair


def _prefix_of(first: str, cut: int) -> str:
    return first[: 1 + cut % (len(first) - 1)] if len(first) > 1 else first + first


def _one_char_off(first: str, cut: int, char: str) -> str:
    at = cut % len(first)
    return first[:at] + char + first[at + 1 :]


def id_pairs(ids: st.SearchStrategy[str] = HOSTILE_IDS) -> st.SearchStrategy[tuple[str, str]]:
    """Two distinct ids, often near each other: one a prefix, extension or glob of the other, one
    character apart, or one the percent-encoding of the other. Each kind draws only what it needs."""
    cut = st.integers(0, 2**20)
    kinds = st.one_of(
        st.tuples(ids, ids),
        st.builds(lambda a, b: (a, a + b), ids, SHORT_IDS),
        st.builds(lambda a, n: (a, _prefix_of(a, n)), ids, cut),
        st.builds(lambda a, n, c: (a, _one_char_off(a, n, c)), ids, cut, _ANY_CHAR),
        st.builds(lambda a, c: (a, a[:-1] + c), ids, _ANY_CHAR),
        st.builds(lambda a: (a, encode_id(a)), ids),
    )
    return st.builds(_swapped, kinds, st.booleans()).filter(lambda pair: pair[0] != pair[1])


MESSAGE_IDS = st.integers(-(2**63), 2**63 - 1)
SURROGATES = st.characters(categories=_SURROGATE_CATEGORY)

# -- helpers ----------------------------------------------------------------------------------

_prefixes = itertools.count()
_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def _fresh_repo(client: Any, **kwargs: Any) -> ValkeySessionRepository:
    """A repository under a key prefix no other example uses."""
    return ValkeySessionRepository(client, key_prefix=f"fz{next(_prefixes)}", **kwargs)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _keys_under(client: Any, prefix: str) -> list[str]:
    """Every key under ``prefix:`` (KEYS is fine in a test: the prefix holds one example's data).

    A cluster client sends KEYS to one node unless told otherwise: ask every primary.
    """
    everywhere = {"target_nodes": type(client).PRIMARIES} if hasattr(client, "get_primaries") else {}
    return sorted({_text(k) for k in client.keys(f"{prefix}:*", **everywhere)})


def _message(message_id: int, owner: str) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": owner}]}, message_id=message_id)


def _agent(agent_id: str, owner: str) -> SessionAgent:
    return SessionAgent(agent_id=agent_id, state={"owner": owner}, conversation_manager_state={"owner": owner})


def _listed(repo: ValkeySessionRepository, user_id: str | None = None, tag: str | None = None) -> list[str]:
    return [info.session_id for info in repo.iter_sessions(user_id=user_id, tag=tag)]


class _Orchestrator:
    """The part of ``MultiAgentBase`` the repository uses."""

    def __init__(self, orchestrator_id: str, owner: str) -> None:
        self.id = orchestrator_id
        self.owner = owner

    def serialize_state(self) -> dict[str, Any]:
        return {"owner": self.owner}


def _fill_session(
    repo: ValkeySessionRepository, session_id: str, agent_id: str, message_id: int, *, multi: bool = False
) -> None:
    """A session owned by, tagged with and holding records marked with its own id; with ``multi``,
    also orchestrator state under the agent's id."""
    session = Session(session_id=session_id, session_type=SessionType.AGENT)
    repo.create_session(session, user_id=session_id, tags=[session_id])
    repo.create_agent(session_id, _agent(agent_id, session_id))
    repo.create_message(session_id, agent_id, _message(message_id, session_id))
    if multi:
        repo.create_multi_agent(session_id, _Orchestrator(agent_id, session_id))  # type: ignore[arg-type]


def _assert_intact(
    repo: ValkeySessionRepository, session_id: str, agent_id: str, message_id: int, *, multi: bool = False
) -> None:
    """Every record of the session is there and is its own, never another session's."""
    session = repo.read_session(session_id)
    assert session is not None
    assert session.session_id == session_id
    agent = repo.read_agent(session_id, agent_id)
    assert agent is not None
    assert (agent.agent_id, agent.state) == (agent_id, {"owner": session_id})
    listed = repo.list_messages(session_id, agent_id)
    assert [(m.message_id, m.message["content"]) for m in listed] == [(message_id, [{"text": session_id}])]
    if multi:
        assert repo.read_multi_agent(session_id, agent_id) == {"owner": session_id}


def _assert_info(repo: ValkeySessionRepository, session_id: str, agent_id: str) -> None:
    info = repo.session_info(session_id)
    assert info is not None
    assert (info.session_id, info.user_id, info.tags, info.message_counts) == (
        session_id,
        session_id,
        (session_id,),
        {agent_id: 1},
    )


def _assert_gone(repo: ValkeySessionRepository, session_id: str, agent_id: str, message_id: int) -> None:
    assert repo.read_session(session_id) is None
    assert repo.list_messages(session_id, agent_id) == []


# -- sessions never see each other ------------------------------------------------------------


def _check_two_sessions(client: Any, pair: tuple[str, str], agent_id: str, message_id: int) -> ValkeySessionRepository:
    """Write B, then A with the same agent and message ids; delete A: B stays whole and A is gone."""
    a, b = pair
    repo = _fresh_repo(client)
    _fill_session(repo, b, agent_id, message_id)
    _fill_session(repo, a, agent_id, message_id)
    written = repo.read_message(a, agent_id, message_id)
    assert written is not None
    assert written.message["content"] == [{"text": a}]
    repo.delete_session(a)
    _assert_intact(repo, b, agent_id, message_id)
    _assert_gone(repo, a, agent_id, message_id)
    return repo


def _check_two_sessions_and_catalog(client: Any, pair: tuple[str, str], agent_id: str, message_id: int) -> None:
    """As ``_check_two_sessions``, plus orchestrator state, what the catalog shows before and after,
    and no key left behind."""
    a, b = pair
    repo = _fresh_repo(client)
    _fill_session(repo, b, agent_id, message_id, multi=True)
    _fill_session(repo, a, agent_id, message_id, multi=True)
    for session_id in pair:
        _assert_intact(repo, session_id, agent_id, message_id, multi=True)
        _assert_info(repo, session_id, agent_id)
    assert sorted(_listed(repo)) == sorted(pair)
    assert _listed(repo, user_id=a) == [a]
    assert _listed(repo, tag=b) == [b]
    repo.delete_session(a)
    _assert_gone(repo, a, agent_id, message_id)
    assert repo.read_message(a, agent_id, message_id) is None
    assert repo.read_multi_agent(a, agent_id) is None
    assert repo.session_info(a) is None
    assert client.exists(*repo.session_keys(a).all()) == 0
    _assert_intact(repo, b, agent_id, message_id, multi=True)
    _assert_info(repo, b, agent_id)
    assert _listed(repo) == [b]
    assert _listed(repo, user_id=a) == []
    assert _listed(repo, tag=a) == []
    repo.delete_session(b)
    assert _keys_under(client, repo.key_prefix) == []


@pytest.mark.slow
@settings(max_examples=EXAMPLES["sessions"], deadline=None, suppress_health_check=_SUPPRESS)
@given(pair=id_pairs(), agent_id=HOSTILE_IDS, message_id=MESSAGE_IDS)
def test_sessions_never_read_overwrite_or_delete_each_other(
    standalone_client: valkey.Valkey, pair: tuple[str, str], agent_id: str, message_id: int
) -> None:
    _check_two_sessions(standalone_client, pair, agent_id, message_id)


@pytest.mark.slow
@settings(max_examples=EXAMPLES["catalog"], deadline=None, suppress_health_check=_SUPPRESS)
@given(pair=id_pairs(), agent_id=HOSTILE_IDS, message_id=MESSAGE_IDS)
def test_catalog_never_shows_foreign_sessions(
    standalone_client: valkey.Valkey, pair: tuple[str, str], agent_id: str, message_id: int
) -> None:
    _check_two_sessions_and_catalog(standalone_client, pair, agent_id, message_id)


@settings(max_examples=EXAMPLES["long"], deadline=None, suppress_health_check=_SUPPRESS)
@given(pair=id_pairs(LONG_IDS), agent_id=LONG_IDS, message_id=MESSAGE_IDS)
def test_long_ids_never_see_each_other(
    standalone_client: valkey.Valkey, pair: tuple[str, str], agent_id: str, message_id: int
) -> None:
    repo = _check_two_sessions(standalone_client, pair, agent_id, message_id)
    a, b = pair
    _assert_info(repo, b, agent_id)
    assert _listed(repo) == [b]
    assert _listed(repo, user_id=a) == []


@pytest.mark.backends("cluster")
@settings(max_examples=EXAMPLES["cluster"], deadline=None, suppress_health_check=_SUPPRESS)
@given(pair=id_pairs(), agent_id=HOSTILE_IDS, message_id=MESSAGE_IDS)
def test_sessions_never_see_each_other_on_cluster(
    client: Any, pair: tuple[str, str], agent_id: str, message_id: int
) -> None:
    _check_two_sessions_and_catalog(client, pair, agent_id, message_id)


# -- agents of one session never see each other -----------------------------------------------


History = tuple[str, tuple[str, str], list[int], list[int]]


def _history(session_id: str, agents: tuple[str, str], pool: list[int], mask_a: int, mask_b: int) -> History:
    """Which ids of the pool each agent has, as bit masks: cheaper to draw than two sublists."""
    ids_a = [m for i, m in enumerate(pool) if mask_a >> i & 1]
    ids_b = [m for i, m in enumerate(pool) if mask_b >> i & 1]
    return session_id, agents, ids_a, ids_b


#: A session id, two distinct agent ids, and message ids for each, often the same ids.
AGENT_HISTORIES = st.builds(
    _history,
    HOSTILE_IDS,
    id_pairs(),
    st.lists(MESSAGE_IDS, min_size=1, max_size=4, unique=True),
    st.integers(0, 15),
    st.integers(0, 15),
)


def _check_two_agents(client: Any, history: History, window: int) -> None:
    session_id, (agent_a, agent_b), ids_a, ids_b = history
    repo = _fresh_repo(client)
    repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    owned = {agent_a: ids_a, agent_b: ids_b}
    for agent_id, ids in owned.items():
        repo.create_agent(session_id, _agent(agent_id, agent_id))
        for message_id in ids:
            repo.create_message(session_id, agent_id, _message(message_id, agent_id))
    # Rewriting one of A's messages must not touch B's message with the same id.
    if ids_a:
        repo.update_message(session_id, agent_a, _message(ids_a[0], agent_a))
    for agent_id, ids in owned.items():
        expected = [(i, [{"text": agent_id}]) for i in sorted(ids)]
        listed = repo.list_messages(session_id, agent_id, limit=None if window == 0 else 2, offset=window)
        wanted = expected if window == 0 else expected[window : window + 2]
        assert [(m.message_id, m.message["content"]) for m in listed] == wanted
    agent = repo.read_agent(session_id, agent_b)
    assert agent is not None
    assert agent.state == {"owner": agent_b}
    for message_id in set(ids_b) - set(ids_a):
        assert repo.read_message(session_id, agent_a, message_id) is None
    info = repo.session_info(session_id)
    assert info is not None
    assert info.message_counts == {agent_a: len(ids_a), agent_b: len(ids_b)}


@pytest.mark.slow
@settings(max_examples=EXAMPLES["agents"], deadline=None, suppress_health_check=_SUPPRESS)
@given(history=AGENT_HISTORIES, window=st.integers(0, 4))
def test_agents_never_list_each_others_messages(
    standalone_client: valkey.Valkey, history: History, window: int
) -> None:
    _check_two_agents(standalone_client, history, window)


@pytest.mark.backends("cluster")
@settings(max_examples=EXAMPLES["cluster"], deadline=None, suppress_health_check=_SUPPRESS)
@given(history=AGENT_HISTORIES, window=st.integers(0, 4))
def test_agents_never_list_each_others_messages_on_cluster(client: Any, history: History, window: int) -> None:
    _check_two_agents(client, history, window)


# -- lone surrogates --------------------------------------------------------------------------


def _with_surrogate(text: str, cut: int, surrogate: str) -> str:
    at = cut % (len(text) + 1)
    return text[:at] + surrogate + text[at:]


#: Text holding a lone surrogate (not valid Unicode: no client can send it).
SURROGATE_IDS = st.builds(_with_surrogate, SHORT_IDS, st.integers(0, 64), SURROGATES)


# One repository with session "s" and agent "s" per client (that is, per test run), and the key count
# it left: every example checks the count is unchanged after its refused calls.
_SURROGATE_SETUP: weakref.WeakKeyDictionary[Any, tuple[ValkeySessionRepository, int]] = weakref.WeakKeyDictionary()


def _surrogate_setup(client: Any) -> tuple[ValkeySessionRepository, int]:
    if client not in _SURROGATE_SETUP:
        repo = _fresh_repo(client)
        repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
        repo.create_agent("s", _agent("s", "s"))
        _SURROGATE_SETUP[client] = (repo, client.dbsize())
    return _SURROGATE_SETUP[client]


@pytest.mark.slow
@settings(max_examples=EXAMPLES["surrogates"], deadline=None, suppress_health_check=_SUPPRESS)
@given(bad=SURROGATE_IDS)
def test_lone_surrogates_are_refused_before_anything_is_written(standalone_client: valkey.Valkey, bad: str) -> None:
    repo, before = _surrogate_setup(standalone_client)
    good = "s"
    calls: list[Callable[[], object]] = [
        lambda: repo.create_session(Session(session_id=bad, session_type=SessionType.AGENT)),
        lambda: repo.create_session(Session(session_id="t", session_type=SessionType.AGENT), user_id=bad),
        lambda: repo.create_session(Session(session_id="t", session_type=SessionType.AGENT), tags=[bad]),
        lambda: repo.read_session(bad),
        lambda: repo.delete_session(bad),
        lambda: repo.session_info(bad),
        lambda: repo.create_agent(bad, _agent(good, good)),
        lambda: repo.create_agent(good, _agent(bad, good)),
        lambda: repo.read_agent(good, bad),
        lambda: repo.create_message(good, bad, _message(0, good)),
        lambda: repo.read_message(good, bad, 0),
        lambda: repo.list_messages(good, bad),
        lambda: repo.create_multi_agent(good, _Orchestrator(bad, good)),  # type: ignore[arg-type]
        lambda: repo.list_sessions(user_id=bad),
        lambda: repo.list_sessions(tag=bad),
        lambda: repo.fork_session(good, bad),
        lambda: _fresh_repo(standalone_client, user_id=bad),
        lambda: _fresh_repo(standalone_client, tags=[bad]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="valid Unicode"):
            call()
    assert standalone_client.dbsize() == before


# -- what goes on the wire --------------------------------------------------------------------

#: ElastiCache Serverless refuses commands with more arguments than this.
MAX_ARGUMENTS = 3999
# Commands that name no key.
_KEYLESS = frozenset({"SCRIPT", "CLIENT", "HELLO", "AUTH", "SELECT", "PING", "CLUSTER", "COMMAND", "READONLY"})
# Commands whose arguments after the name are all keys.
_ALL_KEYS = frozenset({"DEL", "EXISTS", "UNLINK"})
# Commands whose first argument is their only key.
_ONE_KEY = frozenset(
    {"GET", "SET", "HGET", "HGETALL", "HSET", "HMGET", "DUMP", "ZADD", "ZREM", "ZRANGEBYLEX", "ZREVRANGEBYLEX", "PTTL"}
)


@dataclass
class Wire:
    """Every command sent while a ``_record_wire()`` block ran, as its list of arguments."""

    commands: list[list[bytes]] = field(default_factory=list)

    def keys_of(self, command: list[bytes]) -> list[bytes]:
        name = command[0].decode().upper()
        if name in ("EVALSHA", "EVAL"):
            return command[3 : 3 + int(command[2])]
        if name in _ALL_KEYS:
            return command[1:]
        if name in _ONE_KEY:
            return command[1:2]
        if name in _KEYLESS:
            return []
        raise AssertionError(f"command {name} is not in this test's key table: add it (and to the ACL rules)")


def _parse_resp_commands(packed: bytes) -> Iterator[list[bytes]]:
    """Split a packed request (one command or a pipeline) into commands and their arguments."""
    at = 0
    while at < len(packed):
        assert packed[at : at + 1] == b"*", packed[at : at + 20]
        end = packed.index(b"\r\n", at)
        count = int(packed[at + 1 : end])
        at = end + 2
        args: list[bytes] = []
        for _ in range(count):
            assert packed[at : at + 1] == b"$"
            end = packed.index(b"\r\n", at)
            size = int(packed[at + 1 : end])
            args.append(packed[end + 2 : end + 2 + size])
            at = end + 2 + size + 2
        yield args


@contextmanager
def _record_wire() -> Iterator[Wire]:
    """Record every command valkey-py and redis-py connections send, handshakes included."""
    import redis.connection
    import valkey.connection

    wire = Wire()
    originals: list[tuple[type, Callable[..., Any]]] = []

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def send_packed_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
            chunks = command if isinstance(command, (list, tuple)) else [command]
            packed = b"".join(bytes(c) if not isinstance(c, str) else c.encode() for c in chunks)
            wire.commands.extend(_parse_resp_commands(packed))
            return original(self, command, *args, **kwargs)

        return send_packed_command

    for module in (valkey.connection, redis.connection):
        cls = module.AbstractConnection
        original = cls.__dict__["send_packed_command"]
        originals.append((cls, original))
        setattr(cls, "send_packed_command", wrap(original))  # noqa: B010
    try:
        yield wire
    finally:
        for cls, original in originals:
            setattr(cls, "send_packed_command", original)  # noqa: B010


def _big_session_workload(repo: ValkeySessionRepository, agents: int, messages_per_agent: int) -> None:
    """Create a big session, then list, export, import, fork and delete it."""
    repo.create_session(Session(session_id="big:{s}", session_type=SessionType.AGENT), user_id="u", tags=["t1", "t2"])
    agent_ids = [f"agent {i}:{{x}}" for i in range(agents)]
    for agent_id in agent_ids:
        repo.create_agent("big:{s}", _agent(agent_id, "big"))
        for i in range(messages_per_agent):
            repo.create_message("big:{s}", agent_id, _message(i, agent_id))
    repo.create_multi_agent("big:{s}", _Orchestrator("swarm", "big"))  # type: ignore[arg-type]
    for agent_id in agent_ids:
        assert len(repo.list_messages("big:{s}", agent_id)) == messages_per_agent
    repo.list_messages("big:{s}", agent_ids[0], limit=10, offset=5)
    info = repo.session_info("big:{s}")
    assert info is not None
    assert info.message_count == agents * messages_per_agent
    assert len(repo.list_sessions().sessions) == 1
    exported = repo.export_session("big:{s}")
    repo.fork_session("big:{s}", "fork*")
    repo.import_session(exported, overwrite=True)
    repo.delete_session("fork*")
    repo.delete_session("big:{s}")
    repo.import_session(exported)
    repo.delete_session("big:{s}")


def _check_wire(wire: Wire, prefix: str) -> int:
    """Every command within the argument limit, every key under the prefix, one slot per command.

    Returns the largest argument count seen.
    """
    assert wire.commands
    largest = max(len(command) for command in wire.commands)
    assert largest <= MAX_ARGUMENTS, f"a command with {largest} arguments"
    for command in wire.commands:
        keys = wire.keys_of(command)
        for key in keys:
            assert key.startswith(f"{prefix}:".encode()), (command[0], key)
        slots = {valkey.crc.key_slot(key) for key in keys}
        assert len(slots) <= 1, f"{command[0]!r} spans slots {slots}: {keys}"
    return largest


@pytest.mark.slow
def test_commands_stay_under_the_argument_limit_and_in_one_slot(standalone_client: valkey.Valkey) -> None:
    repo = ValkeySessionRepository(standalone_client, key_prefix="wire")
    with _record_wire() as wire:
        _big_session_workload(repo, agents=50, messages_per_agent=100)
    largest = _check_wire(wire, "wire")
    # The fork's create script carries the source session hash as one DUMP payload, so no command
    # grows with the number of agents (50 here): the largest is a fixed-size script call (the
    # create's 16 named arguments, as name/value pairs: EVALSHA, sha, 5, 5 keys, 32 values).
    assert 15 < largest <= 40
    # Every command naming a session key names only that session's keys.
    for session_id in ["big:{s}", "fork*"]:
        tag = repo.session_keys(session_id).session.rsplit(":", 1)[0].encode()
        for command in wire.commands:
            keys = wire.keys_of(command)
            if any(key.startswith(tag + b":") for key in keys):
                assert all(key.startswith(tag + b":") for key in keys), (command[0], keys)
    assert _keys_under(standalone_client, "wire") == []


@pytest.mark.backends("cluster")
def test_commands_stay_in_one_slot_on_cluster(backend: Any) -> None:
    cluster_client = backend.make_client("valkey-cluster-bytes")
    try:
        repo = ValkeySessionRepository(cluster_client, key_prefix="wire")
        with _record_wire() as wire:
            _big_session_workload(repo, agents=10, messages_per_agent=20)
        _check_wire(wire, "wire")
    finally:
        cluster_client.close()


def test_fork_of_a_session_with_many_agents_stays_under_the_argument_limit(standalone_client: valkey.Valkey) -> None:
    repo = ValkeySessionRepository(standalone_client, key_prefix="wire")
    repo.create_session(Session(session_id="many", session_type=SessionType.AGENT))
    for i in range(2000):
        repo.create_agent("many", _agent(f"a{i}", "many"))
        repo.create_message("many", f"a{i}", _message(0, "many"))
    with _record_wire() as wire:
        repo.fork_session("many", "copy")
    _check_wire(wire, "wire")
