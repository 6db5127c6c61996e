"""Image sources for the SCG studies that need no download at run time.

The paper trains its modular autoencoder on ImageNet (100 classes) and MNIST and its generator on
COCO. None of these can be fetched here, so we draw random crops from natural colour photographs
that are already on the machine, from procedural "dead-leaves" images (occluding coloured discs
with power-law radii: natural-image-like 1/f spectra, sharp edges, colour and brightness
variation) and from scikit-learn's 8x8 digits (the MNIST stand-in).

Photographs: the natural colour photographs bundled with scikit-image (astronaut, chelsea,
coffee, rocket, the left view of the stereo motorcycle), scikit-learn (china, flower) and
matplotlib (grace_hopper), plus, when installed, the nature photographs of Debian's
``mate-backgrounds`` package (and JPEG photographs of ``gnome-backgrounds`` releases that ship
them; the 43.x release ships only rendered WebP/SVG art, which is not used). Scientific images
(hubble_deep_field, immunohistochemistry, retina) and grey images are left out: the study is about
what emerges from natural colour statistics. Photos larger than ``MAX_SIDE`` on their shorter side
are downscaled to it, so that a 32-48 px crop covers a similar part of a scene in every source.

Photos are split by name into a training set and a held-out set so that probes and generation
metrics are measured on images the models never saw; background photographs are split by sorted
file name (every ``BACKGROUND_HOLD_OUT_EVERY``-th one is held out).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TRAIN_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "rocket", "motorcycle", "china")
HELD_OUT_PHOTOS: tuple[str, ...] = ("coffee", "flower", "grace_hopper")
SOURCES: tuple[str, ...] = ("photos", "dead_leaves", "digits")
BACKGROUND_DIRS: tuple[Path, ...] = (
    Path("/usr/share/backgrounds/mate/nature"),
    Path("/usr/share/backgrounds/gnome"),
)
#: mate-backgrounds ships a dozen nature photographs (JPEG); recent gnome-backgrounds ship
#: rendered art (WebP/SVG), so only its older JPEG releases add photographs.
BACKGROUND_PACKAGES: tuple[str, ...] = ("mate-backgrounds", "gnome-backgrounds")
BACKGROUND_INSTALL_COMMAND = "./dev install-backgrounds (or: sudo apt-get install mate-backgrounds)"
BACKGROUND_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg")
BACKGROUND_HOLD_OUT_EVERY = 4
MAX_SIDE = 512
_warned_no_backgrounds = False


def backgrounds_message(dirs: Sequence[Path] = BACKGROUND_DIRS) -> str:
    """What to install when no background photographs are found in ``dirs``."""
    return (f"no background photographs found in {', '.join(str(d) for d in dirs)}; using "
            f"only the photographs bundled with scikit-image, scikit-learn and matplotlib "
            f"({len(TRAIN_PHOTOS)} for training). For more natural images "
            f"install Debian's {BACKGROUND_PACKAGES[0]} package: "
            f"`{BACKGROUND_INSTALL_COMMAND}`")


def background_photos(dirs: Sequence[Path] = BACKGROUND_DIRS) -> list[Path]:
    """The photograph files (JPEG, see ``BACKGROUND_SUFFIXES``) directly inside ``dirs``, sorted
    by name; missing folders are skipped."""
    found: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_dir():
            found += sorted(p for p in d.iterdir()
                            if p.is_file() and p.suffix.lower() in BACKGROUND_SUFFIXES)
    return found


def split_backgrounds(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Split photographs into (train, held-out): every ``BACKGROUND_HOLD_OUT_EVERY``-th by sorted
    name is held out (deterministic, independent of which folders exist)."""
    ordered = sorted(paths, key=lambda p: (p.name, str(p)))
    held = ordered[BACKGROUND_HOLD_OUT_EVERY - 1 :: BACKGROUND_HOLD_OUT_EVERY]
    return [p for p in ordered if p not in held], held


def photo_names(split: str = "train", dirs: Sequence[Path] = BACKGROUND_DIRS) -> list[str]:
    """Names of the photographs a :class:`CropSampler` of ``split`` draws from (without loading
    them), for the records of a run."""
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    train, held = split_backgrounds(background_photos(dirs))
    bundled = TRAIN_PHOTOS if split == "train" else HELD_OUT_PHOTOS
    return list(bundled) + [f"{p.parent.name}/{p.name}"
                            for p in (train if split == "train" else held)]


def _limit_size(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    h, w = image.shape[:2]
    if min(h, w) <= max_side:
        return image
    from PIL import Image

    scale = max_side / min(h, w)
    pil = Image.fromarray(image)
    return np.asarray(pil.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS))


def load_image_file(path: Path) -> np.ndarray:
    """Load a colour photograph file as float32 ``(H, W, 3)`` in [0, 1], shorter side capped at
    ``MAX_SIDE``."""
    from PIL import Image

    with Image.open(path) as im:
        image = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(_limit_size(image), dtype=np.float32) / 255.0


def load_photo(name: str) -> np.ndarray:
    """Return one bundled colour photograph as float32 ``(H, W, 3)`` in [0, 1].

    ``name``: a scikit-image data function name, ``"motorcycle"`` (left view of scikit-image's
    stereo pair), ``"china"``/``"flower"`` from ``sklearn.datasets.load_sample_images``, or
    ``"grace_hopper"`` from matplotlib's sample data.
    """
    known = TRAIN_PHOTOS + HELD_OUT_PHOTOS
    if name not in known:
        raise ValueError(f"unknown photo {name!r}; expected one of {known}")
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        images = load_sample_images()
        index = [f.rsplit("/", 1)[-1].split(".")[0] for f in images.filenames].index(name)
        image = images.images[index]
    elif name == "grace_hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
            from PIL import Image

            image = np.asarray(Image.open(fh).convert("RGB"))
    elif name == "motorcycle":
        import skimage.data

        image = skimage.data.stereo_motorcycle()[0]
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    image = _limit_size(np.ascontiguousarray(image[..., :3]))
    return np.ascontiguousarray(image, dtype=np.float32) / 255.0


