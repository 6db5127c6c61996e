"""Equivariant maps between sums of tensor powers of S_n's natural rep, applied by partitions.

S_n acts on the index tuples (i_1..i_p, j_1..j_q) of a weight entry between V^⊗q and V^⊗p
(V = natural, dimension n); two tuples lie in one orbit exactly when they have the same equality
pattern, a set partition of the p + q index positions (Maron et al., *Invariant and Equivariant
Graph Networks*, 2019). The orbit basis is therefore one basis map B_P per partition P with at
most n blocks, the same basis (same coefficients, same order) as the dense orbit basis of
:class:`~equirelax.homspace.space.OrbitHomSpace`.

Such maps are applied without the dense (n^p, n^q) weight. The "at least" maps D_Q (1 where the
equalities of Q hold, whatever the other indices are) are sums of orbit maps,
D_Q = Σ_{P coarsens Q} B_P, so the orbit coefficients c turn into D-coefficients d = c A⁻¹ by
a small integer matrix (the Möbius function of the partition lattice). Each D_Q is a diagonal
extraction and sums on the input, a channel mix, and a broadcast or diagonal embedding on the
output: O(n^max(p, q)) per map instead of O(n^(p+q)). Copies (m·ρ → m'·ρ') share the partition
structure: each D_Q mixes channels with an (m', m) matrix, so the cost is a channel mix on the
reduced tensors plus one structured op per copy, never a Kronecker-expanded matrix.

Per call the cost is mostly the number of ops (each one's dispatch and autograd bookkeeping)
and of passes over the n^k entries, so the reordering and Möbius transform of all pairs are one
precomputed fold, reps of orders <= 1 take a lean path of a few ops (copies of V fold their
coefficients by a view), order 2 shares its reductions and adds its full-size pieces into one
output tensor (with one copy each side, the placements that read the same reductions are one
stacked product, forward and backward), and the bias joins the per-copy constants of the
assembly (no pass of its own).

Features are flat vectors (:meth:`PartitionHomSpace.apply`) or, between copies of one tensor
power on each side, tensors (rows, copies, n, ...) or channels last (rows, n, ..., copies)
(:meth:`PartitionHomSpace.apply_shaped`), read in place through views.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from functools import cache

import numpy as np
import torch

from equirelax.groups.permutation import PermutationGroup
from equirelax.homspace.space import HomSpace, _cached, fixed_space
from equirelax.reps.base import Rep

#: Largest tensor order (k of V^⊗k) applied by partitions.
MAX_ORDER = 2

#: Up to this many coefficients the fold (orbit coefficients -> "at least" coefficients) is
#: one product with a dense (dim, dim) matrix; above, a (dim, B) gather and weighted sum, whose
#: size grows linearly (many copies: the matrix would grow with the square of their number).
FOLD_DENSE_UP_TO = 256

_LETTERS = "abcd"  # one per block of a partition of at most 2 * MAX_ORDER positions


def tensor_order(part: Rep) -> int | None:
    """k when ``part`` is V^⊗k (k <= MAX_ORDER; k = 0 the trivial rep) of the full symmetric
    group acting on V = natural, index (i_1, ..., i_k) at Σ i_t n^(k-t); else None."""
    group = part.group
    if not part.is_permutation or not isinstance(group, PermutationGroup):
        return None
    n = group.degree
    images = part.images  # type: ignore[attr-defined]
    gens = group.generators
    if part.dim == 1:
        return 0
    for k in range(1, MAX_ORDER + 1):
        if part.dim != n**k:
            continue
        for image, g in zip(images, gens):
            expected = g
            for _ in range(k - 1):
                expected = (expected[:, None] * n + g[None, :]).reshape(-1)
            if not np.array_equal(image, expected):
                return None
        return k
    return None


def tensor_orders(rep: Rep) -> list[int] | None:
    """The order k of each summand of ``rep`` when every summand is a tensor power V^⊗k
    (k <= MAX_ORDER) of the natural rep of a recognisably full symmetric group, else None."""
    group = rep.group
    if not isinstance(group, PermutationGroup) or not group.is_full_symmetric:
        return None
    orders: dict = {}
    out = []
    for part in rep.parts:
        if part.key not in orders:
            orders[part.key] = tensor_order(part)
        if orders[part.key] is None:
            return None
        out.append(orders[part.key])
    return out


@cache
def set_partitions(k: int) -> tuple[tuple[int, ...], ...]:
    """The set partitions of k positions as restricted growth strings (position t is in block
    rgs[t]; blocks numbered in order of first appearance), in lexicographic order.

    The string is also the lexicographically first index tuple with that equality pattern, so
    this is the order in which the orbits first appear in a row-major weight matrix.
    """
    out: list[tuple[int, ...]] = [()]
    for _ in range(k):
        out = [(*rgs, b) for rgs in out for b in range(max(rgs, default=-1) + 2)]
    return tuple(out)


def _coarsens(p: tuple[int, ...], q: tuple[int, ...]) -> bool:
    """Whether every block of q lies inside a block of p."""
    return all(p[s] == p[t] for s in range(len(q)) for t in range(s) if q[s] == q[t])


@cache
def mobius(k: int) -> np.ndarray:
    """A⁻¹ for A[Q, P] = [P coarsens Q] over ``set_partitions(k)``: D = A B turns orbit maps B
    into "at least" maps D, so coefficients c of B are coefficients c A⁻¹ of D (integers)."""
    parts = set_partitions(k)
    a = np.array([[float(_coarsens(p, q)) for p in parts] for q in parts])
    return np.rint(np.linalg.inv(a))


def _falling(n: int, k: int) -> int:
    """n (n-1) ... (n-k+1): the number of index tuples with a given pattern of k blocks."""
    return math.perm(n, k)


class _Type:
    """The copies of one tensor power V^⊗order inside a sum: their offsets in the flat vector."""

    def __init__(self, order: int, offsets: list[int], n: int) -> None:
        self.order, self.offsets, self.size = order, np.array(offsets, dtype=np.int64), n**order
        self.copies = len(offsets)

    def index(self) -> np.ndarray:
        """Flat positions of its entries, copy by copy."""
        return (self.offsets[:, None] + np.arange(self.size)[None, :]).reshape(-1)


def _types(rep: Rep, orders: list[int], n: int) -> list[_Type]:
    """The types of ``rep``, highest order first (so that V copies come before trivial ones,
    the layout the lean path of :class:`PartitionHomSpace` reads)."""
    found: dict[int, list[int]] = {}
    offset = 0
    for part, order in zip(rep.parts, orders):
        found.setdefault(order, []).append(offset)
        offset += part.dim
    return [_Type(order, found[order], n) for order in sorted(found, reverse=True)]


#: The ways a reduced tensor lands in an output (see ``PartitionHomSpace._assemble``), those
#: whose adjoint reuses another's after it.
_KINDS = ("full", "rows", "cols", "diag", "scalar", "diag_scalar")


def _placement(out: tuple[int, ...], shared: set[int]) -> str:
    """How the reduced tensor of one partition lands in the output (see ``_assemble``)."""
    if len(out) == 0:
        return "scalar"
    if len(out) == 1:
        return "full" if out[0] in shared else "scalar"
    if out[0] == out[1]:
        return "diag" if out[0] in shared else "diag_scalar"
    return {
        (True, True): "full",
        (True, False): "rows",
        (False, True): "cols",
        (False, False): "scalar",
    }[(out[0] in shared, out[1] in shared)]


@cache
def _sides(equation: str) -> tuple[str, str]:
    """The input and output letters of a reduction "zy<in>->zy<out>" (parsed once)."""
    inp, out = equation[2:].split("->zy")
    return inp, out


def _reduce(
    equation: str, x: torch.Tensor, done: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The input reduction of one partition (an einsum on (rows, copies, n, ...) with repeated
    letters for diagonals and missing ones for sums), by the direct op where there is one; a
    total sum or trace of an order-2 input from its row sums or diagonal when ``done`` (the
    reductions made so far) has them."""
    inp, out = _sides(equation)
    done = done or {}
    if inp == out:
        return x
    if len(inp) == 2:
        if inp[0] == inp[1]:
            if not out and "zyaa->zya" in done:
                return done["zyaa->zya"].sum(-1)
            diag = x.diagonal(dim1=-2, dim2=-1)
            return diag if out else diag.sum(-1)
        if out == inp[::-1]:
            return x.transpose(-2, -1)
        if not out:
            partial = done.get("zyab->zya", done.get("zyab->zyb"))
            return x.sum((-2, -1)) if partial is None else partial.sum(-1)
        return x.sum(-1) if out == inp[0] else x.sum(-2)
    if len(inp) == 1 and not out:
        return x.sum(-1)
    return torch.einsum(equation, x)


