"""Loss landscape and hidden symmetries of permutation-representation networks.

After Xie & Smidt, *A Tale of Two Symmetries* (NeurIPS 2025): an equivariant MLP with hidden
permutation reps ρ is a linear slice E_ρ of a plain MLP's parameter space. This package converts
between the two pictures (``slice``), computes the hidden symmetries that keep a slice in place
(``hidden_symmetry``), finds the hidden representation a plain MLP's weights satisfy
(``detect``), or, when there is none, the largest subgroup of G whose hidden reps they satisfy
(``subgroup_symmetry``), projects weights onto a slice (``project``; also the hardening mode
``harden(relaxed, mode="detected")``, which ``harden`` imports when asked for), and splits the
Hessian at a point of E_ρ into equivariant and non-equivariant curvature (``hessian``).
The subgroup lattices these name hidden reps with (``[G/H]``) are group theory and live in
``equirelax.groups.subgroups``.
"""

from equirelax.landscape.detect import (
    DEFAULT_TOL,
    HiddenRepDetection,
    LayerMatch,
    activation_kind,
    detect_hidden_rep,
)
from equirelax.landscape.hessian import (
    Classification,
    HessianSplit,
    IsotypicBlock,
    gradient_and_hessian,
    hessian_split,
    isotypic_blocks,
    mse_loss,
    split_hessian,
)
from equirelax.landscape.hidden_symmetry import (
    HiddenSymmetry,
    centraliser_generators,
    hidden_symmetry_group,
    permute_hidden,
)
from equirelax.landscape.project import (
    effective_mlp,
    harden_detected,
    project_onto,
    project_onto_detected,
)
from equirelax.landscape.slice import (
    EquivariantSubspace,
    MLPLayout,
    equivariant_mlp,
    plain_mlp,
    read_mlp,
)
from equirelax.landscape.subgroup_symmetry import (
    SubgroupSymmetry,
    SubgroupTrial,
    detect_subgroup_symmetry,
)

__all__ = [
    "DEFAULT_TOL",
    "Classification",
    "EquivariantSubspace",
    "HessianSplit",
    "HiddenRepDetection",
    "HiddenSymmetry",
    "IsotypicBlock",
    "LayerMatch",
    "MLPLayout",
    "SubgroupSymmetry",
    "SubgroupTrial",
    "activation_kind",
    "centraliser_generators",
    "detect_hidden_rep",
    "detect_subgroup_symmetry",
    "effective_mlp",
    "equivariant_mlp",
    "gradient_and_hessian",
    "harden_detected",
    "hessian_split",
    "hidden_symmetry_group",
    "isotypic_blocks",
    "mse_loss",
    "permute_hidden",
    "plain_mlp",
    "project_onto",
    "project_onto_detected",
    "read_mlp",
    "split_hessian",
]
