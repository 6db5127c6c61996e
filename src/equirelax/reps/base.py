"""Representations of groups: permutation reps, matrix reps, and their algebra.

A representation maps group elements to matrices acting on feature vectors of size ``dim``
(features live in the last axis of a tensor; ``x @ rep.matrix(g).T`` is the action of ``g``).
It also states how the generators and the Lie algebra act, which is all that the equivariant
linear maps of ``equirelax.homspace`` need. Permutation representations additionally give the
permutation of basis vectors, so that their equivariant maps come from orbits (weight sharing)
and pointwise nonlinearities commute with them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from functools import cached_property

import numpy as np
import scipy.linalg

from equirelax.groups.base import Group
from equirelax.groups.chain import WordEvaluator, compose, inverse
from equirelax.groups.lie import MatrixLieGroup
from equirelax.groups.permutation import PermutationGroup


def _array_key(arrays: Sequence[np.ndarray]) -> tuple:
    return tuple((a.shape, np.round(np.asarray(a, dtype=float), 10).tobytes()) for a in arrays)


def permutation_matrix(p: np.ndarray) -> np.ndarray:
    """The matrix P with P e_i = e_{p[i]} (so (P x)[p[i]] = x[i])."""
    n = p.shape[0]
    m = np.zeros((n, n))
    m[p, np.arange(n)] = 1.0
    return m


class Rep(ABC):
    """A representation of ``group`` on R^dim. Subclasses: :class:`PermRep`, :class:`MatrixRep`."""

    group: Group
    dim: int
    name: str

    # -- interface ----------------------------------------------------------------------------
    @property
    def is_permutation(self) -> bool:
        """True when every element acts by permuting the basis vectors."""
        return False

    @abstractmethod
    def matrix(self, g: np.ndarray) -> np.ndarray:
        """The (dim, dim) float64 matrix of the group element ``g``."""

    @abstractmethod
    def generator_matrices(self) -> list[np.ndarray]:
        """Matrices of the group's discrete generators, in the order of ``group.generators``."""

    @abstractmethod
    def lie_matrices(self) -> list[np.ndarray]:
        """Matrices of the Lie algebra basis (``group.lie_algebra``); empty for finite groups."""

    @property
    @abstractmethod
    def key(self) -> Hashable:
        """Hashable identity used to cache equivariant bases."""

    @property
    def parts(self) -> list[Rep]:
        """The summands of a direct sum, in order; ``[self]`` for a rep that is no sum."""
        return [self]

    # -- conveniences -------------------------------------------------------------------------
    def matrices(self, elements: np.ndarray) -> np.ndarray:
        """Matrices of several elements, stacked (n, dim, dim)."""
        return np.stack([self.matrix(g) for g in elements])

    @property
    def is_trivial(self) -> bool:
        """True when every generator and Lie algebra element acts as the identity / zero."""
        eye = np.eye(self.dim)
        return all(np.allclose(m, eye) for m in self.generator_matrices()) and all(
            np.allclose(m, 0.0) for m in self.lie_matrices()
        )

    def character(self, g: np.ndarray) -> float:
        """Trace of the matrix of ``g``."""
        return float(np.trace(self.matrix(g)))

    def _check_same_group(self, other: Rep, what: str) -> None:
        if not isinstance(other, Rep):
            raise TypeError(f"{what} needs a Rep, got {type(other).__name__}")
        if self.group != other.group:
            raise ValueError(
                f"cannot form the {what} of representations of different groups: "
                f"{self.group!r} and {other.group!r}"
            )

    def __add__(self, other: Rep) -> Rep:
        if isinstance(other, int) and other == 0:  # allows sum([...])
            return self
        self._check_same_group(other, "direct sum")
        return direct_sum([self, other])

    def __radd__(self, other: object) -> Rep:
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def __mul__(self, other: Rep | int) -> Rep:
        if isinstance(other, int | np.integer):
            return multiple(int(other), self)
        self._check_same_group(other, "tensor product")
        return tensor_product(self, other)

    def __rmul__(self, other: int) -> Rep:
        if isinstance(other, int | np.integer):
            return multiple(int(other), self)
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rep) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return self.name


