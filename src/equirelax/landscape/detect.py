"""Which hidden permutation representation do a plain MLP's weights satisfy?

Given the weights of a plain MLP, the group G and its actions on input and output, look for
hidden representations ρ' under which the weights are (approximately) equivariant
(Xie & Smidt, 2025; procedure of the notes' section 3.4):

1. per generator s and hidden layer l, match neurons: row π(i) of [W_l M, b_l] must equal row i
   of [W_l, b_l] (up to a sign for odd activations), where M is the action of s on the layer's
   input (ρ_in(s) for the first layer, the permutation found for the layer below otherwise); the
   matching is a linear assignment (``scipy.optimize.linear_sum_assignment``) on row distances;
2. check that the permutations found for the generators define a representation of G (every
   path to an element in the Cayley graph must give the same permutation), and that the output
   layer satisfies W_L P ≈ ρ_out(s) W_L;
3. split each hidden rep into transitive pieces ⊕ [G/H_i] with the H_i identified up to
   conjugacy, and report the residuals.

For odd activations (tanh) a neuron may map to minus another; the signs form a signed
permutation rep, and when the sign cocycle is a coboundary, flipping neurons (which keeps the
function) turns it into an ordinary permutation rep. For positively homogeneous activations
(ReLU) neurons are first rescaled to unit incoming norm (also function-preserving). A network
that is not equivariant under any hidden permutation rep is reported as a failure with its
reason, never as a wrong representation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from equirelax.checks import equivariance_error
from equirelax.groups.permutation import PermutationGroup
from equirelax.groups.subgroups import (
    TransitivePiece,
    describe_pieces,
    evaluate_images,
    group_table,
    transitive_pieces,
)
from equirelax.landscape.slice import EquivariantSubspace, MLPLayout, read_mlp
from equirelax.reps.base import MatrixRep, PermRep, Rep

#: σ(−z) = −σ(z): a neuron and its negative compute the same function up to the output sign.
ODD_ACTIVATIONS = frozenset({"tanh", "identity"})
#: σ(cz) = c σ(z) for c > 0: a neuron may be rescaled if its output weights are rescaled back.
HOMOGENEOUS_ACTIVATIONS = frozenset({"relu", "leaky_relu"})

#: Default relative residual under which weights count as equivariant. Residuals are relative
#: to the norm of all the network's weights, so additive noise of relative size ε (||n|| = ε||θ||)
#: moves each residual by at most 2ε: 0.5% noise stays under 1e-2 and keeps the decomposition.
DEFAULT_TOL = 1e-2


@dataclass
class LayerMatch:
    """What was found for one hidden layer.

    ``images[s][i]``: the neuron that neuron i is sent to by generator s, with sign
    ``signs[s][i]``; ``residuals[s]``: ||W g_s − P_s W||_F (rows with biases) of that matching
    relative to the norm of all the network's weights (what ``tol`` is compared with);
    ``row_residuals[s]``: the largest single-row mismatch relative to the mean row norm (a
    stricter, per-neuron view, reported only); ``homomorphism``: whether the signed
    permutations define a representation of G; ``pieces``: its orbits ⊕ [G/H_i];
    ``coboundary``: whether flipping the neurons ``flips`` (±1) makes every sign +1.
    """

    images: list[np.ndarray]
    signs: list[np.ndarray]
    residuals: list[float]
    homomorphism: bool
    pieces: list[TransitivePiece] = field(default_factory=list)
    row_residuals: list[float] = field(default_factory=list)
    coboundary: bool = True
    flips: np.ndarray | None = None

    @property
    def residual(self) -> float:
        return max(self.residuals) if self.residuals else 0.0

    @property
    def signed(self) -> bool:
        """True when some generator sends a neuron to minus another."""
        return any(bool((s < 0).any()) for s in self.signs)

    def describe(self) -> str:
        if not self.homomorphism:
            return "no representation"
        text = describe_pieces(self.pieces)
        if self.signed and not self.coboundary:
            text += " (signed)"
        return text


@dataclass
class HiddenRepDetection:
    """The result of :func:`detect_hidden_rep`.

    ``success``: the weights are equivariant (residuals <= tol) under a hidden representation
    found for every layer; ``reason`` says why not otherwise. ``hidden_reps``: the found reps, in
    the coordinates of ``canonical`` (the input network with neurons sign-flipped / rescaled,
    same function): permutation reps, or signed-permutation matrix reps when the signs are not a
    coboundary. ``distance``: ||θ − Π_ρ' θ|| / ||θ|| of the canonical network;
    ``equivariance_error``: the function-level error on the data given (None without data).
    ``duplicates`` (layer, i, j) and ``dead`` (layer, i) list reducible neurons: they mark
    fixed points of hidden symmetries and can make the matching ambiguous.
    """

    success: bool
    reason: str
    activation: str
    layers: list[LayerMatch]
    output_residuals: list[float]
    tol: float
    layout: MLPLayout
    canonical_theta: torch.Tensor
    hidden_reps: list[Rep] | None = None
    distance: float = float("nan")
    equivariance_error: float | None = None
    duplicates: list[tuple[int, int, int]] = field(default_factory=list)
    dead: list[tuple[int, int]] = field(default_factory=list)

    @property
    def residual(self) -> float:
        """The largest relative residual over hidden-layer matchings and the output layer."""
        values = [m.residual for m in self.layers] + list(self.output_residuals)
        return max(values) if values else 0.0

    @property
    def decomposition(self) -> str:
        """The hidden reps found, layer by layer (``;``-separated), e.g. ``[S3/C2]``."""
        return "; ".join(m.describe() for m in self.layers)

    @property
    def canonical(self) -> nn.Sequential:
        """The network in the coordinates of ``hidden_reps`` (same function as the input)."""
        return self.layout.module(self.canonical_theta)

    @property
    def is_permutation(self) -> bool:
        """True when every found rep is an ordinary permutation rep (after sign flips)."""
        return self.hidden_reps is not None and all(r.is_permutation for r in self.hidden_reps)

    def describe(self) -> str:
        status = "found" if self.success else f"failed ({self.reason})"
        return (f"hidden rep {self.decomposition}: {status}; residual {self.residual:.2e} "
                f"(tol {self.tol:g}, relative to the weight norm), distance {self.distance:.2e}")


def activation_kind(name: str) -> str:
    """``"odd"``, ``"homogeneous"`` or ``"generic"``: which neuron symmetries the activation has."""
    if name in ODD_ACTIVATIONS:
        return "odd"
    if name in HOMOGENEOUS_ACTIVATIONS:
        return "homogeneous"
    return "generic"


def _rescale_neurons(layout: MLPLayout, theta: torch.Tensor) -> torch.Tensor:
    """Each hidden neuron scaled to unit incoming norm ||(w_i, b_i)||, its outgoing weights
    scaled back: the same function for positively homogeneous activations."""
    layers = [(w.clone(), b.clone()) for w, b in layout.split(theta)]
    for k in range(len(layers) - 1):
        w, b = layers[k]
        norm = torch.sqrt((w**2).sum(1) + b**2)
        scale = torch.where(norm > 0, norm, torch.ones_like(norm))
        layers[k] = (w / scale[:, None], b / scale)
        w_next, b_next = layers[k + 1]
        layers[k + 1] = (w_next * scale[None, :], b_next)
    return layout.join(layers)


def _match(
    a: np.ndarray, b: np.ndarray, odd: bool
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Assign rows of ``a`` to rows of ``b``: returns (image, sign, largest row mismatch relative
    to the mean row norm, Frobenius norm of the whole mismatch) with a[image[i]] ≈ sign[i] b[i]."""
    n = b.shape[0]
    plus = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)  # (j, i)
    cost, sign = plus, np.ones((n, n))
    if odd:
        minus = np.linalg.norm(a[:, None, :] + b[None, :, :], axis=-1)
        sign = np.where(minus < plus, -1.0, 1.0)
        cost = np.minimum(plus, minus)
    scale = float(np.linalg.norm(b, axis=1).mean())
    scale = scale if scale > 0 else 1.0
    # ties (duplicated neurons) are broken towards the identity, which keeps trivial pieces put
    tie = 1e-9 * scale * (1.0 - np.eye(n))
    rows, cols = linear_sum_assignment(cost + tie)
    image = np.empty(n, dtype=np.int64)
    signs = np.empty(n)
    image[cols] = rows
    signs[cols] = sign[rows, cols]
    residual = float(cost[rows, cols].max()) / scale
    return image, signs, residual, float(np.sqrt((cost[rows, cols] ** 2).sum()))


