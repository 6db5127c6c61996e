import json

import pytest
import torch

import equirelax as er
from equirelax.cli import main as cli_main
from equirelax.experiments import teacher_student as ts


def test_symmetric_data_is_closed_under_the_group():
    G = ts.parse_group("S3")
    x = ts.symmetric_data(G, 5, seed=0)
    assert x.shape == (5 * 6, 3)
    rows = {tuple(r.tolist()) for r in x}
    for g in G.elements():
        moved = x @ torch.from_numpy(er.reps.natural(G).matrix(g)).T
        assert {tuple(r.tolist()) for r in moved} == rows


def test_reference_teacher_is_the_network_of_the_notes():
    G = ts.parse_group("S3")
    teacher = ts.reference_teacher(G, er.reps.natural(G), "tanh")
    x = torch.randn(7, 3, dtype=torch.float64)
    expected = (1.5 * torch.tanh(2 * x - 0.7 * x.sum(-1, keepdim=True) + 0.3)).sum(-1) + 0.1
    assert torch.allclose(teacher(x).squeeze(-1), expected)


def test_parse_errors():
    with pytest.raises(ValueError, match="group must look like"):
        ts.parse_group("Q8")
    with pytest.raises(ValueError, match="unknown rep 'cubic'"):
        ts.parse_rep(ts.parse_group("S3"), "2*cubic")
    assert ts.parse_rep(ts.parse_group("S4"), "2*natural+trivial").dim == 9


@pytest.mark.parametrize("escape_steps", [0, 30])
def test_comparison_runs_and_every_final_model_is_exact(tmp_path, escape_steps):
    cfg = ts.TeacherStudentConfig(seeds=[0, 1], steps=40, escape_steps=escape_steps, n_base=8,
                                  n_test=32, student_rep="3*trivial", relax_fraction=0.7)
    result = ts.relax_comparison(cfg, out_dir=tmp_path)
    arms = ["exact", "relaxed"] + (["escape"] if escape_steps else [])
    assert result["arms"] == arms
    for row in result["runs"]:
        for arm in arms:
            assert row[f"{arm}_equivariance_error"] < 1e-12
            assert len(row[f"curve_{arm}"]) > 0
    assert set(result["summary"]) >= set(arms)
    saved = json.loads((tmp_path / "relax_teacher_student_S3.json").read_text())
    assert saved["summary"] == result["summary"]
    assert (tmp_path / "relax_teacher_student_S3.png").stat().st_size > 0
    assert "| seed |" in (tmp_path / "relax_teacher_student_S3.md").read_text()


def test_demo_cli(tmp_path, capsys):
    assert cli_main(["demo", "--seeds", "1", "--steps", "20", "--escape-steps", "20",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "exact" in out and "relaxed" in out
    assert (tmp_path / "relax_teacher_student_S3.md").exists()


def test_cli_rejects_unknown_study(capsys):
    assert cli_main(["nonsense"]) == 2
    assert "unknown study" in capsys.readouterr().err