class PermRep(Rep):
    """A permutation representation, given by the permutation of ``dim`` points for each generator.

    For a Lie group only actions trivial on the identity component are permutation
    representations; ``images`` then give the action of the discrete generators.
    """

    def __init__(
        self,
        group: Group,
        images: Sequence[Sequence[int] | np.ndarray],
        name: str | None = None,
        parts: Sequence[Rep] | None = None,
        check: bool = True,
    ) -> None:
        gens = group.generators
        if len(images) != len(gens):
            raise ValueError(
                f"expected one image per generator of {group!r} ({len(gens)}), got {len(images)}"
            )
        imgs = [np.asarray(p, dtype=np.int64) for p in images]
        dim = imgs[0].shape[0] if imgs else 1
        if not imgs and parts is not None:
            dim = sum(p.dim for p in parts)
        for p in imgs:
            if p.shape != (dim,) or not np.array_equal(np.sort(p), np.arange(dim)):
                raise ValueError(
                    f"each image must be a permutation of 0..{dim - 1}, "
                    f"got {np.asarray(p).tolist()}"
                )
        self.group = group
        self.dim = dim
        self.images = imgs
        self.name = name or f"PermRep({group!r}, dim={dim})"
        self._parts = list(parts) if parts is not None else None
        if check:
            self._check_homomorphism()

    @property
    def is_permutation(self) -> bool:
        return True

    @property
    def parts(self) -> list[Rep]:
        return self._parts if self._parts is not None else [self]

    @cached_property
    def key(self) -> Hashable:
        return ("perm", self.group.key, self.dim, tuple(p.tobytes() for p in self.images))

    def _evaluator(self) -> WordEvaluator:
        return WordEvaluator(self.images, compose, inverse, np.arange(self.dim))

    @cached_property
    def _words(self) -> WordEvaluator:
        return self._evaluator()

    def _check_homomorphism(self) -> None:
        if isinstance(self.group, PermutationGroup):
            evaluate = self._words
            identity = np.arange(self.dim)
            for relator in self.group.chain.relators:
                if not np.array_equal(evaluate(relator), identity):
                    raise ValueError(
                        f"the given images do not define a representation of {self.group!r}: "
                        "a relation of the group is not satisfied"
                    )
        elif isinstance(self.group, MatrixLieGroup):
            for p, d in zip(self.images, self.group.generators):
                if not np.array_equal(compose(p, p), np.arange(self.dim)) and np.allclose(
                    d @ d, np.eye(d.shape[0])
                ):
                    raise ValueError(
                        f"the image of an involution of {self.group!r} must be an involution"
                    )

    def perm(self, g: np.ndarray) -> np.ndarray:
        """The permutation of basis vectors by which ``g`` acts."""
        if isinstance(self.group, PermutationGroup):
            words, ok = self.group.chain.sift(np.asarray(g))
            if not ok:
                raise ValueError(f"{np.asarray(g).tolist()} is not an element of {self.group!r}")
            result = np.arange(self.dim)
            for w in words:
                result = compose(result, self._words(w))
            return result
        if isinstance(self.group, MatrixLieGroup):
            word, _ = self.group.decompose(g)
            result = np.arange(self.dim)
            for i in word:
                result = compose(result, self.images[i])
            return result
        raise TypeError(f"unsupported group type {type(self.group).__name__}")

    def matrix(self, g: np.ndarray) -> np.ndarray:
        return permutation_matrix(self.perm(g))

    def generator_matrices(self) -> list[np.ndarray]:
        return [permutation_matrix(p) for p in self.images]

    def lie_matrices(self) -> list[np.ndarray]:
        return [np.zeros((self.dim, self.dim)) for _ in self.group.lie_algebra]


