"""Two clients, every interleaving of their round trips: no acknowledged write is lost.

Each test names two operations on one session, run by two actors with their own clients on one
real Valkey 9 server. ``tests/interleave.py`` holds every round trip of both and runs them once
per merge order, each from a fresh setup under a fresh key prefix; after each run the outcomes
are judged against what the operations promise:

- a write that returned is stored exactly (unless the other operation replaced or deleted the
  session after it, which the trace shows);
- a write that did not is refused with a typed error (``SessionConflictError``,
  ``AgentExistsError``, ``SessionNotFoundError``, ``SessionLockedError``, ...), never a bare
  ``SessionException`` or a silent overwrite;
- :func:`interleave.check_integrity`: no orphan keys, every message at its own id in its own
  session, counts and versions matching what is stored, every session listed once.

Each test asserts how many interleavings it ran, so a harness that ran nothing cannot pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import valkey
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.types.exceptions import SessionException

from strands_valkey_session_manager import (
    AgentExistsError,
    SessionConflictError,
    SessionLockedError,
    SessionNotFoundError,
)
from strands_valkey_session_manager._client import run_plan
from strands_valkey_session_manager._write_behind import WriteBehindError
from strands_valkey_session_manager.scripted_model import ScriptedModel
from tests import interleave
from tests.interleave import (
    EXPLORED,
    Gate,
    GatedManager,
    GatedRepository,
    Orchestrator,
    Outcome,
    Run,
    agent,
    message,
    session,
    text_of,
)
from tests.servers import ServerProcess

SID, AID = "s", "a"
LEASE_MS = 60_000


@dataclass
class Env:
    """One run's world: the prefix, a raw client, the actors' repositories or managers."""

    prefix: str
    raw: Any
    actors: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def stored(self, session_id: str = SID) -> interleave.Stored | None:
        return interleave.read_back(self.raw, self.prefix, session_id)

    def plain(self, **kwargs: Any) -> GatedRepository:
        return GatedRepository(self.raw, key_prefix=self.prefix, **kwargs)


@pytest.fixture(scope="module")
def clients(valkey9_server: ServerProcess) -> Iterator[tuple[Any, Any, Any]]:
    """A raw client for setup and checks, and one client per actor (two real connections)."""
    made: list[Any] = [valkey.Valkey(valkey9_server.host, valkey9_server.port, decode_responses=True) for _ in range(3)]
    try:
        yield made[0], made[1], made[2]
    finally:
        for c in made:
            c.close()


def _explore(
    name: str,
    clients: tuple[Any, Any, Any],
    build: Callable[[Env, list[Gate]], None],
    operations: Callable[[Env], Sequence[Callable[[], Any]]],
    check: Callable[[Env, Run], None],
) -> int:
    raw, _, _ = clients

    def setup(prefix: str, gates: list[Gate]) -> Env:
        env = Env(prefix, raw, extra={"clients": clients[1:]})
        build(env, gates)
        return env

    def judge(run: Run) -> None:
        env: Env = run.env
        check(env, run)
        interleave.check_integrity(env.raw, env.prefix, copies={"t": SID})

    def teardown(env: Env) -> None:
        for actor in env.actors:
            close = getattr(actor, "close", None)
            if close is not None:
                close()

    found = interleave.explore(name, setup, operations, judge, teardown=teardown)
    print(f"{name}: {found.interleavings} interleavings")
    return found.interleavings


def _refused(outcome: Outcome, *types: type[BaseException]) -> BaseException:
    assert outcome.error is not None, f"expected a refusal, got {outcome}"
    assert isinstance(outcome.error, types), f"expected one of {[t.__name__ for t in types]}, got {outcome}"
    return outcome.error


def _seeded(env: Env, *agent_ids: str, messages: int = 2) -> None:
    """Session ``s`` with agents (state n=0), each with ``messages`` messages written by 'seed'."""
    repo = env.plain()
    repo.create_session(session(SID))
    for agent_id in agent_ids:
        repo.create_agent(SID, agent(agent_id, n=0))
        for i in range(messages):
            repo.create_message(SID, agent_id, message(SID, agent_id, i, "seed"))


def _restored(env: Env, gate: Gate, *agent_ids: str, client: Any) -> GatedRepository:
    """An actor's repository that has restored the agents (so its writes check versions)."""
    repo = GatedRepository(client, gate=gate, key_prefix=env.prefix, check_versions=True, retries=0)
    for agent_id in agent_ids:
        assert repo.read_agent(SID, agent_id) is not None
        repo.list_messages(SID, agent_id)
    return repo


