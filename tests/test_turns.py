"""The analyses' turns: one at a time, and a waiting urgent job (the grid, a clicked tool) before the others."""

import threading
import time

from dash_app.analytics.turns import Turns


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_an_urgent_job_that_comes_last_goes_before_the_others_waiting():
    turns = Turns()
    order = []
    inside = []

    def job(name, urgent):
        with turns.turn(urgent):
            inside.append(name)
            assert len(inside) == 1, inside  # one at a time
            order.append(name)
            inside.remove(name)

    threads = []
    with turns.turn(urgent=False):  # a section's analysis is running
        for n in range(3):
            threads.append(threading.Thread(target=job, args=(f"section {n}", False)))
            threads[-1].start()
        wait_for(lambda: turns.waiting() == (0, 3))
        threads.append(threading.Thread(target=job, args=("row click", True)))
        threads[-1].start()
        wait_for(lambda: turns.waiting() == (1, 3))
    for thread in threads:
        thread.join(10)
    assert order[0] == "row click" and sorted(order[1:]) == ["section 0", "section 1", "section 2"]
    assert turns.waiting() == (0, 0)


def test_a_job_that_fails_lets_the_next_one_in():
    turns = Turns()
    try:
        with turns.turn(urgent=True):
            raise ValueError("the analysis failed")
    except ValueError:
        pass
    done = []

    def next_job():
        with turns.turn():
            done.append(True)

    thread = threading.Thread(target=next_job)
    thread.start()
    thread.join(5)
    assert done == [True]
