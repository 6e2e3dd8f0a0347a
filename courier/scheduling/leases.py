"""Leases in the state store (`courier.leases`): they keep two processes from running one
group window (or one source round) twice. A holder on this host is alive while its pid lives;
one on another host until its lease expires."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from courier.processes import pid_alive

if TYPE_CHECKING:
    from courier.state.base import StateStore

LEASE_TTL = timedelta(hours=6)  # only for holders on another host (same host: pid liveness)


def holder_alive(row: dict[str, Any], now: datetime) -> bool:
    """A lease (or run) holder is alive: same host, its pid lives; other host, not expired."""
    if row.get("host") == socket.gethostname():
        return bool(row.get("pid")) and pid_alive(int(row["pid"]))
    expires = row.get("expires_at")
    return expires is not None and expires > now


def take_lease(state: StateStore, scope: str, holder: str, now: datetime) -> dict[str, Any] | None:
    """Take the lease of scope for holder; None when taken, else the live holder's row."""
    row = state.get_lease(scope)
    if row and row["holder"] != holder and holder_alive(row, now):
        return row
    state.put_lease(
        {
            "scope": scope,
            "holder": holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": now,
            "expires_at": now + LEASE_TTL,
        }
    )
    return None