def _two_restored(*agent_ids: str) -> Callable[[Env, list[Gate]], None]:
    def build(env: Env, gates: list[Gate]) -> None:
        _seeded(env, *agent_ids)
        a_client, b_client = env.extra["clients"]
        env.actors = [
            _restored(env, gates[0], *agent_ids, client=a_client),
            _restored(env, gates[1], *agent_ids, client=b_client),
        ]

    return build


def _texts(stored: interleave.Stored | None, agent_id: str = AID) -> list[str]:
    assert stored is not None, "the session vanished"
    return [t for _, t in stored.messages.get(agent_id, [])]


# -- two writers on one agent ---------------------------------------------------------------------


def test_two_appends_of_the_same_id(clients: tuple[Any, Any, Any]) -> None:
    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [
            lambda: a.create_message(SID, AID, message(SID, AID, 2, "A")),
            lambda: b.create_message(SID, AID, message(SID, AID, 2, "B")),
        ]

    def check(env: Env, run: Run) -> None:
        won = [i for i, o in enumerate(run.outcomes) if o.ok]
        assert len(won) == 1, run.outcomes
        _refused(run.outcomes[1 - won[0]], SessionConflictError)
        assert _texts(env.stored())[2] == text_of(SID, AID, 2, "AB"[won[0]])

    assert _explore("append x append (same agent)", clients, _two_restored(AID), ops, check) == 2


def test_appends_to_two_agents_never_conflict(clients: tuple[Any, Any, Any]) -> None:
    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [
            lambda: a.create_message(SID, "a", message(SID, "a", 2, "A")),
            lambda: b.create_message(SID, "b", message(SID, "b", 2, "B")),
        ]

    def check(env: Env, run: Run) -> None:
        assert all(o.ok for o in run.outcomes), run.outcomes
        stored = env.stored()
        assert _texts(stored, "a")[2] == text_of(SID, "a", 2, "A")
        assert _texts(stored, "b")[2] == text_of(SID, "b", 2, "B")

    assert _explore("append x append (two agents)", clients, _two_restored("a", "b"), ops, check) == 2


@pytest.mark.parametrize("other", ["update_agent", "update_message"])
def test_append_against_agent_update_or_redaction(clients: tuple[Any, Any, Any], other: str) -> None:
    redacted = message(SID, AID, 1, "redacted")

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        second: Callable[[], Any] = (
            (lambda: b.update_agent(SID, agent(AID, n=1)))
            if other == "update_agent"
            else (lambda: b.update_message(SID, AID, redacted))
        )
        return [lambda: a.create_message(SID, AID, message(SID, AID, 2, "A")), second]

    def check(env: Env, run: Run) -> None:
        won = [i for i, o in enumerate(run.outcomes) if o.ok]
        assert len(won) == 1, run.outcomes  # both were based on the same version of the agent
        _refused(run.outcomes[1 - won[0]], SessionConflictError)
        stored = env.stored()
        assert stored is not None
        texts = _texts(stored)
        if won == [0]:
            assert texts == [text_of(SID, AID, 0, "seed"), text_of(SID, AID, 1, "seed"), text_of(SID, AID, 2, "A")]
            assert stored.agents[AID] == {"n": 0}
        elif other == "update_agent":
            assert stored.agents[AID] == {"n": 1} and len(texts) == 2
        else:
            assert texts == [text_of(SID, AID, 0, "seed"), text_of(SID, AID, 1, "redacted")]

    assert _explore(f"append x {other}", clients, _two_restored(AID), ops, check) == 2


