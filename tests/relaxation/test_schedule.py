import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from equirelax.relaxation import Schedule, make_schedule


@given(total=st.integers(1, 5000), kind=st.sampled_from(["triangular", "linear", "cosine"]))
def test_decaying_schedules_end_exactly_at_zero(total, kind):
    s = make_schedule(kind, total)
    assert s(total - 1) == 0.0
    assert s(total + 10) == 0.0  # held at its last value
    values = [s(t) for t in range(0, total, max(1, total // 50))]
    assert all(0.0 <= v <= 1.0 for v in values)


@given(total=st.integers(3, 2001))
def test_triangular_rises_to_peak_then_falls(total):
    s = make_schedule("triangular", total, peak=1.0)
    assert s(0) == 0.0
    mid = (total - 1) / 2
    assert s(math.floor(mid)) == 1.0 and s(math.ceil(mid)) == 1.0  # the peak lies on a step
    rising = [s(t) for t in range(0, math.floor(mid) + 1)]
    falling = [s(t) for t in range(math.ceil(mid), total)]
    assert rising == sorted(rising)
    assert falling == sorted(falling, reverse=True)


def test_linear_and_cosine_start_at_peak():
    assert make_schedule("linear", 11, peak=0.5)(0) == 0.5
    assert make_schedule("linear", 11, peak=0.5)(5) == pytest.approx(0.25)
    assert make_schedule("cosine", 11)(0) == 1.0
    assert make_schedule("cosine", 11)(5) == pytest.approx(0.5)


def test_constant_and_callable():
    assert make_schedule("constant", None, value=0.1)(12345) == 0.1
    s = make_schedule(lambda t, total: 1.0 - t / total, 10)
    assert s(5) == 0.5
    assert s.describe()["kind"] == "custom"


@pytest.mark.parametrize(("total", "expected"), [
    (1, [0.0]),
    (2, [0.0, 0.0]),  # no step strictly inside: both ends must be exactly 0
    (3, [0.0, 1.0, 0.0]),
    (4, [0.0, 1.0, 1.0, 0.0]),
    (5, [0.0, 0.5, 1.0, 0.5, 0.0]),
    (10, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]),  # was 0.889 at best
    (11, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0]),
])
def test_triangular_reaches_its_peak_exactly(total, expected):
    s = make_schedule("triangular", total, peak=0.5)
    values = [s(t) for t in range(total)]
    assert values == pytest.approx([0.5 * v for v in expected], abs=1e-15)
    assert values[0] == 0.0 and values[-1] == 0.0  # exact, not approximately
    if total >= 3:
        assert max(values) == 0.5  # the peak itself, exactly
    assert values == values[::-1]  # symmetric about the middle


def test_single_step_schedule_is_zero():
    assert make_schedule("triangular", 1)(0) == 0.0


def test_bad_schedules_raise():
    with pytest.raises(ValueError, match="unknown schedule 'zigzag'"):
        make_schedule("zigzag", 10)
    with pytest.raises(ValueError, match="needs total_steps >= 1"):
        make_schedule("triangular", None)
    with pytest.raises(ValueError, match="step must be >= 0"):
        Schedule("linear", 5)(-1)


@pytest.mark.parametrize("total", [10.5, "10", True, 10.0, [10]])
def test_total_steps_must_be_an_integer(total):
    with pytest.raises(TypeError, match=rf"total_steps must be an integer >= 1, got "
                                        rf"{re.escape(repr(total))} \({type(total).__name__}\)"):
        make_schedule("triangular", total)


def test_integer_like_total_steps_are_kept_as_int():
    s = make_schedule("linear", np.int64(11))
    assert s.total == 11 and type(s.total) is int
    assert s.describe()["total"] == 11


@pytest.mark.parametrize(("name", "bad", "error", "message"), [
    ("peak", -0.5, ValueError, "peak must be a finite number >= 0, got -0.5"),
    ("peak", float("nan"), ValueError, "peak must be a finite number >= 0, got nan"),
    ("peak", "1", TypeError, "peak must be a number, got '1'"),
    ("value", float("inf"), ValueError, "value must be a finite number, got inf"),
    ("value", None, TypeError, "value must be a number, got None"),
])
def test_peak_and_value_are_checked(name, bad, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make_schedule("triangular", 10, **{name: bad})


def test_a_custom_schedule_needs_a_callable():
    with pytest.raises(TypeError, match="custom schedule needs a callable fn"):
        Schedule("custom", 10, fn=None)


def test_differences_name_what_changes_theta():
    s = make_schedule("triangular", 100, peak=1.0)
    assert s.differences(s.describe()) == []
    assert s.differences({}) == []  # old states: nothing recorded, nothing compared
    assert s.differences({"kind": "triangular"}) == []
    assert s.differences({"kind": "triangular", "total": 37}) == ["total 37 != 100"]
    assert s.differences({"kind": "cosine", "total": 100}) == ["kind 'cosine' != 'triangular'"]
    assert s.differences({**s.describe(), "peak": 0.5}) == ["peak 0.5 != 1.0"]
    assert s.differences({**s.describe(), "value": 0.7}) == []  # unused by a triangle
    const = make_schedule("constant", None, value=0.3)
    assert const.differences({**const.describe(), "total": 50}) == []
    assert const.differences({**const.describe(), "value": 0.4}) == ["value 0.4 != 0.3"]