class _Group:
    """The partitions of one pair that land in the output the same way (``kind``, see
    ``PartitionHomSpace._assemble``): positions ``start:stop`` of the pair's coefficients, the
    reduction of the input for each, and how many axes of size n their reduced tensors keep."""

    def __init__(self, kind: str, start: int, equations: list[str]) -> None:
        self.kind, self.start, self.stop = kind, start, start + len(equations)
        self.equations = equations
        self.shared = len(equations[0].split("->")[1]) - 2
        #: where its folded coefficients, an (m_o, q, m_i) block, lie (set by the space)
        self.d_start = self.d_stop = 0


class _Pair:
    """The maps between one input type and one output type. Its partitions are ordered group by
    group (``groups``), so that each group's coefficients are one slice."""

    def __init__(self, t_out: _Type, t_in: _Type, out_position: int, in_position: int) -> None:
        self.t_out, self.t_in = t_out, t_in
        self.out_position, self.in_position = out_position, in_position
        p, q = t_out.order, t_in.order
        self.order = p + q
        found: dict[str, list[tuple[tuple[int, ...], str]]] = {}
        for rgs in set_partitions(p + q):
            out, inp = rgs[:p], rgs[p:]
            shared = set(out) & set(inp)
            ordered = [b for b in dict.fromkeys(out) if b in shared]
            # letters by first appearance in the input, so that one reduction has one
            # equation whatever the blocks' numbers (e.g. a row sum is always "zyab->zya"),
            # and each is computed once per call, not once per partition that reads it
            names = {block: _LETTERS[i] for i, block in enumerate(dict.fromkeys(inp))}
            letters = "".join(names[b] for b in inp)
            keep = "".join(names[b] for b in ordered)
            found.setdefault(_placement(out, shared), []).append((rgs, f"zy{letters}->zy{keep}"))
        self.partitions: list[tuple[int, ...]] = []
        self.groups: list[_Group] = []
        # groups that read the same reductions lie next to each other (first appearance
        # order otherwise), so that with one copy each side their weights are one (b, q)
        # block: one stacked product places them all (see ``bundles``)
        first_of = {}
        for items in found.values():
            first_of.setdefault(tuple(eq for _, eq in items), len(first_of))
        ordered = sorted(found.items(), key=lambda kv: first_of[tuple(eq for _, eq in kv[1])])
        for kind, items in ordered:
            self.groups.append(_Group(kind, len(self.partitions), [eq for _, eq in items]))
            self.partitions.extend(rgs for rgs, _ in items)
        #: runs (start, stop) of ``groups`` reading the same reductions, "full" ones alone
        #: (they are weighted into the output with no temporary, see ``_assemble``)
        self.bundles: list[tuple[int, int]] = []
        for i, group in enumerate(self.groups):
            last = self.groups[self.bundles[-1][0]] if self.bundles else None
            if (last is not None and group.kind != "full" and last.kind != "full"
                    and last.equations == group.equations):
                self.bundles[-1] = (self.bundles[-1][0], i + 1)
            else:
                self.bundles.append((i, i + 1))
        #: the groups that are a bundle of their own
        self.lone = {start for start, stop in self.bundles if stop - start == 1}
        #: its distinct reductions, fewer sums first (a total then reuses a partial sum)
        self.equations = sorted(
            dict.fromkeys(eq for group in self.groups for eq in group.equations),
            key=len,
            reverse=True,
        )
        where = {rgs: i for i, rgs in enumerate(set_partitions(p + q))}
        perm = [where[rgs] for rgs in self.partitions]
        self.mobius = mobius(p + q)[np.ix_(perm, perm)]  # in this pair's partition order
        self.size = t_out.copies * t_in.copies * len(self.partitions)
        self.one_copy = t_out.copies == t_in.copies == 1


