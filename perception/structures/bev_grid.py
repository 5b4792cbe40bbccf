"""The BEV grid: owns the cell <-> metre mapping for every BEV head (ego frame, x forward, y left).

Layout (docs/architecture.md): a BEV map is (..., Nx, Ny), x along dim -2, y along dim -1; a voxel
grid (Nx, Ny, Nz) as Occ3D's ``[x, y, z]``. Cell i covers ``[min + i*res, min + (i+1)*res)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class BEVGrid:
    x_range: tuple[float, float] = (-51.2, 51.2)
    y_range: tuple[float, float] = (-51.2, 51.2)
    z_range: tuple[float, float] = (-5.0, 3.0)
    resolution: float = 0.512
    z_resolution: float | None = None

    def __post_init__(self) -> None:
        for name in ("x_range", "y_range", "z_range"):
            lo, hi = getattr(self, name)
            if not hi > lo:
                raise ValueError(f"BEVGrid.{name} must be (min, max) with max > min, got {(lo, hi)}")
            object.__setattr__(self, name, (float(lo), float(hi)))
        if self.resolution <= 0:
            raise ValueError(f"BEVGrid.resolution must be positive, got {self.resolution}")

    @property
    def z_res(self) -> float:
        return self.z_resolution or self.resolution

    @property
    def shape(self) -> tuple[int, int]:
        """(Nx, Ny)."""
        return (
            round((self.x_range[1] - self.x_range[0]) / self.resolution),
            round((self.y_range[1] - self.y_range[0]) / self.resolution),
        )

    @property
    def voxel_shape(self) -> tuple[int, int, int]:
        return (*self.shape, round((self.z_range[1] - self.z_range[0]) / self.z_res))

    def cell_centers(self, device=None) -> torch.Tensor:
        """(Nx, Ny, 2) metric (x, y) of each cell centre."""
        nx, ny = self.shape
        xs = self.x_range[0] + (torch.arange(nx, device=device, dtype=torch.float32) + 0.5) * self.resolution
        ys = self.y_range[0] + (torch.arange(ny, device=device, dtype=torch.float32) + 0.5) * self.resolution
        return torch.stack(torch.meshgrid(xs, ys, indexing="ij"), dim=-1)

    def axis_centers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Metric voxel centres along x (Nx), y (Ny) and z (Nz)."""
        nx, ny, nz = self.voxel_shape
        xs = self.x_range[0] + (np.arange(nx) + 0.5) * self.resolution
        ys = self.y_range[0] + (np.arange(ny) + 0.5) * self.resolution
        zs = self.z_range[0] + (np.arange(nz) + 0.5) * self.z_res
        return xs, ys, zs

    def voxel_centers(self) -> np.ndarray:
        """(Nx, Ny, Nz, 3) metric centres of the voxel grid."""
        return np.stack(np.meshgrid(*self.axis_centers(), indexing="ij"), axis=-1)

    def metres_to_cells(self, xy):
        """Continuous cell coordinates (ix, iy) of metric points (..., 2); cell i spans [i, i+1)."""
        lo = np.array([self.x_range[0], self.y_range[0]])
        if isinstance(xy, torch.Tensor):
            return (xy - torch.as_tensor(lo, dtype=xy.dtype, device=xy.device)) / self.resolution
        return (np.asarray(xy) - lo) / self.resolution

    def cells_to_metres(self, ij):
        """Metric (x, y) of continuous cell coordinates (..., 2); integer index i -> cell's min edge."""
        lo = np.array([self.x_range[0], self.y_range[0]])
        if isinstance(ij, torch.Tensor):
            return ij * self.resolution + torch.as_tensor(lo, dtype=ij.dtype, device=ij.device)
        return np.asarray(ij) * self.resolution + lo

    def axis_index(self, values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer voxel indices along ``axis`` (0 x, 1 y, 2 z) of metric coordinates (any shape) and a mask
        of those inside the grid along that axis."""
        lo = (self.x_range[0], self.y_range[0], self.z_range[0])[axis]
        res = self.z_res if axis == 2 else self.resolution
        idx = np.floor((np.asarray(values) - lo) / res).astype(np.int64)
        return idx, (idx >= 0) & (idx < self.voxel_shape[axis])

    def points_to_voxel_index(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer voxel indices (N, 3) of metric points (N, 3) and a mask of those inside the grid."""
        points = np.asarray(points)
        (ix, in_x), (iy, in_y), (iz, in_z) = (self.axis_index(points[..., k], k) for k in range(3))
        return np.stack([ix, iy, iz], axis=-1), in_x & in_y & in_z

    def crop(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> tuple[BEVGrid, slice, slice]:
        """The sub-grid over ``x_range`` x ``y_range`` (same resolution and z) and the (x, y) slices of a
        map's cells it covers. The window's edges must be cell edges of this grid, inside it."""
        slices = []
        for name, (lo, hi), (grid_lo, _), n in zip("xy", (x_range, y_range), (self.x_range, self.y_range), self.shape):
            edges = ((lo - grid_lo) / self.resolution, (hi - grid_lo) / self.resolution)
            first, last = (round(e) for e in edges)
            if any(abs(e - round(e)) > 1e-6 for e in edges) or not 0 <= first < last <= n:
                raise ValueError(f"BEVGrid.crop: {name} range {(lo, hi)} must run between cell edges of the grid's "
                                 f"{name}_range {getattr(self, name + '_range')} at {self.resolution} m")
            slices.append(slice(first, last))
        window = BEVGrid(x_range=tuple(x_range), y_range=tuple(y_range), z_range=self.z_range,
                         resolution=self.resolution, z_resolution=self.z_resolution)
        return window, slices[0], slices[1]

    def normalize(self, xyz):
        """Metric points -> [0, 1] over (x_range, y_range, z_range)."""
        lo = [self.x_range[0], self.y_range[0], self.z_range[0]]
        size = [self.x_range[1] - lo[0], self.y_range[1] - lo[1], self.z_range[1] - lo[2]]
        if isinstance(xyz, torch.Tensor):
            lo_t = torch.tensor(lo, dtype=xyz.dtype, device=xyz.device)
            return (xyz - lo_t) / torch.tensor(size, dtype=xyz.dtype, device=xyz.device)
        return (np.asarray(xyz) - np.array(lo)) / np.array(size)

    def denormalize(self, uvw):
        """[0, 1] coordinates over (x_range, y_range, z_range) -> metric points (inverse of normalize)."""
        lo = [self.x_range[0], self.y_range[0], self.z_range[0]]
        size = [self.x_range[1] - lo[0], self.y_range[1] - lo[1], self.z_range[1] - lo[2]]
        if isinstance(uvw, torch.Tensor):
            return uvw * torch.tensor(size, dtype=uvw.dtype, device=uvw.device) + torch.tensor(
                lo, dtype=uvw.dtype, device=uvw.device)
        return np.asarray(uvw) * np.array(size) + np.array(lo)


OCC3D_GRID = BEVGrid((-40.0, 40.0), (-40.0, 40.0), (-1.0, 5.4), 0.4)
