"""Summaries over seeds, paired comparisons and results files (``experiments.kit.tables``)."""

from __future__ import annotations

import json
import math

import pytest

from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE
from equirelax.experiments.kit.tables import (
    markdown_table,
    mean_interval,
    paired_interval,
    summarise,
    verdict,
    write_results,
)


def _records(exact, relaxed, metric="score"):
    return [{"variant": v, "seed": s, metric: x}
            for v, values in (("exact", exact), ("relaxed", relaxed))
            for s, x in enumerate(values)]


def test_statistics_per_arm():
    summary = summarise(_records([1.0, 3.0], [2.0, 2.0]), ["score"])
    exact = summary["variants"]["exact"]
    assert exact["score"] == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "max": 3.0}
    assert exact["seeds"] == [0, 1] and "claim" not in summary and "paired" not in summary
    single = summarise(_records([1.0], [2.0]), ["score"])["variants"]["relaxed"]["score"]
    assert single["std"] == 0.0


def test_paired_differences_and_ratios():
    summary = summarise(_records([0.5, 0.6, 0.7], [0.6, 0.7, 0.75]), ["score"],
                        difference="score", ratios=["score"])
    claim = summary["claim"]
    assert claim["differences"] == pytest.approx([0.1, 0.1, 0.05])
    assert claim["wins"] == 3 and claim["losses"] == 0
    assert claim["sem"] == pytest.approx(claim["std"] / math.sqrt(3))
    paired = summary["paired"]["score"]
    assert paired["ratios"] == pytest.approx([1.2, 0.7 / 0.6, 0.75 / 0.7])
    assert paired["seeds"] == [0, 1, 2] and paired["relaxed_lower"] == 0
    assert paired["verdict"] == verdict(*paired["ci95"], 3)
    alone = summarise([r for r in _records([1.0], [2.0]) if r["variant"] == "exact"],
                      ["score"], difference="score", ratios=["score"])
    assert "claim" not in alone and alone["paired"] == {}


def test_interval_and_verdict():
    geo, low, high = paired_interval([0.5, 2.0])
    assert geo == pytest.approx(1.0) and low < 1 < high
    assert verdict(low, high, 2) == "no difference shown"
    assert verdict(*paired_interval([0.7])[1:], 1) == "one seed"


def test_mean_interval_is_the_one_sample_t_interval():
    from scipy import stats

    values = [0.10, 0.01, 0.07, -0.02]
    mean, low, high = mean_interval(values)
    want = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert mean == pytest.approx(sum(values) / 4)
    assert (low, high) == pytest.approx((want.low, want.high))
    wide = mean_interval(values, level=0.99)
    assert wide[1] < low and wide[2] > high
    one = mean_interval([0.3])
    assert one[0] == 0.3 and math.isnan(one[1]) and math.isnan(one[2])


def test_results_files(tmp_path):
    lines = ["# Title", "", *markdown_table([["a", 1], ["b", 2]], ["arm", "n"]), ""]
    assert lines[2:5] == ["| arm | n |", "|---|---|", "| a | 1 |"]
    json_path, md_path = write_results(tmp_path / "out", "results", {"rows": [1]}, lines,
                                       "equirelax toy --quick", smoke_test=True)
    payload = json.loads(json_path.read_text())
    assert list(payload) == ["smoke_test", "command", "rows"]
    assert payload["smoke_test"] == SMOKE_TEST_NOTE and payload["command"].endswith("--quick")
    assert md_path.read_text() == "\n".join(lines)
