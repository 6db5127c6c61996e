"""Options shared by the point-cloud and image studies: DDP settings reach Lightning, only
rank 0 writes results, and ``--quick`` runs are marked as smoke tests."""

from __future__ import annotations

import pytest

from equirelax.cli import build_parser
from equirelax.experiments import images, pointcloud
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE

STUDIES = [("pointcloud", pointcloud), ("images", images)]


@pytest.mark.parametrize(("name", "study"), STUDIES)
def test_parallel_options_reach_the_runner_and_other_ranks_write_nothing(
        name, study, tmp_path, monkeypatch, capsys):
    """``--devices/--num-nodes/--accelerator`` go to Lightning unchanged (``--devices 2`` used
    to force the CPU), the reproducing command keeps them, and a process that is not rank 0
    (``run_comparison`` returns None there) writes no report."""
    argv = [name, "--quick", "--devices", "2", "--num-nodes", "3", "--accelerator", "gpu",
            "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]
    args = build_parser(name).parse_args(argv)
    args.argv = argv  # as the command line stores it
    cfg = study.config_from_args(args)
    assert (cfg.devices, cfg.num_nodes, cfg.accelerator) == (2, 3, "gpu")
    command = record_command(args)
    assert "--devices 2 --num-nodes 3 --accelerator gpu" in command
    seen = {}

    def not_rank_zero(variants, seeds, loaders, step, base, *rest, **kwargs):
        seen["base"] = base
        seen["loader"] = loaders(seeds[0])[0]
        return None

    monkeypatch.setattr(study, "run_comparison", not_rank_zero)
    monkeypatch.setenv("EQUIRELAX_CACHE", str(tmp_path / "cache"))
    assert study.main(args) == 0
    base = seen["base"]
    assert (base.devices, base.num_nodes, base.accelerator) == (2, 3, "gpu")
    assert seen["loader"].sampler.__class__.__name__ != "EpochShuffle"  # DDP's sampler
    assert not (tmp_path / "out" / "results.json").exists()
    assert "wrote" not in capsys.readouterr().out


@pytest.mark.parametrize(("name", "study"), STUDIES)
def test_one_process_trains_in_a_seeded_order_on_the_default_accelerator(name, study):
    cfg = study.config_from_args(build_parser(name).parse_args([name, "--quick"]))
    assert (cfg.devices, cfg.num_nodes, cfg.accelerator) == (1, 1, "auto")


def test_the_smoke_test_note_says_what_quick_numbers_are() -> None:
    assert "SMOKE TEST" in SMOKE_TEST_NOTE and "not results" in SMOKE_TEST_NOTE
    assert "chance" in SMOKE_TEST_NOTE