def test_append_against_orchestrator_state_created_meanwhile(clients: tuple[Any, Any, Any]) -> None:
    """A restored agent-only session: A's append declares four keys. B adds orchestrator state
    (the multi key). Before A's script, A is answered R_NEEDS_ALL_KEYS and sends it again with all
    five; after it, B's create covers the keys. Either way the message is stored once and every
    key of the session ends with the same expiry (none outlives or predeceases the others)."""

    def build(env: Env, gates: list[Gate]) -> None:
        repo = env.plain(ttl=3600)
        repo.create_session(session(SID))
        repo.create_agent(SID, agent(AID, n=0))
        repo.create_message(SID, AID, message(SID, AID, 0, "seed"))
        a_client, b_client = env.extra["clients"]
        a = GatedRepository(a_client, gate=gates[0], key_prefix=env.prefix, check_versions=True, retries=0, ttl=3600)
        assert a.read_agent(SID, AID) is not None
        a.list_messages(SID, AID)
        env.actors = [a, GatedRepository(b_client, gate=gates[1], key_prefix=env.prefix, retries=0, ttl=3600)]

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [
            lambda: a.create_message(SID, AID, message(SID, AID, 1, "A")),
            lambda: b.create_multi_agent(SID, Orchestrator("graph", {"node": "a"})),
        ]

    def check(env: Env, run: Run) -> None:
        assert all(o.ok for o in run.outcomes), run.outcomes
        assert _texts(env.stored()) == [text_of(SID, AID, 0, "seed"), text_of(SID, AID, 1, "A")]
        first = run.before(("B", "create_multi_agent"), ("A", "create_message"))
        assert run.trace.count("A:create_message") == (2 if first else 1), run.trace
        keys = env.actors[0].session_keys(SID).all()
        expiries = {key: env.raw.pexpiretime(key) for key in keys}
        assert len(set(expiries.values())) == 1 and min(expiries.values()) > 0, expiries

    assert _explore("append x create_multi_agent", clients, build, ops, check) == 2


def test_two_creates_of_one_agent(clients: tuple[Any, Any, Any]) -> None:
    """Both found the agent missing; the second create must not overwrite the first."""

    def build(env: Env, gates: list[Gate]) -> None:
        _seeded(env)
        a_client, b_client = env.extra["clients"]
        env.actors = [
            GatedRepository(c, gate=g, key_prefix=env.prefix, check_versions=True, retries=0)
            for c, g in zip((a_client, b_client), gates, strict=True)
        ]
        for repo in env.actors:
            assert repo.read_agent(SID, "c") is None

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: a.create_agent(SID, agent("c", who="A")), lambda: b.create_agent(SID, agent("c", who="B"))]

    def check(env: Env, run: Run) -> None:
        won = [i for i, o in enumerate(run.outcomes) if o.ok]
        assert len(won) == 1, run.outcomes
        _refused(run.outcomes[1 - won[0]], AgentExistsError)
        stored = env.stored()
        assert stored is not None and stored.agents["c"] == {"who": "AB"[won[0]]}

    assert _explore("create_agent x create_agent", clients, build, ops, check) == 2


# -- writes against a delete ------------------------------------------------------------------------


def _write_against_delete(clients: tuple[Any, Any, Any], name: str, step: str, write: Callable[[Any], Any]) -> int:
    """``write`` by A (one round trip named ``step``) while B deletes the session."""

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: write(a), lambda: b.delete_session(SID)]

    def check(env: Env, run: Run) -> None:
        written, deleted = run.outcomes
        assert deleted.ok, run.outcomes
        assert env.stored() is None
        if written.ok:
            # Acknowledged, then deleted: the write must have run before the delete's script.
            assert run.before(("A", step), ("B", "delete_session")), run.trace
        else:
            _refused(written, SessionNotFoundError)

    return _explore(name, clients, _two_restored(AID), ops, check)


def test_append_against_delete(clients: tuple[Any, Any, Any]) -> None:
    write = lambda a: a.create_message(SID, AID, message(SID, AID, 2, "A"))  # noqa: E731
    assert _write_against_delete(clients, "append x delete", "create_message", write) == 3


def test_update_agent_against_delete(clients: tuple[Any, Any, Any]) -> None:
    write = lambda a: a.update_agent(SID, agent(AID, n=1))  # noqa: E731
    assert _write_against_delete(clients, "update_agent x delete", "update_agent", write) == 3


def test_redaction_against_delete(clients: tuple[Any, Any, Any]) -> None:
    write = lambda a: a.update_message(SID, AID, message(SID, AID, 1, "r"))  # noqa: E731
    assert _write_against_delete(clients, "update_message x delete", "update_message", write) == 3


def test_create_agent_against_delete(clients: tuple[Any, Any, Any]) -> None:
    write = lambda a: a.create_agent(SID, agent("c"))  # noqa: E731
    assert _write_against_delete(clients, "create_agent x delete", "create_agent", write) == 3


