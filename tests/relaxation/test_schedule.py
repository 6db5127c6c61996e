import math

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
    assert s(math.floor(mid)) == pytest.approx(1.0, abs=2.0 / total)
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


def test_single_step_schedule_is_zero():
    assert make_schedule("triangular", 1)(0) == 0.0


def test_bad_schedules_raise():
    with pytest.raises(ValueError, match="unknown schedule 'zigzag'"):
        make_schedule("zigzag", 10)
    with pytest.raises(ValueError, match="needs total_steps >= 1"):
        make_schedule("triangular", None)
    with pytest.raises(ValueError, match="step must be >= 0"):
        Schedule("linear", 5)(-1)
