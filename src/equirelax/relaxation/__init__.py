"""Constraint relaxation (Pertigkiozoglou et al., NeurIPS 2024) as a library feature.

Relax any equivariant model, schedule the relaxation to zero, regularise it, and harden it back
to an exactly equivariant model of the original architecture.
"""

from equirelax.relaxation.actions import FeatureAction, pair_actions
from equirelax.relaxation.hardening import harden, harden_modes, register_harden_mode
from equirelax.relaxation.registry import FreeLinear, Registration, register, registration
from equirelax.relaxation.relaxed import Relaxed
from equirelax.relaxation.relaxed_model import RelaxedModel, relax
from equirelax.relaxation.schedule import SCHEDULES, Schedule, make_schedule


def __getattr__(name: str):
    if name == "LightningCallback":  # lightning is an optional dependency
        from equirelax.relaxation.lightning import LightningCallback

        return LightningCallback
    raise AttributeError(f"module 'equirelax.relaxation' has no attribute {name!r}")


__all__ = [
    "SCHEDULES",
    "FeatureAction",
    "FreeLinear",
    "LightningCallback",
    "Registration",
    "Relaxed",
    "RelaxedModel",
    "Schedule",
    "harden",
    "harden_modes",
    "make_schedule",
    "pair_actions",
    "register",
    "register_harden_mode",
    "registration",
    "relax",
]
