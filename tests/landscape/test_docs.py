"""The examples of docs/landscape.md run, and say what the page says they do."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "landscape.md"


def test_examples_in_the_landscape_guide_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "natural 5 of 16 | C(rho): 1 | conjugate slices: 6" in out
    assert "3*trivial 10 of 16 | C(rho): 6 | conjugate slices: 1" in out
    assert "regular 6 of 31 | C(rho): 6 | conjugate slices: 120" in out
    assert namespace["found"].success
    assert namespace["found"].describe().startswith("hidden rep [S3/C2]: found")
    caught = namespace["caught"]
    assert caught.name == "C2" and caught.order == 2 and caught.generators == [[1, 0, 2]]
    assert "largest subgroup C2 (order 2 of 6, generators [[1, 0, 2]]): hidden rep" in out
    assert namespace["cls"].kind == "escapable saddle"
    assert namespace["split"].min_tangent >= -1e-12 > namespace["split"].min_normal
