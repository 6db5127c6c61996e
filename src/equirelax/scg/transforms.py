"""Random rigid transformations ``L_delta`` of images and where they send feature locations.

A transformation is ``delta = (t_x, t_y, theta)`` per image, acting by resampling:
``I'(p) = I(R(theta) p + t)`` in normalised coordinates (``[-1, 1]``, ``align_corners=False``),
which is what ``affine_grid``/``grid_sample`` compute. The equivariance loss needs, for each
location ``p`` of the transformed feature map ``f' = E(I')``, its source ``q = R p + t`` in the
feature map ``f = E(I)``: the nearest feature index ``n = round(q)`` and the sub-stride offset
``d = q - n`` in ``[-0.5, 0.5)`` feature units (``[-0.5 s, 0.5 s)`` pixels, the paper's range),
plus a validity mask that drops locations whose source lies outside ``|x|, |y| < radius``
(the border region filled by padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class RigidTransform:
    """Per-image rigid transformations: ``theta`` (radians) and ``tx``, ``ty`` (normalised)."""

    theta: torch.Tensor
    tx: torch.Tensor
    ty: torch.Tensor

    def __post_init__(self) -> None:
        shapes = {tuple(self.theta.shape), tuple(self.tx.shape), tuple(self.ty.shape)}
        if len(shapes) != 1 or self.theta.dim() != 1:
            raise ValueError(f"theta, tx, ty must be 1-D of equal length, got shapes {shapes}")

    @property
    def batch(self) -> int:
        """Number of transformations."""
        return self.theta.shape[0]

    def matrix(self) -> torch.Tensor:
        """Affine matrices ``(B, 2, 3)`` mapping output to source coordinates."""
        c, s = torch.cos(self.theta), torch.sin(self.theta)
        return torch.stack(
            [torch.stack([c, -s, self.tx], -1), torch.stack([s, c, self.ty], -1)], dim=1
        )

    @staticmethod
    def sample(batch: int, max_translation: float = 0.3, rotate: bool = True,
               generator: torch.Generator | None = None) -> RigidTransform:
        """Uniform translations in ``[-max_translation, max_translation]`` (normalised units) and,
        when ``rotate``, uniform angles in ``[0, 2 pi)``."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if not 0 <= max_translation <= 1:
            raise ValueError(f"max_translation must lie in [0, 1], got {max_translation}")
        u = torch.rand(3, batch, generator=generator)
        theta = u[0] * 2 * math.pi if rotate else torch.zeros(batch)
        t = (2 * u[1:] - 1) * max_translation
        return RigidTransform(theta, t[0].contiguous(), t[1].contiguous())


def _check_square(images: torch.Tensor) -> int:
    if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square images (B, C, S, S), got {tuple(images.shape)}")
    return images.shape[-1]


def warp_images(images: torch.Tensor, transform: RigidTransform) -> torch.Tensor:
    """Apply ``L_delta``: bilinear resampling, zeros outside the image."""
    size = _check_square(images)
    if transform.batch != images.shape[0]:
        raise ValueError(f"{transform.batch} transforms for {images.shape[0]} images")
    grid = F.affine_grid(transform.matrix().to(images), [images.shape[0], 1, size, size],
                         align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def image_mask(size: int, transform: RigidTransform, radius: float = 0.9) -> torch.Tensor:
    """``(B, 1, size, size)`` mask of output pixels whose source lies within ``radius``."""
    grid = F.affine_grid(transform.matrix(), [transform.batch, 1, size, size],
                         align_corners=False)
    return (grid.abs() < radius).all(-1).unsqueeze(1).float()


@dataclass
class FeatureCorrespondence:
    """Where each location of ``f' = E(L_delta I)`` comes from in ``f = E(I)``.

    ``index``: ``(B, h, w)`` flat index ``n_y * w + n_x`` of the nearest source feature (clamped
    into range); ``offset``: ``(B, h, w, 2)`` sub-stride offset ``(d_x, d_y)`` in feature units;
    ``mask``: ``(B, 1, h, w)`` validity.
    """

    index: torch.Tensor
    offset: torch.Tensor
    mask: torch.Tensor


def feature_correspondence(image_size: int, feature_size: int, stride: int,
                           transform: RigidTransform, radius: float = 0.9
                           ) -> FeatureCorrespondence:
    """Source index, sub-stride offset and mask for every feature location of ``f'``.

    Feature ``j`` of a stride-``s`` convolution padded by half its kernel is centred on pixel
    ``j * s``, whose normalised coordinate is ``(2 j s + 1) / S - 1``.
    """
    if feature_size != math.ceil(image_size / stride):
        raise ValueError(
            f"feature size {feature_size} does not match image size {image_size} at stride "
            f"{stride} (expected {math.ceil(image_size / stride)})"
        )
    j = torch.arange(feature_size, dtype=torch.float32)
    coord = (2 * j * stride + 1) / image_size - 1
    py, px = torch.meshgrid(coord, coord, indexing="ij")
    A = transform.matrix().float()  # (B, 2, 3)
    qx = A[:, 0, 0, None, None] * px + A[:, 0, 1, None, None] * py + A[:, 0, 2, None, None]
    qy = A[:, 1, 0, None, None] * px + A[:, 1, 1, None, None] * py + A[:, 1, 2, None, None]
    mask = (qx.abs() < radius) & (qy.abs() < radius)
    # normalised -> pixel -> feature units
    fx = ((qx + 1) * image_size - 1) / (2 * stride)
    fy = ((qy + 1) * image_size - 1) / (2 * stride)
    nx, ny = torch.round(fx), torch.round(fy)
    offset = torch.stack([fx - nx, fy - ny], dim=-1).clamp(-0.5, 0.5)
    inside = (nx >= 0) & (nx < feature_size) & (ny >= 0) & (ny < feature_size)
    mask = mask & inside
    nx = nx.clamp(0, feature_size - 1).long()
    ny = ny.clamp(0, feature_size - 1).long()
    return FeatureCorrespondence(ny * feature_size + nx, offset, mask.unsqueeze(1).float())


def gather_features(f: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick ``f[b, :, index[b]]``: ``f`` ``(B, C, h, w)``, ``index`` ``(B, h', w')`` flat."""
    b, c = f.shape[:2]
    flat = f.reshape(b, c, -1)
    idx = index.reshape(b, 1, -1).expand(b, c, -1)
    return flat.gather(2, idx).reshape(b, c, *index.shape[1:])