class MatrixRep(Rep):
    """An orthogonal representation given by matrices of the generators and of the Lie algebra.

    For finite groups ``generator_matrices`` must define a homomorphism (checked against a complete
    set of relations). For Lie groups ``lie_matrices`` give the algebra action; elements are
    evaluated as ρ(d) expm(Σ c_k dρ(A_k)), or by ``evaluate`` when given.
    """

    def __init__(
        self,
        group: Group,
        generator_matrices: Sequence[np.ndarray],
        lie_matrices: Sequence[np.ndarray] | None = None,
        name: str | None = None,
        evaluate=None,
        parts: Sequence[Rep] | None = None,
        check: bool = True,
    ) -> None:
        # round-off is allowed at the precision the matrices were given in (float32 or float64)
        eps = _input_precision([*generator_matrices, *(lie_matrices or [])]) if check else 0.0
        gens = [np.asarray(m, dtype=float) for m in generator_matrices]
        lie = [np.asarray(m, dtype=float) for m in (lie_matrices or [])]
        n_gen, n_lie = len(group.generators), len(group.lie_algebra)
        if len(gens) != n_gen:
            raise ValueError(f"expected {n_gen} generator matrices for {group!r}, got {len(gens)}")
        if len(lie) != n_lie:
            raise ValueError(f"expected {n_lie} Lie algebra matrices for {group!r}, got {len(lie)}")
        mats = gens + lie
        if not mats:
            raise ValueError("a matrix representation needs at least one matrix to know its dim")
        dim = mats[0].shape[0]
        for m in mats:
            if m.shape != (dim, dim):
                raise ValueError(f"expected ({dim}, {dim}) matrices, got {m.shape}")
        if check:
            _check_orthogonal(gens, lie, eps)
        self.group = group
        self.dim = dim
        self._gens = gens
        self._lie = lie
        self._evaluate = evaluate
        self._parts = list(parts) if parts is not None else None
        self.name = name or f"MatrixRep({group!r}, dim={dim})"
        if check and isinstance(group, PermutationGroup):
            evaluate_word = self._words
            lengths: dict[int, tuple[object, int]] = {}
            for k, relator in enumerate(group.chain.relators):
                off = float(np.abs(evaluate_word(relator) - np.eye(dim)).max())
                length = _word_length(relator, lengths)
                tol = relation_tolerance(length, dim, eps)
                if not off <= tol:
                    raise ValueError(
                        f"the given matrices do not define a representation of {group!r}: "
                        f"a relation of the group is not satisfied (relator {k}, a product of "
                        f"{length} generators, is off the identity by {off:.2e} in its largest "
                        f"entry; tolerance {tol:.1e} for {_precision_name(eps)} matrices)"
                    )

    @property
    def parts(self) -> list[Rep]:
        return self._parts if self._parts is not None else [self]

    @cached_property
    def key(self) -> Hashable:
        if self._parts is not None:
            return ("sum", tuple(p.key for p in self._parts))
        return ("mat", self.group.key, _array_key(self._gens), _array_key(self._lie))

    @cached_property
    def _words(self) -> WordEvaluator:
        return WordEvaluator(self._gens, np.matmul, np.transpose, np.eye(self.dim))

    def matrix(self, g: np.ndarray) -> np.ndarray:
        if self._evaluate is not None:
            return np.asarray(self._evaluate(g), dtype=float)
        if isinstance(self.group, PermutationGroup):
            words, ok = self.group.chain.sift(np.asarray(g))
            if not ok:
                raise ValueError(f"{np.asarray(g).tolist()} is not an element of {self.group!r}")
            result = np.eye(self.dim)
            for w in words:
                result = result @ self._words(w)
            return result
        if isinstance(self.group, MatrixLieGroup):
            word, coords = self.group.decompose(g)
            result = np.eye(self.dim)
            for i in word:
                result = result @ self._gens[i]
            algebra = sum(c * m for c, m in zip(coords, self._lie))
            return result @ scipy.linalg.expm(algebra)
        raise TypeError(f"unsupported group type {type(self.group).__name__}")

    def generator_matrices(self) -> list[np.ndarray]:
        return [m.copy() for m in self._gens]

    def lie_matrices(self) -> list[np.ndarray]:
        return [m.copy() for m in self._lie]


