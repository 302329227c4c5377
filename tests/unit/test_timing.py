"""raypkg.timing: the one policy of every bench that times calls itself (warm first,
interleaved rounds, the median), on injected clocks and calls."""

import itertools

import pytest

from raypkg.timing import iqr, measure, measure_one, round_order, steady_epoch_s


def scripted(seconds: dict, clock: list, log: list) -> dict:
    """Calls that advance ``clock`` by their next scripted seconds (the last repeats), log
    their name and return how many times they ran."""
    def call_of(name, seq):
        count = itertools.count(1)

        def call():
            log.append(name)
            clock[0] += seq.pop(0) if len(seq) > 1 else seq[0]
            return next(count)
        return call
    return {name: call_of(name, list(seq)) for name, seq in seconds.items()}


def test_every_call_is_warmed_untimed_then_timed_in_interleaved_rounds():
    clock, log = [0.0], []
    calls = scripted({"a": [100.0, 3.0, 1.0, 2.0], "b": [50.0, 4.0, 6.0, 5.0]}, clock, log)
    results, timings = measure(calls, 3, clock=lambda: clock[0])
    assert log == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-ups, then A B, B A, A B
    assert timings["a"].samples == (3.0, 1.0, 2.0) and timings["b"].samples == (4.0, 6.0, 5.0)
    assert timings["a"].seconds == 2.0 and timings["b"].seconds == 5.0  # the medians; a 100 s cold call counts not
    assert timings["a"].spread == iqr([3.0, 1.0, 2.0]) == 1.0
    assert results == {"a": 4, "b": 4}  # each call's last result


def test_a_stand_in_warms_a_call_instead_of_the_call_itself():
    log = []
    result, _ = measure_one(lambda: log.append("call") or len(log), warm=lambda: log.append("stand-in"))
    assert log == ["stand-in", "call"] and result == 2
    log.clear()
    result, _ = measure_one(lambda: log.append("call") or len(log), repeats=3)  # no stand-in: itself, untimed
    assert log == ["call"] * 4 and result == 4


def test_rounds_alternate_their_order():
    assert [round_order(["a", "b", "c"], i) for i in range(3)] == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"]]


def test_the_steady_epoch_is_the_median_after_the_first():
    assert steady_epoch_s([9.0, 1.0, 3.0, 2.0]) == 2.0
    with pytest.raises(ValueError, match="at least 2 epochs"):
        steady_epoch_s([1.0])
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure({"a": lambda: None}, 0)
    assert iqr([5.0]) == 0.0 and iqr([1, 2, 3, 4, 5]) == 2.0
