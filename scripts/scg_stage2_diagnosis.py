"""Issue-14 diagnosis of SCG stage 2 at a short budget.

Trains a small base diffusion model and control branches, then prints the grey PSNR/SSIM of
generations on held-out crops beside the grey image, the unconditional model and the module
group's own decode (two noise seeds), and each branch's loss beside the frozen base's loss on
the same batches. Needs a stage-1 model and its groups (``equirelax scg train-autoencoder --quick
--variants full``, then ``equirelax scg probe --quick``). Compare the model before issue 14 with
the defaults, same budget::

    python scripts/scg_stage2_diagnosis.py --tag new
    python scripts/scg_stage2_diagnosis.py --tag old --schedule linear --prediction eps

Checkpoints go to ``--work`` (resumed when rerun; a larger ``--ctl-steps`` extends a branch).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from equirelax.scg.completion import (
    CompletionTrainConfig,
    generate,
    generate_unconditional,
    train_base_diffusion,
    train_control,
)
from equirelax.scg.conditions import ModuleGroupCondition, canny_condition
from equirelax.scg.datasets import CropSampler
from equirelax.scg.diffusion import DiffusionConfig
from equirelax.scg.metrics import psnr, ssim
from equirelax.scg.training import load_autoencoder


def main() -> None:
    """Train, generate, print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="name of this configuration's checkpoints")
    ap.add_argument("--schedule", default="cosine")
    ap.add_argument("--prediction", default="v")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--base-steps", type=int, default=800)
    ap.add_argument("--ctl-steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ctl-lr", type=float, default=1e-3)
    ap.add_argument("--conds", nargs="+", default=["brightness", "canny"])
    ap.add_argument("--n", type=int, default=16, help="held-out images")
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--runs", default="runs/scg/quick", help="folder with ae_full.pt")
    ap.add_argument("--out", default="docs/results/scg/quick", help="folder with groups.json")
    ap.add_argument("--work", default="runs/scg/diagnosis", help="checkpoints of this script")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    root = Path(a.work)
    root.mkdir(parents=True, exist_ok=True)
    ae = load_autoencoder(Path(a.runs) / "ae_full.pt").model.eval()
    groups = json.loads((Path(a.out) / "groups.json").read_text())
    conds = {k: ModuleGroupCondition(ae, v) for k, v in groups.items()}
    conds["canny"] = canny_condition
    dc = DiffusionConfig(base=a.width, schedule=a.schedule, prediction=a.prediction)
    cfg = CompletionTrainConfig(steps=a.base_steps, batch=a.batch, lr=a.lr)
    t0 = time.time()
    base, h = train_base_diffusion(dc, cfg, checkpoint=root / f"{a.tag}_base.pt", progress=False)
    print(f"base {time.time() - t0:.0f}s final smoothed loss {h[-1]['smoothed']:.4f}", flush=True)
    src = CropSampler(size=32, weights=(0.7, 0.3, 0.0), split="held_out", seed=77).sample(a.n)

    def show(name: str, img: torch.Tensor) -> None:
        p, s = psnr(img, src, grey=True), ssim(img, src, grey=True)
        print(f"{name:24s} psnr_g {p.mean():6.2f}  ssim_g {s.mean():.3f}  "
              f"psnr_c {psnr(img, src).mean():6.2f}", flush=True)

    noises = [torch.randn(src.shape, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    show("grey", torch.full_like(src, 0.5))
    for k, noise in enumerate(noises):
        show(f"none s{k}", generate_unconditional(base, noise, a.sample_steps))
    for name in a.conds:
        ctl_cfg = CompletionTrainConfig(steps=a.ctl_steps, batch=a.batch, lr=a.ctl_lr)
        t0 = time.time()
        model, hc = train_control(base, conds[name], ctl_cfg,
                                  checkpoint=root / f"{a.tag}_ctl_{name}.pt", progress=False)
        last = hc[-4:]
        print(f"ctl {name} {time.time() - t0:.0f}s  last logged (branch/base): "
              + ", ".join(f"{r['step']}: {r['loss']:.4f}/{r['base_loss']:.4f}" for r in last))
        print(f"   mean over last 4 logs: branch {np.mean([r['loss'] for r in last]):.4f} "
              f"base {np.mean([r['base_loss'] for r in last]):.4f}", flush=True)
        hint = conds[name](src)
        if name != "canny":
            show(f"decode-only {name}", ae.decode_modules(src, groups[name]).clamp(0, 1))
        for k, noise in enumerate(noises):
            show(f"{name} s{k}", generate(model, hint, noise, a.sample_steps))


if __name__ == "__main__":
    main()
