"""The step-parts benchmark: its timed step, its summary over processes and the table it writes
from what it measured."""

import pytest
import torch

from tests.helpers.repository_scripts import load_script


@pytest.fixture(scope="module")
def parts_module():
    return load_script("benchmarks/bench_step_parts.py")


def test_timed_step_trains_and_records_every_part(parts_module):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    before = model.weight.detach().clone()
    step, times = parts_module.timed_step(model, x, y)
    for _ in range(3):
        step()
    assert not torch.equal(model.weight.detach(), before)  # the optimizer stepped
    assert set(times) == set(parts_module.PARTS)
    assert all(len(t) == 3 and all(s > 0 for s in t) for t in times.values())


def test_measure_times_every_variant_and_part(parts_module):
    out = parts_module.measure("S5 regular MLP", rounds=1, repeats=1, warmup=1)
    assert list(out) == list(parts_module.VARIANTS)
    for parts in out.values():
        assert set(parts) == {*parts_module.PARTS, "step"}
        assert all(v > 0 for v in parts.values())


def _run(scale):
    parts = {"forward": 1e-3, "backward": 2e-3, "optimizer": 3e-4}
    results = {name: {**{p: scale * (i + 1) * v for p, v in parts.items()},
                      "step": scale * (i + 1) * sum(parts.values())}
               for i, name in enumerate(["exact", "relaxed, no penalties",
                                         "relaxed, penalty_sketch=4"])}
    return {"meta": {"torch": "x", "threads": 2, "rounds": 1, "repeats": 1},
            "results": {"S5 regular MLP": results}}


def test_summary_is_the_median_and_range_over_processes(parts_module):
    s = parts_module.summarise([_run(1.0), _run(3.0), _run(2.0)])
    cell = s["S5 regular MLP"]["exact"]["forward"]
    assert cell == pytest.approx({"median": 2e-3, "min": 1e-3, "max": 3e-3})


def test_tables_show_what_was_measured(parts_module, tmp_path):
    runs = {"default": [_run(1.0), _run(2.0)], "PASSIVE": [_run(4.0)]}
    text = parts_module.write_tables(runs, "python x.py", tmp_path / "t.md")
    assert (tmp_path / "t.md").read_text() == text
    assert ("| S5 regular MLP | exact | forward | 1500 [1000, 2000] | 4000 [4000, 4000] |"
            in text)
    assert "default: 2 processes, PASSIVE: 1 processes" in text
    # sketched minus no-penalty, per process: (3 - 2) x the parts
    assert "- default, S5 regular MLP: +1000 / +2000 / +300; +2000 / +4000 / +600" in text
    assert "`python x.py`" in text


def test_bad_counts_are_refused(parts_module, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        parts_module.main(["--runs", "0", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
