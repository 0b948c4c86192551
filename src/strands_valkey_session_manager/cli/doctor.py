"""Server checks behind ``svsm doctor``: version, topology, persistence, eviction, ACL, latency.

Each check is a small function of the client that returns a :class:`Check`; a check that cannot run
(the command is renamed or not permitted, as on managed services) says so with the ``skip`` status
instead of failing. Only read-only commands are sent: ``INFO``, ``CONFIG GET``, ``ACL WHOAMI``,
``ACL DRYRUN``, ``PING`` and the catalog listing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._keys import KeyLayout
from .._schema import F_CATALOG, F_RECORD, F_TTL, F_USER, count_field

Status = Literal["ok", "warn", "error", "skip"]

#: Oldest servers the scripts run on (PEXPIRETIME, ACL DRYRUN: 7.0).
MIN_VERSION = (7, 0)
PINGS = 20
# Sessions sampled to see whether sessions carry a TTL (for volatile-* eviction policies).
_TTL_SAMPLE = 20


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str


def exit_code(checks: Sequence[Check]) -> int:
    """0 when every check passed (or was skipped), 1 with warnings, 2 with errors."""
    statuses = {c.status for c in checks}
    return 2 if "error" in statuses else 1 if "warn" in statuses else 0


def run_checks(
    client: Any, *, key_prefix: str, cluster: bool, sample_ttls: Callable[[int], list[float | None]]
) -> list[Check]:
    """Every check, in display order.

    Args:
        client: The client ``svsm`` uses (``decode_responses=True``).
        key_prefix: The key prefix, so ACL checks use keys we would really touch.
        cluster: Whether ``client`` is a cluster client.
        sample_ttls: Given n, the remaining lifetimes of the n newest sessions (``None``: no TTL).

    Raises:
        The client's connection errors when the server cannot be reached at all (the first check
        is a plain ``INFO``/``PING``); the caller maps those.
    """
    node = client.get_primaries()[0] if cluster else None
    target: dict[str, Any] = {} if node is None else {"target_nodes": node}

    def command(*args: Any) -> Any:
        return client.execute_command(*args, **target)

    checks = [_version(command), _topology(client, command, cluster), _persistence(command)]
    checks.append(_eviction(command, sample_ttls))
    checks.append(_acl(command, KeyLayout(key_prefix)))
    checks.append(_latency(command))
    return checks


def _info(command: Callable[..., Any], section: str) -> dict[str, Any]:
    reply = command("INFO", section)
    if isinstance(reply, dict):
        return reply
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def _refused(error: Exception) -> str:
    """Why a command could not run, shortened for a table cell."""
    return " ".join(str(error).split())[:160]


def _version(command: Callable[..., Any]) -> Check:
    try:
        info = _info(command, "server")
    except _response_errors() as e:
        return Check("server", "skip", f"INFO refused: {_refused(e)}")
    if "valkey_version" in info:
        name, version = "Valkey", str(info["valkey_version"])
    else:
        name, version = "Redis", str(info.get("redis_version", "?"))
    try:
        numbers = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return Check("server", "warn", f"{name} {version}: version not understood")
    if numbers < MIN_VERSION:
        return Check("server", "error", f"{name} {version}: needs Valkey 7.2+ or Redis 7.0+ (PEXPIRETIME, ACL DRYRUN)")
    return Check("server", "ok", f"{name} {version}")


def _topology(client: Any, command: Callable[..., Any], cluster: bool) -> Check:
    try:
        enabled = str(_info(command, "cluster").get("cluster_enabled", "0")) == "1"
    except _response_errors() as e:
        return Check("topology", "skip", f"INFO refused: {_refused(e)}")
    if enabled and not cluster:
        return Check("topology", "error", "the server runs in cluster mode: pass --cluster")
    if not enabled:
        return Check("topology", "ok", "standalone")
    primaries = len(client.get_primaries())
    replicas = len(client.get_replicas())
    return Check("topology", "ok", f"cluster: {primaries} primaries, {replicas} replicas")


def _persistence(command: Callable[..., Any]) -> Check:
    try:
        appendonly = _config(command, "appendonly")
        save = _config(command, "save")
        fsync = _config(command, "appendfsync") if appendonly == "yes" else ""
    except _response_errors() as e:
        try:
            aof = str(_info(command, "persistence").get("aof_enabled", "0")) == "1"
        except _response_errors():
            return Check(
                "persistence",
                "skip",
                f"CONFIG GET refused ({_refused(e)}); managed services persist on their own terms",
            )
        if aof:
            return Check("persistence", "ok", "append-only file on (CONFIG GET refused: RDB schedule unknown)")
        return Check("persistence", "skip", f"CONFIG GET refused ({_refused(e)}); AOF off, RDB schedule unknown")
    parts = []
    if appendonly == "yes":
        parts.append(f"append-only file on (appendfsync {fsync})")
    if save.strip():
        parts.append(f"RDB snapshots (save {save})")
    if not parts:
        return Check(
            "persistence",
            "warn",
            "appendonly no and no save schedule: sessions live in memory only, a restart loses all of them",
        )
    return Check("persistence", "ok", "; ".join(parts))


def _config(command: Callable[..., Any], name: str) -> str:
    reply = command("CONFIG", "GET", name)
    if isinstance(reply, dict):
        return str(reply.get(name, ""))
    values = list(reply)
    return str(values[1]) if len(values) >= 2 else ""


def _eviction(command: Callable[..., Any], sample_ttls: Callable[[int], list[float | None]]) -> Check:
    try:
        memory = _info(command, "memory")
    except _response_errors() as e:
        return Check("eviction", "skip", f"INFO refused: {_refused(e)}")
    policy = str(memory.get("maxmemory_policy", "?"))
    limit = int(memory.get("maxmemory", 0) or 0)
    bound = f"maxmemory {limit} bytes" if limit else "maxmemory not set"
    if policy == "noeviction":
        return Check("eviction", "ok", f"noeviction ({bound}): a full server refuses writes, it never drops sessions")
    if policy.startswith("allkeys-"):
        return Check(
            "eviction",
            "warn",
            f"{policy} ({bound}): under memory pressure the server deletes any key, so sessions (or single "
            "keys of a session, or catalog entries) vanish without an error; use noeviction, or a volatile-* "
            "policy when sessions have no TTL",
        )
    if policy.startswith("volatile-"):
        ttls = sample_ttls(_TTL_SAMPLE)
        expiring = sum(1 for t in ttls if t is not None)
        if expiring:
            return Check(
                "eviction",
                "warn",
                f"{policy} ({bound}) and {expiring} of the {len(ttls)} newest sessions have a TTL: the server may "
                "evict their keys before they expire, one key at a time, leaving sessions cut short; use noeviction",
            )
        return Check(
            "eviction",
            "ok",
            f"{policy} ({bound}): only keys with a TTL are evicted, and the newest sessions have none "
            "(sessions created with ttl/max_age would be at risk)",
        )
    return Check("eviction", "warn", f"unknown policy {policy!r} ({bound})")


def acl_probes(layout: KeyLayout) -> list[tuple[str, ...]]:
    """Every command the package sends (directly or inside its scripts), with keys it would touch."""
    keys = layout.session("svsm-doctor")
    index = layout.catalog_index(0)
    member = "000000000000000:svsm-doctor"
    return [
        ("GET", keys.session),
        ("SET", keys.session, "x"),
        ("PERSIST", keys.session),
        ("RENAME", keys.session, keys.agents),
        ("ZRANGEBYSCORE", index, "-inf", "+inf"),
        ("HGET", keys.session, F_RECORD),
        ("HEXISTS", keys.agents, "agent"),
        ("HSET", keys.session, F_RECORD, "{}"),
        ("HMGET", keys.session, F_CATALOG, F_USER),
        ("HGETALL", keys.session),
        ("HKEYS", keys.agents),
        ("HDEL", keys.session, F_TTL),
        ("HINCRBY", keys.session, count_field("agent"), "1"),
        ("EVALSHA", "0" * 40, "5", *keys.all()),
        ("SCRIPT", "LOAD", "return 1"),
        ("ZADD", index, "0", member),
        ("ZREM", index, member),
        ("ZREVRANGEBYLEX", index, "+", "-"),
        ("ZRANGEBYLEX", keys.order, "-", "+"),
        ("ZLEXCOUNT", keys.order, "-", "+"),
        ("DEL", *keys.all()),
        ("EXISTS", keys.session),
        ("PEXPIREAT", keys.session, "0"),
        ("PEXPIRETIME", keys.session),
        ("PTTL", keys.session),
        ("DUMP", keys.messages),
        ("RESTORE", keys.messages, "0", "x"),
        ("TIME",),
    ]


def _acl(command: Callable[..., Any], layout: KeyLayout) -> Check:
    try:
        user = str(command("ACL", "WHOAMI"))
        denied = []
        for probe in acl_probes(layout):
            verdict = str(command("ACL", "DRYRUN", user, *probe))
            if verdict != "OK":
                denied.append(f"{' '.join(probe[:2]) if probe[0] == 'SCRIPT' else probe[0]} ({verdict})")
    except _response_errors() as e:
        return Check("ACL", "skip", f"cannot check (ACL WHOAMI/DRYRUN refused or unknown: {_refused(e)})")
    if denied:
        return Check("ACL", "error", f"user {user} may not run: " + "; ".join(denied))
    return Check("ACL", "ok", f"user {user} may run all {len(acl_probes(layout))} commands on {layout.prefix}:* keys")


def _latency(command: Callable[..., Any]) -> Check:
    samples = []
    for _ in range(PINGS):
        start = time.perf_counter()
        command("PING")
        samples.append(time.perf_counter() - start)
    median = statistics.median(samples) * 1000
    return Check(
        "latency", "ok", f"median round trip {median:.2f} ms over {PINGS} PINGs (restore of an agent: 2 round trips)"
    )


def _response_errors() -> tuple[type[Exception], ...]:
    """Server refusals (unknown command, NOPERM, ...) of both client libraries, not connection errors."""
    import valkey.exceptions

    errors: list[type[Exception]] = [valkey.exceptions.ResponseError]
    try:
        import redis.exceptions
    except ImportError:
        pass
    else:
        errors.append(redis.exceptions.ResponseError)
    return tuple(errors)
