"""The top-level package: what `import equirelax` loads, and the subpackages it loads lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import equirelax as er


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_equirelax_leaves_the_upper_floors_unimported():
    out = _run("import sys, equirelax\n"
               "print(sorted(m for m in ('equirelax.landscape', 'equirelax.scg', "
               "'equirelax.models', 'equirelax.experiments') if m in sys.modules))")
    assert out == "[]"


@pytest.mark.parametrize("name", ["landscape", "scg"])
def test_lazy_subpackages_are_attributes(name):
    out = _run(f"import sys, equirelax as er\n"
               f"module = er.{name}\n"
               f"assert module is sys.modules['equirelax.{name}']\n"
               f"assert er.{name} is module\n"
               f"print(module.__name__)")
    assert out == f"equirelax.{name}"


def test_eager_subpackages_are_attributes():
    for name in ("groups", "reps", "homspace", "nn", "relaxation", "testing"):
        assert getattr(er, name).__name__.startswith("equirelax.")


def test_dir_lists_the_lazy_subpackages():
    names = dir(er)
    for name in ("landscape", "scg", "models", "nn", "relax", "harden", "equivariance_error"):
        assert name in names


def test_models_resolves_by_name():
    """``er.models`` is ``equirelax.models`` once that subpackage exists; without it the
    attribute is missing (AttributeError, so hasattr says False), never a broken import."""
    try:
        import equirelax.models as models
    except ModuleNotFoundError:
        assert not hasattr(er, "models")
        with pytest.raises(AttributeError, match="no attribute 'models'"):
            er.models  # noqa: B018
    else:
        assert er.models is models


def test_unknown_attributes_raise_attribute_error():
    with pytest.raises(AttributeError, match="module 'equirelax' has no attribute 'nothing'"):
        er.nothing  # noqa: B018
