"""Retry timer and chunk sizer, by hand."""

from __future__ import annotations

import pytest

from hwnas_bench.pacing import ChunkSizer, RetryTimer


def test_timer_starts_at_its_initial_wait_and_backs_off() -> None:
    timer = RetryTimer(initial=0.4)
    assert timer.timeout() == 0.4
    assert timer.timeout(attempt=3) == pytest.approx(1.6)


def test_timer_follows_jacobson_karels() -> None:
    timer = RetryTimer(initial=0.4, minimum=0.0)
    timer.sample(0.1)
    assert (timer.srtt, timer.rttvar) == (0.1, 0.05)
    timer.sample(0.2)
    assert timer.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.1)
    assert timer.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)
    assert timer.timeout() == pytest.approx(timer.srtt + 4 * timer.rttvar)


def test_timer_scales_with_frame_size_on_a_slow_line() -> None:
    timer = RetryTimer(initial=0.4)
    timer.sample(0.1, nbytes=4096)  # 4 KiB took 0.1 s: 24 µs per byte
    assert timer.timeout(nbytes=8192) == pytest.approx(2 * 0.1 / 4096 * 8192)  # not srtt-bound
    assert timer.timeout(nbytes=100) == pytest.approx(0.1 + 4 * 0.05)  # small: srtt-bound


def test_timer_floor_and_cap() -> None:
    timer = RetryTimer(initial=0.4, minimum=0.05, maximum=5.0)
    timer.sample(0.001)
    assert timer.timeout() == 0.05
    timer.sample(100.0)
    assert timer.timeout(attempt=10) == 60.0


def test_sizer_halves_on_failure_and_grows_after_clean_runs() -> None:
    sizer = ChunkSizer(size=4096, minimum=256, maximum=16384, grow_after=2)
    sizer.record(attempts=2)
    assert sizer.size == 2048
    sizer.record(1)
    sizer.record(1)
    assert sizer.size == 4096
    for _ in range(10):
        sizer.record(1)
    assert sizer.size == 16384
    for _ in range(10):
        sizer.record(3)
    assert sizer.size == 256


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_counts_down_expires_and_restarts() -> None:
    from hwnas_bench.pacing import Deadline

    clock = Clock()
    deadline = Deadline(2.0, clock=clock)
    assert deadline.remaining() == 2.0
    assert not deadline.expired()
    clock.now += 1.5
    assert deadline.remaining() == pytest.approx(0.5)
    clock.now += 1.0
    assert deadline.expired()
    assert deadline.remaining() == 0.0
    deadline.restart()  # the same span again, from now
    assert deadline.remaining() == 2.0
    deadline.restart(0.25, since=clock.now - 1.0)  # a span that began a second ago
    assert deadline.expired()
    deadline.extend_to(clock.now + 3.0)  # never earlier than a given moment
    assert deadline.remaining() == pytest.approx(3.0)
    deadline.extend_to(clock.now + 1.0)
    assert deadline.remaining() == pytest.approx(3.0)
