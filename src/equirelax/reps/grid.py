"""The symmetries of a square pixel grid as permutation representations of C4 and D4.

C4 (quarter turns) and D4 (quarter turns and mirrors) act on ``size x size`` images by moving
pixels: exactly, as permutations of the flattened pixels. :func:`grid` is that action as a
:class:`~equirelax.reps.PermRep` of ``er.groups.cyclic(4)`` / ``er.groups.dihedral(4)``: the
rotation generator turns the image a quarter turn counter-clockwise (``np.rot90`` /
``torch.rot90`` on the last two axes), the reflection generator of D4 mirrors it left-right;
the representation's constructor checks that these pixel moves satisfy the group's relations.

Group convolutions also carry a *group axis* (one feature map per group element, the regular
representation), which needs an order of the elements: element ``i`` is
``(flip, turns) = grid_elements(G)[i]``, "rotate by ``turns`` quarter turns, then mirror if
``flip``", with the identity first. :func:`grid_cayley` is the multiplication table in that
order, and ``grid(G, size, regular=True)`` acts on ``(channels, |G|, size, size)`` maps by
``(g·f)[h] = T_g f[g⁻¹h]``.
"""

from __future__ import annotations

import functools

import numpy as np

from equirelax.groups.catalogue import cyclic, dihedral
from equirelax.groups.permutation import PermutationGroup
from equirelax.reps.base import PermRep

__all__ = ["grid", "grid_cayley", "grid_elements", "grid_group", "move_grid"]

_NAMES = ("C4", "D4")


def grid_group(group: str | PermutationGroup) -> PermutationGroup:
    """The group acting on pixel grids: ``"C4"`` → ``cyclic(4)``, ``"D4"`` → ``dihedral(4)``
    (any case), or one of those groups itself (same generators)."""
    if isinstance(group, str):
        key = group.upper()
        if key not in _NAMES:
            raise ValueError(f"pixel grids carry the groups 'C4' or 'D4', got {group!r}")
        return cyclic(4) if key == "C4" else dihedral(4)
    if isinstance(group, PermutationGroup):
        for candidate in (cyclic(4), dihedral(4)):
            if group.key == candidate.key:
                return group
    raise ValueError(
        f"pixel grids carry er.groups.cyclic(4) or er.groups.dihedral(4) (or their names 'C4', "
        f"'D4'), got {group!r}")


def grid_name(group: str | PermutationGroup) -> str:
    """``"C4"`` or ``"D4"``: the name of a grid group."""
    return "C4" if grid_group(group).order == 4 else "D4"


def move_grid(x: np.ndarray, flip: int, turns: int) -> np.ndarray:
    """``x (..., H, H)`` rotated by ``turns`` quarter turns counter-clockwise, then mirrored
    left-right if ``flip`` (numpy; the same moves as ``torch.rot90`` and ``torch.flip``)."""
    if turns % 4:
        x = np.rot90(x, turns % 4, axes=(-2, -1))
    return np.flip(x, axis=-1) if flip else x


@functools.cache
def _elements(name: str) -> tuple[tuple[int, int], ...]:
    flips = (0,) if name == "C4" else (0, 1)
    return tuple((f, r) for f in flips for r in range(4))


def grid_elements(group: str | PermutationGroup) -> tuple[tuple[int, int], ...]:
    """The group's elements as ``(flip, turns)`` pairs in group-axis order, identity first:
    C4 ``(0, 0) .. (0, 3)``; D4 those, then ``(1, 0) .. (1, 3)``."""
    return _elements(grid_name(group))


@functools.cache
def _cayley(name: str) -> tuple[np.ndarray, np.ndarray]:
    elements = _elements(name)
    probe = np.arange(9).reshape(3, 3)  # no symmetry: every element moves it differently
    images = [move_grid(probe, f, r) for f, r in elements]
    n = len(elements)
    table = np.empty((n, n), dtype=np.int64)
    for i, (fi, ri) in enumerate(elements):
        for j in range(n):
            composed = move_grid(images[j], fi, ri)
            table[i, j] = next(k for k, im in enumerate(images) if np.array_equal(im, composed))
    inverse = np.array([int(np.flatnonzero(table[i] == 0)[0]) for i in range(n)])
    table.setflags(write=False)
    inverse.setflags(write=False)
    return table, inverse


def grid_cayley(group: str | PermutationGroup) -> tuple[np.ndarray, np.ndarray]:
    """The multiplication table ``table[i, j]`` = index of ``g_i g_j`` (first ``g_j``) and the
    index of each element's inverse, in :func:`grid_elements` order (read-only arrays)."""
    return _cayley(grid_name(group))


def _generator_elements(name: str) -> tuple[int, ...]:
    """Group-axis indices of the group's generators: the quarter turn (and the mirror)."""
    return (1,) if name == "C4" else (1, 4)


def _act(index: np.ndarray, name: str, g: int, regular: bool) -> np.ndarray:
    flip, turns = _elements(name)[g]
    if regular:
        table, inverse = _cayley(name)
        index = np.take(index, table[inverse[g]], axis=-3)
    return move_grid(index, flip, turns)


@functools.lru_cache(maxsize=64)
def _grid(name: str, size: int, channels: int, regular: bool) -> PermRep:
    n = len(_elements(name))
    shape = (channels, n, size, size) if regular else (channels, size, size)
    index = np.arange(int(np.prod(shape))).reshape(shape)
    images = []
    for g in _generator_elements(name):
        source = _act(index, name, g, regular).reshape(-1)
        # (P x)[p[i]] = x[i] for a PermRep; the move gives y[j] = x[source[j]], so p = source⁻¹
        images.append(np.argsort(source))
    kind = "regular" if regular else "trivial"
    return PermRep(grid_group(name), images,
                   name=f"{name} {kind} fields ({channels}, {size}x{size})")


def grid(group: str | PermutationGroup, size: int, channels: int = 1,
         regular: bool = False) -> PermRep:
    """C4 or D4 acting on ``channels`` square fields of side ``size``, flattened in C order.

    ``regular=False``: images ``(channels, size, size)``, moved pixel by pixel.
    ``regular=True``: group feature maps ``(channels, |G|, size, size)``, pixels moved and the
    group axis permuted, ``(g·f)[h] = T_g f[g⁻¹h]`` (group axis in :func:`grid_elements` order).
    A representation of ``grid_group(group)`` (``cyclic(4)`` or ``dihedral(4)``).
    """
    for value, what in ((size, "size"), (channels, "channels")):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if not isinstance(regular, bool):
        raise TypeError(f"regular must be True or False, got {regular!r}")
    return _grid(grid_name(group), int(size), int(channels), regular)
