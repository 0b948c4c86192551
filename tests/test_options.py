"""One options object: every face accepts the options as keyword arguments or as ``options=``, and
passes one frozen ``RepositoryOptions`` down."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
import valkey
import valkey.asyncio

from strands_valkey_session_manager import (
    AsyncValkeySessionRepository,
    RepositoryOptions,
    ValkeySessionManager,
    ValkeySessionRepository,
)
from strands_valkey_session_manager._options import OPTION_NAMES, RepositoryKwargs


def _offline() -> valkey.Valkey:
    return valkey.Valkey(port=1)  # never connected: constructors send nothing


def test_the_keyword_form_lists_exactly_the_options() -> None:
    assert set(RepositoryKwargs.__annotations__) == OPTION_NAMES
    assert {f.name for f in dataclasses.fields(RepositoryOptions)} == OPTION_NAMES


def test_options_are_frozen_hashable_and_checked_when_made() -> None:
    options = RepositoryOptions(ttl=60, tags=["a", "b", "a"])
    assert options.tags == ("a", "b")
    hash(options)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.ttl = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="max_record_bytes"):
        RepositoryOptions(max_record_bytes=0)
    with pytest.raises(ValueError, match="key prefix"):
        RepositoryOptions(key_prefix="a{b}")
    with pytest.raises(ValueError, match="retries"):
        RepositoryOptions(retries=-1)
    with pytest.raises(ValueError, match="wait_timeout"):
        RepositoryOptions(wait_timeout=0)
    with pytest.raises(ValueError, match="tags must be a sequence"):
        RepositoryOptions(tags="one")


def test_the_repository_passes_one_options_object_down() -> None:
    options = RepositoryOptions(ttl=timedelta(minutes=1), retries=5, wait_for_replicas=1, key_prefix="app")
    repo = ValkeySessionRepository(_offline(), options=options)
    assert repo.options is options
    assert repo.key_prefix == "app"
    assert repo._ttl_ms == 60_000
    assert repo._db.retry.retries == 5
    assert repo._versions is None  # check_versions=None: off for a repository


def test_keyword_arguments_build_the_same_options_and_replace_those_of_options() -> None:
    by_keywords = ValkeySessionRepository(_offline(), ttl=60, retries=5, check_versions=True)
    assert by_keywords.options == RepositoryOptions(ttl=60, retries=5, check_versions=True)
    mixed = ValkeySessionRepository(_offline(), options=RepositoryOptions(ttl=60, retries=5), retries=0)
    assert mixed.options == RepositoryOptions(ttl=60, retries=0)
    assert mixed._db.retry.retries == 0


@pytest.mark.parametrize("face", [ValkeySessionRepository, AsyncValkeySessionRepository])
def test_an_unknown_keyword_argument_is_a_type_error_naming_the_closest_option(face: Any) -> None:
    client = valkey.asyncio.Valkey(port=1) if face is AsyncValkeySessionRepository else _offline()
    with pytest.raises(TypeError, match=r"got unexpected keyword argument 'tll' \(did you mean 'ttl'\?\)"):
        face(client, tll=60)
    with pytest.raises(TypeError, match="options must be a RepositoryOptions, not dict"):
        face(client, options={"ttl": 60})


def test_the_asyncio_repository_takes_the_same_options() -> None:
    options = RepositoryOptions(ttl=60, check_versions=True)
    repo = AsyncValkeySessionRepository(valkey.asyncio.Valkey(port=1), options=options)
    assert repo.options is options
    assert repo._versions == {}


def test_the_manager_takes_options_and_checks_versions_unless_told_not_to(standalone_client: Any) -> None:
    manager = ValkeySessionManager("opts-1", standalone_client, options=RepositoryOptions(ttl=60))
    assert manager._versions is not None  # check_versions=None: on for the manager
    assert manager.options.ttl == 60
    off = ValkeySessionManager("opts-2", standalone_client, options=RepositoryOptions(check_versions=False))
    assert off._versions is None
    assert ValkeySessionManager("opts-3", standalone_client, check_versions=False)._versions is None
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'write_behnd' \(did you mean 'write_behind'\?\)"):
        ValkeySessionManager("opts-4", standalone_client, write_behnd=True)  # type: ignore[call-arg]


@pytest.mark.parametrize("face", [ValkeySessionRepository, AsyncValkeySessionRepository, ValkeySessionManager])
def test_public_methods_carry_no_private_parameters(face: Any) -> None:
    import inspect

    private = [
        f"{name}({parameter})"
        for name, method in inspect.getmembers(face, inspect.isfunction)
        if not name.startswith("_")
        for parameter in inspect.signature(method).parameters
        if parameter.startswith("_")
    ]
    assert private == []
