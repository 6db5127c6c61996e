"""Shared check of the point-cloud and image studies' end-to-end runs."""

from __future__ import annotations


def assert_exact_relaxed_baseline(records: dict[str, dict]) -> None:
    """The three arms ran; the exact and the hardened relaxed model are invariant (float64
    round-off), the unconstrained baseline is not; hardening leaves exactly the exact model's
    parameters, while training had more."""
    assert set(records) == {"exact", "relaxed", "baseline"}
    assert records["exact"]["equivariance_error"] < 1e-12
    assert records["relaxed"]["equivariance_error"] < 1e-12
    assert records["baseline"]["equivariance_error"] > 1e-4
    assert records["relaxed"]["parameters"] == records["exact"]["parameters"]
    assert records["relaxed"]["trained_parameters"] > records["relaxed"]["parameters"]


def record_training(monkeypatch) -> tuple[dict[str, list], dict[str, list]]:
    """Wrap the runner's ``fit`` as the classification studies call it, recording for every
    variant (the run folder's parent) the (inputs, labels) of each training batch as the model
    receives them (augmented) and, for each training forward pass of a dropout layer, which
    entries it dropped and which were non-zero (only those show the mask)."""
    from collections import defaultdict
    from pathlib import Path

    import torch

    from equirelax.experiments import classification

    batches: dict[str, list] = defaultdict(list)
    masks: dict[str, list] = defaultdict(list)
    real_fit = classification.fit

    def fit(model, train, val, test, step_fn, loss_fn, cfg, **kwargs):
        variant = Path(cfg.out_dir).parent.name

        def hook(module, args, out):
            if module.training:
                nonzero = args[0] != 0
                masks[variant].append(((out == 0) & nonzero, nonzero))

        handles = [m.register_forward_hook(hook) for m in model.modules()
                   if isinstance(m, torch.nn.Dropout)]

        def step(net, batch):
            if net.training:
                batches[variant].append((batch[0].clone(), batch[1].clone()))
            return step_fn(net, batch)

        try:
            return real_fit(model, train, val, test, step, loss_fn, cfg, **kwargs)
        finally:
            for handle in handles:
                handle.remove()

    monkeypatch.setattr(classification, "fit", fit)
    return batches, masks


def assert_same_batches(seen: list, expected: list) -> None:
    """Two lists of recorded (inputs, labels) batches are identical."""
    import torch

    assert len(seen) == len(expected)
    for (x, y), (x0, y0) in zip(seen, expected, strict=True):
        assert torch.equal(x, x0) and torch.equal(y, y0)


def assert_same_dropout(seen: list, expected: list) -> None:
    """Two lists of recorded dropout masks agree wherever both layers' inputs were non-zero
    (the models' activations differ once their weights do)."""
    import torch

    assert len(seen) == len(expected)
    for (dropped, nonzero), (dropped0, nonzero0) in zip(seen, expected, strict=True):
        both = nonzero & nonzero0
        assert both.float().mean() > 0.2 and dropped[both].any()
        assert torch.equal(dropped[both], dropped0[both])
