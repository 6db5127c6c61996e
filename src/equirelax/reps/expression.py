"""Representations written as text, so that configs and command lines can name them.

An expression is a ``+``-separated list of terms ``k*name`` (``k`` a positive multiplicity, ``1``
when left out), e.g. ``"2*natural+trivial"``. The names are those of :mod:`reps.catalogue`, plus
``pairs``: the action on ordered pairs of distinct points (the quotient by a two-point stabiliser).
"""

from __future__ import annotations

from collections.abc import Callable

from equirelax.groups.base import Group
from equirelax.reps.base import Rep, direct_sum
from equirelax.reps.catalogue import natural, quotient, regular, sign, standard, trivial, vector


def _pairs(G: Group) -> Rep:
    """G acting on ordered pairs of distinct points: [G / Stab(0, 1)]."""
    stabilizer = getattr(G, "stabilizer", None)
    if stabilizer is None:
        raise TypeError(f"'pairs' needs a permutation group, got {G!r}")
    return quotient(G, stabilizer(0).stabilizer(1))


#: The names an expression may use, each with the function that builds the rep of a group.
NAMED_REPS: dict[str, Callable[[Group], Rep]] = {
    "trivial": trivial,
    "natural": natural,
    "regular": regular,
    "pairs": _pairs,
    "sign": sign,
    "standard": standard,  # type: ignore[dict-item]
    "vector": vector,
}


def _multiplicity(text: str, term: str, spec: str) -> int:
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"the multiplicity of term {term!r} in {spec!r} must be a positive integer, got "
            f"{text!r} (write terms as 'k*name', e.g. '3*trivial')"
        )
    return int(text)


def parse(G: Group, spec: str) -> Rep:
    """The representation of ``G`` that ``spec`` names, e.g. ``parse(G, "2*natural+trivial")``.

    Terms are ``k*name`` joined by ``+`` (spaces ignored), with ``name`` one of
    :data:`NAMED_REPS`: ``trivial``, ``natural``, ``regular``, ``pairs`` (ordered pairs of
    distinct points), ``sign``, ``standard``, ``vector``.
    """
    if not isinstance(G, Group):
        raise TypeError(f"parse(G, spec) needs a group first, got {type(G).__name__} {G!r}")
    if not isinstance(spec, str):
        raise TypeError(f"a rep expression must be a string such as '2*natural+trivial', got "
                        f"{type(spec).__name__} {spec!r}")
    terms = []
    for term in spec.replace(" ", "").split("+"):
        count, _, name = term.rpartition("*")
        if name not in NAMED_REPS:
            raise ValueError(
                f"unknown rep {name!r} in {spec!r}; use {', '.join(NAMED_REPS)}, with "
                "multiplicities like 3*trivial"
            )
        terms.append(_multiplicity(count, term, spec) * NAMED_REPS[name](G))
    return direct_sum(terms)