def test_two_deletes(clients: tuple[Any, Any, Any]) -> None:
    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: a.delete_session(SID), lambda: b.delete_session(SID)]

    def check(env: Env, run: Run) -> None:
        won = [i for i, o in enumerate(run.outcomes) if o.ok]
        assert len(won) == 1, run.outcomes
        _refused(run.outcomes[1 - won[0]], SessionException)
        assert env.stored() is None

    # The winner removes its catalog entry in a second step; the loser's script finds nothing.
    assert _explore("delete x delete", clients, _two_restored(AID), ops, check) == 4


# -- prune: the idle check and the delete are two steps ---------------------------------------------


def _idle_seeded(env: Env, gates: list[Gate]) -> None:
    _two_restored(AID)(env, gates)
    # Last write long ago: prune finds the session idle (the server decides nothing here; the field
    # is what a session untouched since 1970 would hold).
    env.raw.hset(env.plain().session_keys(SID).session, "updated", 1000)


@pytest.mark.parametrize("write", ["create_message", "update_agent", "create_agent"])
def test_prune_against_a_write(clients: tuple[Any, Any, Any], write: str) -> None:
    """A session written after prune found it idle must survive: the write was acknowledged."""

    def do_write(b: GatedRepository) -> None:
        if write == "create_message":
            b.create_message(SID, AID, message(SID, AID, 2, "B"))
        elif write == "update_agent":
            b.update_agent(SID, agent(AID, n=1))
        else:
            b.create_agent(SID, agent("c", who="B"))

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: a.prune(3600), lambda: do_write(b)]

    def check(env: Env, run: Run) -> None:
        pruned, written = run.outcomes
        assert pruned.ok, run.outcomes
        stored = env.stored()
        if written.ok:
            assert stored is not None, f"prune deleted a session after an acknowledged {write}"
            if write == "create_message":
                assert _texts(stored)[2] == text_of(SID, AID, 2, "B")
            elif write == "update_agent":
                assert stored.agents[AID] == {"n": 1}
            else:
                assert stored.agents["c"] == {"who": "B"}
        else:
            _refused(written, SessionNotFoundError)
            assert stored is None

    assert _explore(f"prune x {write}", clients, _idle_seeded, ops, check) >= 5


# -- import --overwrite, fork -----------------------------------------------------------------------


def _export_of(env: Env, tag: str, count: int) -> str:
    """An export of session s holding agent a with ``count`` messages tagged ``tag``."""
    other = interleave.fresh_prefix("exp")
    repo = GatedRepository(env.raw, key_prefix=other)
    # An older creation time than the seed's, always: whether the replaced session's catalog
    # entry must be unlisted (one more round trip) would otherwise hang on the clock's millisecond.
    repo.create_session(replace(session(SID), created_at="2020-01-01T00:00:00+00:00"))
    repo.create_agent(SID, agent(AID, n=9))
    for i in range(count):
        repo.create_message(SID, AID, message(SID, AID, i, tag))
    text = repo.export_session(SID)
    repo.delete_session(SID)
    return text


def test_import_overwrite_against_a_restore(clients: tuple[Any, Any, Any]) -> None:
    """A reader restoring while ``import --overwrite`` replaces the session sees the old session or
    the new one, never no session at all (the original must not be deleted first)."""
    seed = [text_of(SID, AID, i, "seed") for i in range(2)]
    new = [text_of(SID, AID, i, "imported") for i in range(3)]

    def build(env: Env, gates: list[Gate]) -> None:
        _seeded(env, AID)
        a_client, b_client = env.extra["clients"]
        env.extra["export"] = _export_of(env, "imported", 3)
        env.actors = [
            GatedRepository(a_client, gate=gates[0], key_prefix=env.prefix, retries=0),
            GatedRepository(b_client, gate=gates[1], key_prefix=env.prefix, retries=0),
        ]

    def restore(b: GatedRepository) -> tuple[Any, Any, list[str]]:
        return (
            b.read_session(SID),
            b.read_agent(SID, AID),
            [m.message["content"][0]["text"] for m in b.list_messages(SID, AID)],
        )

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: a.import_session(env.extra["export"], overwrite=True), lambda: restore(b)]

    def check(env: Env, run: Run) -> None:
        imported, read = run.outcomes
        assert imported.ok, run.outcomes
        assert _texts(env.stored()) == new
        assert read.ok, run.outcomes
        record, found_agent, texts = read.value
        assert record is not None, "the reader found no session: the original was deleted before the import"
        assert found_agent is not None, "the reader found no agent mid-import"
        assert texts in (seed, new), f"the reader saw a half-written session: {texts}"

    assert _explore("import --overwrite x restore", clients, build, ops, check) >= 10


