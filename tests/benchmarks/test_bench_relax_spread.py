"""The spread table of the relaxed-step benchmark: one row's ratios over runs."""


import pytest

from tests.helpers.repository_scripts import load_script


@pytest.fixture(scope="module")
def spread_module():
    return load_script("benchmarks/bench_relax_spread.py")


def test_spread_counts_the_runs_at_most_the_target(spread_module):
    s = spread_module.spread([1.40, 1.30, 1.35, 1.20, 1.50], target=1.35)
    assert s == {"median": 1.35, "min": 1.20, "max": 1.50, "runs": 5, "at_most_target": 3}


def test_one_run_is_refused(spread_module, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        spread_module.main(["--runs", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
