"""Agent leases for ``lock=True``: taken when an agent is initialized, renewed in the background."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING

from strands.types.exceptions import SessionException

from ._client import run_plan
from .exceptions import SessionLockedError, SessionNotFoundError

if TYPE_CHECKING:
    from .repository import ValkeySessionRepository

logger = logging.getLogger(__name__)


class Lease:
    """The leases one manager holds in one session, with a daemon thread renewing them.

    A lease that cannot be renewed because it is gone for good (the session vanished, or the lease
    expired and another owner took it) is dropped from renewal and recorded in :attr:`lost`; the
    server refuses this owner's writes to that agent from then on. Any other failure of a renewal
    (server unreachable) is logged and tried again at the next renewal. The thread never dies of
    an error: it stops when :meth:`release_all` asks it to.
    """

    def __init__(self, repository: ValkeySessionRepository, session_id: str, lease_ms: int) -> None:
        self._repository = repository
        self._session_id = session_id
        self._lease_ms = lease_ms
        self.owner = uuid.uuid4().hex
        self._agents: set[str] = set()
        self.lost: dict[str, SessionException] = {}
        self._lost_event = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def acquire(self, agent_id: str) -> int:
        """Take the agent's lease.

        Raises:
            SessionLockedError: If another owner holds a live lease on it.
            SessionNotFoundError: If the session does not exist.
        """
        token = self._run(agent_id, "acquire")
        with self._lock:
            self._agents.add(agent_id)
            self.lost.pop(agent_id, None)
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew_loop, name="svsm-lease", daemon=True)
                self._thread.start()
        return token

    def release_all(self) -> None:
        """Stop renewing and give every lease still held back; failures are logged (a lease expires
        by itself after its time). Safe to call twice; never raises a store error."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            agents, self._agents = self._agents, set()
        for agent_id in agents:
            try:
                self._run(agent_id, "release")
            except SessionException as e:  # it expires by itself
                logger.warning("agent_id=<%s> | could not release the lease: %s", agent_id, e)

    def _renew_loop(self) -> None:
        # Renewing every third of the lease time rides out two failed attempts.
        while not self._stop.wait(self._lease_ms / 3000):
            with self._lock:
                agents = list(self._agents)
            for agent_id in agents:
                self._renew(agent_id)

    def _renew(self, agent_id: str) -> None:
        try:
            self._run(agent_id, "renew")
        except (SessionNotFoundError, SessionLockedError) as e:
            # Gone for good: the session vanished, or the lease expired and another owner took it.
            # The server fences this owner's writes from now on; renewing again cannot help.
            logger.warning("agent_id=<%s> | lease lost, renewal stopped: %s", agent_id, e)
            with self._lock:
                self._agents.discard(agent_id)
                self.lost[agent_id] = e
            self._lost_event.set()
        except SessionException as e:
            logger.warning("agent_id=<%s> | lease renewal failed, trying again: %s", agent_id, e)
        except Exception:  # never let the renewal thread die: the next renewal tries again
            logger.exception("agent_id=<%s> | lease renewal failed unexpectedly, trying again", agent_id)

    def _run(self, agent_id: str, op: str) -> int:
        repository = self._repository
        return run_plan(repository._db, repository._p_lease(self._session_id, agent_id, self.owner, self._lease_ms, op))
