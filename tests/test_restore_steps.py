"""A restore read in bounded steps: what each step may cost the server, and what a reader is
guaranteed when other clients write between its steps.

``list_messages`` sends ``list_messages.lua`` once (checks, the agent's version and count, up to
``restore_step_records`` records and about ``restore_step_bytes`` bytes), then one pipeline per
further step: ``HMGET`` of the members the previous step listed and the script again, which
checks that nothing read so far can have changed. The reader gets the agent's messages as they
stood at its first step (appends made since are left out), or reads again from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from strands.types.session import SessionMessage

from strands_valkey_session_manager import DamagedSessionError, SessionConflictError, ValkeySessionRepository
from strands_valkey_session_manager._client import CommandCall, ScriptCall
from strands_valkey_session_manager.transfer import SessionExport
from tests import interleave
from tests.conftest import Backend
from tests.interleave import Gate, GatedRepository, Orchestrator, Run, agent, message, session, text_of
from tests.roundtrips import count_round_trips

SID, AID = "s", "a"


class Recording:
    """An adapter that keeps every call it executes with its reply."""

    def __init__(self, inner: Any, before: Callable[[Any], None] | None = None) -> None:
        self._inner = inner
        self._before = before
        self.calls: list[tuple[Any, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def execute(self, call: Any) -> Any:
        if self._before is not None:
            self._before(call)
        reply = self._inner.execute(call)
        self.calls.append((call, reply))
        return reply


def _flat(call: Any, reply: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(call, list):
        yield from zip(call, reply, strict=True)
    else:
        yield call, reply


def _filled(repo: ValkeySessionRepository, sizes: Sequence[int]) -> None:
    """The session with one agent whose messages have texts of ``sizes`` (written 500 a pipeline)."""
    messages = [
        SessionMessage(message={"role": "user", "content": [{"text": "x" * size}]}, message_id=i)  # type: ignore[arg-type]
        for i, size in enumerate(sizes)
    ]
    repo.write_export(SessionExport(session=session(SID), agents=[agent(AID)], messages={AID: messages}))


@pytest.mark.parametrize(
    ("sizes", "records", "step_bytes"),
    [
        ([200] * 2500, 1000, 1 << 20),  # small records: bounded by count
        ([100_000] * 40, 1000, 1 << 20),  # large records: bounded by bytes
        ([50, 20_000, 50, 50, 300, 9_000] * 30, 7, 10_000),  # mixed sizes: steps sized at the mean
    ],
    ids=["small", "large", "mixed"],
)
def test_no_step_reads_more_than_its_bounds(store_client: Any, sizes: list[int], records: int, step_bytes: int) -> None:
    repo = ValkeySessionRepository(store_client)
    _filled(repo, sizes)
    repo.restore_step_records, repo.restore_step_bytes = records, step_bytes
    recording = Recording(repo._db)
    repo._db = recording
    stored = repo.list_messages(SID, AID)
    assert [len(m.message["content"][0]["text"]) for m in stored] == sizes
    largest = max(sizes) + 200  # one record with its envelope
    steps = 0
    for call, reply in (pair for c, r in recording.calls for pair in _flat(c, r)):
        if isinstance(call, ScriptCall) and call.args[6] == "":  # first step: records in the reply
            returned = reply[4:]
        elif isinstance(call, CommandCall) and call.method == "hmget":
            returned = reply
            steps += 1
        else:
            continue
        assert 0 < len(returned) <= records
        # A step stops about one record past its byte budget; later ones are sized by the mean
        # size of the records read last, so records of one size keep to the budget.
        if len(set(sizes)) == 1:
            assert sum(len(r) for r in returned) <= step_bytes + 2 * largest
    assert steps >= 1


@pytest.mark.parametrize(("history", "trips"), [(1000, 2), (1001, 3), (2500, 4)])
def test_round_trips_grow_by_one_per_step(client: Any, history: int, trips: int) -> None:
    repo = ValkeySessionRepository(client)
    _filled(repo, [10] * history)
    repo.list_messages(SID, AID, limit=1)  # scripts loaded
    with count_round_trips() as restore:
        assert repo.read_agent(SID, AID) is not None
        assert len(repo.list_messages(SID, AID)) == history
    assert restore.value == trips, restore


def test_a_reader_rewritten_on_every_step_gives_up_with_a_conflict(store_client: Any) -> None:
    repo = ValkeySessionRepository(store_client)
    _filled(repo, [10] * 6)
    repo.restore_step_records = 2
    writer = ValkeySessionRepository(store_client)
    redactions = iter(range(1000))

    def redact(call: Any) -> None:
        writer.update_message(SID, AID, message(SID, AID, 1, f"r{next(redactions)}"))

    repo._db = Recording(repo._db, before=redact)
    with pytest.raises(SessionConflictError, match="3 times"):
        repo.list_messages(SID, AID)


def test_agent_updates_and_appends_on_every_step_cost_no_read_again(store_client: Any) -> None:
    """What many processes on one agent do between a reader's steps (append a message, update the
    agent's record): nothing the reader has read changes, so it never reads again."""
    repo = ValkeySessionRepository(store_client)
    _filled(repo, [10] * 6)
    repo.list_messages(SID, AID, limit=1)  # scripts loaded
    repo.restore_step_records = 2
    writer = ValkeySessionRepository(store_client, check_versions=True)
    writer.read_agent(SID, AID)
    writer.list_messages(SID, AID)
    appended = iter(range(6, 1000))

    def write(call: Any) -> None:
        if not recording.calls:
            return  # between the steps only
        writer.update_agent(SID, agent(AID, step=len(recording.calls)))
        writer.create_message(SID, AID, message(SID, AID, next(appended), "new"))

    recording = Recording(repo._db, before=write)
    repo._db = recording
    stored = repo.list_messages(SID, AID)
    assert [m.message_id for m in stored] == list(range(6))  # the slice as the first step saw it
    assert len(recording.calls) == 3  # first step, then two steps of 2: no read again


def test_a_rewrite_of_a_message_not_yet_read_reads_again_whole(store_client: Any) -> None:
    """A redaction between two steps reads again (the counter of rewrites is per agent, not per
    message); the result holds the redaction, never a mix."""
    repo = ValkeySessionRepository(store_client)
    _filled(repo, [10] * 6)
    repo.list_messages(SID, AID, limit=1)
    repo.restore_step_records = 2
    writer = ValkeySessionRepository(store_client)
    done: list[int] = []

    def redact_once(call: Any) -> None:
        if not done and recording.calls:  # before the first continuation
            writer.update_message(SID, AID, message(SID, AID, 5, "redacted"))
            done.append(1)

    recording = Recording(repo._db, before=redact_once)
    repo._db = recording
    stored = repo.list_messages(SID, AID)
    assert _texts(stored)[5] == text_of(SID, AID, 5, "redacted")
    assert len(recording.calls) == 2 + 3  # first step, a continuation refused, then three steps


def test_a_reencryption_between_steps_reads_again_under_the_new_key(store_client: Any) -> None:
    from strands_valkey_session_manager import LocalKeyProvider
    from strands_valkey_session_manager.encryption import reencrypt_session

    provider = LocalKeyProvider({"k1": b"\x01" * 32}, "k1")
    repo = ValkeySessionRepository(store_client, key_provider=provider)
    _filled(repo, [10] * 6)
    repo.list_messages(SID, AID, limit=1)
    repo.restore_step_records = 2
    done: list[bool] = []

    def reencrypt_once(call: Any) -> None:
        if not done and recording.calls:
            done.append(reencrypt_session(ValkeySessionRepository(store_client, key_provider=provider), SID))

    recording = Recording(repo._db, before=reencrypt_once)
    repo._db = recording
    stored = repo.list_messages(SID, AID)
    assert done == [True]
    assert [len(m.message["content"][0]["text"]) for m in stored] == [10] * 6
    assert len(recording.calls) == 2 + 3


def _with_ids(repo: ValkeySessionRepository, ids: Sequence[int]) -> None:
    messages = [message(SID, AID, i, "m") for i in ids]
    repo.write_export(SessionExport(session=session(SID), agents=[agent(AID)], messages={AID: messages}))


def _script_calls(recording: Recording) -> list[tuple[Any, Any]]:
    return [(c, r) for call, reply in recording.calls for c, r in _flat(call, reply) if isinstance(c, ScriptCall)]


@pytest.mark.parametrize(("offset", "limit"), [(0, None), (3, 4), (1, 7), (9, None)])
def test_ids_without_gaps_are_named_by_the_client_and_listed_by_no_step(
    store_client: Any, offset: int, limit: int | None
) -> None:
    """The SDK numbers an agent's messages 0, 1, 2, ...: the first step says so ('+' and the last
    member it returned) and no further step lists members."""
    repo = ValkeySessionRepository(store_client)
    _with_ids(repo, range(10))
    repo.restore_step_records = 3
    recording = Recording(repo._db)
    repo._db = recording
    stored = repo.list_messages(SID, AID, limit=limit, offset=offset)
    assert [m.message_id for m in stored] == list(range(10))[offset : None if limit is None else offset + limit]
    (_first, reply), *continuations = _script_calls(recording)
    if len(stored) > 3:
        assert _text(reply[3]).startswith("+")
    assert bool(continuations) == (len(stored) > 3)
    assert all(c.args[7] == 0 and _text(r[1]) == "" for c, r in continuations)
    assert len(recording.calls) == -(-len(stored) // 3)


@pytest.mark.parametrize(("offset", "limit"), [(0, None), (2, 3), (5, None)])
def test_ids_with_gaps_are_listed_by_the_script(store_client: Any, offset: int, limit: int | None) -> None:
    repo = ValkeySessionRepository(store_client)
    ids = [0, 2, 3, 7, 8, 9, 20, 21, 40, 1000]
    _with_ids(repo, ids)
    repo.restore_step_records = 3
    recording = Recording(repo._db)
    repo._db = recording
    stored = repo.list_messages(SID, AID, limit=limit, offset=offset)
    assert [m.message_id for m in stored] == ids[offset : None if limit is None else offset + limit]
    (_first, reply), *continuations = _script_calls(recording)
    assert not _text(reply[3]).startswith("+")
    assert all(c.args[7] == 3 for c, _ in continuations)


def test_a_message_inserted_into_a_gap_among_those_read_reads_again(client: Any) -> None:
    repo = ValkeySessionRepository(client)
    _with_ids(repo, [0, 2, 4, 6, 8, 10])
    repo.list_messages(SID, AID, limit=1)
    repo.restore_step_records = 2
    writer = ValkeySessionRepository(client)
    done: list[int] = []

    def insert_once(call: Any) -> None:
        if not done and recording.calls:
            writer.create_message(SID, AID, message(SID, AID, 1, "inserted"))
            done.append(1)

    recording = Recording(repo._db, before=insert_once)
    repo._db = recording
    assert [m.message_id for m in repo.list_messages(SID, AID)] == [0, 1, 2, 4, 6, 8, 10]
    assert len(recording.calls) == 1 + 1 + 4  # first step, a refused continuation, then 4 steps of 2


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_a_record_gone_between_steps_is_damage(client: Any) -> None:
    repo = ValkeySessionRepository(client)
    _filled(repo, [10] * 6)
    repo.restore_step_records = 2
    keys = repo.session_keys(SID)
    member = f"{AID}:{(1 << 63) + 4:020d}"
    repo._db = Recording(repo._db, before=lambda call: client.hdel(keys.messages, member))
    with pytest.raises(DamagedSessionError, match="holds no record"):
        repo.list_messages(SID, AID)


# -- a second client between the reader's steps ---------------------------------------------------


@pytest.fixture
def clients(backend: Backend) -> Iterator[tuple[Any, Any, Any]]:
    """Three clients of the backend: setup, the reader and the writer."""
    kind = "valkey-cluster-str" if backend.is_cluster else "valkey-py-str"
    made = [backend.make_client(kind) for _ in range(3)]
    try:
        yield made[0], made[1], made[2]
    finally:
        for c in made:
            c.close()


SEED = 6


def _texts(messages: list[SessionMessage]) -> list[str]:
    return [m.message["content"][0]["text"] for m in messages]


def _explore(
    name: str,
    clients: tuple[Any, Any, Any],
    write: Callable[[GatedRepository, Any, str], Any],
    check: Callable[[Run, list[str]], None],
) -> int:
    raw, a_client, b_client = clients
    seed = [text_of(SID, AID, i, "seed") for i in range(SEED)]

    def setup(prefix: str, gates: list[Gate]) -> Any:
        repo = GatedRepository(raw, key_prefix=prefix)
        repo.create_session(session(SID))
        repo.create_agent(SID, agent(AID))
        for i in range(SEED):
            repo.create_message(SID, AID, message(SID, AID, i, "seed"))
        reader = GatedRepository(a_client, gate=gates[0], key_prefix=prefix, retries=0)
        reader.restore_step_records = 2  # first step 2 records, then two steps of 2
        writer = GatedRepository(b_client, gate=gates[1], key_prefix=prefix, retries=0)
        return (reader, writer, prefix)

    def operations(env: Any) -> list[Callable[[], Any]]:
        reader, writer, prefix = env
        return [lambda: _texts(reader.list_messages(SID, AID)), lambda: write(writer, raw, prefix)]

    def judge(run: Run) -> None:
        check(run, seed)

    found = interleave.explore(name, setup, operations, judge)
    return found.interleavings


def test_appends_during_a_restore_are_left_out_or_included_whole(clients: tuple[Any, Any, Any]) -> None:
    """Appends after the reader's first step are not in its result; earlier ones are."""

    def write(w: GatedRepository, raw: Any, prefix: str) -> None:
        w.create_message(SID, AID, message(SID, AID, SEED, "new"))

    def check(run: Run, seed: list[str]) -> None:
        read, written = run.outcomes
        assert read.ok and written.ok, run.outcomes
        after = run.before(("B", "create_message"), ("A", "list_messages"))
        assert read.value == ([*seed, text_of(SID, AID, SEED, "new")] if after else seed), run.trace
        steps = -(-len(read.value) // 2)  # two records a step
        assert run.trace.count("A:list_messages") == steps, run.trace  # an append costs no read again

    assert _explore("restore x append", clients, write, check) == 4


def test_an_agent_update_during_a_restore_is_no_conflict(clients: tuple[Any, Any, Any]) -> None:
    """The agent's own record rewritten (``update_agent`` after every turn): the messages read stay
    valid, so the reader neither reads again nor fails, in every interleaving."""

    def write(w: GatedRepository, raw: Any, prefix: str) -> None:
        w.update_agent(SID, agent(AID, turn=1))

    def check(run: Run, seed: list[str]) -> None:
        read, written = run.outcomes
        assert read.ok and written.ok, run.outcomes
        assert read.value == seed, run.trace
        assert run.trace.count("A:list_messages") == 3, run.trace  # no read again

    assert _explore("restore x update_agent", clients, write, check) == 4


def test_a_message_inserted_among_those_read_is_noticed(clients: tuple[Any, Any, Any]) -> None:
    """A message filling a gap below the last one read: the reader reads again, never a mix."""

    def write(w: GatedRepository, raw: Any, prefix: str) -> None:
        w.create_message(SID, AID, message(SID, AID, -1, "inserted"))

    def check(run: Run, seed: list[str]) -> None:
        read, written = run.outcomes
        assert read.ok and written.ok, run.outcomes
        assert read.value in (seed, [text_of(SID, AID, -1, "inserted"), *seed]), run.trace

    assert _explore("restore x insert", clients, write, check) == 4


@pytest.mark.parametrize("rewrite", ["update_message", "overwrite"])
def test_a_rewrite_during_a_restore_is_seen_whole_or_not_at_all(clients: tuple[Any, Any, Any], rewrite: str) -> None:
    """A redaction (or an append over an existing id) of a message already read: read again."""

    def write(w: GatedRepository, raw: Any, prefix: str) -> None:
        if rewrite == "update_message":
            w.update_message(SID, AID, message(SID, AID, 0, "redacted"))
        else:
            w.create_message(SID, AID, message(SID, AID, 0, "redacted"))

    def check(run: Run, seed: list[str]) -> None:
        read, written = run.outcomes
        assert read.ok and written.ok, run.outcomes
        assert read.value in (seed, [text_of(SID, AID, 0, "redacted"), *seed[1:]]), run.trace
        between = (
            run.position("A", "list_messages", 0) < run.position("B", operation) < run.position("A", "list_messages", 2)
        )
        # Rewritten after the first step read it: read again (more than the 3 steps), and the
        # result holds the rewrite.
        assert (run.trace.count("A:list_messages") > 3) == between, run.trace
        first = run.before(("B", operation), ("A", "list_messages"))
        assert (read.value == seed) == (not first and not between), run.trace

    operation = "update_message" if rewrite == "update_message" else "create_message"
    assert _explore(f"restore x {rewrite}", clients, write, check) == 4


def test_orchestrator_state_created_during_a_restore(clients: tuple[Any, Any, Any]) -> None:
    """The reader's scripts leave out the multi key of an agent-only session. Orchestrator state
    created before its first step makes that step answer R_NEEDS_ALL_KEYS and go again with all
    five keys; created between two steps, the next step answers it and the reader reads again
    from the first step. Either way it gets the whole history, in every interleaving."""

    def write(w: GatedRepository, raw: Any, prefix: str) -> None:
        w.create_multi_agent(SID, Orchestrator("graph", {"node": "a"}))  # type: ignore[arg-type]

    def check(run: Run, seed: list[str]) -> None:
        read, written = run.outcomes
        assert read.ok and written.ok, run.outcomes
        assert read.value == seed, run.trace
        # Three steps; the first sent again (+1) when B came first; when B came after k steps, the
        # next one is refused and the reader reads again: k + 1 + 3.
        k = run.trace.index("B:create_multi_agent")
        assert run.trace.count("A:list_messages") == (4 if k == 0 else 3 if k == 3 else k + 4), run.trace

    assert _explore("restore x create_multi_agent", clients, write, check) >= 4


@pytest.mark.parametrize("recreate", [False, True], ids=["delete", "delete-and-create-again"])
def test_a_delete_during_a_restore_gives_the_old_history_or_the_new(
    clients: tuple[Any, Any, Any], recreate: bool
) -> None:
    def write(w: GatedRepository, raw: Any, prefix: str) -> None:
        w.delete_session(SID)
        if recreate:
            w.create_session(session(SID))
            w.create_agent(SID, agent(AID))
            for i in range(SEED + 2):
                w.create_message(SID, AID, message(SID, AID, i, "again"))

    def check(run: Run, seed: list[str]) -> None:
        read, written = run.outcomes
        assert read.ok and written.ok, run.outcomes
        again = [text_of(SID, AID, i, "again") for i in range(SEED + 2)]
        allowed = [seed, []] + ([again[:n] for n in range(SEED + 3)] if recreate else [])
        assert read.value in allowed, (read.value, run.trace)

    assert _explore("restore x delete" + (" + create" if recreate else ""), clients, write, check) >= 4


def test_a_key_evicted_during_a_restore_is_damage_or_not_seen(clients: tuple[Any, Any, Any]) -> None:
    def write(w: GatedRepository, raw: Any, prefix: str) -> None:
        # Eviction of the messages key, as the server does it: the key alone, between two commands.
        w._db.execute(CommandCall("delete", (w.session_keys(SID).messages,)))

    def check(run: Run, seed: list[str]) -> None:
        read = run.outcomes[0]
        if read.ok:
            assert read.value == seed, run.trace  # the key went after the reader's last step
        else:
            assert isinstance(read.error, DamagedSessionError), run.outcomes

    assert _explore("restore x eviction", clients, write, check) == 4
