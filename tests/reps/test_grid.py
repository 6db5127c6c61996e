"""C4 and D4 on pixel grids as permutation representations (``er.reps.grid``)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import equirelax as er
from equirelax.reps.grid import grid, grid_cayley, grid_elements, grid_group, move_grid

GROUPS = {"C4": er.groups.cyclic(4), "D4": er.groups.dihedral(4)}


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_names_and_groups(name: str) -> None:
    G = GROUPS[name]
    assert grid_group(name).key == G.key and grid_group(name.lower()).key == G.key
    assert grid_group(G) is G
    assert er.reps.grid(name, 3).group.key == G.key


@pytest.mark.parametrize("name", sorted(GROUPS))
@pytest.mark.parametrize("regular", [False, True])
def test_the_rep_of_every_element_is_the_pixel_move(name: str, regular: bool) -> None:
    """rep.matrix(g) for every element g of the group moves flattened fields as the element's
    pixel move (and group-axis permutation) does; the rep is a homomorphism (checked by PermRep's
    constructor on the relations, here on every pair of elements)."""
    G = GROUPS[name]
    size, channels = 5, 2
    rep = grid(G, size, channels, regular)
    n = G.order
    shape = (channels, n, size, size) if regular else (channels, size, size)
    assert rep.dim == int(np.prod(shape)) and rep.is_permutation
    x = np.random.default_rng(0).normal(size=shape)
    table, inverse = grid_cayley(G)
    elements = grid_elements(G)
    # the word of each group-axis element in the generators gives its permutation of the grid
    gens = [rep.generator_matrices()[k] for k in range(len(G.generators))]
    matrices = [np.eye(rep.dim)] * n
    rotation = gens[0]
    for i, (flip, turns) in enumerate(elements):
        m = np.linalg.matrix_power(rotation, turns)
        matrices[i] = (gens[1] @ m) if flip else m
    for i, (flip, turns) in enumerate(elements):
        moved = x[:, table[inverse[i]]] if regular else x
        expected = move_grid(moved, flip, turns).reshape(-1)
        np.testing.assert_array_equal(matrices[i] @ x.reshape(-1), expected)
    # a homomorphism onto the group's elements, and every element acts differently
    for i, j in itertools.product(range(n), repeat=2):
        np.testing.assert_array_equal(matrices[i] @ matrices[j], matrices[table[i, j]])
    flats = {matrices[i].tobytes() for i in range(n)}
    assert len(flats) == n
    # the same set of matrices as rep.matrix over the group's own elements
    own = {rep.matrix(g).tobytes() for g in G.elements()}
    assert own == flats


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_the_group_axis_order(name: str) -> None:
    elements = grid_elements(name)
    assert elements[0] == (0, 0) and len(elements) == GROUPS[name].order
    table, inverse = grid_cayley(name)
    n = len(elements)
    assert (table[0] == np.arange(n)).all() and all(table[g, inverse[g]] == 0 for g in range(n))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: grid("C8", 4), "'C4' or 'D4'"),
        (lambda: grid(er.groups.cyclic(5), 4), "cyclic"),
        (lambda: grid("C4", 0), "size"),
        (lambda: grid("C4", 4, channels=-1), "channels"),
    ],
)
def test_bad_input(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
