"""The session manager between two processes and around a session that vanishes.

Each race is stepped deterministically: the other process's whole step runs inside this
manager's repository call, between the read that found nothing and the create that follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import valkey
from strands import Agent, tool
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.multiagent import GraphBuilder, Swarm
from strands.types.exceptions import EventLoopException, SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    SessionNotFoundError,
    ValkeySessionManager,
    ValkeySessionRepository,
    ValkeyStorage,
)
from strands_valkey_session_manager._write_behind import WriteBehindError
from strands_valkey_session_manager.scripted_model import ScriptedModel, ToolCall
from tests.conftest import Backend
from tests.nesting import depth_and_bottom, nested
from tests.roundtrips import count_round_trips
from tests.servers import ServerProcess

SID = "chat:{42}/race"


@pytest.fixture
def two_clients(backend: Backend) -> Iterator[tuple[Any, Any]]:
    """Two clients of their own on the backend: what two processes hold."""
    kind = backend.client_kinds()[0]
    first, second = backend.make_client(kind), backend.make_client(kind)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _once(step: Callable[[], object]) -> Callable[[], None]:
    """``step`` the first time it is called, nothing afterwards."""
    pending = [step]

    def run() -> None:
        if pending:
            pending.pop()()

    return run


def _agent(manager: ValkeySessionManager, turns: list[Any], **kwargs: Any) -> Agent:
    return Agent(
        agent_id="bot",
        model=ScriptedModel(turns),
        session_manager=manager,
        conversation_manager=SlidingWindowConversationManager(window_size=2),
        callback_handler=None,
        **kwargs,
    )


# -- 1. two processes open the same new session ---------------------------------------------------


@pytest.mark.backends("valkey9", "cluster")
def test_the_manager_that_loses_the_session_create_race_adopts_the_session(two_clients: tuple[Any, Any]) -> None:
    client_a, client_b = two_clients
    winner: list[Agent] = []

    def other_process_opens_the_session() -> None:
        agent = _agent(ValkeySessionManager(session_id=SID, client=client_a, user_id="alice"), ["hi there"])
        agent("hello")
        winner.append(agent)

    step = _once(other_process_opens_the_session)

    class SteppedManager(ValkeySessionManager):
        def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
            found = super().read_session(session_id, **kwargs)
            step()  # the other process creates the session after our read found nothing
            return found

    loser = SteppedManager(session_id=SID, client=client_b, user_id="bob")
    assert winner, "the stepped read did not run"
    stored = ValkeySessionRepository(client_a).read_session(SID)
    assert stored is not None
    assert loser.session.created_at == stored.created_at
    # Not new to the loser: its agent is restored from what the winner stored.
    agent = _agent(loser, ["and again"])
    assert agent.messages == winner[0].messages
    agent("more")
    texts = [m.message["content"][0]["text"] for m in loser.list_messages(SID, "bot")]
    assert texts == ["hello", "hi there", "more", "and again"]
    info = loser.session_info(SID)
    assert info is not None
    assert info.user_id == "alice"
    # A direct create of an existing session keeps the SDK's semantics.
    with pytest.raises(SessionException, match="already exists"):
        loser.create_session(Session(session_id=SID, session_type=SessionType.AGENT))


def test_adopting_the_session_costs_one_more_read(standalone_client: Any, valkey9_server: ServerProcess) -> None:
    other_client: Any = valkey.Valkey(valkey9_server.host, valkey9_server.port)
    try:
        other = ValkeySessionRepository(other_client)
        other.create_session(Session(session_id="warm-up", session_type=SessionType.AGENT))  # scripts loaded
        step = _once(lambda: other.create_session(Session(session_id=SID, session_type=SessionType.AGENT)))

        class SteppedManager(ValkeySessionManager):
            def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
                found = super().read_session(session_id, **kwargs)
                step()
                return found

        with count_round_trips() as trips:
            SteppedManager(session_id=SID, client=standalone_client)
        # Ours: HGET, the create pipeline, the ZREM of the catalog entry that pipeline added (none
        # when both creates fell in the same millisecond: the same entry), HGET again; the other
        # process's create pipeline in between.
        assert trips.commands[0] == trips.commands[-1] == "HGET", trips
        assert trips.commands[1:3] == ["ZRANGEBYLEX", "ZRANGEBYLEX"], trips
        assert trips.commands[3:-1] in ([], ["ZREM"]), trips
    finally:
        other_client.close()


# -- 2. two processes create the same agent ------------------------------------------------------


@pytest.mark.backends("valkey9", "cluster")
@pytest.mark.parametrize("session_was", ["existing", "new to B"])
@pytest.mark.parametrize("write_behind", [False, True], ids=["direct", "write-behind"])
def test_an_agent_created_meanwhile_is_restored_not_overwritten(
    two_clients: tuple[Any, Any], session_was: str, write_behind: bool
) -> None:
    """B reads no agent; A creates it and completes two turns (its sliding window trims, its state
    changes); B's create then finds it exists. B restores A's agent exactly and continues after it."""
    client_a, client_b = two_clients
    if session_was == "existing":
        ValkeySessionManager(session_id=SID, client=client_a)
    a_side: list[Agent] = []

    def other_process_runs_the_agent() -> None:
        agent = _agent(ValkeySessionManager(session_id=SID, client=client_a), ["one", "two"], state={"k": "v"})
        agent("first")
        agent.state.set("turns", 2)
        agent("second")
        a_side.append(agent)

    step = _once(other_process_runs_the_agent)

    class SteppedManager(ValkeySessionManager):
        def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
            step()  # A runs between B's finding no agent (read, or a new session) and B's create
            super().create_agent(session_id, session_agent, **kwargs)

    b_manager = SteppedManager(session_id=SID, client=client_b, write_behind=write_behind)
    b_agent = _agent(b_manager, ["three"], state={"mine": True})
    assert a_side, "the stepped create did not run"
    a_agent = a_side[0]
    assert a_agent.conversation_manager.removed_message_count == 2
    assert b_agent.messages == a_agent.messages
    assert b_agent.state.get() == {"k": "v", "turns": 2}
    assert b_agent.conversation_manager.get_state() == a_agent.conversation_manager.get_state()

    b_agent("third")
    reader = ValkeySessionRepository(client_a)
    stored = reader.list_messages(SID, "bot")
    assert [m.message_id for m in stored] == list(range(6))
    texts = [m.message["content"][0]["text"] for m in stored]
    assert texts == ["first", "one", "second", "two", "third", "three"]
    record = reader.read_agent(SID, "bot")
    assert record is not None
    assert record.state == {"k": "v", "turns": 2}
    assert record.conversation_manager_state == b_agent.conversation_manager.get_state()
    assert record.conversation_manager_state["removed_message_count"] == 4
    b_manager.close()


# -- 3. two processes start the same Graph or Swarm -------------------------------------------------


def _orchestrator(kind: str, manager: ValkeySessionManager, reply: str) -> Any:
    node = Agent(name="node", agent_id="node", model=ScriptedModel([reply]), callback_handler=None)
    if kind == "swarm":
        return Swarm([node], session_manager=manager, id="team")
    builder = GraphBuilder()
    builder.add_node(node, "node")
    builder.set_entry_point("node")
    builder.set_graph_id("team")
    builder.set_session_manager(manager)
    return builder.build()


@pytest.mark.backends("valkey9", "cluster")
@pytest.mark.parametrize("kind", ["graph", "swarm"])
def test_an_orchestrator_created_meanwhile_is_restored_not_overwritten(two_clients: tuple[Any, Any], kind: str) -> None:
    """B opened a new session (so it reads no orchestrator state); A adopts the session and runs
    the Graph/Swarm to completion; B's start must restore A's state, not overwrite it with a fresh one."""
    client_a, client_b = two_clients
    b_manager = ValkeySessionManager(session_id=SID, client=client_b)
    a_manager = ValkeySessionManager(session_id=SID, client=client_a)
    a_side = _orchestrator(kind, a_manager, "done by A")
    a_side("go")
    stored = ValkeySessionRepository(client_a).read_multi_agent(SID, "team")
    assert stored is not None and stored["status"] == "completed"

    _orchestrator(kind, b_manager, "done by B")  # restores the stored state (a completed one starts afresh)
    assert ValkeySessionRepository(client_a).read_multi_agent(SID, "team") == stored
    a_manager.close()
    b_manager.close()


# -- 4. a session that vanishes mid-conversation ---------------------------------------------------


@pytest.mark.backends("valkey9", "cluster")
@pytest.mark.parametrize("state_changed", [False, True], ids=["messages", "messages-and-state"])
def test_a_vanished_session_raises_session_not_found_and_keeps_agent_messages_as_stored(
    two_clients: tuple[Any, Any], state_changed: bool
) -> None:
    client = two_clients[0]
    manager = ValkeySessionManager(session_id=SID, client=client)
    agent = Agent(
        agent_id="bot", model=ScriptedModel(["one", "unused"]), session_manager=manager, callback_handler=None
    )
    agent("first")
    if state_changed:  # the end of the turn then also fails to store the state
        agent.state.set("topic", "valkey")
    before = list(agent.messages)
    ValkeySessionRepository(client).delete_session(SID)  # expired, pruned, lost by a restart

    for _ in range(2):  # every later turn says the same, and adds nothing unsaved
        with pytest.raises(SessionNotFoundError, match="no longer exists") as caught:
            agent("second")
        assert "expired" in str(caught.value)
        assert agent.messages == before
        assert isinstance(agent.model, ScriptedModel)
        assert agent.model.remaining == 1  # the prompt is the turn's first write: the model was not called
    assert ValkeySessionRepository(client).read_session(SID) is None

    # Recovery as the README shows: a new manager (the session is created again), a new agent
    # replaying what the application still holds.
    fresh = ValkeySessionManager(session_id=SID, client=client)
    replayed = Agent(
        agent_id="bot",
        model=ScriptedModel(["three"]),
        session_manager=fresh,
        messages=agent.messages,
        state=agent.state.get(),
        callback_handler=None,
    )
    replayed("second")
    texts = [m.message["content"][0]["text"] for m in fresh.list_messages(SID, "bot")]
    assert texts == ["first", "one", "second", "three"]
    stored = fresh.read_agent(SID, "bot")
    assert stored is not None
    assert stored.state == ({"topic": "valkey"} if state_changed else {})


# -- 6. options ------------------------------------------------------------------------------------


def test_a_misspelled_option_is_a_type_error_naming_it(standalone_client: Any) -> None:
    with pytest.raises(TypeError, match=r"'tll' \(did you mean 'ttl'\?\)"):
        ValkeySessionManager(session_id=SID, client=standalone_client, tll=3600)
    with pytest.raises(TypeError, match=r"'write_behnd' \(did you mean 'write_behind'\?\), 'zzz'"):
        ValkeySessionManager(session_id=SID, client=standalone_client, zzz=1, write_behnd=True)
    assert standalone_client.keys("*") == []  # refused before anything was written


def test_from_url_takes_manager_options_flat_or_in_manager_kwargs(valkey9_server: ServerProcess) -> None:
    flat = ValkeySessionManager.from_url(valkey9_server.url, session_id="flat", ttl=3600, user_id="alice")
    nested = ValkeySessionManager.from_url(
        valkey9_server.url, session_id="nested", manager_kwargs={"ttl": 3600}, client_name="svsm-test"
    )
    try:
        for manager, sid in ((flat, "flat"), (nested, "nested")):
            assert 0 < manager.client.pttl(manager.session_keys(sid).session) <= 3_600_000
        info = flat.session_info("flat")
        assert info is not None
        assert info.user_id == "alice"
        assert nested.client.client_getname() in ("svsm-test", b"svsm-test")
    finally:
        flat.close()
        nested.close()
    with pytest.raises(TypeError, match=r"manager_kwargs got unexpected keyword argument 'tll'"):
        ValkeySessionManager.from_url(valkey9_server.url, session_id="x", manager_kwargs={"tll": 1})
    with pytest.raises(TypeError, match="'ttl' twice"):
        ValkeySessionManager.from_url(valkey9_server.url, session_id="x", ttl=1, manager_kwargs={"ttl": 2})


@pytest.mark.parametrize("cluster", [False, True], ids=["standalone", "cluster"])
def test_from_url_refuses_a_keyword_neither_the_manager_nor_the_client_takes(
    valkey9_server: ServerProcess, standalone_client: Any, cluster: bool
) -> None:
    """Not valkey-py's TypeError from inside its connection on first use, nor (cluster) ignored."""
    message = r"got unexpected keyword argument 'tll' \(did you mean 'ttl'\?\): not an option of"
    with pytest.raises(TypeError, match=r"ValkeySessionManager\.from_url " + message):
        ValkeySessionManager.from_url(valkey9_server.url, session_id="x", cluster=cluster, tll=3600)
    with pytest.raises(TypeError, match=r"ValkeyStorage\.from_url got unexpected keyword argument 'socket_timout'"):
        ValkeyStorage.from_url(valkey9_server.url, cluster=cluster, socket_timout=1)
    assert standalone_client.keys("*") == []  # refused before connecting
    # Client options, given flat, still reach the client.
    manager = ValkeySessionManager.from_url(
        valkey9_server.url, session_id="x", ttl=60, socket_timeout=5, health_check_interval=10
    )
    try:
        assert manager.client.connection_pool.connection_kwargs["socket_timeout"] == 5
    finally:
        manager.close()