# -- round-off allowed when checking given matrices --------------------------------------------
#: Machine epsilon by dtype name (numpy's, or torch's without the "torch." prefix).
_EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}


def _input_precision(matrices: Sequence[object]) -> float:
    """Machine epsilon of the coarsest floating dtype among the matrices as given (numpy arrays,
    torch tensors, nested lists); float64's for integer or untyped input."""
    eps = _EPS["float64"]
    for m in matrices:
        dtype = m.dtype if hasattr(m, "dtype") else np.asarray(m).dtype
        eps = max(eps, _EPS.get(str(dtype).removeprefix("torch."), eps))
    return eps


def _precision_name(eps: float) -> str:
    """The dtype name of a machine epsilon from ``_EPS``."""
    return next(name for name, value in _EPS.items() if value == eps)


def _check_orthogonal(gens: Sequence[np.ndarray], lie: Sequence[np.ndarray], eps: float) -> None:
    """Refuse generators that are not orthogonal and Lie matrices that are not antisymmetric,
    beyond the round-off of their input precision ``eps``; the error says by how much."""
    precision = _precision_name(eps)
    for k, m in enumerate(gens):
        off = float(np.abs(m @ m.T - np.eye(m.shape[0])).max())
        tol = max(1e-9, 8 * m.shape[0] * eps)  # an entry of ρρ^T sums dim rounded products
        if not off <= tol:
            raise ValueError(
                f"generator matrices must be orthogonal (ρ(g) ρ(g)^T = I): generator {k} is off "
                f"by {off:.2e} (max |ρ(g) ρ(g)^T − I|; tolerance {tol:.1e} for {precision} "
                "matrices)")
    for k, m in enumerate(lie):
        off = float(np.abs(m + m.T).max())
        tol = max(1e-9, 8 * eps * max(1.0, float(np.abs(m).max())))
        if not off <= tol:
            raise ValueError(
                f"Lie algebra matrices of an orthogonal rep must be antisymmetric: matrix {k} is "
                f"off by {off:.2e} (max |A + A^T|; tolerance {tol:.1e} for {precision} matrices)")


def relation_tolerance(length: int, dim: int, eps: float) -> float:
    """How far from the identity a relator's image may be, as round-off, and not as a failed
    relation: each of its ``length`` orthogonal factors carries an error of norm at most
    √dim · eps/2 (its entries rounded to the input precision ``eps``), and errors of a product of
    orthogonal matrices add up, so the largest entry is off by at most length · √dim · eps/2.
    Allowed: 16 times that, and never less than 1e-8 (exact float64 input)."""
    return max(1e-8, 8.0 * length * float(np.sqrt(dim)) * eps)


def _word_length(word: tuple, memo: dict[int, tuple[object, int]]) -> int:
    """The number of generator factors of a (nested) word, sub-words counted once each."""
    total = 0
    for (kind, payload), _inverted in word:
        if kind == "gen":
            total += 1
            continue
        key = id(payload)
        if key not in memo:
            memo[key] = (payload, _word_length(payload, memo))  # keep payload alive: ids unique
        total += memo[key][1]
    return total


# -- constructions ----------------------------------------------------------------------------
def _flatten_parts(reps: Sequence[Rep]) -> list[Rep]:
    out: list[Rep] = []
    for r in reps:
        out.extend(r.parts)
    return out


