"""``equirelax scg generate``: complete one image file (``--image``) from one condition with
the generator file that ``train-completion`` writes (one self-contained file: configs and
weights), on ``--device``; the figure shows source | condition | generation."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from equirelax.experiments.kit.guards import require_writable
from equirelax.experiments.scg.config import GENERATOR_FILE, PRESETS, preset_name
from equirelax.experiments.scg.plots import plot_completion
from equirelax.scg.completion import load_generator, similarity


def load_image(path: Path, size: int = 32) -> torch.Tensor:
    """An image file as a ``(1, 3, size, size)`` tensor in [0, 1]: centre-cropped to a square,
    then resized (area-averaging Lanczos)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise SystemExit(f"--image {path}: no such file")
    try:
        img = Image.open(path).convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise SystemExit(f"--image {path}: not an image PIL can read ({err})") from err
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size),
                                                                Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def cmd_generate(args: argparse.Namespace) -> int:
    """Complete one image file from one condition; write source | condition | generation (and
    the mean of ``--samples`` generations when there are several)."""
    if not args.image:
        raise SystemExit("generate needs --image PATH")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    output = Path(args.output) if args.output else \
        Path(args.image).with_name(Path(args.image).stem + f"_scg_{args.condition}.png")
    require_writable({"--output": output.parent})
    ckpt = Path(args.checkpoint) if args.checkpoint else args.runs_dir / GENERATOR_FILE
    try:
        model = load_generator(ckpt, device=args.device)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from err
    if args.condition not in model.controls:
        raise SystemExit(f"--condition {args.condition!r}: {ckpt} has branches "
                         f"{sorted(model.controls)}")
    image = load_image(Path(args.image))
    steps = args.sample_steps or PRESETS[preset_name(args)].sample_steps
    steps = min(steps, model.base.config.steps)
    gens = []
    for k in range(args.samples):
        noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(args.seed + k))
        hint, gen = model.complete(image, args.condition, noise, steps)
        gens.append(gen)
    mean = torch.stack(gens).mean(0) if args.samples > 1 else None
    plot_completion(image, hint, gens[0], args.condition, output, mean=mean)
    outputs = {"generation": gens[0]}
    if mean is not None:
        outputs[f"mean of {args.samples}"] = mean
    parts = []
    for name, img in outputs.items():
        scores = similarity(img, image)
        parts.append(f"{name}: grey PSNR {scores['psnr_grey']:.2f} dB, grey SSIM "
                     f"{scores['ssim_grey']:.3f}")
    print(f"wrote {output}  ({', '.join(parts)}; against the resized source)")
    return 0
