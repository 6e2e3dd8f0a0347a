"""The shared pieces of courier.errors: the lookup error and the transient-retry loop."""

from __future__ import annotations

import pytest

from courier.errors import ConfigError, RunError, TransientError, not_found, retry_transient


def test_a_lookup_error_lists_what_there_is_and_guesses_a_misspelling() -> None:
    near = not_found("courier", "evnets", ["events", "clicks"], "add config/couriers/evnets.toml")
    assert isinstance(near, ConfigError)
    assert str(near) == (
        "no courier named 'evnets' (known: clicks, events); did you mean 'events'? "
        "Else add config/couriers/evnets.toml"
    )
    far = not_found("feed", "zzz", [], "add feeds/zzz.toml")
    assert str(far) == "no feed named 'zzz' (known: none); add feeds/zzz.toml"
    query = not_found("saved query", "q", ["orders"], named=False, location="t.toml", key="query")
    assert str(query) == "t.toml [query]: no saved query 'q' (known: orders)"


def test_retry_transient_doubles_its_pause_and_gives_up_at_the_deadline() -> None:
    now = [0.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    def busy() -> None:
        raise TransientError("held by another process")

    with pytest.raises(TransientError):
        retry_transient(busy, until=3.0, clock=lambda: now[0], sleep=sleep, first=0.2, cap=1.0)
    assert pauses == [0.2, 0.4, 0.8, 1.0, 1.0]

    calls = iter([TransientError("once"), None])

    def once() -> str:
        exc = next(calls)
        if exc is not None:
            raise exc
        return "done"

    assert retry_transient(once, until=None, clock=lambda: 0.0, sleep=lambda s: None) == "done"
    with pytest.raises(RunError):  # a terminal error is not retried
        retry_transient(
            lambda: (_ for _ in ()).throw(RunError("bad")), until=None, sleep=pauses.append
        )