def direct_sum(reps: Sequence[Rep]) -> Rep:
    """ρ_1 ⊕ ρ_2 ⊕ ...: block-diagonal action; permutation reps stay permutation reps."""
    if not reps:
        raise ValueError("direct_sum needs at least one representation")
    for r in reps[1:]:
        reps[0]._check_same_group(r, "direct sum")
    parts = _flatten_parts(reps)
    if len(parts) == 1:
        return parts[0]
    group = parts[0].group
    name = " + ".join(_group_names(parts))
    if all(p.is_permutation for p in parts):
        images = []
        for k in range(len(group.generators)):
            offset, pieces = 0, []
            for p in parts:
                pieces.append(p.images[k] + offset)  # type: ignore[attr-defined]
                offset += p.dim
            images.append(np.concatenate(pieces))
        return PermRep(group, images, name=name, parts=parts, check=False)
    gens = [
        scipy.linalg.block_diag(*(p.generator_matrices()[k] for p in parts))
        for k in range(len(group.generators))
    ]
    lie = [
        scipy.linalg.block_diag(*(p.lie_matrices()[k] for p in parts))
        for k in range(len(group.lie_algebra))
    ]
    return MatrixRep(group, gens, lie, name=name, evaluate=_BlockDiagonal(parts), parts=parts,
                     check=False)


def _group_names(parts: Sequence[Rep]) -> list[str]:
    names: list[str] = []
    counts: list[int] = []
    for p in parts:
        if names and names[-1] == p.name:
            counts[-1] += 1
        else:
            names.append(p.name)
            counts.append(1)
    return [n if c == 1 else f"{c}*{n}" for n, c in zip(names, counts)]


def multiple(k: int, rep: Rep) -> Rep:
    """k copies of ``rep`` (k ⊗ ρ = ρ ⊕ ... ⊕ ρ)."""
    if k < 1:
        raise ValueError(f"a multiplicity must be a positive integer, got {k}")
    return direct_sum([rep] * k)


def tensor_product(a: Rep, b: Rep) -> Rep:
    """ρ_a ⊗ ρ_b acting on R^(dim_a * dim_b) (index i * dim_b + j); perm ⊗ perm stays a perm rep."""
    a._check_same_group(b, "tensor product")
    group = a.group
    name = f"({a.name})*({b.name})"
    if a.is_permutation and b.is_permutation:
        images = [
            (pa[:, None] * b.dim + pb[None, :]).reshape(-1)
            for pa, pb in zip(a.images, b.images)  # type: ignore[attr-defined]
        ]
        return PermRep(group, images, name=name, check=False)
    ia, ib = np.eye(a.dim), np.eye(b.dim)
    gens = [np.kron(x, y) for x, y in zip(a.generator_matrices(), b.generator_matrices())]
    lie = [
        np.kron(x, ib) + np.kron(ia, y) for x, y in zip(a.lie_matrices(), b.lie_matrices())
    ]
    return MatrixRep(group, gens, lie, name=name, evaluate=_Kronecker(a, b), check=False)


# The matrices of sums and products are evaluated by small classes rather than closures, so that
# representations (and every module holding one) can be pickled, e.g. by DataLoader workers.
class _BlockDiagonal:
    """g ↦ ρ_1(g) ⊕ ρ_2(g) ⊕ ...: the matrix of a direct sum."""

    def __init__(self, parts: Sequence[Rep]) -> None:
        self.parts = list(parts)

    def __call__(self, g: np.ndarray) -> np.ndarray:
        return scipy.linalg.block_diag(*(p.matrix(g) for p in self.parts))


class _Kronecker:
    """g ↦ ρ_a(g) ⊗ ρ_b(g): the matrix of a tensor product."""

    def __init__(self, a: Rep, b: Rep) -> None:
        self.a, self.b = a, b

    def __call__(self, g: np.ndarray) -> np.ndarray:
        return np.kron(self.a.matrix(g), self.b.matrix(g))
