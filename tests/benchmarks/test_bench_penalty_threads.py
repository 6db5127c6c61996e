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


def test_model_steps_set_the_rule_and_its_threshold_and_restore_them(threads_module,
                                                                     monkeypatch):
    seen = []
    real = fused.penalty_threads

    def spy(device, macs, enabled=None):
        seen.append((fused.ONE_THREAD_PENALTIES, fused.ONE_THREAD_BELOW_MACS))
        return real(device, macs, enabled)

    class SameThreadsSpy:  # what the node enters while the rule is off
        def __enter__(self):
            seen.append((fused.ONE_THREAD_PENALTIES, fused.ONE_THREAD_BELOW_MACS))

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(fused, "penalty_threads", spy)
    monkeypatch.setattr(fused, "_SAME_THREADS", SameThreadsSpy())
    before = fused.ONE_THREAD_PENALTIES, fused.ONE_THREAD_BELOW_MACS
    steps = threads_module.model_steps("S5 regular MLP")
    names = {f"{name}, {threads_module.threshold_name(below)}": below
             for name in threads_module.SKETCHES for below in threads_module.THRESHOLDS}
    assert list(steps) == ["exact", *names]
    assert "penalty_sketch=4, rule off" in names
    assert "penalty_sketch=4, one thread below 10,000,000" in names
    for name, step in steps.items():
        seen.clear()
        step()
        assert before == (fused.ONE_THREAD_PENALTIES, fused.ONE_THREAD_BELOW_MACS)
        if name != "exact":  # every fused layer's penalty products ran with the rule as named
            below = names[name]
            assert seen and set(seen) == {(below > 0, below)}, (name, seen)


def test_mean_ratios_are_geometric_means_over_models_and_sketches(threads_module):
    def entry(scale):
        return {"ratio_vs_exact": {
            f"{name}, {threads_module.threshold_name(below)}": scale * (1 + i) * (1 + j)
            for i, name in enumerate(threads_module.SKETCHES)
            for j, below in enumerate(threads_module.THRESHOLDS)}}

    means = threads_module.mean_ratios([entry(1.0), entry(4.0)])
    assert list(means) == list(threads_module.THRESHOLDS)
    for j, below in enumerate(threads_module.THRESHOLDS):  # sketches 1 and 2, models 1 and 4
        assert means[below] == pytest.approx((1 * 2 * 4 * 8) ** 0.25 * (1 + j))


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
    name = "penalty_sketch=4, one thread below 10,000,000"
    cell = f"{1e3 * steps['seconds'][name]:.2f} | {steps['ratio_vs_exact'][name]:.2f}x"
    assert f"| S5 regular MLP | {name} | {cell} | {cell} |" in text
    means = threads_module.mean_ratios(run["steps"])
    for below, mean in means.items():
        row = f"| {threads_module.threshold_name(below)} | {mean:.3f}x | {mean:.3f}x |"
        assert row in text
    fastest = threads_module.threshold_name(min(means, key=means.get))
    assert f"Fastest: default: {fastest}; PASSIVE: {fastest}." in text
    assert "`python x.py`" in text


def test_one_thread_is_refused(threads_module, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        threads_module.main(["--threads", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