class PartitionHomSpace(HomSpace):
    """Orbit basis between sums of S_n tensor powers (order <= 2), applied by partitions.

    Coefficients are those of :class:`~equirelax.homspace.space.OrbitHomSpace` for the same
    reps (same orbits, same order: by first appearance in the row-major weight), so a layer can
    switch between the dense and the structured path without touching its parameters. Needs
    n >= p + q for every pair of orders (every partition is then an orbit).
    """

    def __init__(self, rep_in: Rep, rep_out: Rep) -> None:
        super().__init__(rep_in, rep_out)
        orders_in, orders_out = tensor_orders(rep_in), tensor_orders(rep_out)
        if orders_in is None or orders_out is None or rep_in.group != rep_out.group:
            raise ValueError(
                f"a partition hom space needs sums of tensor powers (order <= "
                f"{MAX_ORDER}) of the natural rep of one full symmetric group; got "
                f"{rep_in!r} -> {rep_out!r}"
            )
        self.n = n = rep_in.group.degree
        top = max(orders_in) + max(orders_out)
        if n < top:
            raise ValueError(
                f"a partition hom space between orders up to {max(orders_in)} and "
                f"{max(orders_out)} needs n >= {top}, got n = {n}"
            )
        self.types_in = _types(rep_in, orders_in, n)
        self.types_out = _types(rep_out, orders_out, n)
        self.pairs = [
            _Pair(t_out, t_in, i, j)
            for i, t_out in enumerate(self.types_out)
            for j, t_in in enumerate(self.types_in)
        ]
        self._number_orbits()
        self.in_index = self._sorting_index(self.types_in, rep_in.dim, inverse=False)
        self.out_index = self._sorting_index(self.types_out, rep_out.dim, inverse=True)
        #: every order <= 1 (copies of V and trivial summands): applied by :meth:`_lean`
        self.lean = all(typ.order <= 1 for typ in (*self.types_in, *self.types_out))
        #: per output type, the placement kinds its pairs use, in the order their adjoints
        #: are computed in the backward (see ``_placement_adjoint``)
        self.adjoint_kinds = [
            [
                kind
                for kind in _KINDS
                if any(g.kind == kind for p in self.pairs if p.out_position == i for g in p.groups)
            ]
            for i in range(len(self.types_out))
        ]
        #: (n, V copies in, V copies out, trivial in, trivial out): the lean path's shapes
        v_in = sum(typ.copies for typ in self.types_in if typ.order == 1)
        v_out = sum(typ.copies for typ in self.types_out if typ.order == 1)
        self.lean_dims = (
            n, v_in, v_out, self.shape[1] - v_in * n, self.shape[0] - v_out * n
        )
        #: some pair has one copy on each side (its coefficients are scalar weights)
        self.one_copy = any(pair.one_copy for pair in self.pairs)
        self.pair_start = np.cumsum([0, *(pair.size for pair in self.pairs)])[:-1].tolist()
        self._fold_rows, self._fold_weights = self._fold_entries(self._layout())
        #: m_i·V -> m_o·V: the orbit coefficients are an (m_o, m_i, 2) array of (i = j, i != j)
        #: weights, folded by a view and one subtraction (:func:`_copies_map`), no gather
        self.copies_view = self._is_copies_view()
        #: ((m_i, p), (m_o, q)) when each side is copies of one tensor power (m·V^⊗k), the
        #: reps whose features :meth:`apply_shaped` takes as tensors; else None
        self.single_types = (
            ((self.types_in[0].copies, self.types_in[0].order),
             (self.types_out[0].copies, self.types_out[0].order))
            if len(self.types_in) == len(self.types_out) == 1 else None
        )

    def _is_copies_view(self) -> bool:
        """Whether the fold is A = c[..., 0] - c[..., 1], K = c[..., 1] of c viewed as
        (m_o, m_i, 2) (copies of V on both sides, in order; checked, not assumed)."""
        if not self.lean or len(self.types_in) != 1 or len(self.types_out) != 1:
            return False
        if self.types_in[0].order != 1 or self.types_out[0].order != 1:
            return False
        if self.in_index is not None or self.out_index is not None:
            return False
        half = self.dim // 2
        first = 2 * np.arange(half)
        rows = np.zeros((self.dim, 2), dtype=np.int64)
        rows[:half, 0], rows[:half, 1], rows[half:, 0] = first, first + 1, first + 1
        weights = np.zeros((self.dim, 2))
        weights[:half] = (1.0, -1.0)
        weights[half:, 0] = 1.0
        used = self._fold_weights != 0
        return (
            self._fold_rows.shape[1] == 2
            and np.array_equal(self._fold_weights, weights)
            and np.array_equal(np.where(used, self._fold_rows, 0), np.where(used, rows, 0))
        )

    # -- folding: orbit coefficients -> the coefficients of the "at least" maps -------------
    def _pair_position(self, pair: _Pair, start: int, o: int, i: int, p: int) -> int:
        """Position of (output copy o, input copy i, partition p) in the pairs' order."""
        return start + (o * pair.t_in.copies + i) * len(pair.partitions) + p

    def _layout(self) -> np.ndarray:
        """The folded coefficients, in the order the forward reads them: for each, its
        position in the pairs' order (pair, copy out, copy in, partition).

        Generic path: pair by pair, group by group, an (m_o, q, m_i) block (a channel mix
        over the q reductions and m_i copies, no transpose needed). Lean path (orders <= 1):
        A (m_o, m_i), the copies' identity maps, then K (m_o + t_o, m_i + t_i) = [[B, C],
        [E, F]], the maps of the input sums [Σ_k X_i, x_trivial] to the output broadcasts and
        trivial outputs (see :meth:`_lean`)."""
        out: list[int] = []
        if not self.lean:
            for pair, start in zip(self.pairs, self.pair_start):
                for group in pair.groups:
                    group.d_start = len(out)
                    for o in range(pair.t_out.copies):
                        for p in range(group.start, group.stop):
                            for i in range(pair.t_in.copies):
                                out.append(self._pair_position(pair, start, o, i, p))
                    group.d_stop = len(out)
            return np.array(out, dtype=np.int64)
        found = {
            (pair.t_out.order, pair.t_in.order): (pair, start)
            for pair, start in zip(self.pairs, self.pair_start)
        }
        if (1, 1) in found:  # A: the partition i = j of V -> V
            pair, start = found[1, 1]
            eq = pair.partitions.index((0, 0))
            for o in range(pair.t_out.copies):
                for i in range(pair.t_in.copies):
                    out.append(self._pair_position(pair, start, o, i, eq))
        copies_out = [(t.order, c) for t in self.types_out for c in range(t.copies)]
        copies_in = [(t.order, c) for t in self.types_in for c in range(t.copies)]
        for order_out, o in copies_out:  # K: the one partition of each pair with no i = j
            for order_in, i in copies_in:
                pair, start = found[order_out, order_in]
                p = pair.partitions.index((0, 1)) if order_out == order_in == 1 else 0
                out.append(self._pair_position(pair, start, o, i, p))
        return np.array(out, dtype=np.int64)

    def _fold_entries(self, layout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dim, B) orbit-coefficient rows and Möbius weights, padded with weight 0, such that
        folded coefficient j = Σ_b weights[j, b] · c[rows[j, b]]: the dense-label reordering
        and each pair's Möbius transform in one gather (B: the most partitions of a pair)."""
        where: dict[int, tuple[_Pair, int]] = {}
        for pair, start in zip(self.pairs, self.pair_start):
            for j in range(start, start + pair.size):
                where[j] = (pair, start)
        width = max(len(pair.partitions) for pair in self.pairs)
        rows = np.zeros((self.dim, width), dtype=np.int64)
        weights = np.zeros((self.dim, width))
        for target, j in enumerate(layout.tolist()):
            pair, start = where[j]
            k = len(pair.partitions)
            copy_pair, p = divmod(j - start, k)
            b = 0
            for q in range(k):
                w = pair.mobius[q, p]
                if w:
                    rows[target, b] = self.coefficient_index[start + copy_pair * k + q]
                    weights[target, b] = w
                    b += 1
        return rows, weights

    def bias_placement(self) -> np.ndarray:
        """For the generic path: the (bias dim, B) matrix taking the coefficients of the
        equivariant bias (``fixed_space(rep_out)``) to what the output assembly adds: per
        output type, the constant of each copy (on every entry), then for order 2 the extra
        constant of each copy's diagonal (type by type, copy by copy). The bias then costs
        no pass over the output, and its gradient comes from the totals and traces of the
        output gradient that the backward forms anyway."""
        space = fixed_space(self.rep_out)
        eye = torch.eye(space.dim, dtype=torch.float64)
        basis = np.stack([space.weight(e).reshape(-1).numpy() for e in eye])
        index = np.concatenate([typ.index() for typ in self.types_out])  # type order -> flat
        ordered = basis[:, index]
        columns, start = [], 0
        for typ in self.types_out:
            block = ordered[:, start : start + typ.copies * typ.size].reshape(
                space.dim, typ.copies, typ.size)
            const = block[:, :, 1] if typ.order == 2 else block[:, :, 0]  # entry (0, 1)
            columns.append(const)
            if typ.order == 2:
                columns.append(block[:, :, 0] - const)  # entry (0, 0): the diagonal
            start += typ.copies * typ.size
        return np.concatenate(columns, axis=1)

    def bias_fold(self) -> np.ndarray | None:
        """For the lean path: the (bias dim, m_o + t_o) matrix taking the coefficients of the
        equivariant bias (``fixed_space(rep_out)``, one per summand: a constant on each copy
        of V or trivial entry) to the constant of each output copy in type order; None when
        that is the identity (summands already in type order)."""
        space = fixed_space(self.rep_out)
        eye = torch.eye(space.dim, dtype=torch.float64)
        basis = np.stack([space.weight(e).reshape(-1).numpy() for e in eye])
        n, _, v_out, _, _ = self.lean_dims
        index = np.concatenate([typ.index() for typ in self.types_out])  # type order -> flat
        m = basis[:, np.concatenate([index[: v_out * n : n], index[v_out * n :]])]
        return None if m.shape == (len(m),) * 2 and np.array_equal(m, np.eye(len(m))) else m

    def fold_matrix(self) -> np.ndarray:
        """The (dim, dim) matrix M with folded = c @ M (dense form of :meth:`_fold_entries`)."""
        m = np.zeros((self.dim, self.dim))
        cols = np.broadcast_to(np.arange(self.dim)[:, None], self._fold_rows.shape)
        np.add.at(m, (self._fold_rows, cols), self._fold_weights)
        return m

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if not {"lean_dims", "single_types"} <= state.keys() or not all(
            hasattr(pair, "lone") for pair in state.get("pairs", ())
        ):  # pickled by an older version
            self.__init__(self.rep_in, self.rep_out)  # type: ignore[misc]

    def _number_orbits(self) -> None:
        """Give each (output copy, input copy, partition) its dense orbit label: the rank of
        its first entry in the row-major weight. ``coefficient_index`` lists the labels pair
        by pair (copy out, copy in, partition), which is the order ``apply`` reads them in."""
        d_in, n = self.rep_in.dim, self.n
        firsts, counts = [], []
        for pair in self.pairs:
            p = pair.t_out.order
            rgs = np.array(pair.partitions, dtype=np.int64).reshape(len(pair.partitions), -1)
            row = sum(rgs[:, t] * n ** (p - 1 - t) for t in range(p)) if p else 0
            q = pair.t_in.order
            col = sum(rgs[:, p + t] * n ** (q - 1 - t) for t in range(q)) if q else 0
            rows = pair.t_out.offsets[:, None, None] + np.broadcast_to(row, (len(rgs),))
            cols = pair.t_in.offsets[None, :, None] + np.broadcast_to(col, (len(rgs),))
            firsts.append((rows * d_in + cols).reshape(-1))
            blocks = np.array([max(r, default=-1) + 1 for r in pair.partitions])
            sizes = np.array([_falling(n, int(b)) for b in blocks], dtype=np.int64)
            shape = (pair.t_out.copies, pair.t_in.copies, len(sizes))
            counts.append(np.broadcast_to(sizes, shape).reshape(-1))
        first = np.concatenate(firsts)
        self.dim = first.shape[0]
        label = np.empty(self.dim, dtype=np.int64)
        order = np.argsort(first, kind="stable")
        label[order] = np.arange(self.dim)
        self.coefficient_index = label
        self.counts = np.empty(self.dim, dtype=np.int64)
        self.counts[label] = np.concatenate(counts)

    @staticmethod
    def _sorting_index(types: list[_Type], dim: int, inverse: bool) -> np.ndarray | None:
        """The gather that puts a flat vector in type order (or, ``inverse``, back); None when
        the types already lie one after another."""
        index = np.concatenate([t.index() for t in types])
        if np.array_equal(index, np.arange(dim)):
            return None
        if not inverse:
            return index
        back = np.empty_like(index)
        back[index] = np.arange(dim)
        return back

    # -- the tensors apply() reads, for modules to hold as buffers --------------------------
    def index_tensors(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor | None]:
        """CPU tensors that :meth:`apply` reads: the fold of the orbit coefficients (``fold``,
        in ``dtype``, default torch's; its entries are small integers, exact in any float
        type): the (dim, dim) matrix M of folded = c @ M up to ``FOLD_DENSE_UP_TO``
        coefficients, else the (dim, B) weights of the gather ``fold_index`` (None for the
        matrix); ``bias_fold`` (lean path: :meth:`bias_fold`, else :meth:`bias_placement`);
        the input / output sorting gathers with their inverses (None when not needed). A
        module holds them as non-persistent buffers so that they follow ``.to()`` and are
        ordinary inputs of compiled graphs."""

        def tensor(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a))

        def back(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.argsort(a)

        dense = self.dim <= FOLD_DENSE_UP_TO
        fold = self.fold_matrix() if dense else self._fold_weights
        bias_fold = self.bias_fold() if self.lean else self.bias_placement()
        dtype = dtype or torch.get_default_dtype()
        return {
            "fold": tensor(fold).to(dtype),  # type: ignore[union-attr]
            "fold_index": None if dense else tensor(self._fold_rows),
            "bias_fold": None if bias_fold is None else tensor(bias_fold).to(dtype),
            "in_index": tensor(self.in_index),
            "in_back": tensor(back(self.in_index)),
            "out_index": tensor(self.out_index),
            "out_back": tensor(back(self.out_index)),
        }

    def _cached_tensors(
        self, device: torch.device, dtype: torch.dtype
    ) -> dict[str, torch.Tensor | None]:
        """:meth:`index_tensors` on ``device`` (the fold in ``dtype``), cached."""
        key = ("partition", device, dtype)
        if key not in self._device_cache:
            self._device_cache[key] = {
                name: None if t is None else t.to(device)
                for name, t in self.index_tensors(dtype).items()
            }
        return self._device_cache[key]  # type: ignore[return-value]

    # -- applying ----------------------------------------------------------------------------
    def apply(
        self,
        coefficients: torch.Tensor,
        x: torch.Tensor,
        tensors: dict[str, torch.Tensor | None] | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """W x (+ b) for features ``x`` (..., d_in), W = Σ c_P B_P, without forming W.

        ``bias``: coefficients of an equivariant bias b (``fixed_space(rep_out)``); the lean
        path adds them to its per-copy constants (no pass over the output), others add b.

        ``tensors``: :meth:`index_tensors` on x's device, when the caller holds them. The
        orbit coefficients are first folded into the coefficients of the "at least" maps (one
        product or gather, :meth:`_fold`). Orders <= 1 then take the lean path (:meth:`_lean`,
        a few plain ops). Otherwise, when a gradient is wanted, eager code runs one autograd
        node whose backward is the adjoint map (the same partition structure, reversed) and
        the folded coefficients' gradient, both from the input kept for backward: a fraction
        of the bookkeeping of recording every small op. Compiled code and ``torch.func``
        transforms record the ops themselves.
        """
        if coefficients.shape != (self.dim,):
            raise ValueError(f"expected {self.dim} coefficients, got {tuple(coefficients.shape)}")
        if x.shape[-1:] != (self.shape[1],):
            raise ValueError(
                f"expected features of shape (..., {self.shape[1]}), got {tuple(x.shape)}"
            )
        if self.copies_view:  # bias: one constant per output copy (fixed_space order)
            return _copies_map(coefficients, x, self.lean_dims, bias)
        t = tensors if tensors is not None else self._cached_tensors(x.device, x.dtype)
        d = self._fold(coefficients, t)
        if self.lean:
            return self._lean(d, x, t, bias)
        return self._generic_node(d, x, t, bias, shaped=False)

    def _generic_node(
        self, d: torch.Tensor, x: torch.Tensor, t: dict, bias: torch.Tensor | None, shaped: bool
    ) -> torch.Tensor:
        """The generic map as one autograd node when eager code wants a gradient, else by
        plain ops (compiled code, ``torch.func`` transforms, no gradient)."""
        if (
            torch.compiler.is_compiling()
            or not torch.is_grad_enabled()
            or not (d.requires_grad or x.requires_grad
                    or (bias is not None and bias.requires_grad))
            or torch._C._are_functorch_transforms_active()
        ):
            return self._generic(d, x, t, shaped, bias)
        return _PartitionApply.apply(d, x, bias, self, t, shaped)

    def apply_shaped(
        self,
        coefficients: torch.Tensor,
        x: torch.Tensor,
        tensors: dict[str, torch.Tensor | None] | None = None,
        bias: torch.Tensor | None = None,
        channels_last: bool = False,
    ) -> torch.Tensor:
        """W x (+ b) between copies of one tensor power on each side (m_i·V^⊗p -> m_o·V^⊗q),
        on features shaped as tensors: ``x`` (rows, m_i, n, ..., n) (p axes of size n; any
        strides), or with ``channels_last`` (rows, n, ..., n, m_i); the output has the same
        form, (rows, m_o, n, ..., n) or (rows, n, ..., n, m_o).

        Channels last is read where it lies: copies of V mix their channels by one batched
        product on it directly, and other maps run on its channels-first view (a movedim,
        no copy: sums and diagonals read strided input, and a (copies, n·n) view of it is
        what the channel mix multiplies), handing back a view of a channels-first result.
        ``bias``: coefficients of ``fixed_space(rep_out)``, as in :meth:`apply`."""
        if not self.single_types:
            raise ValueError(
                f"shaped features need copies of one tensor power on each side; got "
                f"{self.rep_in!r} -> {self.rep_out!r}"
            )
        if coefficients.shape != (self.dim,):
            raise ValueError(f"expected {self.dim} coefficients, got {tuple(coefficients.shape)}")
        ((m_i, p), (m_o, q)), n = self.single_types, self.n
        expected = (*[n] * p, m_i) if channels_last else (m_i, *[n] * p)
        if x.dim() != 1 + len(expected) or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"expected features of shape (rows, {', '.join(map(str, expected))}), got "
                f"{tuple(x.shape)}"
            )
        if self.copies_view:
            return _copies_map(coefficients, x, self.lean_dims, bias,
                               "last" if channels_last else "first")
        if channels_last:
            x = x.movedim(-1, 1)
        t = tensors if tensors is not None else self._cached_tensors(x.device, x.dtype)
        d = self._fold(coefficients, t)
        if self.lean and p == q == 1:  # copies of V not in the expected fold: via flat
            rows = x.shape[0]
            y = self._lean(d, x.reshape(rows, -1), t, bias).view(rows, m_o, n)
        elif self.lean:
            y = self._lean_single(d, x, t, bias)
        else:
            y = self._generic_node(d, x, t, bias, shaped=True)
        return y.movedim(1, -1) if channels_last else y

    def _lean_single(
        self, d: torch.Tensor, x: torch.Tensor, t: dict, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """The lean map between copies of one order <= 1 on each side that are not both V
        (those take :func:`_copies_map`): x (rows, m_i) or (rows, m_i, n) -> (rows, m_o) or
        (rows, m_o, n), through the copies' sums (one product with K, the whole map)."""
        (_, p), (m_o, q) = self.single_types
        k = d.view(m_o, -1)  # no identity part: A is empty
        if bias is not None and t["bias_fold"] is not None:
            fold = t["bias_fold"]
            bias = bias @ (fold if fold.dtype == bias.dtype else fold.to(bias.dtype))
        z = x.sum(-1) if p else x
        u = z @ k.T if bias is None else torch.addmm(bias, z, k.T)
        return u.unsqueeze(-1).expand(*u.shape, self.n).contiguous() if q else u

    def _fold(self, coefficients: torch.Tensor, t: dict) -> torch.Tensor:
        """The coefficients of the "at least" maps in the forward's layout (see
        :meth:`_layout`): one product with the fold matrix, or one gather and weighted sum."""
        fold = t["fold"]
        if fold.dtype != coefficients.dtype:
            fold = fold.to(coefficients.dtype)
        if t["fold_index"] is None:
            return coefficients @ fold
        return (coefficients[t["fold_index"]] * fold).sum(-1)

    def _forward(self, coefficients: torch.Tensor, x: torch.Tensor, t: dict) -> torch.Tensor:
        """W x with every op recorded by autograd (no custom backward)."""
        return self._forward_folded(self._fold(coefficients, t), x, t)

    def _forward_folded(self, d: torch.Tensor, x: torch.Tensor, t: dict) -> torch.Tensor:
        """W x from the folded coefficients ``d``, by the lean or the generic path."""
        return self._lean(d, x, t) if self.lean else self._generic(d, x, t)

    def _lean(
        self, d: torch.Tensor, x: torch.Tensor, t: dict, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """W x when every order is <= 1 (see :func:`_lean_map`), on the input and output in
        type order (V copies, then trivial ones), by plain autograd ops: for so few ops one
        custom autograd node (backward: the transposed map and two small products) was
        measured no faster for one copy and 10-20% slower for 8-16 copies."""
        flat = x if x.dim() == 2 else x.reshape(-1, self.shape[1])  # a view is a node too
        if t["in_index"] is not None:
            flat = flat.index_select(-1, t["in_index"])
        if bias is not None and t["bias_fold"] is not None:
            fold = t["bias_fold"]
            bias = bias @ (fold if fold.dtype == bias.dtype else fold.to(bias.dtype))
        y = _lean_map(d, flat, self.lean_dims, bias)
        if t["out_index"] is not None:
            y = y.index_select(-1, t["out_index"])
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], self.shape[0])

    def _inputs(
        self, x: torch.Tensor, t: dict, shaped: bool = False
    ) -> tuple[list[torch.Tensor], int]:
        """The input split by type: (rows, copies, n, ...) each, and the number of rows
        (``shaped``: x is already the one type's (rows, copies, n, ...), any strides)."""
        if shaped:
            return [x], x.shape[0]
        flat = x.reshape(-1, self.shape[1])
        if t["in_index"] is not None:
            flat = flat.index_select(-1, t["in_index"])
        rows, n = flat.shape[0], self.n
        inputs, start = [], 0
        for typ in self.types_in:
            size = typ.copies * typ.size
            inputs.append(flat[:, start : start + size].reshape(rows, typ.copies, *[n] * typ.order))
            start += size
        return inputs, rows

    def _reductions(self, pair: _Pair, x_in: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per group of the pair, the reduced inputs of its partitions."""
        reduced: dict[str, torch.Tensor] = {}
        for eq in pair.equations:  # a total reuses a partial sum: O(n), not O(n²)
            reduced[eq] = _reduce(eq, x_in, reduced)
        return [[reduced[eq] for eq in group.equations] for group in pair.groups]

    def _generic(
        self,
        d: torch.Tensor,
        x: torch.Tensor,
        t: dict,
        shaped: bool = False,
        bias: torch.Tensor | None = None,
        keep: list | None = None,
    ) -> torch.Tensor:
        """W x by partitions: per pair and group, the reduced inputs mixed over channels with
        the group's (m_o, q·m_i) block of ``d``, summed per placement kind and assembled.
        ``shaped``: x and W x are (rows, copies, n, ...) of one type each (see
        :meth:`apply_shaped`), not flat features. ``bias``: coefficients of
        ``fixed_space(rep_out)``, added as per-copy constants (see :meth:`bias_placement`).
        ``keep``: a list that receives each pair's reductions (for the backward to reuse)."""
        lead = x.shape[:-1]
        inputs, rows = self._inputs(x, t, shaped)
        placed: list[dict[str, torch.Tensor]] = [{} for _ in self.types_out]
        weighted: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self.types_out]
        for pair in self.pairs:
            into = placed[pair.out_position]
            reductions = self._reductions(pair, inputs[pair.in_position])
            if keep is not None:
                keep.append(reductions)
            if pair.one_copy:  # scalar weights
                _one_copy_forward(d, pair, reductions, into, weighted[pair.out_position])
                continue
            for group, parts in zip(pair.groups, reductions):
                z = self._mix(_block(d, pair, group), parts, rows)
                into[group.kind] = into[group.kind] + z if group.kind in into else z
        if bias is not None:
            self._place_bias(bias, t["bias_fold"], placed, rows)
        if shaped:
            return self._assemble(self.types_out[0], placed[0], rows, x, weighted[0], False)
        y = self._assemble_flat(self.types_out, placed, weighted, rows, x, t["out_index"])
        return y.reshape(*lead, self.shape[0])

    def _backward(
        self,
        d: torch.Tensor,
        x: torch.Tensor,
        grad: torch.Tensor,
        t: dict,
        need_d: bool,
        need_x: bool,
        shaped: bool = False,
        need_bias: bool = False,
        kept: list | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Gradients of <grad, W x> for the folded coefficients ``d`` and for x: per group,
        the output placement's adjoint of ``grad`` meets the reduced inputs (``d``, in its own
        layout: one (m_o, q·m_i) block per group), and is mixed back and placed into the input
        by the reduction's adjoint (x). ``shaped``: as in :meth:`_generic`; ``kept``: the
        forward's reductions of x (see ``keep`` there), else they are computed again."""
        inputs, rows = self._inputs(x, t, shaped) if need_d and kept is None else ([], 0)
        g = grad if shaped else grad.reshape(-1, self.shape[0])
        rows = g.shape[0]
        if t["out_back"] is not None and not shaped:
            g = g.index_select(-1, t["out_back"])
        grads_out, start = [grad] if shaped else [], 0
        for typ in self.types_out if not shaped else ():
            size = typ.copies * typ.size
            grads_out.append(
                g[:, start : start + size].reshape(rows, typ.copies, *[self.n] * typ.order)
            )
            start += size
        adjoints: list[dict[str, torch.Tensor]] = [{} for _ in self.types_out]
        for found, kinds, g_out in zip(adjoints, self.adjoint_kinds, grads_out):
            for kind in kinds:  # totals and traces after the sums and diagonals they reuse
                found[kind] = _placement_adjoint(kind, g_out, found)
        into_input: list[dict[str, torch.Tensor]] = [{} for _ in self.types_in]
        weighted: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self.types_in]
        grad_d: list[torch.Tensor] = []  # 0-dim (one copy) or flat blocks, in d's layout
        copies: dict[int, torch.Tensor] = {}

        def transposed(g_kind: torch.Tensor) -> torch.Tensor:
            """gᵀ made contiguous once: an op mixing a transposed and a contiguous operand
            runs ~6x slower than one on two contiguous ones (measured, 64 x 64 matrices)."""
            if id(g_kind) not in copies:
                copies[id(g_kind)] = g_kind.mT.contiguous()
            return copies[id(g_kind)]

        for position, pair in enumerate(self.pairs):
            found = adjoints[pair.out_position]
            if not need_d:
                reductions = [None] * len(pair.groups)
            elif kept is not None:
                reductions = kept[position]
            else:
                reductions = self._reductions(pair, inputs[pair.in_position])
            for start, stop in pair.bundles if pair.one_copy else ():
                if stop - start == 1:
                    continue  # below, group by group
                groups = pair.groups[start:stop]
                acc = into_input[pair.in_position]
                # the output gradients of the bundle's placements as one (b, entries) matrix
                g_stack = torch.stack([found[group.kind] for group in groups])
                b, q = len(groups), len(groups[0].equations)
                shape = g_stack.shape[1:]
                g_stack = g_stack.view(b, -1)
                if need_d:  # (b, q): Σ over rows and positions of g_k · part_j
                    x_stack = torch.stack(reductions[start]).view(q, -1)
                    grad_d.append((g_stack @ x_stack.T).reshape(-1))
                if need_x:  # per reduction j: Σ_k w_kj g_k, placed by its adjoint
                    weights = d[groups[0].d_start : groups[-1].d_stop].view(b, q)
                    back = (weights.T @ g_stack).view(q, *shape)
                    for j, eq in enumerate(groups[0].equations):
                        kind, flip = _reduction_adjoint(eq)
                        piece = back[j].mT if flip else back[j]
                        acc[kind] = acc[kind] + piece if kind in acc else piece
            for index, (group, parts) in enumerate(zip(pair.groups, reductions)):
                if pair.one_copy:  # scalar weights: dot products and weighted sums
                    if index not in pair.lone:
                        continue  # done with its bundle above
                    g_kind, acc = found[group.kind], into_input[pair.in_position]
                    if need_d:
                        for part in parts:
                            if part.dim() == 4 and not part.is_contiguous() and _flipped(part):
                                # <g, xᵀ> = <gᵀ, x>: both contiguous, with the gᵀ used below
                                grad_d.append(_dot(transposed(g_kind), part.mT))
                            else:
                                grad_d.append(_dot(g_kind, part))
                    if need_x:
                        weights = d[group.d_start : group.d_stop].unbind()
                        for eq, w in zip(group.equations, weights):
                            kind, flip = _reduction_adjoint(eq)
                            piece = transposed(g_kind) if flip else g_kind
                            if kind == "full":
                                weighted[pair.in_position].append((piece, w))
                            else:
                                _accumulate(acc, kind, piece, w)
                    continue
                gz = found[group.kind].reshape(rows, pair.t_out.copies, -1)
                m_i, q = pair.t_in.copies, group.stop - group.start
                if need_d:
                    grad_d.append(_channel_outer(gz, _stacked(parts, rows)).reshape(-1))
                if need_x:
                    mix = _block(d, pair, group)
                    back = _channel_mix(mix.T, gz).reshape(rows, q, m_i, *_tail(group, self.n))
                    for j, eq in enumerate(group.equations):
                        kind, flip = _reduction_adjoint(eq)
                        piece = back[:, j].transpose(-2, -1) if flip else back[:, j]
                        acc = into_input[pair.in_position]
                        acc[kind] = acc[kind] + piece if kind in acc else piece
        grad_x = None
        if need_x:
            if shaped:
                grad_x = self._assemble(
                    self.types_in[0], into_input[0], rows, x, weighted[0], False)
            else:
                gx = self._assemble_flat(self.types_in, into_input, weighted, rows, x,
                                         t["in_back"])
                grad_x = gx.reshape(x.shape)
        grad = None
        if need_d:
            if all(piece.dim() == 0 for piece in grad_d):
                grad = torch.stack(grad_d)
            else:
                grad = torch.cat([piece.reshape(-1) for piece in grad_d])
        grad_bias = None
        if need_bias:  # per copy: the total of the output gradient, and its trace (order 2)
            sums = []
            for typ, found, g_out in zip(self.types_out, adjoints, grads_out):
                for kind in ("scalar", "diag_scalar") if typ.order == 2 else ("scalar",):
                    if kind not in found:
                        found[kind] = _placement_adjoint(kind, g_out, found)
                    sums.append(found[kind].sum(0))
            placement = t["bias_fold"]
            grad_bias = torch.cat(sums) @ placement.to(sums[0].dtype).T
        return grad, grad_x, grad_bias

    def _place_bias(
        self,
        bias: torch.Tensor,
        placement: torch.Tensor,
        placed: list[dict[str, torch.Tensor]],
        rows: int,
    ) -> None:
        """Add the bias to the placed pieces of each output type: a constant per copy
        (``scalar``) and, for order 2, an extra one on its diagonal (``diag_scalar``)."""
        values = bias @ (placement if placement.dtype == bias.dtype else placement.to(bias.dtype))
        start = 0
        for typ, into in zip(self.types_out, placed):
            for kind in ("scalar", "diag_scalar") if typ.order == 2 else ("scalar",):
                value = values[start : start + typ.copies]
                start += typ.copies
                if kind in into:
                    into[kind] = into[kind] + value
                else:
                    into[kind] = value.expand(rows, typ.copies).contiguous()

    def _mix(self, mix: torch.Tensor, parts: list[torch.Tensor], rows: int) -> torch.Tensor:
        """Σ over the group's reductions and input copies of mix (m_o, q·m_i) times the
        reduced inputs ``parts`` (q of shape (rows, m_i, n, ...)): (rows, m_o, n, ...), one
        matmul for the whole group (a scale for one channel each side)."""
        tail = parts[0].shape[2:]
        if mix.shape == (1, 1):
            return parts[0] * mix.reshape(())
        return _channel_mix(mix, _stacked(parts, rows)).reshape(rows, mix.shape[0], *tail)

    def _assemble_flat(self, types: list, placed: list, weighted: list, rows: int,
                       x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """Flat features (rows, dim) of one side: each type's assembled pieces side by side,
        then put back in the rep's order by ``index`` (None when already in it)."""
        outs = [
            self._assemble(typ, kinds, rows, x, more).reshape(rows, -1)
            for typ, kinds, more in zip(types, placed, weighted)
        ]
        y = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        return y if index is None else y.index_select(-1, index)

    def _assemble(
        self,
        typ: _Type,
        kinds: dict[str, torch.Tensor],
        rows: int,
        like: torch.Tensor,
        weighted: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        expanded: bool = True,
    ) -> torch.Tensor:
        """The output of one type (rows, copies, n, ...) from its placed pieces:
        ``full`` has every output axis, ``rows``/``cols`` vary along the first / second axis
        only, ``scalar`` along none, ``diag``/``diag_scalar`` sit on the diagonal;
        ``weighted``: more full pieces, as (full-size part, scalar weight) pairs.

        Few passes over the n^order entries: the constant is folded into a line term, the
        first two terms (or the first weighted part and a term, in one addcmul) make a fresh
        tensor that the others (and the diagonal) are added to in place, and the diagonal is
        never embedded into a matrix of zeros. ``expanded``: a single broadcast term may come
        back as an expanded view (the caller flattens it, which copies); else it is copied."""
        n, order = self.n, typ.order
        shape = (rows, typ.copies, *[n] * order)
        full, scalar, diag = kinds.get("full"), kinds.get("scalar"), None
        terms = [full] if full is not None else []
        if order == 2:
            line_r, line_c = kinds.get("rows"), kinds.get("cols")
            if scalar is not None and (line_r is not None or line_c is not None):
                if line_r is not None:
                    line_r = line_r + scalar[..., None]
                else:
                    line_c = line_c + scalar[..., None]  # type: ignore[operator]
                scalar = None
            # the column line first: a first term broadcast along the last axis (the row
            # line) makes the fused op that starts the output ~5x slower (measured, 64 x 64)
            terms += [line_c[..., None, :]] if line_c is not None else []
            terms += [line_r[..., :, None]] if line_r is not None else []
            diag = kinds.get("diag")
            if "diag_scalar" in kinds:
                on_diag = kinds["diag_scalar"][..., None]
                diag = on_diag.expand(*on_diag.shape[:-1], n) if diag is None else diag + on_diag
        if scalar is not None:
            terms.append(scalar.reshape(rows, typ.copies, *[1] * order))
        if weighted:  # full-size parts times scalars: the first makes a fresh tensor
            (part, w), rest = weighted[0], weighted[1:]
            # fused with the first term unless that is a row line alone (see above)
            fused = bool(terms) and (order < 2 or terms[0].shape[-1] == n)
            y = torch.addcmul(terms[0], part, w) if fused else part * w
            in_place = not torch._C._are_functorch_transforms_active()  # vmap: no rule
            for part, w in rest:
                y = y.addcmul_(part, w) if in_place else torch.addcmul(y, part, w)
            for term in terms[1:] if fused else terms:
                y = y.add_(term)
        elif not terms:
            return torch.diag_embed(diag) if diag is not None else like.new_zeros(shape)
        elif len(terms) == 1:
            y = terms[0].expand(shape)
            if diag is not None or not expanded:  # fresh, to add in place or to hand out
                y = y.clone(memory_format=torch.contiguous_format)
        else:  # two terms span every axis (full, or a row and a column term): fresh
            y = terms[0] + terms[1]
            for term in terms[2:]:
                y = y.add_(term)
        if diag is not None:
            y.diagonal(dim1=-2, dim2=-1).add_(diag)
        return y

    # -- the HomSpace interface --------------------------------------------------------------
    def weight(self, coefficients: torch.Tensor) -> torch.Tensor:
        """The dense (d_out, d_in) weight, built by applying the map to the identity (on
        demand only: the structured path exists to avoid it)."""
        eye = torch.eye(self.shape[1], dtype=coefficients.dtype, device=coefficients.device)
        return self.apply(coefficients, eye).T

    def _blocks(self):
        """Per pair: its row range in type order and its column range in type order."""
        rows = np.cumsum([0] + [t.copies * t.size for t in self.types_out]).tolist()
        cols = np.cumsum([0] + [t.copies * t.size for t in self.types_in]).tolist()
        for pair in self.pairs:
            i, j = pair.out_position, pair.in_position
            yield pair, slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1])

    def _exact_coefficients(self, at_least: list[torch.Tensor]) -> torch.Tensor:
        """Orbit coefficients from the "at least" sums of each pair (..., m_o, m_i, k): Möbius
        inversion to the orbit sums, back to the dense label order, divided by orbit sizes."""
        sums = []
        for pair, block in zip(self.pairs, at_least):
            inv = torch.from_numpy(pair.mobius).to(dtype=block.dtype, device=block.device)
            sums.append((block @ inv.T).reshape(*block.shape[:-3], -1))
        ordered = torch.cat(sums, dim=-1)
        index = torch.from_numpy(self.coefficient_index).to(ordered.device)
        exact = torch.empty_like(ordered).index_copy_(-1, index, ordered)
        return exact / torch.from_numpy(self.counts).to(device=exact.device, dtype=exact.dtype)

    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        """Orbit means of ``w`` (..., d_out, d_in): the projection onto the space, computed
        from the sums of w over "at least" patterns (diagonals and sums, no label matrix)."""
        self._check_shape(w)
        lead = w.shape[:-2]
        if self.out_index is not None:
            w = w.index_select(-2, torch.from_numpy(np.argsort(self.out_index)).to(w.device))
        if self.in_index is not None:
            w = w.index_select(-1, torch.from_numpy(self.in_index).to(w.device))
        at_least = []
        for pair, rows, cols in self._blocks():
            p, q = pair.t_out.order, pair.t_in.order
            block = w[..., rows, cols].reshape(
                *lead, pair.t_out.copies, *[self.n] * p, pair.t_in.copies, *[self.n] * q
            )
            at_least.append(
                torch.stack(
                    [
                        torch.einsum(f"...Y{_letters(rgs[:p])}X{_letters(rgs[p:])}->...YX", block)
                        for rgs in pair.partitions
                    ],
                    dim=-1,
                )
            )
        return self._exact_coefficients(at_least)

    def coefficients_low_rank(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """:meth:`coefficients` of W = U Vᵀ (u: (d_out, r), v: (d_in, r)) without forming W:
        each "at least" sum is a contraction of U with V over the pattern's shared indices."""
        if (
            u.dim() != 2
            or v.dim() != 2
            or u.shape[0] != self.shape[0]
            or v.shape[0] != self.shape[1]
            or u.shape[1] != v.shape[1]
        ):
            raise ValueError(
                f"expected factors of shapes ({self.shape[0]}, r) and "
                f"({self.shape[1]}, r), got {tuple(u.shape)} and {tuple(v.shape)}"
            )
        if self.out_index is not None:
            u = u.index_select(0, torch.from_numpy(np.argsort(self.out_index)).to(u.device))
        if self.in_index is not None:
            v = v.index_select(0, torch.from_numpy(self.in_index).to(v.device))
        at_least = []
        for pair, rows, cols in self._blocks():
            p, q = pair.t_out.order, pair.t_in.order
            uu = u[rows].reshape(pair.t_out.copies, *[self.n] * p, -1)
            vv = v[cols].reshape(pair.t_in.copies, *[self.n] * q, -1)
            at_least.append(
                torch.stack(
                    [
                        torch.einsum(f"Y{_letters(rgs[:p])}R,X{_letters(rgs[p:])}R->YX", uu, vv)
                        for rgs in pair.partitions
                    ],
                    dim=-1,
                )
            )
        return self._exact_coefficients(at_least)

    def basis_sq_norm(self) -> float:
        return float(self.shape[0] * self.shape[1])

    def cost(self) -> int:
        """Multiply-adds per input row of :meth:`apply` (reductions, channel mixes and
        placements), to compare with the d_out · d_in of a dense matmul."""
        total = 0
        for pair in self.pairs:
            m_o, m_i = pair.t_out.copies, pair.t_in.copies
            for group in pair.groups:
                total += (group.stop - group.start) * m_i * (m_o + 1) * self.n**group.shared
            reductions = {eq for group in pair.groups for eq in group.equations}
            total += m_i * pair.t_in.size * len(reductions)
            total += m_o * pair.t_out.size * len(pair.groups)
        return total


def _block(d: torch.Tensor, pair: _Pair, group: _Group) -> torch.Tensor:
    """The group's (m_o, q · m_i) block of the folded coefficients (a view)."""
    return d[group.d_start : group.d_stop].view(pair.t_out.copies, -1)


def _stacked(parts: list[torch.Tensor], rows: int) -> torch.Tensor:
    """The q reduced inputs (rows, m_i, n, ...) as channels (rows, q · m_i, N)."""
    if len(parts) == 1:
        return parts[0].reshape(rows, parts[0].shape[1], -1)
    return torch.stack(parts, dim=1).reshape(rows, len(parts) * parts[0].shape[1], -1)


def _lean_map(
    d: torch.Tensor,
    flat: torch.Tensor,
    dims: tuple[int, int, int, int, int],
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The lean map on ``flat`` (rows, d_in) in type order: X (rows, m_i, n) the V copies,
    x_T (rows, t_i) the trivial ones, s = Σ_k X[:, :, k] their sums,

        y_V = A·X + broadcast(B s + C x_T),   y_T = E s + F x_T,

    with A (m_o, m_i) and K = [[B, C], [E, F]] read from ``d`` as views; y (rows, d_out) in
    type order. ``bias`` (m_o + t_o), the constant of each output copy, is added to the
    broadcast and trivial terms (rows × copies entries, not the whole output)."""
    n, v_in, v_out, t_in, t_out = dims
    if v_in == v_out == 1 and not t_in and not t_out:  # V -> V: y = a x + b Σ x, four ops
        a, b = d.unbind()
        s = flat.sum(-1, keepdim=True)
        return torch.addcmul(s * b if bias is None else torch.addcmul(bias, s, b), flat, a)
    rows, a_size = flat.shape[0], v_out * v_in
    a_flat, k_flat = d.split([a_size, d.shape[0] - a_size])
    k = k_flat.view(v_out + t_out, v_in + t_in)
    z = _lean_sums(flat, n, v_in, t_in)
    if k.shape == (1, 1):  # (rows, v_out + t_out)
        u = z * k if bias is None else torch.addcmul(bias, z, k)
    else:
        u = z @ k.T if bias is None else torch.addmm(bias, z, k.T)
    if not v_out:
        return u
    broadcast = (u[:, :v_out] if t_out else u).unsqueeze(-1)
    if v_in:
        xv = (flat[:, : v_in * n] if t_in else flat).view(rows, v_in, n)
        a = a_flat.view(v_out, v_in)
        if a_size == 1:
            yv = torch.addcmul(broadcast, xv, a)
        else:
            # one op for the mix and the broadcast: measured 20-35% faster forward + backward
            # than einsum or matmul plus an add (8-16 copies)
            yv = torch.baddbmm(broadcast, a.expand(rows, v_out, v_in), xv)
    else:
        yv = broadcast.expand(rows, v_out, n)
    y = yv.reshape(rows, v_out * n)
    if t_out:
        y = torch.cat([y, u[:, v_out:]], dim=-1)
    return y


def _copies_map(
    coefficients: torch.Tensor,
    x: torch.Tensor,
    dims: tuple[int, int, int, int, int],
    bias: torch.Tensor | None = None,
    form: str = "flat",
) -> torch.Tensor:
    """m_i·V -> m_o·V straight from the orbit coefficients c, an (m_o, m_i, 2) array of the
    weights of i = j and i != j: with A = c[..., 0] - c[..., 1] and K = c[..., 1],

        y_o = Σ_i A[o, i] X_i + (Σ_i K[o, i] Σ_k X_i[k] + bias_o) · 1.

    ``x``: (..., m_i·n) (``form`` "flat"), or (rows, m_i, n) ("first") or (rows, n, m_i)
    ("last"); the output has the same form. The fewest ops found: no fold product or gather (for one
    copy, two scalars from an unbind), the sums and the constants in one product, the mix and
    the broadcast in one."""
    n, m_i, m_o, _, _ = dims
    if m_i == m_o == 1 and form != "last":  # y = a x + b Σ x (+ bias), four ops
        same, other = coefficients.unbind()
        s = x.sum(-1, keepdim=True)
        u = s * other if bias is None else torch.addcmul(bias, s, other)
        return torch.addcmul(u, x, same - other)
    same, other = coefficients.view(m_o, m_i, 2).unbind(-1)
    a = same - other
    if form == "last":  # (rows, n, m_i): the mix reads the channels where they lie
        s = x.sum(-2)
        u = s @ other.T if bias is None else torch.addmm(bias, s, other.T)
        return torch.baddbmm(u.unsqueeze(-2), x, a.T.expand(x.shape[0], m_i, m_o))
    shaped = form == "first"
    lead = x.shape[:-1]
    xv = x if shaped else x.reshape(-1, m_i, n)
    rows = xv.shape[0]
    s = xv.sum(-1)
    u = s @ other.T if bias is None else torch.addmm(bias, s, other.T)
    y = torch.baddbmm(u.unsqueeze(-1), a.expand(rows, m_o, m_i), xv)
    return y if shaped else y.reshape(*lead, m_o * n)


def _lean_sums(flat: torch.Tensor, n: int, v: int, t: int) -> torch.Tensor:
    """[Σ_k X[:, :, k], x_T] (rows, v + t) of ``flat`` (rows, v·n + t) in type order."""
    if not v:
        return flat
    z = (flat[:, : v * n] if t else flat).view(flat.shape[0], v, n).sum(-1)
    return torch.cat([z, flat[:, v * n :]], dim=-1) if t else z


def _one_copy_forward(
    d: torch.Tensor,
    pair: _Pair,
    reductions: list[list[torch.Tensor]],
    into: dict[str, torch.Tensor],
    weighted: list[tuple[torch.Tensor, torch.Tensor]],
) -> None:
    """Place the reduced inputs of a pair with one copy on each side (scalar weights): the
    groups of a bundle (same reductions) by one product of their stacked reductions with the
    bundle's (b, q) weights; a lone group by a weighted sum ("full" ones go to ``weighted``,
    added in ``_assemble`` with no temporary)."""
    for start, stop in pair.bundles:
        groups = pair.groups[start:stop]
        if len(groups) > 1:
            parts = reductions[start]
            weights = d[groups[0].d_start : groups[-1].d_stop].view(len(groups), len(parts))
            # (b, entries): each placement's piece contiguous, for the full-size adds after
            mixed = (weights @ torch.stack(parts).view(len(parts), -1)).view(
                len(groups), *parts[0].shape)
            for k, group in enumerate(groups):
                piece = mixed[k]
                into[group.kind] = into[group.kind] + piece if group.kind in into else piece
            continue
        group = groups[0]
        for part, w in zip(reductions[start], d[group.d_start : group.d_stop].unbind()):
            if group.kind == "full":
                weighted.append((part, w))
            else:
                _accumulate(into, group.kind, part, w)


def _accumulate(
    into: dict[str, torch.Tensor], kind: str, part: torch.Tensor, weight: torch.Tensor
) -> None:
    """into[kind] += weight · part (one fused op once there is a term)."""
    if kind in into:
        into[kind] = torch.addcmul(into[kind], part, weight)
    else:
        into[kind] = part * weight


def _flipped(t: torch.Tensor) -> bool:
    """Whether ``t`` is the transpose (last two axes) of a contiguous tensor."""
    return t.mT.is_contiguous()


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ a · b over every entry (same shapes): one pass with no temporary when both are
    contiguous."""
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.view(-1), b.view(-1))
    return (a * b).sum()


