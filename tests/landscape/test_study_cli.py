import json

import pytest

from equirelax.cli import main as cli_main
from equirelax.experiments.landscape import StudyConfig, symmetries_table

TINY = ["--seeds", "1", "--n-base", "16", "--n-test", "32", "--exact-steps", "30",
        "--relax-steps", "30"]


def test_teacher_student_cli_writes_results_and_resumes(tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "runs"
    argv = ["landscape", "teacher-student", "--group", "S3", "--teacher-rep", "natural",
            "--student-rep", "3*trivial", *TINY, "--out", str(out), "--work-dir", str(work)]
    assert cli_main(argv) == 0
    stem = StudyConfig(seeds=1, n_base=16, n_test=32, exact_steps=30, relax_steps=30).tag()
    for suffix in (".json", ".md", "_curves.png", "_mse.png", "_spectra.png"):
        assert (out / f"{stem}{suffix}").stat().st_size > 0
    result = json.loads((out / f"{stem}.json").read_text())
    run = result["runs"][0]
    assert result["student"]["dim_E"] == 10 and result["teacher"]["dim_E"] == 5
    assert result["student"]["hidden_symmetry_order"] == 6
    for key in ("exact_mse", "relaxed_mse", "proj_original_mse", "hessian", "detection"):
        assert key in run
    assert run["hessian"]["blocks"][0]["label"] == "trivial"
    md = (out / f"{stem}.md").read_text()
    assert "Reproduce with `python -m equirelax landscape teacher-student" in md
    assert "--student-rep '3*trivial'" in md
    index = (out / "README.md").read_text()
    assert stem in index
    # a second run finds the finished seed in the work dir and reuses it
    checkpoints = list(work.rglob("seed_0.json"))
    assert len(checkpoints) == 1
    saved = json.loads(checkpoints[0].read_text())
    saved["relaxed_mse"] = 123.0  # a marker: only a resumed run can report it
    checkpoints[0].write_text(json.dumps(saved))
    assert cli_main(argv) == 0
    assert json.loads((out / f"{stem}.json").read_text())["runs"][0]["relaxed_mse"] == 123.0
    assert cli_main([*argv, "--no-resume"]) == 0
    assert json.loads((out / f"{stem}.json").read_text())["runs"][0]["relaxed_mse"] != 123.0
    capsys.readouterr()


def test_symmetries_subcommand(tmp_path, capsys):
    assert cli_main(["landscape", "symmetries", "--group", "S3", "--reps", "natural",
                     "3*trivial", "regular", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("|")[-2].strip() for row in rows] == ["6", "1", "120"]
    assert (tmp_path / "symmetries_S3.md").read_text().strip() == symmetries_table(
        "S3", ["natural", "3*trivial", "regular"]).strip()
    assert "(symmetries_S3.md)" in (tmp_path / "README.md").read_text()


def test_study_thresholds_are_relative_to_the_target_variance():
    """An S3 regular -> 6 x trivial target has variance 68: a student at MSE 0.002 has relative
    error 3e-5. With relative thresholds it is judged as one at MSE 1.5e-5 on a target of
    variance 0.5 would be; results written with absolute thresholds still read."""
    from equirelax.experiments.landscape import summarise, thresholds

    run = {"relaxed_mse": 2e-3, "polished_mse": 1e-2, "hessian": {"kind": "minimum"},
           "detection": {"decomposition": "x", "same_type_as_teacher": False, "residual": 0.0},
           "proj_original_mse": 0.0, "proj_detected_mse": 0.0}
    cfg = {"success_rel_mse": 1e-4, "stuck_rel_mse": 1e-3}
    big = {"config": cfg, "target_variance": 68.0, "runs": [run]}
    small = {"config": cfg, "target_variance": 0.5, "runs": [run]}
    assert thresholds(big) == (pytest.approx(68e-4), pytest.approx(68e-3))
    assert summarise(big)["relaxed_success"] == 1 and summarise(big)["stuck"] == 0
    assert summarise(small)["relaxed_success"] == 0 and summarise(small)["stuck"] == 1
    old = {"config": {"success_mse": 1e-6, "stuck_mse": 1e-3}, "target_variance": 68.0,
           "runs": [run]}
    assert thresholds(old) == (1e-6, 1e-3)
    assert StudyConfig().success_rel_mse == 1e-6
