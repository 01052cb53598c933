import os
import threading

from callboard.speech.background import NICE, background_pool


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_workers_and_the_threads_they_start_run_below_the_caller() -> None:
    pool = background_pool(1, "test")
    try:
        own = _nice()
        assert pool.submit(_nice).result() == min(19, own + NICE)

        def child_nice() -> int:  # a runtime's helper thread, started while loading
            seen: list[int] = []
            thread = threading.Thread(target=lambda: seen.append(_nice()))
            thread.start()
            thread.join()
            return seen[0]

        assert pool.submit(child_nice).result() == min(19, own + NICE)
        assert _nice() == own  # the caller (the event loop) keeps its priority
    finally:
        pool.shutdown()
