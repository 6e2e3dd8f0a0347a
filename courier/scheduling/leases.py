"""Leases in the state store (`courier.leases`): they keep two processes from running one
group window (or one source round) twice. A holder on this host is alive while its pid lives;
one on another host until its lease expires."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from courier.processes import pid_alive
from courier.records import Lease

if TYPE_CHECKING:
    from courier.state.base import StateStore

LEASE_TTL = timedelta(hours=6)  # only for holders on another host (same host: pid liveness)


def holder_alive(
    host: str | None, pid: int | None, now: datetime, expires_at: datetime | None = None
) -> bool:
    """A lease (or run) holder is alive: same host, its pid lives; other host, not expired."""
    if host == socket.gethostname():
        return bool(pid) and pid_alive(int(pid))  # type: ignore[arg-type]
    return expires_at is not None and expires_at > now


def take_lease(state: StateStore, scope: str, holder: str, now: datetime) -> Lease | None:
    """Take the lease of scope for holder; None when taken, else the live holder's lease."""
    held = state.get_lease(scope)
    if held and held.holder != holder and holder_alive(held.host, held.pid, now, held.expires_at):
        return held
    state.put_lease(Lease(scope, holder, socket.gethostname(), os.getpid(), now, now + LEASE_TTL))
    return None
