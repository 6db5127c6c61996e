"""e3nn is optional: without it equirelax imports, builds, relaxes and hardens models, and asking
for e3nn irreps fails with a message that says how to install it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["e3nn"] = None  # "import e3nn" now raises ImportError, as if not installed
    import torch
    import equirelax as er

    G = er.groups.symmetric(4)
    V, T = er.reps.natural(G), er.reps.trivial(G)
    model = er.nn.EquivariantMLP(V, [2 * V + T], T, activation="tanh")
    relaxed = er.relax(model, total_steps=4)
    x = torch.randn(8, 4)
    (relaxed(x).sum() + relaxed.penalty()).backward()
    relaxed.step()
    assert type(er.harden(relaxed)) is er.nn.EquivariantMLP
    try:
        er.hom("1o", "1o")
    except ImportError as err:
        print(err)
    assert "e3nn" not in sys.modules or sys.modules["e3nn"] is None
""")


def test_equirelax_works_without_e3nn_and_says_how_to_get_irreps():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "e3nn irreps strings need the optional dependency e3nn" in done.stdout
    assert "pip install 'equirelax[e3nn]'" in done.stdout
