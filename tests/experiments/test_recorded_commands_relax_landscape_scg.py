"""Every command recorded in ``docs/results`` for the teacher–student studies (``relax``,
``demo``), the landscape study and the SCG study parses with the real command line, writes to
the folder its results are in, and (where the results keep their config) resolves to the
settings recorded beside it: the committed results reproduce from the commands that name them."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest

from equirelax.cli import build_parser
from equirelax.experiments.kit.options import chosen_preset

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"


def _parse(command: str):
    words = shlex.split(command)
    assert words[0] == "equirelax", command
    args = build_parser(words[1]).parse_args(words[1:])
    args.argv = words[1:]
    return args


def _json_commands(*folders: str) -> list[tuple[Path, str]]:
    found = []
    for folder in folders:
        for path in sorted((RESULTS / folder).rglob("*.json")):
            payload = json.loads(path.read_text())
            if isinstance(payload, dict) and isinstance(payload.get("command"), str):
                found.append((path, payload["command"]))
    return found


TEACHER_STUDENT = _json_commands("relaxation", "demo")
LANDSCAPE = _json_commands("landscape")


def _ids(found):
    return [str(p.relative_to(RESULTS)) for p, _ in found]


def test_every_study_has_recorded_commands():
    assert {shlex.split(c)[1] for _, c in TEACHER_STUDENT} == {"relax", "demo"}
    assert len(LANDSCAPE) == 4


@pytest.mark.parametrize(("path", "command"), TEACHER_STUDENT, ids=_ids(TEACHER_STUDENT))
def test_a_teacher_student_command_resolves_to_its_recorded_config(path, command):
    args = _parse(command)
    if args.study == "relax":
        from equirelax.experiments.relax_study import config_from_options
    else:
        from equirelax.experiments.demo import config_from_options
    assert args.out == path.parent.relative_to(ROOT)
    payload = json.loads(path.read_text())
    assert json.loads(json.dumps(asdict(config_from_options(args)))) == payload["config"]
    md = path.with_suffix(".md").read_text()
    assert md.startswith(f"Written by the script; reproduce with:\n\n```\n{command}\n```\n")


@pytest.mark.parametrize(("path", "command"), LANDSCAPE, ids=_ids(LANDSCAPE))
def test_a_landscape_command_resolves_to_its_recorded_config(path, command):
    from equirelax.experiments.landscape import config_from_options

    args = _parse(command)
    assert args.command == "teacher-student"
    assert args.out == path.parent.relative_to(ROOT)
    cfg = config_from_options(args)
    assert json.loads(json.dumps(asdict(cfg))) == json.loads(path.read_text())["config"]
    assert path.stem == cfg.tag()
    assert f"```\n{command}\n```" in path.with_suffix(".md").read_text()


def test_the_symmetries_tables_name_the_command_that_writes_them():
    pages = sorted((RESULTS / "landscape").glob("symmetries_*.md"))
    assert pages
    for page in pages:
        command = re.search(r"\(`(equirelax landscape symmetries [^`]*)`\)",
                            page.read_text()).group(1)
        args = _parse(command)
        assert args.out == page.parent.relative_to(ROOT)
        assert page.name == f"symmetries_{args.group}.md"


def test_the_scg_tables_name_commands_that_write_where_they_are():
    pages = sorted((RESULTS / "scg").rglob("*.md"))
    commands = []
    for page in pages:
        for command in re.findall(r"Command: `(equirelax scg [^`]*)`", page.read_text()):
            commands.append(command)
            args = _parse(command)
            preset = chosen_preset(args, "full")
            out = args.out or Path("docs/results/scg") / preset
            assert out == page.parent.relative_to(ROOT), (page, command)
    assert len(commands) >= 4
