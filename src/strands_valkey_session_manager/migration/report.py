"""What a migration did: per-session progress and the final report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

_KEEP_NAMES = 20

Outcome = Literal["migrated", "replaced", "skipped", "failed"]


@dataclass(frozen=True)
class MigrationProgress:
    """Passed to ``on_session`` after each session."""

    session_id: str
    #: ``migrated`` (written, or would be in a dry run), ``replaced`` (a partial copy in the target
    #: was rewritten, or would be), ``skipped`` (already complete in the target), ``failed``.
    outcome: Outcome
    #: Sessions handled so far, this one included.
    done: int
    #: Sessions to handle in all.
    total: int
    #: Why the session failed (``failed`` only).
    error: str | None = None


@dataclass
class MigrationReport:
    """What a migration did, or would do in a dry run (then the ``*_migrated`` counts are would-be)."""

    dry_run: bool = False
    #: Sessions found in the source (after the ``session_ids`` filter).
    sessions_found: int = 0
    #: Sessions written, partial copies rewritten included.
    sessions_migrated: int = 0
    #: Of ``sessions_migrated``: partial copies found in the target and rewritten.
    sessions_replaced: int = 0
    #: Sessions already complete in the target, left alone.
    sessions_skipped: int = 0
    agents_migrated: int = 0
    agents_skipped: int = 0
    messages_migrated: int = 0
    messages_skipped: int = 0
    multi_agents_migrated: int = 0
    multi_agents_skipped: int = 0
    #: Session id -> why it could not be migrated (source record unreadable, id refused, ...).
    failures: dict[str, str] = field(default_factory=dict)
    #: Keys or paths in the source that are not part of its layout, or whose parent record is
    #: missing (an agent without its session, a message without its agent); left alone.
    unrecognised: int = 0
    #: The first few of them, by name.
    unrecognised_examples: list[str] = field(default_factory=list)

    @property
    def sessions_failed(self) -> int:
        """Sessions that could not be migrated."""
        return len(self.failures)

    def note_unrecognised(self, name: str) -> None:
        self.unrecognised += 1
        if len(self.unrecognised_examples) < _KEEP_NAMES:
            self.unrecognised_examples.append(name)
