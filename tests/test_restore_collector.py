"""A restore pauses Python's cyclic garbage collector while it decodes, one step at a time.

The decoded messages are containers that all survive, which makes CPython's collector scan older
generations again and again. The pause covers the decoding of one step (synchronous code, at most
``restore_step_records`` records), never a wait on the server; the collector is on again after
each step, also when decoding fails, and an application that turned it off keeps it off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from strands.types.session import SessionMessage

from strands_valkey_session_manager import CorruptRecordError, ValkeySessionRepository, _codec
from strands_valkey_session_manager.transfer import SessionExport
from tests.interleave import agent, session

SID, AID = "s", "a"


def _filled(repo: ValkeySessionRepository, count: int) -> None:
    messages = [
        SessionMessage(message={"role": "user", "content": [{"text": f"m{i}"}]}, message_id=i)  # type: ignore[arg-type]
        for i in range(count)
    ]
    repo.write_export(SessionExport(session=session(SID), agents=[agent(AID)], messages={AID: messages}))


@pytest.fixture
def collector_states(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the collector was on at each call of the step decoder."""
    states: list[bool] = []
    decode = _codec.decode_message_array

    def recording(*args: Any) -> Any:
        states.append(gc.isenabled())
        return decode(*args)

    monkeypatch.setattr(_codec, "decode_message_array", recording)
    return states


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        (gc.enable if was else gc.disable)()


@pytest.mark.usefixtures("collector_on")
def test_each_step_decodes_with_the_collector_paused_and_resumes_it(
    standalone_client: valkey.Valkey, collector_states: list[bool]
) -> None:
    repo = ValkeySessionRepository(standalone_client)
    _filled(repo, 2500)
    assert len(repo.list_messages(SID, AID)) == 2500
    assert collector_states == [False, False, False]  # three steps of at most 1,000
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_application_stays_off(
    standalone_client: valkey.Valkey, collector_states: list[bool]
) -> None:
    repo = ValkeySessionRepository(standalone_client)
    _filled(repo, 1500)
    was = gc.isenabled()
    gc.disable()
    try:
        assert len(repo.list_messages(SID, AID)) == 1500
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert collector_states == [False, False]


@pytest.mark.usefixtures("collector_on")
def test_the_collector_resumes_when_a_step_fails_to_decode(standalone_client: valkey.Valkey) -> None:
    repo = ValkeySessionRepository(standalone_client)
    _filled(repo, 1200)
    member = f"{AID}:{(1 << 63) + 1100:020d}"  # in the second step
    standalone_client.hset(repo.session_keys(SID).messages, member, "not a record")
    with pytest.raises(CorruptRecordError):
        repo.list_messages(SID, AID)
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_a_long_restore_makes_the_collector_scan_no_older_generation(standalone_client: valkey.Valkey) -> None:
    """Without the pause, 5,000 decoded messages (about 20,000 surviving containers) make the
    collector run its young generation about 28 times and its middle one at least twice."""
    repo = ValkeySessionRepository(standalone_client)
    _filled(repo, 5000)
    repo.list_messages(SID, AID, limit=1)  # scripts loaded
    older: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] > 0:
            older.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        assert len(repo.list_messages(SID, AID)) == 5000
    finally:
        gc.callbacks.remove(count)
    assert older == []


@pytest.mark.usefixtures("collector_on")
def test_restores_in_several_threads_leave_the_collector_on(standalone_client: valkey.Valkey) -> None:
    """Pauses of concurrent steps overlap in every order; the collector is on once all are done."""
    import threading

    repo = ValkeySessionRepository(standalone_client)
    _filled(repo, 3000)
    errors: list[BaseException] = []

    def restore() -> None:
        try:
            for _ in range(3):
                assert len(repo.list_messages(SID, AID)) == 3000
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=restore) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_a_key_providers_call_during_decoding_runs_with_the_collector_on(standalone_client: valkey.Valkey) -> None:
    """Unwrapping the session's data key may wait on the network: not inside the pause."""
    from strands_valkey_session_manager.encryption import LocalKeyProvider

    states: list[bool] = []

    class Recording(LocalKeyProvider):
        def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
            states.append(gc.isenabled())
            return super().unwrap(wrapped, context)

    provider = Recording({"k": LocalKeyProvider.generate_key()}, "k")
    _filled(ValkeySessionRepository(standalone_client, key_provider=provider), 1500)
    reader = ValkeySessionRepository(standalone_client, key_provider=provider)
    assert [m.message_id for m in reader.list_messages(SID, AID)] == list(range(1500))
    assert states and all(states), states
    assert gc.isenabled()
