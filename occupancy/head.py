"""The occupancy task head on the BEV spine: its own voxel grid, FlashOcc's channel-to-height, and the
cross-entropy + Lovász-softmax losses over a chosen voxel mask (docs/occupancy.md, "Head and losses").

Data flow of :class:`OccupancyHead`:

1. **Resampling.** The spine's BEV (B, C, Nx, Ny) lives on the spine's grid (``spine.grid``); the head
   predicts on its own voxel grid (default Occ3D's 200 x 200 x 16 of 0.4 m). Its convolutions run on
   the *feature grid*: the voxel grid's range at ``feature_resolution`` (default the voxel grid's own
   resolution). When the spine's x/y grid differs from the feature grid, the BEV is sampled bilinearly
   at the metric centres of the feature grid's cells (:func:`resample_bev`). Inside the spine's range a
   centre within half a cell of the edge takes the edge cells' values (border); a centre outside the
   spine's range gets zeros.
2. **Channel-to-height.** A 2D conv stack maps the resampled BEV to ``height_channels * Z`` channels,
   viewed as (B, height_channels, Z, X, Y): channel ``c * Z + z`` becomes feature c of height z.
3. Optionally ``num_3d_convs`` blocks of Conv3d 3x3x3 + norm + ReLU over that volume.
4. A per-voxel classifier (1x1x1 convs, run as matrix products) gives logits on the feature grid; when
   it is coarser than the voxel grid they are upsampled bilinearly in x/y onto the voxel grid's cell
   centres (both grids span the same range, so ``align_corners=False`` interpolation places every
   centre at its metric position). Logits are laid out (B, num_classes, X, Y, Z), the index order of
   the Occ3D labels ``[x, y, z]``. In training they stay on the feature grid and the losses read them
   at the sampled voxels only (:class:`FeatureGridLogits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bev.heads import TaskHead
from bev.spine import SpineOutput, make_grid
from ops.export import is_exportable
from perception.structures.bev_grid import OCC3D_GRID, BEVGrid
from perception.structures.classes import OCC3D_CLASSES
from perception.structures.targets import BatchTargets, MissingTargetError

from .losses import class_weights_from_frequencies, lovasz_softmax, weighted_cross_entropy

__all__ = ["FeatureGridLogits", "OccupancyHead", "bev_sampling_grid", "feature_grid", "resample_bev"]

MASK_TARGETS = {"camera": "occ_mask_camera", "lidar": "occ_mask_lidar", "none": None}


def same_xy_cells(a: BEVGrid, b: BEVGrid) -> bool:
    """Whether two grids have the same x/y cells (ranges and resolution); z does not matter here."""
    return a.x_range == b.x_range and a.y_range == b.y_range and a.shape == b.shape


def bev_sampling_grid(source: BEVGrid, target: BEVGrid, device=None) -> tuple[Tensor, Tensor]:
    """Where the centres of ``target``'s cells fall on a BEV map of ``source``'s grid.

    Returns ``coords`` (Nx_t, Ny_t, 2) float64, the ``grid_sample`` coordinates (align_corners=False) of each
    target centre on a (Nx_s, Ny_s) map: last entry along the map's last dim (y), first along dim -2
    (x), and ``inside`` (Nx_t, Ny_t) bool, the centres within the source's metric range (bounds
    included). ``-1`` and ``1`` are the outer edges of the source's first and last cells, so a metric
    coordinate m of a range [lo, hi] maps to ``2 (m - lo) / (hi - lo) - 1``."""
    nx, ny = target.shape
    xs = target.x_range[0] + (torch.arange(nx, dtype=torch.float64, device=device) + 0.5) * target.resolution
    ys = target.y_range[0] + (torch.arange(ny, dtype=torch.float64, device=device) + 0.5) * target.resolution
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1)  # (Nx_t, Ny_t, 2) metric (x, y), float64
    lo = torch.tensor([source.x_range[0], source.y_range[0]], dtype=torch.float64, device=device)
    hi = torch.tensor([source.x_range[1], source.y_range[1]], dtype=torch.float64, device=device)
    normalised = 2.0 * (centres - lo) / (hi - lo) - 1.0  # (x, y) in [-1, 1] inside the range
    inside = ((normalised >= -1.0) & (normalised <= 1.0)).all(-1)
    return normalised.flip(-1), inside


def resample_bev(bev: Tensor, source: BEVGrid, target: BEVGrid) -> Tensor:
    """A BEV map (B, C, Nx_s, Ny_s) on ``source`` -> (B, C, Nx_t, Ny_t) on ``target``'s x/y cells.

    Bilinear at the target's cell centres through both grids' metric coordinates (no fixed scale
    factor). Inside the source's range, centres between the outermost source cell centres and the
    range's edge take the edge values (``padding_mode='border'``); target cells whose centre lies
    outside the source's range are zero (no feature was computed there). Same x/y cells: returned
    unchanged."""
    if tuple(bev.shape[-2:]) != source.shape:
        raise ValueError(f"BEV map of shape {tuple(bev.shape[-2:])} does not match its grid {source.shape}")
    if same_xy_cells(source, target):
        return bev
    coords, inside = bev_sampling_grid(source, target)  # on the CPU: no device sync for the check below
    coords = coords.to(bev.device, bev.dtype)[None].expand(bev.shape[0], -1, -1, -1)
    sampled = F.grid_sample(bev, coords, mode="bilinear", padding_mode="border", align_corners=False)
    if not is_exportable() and bool(inside.all()):  # export mode reads no values (ops/export.py)
        return sampled
    return sampled * inside.to(sampled.device, sampled.dtype)


def feature_grid(voxel_grid: BEVGrid, resolution: float | None) -> BEVGrid:
    """The voxel grid's x/y range at ``resolution`` (the head's convolutions run on it); z unchanged.

    Raises ValueError when ``resolution`` does not divide both x/y ranges into whole cells, because
    the upsampled logits would then not share the voxel grid's edges."""
    if resolution is None or resolution == voxel_grid.resolution:
        return voxel_grid
    if resolution <= 0:
        raise ValueError(f"feature_resolution must be positive, got {resolution}")
    for name in ("x_range", "y_range"):
        lo, hi = getattr(voxel_grid, name)
        cells = (hi - lo) / resolution
        if abs(cells - round(cells)) > 1e-6:
            raise ValueError(f"feature_resolution={resolution} m does not divide the voxel grid's {name} "
                             f"{(lo, hi)} into whole cells ({cells:.3f})")
    return replace(voxel_grid, resolution=float(resolution), z_resolution=voxel_grid.z_res)


