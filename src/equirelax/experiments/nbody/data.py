"""The N-body splits of a study and their loaders."""

from __future__ import annotations

from torch.utils.data import DataLoader

from equirelax.data.nbody import NBodyDataset
from equirelax.experiments.kit.runner import EpochShuffle
from equirelax.experiments.nbody.config import StudyConfig


def load_data(cfg: StudyConfig, train_size: int) -> dict[str, NBodyDataset]:
    """The three splits (generated once, then read from the cache)."""
    sizes = {"train": train_size, "val": cfg.val_size, "test": cfg.test_size}
    return {
        split: NBodyDataset(split, size, cache_dir=cfg.cache_dir, progress=cfg.progress)
        for split, size in sizes.items()
    }


def loaders(
    cfg: StudyConfig, data: dict[str, NBodyDataset], seed: int
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Training loader (seeded epoch order; Lightning's distributed sampler under DDP) and the
    validation and test loaders."""
    if cfg.devices * cfg.num_nodes > 1:
        train = DataLoader(data["train"], batch_size=cfg.batch_size, shuffle=True)
        val = DataLoader(data["val"], batch_size=cfg.eval_batch_size)
        test = DataLoader(data["test"], batch_size=cfg.eval_batch_size)
        return train, val, test
    # one process: whole batches gathered at once (the dataset takes a list of indices)
    train = DataLoader(data["train"], batch_size=None,
                       sampler=EpochShuffle(len(data["train"]), seed, cfg.batch_size))

    def in_order(split: str) -> DataLoader:
        n = len(data[split])
        batches = [list(range(i, min(n, i + cfg.eval_batch_size)))
                   for i in range(0, n, cfg.eval_batch_size)]
        return DataLoader(data[split], batch_size=None, sampler=batches)

    return train, in_order("val"), in_order("test")