# -- 7. records nested deeper than Python recurses -------------------------------------------------


@pytest.mark.parametrize("write_behind", [False, True], ids=["direct", "write-behind"])
def test_records_nested_1000_levels_deep_are_written_by_the_manager(standalone_client: Any, write_behind: bool) -> None:
    manager = ValkeySessionManager(session_id=SID, client=standalone_client, write_behind=write_behind)
    manager.create_agent(SID, SessionAgent(agent_id="bot", state={}, conversation_manager_state={}))
    body = nested(1000)
    manager.create_message(SID, "bot", SessionMessage(message=body, message_id=0))  # type: ignore[arg-type]
    manager.update_agent(SID, SessionAgent(agent_id="bot", state={"deep": nested(1000)}, conversation_manager_state={}))
    # With write-behind the record was copied when queued: changing it afterwards changes nothing stored.
    body["content"][0]["text"] = "changed after the call"
    manager.close()
    reader = ValkeySessionRepository(standalone_client)
    (stored,) = reader.list_messages(SID, "bot")
    assert stored.message["content"][0] == {"text": "deep"}
    assert depth_and_bottom(stored.message) == (1000, {"bottom": b"\x00\xff", "n": 10**30})
    agent = reader.read_agent(SID, "bot")
    assert agent is not None
    assert depth_and_bottom(agent.state["deep"]) == (1000, {"bottom": b"\x00\xff", "n": 10**30})


