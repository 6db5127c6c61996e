"""What a user may pass where a representation is expected: a Rep, or e3nn irreps.

e3nn users describe features by irreps, as a string (``"8x0e+4x1o"``) or an ``o3.Irreps`` (or a
single ``o3.Irrep``), and e3nn's convention is that these are representations of O(3) (``e``/``o``
is the parity). :func:`as_reps` turns such values into equirelax reps, so ``er.hom``,
``EquivariantLinear`` and ``EquivariantMLP`` take either. Irreps given next to a Rep of SO(3)
take that group instead (parity then acts trivially); next to a Rep of any other group they are
refused, naming both.

e3nn stays optional: nothing here imports it until irreps are actually given.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import lru_cache

from equirelax.groups.base import Group
from equirelax.groups.lie import SO, MatrixLieGroup, O
from equirelax.reps.base import Rep

#: The groups irreps can stand for (e3nn's convention: O(3) unless a Rep says SO(3)).
IRREPS_GROUPS = ("O(3)", "SO(3)")


def _is_e3nn_irreps(value: object) -> bool:
    """True for an ``o3.Irreps`` or ``o3.Irrep`` (e3nn cannot have made one if not imported)."""
    o3 = sys.modules.get("e3nn.o3")
    return o3 is not None and isinstance(value, o3.Irreps | o3.Irrep)


def is_rep_spec(value: object) -> bool:
    """True when ``value`` describes one representation: a Rep, an irreps string, an
    ``o3.Irreps`` or an ``o3.Irrep`` (not a list of them; ``o3.Irreps`` is a tuple subclass)."""
    return isinstance(value, Rep | str) or _is_e3nn_irreps(value)


@lru_cache(maxsize=128)
def _irreps_rep(group_name: str, spec: str) -> Rep:
    from equirelax.reps.irreps import irreps

    return irreps(O(3) if group_name == "O(3)" else SO(3), spec)


def _spec_string(value: object, name: str, where: str) -> str:
    """The canonical e3nn string of irreps given as a string or an e3nn object."""
    try:
        from e3nn import o3
    except ImportError as err:
        raise ImportError(
            f"{where} got {name}={value!r}: e3nn irreps strings need the optional "
            "dependency e3nn (pip install 'equirelax[e3nn]')"
        ) from err
    try:
        irreps = o3.Irreps(value)
    except (ValueError, AssertionError, TypeError) as err:
        raise ValueError(
            f"{where} needs {name} to be a Rep or e3nn irreps such as "
            f"'8x0e+4x1o', got {value!r} ({err})"
        ) from err
    return str(irreps)


def as_reps(
    *values: object, names: Sequence[str] | None = None, where: str = "this call"
) -> list[Rep]:
    """The reps that ``values`` describe, each a Rep or e3nn irreps (see the module docstring).

    Irreps become reps of the group of the Reps among ``values`` when that is SO(3) or O(3), of
    O(3) when there is none. ``names`` (one per value) and ``where`` name the arguments in the
    errors, which give the expected kind and the value received.
    """
    names = list(names) if names is not None else [f"argument {i}" for i in range(len(values))]
    if len(names) != len(values):
        raise ValueError(
            f"as_reps needs one name per value, got {len(names)} names for {len(values)} values"
        )
    for value, name in zip(values, names):
        if not is_rep_spec(value):
            raise TypeError(
                f"{where} needs {name} to be a Rep, got {type(value).__name__} "
                "(e3nn irreps, a string like '8x0e+4x1o' or an o3.Irreps, are "
                "accepted too)"
            )
    group: Group | None = next((v.group for v in values if isinstance(v, Rep)), None)
    out: list[Rep] = []
    for value, name in zip(values, names):
        if isinstance(value, Rep):
            out.append(value)
            continue
        if group is not None and not (
            isinstance(group, MatrixLieGroup) and group.name in IRREPS_GROUPS
        ):
            raise ValueError(
                f"{where} got {name}={value!r}, e3nn irreps of O(3), next to a "
                f"representation of {group!r}: irreps describe representations "
                "of O(3) or SO(3) only"
            )
        group_name = group.name if group is not None else "O(3)"
        out.append(_irreps_rep(group_name, _spec_string(value, name, where)))
    return out
