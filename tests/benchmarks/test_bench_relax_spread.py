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


def test_one_thread_setting_is_measured_by_turns_and_tabled(spread_module, tmp_path,
                                                             monkeypatch):
    """--one-thread runs each measurement a third time with torch on one thread (the default
    wait policy) and adds its column; the table is written from the runs' ratios."""
    calls = []
    ratios = {("default", None): 1.30, ("PASSIVE", None): 1.40, ("default", 1): 1.20}

    class FakeBench:
        POLICIES = ("default", "PASSIVE")

        @staticmethod
        def _run_policy(policy, models, results, threads=None):
            calls.append((policy, threads))
            r = ratios[policy, threads] + (0.0 if len(calls) <= 3 else 0.02)  # by rounds
            return {"meta": {"threads": threads or 2, "torch": "x", "load_average_before": 0.5},
                    "results": [{"model": "S5 regular MLP",
                                 "train_ratio_vs_exact": {"exact": 1.0, "relaxed": r}}]}

    monkeypatch.setattr(spread_module, "bench_relax", FakeBench)
    assert spread_module.main(["--runs", "2", "--one-thread", "--models", "S5",
                               "--out", str(tmp_path)]) == 0
    assert calls == [("default", None), ("PASSIVE", None), ("default", 1)] * 2
    text = (tmp_path / "relax_spread.md").read_text()
    assert "`python benchmarks/bench_relax_spread.py --runs 2 --models S5 --one-thread`" in text
    assert "ratio, 1 thread: median [min, max]" in text
    assert ("| S5 regular MLP | relaxed | 1.31x [1.30, 1.32] | 2/2 | 1.41x [1.40, 1.42] | 0/2 "
            "| 1.21x [1.20, 1.22] | 2/2 |") in text