def test_import_overwrite_against_an_append(clients: tuple[Any, Any, Any]) -> None:
    def build(env: Env, gates: list[Gate]) -> None:
        _two_restored(AID)(env, gates)
        env.extra["export"] = _export_of(env, "imported", 3)

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [
            lambda: a.import_session(env.extra["export"], overwrite=True),
            lambda: b.create_message(SID, AID, message(SID, AID, 2, "B")),
        ]

    def check(env: Env, run: Run) -> None:
        imported, appended = run.outcomes
        assert imported.ok, run.outcomes
        texts = _texts(env.stored())
        if appended.ok and texts[2] != text_of(SID, AID, 2, "B"):
            # Only a replacement that came after the append may have taken it away.
            assert texts == [text_of(SID, AID, i, "imported") for i in range(3)]
            assert run.position("B", "create_message") == 0 or run.before(
                ("B", "create_message"), ("A", "create_session")
            ), run.trace
        elif not appended.ok:
            _refused(appended, SessionConflictError, SessionNotFoundError)

    assert _explore("import --overwrite x append", clients, build, ops, check) >= 5


def test_fork_against_an_append_to_the_source(clients: tuple[Any, Any, Any]) -> None:
    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: a.fork_session(SID, "t"), lambda: b.create_message(SID, AID, message(SID, AID, 2, "B"))]

    def check(env: Env, run: Run) -> None:
        assert all(o.ok for o in run.outcomes), run.outcomes
        assert _texts(env.stored())[2] == text_of(SID, AID, 2, "B")
        copied = env.stored("t")
        assert copied is not None
        # The copy is the source at the fork's read: with the append iff it ran before it.
        with_append = run.before(("B", "create_message"), ("A", "fork_session"))
        assert len(copied.messages[AID]) == (3 if with_append else 2), (copied.messages, run.trace)
        assert [t.split("|")[3] for _, t in copied.messages[AID]] == ["seed", "seed", "B"][: len(copied.messages[AID])]

    # One fork plan step reads (DUMP), one writes (create): 3 merge orders with the append.
    assert _explore("fork x append", clients, _two_restored(AID), ops, check) == 3


def test_fork_against_a_delete_of_the_source(clients: tuple[Any, Any, Any]) -> None:
    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: a.fork_session(SID, "t"), lambda: b.delete_session(SID)]

    def check(env: Env, run: Run) -> None:
        forked, deleted = run.outcomes
        assert deleted.ok and env.stored() is None, run.outcomes
        copied = env.stored("t")
        if forked.ok:
            assert copied is not None and _texts(copied) == [text_of(SID, AID, i, "seed") for i in range(2)]
        else:
            _refused(forked, SessionNotFoundError, SessionException)
            assert "does not exist" in str(forked.error) and copied is None

    assert _explore("fork x delete", clients, _two_restored(AID), ops, check) >= 4


def test_fork_against_a_lease(clients: tuple[Any, Any, Any]) -> None:
    """A fork never carries the source's leases: the copy is nobody's."""

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: a.fork_session(SID, "t"), lambda: _lease(b, "owner-b", "acquire")]

    def check(env: Env, run: Run) -> None:
        assert all(o.ok for o in run.outcomes), run.outcomes
        fields = env.raw.hkeys(env.plain().session_keys("t").session)
        assert not [f for f in fields if f.startswith("lease:")], f"the fork copied a lease: {fields}"
        taker = env.plain()
        assert _lease(taker, "owner-c", "acquire", "t") >= 1  # the copy is free to take at once

    assert _explore("fork x lease acquire", clients, _two_restored(AID), ops, check) == 3


# -- leases -----------------------------------------------------------------------------------------


def _lease(repo: Any, owner: str, op: str, session_id: str = SID) -> int:
    return int(run_plan(repo._db, repo._p_lease(session_id, AID, owner, LEASE_MS, op)))


