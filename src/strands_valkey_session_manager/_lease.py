"""Agent leases for ``lock=True``: taken when an agent is initialized, renewed in the background."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING

from ._client import run_plan
from .exceptions import ValkeySessionError

if TYPE_CHECKING:
    from .repository import ValkeySessionRepository

logger = logging.getLogger(__name__)


class Lease:
    """The leases one manager holds in one session, with a daemon thread renewing them."""

    def __init__(self, repository: ValkeySessionRepository, session_id: str, lease_ms: int) -> None:
        self._repository = repository
        self._session_id = session_id
        self._lease_ms = lease_ms
        self.owner = uuid.uuid4().hex
        self._agents: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def acquire(self, agent_id: str) -> int:
        """Take the agent's lease.

        Raises:
            SessionLockedError: If another owner holds a live lease on it.
        """
        token = self._run(agent_id, "acquire")
        with self._lock:
            self._agents.add(agent_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew_loop, name="svsm-lease", daemon=True)
                self._thread.start()
        return token

    def release_all(self) -> None:
        """Stop renewing and give every lease back. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            agents, self._agents = self._agents, set()
        for agent_id in agents:
            try:
                self._run(agent_id, "release")
            except ValkeySessionError as e:  # it expires by itself
                logger.warning("agent_id=<%s> | could not release the lease: %s", agent_id, e)

    def _renew_loop(self) -> None:
        # Renewing every third of the lease time rides out two failed attempts.
        while not self._stop.wait(self._lease_ms / 3000):
            with self._lock:
                agents = list(self._agents)
            for agent_id in agents:
                try:
                    self._run(agent_id, "renew")
                except ValkeySessionError as e:
                    # A lost lease stays lost: the server fences this owner's writes from now on.
                    logger.warning("agent_id=<%s> | lease renewal failed: %s", agent_id, e)
                    if "lease was lost" in str(e):
                        with self._lock:
                            self._agents.discard(agent_id)

    def _run(self, agent_id: str, op: str) -> int:
        repository = self._repository
        return run_plan(repository._db, repository._p_lease(self._session_id, agent_id, self.owner, self._lease_ms, op))
