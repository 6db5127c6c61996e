"""Every command recorded in ``docs/results`` (and shown in the docs) for the N-body, point-cloud,
image and graph studies parses with the real command line, writes to the folder its results
are in, and resolves to the settings recorded beside it: the committed results reproduce from
the commands that name them."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest

from equirelax.cli import build_parser
from equirelax.experiments.kit.runs import default_folders

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ("nbody", "pointcloud", "images", "graphs")


def _recorded() -> list[tuple[Path, str, str]]:
    """(results file, key, command) of every command a results file of these studies names."""
    found = []
    for study in STUDIES:
        for path in sorted((ROOT / "docs" / "results" / study).rglob("*.json")):
            payload = json.loads(path.read_text())
            if not isinstance(payload, dict):
                continue
            for key in ("command", "redrawn_by"):
                if isinstance(payload.get(key), str):
                    found.append((path, key, payload[key]))
    return found


RECORDED = _recorded()


def _parse(command: str):
    words = shlex.split(command)
    assert words[0] == "equirelax" and words[1] in STUDIES, command
    args = build_parser(words[1]).parse_args(words[1:])
    args.argv = words[1:]
    return args


def test_there_are_recorded_commands_of_every_study():
    assert {shlex.split(c)[1] for _, _, c in RECORDED} == set(STUDIES)


@pytest.mark.parametrize(("path", "key", "command"), RECORDED,
                         ids=[f"{p.relative_to(ROOT / 'docs' / 'results')}:{k}"
                              for p, k, _ in RECORDED])
def test_a_recorded_command_parses_and_writes_where_its_results_are(path, key, command):
    args = _parse(command)
    folder = path.parent.relative_to(ROOT)
    payload = json.loads(path.read_text())
    if args.study == "nbody":
        from equirelax.experiments.nbody import resolve

        cfg = resolve(args)
        assert Path(cfg.out) == folder
        recorded = payload["config"]
        renamed = {"arms": "variants"}  # results written before the one vocabulary
        for name, value in recorded.items():
            name = renamed.get(name, name)
            if name in ("tag", "results_dir", "runs_dir", "out", "progress", "report_only",
                        "jobs", "shard", "cache_dir", "threads"):
                continue
            mine = getattr(cfg, name)
            assert json.loads(json.dumps(mine)) == value, (name, mine, value)
        return
    module = __import__(f"equirelax.experiments.{args.study}", fromlist=["main"])
    cfg = module.config_from_args(args)
    preset = module.preset_name(args)
    name = module.results_name(preset, cfg) if hasattr(module, "results_name") else preset
    out = Path(args.out) if args.out is not None else default_folders(args.study, name)[0]
    assert out == folder
    mine = json.loads(json.dumps(asdict(cfg), default=str))
    for field, value in payload["settings"].items():
        assert mine[field] == value, (field, mine[field], value)


def _doc_commands() -> list[str]:
    """The ``equirelax <study> ...`` lines of the docs' code blocks and inline code."""
    commands = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text().replace("\\\n", " ")
        studies = "|".join(STUDIES)
        pattern = rf"(?:^|`)(equirelax (?:{studies})\b[^`\n]*)"
        for match in re.finditer(pattern, text, flags=re.MULTILINE):
            line = match.group(1).split("#")[0].strip()
            if "..." in line or "<" in line or "--help" in line:  # not a run
                continue
            commands.append(line)
    return commands


DOC_COMMANDS = _doc_commands()


@pytest.mark.parametrize("command", DOC_COMMANDS)
def test_a_command_in_the_docs_parses(command):
    _parse(command)
