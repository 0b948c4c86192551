"""Stateful property test: two repositories against an in-memory model, with faults as rules.

Hypothesis drives two actors (each a ``ValkeySessionRepository`` with ``check_versions`` on its
own client, each client behind its own :class:`interleave.LostReplyProxy`) through random
sequences of creates, appends, agent updates, redactions, deletes and restores over two sessions
and two agents, mixed with faults on the real server:

- a killed connection (``CLIENT KILL`` of an actor's connection: its next command fails, the
  repository retries);
- a lost reply (the proxy swallows the reply to an actor's next script after the server ran it:
  the retry must find its own write, not duplicate it or report a conflict);
- one key of a session evicted (``DEL`` of one of its five keys): the session is damaged, and
  every later restore or write of it must raise ``DamagedSessionError`` (a missing session hash:
  the session is gone, ``SessionNotFoundError`` or ``DamagedSessionError``);
- a server restart without persistence: every session is gone, writes raise
  ``SessionNotFoundError``.

The model predicts every outcome exactly: which write succeeds, which is refused and with which
error (including ``SessionConflictError`` from the versions each actor has seen), and what a
restore returns. At the end of each example every session is read back and compared with the
model (no acknowledged write lost), and :func:`interleave.check_integrity` runs on the intact
sessions. Examples are derandomised and few, so a run is reproducible and takes seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import valkey
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test
from strands.types.exceptions import SessionException

from strands_valkey_session_manager import (
    AgentExistsError,
    DamagedSessionError,
    SessionConflictError,
    SessionNotFoundError,
    ValkeySessionManager,
    ValkeySessionRepository,
)
from tests import interleave
from tests.interleave import LostReplyProxy, agent, message, session, text_of
from tests.servers import HOST, ServerProcess, restart, start_server

SESSIONS = ("s1", "s2")
#: The view of an agent a process was refused to create without having read it: no version matches.
NOT_SEEN = -1
AGENTS = ("a", "b")
ACTORS = (0, 1)
KEY_KINDS = ("session", "agents", "messages", "order", "multi")
#: Examples and steps per example: modest, so the file runs in seconds; derandomised for CI.
EXAMPLES = 60
STEPS = 40
MAX_RESTARTS_PER_EXAMPLE = 1

STATS: dict[str, int] = {"examples": 0, "steps": 0, "acknowledged": 0, "refused": 0, "faults": 0, "lost": 0}


@dataclass
class World:
    """The server, and per actor a proxy and a client through it; an admin client straight to it."""

    server: ServerProcess
    proxies: list[LostReplyProxy]
    clients: list[Any]
    admin: Any


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        server = start_server("valkey9")
        stack.callback(server.stop)
        proxies, clients = [], []
        for actor in ACTORS:
            proxy = LostReplyProxy(server.port)
            stack.callback(proxy.close)
            client: Any = valkey.Valkey(
                HOST, proxy.port, client_name=f"actor{actor}", socket_timeout=5, socket_connect_timeout=5
            )
            stack.callback(client.close)
            proxies.append(proxy)
            clients.append(client)
        admin: Any = valkey.Valkey(HOST, server.port, decode_responses=True)
        stack.callback(admin.close)
        yield World(server, proxies, clients, admin)


# -- the model -------------------------------------------------------------------------------------


@dataclass
class MAgent:
    state: int = 0
    version: int = 1
    messages: dict[int, str] = field(default_factory=dict)


@dataclass
class MSession:
    agents: dict[str, MAgent] = field(default_factory=dict)
    #: Some of its keys were evicted: every restore and write must raise DamagedSessionError.
    damaged: bool = False


class Refused(Exception):
    """What the model predicts: this error type (the write changes nothing); with ``or_ok``,
    success is as good (a repeat that cannot tell whether its first attempt ran)."""

    def __init__(self, *types: type[BaseException], or_ok: bool = False) -> None:
        super().__init__(", ".join(t.__name__ for t in types) + (" or success" if or_ok else ""))
        self.types = types
        self.or_ok = or_ok


class Machine(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        self.prefix = interleave.fresh_prefix("st")
        self.sessions: dict[str, MSession] = {}
        # Sessions whose hash was evicted while other keys remained: gone, with leftovers.
        self.headless: set[str] = set()
        # Per actor: (session, agent) -> the version its repository's writes are based on.
        self.seen: list[dict[tuple[str, str], int]] = [{} for _ in ACTORS]
        self.repos = [self._repository(actor) for actor in ACTORS]
        self.counter = 0
        self.restarts = 0
        # Per actor: its next call may be repeated (connection killed, reply armed to be lost).
        self.disturbed = [False for _ in ACTORS]
        STATS["examples"] += 1

    def _repository(self, actor: int) -> ValkeySessionRepository:
        return ValkeySessionRepository(
            self.world.clients[actor], key_prefix=self.prefix, check_versions=True, retries=3, retry_backoff=0.005
        )

    def _tag(self, actor: int) -> str:
        self.counter += 1
        return f"{'AB'[actor]}{self.counter}"

    def _expect(self, actor: int, what: str, do: Callable[[], Any], refused: Refused | None) -> Any:
        """Run ``do``; it must succeed when ``refused`` is None, else raise one of its types."""
        STATS["steps"] += 1
        if not self.world.proxies[actor].armed:
            self.disturbed[actor] = False  # the call below is the one a repeat may follow
        try:
            result = do()
        except Exception as e:
            if refused is None:
                raise AssertionError(f"{what}: the model expected success, got {type(e).__name__}: {e}") from e
            if not isinstance(e, refused.types):
                raise AssertionError(f"{what}: the model expected {refused}, got {type(e).__name__}: {e}") from e
            STATS["refused"] += 1
            return None
        if refused is not None and not refused.or_ok:
            raise AssertionError(f"{what}: the model expected {refused}, the call succeeded")
        STATS["acknowledged"] += 1
        return result

    def _write_guard(self, sid: str) -> Refused | None:
        """Why any write into ``sid`` must be refused, from the session's state alone."""
        if sid in self.headless:
            return Refused(SessionNotFoundError, DamagedSessionError)
        if sid not in self.sessions:
            return Refused(SessionNotFoundError)
        if self.sessions[sid].damaged:
            return Refused(DamagedSessionError)
        return None

    def _agent_write(self, actor: int, sid: str, aid: str) -> tuple[Refused | None, MAgent | None]:
        """The refusal an agent write gets (guard, then the versions check), or the agent to change;
        (None, None) for an agent the model does not hold in an existing session (not predicted)."""
        guard = self._write_guard(sid)
        found = self.sessions[sid].agents.get(aid) if sid in self.sessions else None
        if guard is not None:
            return (None, None) if sid in self.sessions and found is None else (guard, None)
        if found is None:
            return None, None
        seen = self.seen[actor].get((sid, aid))
        if seen is not None and seen != found.version:
            return Refused(SessionConflictError), None
        return None, found

    def _wrote(self, actor: int, sid: str, aid: str, found: MAgent) -> None:
        """After an acknowledged write: the writer's view is the version its write made. (Read from
        the server: a repeat after a lost reply may bump the number once more; what the model
        predicts is who is stale, not the numbering.)"""
        keys = ValkeySessionRepository(self.world.admin, key_prefix=self.prefix).session_keys(sid)
        found.version = int(self.world.admin.hget(keys.session, f"v:{aid}"))
        self.seen[actor][(sid, aid)] = found.version

    @initialize()
    def two_conversations(self) -> None:
        """Both sessions with agent a, restored by both actors: most steps then meet live data."""
        for sid in SESSIONS:
            self.create_session(0, sid)
            self.create_agent(1, sid, "a")
            for actor in ACTORS:
                self.restore(actor, sid, "a")

    # -- operations ---------------------------------------------------------------------------------

    @rule(actor=st.sampled_from(ACTORS), sid=st.sampled_from(SESSIONS))
    def create_session(self, actor: int, sid: str) -> None:
        exists = sid in self.sessions
        # Leftover keys of a session whose hash is gone hold the rest of a conversation: refused.
        refused = Refused(SessionException) if exists else None
        if sid in self.headless:
            refused = Refused(DamagedSessionError)
        self._expect(actor, f"create_session {sid}", lambda: self.repos[actor].create_session(session(sid)), refused)
        if refused is None:
            self.sessions[sid] = MSession()

    @rule(actor=st.sampled_from(ACTORS), sid=st.sampled_from(SESSIONS), aid=st.sampled_from(AGENTS))
    def create_agent(self, actor: int, sid: str, aid: str) -> None:
        refused = self._write_guard(sid)
        if refused is None and aid in self.sessions[sid].agents:
            refused = Refused(AgentExistsError)
        state = self.counter
        self._expect(
            actor,
            f"create_agent {sid}/{aid} by {actor}",
            lambda: self.repos[actor].create_agent(sid, agent(aid, n=state)),
            refused,
        )
        if refused is not None and AgentExistsError in refused.types:
            # A process refused because the agent exists has not seen it (unless it restored it
            # before): its writes are conflicts until it restores the agent.
            self.seen[actor].setdefault((sid, aid), NOT_SEEN)
        if refused is None:
            self.sessions[sid].agents[aid] = created = MAgent(state=state)
            self._wrote(actor, sid, aid, created)

    @rule(actor=st.sampled_from(ACTORS), sid=st.sampled_from(SESSIONS), aid=st.sampled_from(AGENTS))
    def append(self, actor: int, sid: str, aid: str) -> None:
        refused, found = self._agent_write(actor, sid, aid)
        if refused is None and found is None:
            return  # no such agent: not a case this model predicts
        message_id = len(found.messages) if found is not None else 0
        text = text_of(sid, aid, message_id, self._tag(actor))
        self._expect(
            actor,
            f"append {sid}/{aid}/{message_id} by {actor}",
            lambda: self.repos[actor].create_message(sid, aid, message(sid, aid, message_id, text.rsplit("|", 1)[1])),
            refused,
        )
        if refused is None and found is not None:
            found.messages[message_id] = text
            self._wrote(actor, sid, aid, found)

    @rule(actor=st.sampled_from(ACTORS), sid=st.sampled_from(SESSIONS), aid=st.sampled_from(AGENTS))
    def update_agent(self, actor: int, sid: str, aid: str) -> None:
        refused, found = self._agent_write(actor, sid, aid)
        if refused is None and found is None:
            return
        state = self.counter = self.counter + 1
        self._expect(
            actor,
            f"update_agent {sid}/{aid} by {actor}",
            lambda: self.repos[actor].update_agent(sid, agent(aid, n=state)),
            refused,
        )
        if refused is None and found is not None:
            found.state = state
            self._wrote(actor, sid, aid, found)

    @rule(actor=st.sampled_from(ACTORS), sid=st.sampled_from(SESSIONS), aid=st.sampled_from(AGENTS))
    def redact(self, actor: int, sid: str, aid: str) -> None:
        held = self.sessions[sid].agents.get(aid) if sid in self.sessions else None
        if held is None or not held.messages:
            return  # only redactions of stored messages are predicted
        refused, found = self._agent_write(actor, sid, aid)
        message_id = max(held.messages)
        tag = self._tag(actor) + "r"
        self._expect(
            actor,
            f"redact {sid}/{aid}/{message_id} by {actor}",
            lambda: self.repos[actor].update_message(sid, aid, message(sid, aid, message_id, tag)),
            refused,
        )
        if refused is None and found is not None:
            found.messages[message_id] = text_of(sid, aid, message_id, tag)
            self._wrote(actor, sid, aid, found)

    @rule(actor=st.sampled_from(ACTORS), sid=st.sampled_from(SESSIONS))
    def delete_session(self, actor: int, sid: str) -> None:
        # A session whose hash alone is gone (headless) still holds keys: delete removes them.
        exists = sid in self.sessions or sid in self.headless
        # A delete repeated after a failed attempt takes "missing" for its own earlier success
        # (repository.delete_session): it cannot tell an attempt that never reached the server.
        refused = None if exists else Refused(SessionException, or_ok=self.disturbed[actor])
        self._expect(actor, f"delete_session {sid} by {actor}", lambda: self.repos[actor].delete_session(sid), refused)
        self.sessions.pop(sid, None)
        self.headless.discard(sid)

    @rule(actor=st.sampled_from(ACTORS), sid=st.sampled_from(SESSIONS), aid=st.sampled_from(AGENTS))
    def restore(self, actor: int, sid: str, aid: str) -> None:
        """What a new process does: a new repository reads the session, the agent, its messages;
        what it reads must be exactly what the model holds."""
        self.repos[actor] = repo = self._repository(actor)
        self.seen[actor] = {}
        STATS["steps"] += 1
        stored = repo.read_session(sid)
        if sid not in self.sessions:
            assert stored is None, f"restore {sid}: the session should be gone"
            return
        assert stored is not None, f"restore {sid}: an existing session was not found"
        model = self.sessions[sid]
        if model.damaged:
            if aid not in model.agents:
                return  # not predicted: whether an absent agent's restore notices the damage
            with pytest.raises(DamagedSessionError):
                repo.read_agent(sid, aid)
                repo.list_messages(sid, aid)
            return
        found = repo.read_agent(sid, aid)
        expected = model.agents.get(aid)
        if expected is None:
            assert found is None, f"restore {sid}/{aid}: an agent the model does not hold"
        else:
            assert found is not None, f"restore {sid}/{aid}: an acknowledged agent is missing"
            assert found.state == {"n": expected.state}, f"restore {sid}/{aid}: state"
        listed = [(m.message_id, m.message["content"][0]["text"]) for m in repo.list_messages(sid, aid)]
        want = sorted(expected.messages.items()) if expected is not None else []
        assert listed == want, f"restore {sid}/{aid}: messages differ from the acknowledged writes"
        self.seen[actor][(sid, aid)] = expected.version if expected is not None else 0

    # -- faults -------------------------------------------------------------------------------------

    @rule(actor=st.sampled_from(ACTORS))
    def kill_connection(self, actor: int) -> None:
        """``CLIENT KILL`` of the actor's connection(s): its next command meets a closed socket."""
        STATS["faults"] += 1
        for entry in self.world.admin.client_list():
            if entry.get("name") == f"actor{actor}":
                self.world.admin.client_kill_filter(_id=entry["id"])
        self.world.proxies[actor].wait_closed()
        self.disturbed[actor] = True

    @rule(actor=st.sampled_from(ACTORS))
    def lose_next_reply(self, actor: int) -> None:
        """The reply to the actor's next script is lost after the server ran it."""
        STATS["faults"] += 1
        self.world.proxies[actor].lose_reply_to(b"EVALSHA")
        self.disturbed[actor] = True

    @rule(sid=st.sampled_from(SESSIONS), kind=st.sampled_from(KEY_KINDS))
    def evict_key(self, sid: str, kind: str) -> None:
        """One of the session's five keys disappears (eviction, a manual DEL)."""
        keys = ValkeySessionRepository(self.world.admin, key_prefix=self.prefix).session_keys(sid)
        if not self.world.admin.delete(keys.all()[KEY_KINDS.index(kind)]):
            return  # the key did not exist: nothing changed
        STATS["faults"] += 1
        if kind != "session":
            if sid in self.sessions:
                self.sessions[sid].damaged = True
            return
        self.sessions.pop(sid, None)
        # Leftover keys (agents, messages) of a session whose hash is gone.
        if self.world.admin.exists(*keys.all()[1:]):
            self.headless.add(sid)

    @precondition(lambda self: self.restarts < MAX_RESTARTS_PER_EXAMPLE)
    @rule()
    def restart_without_persistence(self) -> None:
        """The server restarts with no RDB or AOF: everything is gone."""
        STATS["faults"] += 1
        self.restarts += 1
        restart(self.world.server)
        for proxy in self.world.proxies:
            proxy.wait_closed()
        self.disturbed = [True for _ in ACTORS]
        self.sessions.clear()
        self.headless.clear()

    # -- the end of an example ----------------------------------------------------------------------

    def teardown(self) -> None:
        """Every session is exactly what the model holds; no acknowledged write is lost."""
        for proxy in self.world.proxies:
            proxy.lose_reply_to(None)
        admin = self.world.admin
        for sid in SESSIONS:
            stored = interleave.read_back(admin, self.prefix, sid) if sid not in self.headless else None
            model = self.sessions.get(sid)
            if model is None or model.damaged or sid in self.headless:
                if model is None and sid not in self.headless:
                    assert stored is None, f"session {sid} should not exist"
                continue
            assert stored is not None, f"session {sid}: acknowledged session lost"
            want_agents = {aid: {"n": a.state} for aid, a in model.agents.items()}
            assert stored.agents == want_agents, f"session {sid}: agents"
            for aid, a in model.agents.items():
                lost = set(a.messages.items()) - set(stored.messages[aid])
                STATS["lost"] += len(lost)
                assert stored.messages[aid] == sorted(a.messages.items()), f"session {sid}/{aid}: messages"
        skip = {sid for sid, m in self.sessions.items() if m.damaged} | self.headless
        interleave.check_integrity(admin, self.prefix, skip=skip)


