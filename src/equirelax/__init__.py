"""equirelax: train neural networks under equivariance constraints.

Build exactly equivariant models from group representations (``groups``, ``reps``, ``hom``,
``nn``), measure equivariance (``equivariance_error``, ``testing``), and train them in a relaxed
space that is annealed back to an exactly equivariant model (``relax``, ``harden``).

The floors above relaxation (``landscape``, ``scg``, ``models``) are attributes too, imported
on first use so that ``import equirelax`` stays fast.
"""

import importlib
from types import ModuleType

from equirelax import checks, groups, homspace, nn, relaxation, reps, testing
from equirelax.checks import equivariance_error, lie_derivative_error
from equirelax.homspace import hom
from equirelax.relaxation import harden, relax

__version__ = "0.1.0"

#: Subpackages imported on first attribute access (``er.landscape``), not by ``import equirelax``.
LAZY_SUBPACKAGES = ("landscape", "models", "scg")

# Hardening modes implemented above relaxation, registered by name: the module is imported only
# when the mode is first used, so harden(m, mode="detected") works without importing landscape.
relaxation.register_harden_mode("detected", "equirelax.landscape.project:harden_detected")


def __getattr__(name: str) -> ModuleType:
    if name in LAZY_SUBPACKAGES:
        try:
            module = importlib.import_module(f"equirelax.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"equirelax.{name}":
                raise  # a dependency of the subpackage is missing: say which
            raise AttributeError(f"module 'equirelax' has no attribute {name!r} (this "
                                 f"installation has no equirelax.{name})") from err
        globals()[name] = module
        return module
    raise AttributeError(f"module 'equirelax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY_SUBPACKAGES))


__all__ = [
    "__version__",
    "checks",
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
