"""`equirelax landscape`: the teacher-student study and the symmetries table from the command
line, its summary, and (slow) the S3 pattern of the notes end to end."""

import json

import pytest

from equirelax.cli import main as cli_main
from equirelax.experiments.landscape import StudyConfig, run_study, symmetries_table

TINY = [
    "--seeds",
    "0",
    "--n-base",
    "16",
    "--n-test",
    "32",
    "--exact-steps",
    "30",
    "--relax-steps",
    "30",
]


def test_teacher_student_cli_writes_results_and_resumes(tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "runs"
    argv = [
        "landscape",
        "teacher-student",
        "--group",
        "S3",
        "--teacher-rep",
        "natural",
        "--student-rep",
        "3*trivial",
        *TINY,
        "--out",
        str(out),
        "--runs-dir",
        str(work),
    ]
    assert cli_main(argv) == 0
    stem = StudyConfig(seeds=(0,), n_base=16, n_test=32, exact_steps=30, relax_steps=30).tag()
    for suffix in (".json", ".md", "_curves.png", "_mse.png", "_spectra.png"):
        assert (out / f"{stem}{suffix}").stat().st_size > 0
    result = json.loads((out / f"{stem}.json").read_text())
    run = result["runs"][0]
    assert result["student"]["dim_E"] == 10 and result["teacher"]["dim_E"] == 5
    assert result["student"]["hidden_symmetry_order"] == 6
    for key in (
        "exact_mse",
        "relaxed_mse",
        "proj_original_mse",
        "hessian",
        "detection",
        "subgroup",
    ):
        assert key in run
    sub = run["subgroup"]
    assert sub["group_order"] == 6 and 6 % sub["order"] == 0 and sub["residual"] <= 1e-2
    assert sub["trials"][0]["name"] == "S3" and sub["trials"][-1]["order"] == sub["order"]
    assert (sub["order"] == 6) == run["detection"]["success"]
    assert run["hessian"]["blocks"][0]["label"] == "trivial"
    md = (out / f"{stem}.md").read_text()
    assert "\nequirelax landscape teacher-student --group S3" in md
    assert result["command"].startswith("equirelax landscape teacher-student --group S3")
    assert result["config"]["seeds"] == [0]
    assert "--student-rep '3*trivial'" in md
    assert f"| {sub['name']} ({sub['order']})" in md
    assert "Largest subgroups H of the relaxed students that miss the success threshold" in md
    index = (out / "README.md").read_text()
    assert stem in index
    # a second run finds the finished seed in the work dir and reuses it
    checkpoints = list(work.rglob("seed_0.json"))
    assert len(checkpoints) == 1
    saved = json.loads(checkpoints[0].read_text())
    saved["relaxed_mse"] = 123.0  # a marker: only a resumed run can report it
    checkpoints[0].write_text(json.dumps(saved))
    assert cli_main(argv) == 0
    resumed = json.loads((out / f"{stem}.json").read_text())["runs"][0]
    assert resumed["relaxed_mse"] == 123.0
    assert resumed["subgroup"] == sub
    assert cli_main([*argv, "--fresh"]) == 0
    assert json.loads((out / f"{stem}.json").read_text())["runs"][0]["relaxed_mse"] != 123.0
    capsys.readouterr()


def test_symmetries_subcommand(tmp_path, capsys):
    assert (
        cli_main(
            [
                "landscape",
                "symmetries",
                "--group",
                "S3",
                "--reps",
                "natural",
                "3*trivial",
                "regular",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("|")[-2].strip() for row in rows] == ["6", "1", "120"]
    command = (f"equirelax landscape symmetries --group S3 --reps natural '3*trivial' regular "
               f"--out {tmp_path}")
    assert (tmp_path / "symmetries_S3.md").read_text().strip() == symmetries_table(
        "S3", ["natural", "3*trivial", "regular"], command
    ).strip()
    assert "(symmetries_S3.md)" in (tmp_path / "README.md").read_text()


def test_study_thresholds_are_relative_to_the_target_variance():
    """An S3 regular -> 6 x trivial target has variance 68: a student at MSE 0.002 has relative
    error 3e-5. With relative thresholds it is judged as one at MSE 1.5e-5 on a target of
    variance 0.5 would be."""
    from equirelax.experiments.landscape import summarise, thresholds

    run = {
        "relaxed_mse": 2e-3,
        "polished_mse": 1e-2,
        "hessian": {"kind": "minimum"},
        "detection": {"decomposition": "x", "same_type_as_teacher": False, "residual": 0.0},
        "proj_original_mse": 0.0,
        "proj_detected_mse": 0.0,
        "subgroup": {"name": "1", "order": 1, "residual": 0.0},
        "seconds": 1.0,
    }
    cfg = {"success_rel_mse": 1e-4, "stuck_rel_mse": 1e-3}
    big = {"config": cfg, "target_variance": 68.0, "runs": [run]}
    small = {"config": cfg, "target_variance": 0.5, "runs": [run]}
    assert thresholds(big) == (pytest.approx(68e-4), pytest.approx(68e-3))
    assert summarise(big)["relaxed_success"] == 1 and summarise(big)["stuck"] == 0
    assert summarise(small)["relaxed_success"] == 0 and summarise(small)["stuck"] == 1
    assert StudyConfig().success_rel_mse == 1e-4


def test_summary_counts_the_largest_subgroups_of_the_failed_students():
    """Failed relaxed students are described by the largest subgroup they are equivariant
    under (the successes by G)."""
    from equirelax.experiments.landscape import summarise
    from equirelax.experiments.landscape.tables import _counts_text

    def run(mse, name, order):
        record = {
            "relaxed_mse": mse,
            "polished_mse": 1.0,
            "hessian": {"kind": "escapable saddle"},
            "detection": {"decomposition": "x", "same_type_as_teacher": False, "residual": 0.0},
            "proj_original_mse": 1.0,
            "proj_detected_mse": 0.0,
            "subgroup": {"name": name, "order": order, "residual": 1e-8 * order},
            "seconds": 1.0,
        }
        return record

    runs = [
        run(1e-9, "S4", 24),
        run(0.5, "V4a", 4),
        run(0.5, "V4a", 4),
        run(0.5, "S3", 6),
    ]
    cfg = {"success_rel_mse": 1e-4, "stuck_rel_mse": 1e-3}
    s = summarise({"config": cfg, "target_variance": 1.0, "runs": runs})
    assert s["subgroups_of_failures"] == {"V4a (4)": 2, "S3 (6)": 1}
    assert s["subgroups"] == {"S4 (24)": 1, "V4a (4)": 2, "S3 (6)": 1}
    assert s["max_subgroup_residual"] == pytest.approx(24e-8)
    assert _counts_text(s["subgroups_of_failures"]) == "S3 (6): 1, V4a (4): 2"
    assert _counts_text({}) == "none"


@pytest.mark.slow
def test_s3_trivial_students_are_stuck_at_saddles_and_relaxation_finds_the_teachers_type():
    result = run_study(StudyConfig(group="S3", teacher_rep="natural", student_rep="3*trivial",
                                   seeds=(0, 1)))
    var = result["target_variance"]
    runs = result["runs"]
    for r in runs:
        assert r["exact_mse"] > 0.9 * var  # only functions of sum(x) are reachable
        assert r["hessian"]["kind"] == "escapable saddle"
        assert r["hessian"]["gradient_normal"] < 1e-10  # Corollary A1
    threshold = StudyConfig().success_rel_mse * var  # the study's own, relative to Var(y)
    escaped = [r for r in runs if r["relaxed_mse"] <= threshold]
    assert escaped, [r["relaxed_mse"] for r in runs]
    for r in escaped:
        assert r["detection"]["decomposition"] == "[S3/C2]"
        assert r["detection"]["same_type_as_teacher"]
        assert r["proj_original_mse"] > var  # worse than predicting the mean
        assert r["proj_detected_mse"] < threshold
