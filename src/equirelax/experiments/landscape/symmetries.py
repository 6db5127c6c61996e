"""Hidden symmetries of hidden reps: the facts about a rep that the study's pages show for the
teacher and the student (pieces, dimension of its slice E_ρ, hidden-symmetry group), and the
table of ``equirelax landscape symmetries``."""

from __future__ import annotations

import shlex

import equirelax as er
from equirelax.groups.subgroups import describe_pieces
from equirelax.landscape import EquivariantSubspace, hidden_symmetry_group


def symmetry_info(G, rep) -> dict:
    """A hidden rep's pieces, width, the dimension of its slice E_ρ (and of the whole weight
    space) and its hidden-symmetry group (order, signed order, number of conjugate slices)."""
    hs = hidden_symmetry_group(rep)
    space = EquivariantSubspace(er.reps.natural(G), [rep], er.reps.trivial(G))
    return {
        "rep": describe_pieces(hs.pieces[0]),
        "dim": rep.dim,
        "dim_E": space.dim,
        "n_params": space.n_params,
        "hidden_symmetry_order": hs.order,
        "signed_order": hs.signed_order,
        "n_hyperplanes": hs.n_hyperplanes,
    }


def symmetries_table(group: str, specs: list[str], command: str | None = None) -> str:
    """A markdown table of hidden-symmetry groups for some hidden reps of ``group``, headed by
    the ``command`` that wrote it (the default: the command that prints it)."""
    G = er.groups.from_name(group)
    if command is None:
        command = shlex.join(["equirelax", "landscape", "symmetries", "--group", group,
                              "--reps", *specs])
    lines = [
        f"Hidden symmetries of {group}-equivariant MLPs R^{G.degree} -> hidden -> R "
        f"(`{command}`).",
        "",
        "| hidden rep | pieces | width | dim E_ρ (of D) | C(ρ) | closed form | signed | "
        "conjugate slices |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for spec in specs:
        rep = er.reps.parse(G, spec)
        hs = hidden_symmetry_group(rep)
        info = symmetry_info(G, rep)
        lines.append(
            f"| `{spec}` | {info['rep']} | {rep.dim} | {info['dim_E']} "
            f"({info['n_params']}) | {hs.order} | {hs.formula_order} | "
            f"{hs.signed_order} | {hs.n_hyperplanes} |"
        )
    return "\n".join(lines)