@dataclass(frozen=True)
class FeatureGridLogits:
    """Occupancy logits on the head's feature grid, ``coarse`` (B, Z, X', Y', classes) with the classes
    last, for a voxel grid of ``voxel_shape`` (X, Y, Z) over the same range: bilinear in x/y at
    ``align_corners=False`` (each voxel centre at its metric position), either for every voxel
    (:meth:`dense`) or for a few (:meth:`at`), with the same values."""

    coarse: Tensor
    voxel_shape: tuple[int, int, int]

    @property
    def device(self) -> torch.device:
        return self.coarse.device

    def dense(self) -> Tensor:
        """(B, classes, X, Y, Z) on the voxel grid."""
        b, nz, _, _, classes = self.coarse.shape
        # 2D interpolation over the (classes x Z) planes: several times faster on CPU than the
        # equivalent trilinear call at unchanged depth.
        planes = self.coarse.permute(0, 4, 1, 2, 3).flatten(1, 2)
        if planes.shape[-2:] != self.voxel_shape[:2]:
            planes = F.interpolate(planes, size=self.voxel_shape[:2], mode="bilinear", align_corners=False)
        return planes.view(b, classes, nz, *self.voxel_shape[:2]).permute(0, 1, 3, 4, 2)

    def at(self, b: Tensor, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """(N, classes) at the voxels (b, x, y, z): what :meth:`dense` holds there, from 4 coarse cells each,
        gathered as rows of the classes-last volume in one call."""
        _, nz, cx, cy, classes = self.coarse.shape
        (x0, x1, wx), (y0, y1, wy) = (_linear_taps(i, fine, coarse) for i, fine, coarse in
                                      ((x, self.voxel_shape[0], cx), (y, self.voxel_shape[1], cy)))
        plane = (b * nz + z) * cx
        rows = torch.cat([(plane + xi) * cy + yi for xi in (x0, x1) for yi in (y0, y1)])
        taps = self.coarse.reshape(-1, classes).index_select(0, rows).view(4, -1, classes)
        wx, wy = wx.to(taps.dtype)[:, None], wy.to(taps.dtype)[:, None]
        weights = torch.stack([(1 - wx) * (1 - wy), (1 - wx) * wy, wx * (1 - wy), wx * wy])
        return (taps * weights).sum(0)


def _linear_taps(index: Tensor, fine: int, coarse: int) -> tuple[Tensor, Tensor, Tensor]:
    """The two coarse cells and the weight of the second for fine cells ``index``, as ``F.interpolate``
    (linear, ``align_corners=False``, output size given) computes them: source position
    ``(i + 0.5) * coarse / fine - 0.5`` clamped at 0, the upper tap clamped at the last cell."""
    source = ((index.double() + 0.5) * (coarse / fine) - 0.5).clamp(min=0.0)
    low = source.floor().long().clamp(max=coarse - 1)
    high = (low + 1).clamp(max=coarse - 1)
    return low, high, source - low.double()


def _pointwise(classifier: nn.Module, volume: Tensor) -> Tensor:
    """``classifier`` (1x1x1 Conv3d layers and activations) applied to ``volume`` (B, C, Z, X, Y), as
    matrix products over the voxels laid out classes last: (B, Z, X, Y, classes). The same values as
    the convolutions, which oneDNN runs at a few GFLOP/s on CPU, at a fraction of their cost."""
    x = volume.permute(0, 2, 3, 4, 1)
    spatial = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    for layer in classifier.modules() if isinstance(classifier, nn.Sequential) else [classifier]:
        if isinstance(layer, nn.Conv3d):
            if layer.kernel_size != (1, 1, 1):
                raise ValueError(f"the per-voxel classifier takes 1x1x1 convolutions, got {layer.kernel_size}")
            x = F.linear(x, layer.weight.flatten(1), layer.bias)
        elif not isinstance(layer, nn.Sequential):
            x = layer(x)
    return x.view(*spatial, -1)


def _norm(kind: str, channels: int, dims: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)
    if kind == "gn":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'bn', 'gn' or 'none', got {kind!r}")


class OccupancyHead(TaskHead):
    """Semantic occupancy on the head's own voxel grid (see the module docstring).

    Args:
        in_channels: channels of the spine's BEV.
        voxel_grid: the head's voxel grid, a BEVGrid or a dict of its arguments (default Occ3D's).
        feature_resolution: x/y cell size (m) of the grid the convolutions run on (None: the voxel
            grid's); a coarser one (e.g. 0.8 m) costs a quarter of the compute and its logits are
            upsampled onto the voxel grid. It must divide the voxel grid's x and y ranges.
        grid: the spine's BEV grid (the meta-architecture fills it), kept as ``self.grid``; ``forward``
            resamples from ``spine.grid``, the grid the BEV it receives is on.
        mid_channels: channels of the 2D conv stack (default ``in_channels``).
        num_2d_convs: 3x3 conv + norm + ReLU blocks before the channel-to-height conv (may be 0).
        height_channels: features per height after channel-to-height (C'); the last 2D conv outputs
            ``height_channels * Z``.
        num_3d_convs: Conv3d 3x3x3 + norm + ReLU blocks on the (C', Z, X, Y) volume.
        classifier_channels: hidden width of the per-voxel classifier (None: a single linear layer).
        norm: ``'bn'``, ``'gn'`` or ``'none'`` for every conv block.
        num_classes: 18 for Occ3D (free = 17 is a class like the others).
        class_weights: per-class cross-entropy weights (None: all 1).
        class_frequencies: per-class voxel counts instead of ``class_weights``; the weights are then
            ``1 / ln(1.02 + n_c / sum n)`` (:func:`occupancy.losses.class_weights_from_frequencies`).
        loss_mask: ``'camera'`` (train inside ``occ_mask_camera`` only), ``'lidar'``
            (``occ_mask_lidar``) or ``'none'`` (every voxel).
        loss_ce_weight, loss_lovasz_weight: factors of ``loss_ce`` and ``loss_lovasz`` (a zero weight
            leaves the key out).
        lovasz_classes: ``'present'`` or ``'all'`` (see :func:`occupancy.losses.lovasz_softmax`).
        loss_max_voxels: when more voxels of the batch count than this, both losses are evaluated on
            that many of them drawn uniformly at random each step (a stochastic estimate of the full
            losses; the Lovász sort dominates the head's cost on CPU); None: on all of them.
        ignore_index: a label value that never counts (Occ3D has none; 255 by convention).
    """

    required_targets = ("occ_semantics",)
    optional_targets = ("occ_mask_camera", "occ_mask_lidar")

    def __init__(self, in_channels: int, voxel_grid: BEVGrid | dict | None = None, grid: BEVGrid | dict | None = None,
                 feature_resolution: float | None = None, mid_channels: int | None = None, num_2d_convs: int = 1,
                 height_channels: int = 16,
                 num_3d_convs: int = 0, classifier_channels: int | None = 32, norm: str = "bn",
                 num_classes: int = len(OCC3D_CLASSES), class_weights: Sequence[float] | None = None,
                 class_frequencies: Sequence[float] | None = None, loss_mask: str = "camera",
                 loss_ce_weight: float = 1.0, loss_lovasz_weight: float = 1.0, lovasz_classes: str = "present",
                 loss_max_voxels: int | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        if loss_mask not in MASK_TARGETS:
            raise ValueError(f"loss_mask must be one of {sorted(MASK_TARGETS)}, got {loss_mask!r}")
        if class_weights is not None and class_frequencies is not None:
            raise ValueError("give class_weights or class_frequencies, not both")
        self.voxel_grid = make_grid(voxel_grid) if voxel_grid is not None else OCC3D_GRID
        self.feature_grid = feature_grid(self.voxel_grid, feature_resolution)
        self.grid = make_grid(grid)
        self.num_classes, self.height_channels = num_classes, height_channels
        self.loss_mask, self.mask_key = loss_mask, MASK_TARGETS[loss_mask]
        if self.mask_key is not None:
            # The mask this configuration trains with is required, so BatchTargets.check names this head
            # and the key when a batch lacks it (the class attribute lists what every configuration needs).
            self.required_targets = (*type(self).required_targets, self.mask_key)
        self.loss_ce_weight, self.loss_lovasz_weight = loss_ce_weight, loss_lovasz_weight
        self.lovasz_classes, self.ignore_index = lovasz_classes, ignore_index
        if loss_max_voxels is not None and loss_max_voxels < 1:
            raise ValueError(f"loss_max_voxels must be a positive count or None, got {loss_max_voxels}")
        self.loss_max_voxels = loss_max_voxels

        weights = None
        if class_frequencies is not None:
            weights = class_weights_from_frequencies(class_frequencies)
        elif class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32)
        if weights is not None and weights.shape != (num_classes,):
            raise ValueError(f"class weights need {num_classes} entries, got {tuple(weights.shape)}")
        self.register_buffer("class_weights", weights, persistent=False)

        depth = self.voxel_grid.voxel_shape[2]
        mid = mid_channels or in_channels
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_2d_convs):
            blocks += [nn.Conv2d(channels, mid, 3, padding=1, bias=norm == "none"), _norm(norm, mid, 2),
                       nn.ReLU(inplace=True)]
            channels = mid
        blocks.append(nn.Conv2d(channels, height_channels * depth, 1))
        self.bev_convs = nn.Sequential(*blocks)
        blocks = []
        for _ in range(num_3d_convs):
            blocks += [nn.Conv3d(height_channels, height_channels, 3, padding=1, bias=norm == "none"),
                       _norm(norm, height_channels, 3), nn.ReLU(inplace=True)]
        self.voxel_convs = nn.Sequential(*blocks)
        if classifier_channels:
            self.classifier = nn.Sequential(nn.Conv3d(height_channels, classifier_channels, 1), nn.ReLU(inplace=True),
                                            nn.Conv3d(classifier_channels, num_classes, 1))
        else:
            self.classifier = nn.Conv3d(height_channels, num_classes, 1)

    # -- forward --------------------------------------------------------------------------------
    def forward(self, spine: SpineOutput) -> Tensor | FeatureGridLogits:
        """Logits (B, num_classes, X, Y, Z) on the head's voxel grid.

        In training the logits stay on the feature grid, classes last (:class:`FeatureGridLogits`): the
        losses read them at the sampled voxels only, and upsampling and gathering the whole volume
        first cost a quarter of the tiny multi-task model's step on CPU."""
        bev = resample_bev(spine.bev, spine.grid, self.feature_grid)
        b, _, nx, ny = bev.shape
        nz = self.voxel_grid.voxel_shape[2]
        volume = self.bev_convs(bev).view(b, self.height_channels, nz, nx, ny)  # channel c·Z + z -> (c, z)
        logits = FeatureGridLogits(_pointwise(self.classifier, self.voxel_convs(volume)),  # (B, Z, X', Y', classes)
                                   self.voxel_grid.voxel_shape)
        return logits if self.training else logits.dense()

    # -- loss -----------------------------------------------------------------------------------
    def _voxel_targets(self, logits: Tensor | FeatureGridLogits, targets: BatchTargets) -> tuple[Tensor, Tensor]:
        """Labels (B, X, Y, Z) long and the bool mask of the voxels that count."""
        labels = _stacked(targets["occ_semantics"], logits.device).long()
        shape = tuple(logits.voxel_shape if isinstance(logits, FeatureGridLogits) else logits.shape[-3:])
        if tuple(labels.shape[1:]) != shape:
            raise ValueError(f"OccupancyHead: occ_semantics has shape {tuple(labels.shape[1:])} per sample, the "
                             f"head's voxel grid {shape}")
        keep = labels != self.ignore_index
        if self.mask_key is not None:
            if self.mask_key not in targets:
                raise MissingTargetError(
                    f"OccupancyHead with loss_mask={self.loss_mask!r} needs the target {self.mask_key!r}, which the "
                    f"batch lacks (it has {sorted(targets)}); load it in the dataset or set loss_mask='none'")
            mask = _stacked(targets[self.mask_key], logits.device).bool()
            if tuple(mask.shape) != tuple(labels.shape):
                raise ValueError(f"OccupancyHead: {self.mask_key} has shape {tuple(mask.shape)}, occ_semantics "
                                 f"{tuple(labels.shape)}")
            keep = keep & mask
        return labels, keep

    def loss(self, outputs: Tensor | FeatureGridLogits, targets: BatchTargets) -> dict[str, Tensor]:
        """``loss_ce`` (class-weighted cross-entropy) and ``loss_lovasz`` (Lovász-softmax) over the voxels
        of ``loss_mask`` in the whole batch (pooled, not per sample)."""
        labels, keep = self._voxel_targets(outputs, targets)
        index = keep.nonzero(as_tuple=True)  # (b, x, y, z) of each counted voxel
        count = index[0].numel()
        if self.loss_max_voxels is not None and count > self.loss_max_voxels:
            chosen = torch.randperm(count, device=keep.device)[:self.loss_max_voxels]
            index = tuple(i[chosen] for i in index)
        b, x, y, z = index
        if isinstance(outputs, FeatureGridLogits):
            flat_logits = outputs.at(b, x, y, z).float()
        else:
            flat_logits = outputs[b, :, x, y, z].float()  # (N, classes), gathered without copying the volume
        flat_labels = labels[index]
        losses = {}
        if self.loss_ce_weight:
            losses["loss_ce"] = self.loss_ce_weight * weighted_cross_entropy(flat_logits, flat_labels,
                                                                             self.class_weights)
        if self.loss_lovasz_weight:
            probs = flat_logits.softmax(-1)
            losses["loss_lovasz"] = self.loss_lovasz_weight * lovasz_softmax(probs, flat_labels, self.lovasz_classes)
        return losses

    # -- predict --------------------------------------------------------------------------------
    def predict(self, outputs: Tensor | FeatureGridLogits, meta: list[dict]) -> list[dict]:
        """Per sample ``dict(semantics=uint8 (X, Y, Z))``, the arg-max class, on the CPU."""
        if isinstance(outputs, FeatureGridLogits):
            outputs = outputs.dense()
        labels = outputs.detach().argmax(1).to(torch.uint8).cpu()
        return [dict(semantics=sample) for sample in labels]


def _stacked(value, device) -> Tensor:
    """A batch-stacked tensor, or a per-sample list of tensors/arrays stacked, on ``device``."""
    if isinstance(value, Tensor):
        return value.to(device)
    return torch.stack([torch.as_tensor(v) for v in value]).to(device)
