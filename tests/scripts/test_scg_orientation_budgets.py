"""The orientation-over-budgets table: per-seed differences and their Student-t interval."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.helpers.repository_scripts import load_script


@pytest.fixture(scope="module")
def budgets_module():
    return load_script("scripts/scg_orientation_budgets.py")


def _probe_file(path: Path, values: dict[str, list[float]], first_seed: int = 0) -> Path:
    rows = [{"model": m, "seed": first_seed + s, "mean_osi": v, "osi_w": v / 2}
            for m, vs in values.items() for s, v in enumerate(vs)]
    rows.append({"model": "full", "seed": 0, "mean_osi": 9.0, "osi_w": 9.0})  # ignored
    path.write_text(json.dumps(rows))
    return path


def test_paired_differences_match_a_one_sample_t_interval(budgets_module):
    a, b = {0: 0.30, 1: 0.25, 2: 0.28}, {0: 0.20, 1: 0.24, 2: 0.21}
    seeds, d, mean, lo, hi = budgets_module.paired(a, b)
    assert seeds == [0, 1, 2]
    assert d == pytest.approx([0.10, 0.01, 0.07])
    want = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert mean == pytest.approx(np.mean(d))
    assert (lo, hi) == pytest.approx((want.low, want.high))


def test_paired_needs_two_common_seeds(budgets_module):
    with pytest.raises(ValueError, match="two common seeds"):
        budgets_module.paired({0: 1.0, 1: 2.0}, {1: 1.0, 2: 0.0})


def test_table_is_written_from_the_probe_files(budgets_module, tmp_path):
    files = {
        100: _probe_file(tmp_path / "a.json", {"rot8": [0.2, 0.2, 0.2], "no_equ": [0.3, 0.3, 0.3],
                                                "pca": [0.1, 0.1, 0.1]}),
        200: _probe_file(tmp_path / "b.json", {"rot8": [0.4, 0.5, 0.6], "no_equ": [0.3, 0.3, 0.3],
                                                "pca": [0.1, 0.2, 0.3]}),
    }
    out = tmp_path / "table.md"
    assert budgets_module.main(["--out", str(out)], budgets=files) == 0
    text = out.read_text()
    assert ("| 100 | 0.200 (0-2) | 0.300 (0-2) | 0.100 (0-2) | 0-2 | -0.100, -0.100, -0.100 | "
            "-0.100 [-0.100, -0.100] | 0-2 | +0.100, +0.100, +0.100 |" in text)
    assert ("| 200 | 0.500 (0-2) | 0.300 (0-2) | 0.200 (0-2) | 0-2 | +0.100, +0.200, +0.300 |"
            in text)
    assert "## osi_w" in text
    assert (tmp_path / "table.png").stat().st_size > 10_000


def test_each_difference_pairs_the_seeds_both_models_have(budgets_module, tmp_path):
    rows = {"rot8": [0.4, 0.5, 0.6, 0.7], "no_equ": [0.3, 0.3, 0.3, 0.3],
            "pca": [0.1, 0.2, 0.3, 0.4]}
    b = _probe_file(tmp_path / "b.json", rows, first_seed=3)
    entries = json.loads(b.read_text())
    # seeds 7 and 9 probed for rot8 and PCA only, seed 10 for rot8 alone: they enter rot8's
    # mean and the rot8 - PCA differences, never rot8 - no_equ
    entries += [{"model": m, "seed": seed, "mean_osi": v, "osi_w": v}
                for seed, m, v in ((7, "rot8", 0.8), (7, "pca", 0.3), (9, "rot8", 0.9),
                                   (9, "pca", 0.5), (10, "rot8", 2.0))]
    b.write_text(json.dumps(entries))
    files = {100: _probe_file(tmp_path / "a.json", {m: v[:2] for m, v in rows.items()}), 200: b}
    out = tmp_path / "table.md"
    assert budgets_module.main(["--out", str(out)], budgets=files) == 0
    text = out.read_text()
    assert "| 100 | 0.450 (0, 1) | 0.300 (0, 1) | 0.150 (0, 1) | 0, 1 | +0.100, +0.200 |" in text
    assert ("| 200 | 0.843 (3-7, 9, 10) | 0.300 (3-6) | 0.300 (3-7, 9) | 3-6 | "
            "+0.100, +0.200, +0.300, +0.400 | +0.250 [" in text)
    assert "| 3-7, 9 | +0.300, +0.300, +0.300, +0.300, +0.500, +0.400 | +0.350 [" in text


def test_seed_lists_name_runs_of_consecutive_seeds(budgets_module):
    assert budgets_module.seed_list([0, 1, 2, 3, 5, 7, 8]) == "0-3, 5, 7, 8"
    assert budgets_module.seed_list([4]) == "4"


def test_missing_probe_results_fail_early(budgets_module, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        budgets_module.main(["--out", str(tmp_path / "t.md")],
                            budgets={100: tmp_path / "absent.json"})
    assert exit_info.value.code == 2


def test_a_budget_probed_in_several_files_is_merged_by_seed(budgets_module, tmp_path):
    first = _probe_file(tmp_path / "a.json", {"rot8": [0.4, 0.5], "pca": [0.1, 0.2]})
    later = _probe_file(tmp_path / "b.json", {"rot8": [0.7, 0.9], "pca": [0.3, 0.3]},
                        first_seed=2)
    merged = budgets_module.per_seed([later, first])
    assert merged["mean_osi"]["rot8"] == {0: 0.4, 1: 0.5, 2: 0.7, 3: 0.9}
    assert list(merged["osi_w"]["pca"]) == [0, 1, 2, 3]


def test_files_that_disagree_on_a_seed_are_refused(budgets_module, tmp_path):
    first = _probe_file(tmp_path / "a.json", {"rot8": [0.4, 0.5]})
    clash = _probe_file(tmp_path / "b.json", {"rot8": [0.6]}, first_seed=1)
    with pytest.raises(ValueError, match=r"rot8 seed 1 mean_osi is 0\.6, another file has 0\.5"):
        budgets_module.per_seed([first, clash])


PLAN = {"score": "mean_osi", "baseline": "pca", "steps": 200,
        "looks": ((0, 1), (0, 1, 2), (0, 1, 2, 3)), "level": 0.95}


def _plan_values(budgets_module, tmp_path, rot8, pca):
    path = _probe_file(tmp_path / "p.json", {"rot8": rot8, "pca": pca})
    return {200: budgets_module.per_seed([path])}


def test_planned_decision_waits_for_every_seed_of_the_last_look(budgets_module, tmp_path):
    values = _plan_values(budgets_module, tmp_path, [0.3, 0.31, 0.32], [0.1, 0.1, 0.1, 0.1])
    lines = budgets_module.planned_decision(values, PLAN)
    assert lines[-2] == "| 3 | 0-3 | | | | | | undecided: not yet probed: rot8 3 |"
    assert lines[-3].startswith("| 2 | 0-2 | 3 | 3 | +0.2100 | [")
    assert lines[-3].endswith("| (earlier look) |")


@pytest.mark.parametrize(("rot8", "decision"), [
    ([0.30, 0.31, 0.29, 0.30], "shown"),
    # the 95 % interval excludes 0, the Bonferroni one (98.3 %) does not
    ([0.135, 0.16, 0.11, 0.145], "not shown"),
])
def test_planned_decision_uses_the_bonferroni_interval(budgets_module, tmp_path, rot8,
                                                       decision):
    pca = [0.1, 0.1, 0.1, 0.1]
    values = _plan_values(budgets_module, tmp_path, rot8, pca)
    lines = budgets_module.planned_decision(values, PLAN)
    text = "\n".join(lines)
    d = np.subtract(rot8, pca)
    plain = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    corrected = stats.ttest_1samp(d, 0.0).confidence_interval(1 - 0.05 / 3)
    assert lines[-2].startswith("| 3 | 0-3 | 4 | 4 | ")
    assert lines[-2].endswith(f"[{plain.low:+.4f}, {plain.high:+.4f}] | [{corrected.low:+.4f}, "
                              f"{corrected.high:+.4f}] | {decision} |")
    assert "98.3 %" in text and "look 3" in text
    if decision == "not shown":
        assert plain.low > 0 > corrected.low


def test_planned_decision_with_one_look_uses_the_plain_interval(budgets_module, tmp_path):
    plan = {"score": "mean_osi", "baseline": "pca", "steps": 200, "looks": ((0, 1, 2, 3),),
            "level": 0.95}
    # the 95 % interval excludes 0; a three-look correction would not (as tested above)
    rot8 = [0.135, 0.16, 0.11, 0.145]
    values = _plan_values(budgets_module, tmp_path, rot8, [0.1, 0.1, 0.1, 0.1])
    lines = budgets_module.planned_decision(values, plan)
    plain = stats.ttest_1samp(np.subtract(rot8, 0.1), 0.0).confidence_interval(0.95)
    interval = f"[{plain.low:+.4f}, {plain.high:+.4f}]"
    assert lines[-2] == (f"| 1 | 0-3 | 4 | 4 | {np.mean(rot8) - 0.1:+.4f} | {interval} | "
                         f"{interval} | shown |")
    assert "the one look at this comparison" in "\n".join(lines)


def test_a_budget_without_a_baseline_leaves_its_differences_blank(budgets_module, tmp_path):
    files = {
        100: _probe_file(tmp_path / "a.json", {"rot8": [0.2, 0.3, 0.2], "no_equ": [0.3, 0.3, 0.3],
                                                "pca": [0.1, 0.1, 0.1]}),
        # a longer budget run for rot8 and PCA only
        200: _probe_file(tmp_path / "b.json", {"rot8": [0.4, 0.5, 0.6], "pca": [0.1, 0.2, 0.3]}),
    }
    out = tmp_path / "table.md"
    plans = [{"score": "mean_osi", "baseline": "pca", "steps": 200, "looks": ((0, 1, 2),),
              "level": 0.95},
             {"score": "osi_w", "baseline": "no_equ", "steps": 100, "looks": ((0, 1), (0, 1, 2)),
              "level": 0.95}]
    assert budgets_module.main(["--out", str(out)], budgets=files, plans=plans) == 0
    text = out.read_text()
    assert ("| 200 | 0.500 (0-2) |  | 0.200 (0-2) |  |  |  | 0-2 | +0.300, +0.300, +0.300 | "
            "+0.300 [" in text)
    assert "## Planned decision: mean_osi, rot8 - PCA, 200 steps" in text
    assert "## Planned decision: osi_w, rot8 - no_equ, 100 steps" in text
    assert (tmp_path / "table.png").stat().st_size > 10_000
