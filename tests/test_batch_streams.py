"""The batch import's streams (tasks/batch_import.py): items kept in order, taken only so far ahead, worked
on so many at once, and a failure given to the consumer at its place."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagesearch_pg.tasks import batch_import
from imagesearch_pg.tasks.batch_import import overlapped, pulled_ahead


@given(st.lists(st.integers(), max_size=40), st.integers(min_value=0, max_value=6))
def test_pulled_ahead_gives_every_item_in_order_taken_count_ahead(items, count):
    taken = []

    def source():
        for item in items:
            taken.append(item)
            yield item

    given_ = []
    for at, item in enumerate(pulled_ahead(source(), count)):
        assert len(taken) == min(at + count + 1, len(items))  # this one and ``count`` more, no further
        given_.append(item)
    assert given_ == items


def test_overlapped_keeps_order_and_works_streams_at_once():
    running, most, lock = 0, 0, threading.Lock()

    def work(n):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02 if n % 3 == 0 else 0.005)  # later items often finish first
        with lock:
            running -= 1
        return n * n

    with ThreadPoolExecutor(2) as pool:
        assert list(overlapped(iter(range(12)), work, pool, 2)) == [(n, n * n) for n in range(12)]
    assert most == 2


def test_a_failed_item_is_raised_where_its_result_is_due_after_the_ones_before():
    def work(n):
        if n == 3:
            raise ValueError("item 3")
        return n

    got = []
    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="item 3"):
        for item, result in overlapped(iter(range(6)), work, pool, 2):
            got.append(result)
    assert got == [0, 1, 2]


def test_framed_ahead_frames_each_group_on_the_readers(monkeypatch):
    monkeypatch.setattr(batch_import, "FRAMED_AHEAD", 2)
    threads = set()

    def frame(item):
        threads.add(threading.current_thread().name)
        return item * 10

    groups = iter([("a", [1, 2]), (None, [3]), ("b", [])])
    with ThreadPoolExecutor(2, thread_name_prefix="reader") as readers:
        framed = list(batch_import.framed_ahead(groups, frame, readers))
    assert framed == [("a", [1, 2], [10, 20]), (None, [3], [30]), ("b", [], [])]
    assert threads and all(name.startswith("reader") for name in threads)
