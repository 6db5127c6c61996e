"""The penalty-overhead benchmark: the full-size and tiny twins of the relaxed MLPs."""

import json

import pytest
import torch

from tests.helpers.repository_scripts import load_script


@pytest.fixture(scope="module")
def overhead_module():
    return load_script("benchmarks/bench_penalty_overhead.py")


@pytest.mark.parametrize("kind", ["S5 regular MLP", "SO(3) vector MLP"])
def test_tiny_twin_has_the_layers_and_input_of_the_full_model(overhead_module, kind):
    bench = overhead_module.bench_relax
    full, d_in = bench._model(kind)
    tiny, tiny_in, _ = overhead_module.tiny_model(kind)
    assert tiny_in == d_in
    full_layers = [type(m) for m in full.modules()]
    assert [type(m) for m in tiny.modules()] == full_layers
    assert sum(p.numel() for p in tiny.parameters()) < sum(p.numel() for p in full.parameters())
    assert tiny(torch.randn(3, d_in)).shape == full(torch.randn(3, d_in)).shape


def test_unknown_model_is_refused(overhead_module):
    with pytest.raises(ValueError, match="no tiny twin"):
        overhead_module.tiny_model("EGNN")


def test_sketch_must_be_below_the_tiny_batch(overhead_module, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        overhead_module.main(["--sketch", "16", "--out", str(tmp_path), "--no-progress"])
    assert exit_info.value.code == 2


def test_table_is_written_from_the_measured_steps(overhead_module, tmp_path):
    threads = torch.get_num_threads()
    assert overhead_module.main(["--rounds", "1", "--repeats", "1", "--threads", "1", "2",
                                 "--out", str(tmp_path), "--no-progress"]) == 0
    assert torch.get_num_threads() == threads  # restored
    data = json.loads((tmp_path / "penalty_overhead.json").read_text())
    rows = data["results"]
    assert [(r["threads"], r["model"], r["size"]) for r in rows] == [
        (n, model, size) for n in (1, 2) for model in ("S5 regular MLP", "SO(3) vector MLP")
        for size in ("full", "tiny")]
    for r in rows:
        t = r["step_seconds"]
        assert set(t) == {"exact", "no penalties", "penalty_sketch=4"}
        assert r["penalty_seconds"] == pytest.approx(t["penalty_sketch=4"] - t["no penalties"])
        full = next(f for f in rows if f["model"] == r["model"] and f["size"] == "full"
                    and f["threads"] == r["threads"])
        assert r["share_of_full_penalty"] == pytest.approx(
            r["penalty_seconds"] / full["penalty_seconds"])
    text = (tmp_path / "penalty_overhead.md").read_text()
    assert "`python benchmarks/bench_penalty_overhead.py --rounds 1 --repeats 1`" in text
    exact = 1e3 * rows[1]["step_seconds"]["exact"]
    assert f"| S5 regular MLP | 1 | tiny | natural(S5) | 16 | {exact:.3f} |" in text


def test_thread_counts_must_be_positive(overhead_module, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        overhead_module.main(["--threads", "0", "--out", str(tmp_path), "--no-progress"])
    assert exit_info.value.code == 2