def test_with_write_behind_a_vanished_session_is_raised_within_the_turn(standalone_client: Any) -> None:
    manager = ValkeySessionManager(session_id=SID, client=standalone_client, write_behind=True)
    agent = Agent(agent_id="bot", model=ScriptedModel(["one", "two"]), session_manager=manager, callback_handler=None)
    agent("first")
    ValkeySessionRepository(standalone_client).delete_session(SID)
    with pytest.raises(Exception) as caught:  # the chain is checked below
        agent("second")
    chain = _chain(caught.value)
    # Found in the background, raised at the next queued write (inside the SDK's event loop, which
    # wraps it in its EventLoopException) or at the end of the turn, whichever comes first.
    assert any(isinstance(e, WriteBehindError) and isinstance(e.__cause__, SessionNotFoundError) for e in chain), chain
    assert len(agent.messages) == 4  # found in the background: the turn's messages stay
    assert ValkeySessionRepository(standalone_client).read_session(SID) is None  # never recreated behind the back
    manager.close()


def test_a_session_vanishing_mid_turn_surfaces_as_the_cause_of_the_sdk_error(standalone_client: Any) -> None:
    @tool
    def vanish() -> str:
        """Delete the session (as an expiry or a prune would, during the turn)."""
        ValkeySessionRepository(standalone_client).delete_session(SID)
        return "gone"

    manager = ValkeySessionManager(session_id=SID, client=standalone_client)
    agent = Agent(
        agent_id="bot",
        model=ScriptedModel([ToolCall("vanish"), "unused"]),
        tools=[vanish],
        session_manager=manager,
        callback_handler=None,
    )
    with pytest.raises(Exception) as caught:  # which one the SDK lets through is checked below
        agent("go")
    # The tool result's append fails inside the SDK's event loop, which wraps the error in its
    # EventLoopException; the end of the turn then fails to store the agent's state too, raised
    # with the first as its context.
    chain = _chain(caught.value)
    assert any(isinstance(e, SessionNotFoundError) for e in chain), chain
    assert isinstance(chain[0], (SessionNotFoundError, EventLoopException))
    wrapped = [e for e in chain if isinstance(e, EventLoopException)]
    assert wrapped
    assert isinstance(wrapped[0].__cause__, SessionNotFoundError)
    assert "no longer exists" in str(wrapped[0].__cause__)
    assert [m["role"] for m in agent.messages] == ["user", "assistant"]  # the unsaved tool result is taken back


def _chain(error: BaseException | None) -> list[BaseException]:
    """An error and the errors behind it (causes, else contexts)."""
    chain: list[BaseException] = []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain
