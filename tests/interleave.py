"""Deterministic interleavings of two (or more) clients' operations, on a real server.

Every operation of the repository is a plan of round trips (``_core.py``); the session manager's
operations are sequences of such plans, some of them run by the write-behind thread. This module
holds every round trip before it is sent: each actor (a repository or manager on its own client)
gets a :class:`Gate` wrapped around its adapter, so whichever thread of the actor sends a plan's
next step (the caller's, the write-behind worker's) parks there until the controller lets exactly
that one step through. :func:`explore` then runs the actors' operations once per merge order of
their round trips, depth first over the choice points, each time from a fresh setup under a fresh
key prefix, and hands every finished run to a check.

Other helpers: :class:`LostReplyProxy` (a loopback proxy that swallows one reply after the server
ran the command), :func:`read_back` and :func:`check_integrity` (what is stored, read with an
ungated repository, and the structural invariants every session must keep whatever happened).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager._keys import KeyLayout, decode_id

HOST = "127.0.0.1"
#: Bound on every wait of the controller: an actor that neither parks nor finishes in this time
#: is blocked on something the harness does not hold (a bug, or a deadlock), and the run fails.
WAIT_LIMIT = 20.0

_prefixes = itertools.count()


def fresh_prefix(name: str = "il") -> str:
    """A key prefix no earlier run used (so runs share a server without FLUSHALL)."""
    return f"{name}{next(_prefixes)}x{uuid.uuid4().hex[:6]}"


# -- the gate -----------------------------------------------------------------------------------


class Gate:
    """Where one actor's round trips wait for the controller.

    While ``holding`` is off (setup, read-back), round trips pass freely. While it is on, a thread
    that is about to send a step parks; :meth:`Controller.grant` lets one step through and waits
    until the actor parks again or its operation has finished.
    """

    def __init__(self, name: str, cond: threading.Condition) -> None:
        self.name = name
        self._cond = cond
        self.holding = False
        self.parked: str | None = None  # the operation name of the step waiting here
        self._permit = False
        self.passed: list[str] = []  # operations of the steps let through while holding
        self.done = False

    def wait_turn(self, operation: str) -> None:
        with self._cond:
            if not self.holding:
                return
            if self.parked is not None:
                raise AssertionError(f"{self.name}: two threads of one actor sending at once")
            self.parked = operation
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._permit or not self.holding, timeout=WAIT_LIMIT):
                raise AssertionError(f"{self.name}: step {operation} was never let through")
            self._permit = False
            self.parked = None
            self.passed.append(operation)


class GatedAdapter:
    """An adapter (``_client.ClientAdapter`` or GLIDE's) whose ``execute`` waits at a :class:`Gate`.

    ``run_plan`` opens ``errors(operation, ...)`` around each ``execute``; the operation name is
    remembered from there, so the trace names each step as its plan does.
    """

    def __init__(self, inner: Any, gate: Gate) -> None:
        self._inner = inner
        self._gate = gate
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextlib.contextmanager
    def errors(self, operation: str, session_id: str, key: str) -> Iterator[None]:
        self._local.operation = operation
        with self._inner.errors(operation, session_id, key):
            yield

    def execute(self, call: Any) -> Any:
        self._gate.wait_turn(getattr(self._local, "operation", "?"))
        return self._inner.execute(call)


def _install(obj: Any, value: Any) -> None:
    gate = obj.__dict__.get("_gate")
    obj.__dict__["_gated_db"] = value if gate is None or isinstance(value, GatedAdapter) else GatedAdapter(value, gate)


class GatedRepository(ValkeySessionRepository):
    """A repository whose every round trip passes ``gate`` (``None``: an ordinary repository)."""

    def __init__(self, client: Any, *, gate: Gate | None = None, **kwargs: Any) -> None:
        self.__dict__["_gate"] = gate
        super().__init__(client, **kwargs)

    @property
    def _db(self) -> Any:
        return self.__dict__["_gated_db"]

    @_db.setter
    def _db(self, value: Any) -> None:
        _install(self, value)


class GatedManager(ValkeySessionManager):
    """A session manager whose every round trip passes ``gate``, its constructor's included."""

    def __init__(self, session_id: str, client: Any, *, gate: Gate | None = None, **kwargs: Any) -> None:
        self.__dict__["_gate"] = gate
        super().__init__(session_id=session_id, client=client, **kwargs)

    @property
    def _db(self) -> Any:
        return self.__dict__["_gated_db"]

    @_db.setter
    def _db(self, value: Any) -> None:
        _install(self, value)


# -- the controller -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """How one actor's operation ended: its return value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        return f"ok({self.value!r})" if self.ok else f"error({type(self.error).__name__}: {self.error})"


@dataclass
class Run:
    """One interleaving: the fresh prefix it used, the order its steps ran in, the outcomes."""

    prefix: str
    env: Any
    trace: list[str] = field(default_factory=list)  # "A:create_message", ... in the order sent
    outcomes: list[Outcome] = field(default_factory=list)
    choices: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)

    def position(self, actor: str, operation: str, nth: int = 0) -> int | None:
        """Index in the trace of the ``nth`` step ``operation`` of ``actor`` (None if it never ran)."""
        hits = [i for i, step in enumerate(self.trace) if step == f"{actor}:{operation}"]
        return hits[nth] if len(hits) > nth else None

    def before(self, first: tuple[str, str], second: tuple[str, str]) -> bool:
        """Whether step ``first`` (actor, operation) ran, and before ``second`` (or ``second`` never ran)."""
        a, b = self.position(*first), self.position(*second)
        return a is not None and (b is None or a < b)

    def describe(self) -> str:
        return f"prefix={self.prefix} trace={self.trace} outcomes={self.outcomes}"


def _step_taken(gate: Gate) -> bool:
    return not gate._permit


class Controller:
    """Runs each actor's operation on its own thread and lets their steps through one at a time."""

    def __init__(self, names: Sequence[str]) -> None:
        self.cond = threading.Condition()
        self.gates = [Gate(name, self.cond) for name in names]

    def _quiet(self, gate: Gate) -> bool:
        return gate.parked is not None or gate.done

    def run(self, operations: Sequence[Callable[[], Any]], forced: Sequence[int], run: Run) -> None:
        outcomes = [Outcome() for _ in operations]

        def body(i: int, operation: Callable[[], Any]) -> None:
            try:
                outcomes[i].value = operation()
            except BaseException as e:  # reported in the outcome, judged by the check
                outcomes[i].error = e
            finally:
                with self.cond:
                    self.gates[i].done = True
                    self.cond.notify_all()

        with self.cond:
            for gate in self.gates:
                gate.holding = True
        threads = [
            threading.Thread(target=body, args=(i, op), name=f"actor-{self.gates[i].name}", daemon=True)
            for i, op in enumerate(operations)
        ]
        try:
            for i, thread in enumerate(threads):
                thread.start()
                with self.cond:
                    self._await(self.gates[i], run)
            while True:
                with self.cond:
                    ready = tuple(i for i, g in enumerate(self.gates) if g.parked is not None)
                    if not ready:
                        break
                    step = len(run.choices)
                    chosen = forced[step] if step < len(forced) else ready[0]
                    if chosen not in ready:
                        raise AssertionError(
                            f"replay diverged at step {step}: {chosen} not in {ready}; {run.describe()}"
                        )
                    run.choices.append((chosen, ready))
                    gate = self.gates[chosen]
                    run.trace.append(f"{gate.name}:{gate.parked}")
                    gate._permit = True
                    self.cond.notify_all()
                    # Wait for that step to be taken, then for the actor to park again or finish.
                    if not self.cond.wait_for(functools.partial(_step_taken, gate), timeout=WAIT_LIMIT):
                        raise AssertionError(f"{gate.name} did not take its step; {run.describe()}")
                    self._await(gate, run)
        finally:
            with self.cond:
                for gate in self.gates:
                    gate.holding = False
                self.cond.notify_all()
            for thread in threads:
                thread.join(WAIT_LIMIT)
        run.outcomes = outcomes

    def _await(self, gate: Gate, run: Run) -> None:
        """Wait until ``gate``'s actor has parked at its next step or finished (under ``cond``)."""
        if not self.cond.wait_for(lambda: self._quiet(gate), timeout=WAIT_LIMIT):
            raise AssertionError(f"{gate.name} neither parked nor finished; {run.describe()}")


@dataclass
class Exploration:
    """What :func:`explore` did: every run, in the order explored."""

    runs: list[Run]

    @property
    def interleavings(self) -> int:
        return len(self.runs)

    def traces(self) -> set[tuple[str, ...]]:
        return {tuple(r.trace) for r in self.runs}


#: Interleavings explored per scenario name, for the summary printed at the end of a test run.
EXPLORED: dict[str, int] = {}


def explore(
    name: str,
    setup: Callable[[str, list[Gate]], Any],
    operations: Callable[[Any], Sequence[Callable[[], Any]]],
    check: Callable[[Run], None],
    *,
    teardown: Callable[[Any], None] | None = None,
    actors: Sequence[str] = ("A", "B"),
    limit: int = 2000,
) -> Exploration:
    """Run ``operations`` under every merge order of their round trips and ``check`` each run.

    ``setup(prefix, gates)`` builds the state and the actors (gates are open during setup) and
    returns an environment; ``operations(env)`` gives one callable per actor; ``check(run)`` judges
    the finished run (``run.env`` is the environment, ``run.outcomes`` the results). The first
    run lets the lowest-numbered waiting actor go at every choice; each later run replays a
    recorded prefix of choices and takes another branch at its end, so every merge order is run
    exactly once (step counts may differ between runs: a plan's later steps depend on replies).

    Every operation must end with nothing of its own in flight (a write-behind manager flushes),
    so that when it returns its actor stays quiet.
    """
    pending: list[tuple[int, ...]] = [()]
    runs: list[Run] = []
    while pending:
        forced = pending.pop()
        prefix = fresh_prefix()
        controller = Controller(actors)
        env = setup(prefix, controller.gates)
        run = Run(prefix=prefix, env=env)
        try:
            controller.run(operations(env), forced, run)
            try:
                check(run)
            except AssertionError as e:
                raise AssertionError(f"{e}\nscenario {name}: {run.describe()}") from e
        finally:
            if teardown is not None:
                teardown(env)
        runs.append(run)
        if len(runs) > limit:
            raise AssertionError(f"scenario {name}: more than {limit} interleavings")
        # Branch at every choice point past the forced prefix: the other waiting actors.
        for i in range(len(forced), len(run.choices)):
            chosen, ready = run.choices[i]
            head = tuple(c for c, _ in run.choices[:i])
            pending.extend((*head, alt) for alt in reversed(ready) if alt > chosen)
    traces = {tuple(r.trace) for r in runs}
    if len(traces) != len(runs):
        raise AssertionError(f"scenario {name}: {len(runs)} runs but {len(traces)} distinct traces")
    EXPLORED[name] = len(runs)
    return Exploration(runs)


# -- reading back and invariants ----------------------------------------------------------------


def text_of(session_id: str, agent_id: str, message_id: int, tag: str) -> str:
    """Message text that names where it belongs, so a misplaced record gives itself away."""
    return f"{session_id}|{agent_id}|{message_id}|{tag}"


def message(session_id: str, agent_id: str, message_id: int, tag: str) -> SessionMessage:
    body = {"role": "user", "content": [{"text": text_of(session_id, agent_id, message_id, tag)}]}
    return SessionMessage(message=body, message_id=message_id)  # type: ignore[arg-type]


def agent(agent_id: str, **state: Any) -> SessionAgent:
    return SessionAgent(agent_id=agent_id, state=dict(state), conversation_manager_state={})


def session(session_id: str) -> Session:
    return Session(session_id=session_id, session_type=SessionType.AGENT)


class Orchestrator:
    """Stands in for a Graph/Swarm: the repository only calls ``id`` and ``serialize_state``."""

    def __init__(self, orchestrator_id: str, state: dict[str, Any]) -> None:
        self.id = orchestrator_id
        self._state = state

    def serialize_state(self) -> dict[str, Any]:
        return self._state


@dataclass
class Stored:
    """One session as stored: agents' states and each agent's messages as (id, text)."""

    agents: dict[str, dict[str, Any]]
    messages: dict[str, list[tuple[int, str]]]


def read_back(client: Any, prefix: str, session_id: str) -> Stored | None:
    """The session as an ungated repository reads it (None when it does not exist)."""
    repo = ValkeySessionRepository(client, key_prefix=prefix)
    if repo.read_session(session_id) is None:
        return None
    info = repo.session_info(session_id)
    assert info is not None, f"session {session_id} has a record but no catalog view"
    agents: dict[str, dict[str, Any]] = {}
    messages: dict[str, list[tuple[int, str]]] = {}
    stored_agents = client.hgetall(repo.session_keys(session_id).agents)
    for raw_id in stored_agents:
        agent_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        found = repo.read_agent(session_id, agent_id)
        assert found is not None
        agents[agent_id] = dict(found.state)
        messages[agent_id] = [
            (m.message_id, m.message["content"][0]["text"]) for m in repo.list_messages(session_id, agent_id)
        ]
    return Stored(agents, messages)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_integrity(
    client: Any, prefix: str, copies: dict[str, str] | None = None, skip: set[str] | frozenset[str] = frozenset()
) -> None:
    """Structural invariants of every session under ``prefix``, whatever the interleaving was.

    - no key of a session outlives its session hash (no orphans a delete could not find);
    - every message sits at its own id in its own session and agent (a text made by
      :func:`text_of` names them; ``copies`` maps a fork to the session its texts name);
    - the per-agent counts and versions agree with the stored agents and messages;
    - every session is listed in the catalog exactly once, under the member it records.

    Sessions in ``skip`` (damaged on purpose by a test) are not checked.
    """
    layout = KeyLayout(prefix)
    repo = ValkeySessionRepository(client, key_prefix=prefix)
    keys = [_text(k) for k in client.scan_iter(match=f"{prefix}:{{*", count=1000)]
    by_session: dict[str, set[str]] = {}
    for key in keys:
        tag, kind = key[len(prefix) + 2 :].rsplit("}:", 1)
        by_session.setdefault(tag, set()).add(kind)
    listed = {m.session_id for m in repo.iter_sessions()}
    for tag, kinds in by_session.items():
        if _decode_tag(tag) in skip:
            continue
        assert "session" in kinds, f"orphan keys {sorted(kinds)} of session {tag!r}: no session hash"
        session_id = _decode_tag(tag)
        keys_of = layout.session(session_id)
        fields = {_text(k): _text(v) for k, v in client.hgetall(keys_of.session).items()}
        agents = {_text(k) for k in client.hkeys(keys_of.agents)}
        versions = {f[2:] for f in fields if f.startswith("v:")}
        assert versions == agents, f"session {session_id}: versions {sorted(versions)} but agents {sorted(agents)}"
        for agent_id in agents:
            stored = repo.list_messages(session_id, agent_id)
            count = int(fields.get(f"n:{agent_id}", "0"))
            assert count == len(stored), f"session {session_id} agent {agent_id}: count {count}, stored {len(stored)}"
            named = (copies or {}).get(session_id, session_id)
            for m in stored:
                text = m.message["content"][0]["text"]
                where = text.split("|")[:3]
                assert "|" not in text or where == [named, agent_id, str(m.message_id)], (
                    f"message {text!r} stored in session {session_id}, agent {agent_id}, id {m.message_id}"
                )
        members = set(client.hkeys(keys_of.messages))
        indexed = set(client.zrange(keys_of.order, 0, -1))
        assert members == indexed, f"session {session_id}: records {len(members)} vs index {len(indexed)}"
        assert session_id in listed, f"session {session_id} is not listed in the catalog"


def _decode_tag(tag: str) -> str:
    return decode_id(tag)


# -- a reply lost after the server ran the command ----------------------------------------------


class LostReplyProxy:
    """A TCP proxy on loopback that can swallow one reply: the command reaches the server and runs,
    then the proxy closes the client's connection instead of passing the reply on, exactly as a
    network failure right after the server answered would. ``close()`` stops it and every connection.
    """

    def __init__(self, server_port: int) -> None:
        self._server_port = server_port
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._marker: bytes | None = None
        self._swallowing: set[socket.socket] = set()
        self._open = 0  # connection pairs not yet closed
        self._closed = threading.Condition(self._lock)
        self.lost = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_reply_to(self, marker: bytes | None) -> None:
        """Swallow the reply to the next request holding ``marker`` (one command or pipeline);
        ``None`` disarms."""
        with self._lock:
            self._marker = marker

    @property
    def armed(self) -> bool:
        with self._lock:
            return self._marker is not None

    def wait_closed(self, timeout: float = WAIT_LIMIT) -> None:
        """Wait until every connection through the proxy is closed (after the server dropped them:
        a ``CLIENT KILL``, a restart), so the client meets a closed socket on its next command."""
        with self._closed:
            if not self._closed.wait_for(lambda: self._open == 0, timeout=timeout):
                raise AssertionError(f"{self._open} proxied connection(s) still open after {timeout} s")

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _shut(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((HOST, self._server_port), timeout=5)
            except OSError:
                _shut(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
                self._open += 1
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                with self._lock:
                    if self._marker is not None and self._marker in data:
                        self._marker = None
                        self._swallowing.add(server)
                server.sendall(data)
        _shut(client)
        _shut(server)

    def _replies(self, server: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                with self._lock:
                    if server in self._swallowing:
                        self.lost += 1
                        break
                client.sendall(data)
        _shut(client)
        _shut(server)
        with self._closed:
            self._open -= 1
            self._closed.notify_all()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
