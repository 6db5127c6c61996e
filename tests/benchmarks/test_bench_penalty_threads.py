"""The penalty-threads benchmark: its timed callables, the one-thread rule it toggles, and the
tables it writes from what it measured."""

import json

import pytest
import torch

from equirelax.relaxation import fused
from tests.helpers.repository_scripts import load_script


@pytest.fixture(scope="module")
def threads_module():
    return load_script("benchmarks/bench_penalty_threads.py")


def test_product_steps_restore_the_thread_count(threads_module):
    threads = torch.get_num_threads()
    steps = threads_module.product_steps(32, 4, threads)
    assert set(steps) == {"all threads", "one thread"}
    for step in steps.values():
        step()
        assert torch.get_num_threads() == threads


def test_model_steps_toggle_the_rule_and_restore_it(threads_module, monkeypatch):
    bench = threads_module._bench_relax()
    seen = []
    real = fused.penalty_threads

    def spy(device, macs, sleeping=None):
        seen.append(fused.SLEEPING_THREADS)
        return real(device, macs, sleeping)

    monkeypatch.setattr(fused, "penalty_threads", spy)
    before = fused.SLEEPING_THREADS
    steps = threads_module.model_steps(bench, "S5 regular MLP")
    assert list(steps) == ["exact"] + [f"{name}, rule {rule}" for name in threads_module.SKETCHES
                                       for rule in ("off", "on")]
    for name, step in steps.items():
        seen.clear()
        step()
        assert fused.SLEEPING_THREADS is before
        if name != "exact":  # every fused layer asked, with the rule as named
            assert seen and set(seen) == {name.endswith("rule on")}, (name, seen)


def test_largest_gain_is_the_largest_product_one_thread_sped_up(threads_module):
    rows = [{"macs": 10, "gain_seconds": 1e-6}, {"macs": 30, "gain_seconds": -1e-6},
            {"macs": 20, "gain_seconds": 2e-6}]
    assert threads_module.largest_gain_macs(rows) == 20
    assert threads_module.largest_gain_macs(rows[1:2]) is None


def test_child_measures_and_the_tables_show_what_it_measured(threads_module, monkeypatch,
                                                             tmp_path):
    monkeypatch.setattr(threads_module, "SIDES", (16,))
    monkeypatch.setattr(threads_module, "ROWS", (4, 8))
    monkeypatch.setattr(threads_module, "MODELS", ("S5 regular MLP",))
    threads = torch.get_num_threads()
    out = tmp_path / "child.json"
    threads_module._child(out, 2, 1, progress=False)
    torch.set_num_threads(threads)
    run = json.loads(out.read_text())
    assert [(p["side"], p["rows"], p["macs"]) for p in run["products"]] == [
        (16, 4, 4 * 16 * 16), (16, 8, 8 * 16 * 16)]
    for p in run["products"]:
        t = p["seconds"]
        assert p["gain_seconds"] == pytest.approx(t["all threads"] - t["one thread"])
    (steps,) = run["steps"]
    assert steps["ratio_vs_exact"]["exact"] == pytest.approx(1.0)
    assert run["meta"]["one_thread_below_macs"] == fused.ONE_THREAD_BELOW_MACS
    text = threads_module.write_tables({"default": run, "PASSIVE": run}, "python x.py",
                                       tmp_path / "t.md")
    assert (tmp_path / "t.md").read_text() == text
    first = run["products"][0]
    assert (f"| 16 | 4 | 1,024 | {1e6 * first['seconds']['all threads']:.0f} | "
            f"{1e6 * first['seconds']['one thread']:.0f} | {1e6 * first['gain_seconds']:+.0f} |"
            in text)
    name = "penalty_sketch=4, rule on"
    cell = f"{1e3 * steps['seconds'][name]:.2f} | {steps['ratio_vs_exact'][name]:.2f}x"
    assert f"| S5 regular MLP | {name} | {cell} | {cell} |" in text
    assert "`python x.py`" in text


def test_one_thread_is_refused(threads_module, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        threads_module.main(["--threads", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