def dead_leaves(size: int, rng: np.random.Generator, n_discs: int = 300,
                min_radius: float = 1.0, max_radius: float | None = None) -> np.ndarray:
    """Render one dead-leaves image ``(size, size, 3)`` in [0, 1].

    Discs are drawn front to back with radii from a ``r^-3`` power law between ``min_radius`` and
    ``max_radius`` (default ``size / 2``); this law gives the scale invariance of natural images.
    Each disc has a uniformly random colour, so the images carry colour, brightness and edges.
    """
    if size < 4:
        raise ValueError(f"size must be >= 4, got {size}")
    max_radius = size / 2 if max_radius is None else max_radius
    if not 0 < min_radius < max_radius:
        raise ValueError(f"need 0 < min_radius < max_radius, got {min_radius}, {max_radius}")
    image = np.zeros((size, size, 3), dtype=np.float32)
    covered = np.zeros((size, size), dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Inverse-CDF sampling of p(r) ~ r^-3 on [min_radius, max_radius].
    a, b = min_radius**-2, max_radius**-2
    for _ in range(n_discs):
        r = (a - rng.random() * (a - b)) ** -0.5
        cx, cy = rng.uniform(-r, size + r, size=2)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r) & ~covered
        image[disc] = rng.random(3).astype(np.float32)
        covered |= disc
        if covered.all():
            break
    image[~covered] = rng.random(3).astype(np.float32)
    return image


def digit_images(size: int) -> np.ndarray:
    """scikit-learn's 1,797 digits, upsampled to ``(N, size, size, 3)`` grey RGB in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]
    inner = max(4, round(size * 0.75))
    up = F.interpolate(digits, size=(inner, inner), mode="bilinear", align_corners=False)
    pad = size - inner
    up = F.pad(up, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    return up.clamp(0, 1).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()


@dataclass
class CropSampler:
    """An endless stream of random RGB crops ``(B, 3, size, size)`` in [0, 1].

    ``weights`` gives the mixing proportion of each source in ``SOURCES`` (photos, dead leaves,
    digits). ``split`` picks the training or the held-out photographs; dead-leaves images come from
    disjoint seeds in the two splits (the held-out stream uses ``seed + 10**6``). Background
    photographs found in ``background_dirs`` join the bundled ones (split by
    :func:`split_backgrounds`); ``()`` uses the bundled photographs only. Every photograph is
    drawn with equal probability; ``photo_names`` lists those in use.
    """

    size: int = 32
    weights: Sequence[float] = (0.7, 0.3, 0.0)
    split: str = "train"
    seed: int = 0
    n_leaf_images: int = 32
    background_dirs: Sequence[Path] = BACKGROUND_DIRS
    photo_names: list[str] = field(default_factory=list, init=False)
    _photos: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _leaves: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _digits: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.split not in ("train", "held_out"):
            raise ValueError(f"split must be 'train' or 'held_out', got {self.split!r}")
        if len(self.weights) != len(SOURCES):
            raise ValueError(f"weights needs {len(SOURCES)} entries {SOURCES}, got {self.weights}")
        w = np.asarray(self.weights, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {self.weights}")
        if self.size < 8:
            raise ValueError(f"crop size must be >= 8, got {self.size}")
        self._p = w / w.sum()
        base = self.seed if self.split == "train" else self.seed + 10**6
        self._rng = np.random.default_rng(base)
        names = TRAIN_PHOTOS if self.split == "train" else HELD_OUT_PHOTOS
        if self._p[0] > 0:
            self._photos = [load_photo(n) for n in names]
            self.photo_names = list(names)
            found = background_photos(self.background_dirs)
            train, held = split_backgrounds(found)
            for path in train if self.split == "train" else held:
                self._photos.append(load_image_file(path))
                self.photo_names.append(f"{path.parent.name}/{path.name}")
            global _warned_no_backgrounds
            if self.background_dirs and not found and not _warned_no_backgrounds:
                _warned_no_backgrounds = True
                warnings.warn(backgrounds_message(self.background_dirs), UserWarning,
                              stacklevel=2)
            small = [n for n, im in zip(self.photo_names, self._photos, strict=True)
                     if min(im.shape[:2]) < self.size]
            if small:
                raise ValueError(f"photographs smaller than the crop size {self.size}: {small}")
        if self._p[1] > 0:
            leaf_size = max(4 * self.size, 96)
            self._leaves = [dead_leaves(leaf_size, self._rng) for _ in range(self.n_leaf_images)]
        if self._p[2] > 0:
            self._digits = digit_images(self.size)

    def _crop(self, image: np.ndarray) -> np.ndarray:
        h, w, _ = image.shape
        y = self._rng.integers(0, h - self.size + 1)
        x = self._rng.integers(0, w - self.size + 1)
        return image[y : y + self.size, x : x + self.size]

    def sample(self, batch: int) -> torch.Tensor:
        """Draw ``batch`` crops as a float32 tensor ``(batch, 3, size, size)``."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        kinds = self._rng.choice(len(SOURCES), size=batch, p=self._p)
        crops = []
        for kind in kinds:
            if kind == 0:
                crops.append(self._crop(self._photos[self._rng.integers(len(self._photos))]))
            elif kind == 1:
                crops.append(self._crop(self._leaves[self._rng.integers(len(self._leaves))]))
            else:
                assert self._digits is not None
                crops.append(self._digits[self._rng.integers(len(self._digits))])
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
