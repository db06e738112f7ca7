"""LatestFrameWorker: the newest frame wins, drops are counted, the rate cap holds."""

from __future__ import annotations

import threading

from aesvc_vpr.ros.worker import LatestFrameWorker


class Recorder:
    """A frame handler that can be held at its first item."""

    def __init__(self, hold_first: bool = False) -> None:
        self.items: list[object] = []
        self.dropped = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.done = threading.Condition()
        if not hold_first:
            self.release.set()

    def handle(self, item: object) -> None:
        self.started.set()
        self.release.wait(10)
        if item == 'boom':
            raise RuntimeError('handler bug')
        with self.done:
            self.items.append(item)
            self.done.notify_all()

    def on_dropped(self) -> None:
        self.dropped += 1

    def worker(self, max_rate_hz: float = 0.0) -> LatestFrameWorker:
        """Return a started worker that feeds this recorder."""
        worker = LatestFrameWorker(self.handle, self.on_dropped, lambda: max_rate_hz)
        worker.start()
        return worker

    def wait_items(self, count: int) -> list[object]:
        with self.done:
            assert self.done.wait_for(lambda: len(self.items) >= count, 10), self.items
        return self.items


def test_newest_frame_wins_and_drops_are_counted() -> None:
    rec = Recorder(hold_first=True)
    worker = rec.worker()
    worker.submit(1)
    assert rec.started.wait(10)
    for item in (2, 3, 4):          # arrive while 1 is being processed
        worker.submit(item)
    rec.release.set()
    assert rec.wait_items(2) == [1, 4]
    assert rec.dropped == 2
    worker.stop()


def test_rate_cap_replaces_frames_that_arrive_too_soon() -> None:
    rec = Recorder()
    worker = rec.worker(max_rate_hz=1.0)   # one frame per second
    worker.submit('a')
    rec.wait_items(1)
    worker.submit('b')              # inside the 1 s hold-off: replaced by 'c'
    worker.submit('c')
    assert rec.wait_items(2) == ['a', 'c']
    assert rec.dropped == 1
    worker.stop()


def test_a_failing_frame_does_not_stop_the_worker(caplog) -> None:
    rec = Recorder()
    worker = rec.worker()
    worker.submit('boom')
    assert rec.started.wait(10)     # taken from the slot, so 'ok' cannot replace it
    worker.submit('ok')
    assert rec.wait_items(1) == ['ok']
    worker.stop()
    assert 'frame handler failed' in caplog.text


def test_stop_joins_and_discards_the_slot() -> None:
    rec = Recorder(hold_first=True)
    worker = rec.worker()
    worker.submit(1)
    assert rec.started.wait(10)
    worker.submit(2)
    rec.release.set()
    worker.stop()
    assert rec.items == [1]
    assert not any(thread.is_alive() for thread in worker._threads)


def test_two_threads_hold_two_frames_in_flight_and_still_replace_the_rest() -> None:
    both_in = threading.Barrier(3, timeout=10)   # two handlers and the test
    first_taken, go = threading.Event(), threading.Event()

    def handle(item: object) -> None:
        if item in (1, 2):
            first_taken.set()
            both_in.wait()      # passes only if 1 and 2 are being handled at the same time
            go.wait(10)
        with rec.done:
            rec.items.append(item)
            rec.done.notify_all()

    rec = Recorder()
    worker = LatestFrameWorker(handle, rec.on_dropped, lambda: 0.0, threads=2)
    worker.start()
    worker.submit(1)
    assert first_taken.wait(10)     # 1 left the slot, so 2 cannot replace it
    worker.submit(2)
    both_in.wait()              # both threads are busy now: 3 and 4 wait in the one slot
    worker.submit(3)
    worker.submit(4)
    go.set()
    assert sorted(rec.wait_items(3)) == [1, 2, 4]
    assert rec.dropped == 1
    worker.stop()
    assert not any(thread.is_alive() for thread in worker._threads)


class FrozenClock:
    """A clock that never moves: a rate-cap hold-off can only end by a rate change."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_new_rate_applies_to_the_frame_already_waiting() -> None:
    rec = Recorder()
    rate = {'hz': 0.1}                     # hold the next frame 10 s after each start
    worker = LatestFrameWorker(rec.handle, rec.on_dropped, lambda: rate['hz'],
                               clock=FrozenClock())
    worker.start()
    worker.submit('a')
    rec.wait_items(1)
    worker.submit('b')                     # held: the frozen clock never reaches the 10 s
    with rec.done:
        assert not rec.done.wait_for(lambda: len(rec.items) > 1, 0.2)
    rate['hz'] = 0.0                       # the cap is lifted ...
    worker.wake()                          # ... and the waiting thread re-reads it
    assert rec.wait_items(2) == ['a', 'b']
    worker.stop()