def test_two_owners_take_one_lease(clients: tuple[Any, Any, Any]) -> None:
    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: _lease(a, "owner-a", "acquire"), lambda: _lease(b, "owner-b", "acquire")]

    def check(env: Env, run: Run) -> None:
        won = [i for i, o in enumerate(run.outcomes) if o.ok]
        assert len(won) == 1, run.outcomes
        _refused(run.outcomes[1 - won[0]], SessionLockedError)
        holder = env.raw.hget(env.plain().session_keys(SID).session, f"lease:{AID}")
        assert holder.endswith(f"owner-{'ab'[won[0]]}")

    assert _explore("lease acquire x acquire", clients, _two_restored(AID), ops, check) == 2


@pytest.mark.parametrize("op", ["renew", "release"])
def test_the_holder_renews_or_releases_while_another_takes(clients: tuple[Any, Any, Any], op: str) -> None:
    def build(env: Env, gates: list[Gate]) -> None:
        _two_restored(AID)(env, gates)
        _lease(env.actors[0], "owner-a", "acquire")

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: _lease(a, "owner-a", op), lambda: _lease(b, "owner-b", "acquire")]

    def check(env: Env, run: Run) -> None:
        held, taken = run.outcomes
        assert held.ok, run.outcomes
        holder = env.raw.hget(env.plain().session_keys(SID).session, f"lease:{AID}")
        if op == "release" and run.before(("A", "release_lease"), ("B", "acquire_lease")):
            assert taken.ok and holder.endswith("owner-b"), run.outcomes
        else:
            _refused(taken, SessionLockedError)
            assert (holder is None) if op == "release" else holder.endswith("owner-a")

    assert _explore(f"lease {op} x acquire", clients, build, ops, check) == 2


def test_a_write_without_the_lease_against_its_acquisition(clients: tuple[Any, Any, Any]) -> None:
    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [lambda: _lease(a, "owner-a", "acquire"), lambda: b.create_message(SID, AID, message(SID, AID, 2, "B"))]

    def check(env: Env, run: Run) -> None:
        taken, written = run.outcomes
        assert taken.ok, run.outcomes
        texts = _texts(env.stored())
        if run.before(("A", "acquire_lease"), ("B", "create_message")):
            _refused(written, SessionLockedError)
            assert len(texts) == 2
        else:
            assert written.ok and texts[2] == text_of(SID, AID, 2, "B"), run.outcomes

    assert _explore("lease acquire x append", clients, _two_restored(AID), ops, check) == 2


# -- the session manager: operations made of several plans -----------------------------------------


def test_two_managers_open_one_new_session(clients: tuple[Any, Any, Any]) -> None:
    """Both read that the session is missing and create it: the second adopts the first's."""

    def build(env: Env, gates: list[Gate]) -> None:
        env.extra["gates"] = gates

    def ops(env: Env) -> list[Callable[[], Any]]:
        clients_ = env.extra["clients"]

        def open_(i: int) -> GatedManager:
            manager = GatedManager("fresh", clients_[i], gate=env.extra["gates"][i], key_prefix=env.prefix)
            env.actors.append(manager)
            return manager

        return [lambda: open_(0), lambda: open_(1)]

    def check(env: Env, run: Run) -> None:
        assert all(o.ok for o in run.outcomes), run.outcomes
        assert env.stored("fresh") is not None
        listed = [s.session_id for s in env.plain().list_sessions().sessions]
        assert listed == ["fresh"]

    assert _explore("manager open x open (new session)", clients, build, ops, check) >= 6


def _scripted_agent(manager: Any, agent_id: str, turns: list[Any], **kwargs: Any) -> Agent:
    return Agent(
        agent_id=agent_id, model=ScriptedModel(turns), session_manager=manager, callback_handler=None, **kwargs
    )


def test_two_managers_initialize_one_new_agent(clients: tuple[Any, Any, Any]) -> None:
    """Both read that the agent is missing and create it: the second adopts the stored agent
    instead of overwriting it."""

    def build(env: Env, gates: list[Gate]) -> None:
        _seeded(env)
        env.actors = [
            GatedManager(SID, c, gate=g, key_prefix=env.prefix)
            for c, g in zip(env.extra["clients"], gates, strict=True)
        ]

    def ops(env: Env) -> list[Callable[[], Any]]:
        a, b = env.actors
        return [
            lambda: _scripted_agent(a, "c", [], state={"who": "A"}),
            lambda: _scripted_agent(b, "c", [], state={"who": "B"}),
        ]

    def check(env: Env, run: Run) -> None:
        assert all(o.ok for o in run.outcomes), run.outcomes
        stored = env.stored()
        assert stored is not None
        winner = stored.agents["c"]["who"]
        for outcome in run.outcomes:
            assert outcome.value.state.get() == {"who": winner}, "a manager kept an agent that is not the stored one"

    assert _explore("manager initialize x initialize (new agent)", clients, build, ops, check) >= 6


