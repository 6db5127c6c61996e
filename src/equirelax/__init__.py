"""equirelax: train neural networks under equivariance constraints.

Build exactly equivariant models from group representations (``groups``, ``reps``, ``hom``,
``nn``), measure equivariance (``equivariance_error``, ``testing``), and train them in a relaxed
space that is annealed back to an exactly equivariant model (``relax``, ``harden``).
"""

from equirelax import groups, homspace, nn, relaxation, reps, testing
from equirelax.equivariance import equivariance_error, lie_derivative_error
from equirelax.homspace import hom
from equirelax.relaxation import harden, relax

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "equivariance_error",
    "groups",
    "harden",
    "hom",
    "homspace",
    "lie_derivative_error",
    "nn",
    "relax",
    "relaxation",
    "reps",
    "testing",
]