def _letters(rgs: tuple[int, ...]) -> str:
    return "".join(_LETTERS[b] for b in rgs)


def _channel_mix(mix: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(rows, a, N) = mix (a, K) applied to the channels of t (rows, K, N), as one batched
    product with the mix expanded over rows (no copy of t: a plain product on channels-last
    copies of t, used before, was measured ~40% slower forward + backward for 4 copies of
    V ⊗ V, n = 32)."""
    rows = t.shape[0]
    if mix.shape == (1, 1):  # one channel each side: a scale, not a product
        return t * mix.reshape(())
    return torch.bmm(mix.expand(rows, *mix.shape), t)


def _channel_outer(g: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(a, K) = Σ over rows and positions of g (rows, a, N) ⊗ t (rows, K, N): one batched
    product (BLAS reads the transposed t in place) and a sum over rows."""
    a, k = g.shape[1], t.shape[1]
    if a == k == 1:
        return (g * t).sum().reshape(1, 1)
    return torch.bmm(g, t.transpose(1, 2)).sum(0)


def _tail(group: _Group, n: int) -> tuple[int, ...]:
    return (n,) * group.shared


def _placement_adjoint(
    kind: str, g: torch.Tensor, done: dict[str, torch.Tensor]
) -> torch.Tensor:
    """The adjoint of placing a reduced tensor as ``kind`` into an output of order
    g.dim() - 2: what of ``g`` (rows, copies, n, ...) lands on it (a total from the row or
    column sums, a trace from the diagonal, when ``done`` has them)."""
    order = g.dim() - 2
    if kind == "full":
        return g
    if kind == "scalar":
        partial = done.get("rows", done.get("cols")) if order == 2 else None
        if partial is not None:
            return partial.sum(-1)
        return g.sum(tuple(range(2, 2 + order))) if order else g
    if kind == "diag_scalar" and "diag" in done:
        return done["diag"].sum(-1)
    if kind == "rows":
        return g.sum(-1)
    if kind == "cols":
        return g.sum(-2)
    diag = g.diagonal(dim1=-2, dim2=-1)
    return diag if kind == "diag" else diag.sum(-1)


@cache
def _reduction_adjoint(equation: str) -> tuple[str, bool]:
    """How the adjoint of a reduction places its gradient into the input (a kind of
    ``_assemble``), and whether the gradient is transposed first."""
    inp, out = equation[2:].split("->zy")
    if len(inp) == 0:
        return "scalar", False
    if len(inp) == 1:
        return ("full" if out else "scalar"), False
    if inp[0] == inp[1]:
        return ("diag" if out else "diag_scalar"), False
    if len(out) == 2:
        return "full", out != inp
    if not out:
        return "scalar", False
    return ("rows" if out == inp[0] else "cols"), False


class _PartitionApply(torch.autograd.Function):
    """y = W x by partitions (generic path) as one autograd node of the folded coefficients and
    the input; its backward is :meth:`_backward` (made of differentiable ops on the saved
    coefficients and input, so higher derivatives work)."""

    @staticmethod
    def forward(ctx, d, x, bias, space, tensors, shaped=False):
        ctx.space, ctx.tensors, ctx.shaped = space, tensors, shaped
        ctx.save_for_backward(d, x)
        # the reductions of x (its sums and diagonals, O(n^(k-1)) per sample, and views of
        # x): the coefficients' gradient reads them again, so they are kept, not recomputed
        ctx.reductions = []
        return space._generic(d, x, tensors, shaped, bias, ctx.reductions)

    @staticmethod
    def backward(ctx, grad):
        d, x = ctx.saved_tensors
        need_d, need_x, need_bias = ctx.needs_input_grad[:3]
        # a differentiated backward (create_graph) recomputes them from x, to be tracked
        kept = None if torch.is_grad_enabled() else ctx.reductions
        grad_d, grad_x, grad_bias = ctx.space._backward(
            d, x, grad, ctx.tensors, need_d, need_x, ctx.shaped, need_bias, kept)
        return grad_d, grad_x, grad_bias, None, None, None


_PARTITION_CACHE: OrderedDict[tuple[Hashable, Hashable], PartitionHomSpace | None] = OrderedDict()
_PARTITION_CACHE_SIZE = 256


def partition_hom(rep_in: Rep, rep_out: Rep) -> PartitionHomSpace | None:
    """The partition hom space when both reps are sums of S_n tensor powers that it can apply
    (orders <= MAX_ORDER, n >= the sum of the largest orders), else None (cached)."""

    def make() -> PartitionHomSpace | None:
        if rep_in.group != rep_out.group:
            return None
        orders_in, orders_out = tensor_orders(rep_in), tensor_orders(rep_out)
        if orders_in is None or orders_out is None:
            return None
        if rep_in.group.degree < max(orders_in) + max(orders_out):
            return None
        return PartitionHomSpace(rep_in, rep_out)

    return _cached(_PARTITION_CACHE, (rep_in.key, rep_out.key), _PARTITION_CACHE_SIZE, make)