def _write_behind_build(env: Env, gates: list[Gate]) -> None:
    """Agent a with one turn stored (2 messages); A restores it in a write-behind manager whose
    sliding window (3) trims at the end of the next invocation, so that invocation's last sync
    writes the agent; B has restored it in a repository."""
    a_client, b_client = env.extra["clients"]
    seeder = GatedManager(SID, env.raw, key_prefix=env.prefix)
    _scripted_agent(seeder, AID, ["reply zero"], conversation_manager=SlidingWindowConversationManager(window_size=3))(
        "seed"
    )
    manager = GatedManager(SID, a_client, gate=gates[0], key_prefix=env.prefix, write_behind=True)
    env.extra["agent"] = _scripted_agent(
        manager, AID, ["reply one"], conversation_manager=SlidingWindowConversationManager(window_size=3)
    )
    manager.flush()
    env.actors = [manager, _restored(env, gates[1], AID, client=b_client)]


def _invoke(env: Env) -> int:
    """One invocation through a write-behind manager; returns the writes still queued when the
    invocation returned (then waits for them, so the actor is quiet when the operation ends)."""
    manager = env.actors[0]
    try:
        env.extra["agent"]("hello")
    finally:
        pending: int = manager._write_behind._queue.unfinished_tasks
        with contextlib.suppress(WriteBehindError):  # the invocation's own outcome is judged
            manager.flush()
    return pending


def test_write_behind_invocation_against_an_append(clients: tuple[Any, Any, Any]) -> None:
    def ops(env: Env) -> list[Callable[[], Any]]:
        b = env.actors[1]
        return [lambda: _invoke(env), lambda: b.create_message(SID, AID, message(SID, AID, 2, "B"))]

    def check(env: Env, run: Run) -> None:
        invoked, appended = run.outcomes
        if invoked.ok:
            assert invoked.value == 0, f"{invoked.value} write(s) still queued when the invocation returned"
        else:
            error = _refused(invoked, WriteBehindError)
            assert isinstance(error.__cause__, SessionConflictError), repr(error.__cause__)
        if appended.ok:
            assert _texts(env.stored())[2] == text_of(SID, AID, 2, "B")
        else:
            _refused(appended, SessionConflictError)
        assert invoked.ok or appended.ok, run.outcomes  # the first write to the agent always wins

    assert _explore("write-behind invocation x append", clients, _write_behind_build, ops, check) >= 4


def test_write_behind_invocation_against_a_delete(clients: tuple[Any, Any, Any]) -> None:
    def ops(env: Env) -> list[Callable[[], Any]]:
        b = env.actors[1]
        return [lambda: _invoke(env), lambda: b.delete_session(SID)]

    def check(env: Env, run: Run) -> None:
        invoked, deleted = run.outcomes
        assert deleted.ok, run.outcomes
        if invoked.ok:
            assert invoked.value == 0, f"{invoked.value} write(s) still queued when the invocation returned"
        else:
            error = _refused(invoked, WriteBehindError)
            assert isinstance(error.__cause__, SessionNotFoundError), repr(error.__cause__)
        assert env.stored() is None

    assert _explore("write-behind invocation x delete", clients, _write_behind_build, ops, check) >= 8


def test_summary(request: pytest.FixtureRequest) -> None:
    """Prints the interleavings each scenario ran (with ``-s``) and holds the README's figures:
    at least 27 operation pairs and 131 interleavings, each checked."""
    scenarios = [
        item for item in request.session.items if item.module is request.module and item.name != "test_summary"
    ]
    if len(scenarios) < 27:
        pytest.skip("the figures hold for a run of the whole file")
    total = sum(EXPLORED.values())
    for name, count in sorted(EXPLORED.items()):
        print(f"{count:5d}  {name}")
    print(f"{total:5d}  interleavings over {len(EXPLORED)} operation pairs")
    assert len(EXPLORED) >= 27
    assert total >= 131