@pytest.mark.slow
def test_two_repositories_against_the_model(world: World) -> None:
    Machine.world = world
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
            # One bug at a time: while one is open, shrinking every distinct failure takes minutes.
            report_multiple_bugs=False,
        ),
    )
    print(f"stateful: {STATS}")
    assert STATS["examples"] >= EXAMPLES
    assert STATS["faults"] > 0 and STATS["acknowledged"] > 0
    assert STATS["lost"] == 0


# -- minimised from the machine above ---------------------------------------------------------------


@pytest.mark.parametrize("write", ["update_agent", "update_message"])
def test_an_update_into_a_session_whose_hash_was_evicted_is_refused(world: World, write: str) -> None:
    """Only the session hash of a session is evicted; a repository that never read the agent
    updates it. ``update_record.lua`` checks only that the record's field exists (it does, in the
    leftover agents/messages hash), so the update is acknowledged, and its version bump and
    ``updated`` stamp create a new session hash without a record. After that ``read_session``
    says the session does not exist while ``create_session`` says it does: no session manager can
    open that id again, and the acknowledged update is unreachable. The update must be refused
    (the session is gone or damaged), writing nothing."""
    prefix = interleave.fresh_prefix("hl")
    admin = world.admin
    repo = ValkeySessionRepository(admin, key_prefix=prefix)
    repo.create_session(session("s"))
    repo.create_agent("s", agent("a", n=0))
    repo.create_message("s", "a", message("s", "a", 0, "seed"))
    keys = repo.session_keys("s")
    admin.delete(keys.session)
    writer = ValkeySessionRepository(admin, key_prefix=prefix, check_versions=True)
    with pytest.raises((SessionNotFoundError, DamagedSessionError)):
        if write == "update_agent":
            writer.update_agent("s", agent("a", n=1))
        else:
            writer.update_message("s", "a", message("s", "a", 0, "redacted"))
    assert not admin.exists(keys.session), f"a session hash without a record: {admin.hgetall(keys.session)}"
    # The id stays usable once the damaged session is deleted: a new conversation can start under it.
    with pytest.raises(DamagedSessionError):
        ValkeySessionManager("s", admin, key_prefix=prefix)
    repo.delete_session("s")
    manager = ValkeySessionManager("s", admin, key_prefix=prefix)
    assert manager.read_session("s") is not None
