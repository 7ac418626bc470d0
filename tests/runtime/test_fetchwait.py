"""FetchWait on its own: the switch points, and an aiokafka without the attribute it changes."""

from __future__ import annotations

from types import SimpleNamespace

from stream.runtime.fetchwait import QUIET_S, FetchWait


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_after_a_quiet_second_and_busy_again_with_the_first_record() -> None:
    clock, consumer = _Clock(), SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=50))
    wait = FetchWait(consumer, 50, 500, clock=clock)
    clock.now += QUIET_S / 2
    wait.saw(0)
    assert not wait.idle and consumer._fetcher._fetch_max_wait_ms == 50
    clock.now += QUIET_S / 2
    wait.saw(0)
    assert wait.idle and consumer._fetcher._fetch_max_wait_ms == 500
    wait.saw(3)
    assert not wait.idle and consumer._fetcher._fetch_max_wait_ms == 50
    clock.now += QUIET_S * 0.9  # the quiet second counts from the last record
    wait.saw(0)
    assert not wait.idle


def test_off_when_the_idle_wait_is_not_longer_and_harmless_without_the_attribute() -> None:
    clock = _Clock()
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=50))
    off = FetchWait(consumer, 50, 0, clock=clock)
    clock.now += 10
    off.saw(0)
    assert not off.enabled and consumer._fetcher._fetch_max_wait_ms == 50
    bare = FetchWait(SimpleNamespace(), 50, 500, clock=clock)  # a later aiokafka without _fetcher
    clock.now += 10
    bare.saw(0)
    assert not bare.idle and not bare.enabled
    bare.saw(0)