def _signed_matrix(image: np.ndarray, signs: np.ndarray) -> np.ndarray:
    n = image.shape[0]
    m = np.zeros((n, n))
    m[image, np.arange(n)] = signs
    return m


def _doubled(image: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """A signed permutation of n neurons as a permutation of 2n points (i: +e_i, i+n: −e_i)."""
    n = image.shape[0]
    neg = (signs < 0).astype(np.int64)
    return np.concatenate([image + n * neg, image + n * (1 - neg)])


def _coboundary(images: list[np.ndarray], signs: list[np.ndarray]) -> np.ndarray | None:
    """Flips f (±1) with f[π(a)] = s(a) f[a] on every edge, or None when there are none."""
    n = images[0].shape[0] if images else 0
    f = np.zeros(n)
    for root in range(n):
        if f[root] != 0:
            continue
        f[root] = 1.0
        frontier = [root]
        while frontier:
            new = []
            for a in frontier:
                for img, sg in zip(images, signs):
                    b, want = int(img[a]), sg[a] * f[a]
                    if f[b] == 0:
                        f[b] = want
                        new.append(b)
                    elif f[b] != want:
                        return None
            frontier = new
    return f


def _reducible(
    layout: MLPLayout, theta: torch.Tensor, odd: bool, tol: float
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    layers = layout.split(theta)
    duplicates, dead = [], []
    for k in range(len(layers) - 1):
        w, b = layers[k]
        rows = torch.cat([w, b[:, None]], dim=1).numpy()
        scale = float(np.linalg.norm(rows, axis=1).mean()) or 1.0
        for i in range(rows.shape[0]):
            for j in range(i + 1, rows.shape[0]):
                d = np.linalg.norm(rows[i] - rows[j])
                if odd:
                    d = min(d, np.linalg.norm(rows[i] + rows[j]))
                if d <= tol * scale:
                    duplicates.append((k, i, j))
        cols = layers[k + 1][0].numpy()
        norms = np.linalg.norm(cols, axis=0)
        ref = float(norms.mean()) or 1.0
        dead += [(k, int(i)) for i in np.flatnonzero(norms <= tol * ref)]
    return duplicates, dead


def checked_mlp(
    caller: str, mlp: nn.Module, G: PermutationGroup, rep_in: Rep, rep_out: Rep,
    activation: str | None, tol: float,
) -> tuple[MLPLayout, torch.Tensor]:
    """The layout and flat weights of ``mlp`` after the argument checks the detectors share
    (``caller`` names the function in the messages)."""
    if not isinstance(G, PermutationGroup):
        raise TypeError(f"{caller} needs a finite PermutationGroup, got {G!r}")
    for rep, what in ((rep_in, "rep_in"), (rep_out, "rep_out")):
        if not isinstance(rep, Rep) or rep.group != G:
            raise ValueError(f"{what} must be a Rep of {G.name}, got {rep!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    layout, theta = read_mlp(mlp)
    if activation is not None:
        layout = MLPLayout(layout.widths, activation)
    return layout, theta


def detect_hidden_rep(
    mlp: nn.Module,
    G: PermutationGroup,
    rep_in: Rep,
    rep_out: Rep,
    activation: str | None = None,
    tol: float = DEFAULT_TOL,
    x: torch.Tensor | None = None,
) -> HiddenRepDetection:
    """Find the hidden permutation representation under which ``mlp`` is equivariant.

    ``mlp``: a plain MLP (``nn.Linear`` layers with one kind of activation between them) or an
    EquivariantMLP; ``G``: a finite permutation group; ``rep_in``/``rep_out``: its actions on the
    input and output (any orthogonal reps of G); ``activation``: overrides the name read from the
    network (it decides whether sign flips or rescalings are allowed); ``tol``: the largest
    residual accepted, relative to the norm of all weights (so 0.5% weight noise passes the
    default 1e-2; the residual found is reported with the answer, in ``residual`` and
    ``describe()``); ``x``: optional inputs for the function-level equivariance error.
    """
    layout, theta = checked_mlp("detect_hidden_rep", mlp, G, rep_in, rep_out, activation, tol)
    if layout.widths[0] != rep_in.dim or layout.widths[-1] != rep_out.dim:
        raise ValueError(
            f"the MLP maps R^{layout.widths[0]} -> R^{layout.widths[-1]} but rep_in/rep_out have "
            f"dims {rep_in.dim} and {rep_out.dim}"
        )
    kind = activation_kind(layout.activation)
    odd = kind == "odd"
    if kind == "homogeneous":
        theta = _rescale_neurons(layout, theta)
    table = group_table(G)
    layers = layout.split(theta)
    weight_norm = float(theta.norm()) or 1.0
    inputs = [m for m in rep_in.generator_matrices()]
    matches: list[LayerMatch] = []
    reasons: list[str] = []
    for k, (w, b) in enumerate(layers[:-1]):
        rows = torch.cat([w, b[:, None]], dim=1).numpy()
        images, signs, residuals, row_residuals, outputs = [], [], [], [], []
        for m in inputs:
            moved = np.concatenate([w.numpy() @ m, b.numpy()[:, None]], axis=1)
            image, sign, row_residual, mismatch = _match(moved, rows, odd)
            images.append(image)
            signs.append(sign)
            residuals.append(mismatch / weight_norm)
            row_residuals.append(row_residual)
            outputs.append(_signed_matrix(image, sign))
        match = LayerMatch(images, signs, residuals, homomorphism=False,
                           row_residuals=row_residuals)
        if match.residual > tol:
            reasons.append(f"hidden layer {k + 1}: matching residual {match.residual:.2e} > "
                           f"tol {tol:g}, not equivariant under any hidden permutation rep")
        doubled = [_doubled(i, s) for i, s in zip(images, signs)] if images else []
        if not images or evaluate_images(table, doubled) is not None:
            match.homomorphism = True
            match.pieces = transitive_pieces(G, images) if images else []
            flips = _coboundary(images, signs)
            match.coboundary = flips is not None
            match.flips = flips
        else:
            reasons.append(f"hidden layer {k + 1}: the neuron permutations found for the "
                           f"generators define no representation of {G.name}")
        matches.append(match)
        inputs = outputs
    w_out, b_out = (t.numpy() for t in layers[-1])
    output_residuals = []
    for m, r in zip(inputs, rep_out.generator_matrices()):
        res = np.sqrt(((w_out @ m - r @ w_out) ** 2).sum() + ((b_out - r @ b_out) ** 2).sum())
        output_residuals.append(float(res) / weight_norm)
    if output_residuals and max(output_residuals) > tol:
        reasons.append(f"output layer: residual {max(output_residuals):.2e} > tol {tol:g}")
    duplicates, dead = _reducible(layout, theta, odd, tol)
    if reasons and duplicates:
        reasons.append(f"{len(duplicates)} duplicated neuron pair(s) may make the matching "
                       "ambiguous")
    result = HiddenRepDetection(
        success=not reasons,
        reason="; ".join(reasons),
        activation=layout.activation,
        layers=matches,
        output_residuals=output_residuals,
        tol=tol,
        layout=layout,
        canonical_theta=theta,
        duplicates=duplicates,
        dead=dead,
    )
    if all(m.homomorphism for m in matches):
        _attach_reps(result, G, rep_in, rep_out, x)
    return result


def _attach_reps(
    result: HiddenRepDetection,
    G: PermutationGroup,
    rep_in: Rep,
    rep_out: Rep,
    x: torch.Tensor | None,
) -> None:
    """Flip neurons where the signs are a coboundary, build the reps, measure the distances."""
    layout = result.layout
    if all(m.coboundary for m in result.layers):
        flips = [m.flips if m.flips is not None else np.ones(len(m.images[0]))
                 for m in result.layers]
        mats = [torch.eye(layout.widths[0], dtype=torch.float64)]
        mats += [torch.diag(torch.from_numpy(np.asarray(f, dtype=np.float64))) for f in flips]
        mats.append(torch.eye(layout.widths[-1], dtype=torch.float64))
        weights = [(mats[k + 1] @ w @ mats[k], mats[k + 1] @ b)
                   for k, (w, b) in enumerate(layout.split(result.canonical_theta))]
        result.canonical_theta = layout.join(weights)
        reps: list[Rep] = [
            PermRep(G, m.images, name=describe_pieces(m.pieces), check=False)
            for m in result.layers
        ]
    else:
        reps = []
        for m in result.layers:
            if m.signed:
                name = f"signed {describe_pieces(m.pieces)}"
                mats_s = [_signed_matrix(i, s) for i, s in zip(m.images, m.signs)]
                reps.append(MatrixRep(G, mats_s, name=name))
            else:
                reps.append(PermRep(G, m.images, name=describe_pieces(m.pieces), check=False))
    result.hidden_reps = reps
    space = EquivariantSubspace(rep_in, reps, rep_out)
    result.distance = space.distance(result.canonical_theta)
    if x is not None:
        result.equivariance_error = equivariance_error(
            result.canonical, x, rep_in=rep_in, rep_out=rep_out
        )
