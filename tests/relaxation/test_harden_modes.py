"""Hardening modes: built-in, registered (a function or a lazy "module:function"), callable."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import equirelax as er
from equirelax.relaxation import harden, harden_modes, hardening, register_harden_mode, relax


@pytest.fixture
def relaxed():
    G = er.groups.symmetric(3)
    V, T = er.reps.natural(G), er.reps.trivial(G)
    torch.manual_seed(0)
    model = er.nn.EquivariantMLP(V, [3 * T], T, activation="tanh").double()
    return relax(model, schedule="constant", value=1.0, init_std=0.1)


@pytest.fixture
def clean_registry():
    """Registrations made by a test are undone after it."""
    saved = dict(hardening._HARDEN_MODES)
    yield
    hardening._HARDEN_MODES.clear()
    hardening._HARDEN_MODES.update(saved)


def test_detected_is_registered_by_the_package_without_importing_landscape():
    """`import equirelax as er; er.harden(m, mode="detected")` in a fresh process: landscape is
    imported by the first use of the mode, not before."""
    code = """
import sys, torch
import equirelax as er
assert "equirelax.landscape" not in sys.modules, "import equirelax imported landscape"
assert "detected" in er.relaxation.harden_modes()
G = er.groups.symmetric(3)
V, T = er.reps.natural(G), er.reps.trivial(G)
torch.manual_seed(0)
student = er.nn.EquivariantMLP(V, [3 * T], T, activation="tanh").double()
relaxed = er.relax(student, schedule="constant", value=1.0, init_std=0.0)
exact = er.harden(relaxed, mode="detected")
assert isinstance(exact, er.nn.EquivariantMLP), type(exact)
assert "equirelax.landscape" in sys.modules
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_known_modes_are_listed():
    assert harden_modes()[:2] == ["drop", "project"]
    assert "detected" in harden_modes()


def test_a_callable_mode_gets_a_copy_of_the_relaxed_model(relaxed):
    seen = []

    def keep_the_layers(model):
        seen.append(model)
        return harden(model, mode="drop")

    exact = harden(relaxed, mode=keep_the_layers)
    assert seen and seen[0] is not relaxed
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(exact(x), harden(relaxed)(x))
    with pytest.raises(TypeError, match="'keep_the_layers' needs the RelaxedModel"):
        harden(torch.nn.Linear(3, 3), mode=keep_the_layers)


def test_a_mode_registered_by_name_is_imported_on_first_use(relaxed, clean_registry):
    register_harden_mode("by_name", "equirelax.relaxation.hardening:harden")
    assert hardening._HARDEN_MODES["by_name"] == "equirelax.relaxation.hardening:harden"
    exact = harden(relaxed, mode="by_name")
    assert hardening._HARDEN_MODES["by_name"] is harden  # resolved once, then kept
    assert isinstance(exact, er.nn.EquivariantMLP)


def test_a_registered_function_replaces_an_earlier_entry(relaxed, clean_registry):
    register_harden_mode("mine", "somewhere.else:nothing")
    register_harden_mode("mine", lambda m: "done")
    assert harden(relaxed, mode="mine") == "done"


def test_a_name_that_does_not_resolve_says_so(relaxed, clean_registry):
    register_harden_mode("missing", "equirelax.relaxation.hardening:no_such_function")
    with pytest.raises(ImportError, match=r"'missing' names .* no function 'no_such_function'"):
        harden(relaxed, mode="missing")


def test_bad_registrations_and_modes_are_refused(relaxed):
    with pytest.raises(ValueError, match="'drop' is a built-in hardening mode"):
        register_harden_mode("drop", lambda m: m)
    with pytest.raises(ValueError, match="form 'module:function', got 'landscape'"):
        register_harden_mode("x", "landscape")
    with pytest.raises(TypeError, match=r"callable fn.*or a 'module:function' string, got 3"):
        register_harden_mode("x", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty string name"):
        register_harden_mode("", lambda m: m)
    with pytest.raises(ValueError, match=r"unknown hardening mode 'melt'; expected one of "
                                         r"\['drop', 'project', 'detected'.*or a callable"):
        harden(relaxed, mode="melt")
