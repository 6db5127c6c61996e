"""What every study command checks before it trains, and what its ``--quick`` runs say.

* Numeric options out of range (``relax --steps -5``, ``--seeds 0``, a negative learning rate,
  a fraction above 1, ``nan``) are usage errors: status 2, naming the option and the value.
* An output or run folder that cannot be created or written fails at the start (status 2),
  not when the results are written after training.
* ``--quick`` runs print that they are smoke tests and write it into their results files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from equirelax.cli import main as cli_main
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE, OutputError, require_writable
from tests.helpers.nbody_study import tiny

BAD_VALUES = [
    (["relax"], "--steps", "-5"),
    (["relax"], "--seeds", "-2"),
    (["relax"], "--n-base", "0"),
    (["relax"], "--lr", "0"),
    (["relax"], "--lie-weight", "-1"),
    (["relax"], "--relax-fraction", "1.5"),
    (["relax"], "--escape-steps", "-1"),
    (["relax"], "--steps", "many"),
    (["demo"], "--seeds", "-1"),
    (["demo"], "--steps", "-1"),
    (["demo"], "--escape-steps", "-3"),
    (["nbody"], "--epochs", "0"),
    (["nbody"], "--seeds", "-1"),
    (["nbody"], "--seeds", "many"),
    (["nbody"], "--batch-size", "0"),
    (["nbody"], "--egnn-hidden", "0"),
    (["nbody"], "--lr", "nan"),
    (["nbody"], "--weight-decay", "-0.001"),
    (["nbody"], "--stop-after", "0"),
    (["nbody"], "--sweep-values", "0"),
    (["pointcloud"], "--epochs", "0"),
    (["pointcloud"], "--seeds", "-1"),
    (["pointcloud"], "--batch-size", "-2"),
    (["pointcloud"], "--lr", "-0.1"),
    (["pointcloud"], "--points", "0"),  # reported as --num-points/--points
    (["pointcloud"], "--noise", "-1"),
    (["pointcloud"], "--devices", "0"),
    (["pointcloud"], "--threads", "-1"),
    (["images"], "--epochs", "-1"),
    (["images"], "--seeds", "-3"),
    (["images"], "--train-fraction", "0"),
    (["images"], "--channels", "0"),
    (["images"], "--num-nodes", "0"),
    (["landscape", "teacher-student"], "--seeds", "-1"),
    (["landscape", "teacher-student"], "--exact-steps", "-1"),
    (["landscape", "teacher-student"], "--relax-steps", "0"),
    (["landscape", "teacher-student"], "--lr", "0"),
    (["landscape", "teacher-student"], "--noise", "-0.1"),
    (["landscape", "teacher-student"], "--tol", "inf"),
    (["scg", "train-autoencoder"], "--steps", "-5"),
    (["scg", "evaluate"], "--eval-seeds", "0"),
    (["scg", "evaluate"], "--posterior-samples", "0"),
    (["scg", "generate"], "--samples", "-1"),
    (["scg", "probe"], "--seeds", "-2"),
    (["scg", "evaluate"], "--threads", "-1"),
]


@pytest.mark.parametrize(("command", "option", "value"), BAD_VALUES,
                         ids=[f"{' '.join(c)} {o} {v}" for c, o, v in BAD_VALUES])
def test_values_out_of_range_are_usage_errors_naming_option_and_value(
        command, option, value, capsys):
    assert cli_main([*command, option, value]) == 2
    err = capsys.readouterr().err
    assert f"equirelax {command[0]}" in err and "error: argument " in err
    assert f"{option}: must be " in err and f"got {value!r}" in err


@pytest.mark.parametrize("command", [["relax"], ["nbody"], ["pointcloud", "--epochs", "3"]])
def test_values_in_range_still_parse(command):
    from equirelax.cli import build_parser

    args = build_parser(command[0]).parse_args([*command, "--seeds", "1", "--lr", "0.001"])
    assert args.lr == 0.001


FOLDER_OPTIONS = [
    (["nbody", "--variants", "exact"], "--runs-dir"),
    (["nbody"], "--out"),
    (["graphs"], "--out"),
    (["graphs", "--quick"], "--runs-dir"),
    (["pointcloud", "--quick"], "--out"),
    (["pointcloud"], "--runs-dir"),
    (["images"], "--out"),
    (["images", "--quick"], "--runs-dir"),
    (["relax"], "--out"),
    (["demo"], "--out"),
    (["landscape", "teacher-student"], "--out"),
    (["landscape", "teacher-student"], "--runs-dir"),
    (["landscape", "symmetries"], "--out"),
    (["scg", "train-autoencoder"], "--out"),
    (["scg", "probe"], "--runs-dir"),
]


@pytest.mark.parametrize(("command", "option"), FOLDER_OPTIONS,
                         ids=[f"{' '.join(c)} {o}" for c, o in FOLDER_OPTIONS])
def test_an_unwritable_folder_fails_before_training(command, option, tmp_path, monkeypatch,
                                                    capsys):
    """A folder under a regular file (cannot be created, whoever runs the test): status 2 and
    a message naming the option and the folder, at once (nothing is trained or generated)."""
    monkeypatch.chdir(tmp_path)  # the other folders' defaults land in the test's folder
    monkeypatch.setenv("EQUIRELAX_CACHE", str(tmp_path / "cache"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    folder = blocker / "results"
    assert cli_main([*command, option, str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"equirelax {command[0]}: {option} {folder}" in err
    assert f"{blocker} is a file" in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()  # failed before generating any data


def test_require_writable_names_the_problem(tmp_path):
    path = tmp_path / "f"
    path.write_text("")
    with pytest.raises(OutputError, match=f"--out {path}: cannot create this folder, {path} is "
                       "a file"):
        require_writable({"--out": path})
    require_writable({"--out": tmp_path / "new" / "deep", "--runs-dir": None})
    assert (tmp_path / "new" / "deep").is_dir() and not list((tmp_path / "new" / "deep").iterdir())


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_require_writable_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="folder is not writable"):
            require_writable({"--runs-dir": folder})
    finally:
        folder.chmod(0o700)


# -- --quick runs are smoke tests -------------------------------------------------------------
def _assert_smoke(out: str, *files: Path) -> None:
    assert SMOKE_TEST_NOTE in out
    for path in files:
        text = path.read_text()
        assert SMOKE_TEST_NOTE in (json.loads(text).get("smoke_test", "") if path.suffix
                                   == ".json" else text), path


def test_quick_relax_is_marked_as_a_smoke_test(tmp_path, capsys):
    assert cli_main(["relax", "--quick", "--seeds", "1", "--steps", "20", "--n-base", "8",
                     "--out", str(tmp_path)]) == 0
    _assert_smoke(capsys.readouterr().out, tmp_path / "relax_teacher_student_S3.md",
                  tmp_path / "relax_teacher_student_S3.json")


def test_quick_landscape_is_marked_as_a_smoke_test(tmp_path, capsys):
    tiny_study = ["--seeds", "0", "--n-base", "16", "--n-test", "32", "--exact-steps", "30",
                  "--relax-steps", "30"]
    assert cli_main(["landscape", "teacher-student", "--quick", *tiny_study, "--out",
                     str(tmp_path / "out"), "--runs-dir", str(tmp_path / "work")]) == 0
    (md,) = (tmp_path / "out").glob("S3_*.md")
    _assert_smoke(capsys.readouterr().out, md, md.with_suffix(".json"))


def test_quick_nbody_is_marked_as_a_smoke_test(tmp_path, capsys):
    cache = tmp_path / "cache"
    assert cli_main(tiny(tmp_path, cache, "--variants", "exact", "--epochs", "1")) == 0
    out = tmp_path / "res" / "quick"
    _assert_smoke(capsys.readouterr().out, out / "results.md", out / "results.json")


def test_quick_scg_is_marked_as_a_smoke_test(tmp_path, capsys):
    assert cli_main(["scg", "train-autoencoder", "--quick", "--steps", "2", "--variants", "full",
                     "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]) == 0
    _assert_smoke(capsys.readouterr().out, tmp_path / "out" / "ae_training.md")
