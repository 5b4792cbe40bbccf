"""Occupancy pictures (docs/occupancy.md, "Occupancy pictures"): Occ3D label grids as BEV images, GT vs
prediction comparisons, scene GIFs and 3D voxel renders.

Grids are ``(X, Y, Z)`` uint8 class indices on ``OCC3D_GRID`` (x forward, y left, z up; 17 = free). Every
label >= 17 (free, or an ignore value such as 255) counts as empty.

* BEV: each (x, y) column shows its top-most non-free class; x forward points up, y left points left, the
  ego car is outlined at the centre. Columns with no camera-visible voxel are dimmed and hatched.
* 3D: pyvista (off-screen) or open3d (``OffscreenRenderer``) when installed; otherwise an isometric view
  drawn with Pillow and numpy only (a z-buffer over the visible faces of the voxels, shaded by face
  orientation).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from perception.structures.bev_grid import OCC3D_GRID, BEVGrid
from perception.structures.classes import OCC3D_CLASSES, OCC_FREE

from .sample import save_scene_animation
from .style import BEV_BACKGROUND, EGO_COLOR, TEXT_COLOR, font

# The usual Occ3D-nuScenes colours, one per class index (docs/occupancy.md, "Occupancy pictures").
OCC3D_COLORS = np.array(
    [
        (0, 0, 0),  # 0 others: black
        (255, 120, 50),  # 1 barrier: orange
        (255, 192, 203),  # 2 bicycle: pink
        (255, 255, 0),  # 3 bus: yellow
        (0, 150, 245),  # 4 car: blue
        (0, 255, 255),  # 5 construction_vehicle: cyan
        (200, 180, 0),  # 6 motorcycle: dark yellow
        (255, 0, 0),  # 7 pedestrian: red
        (255, 240, 150),  # 8 traffic_cone: light yellow
        (135, 60, 0),  # 9 trailer: brown
        (160, 32, 240),  # 10 truck: purple
        (255, 0, 255),  # 11 driveable_surface: magenta
        (139, 137, 137),  # 12 other_flat: grey
        (75, 0, 75),  # 13 sidewalk: dark purple
        (150, 240, 80),  # 14 terrain: light green
        (230, 230, 250),  # 15 manmade: lavender
        (0, 175, 0),  # 16 vegetation: green
        (255, 255, 255),  # 17 free: never drawn (FREE_COLOR is the background)
    ],
    dtype=np.uint8,
)
FREE_COLOR = (52, 55, 62)  # free columns of a BEV panel; lighter than the canvas so "others" (black) shows
OUTSIDE_DIM = 0.55  # colour factor of columns outside the camera mask
HATCH_COLOR = (92, 96, 106)
HATCH_PERIOD = 8  # pixels between the diagonal hatch lines of the outside region
EGO_LENGTH, EGO_WIDTH = 4.8, 1.9  # the ego outline (as in the box BEV panel), metres
FACE_SHADES = (1.0, 0.78, 0.6)  # isometric faces: top (+z), back (-x, lower left), right (-y, lower right)

def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_grid(semantics, grid: BEVGrid, what: str = "semantics") -> np.ndarray:
    sem = _numpy(semantics)
    if sem.ndim != 3 or tuple(sem.shape[:2]) != tuple(grid.shape):
        raise ValueError(f"{what} must be (X, Y, Z) with (X, Y) = {grid.shape} of the grid, got {sem.shape}")
    return sem


def top_class(semantics) -> np.ndarray:
    """(X, Y) class of the top-most occupied voxel (label < 17) of every column; ``OCC_FREE`` where the
    column holds none."""
    sem = _numpy(semantics)
    occupied = sem < OCC_FREE
    top = sem.shape[-1] - 1 - occupied[..., ::-1].argmax(-1)
    cls = np.take_along_axis(sem, top[..., None], -1)[..., 0]
    return np.where(occupied.any(-1), cls, OCC_FREE).astype(np.int64)


def bev_pixel(x, y, grid: BEVGrid = OCC3D_GRID, cell_pixels: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (column u, row v) of metric ego (x, y) in a BEV panel: x forward is up, y left is left."""
    u = (grid.y_range[1] - np.asarray(y, dtype=np.float64)) / grid.resolution * cell_pixels
    v = (grid.x_range[1] - np.asarray(x, dtype=np.float64)) / grid.resolution * cell_pixels
    return u, v


def _hatch(shape: tuple[int, int]) -> np.ndarray:
    rows, cols = np.indices(shape)
    return (rows + cols) % HATCH_PERIOD == 0


def occupancy_bev_image(
    semantics,
    mask_camera=None,
    cell_pixels: int = 4,
    grid: BEVGrid = OCC3D_GRID,
    show_ego: bool = True,
) -> Image.Image:
    """BEV picture of an Occ3D label grid, ``cell_pixels`` pixels per 0.4 m cell (800 x 800 for the default
    grid): each column in the colour of its top-most non-free class (``OCC3D_COLORS``), free columns in
    ``FREE_COLOR``; x forward up, y left left, the ego car outlined (white) at the centre. With
    ``mask_camera``, columns without any camera-visible voxel are dimmed (``OUTSIDE_DIM``) and hatched."""
    sem = _check_grid(semantics, grid)
    colors = OCC3D_COLORS.astype(np.float64).copy()
    colors[OCC_FREE] = FREE_COLOR
    rgb = colors[top_class(sem)]  # (X, Y, 3)
    outside = None
    if mask_camera is not None:
        mask = _check_grid(mask_camera, grid, "mask_camera")
        outside = ~mask.astype(bool).any(-1)
        rgb[outside] *= OUTSIDE_DIM
    # Row 0 = largest x (forward edge), column 0 = largest y (left edge).
    rgb = np.repeat(np.repeat(rgb[::-1, ::-1], cell_pixels, 0), cell_pixels, 1)
    if outside is not None:
        out_px = np.repeat(np.repeat(outside[::-1, ::-1], cell_pixels, 0), cell_pixels, 1)
        rgb[out_px & _hatch(out_px.shape)] = HATCH_COLOR
    image = Image.fromarray(np.round(rgb).astype(np.uint8))
    if show_ego:
        _draw_ego(ImageDraw.Draw(image), grid, cell_pixels)
    return image


def _draw_ego(draw: ImageDraw.ImageDraw, grid: BEVGrid, cell_pixels: int, offset=(0, 0)) -> None:
    hl, hw = EGO_LENGTH / 2, EGO_WIDTH / 2
    u, v = bev_pixel(np.array([hl, hl, -hl, -hl]), np.array([hw, -hw, -hw, hw]), grid, cell_pixels)
    corners = [(float(a) + offset[0], float(b) + offset[1]) for a, b in zip(u, v, strict=True)]
    draw.polygon(corners, outline=(0, 0, 0), width=4)
    draw.polygon(corners, outline=EGO_COLOR, width=2)
    cu, cv = bev_pixel(np.array([0.0, hl]), np.array([0.0, 0.0]), grid, cell_pixels)
    draw.line([(cu[0] + offset[0], cv[0] + offset[1]), (cu[1] + offset[0], cv[1] + offset[1])], fill=EGO_COLOR,
              width=2)


def _iou_text(iou) -> str:
    if iou is None:
        return ""
    if isinstance(iou, str):
        return iou
    if isinstance(iou, Mapping):
        return "  ".join(f"{k} {v:.1f}" for k, v in iou.items() if isinstance(v, int | float))
    return f"mIoU {float(iou):.1f}"


def _present(*grids) -> list[int]:
    found: set[int] = set()
    for g in grids:
        if g is not None:
            found |= {int(c) for c in np.unique(_numpy(g)) if c < OCC_FREE}
    return sorted(found)


def _draw_swatch_hatched(draw: ImageDraw.ImageDraw, x: int, y: int, size: int) -> None:
    base = tuple(int(c * OUTSIDE_DIM) for c in FREE_COLOR)
    draw.rectangle([x, y, x + size - 1, y + size - 1], fill=base)
    for d in range(-size, size, 5):
        draw.line([(x + max(d, 0), y + max(-d, 0)), (x + min(size - 1, size - 1 + d), y + min(size - 1,
                  size - 1 - d))], fill=HATCH_COLOR)


def render_occupancy_comparison(
    gt,
    pred=None,
    mask_camera=None,
    title: str = "",
    iou=None,
    path: str | Path | None = None,
    cell_pixels: int = 4,
    grid: BEVGrid = OCC3D_GRID,
    legend_classes: Sequence[int] | None = None,
) -> Image.Image:
    """GT and prediction BEV panels (:func:`occupancy_bev_image`) side by side (GT only when ``pred`` is
    None), with the same camera-mask dimming on both, metre ticks, a 10 m scale bar and a legend of the
    classes present (or ``legend_classes``). ``iou`` (a number: mIoU in percent; a mapping of name ->
    number; or text) is appended to ``title``. Saved as PNG when ``path`` is given."""
    panels = [("ground truth", occupancy_bev_image(gt, mask_camera, cell_pixels, grid))]
    if pred is not None:
        panels.append(("prediction", occupancy_bev_image(pred, mask_camera, cell_pixels, grid)))
    size = panels[0][1].width
    left, top, gap, legend_w, bottom = 52, 66, 40, 230, 48
    width = left + len(panels) * size + (len(panels) - 1) * gap + 28 + legend_w
    height = top + size + bottom
    canvas = Image.new("RGB", (width, max(height, 460)), BEV_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    small, label_font = font(11), font(14)
    head = "  |  ".join(t for t in (title, _iou_text(iou)) if t)
    draw.text((left, 8), head or "occupancy", fill=TEXT_COLOR, font=font(16))
    draw.text(
        (left, 30),
        "BEV, top-most occupied voxel per 0.4 m column; x forward = up, y left = left",
        fill=(170, 176, 186),
        font=small,
    )
    ticks = np.arange(np.ceil(grid.x_range[0] / 10) * 10, grid.x_range[1] + 1e-6, 10.0)
    for n, (name, panel) in enumerate(panels):
        x0 = left + n * (size + gap)
        canvas.paste(panel, (x0, top))
        draw.rectangle([x0 - 1, top - 1, x0 + size, top + size], outline=(120, 124, 132))
        draw.text((x0 + 2, top - 20), name, fill=TEXT_COLOR, font=label_font)
        for t in ticks:
            _, v = bev_pixel(t, 0.0, grid, cell_pixels)
            if 0 <= v <= size:
                draw.line([(x0 - 6, top + v), (x0 - 1, top + v)], fill=(150, 154, 162))
                draw.text((x0 - 8, top + v), f"{t:g}", fill=(150, 154, 162), font=small, anchor="rm")
            u, _ = bev_pixel(0.0, t, grid, cell_pixels)
            if 0 <= u <= size:
                draw.line([(x0 + u, top + size), (x0 + u, top + size + 5)], fill=(150, 154, 162))
                draw.text((x0 + u, top + size + 7), f"{t:g}", fill=(150, 154, 162), font=small, anchor="mt")
        draw.text((x0 + size / 2, top + size + 24), "y [m] (left)", fill=(150, 154, 162), font=small, anchor="mt")
    draw.text((6, top - 20), "x [m]", fill=(150, 154, 162), font=small)
    # Legend column.
    lx = left + len(panels) * size + (len(panels) - 1) * gap + 28
    classes = list(legend_classes) if legend_classes is not None else _present(gt, pred)
    y = top
    draw.text((lx, y - 20), "classes", fill=TEXT_COLOR, font=label_font)
    row = 21 if len(classes) <= 17 else 16
    for c in classes:
        draw.rectangle([lx, y + 2, lx + 15, y + 15], fill=tuple(int(v) for v in OCC3D_COLORS[c]),
                       outline=(120, 124, 132))
        draw.text((lx + 22, y + 1), OCC3D_CLASSES[c], fill=TEXT_COLOR, font=font(13))
        y += row
    y += 10
    draw.rectangle([lx, y + 2, lx + 15, y + 15], fill=FREE_COLOR, outline=(120, 124, 132))
    draw.text((lx + 22, y + 1), "free", fill=TEXT_COLOR, font=font(13))
    y += row
    if mask_camera is not None:
        _draw_swatch_hatched(draw, lx, y + 2, 14)
        draw.text((lx + 22, y + 1), "outside camera mask", fill=TEXT_COLOR, font=font(13))
        y += row
    draw.rectangle([lx + 3, y + 2, lx + 12, y + 15], outline=EGO_COLOR, width=2)
    draw.text((lx + 22, y + 1), "ego car", fill=TEXT_COLOR, font=font(13))
    # 10 m scale bar under the legend.
    bar = 10.0 / grid.resolution * cell_pixels
    sy = top + size - 10
    draw.line([(lx, sy), (lx + bar, sy)], fill=TEXT_COLOR, width=3)
    for xx in (lx, lx + bar):
        draw.line([(xx, sy - 5), (xx, sy + 5)], fill=TEXT_COLOR, width=2)
    draw.text((lx + bar / 2, sy - 8), "10 m", fill=TEXT_COLOR, font=small, anchor="mb")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path)
    return canvas


def occupancy_scene_gif(
    frames: Sequence[tuple],
    path: str | Path,
    fps: float = 2.0,
    titles: Sequence[str] | None = None,
    ious: Sequence | None = None,
    cell_pixels: int = 3,
    grid: BEVGrid = OCC3D_GRID,
) -> Path:
    """Animated GIF, one frame per sample: ``frames`` are (gt, pred or None, mask_camera or None) tuples,
    each drawn by :func:`render_occupancy_comparison` with one legend (the classes of all frames), so the
    frames do not jump. 2 fps matches the key-frame rate."""
    frames = list(frames)
    if not frames:
        raise ValueError("occupancy_scene_gif needs at least one frame")
    legend = _present(*[g for f in frames for g in f[:2]])
    images = [
        render_occupancy_comparison(
            gt,
            pred,
            mask,
            title=titles[i] if titles else "",
            iou=ious[i] if ious else None,
            cell_pixels=cell_pixels,
            grid=grid,
            legend_classes=legend,
        )
        for i, (gt, pred, mask) in enumerate(f[:3] for f in frames)
    ]
    return save_scene_animation(images, path, fps=fps, max_width=max(im.width for im in images))


# -- 3D ---------------------------------------------------------------------------------------------------
EGO_CLASS = len(OCC3D_COLORS)  # a pseudo class for the ego car's voxels in the 3D views


def _voxels_to_draw(semantics, mask, grid: BEVGrid, show_ego: bool) -> np.ndarray:
    """Labels to draw (X, Y, Z) int64: classes 0..16, EGO_CLASS for the ego car's free voxels, -1 empty."""
    sem = _check_grid(semantics, grid).astype(np.int64)
    labels = np.where(sem < OCC_FREE, sem, -1)
    if mask is not None:
        labels[~_check_grid(mask, grid, "mask").astype(bool)] = -1
    if show_ego:
        lo = np.array([grid.x_range[0], grid.y_range[0], grid.z_range[0]])
        res = np.array([grid.resolution, grid.resolution, grid.z_res])
        centres = [lo[a] + (np.arange(labels.shape[a]) + 0.5) * res[a] for a in range(3)]
        ix = np.abs(centres[0]) < EGO_LENGTH / 2
        iy = np.abs(centres[1]) < EGO_WIDTH / 2
        iz = (centres[2] > 0.1) & (centres[2] < 1.6)
        box = ix[:, None, None] & iy[None, :, None] & iz[None, None, :]
        labels[box & (labels < 0)] = EGO_CLASS
    return labels


def _exposed(filled: np.ndarray, axis: int, step: int) -> np.ndarray:
    """Voxels of ``filled`` whose neighbour at ``step`` (+1/-1) along ``axis`` is empty (or off the grid)."""
    pad = [(0, 0)] * 3
    pad[axis] = (1, 1)
    padded = np.pad(filled, pad)
    neighbour = np.take(padded, np.arange(filled.shape[axis]) + 1 + step, axis=axis)
    return filled & ~neighbour


def _color_table() -> np.ndarray:
    return np.vstack([OCC3D_COLORS, np.array([EGO_COLOR], np.uint8)]).astype(np.float64)


def _stamp(corners: np.ndarray) -> np.ndarray:
    """Integer pixel offsets (P, 2) whose sample point lies inside the convex polygon ``corners`` (4, 2).
    The sample point is the pixel centre nudged by a tiny generic offset, so polygons that tile the plane
    give every pixel to exactly one of them."""
    lo, hi = np.floor(corners.min(0)).astype(int) - 1, np.ceil(corners.max(0)).astype(int) + 1
    uu, vv = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
    p = np.stack([uu.ravel() + 0.5 + 1.3e-4, vv.ravel() + 0.5 + 2.9e-4], -1)
    edges = np.roll(corners, -1, 0) - corners
    cross = edges[None, :, 0] * (p[:, None, 1] - corners[None, :, 1]) - edges[None, :, 1] * (
        p[:, None, 0] - corners[None, :, 0]
    )
    inside = (cross > 0).all(1) | (cross < 0).all(1)
    return np.stack([uu.ravel()[inside], vv.ravel()[inside]], -1)


def occupancy_isometric_image(
    semantics,
    mask=None,
    voxel_pixels: int = 4,
    grid: BEVGrid = OCC3D_GRID,
    show_ego: bool = True,
    title: str = "",
    legend: bool = True,
) -> Image.Image:
    """Isometric view of the occupied voxels with Pillow and numpy only (no 3D library). The camera looks
    from behind the ego, to its right and above: x forward runs up-right, y left up-left, z up. One +x
    voxel step is (+a, -a/2) pixels, +y (-a, -a/2), +z (0, -1.25 a) with a = ``voxel_pixels``.

    Only voxels with a free neighbour on a camera-facing side are drawn, as pixel stamps of their top, back
    (-x) and right (-y) faces in the class colour times ``FACE_SHADES``; a z-buffer over the voxels' depth
    along the viewing direction keeps the nearest (the painter's order, without sorting the pixels). With
    ``mask``, only voxels where it is set are drawn. The ego car is drawn as white voxels."""
    labels = _voxels_to_draw(semantics, mask, grid, show_ego)
    filled = labels >= 0
    nx, ny, nz = labels.shape
    a = int(voxel_pixels)
    b, h = max(1, a // 2), max(1, int(round(1.25 * a)))
    steps = np.array([[a, -b], [-a, -b], [0, -h]], dtype=np.float64)  # screen (u, v) of +x, +y, +z
    margin = 8
    origin = np.array([a * ny + margin, b * (nx + ny) + h * nz + margin], dtype=np.float64)
    width, height = int(a * (nx + ny) + 2 * margin + 1), int(origin[1] + margin + 1)
    faces = {  # direction: (axis, step, corner offsets in voxel units, shade)
        "top": (2, +1, [(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)], FACE_SHADES[0]),
        "back": (0, -1, [(0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1)], FACE_SHADES[1]),
        "right": (1, -1, [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)], FACE_SHADES[2]),
    }
    # Viewing direction f with steps @ f = 0: f ~ (h, h, -2b) points away from the camera, so nearness
    # = -(f . voxel) = -h (i + j) + 2b k (an integer).
    pixel_ids, ranks_per_entry, colour_ids = [], [], []
    table = _color_table()
    for d, (axis, step, corners, _shade) in enumerate(faces.values()):
        idx = np.argwhere(_exposed(filled, axis, step))
        if not len(idx):
            continue
        stamp = _stamp(np.asarray(corners, np.float64) @ steps)
        base = np.round(origin + idx @ steps).astype(np.int64)  # integer steps: exact
        pix = base[:, None, :] + stamp[None, :, :]  # (N, P, 2)
        pixel_ids.append((pix[..., 1] * width + pix[..., 0]).ravel())
        nearness = -h * (idx[:, 0] + idx[:, 1]) + 2 * b * idx[:, 2]
        ranks_per_entry.append(np.repeat(nearness, len(stamp)))
        colour_ids.append(np.repeat(labels[tuple(idx.T)] * len(faces) + d, len(stamp)))
    shades = np.array([f[3] for f in faces.values()])
    colours = (table[:, None, :] * shades[None, :, None]).reshape(-1, 3)  # (class, face) -> rgb
    image = np.empty((height * width, 3), np.uint8)
    image[:] = BEV_BACKGROUND
    if pixel_ids:
        pix = np.concatenate(pixel_ids)
        near = np.concatenate(ranks_per_entry)
        cid = np.concatenate(colour_ids)
        # Ties in nearness: the same voxel, or voxels whose pictures do not overlap.
        zbuf = np.full(height * width, -1, np.int64)
        key = (near - near.min()) * (len(table) * len(faces)) + cid  # nearest wins, colour rides along
        np.maximum.at(zbuf, pix, key)
        hit = zbuf >= 0
        image[hit] = np.round(colours[zbuf[hit] % (len(table) * len(faces))]).astype(np.uint8)
    picture = Image.fromarray(image.reshape(height, width, 3))
    if not (title or legend):
        return picture
    return _decorate_isometric(picture, labels, title, legend, steps)


def _decorate_isometric(picture, labels, title, legend, steps) -> Image.Image:
    header, legend_w = 34, 200 if legend else 0
    canvas = Image.new("RGB", (picture.width + legend_w, picture.height + header), BEV_BACKGROUND)
    canvas.paste(picture, (0, header))
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 8), title or "occupancy (isometric)", fill=TEXT_COLOR, font=font(16))
    # Axis arrows at the lower left: x forward, y left, z up.
    o = np.array([60.0, canvas.height - 50.0])
    for vec, name in zip(steps, ("x", "y", "z"), strict=True):
        end = o + vec / np.linalg.norm(vec) * 34
        draw.line([tuple(o), tuple(end)], fill=TEXT_COLOR, width=2)
        draw.text(tuple(end + (vec / np.linalg.norm(vec)) * 9), name, fill=TEXT_COLOR, font=font(12),
                  anchor="mm")
    if legend:
        lx, y = picture.width + 4, header + 10
        present = [int(c) for c in np.unique(labels) if 0 <= c < OCC_FREE]
        for c in present:
            draw.rectangle([lx, y + 2, lx + 15, y + 15], fill=tuple(int(v) for v in OCC3D_COLORS[c]))
            draw.text((lx + 22, y + 1), OCC3D_CLASSES[c], fill=TEXT_COLOR, font=font(13))
            y += 21
        if (labels == EGO_CLASS).any():
            draw.rectangle([lx, y + 2, lx + 15, y + 15], fill=EGO_COLOR)
            draw.text((lx + 22, y + 1), "ego car", fill=TEXT_COLOR, font=font(13))
    return canvas


def _face_mesh(labels: np.ndarray, grid: BEVGrid) -> tuple[np.ndarray, np.ndarray]:
    """Quads (N, 4, 3) in metres of every face of a drawn voxel next to an empty one, and their rgb (N, 3)."""
    lo = np.array([grid.x_range[0], grid.y_range[0], grid.z_range[0]])
    res = np.array([grid.resolution, grid.resolution, grid.z_res])
    filled = labels >= 0
    unit = {  # (axis, step): counter-clockwise corners seen from outside
        (0, -1): [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)],
        (0, +1): [(1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)],
        (1, -1): [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)],
        (1, +1): [(0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0)],
        (2, -1): [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)],
        (2, +1): [(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)],
    }
    quads, rgb = [], []
    table = _color_table()
    for (axis, step), corners in unit.items():
        idx = np.argwhere(_exposed(filled, axis, step))
        quads.append(lo + (idx[:, None, :] + np.asarray(corners)[None]) * res)
        rgb.append(table[labels[tuple(idx.T)]])
    return np.concatenate(quads), np.concatenate(rgb).astype(np.uint8)


def _render_pyvista(quads, rgb, path: Path, size, title: str) -> None:
    import pyvista as pv

    n = len(quads)
    cells = np.hstack([np.full((n, 1), 4), np.arange(4 * n).reshape(n, 4)]).ravel()
    mesh = pv.PolyData(quads.reshape(-1, 3), cells)
    mesh.cell_data["rgb"] = rgb
    plotter = pv.Plotter(off_screen=True, window_size=list(size))
    plotter.set_background([c / 255 for c in BEV_BACKGROUND])
    plotter.add_mesh(mesh, scalars="rgb", rgb=True, show_edges=False)
    plotter.camera_position = [_EYE, _FOCUS, (0.0, 0.0, 1.0)]
    plotter.reset_camera()  # keeps the viewing direction, fits the scene
    plotter.camera.zoom(1.6)
    if title:
        plotter.add_text(title, font_size=12, color=[c / 255 for c in TEXT_COLOR])
    plotter.screenshot(str(path))
    plotter.close()


def _render_open3d(quads, rgb, path: Path, size, title: str) -> None:
    import open3d as o3d
    from open3d.visualization import rendering

    n = len(quads)
    mesh = o3d.geometry.TriangleMesh()
    mesh.vertices = o3d.utility.Vector3dVector(quads.reshape(-1, 3))
    base = np.arange(n)[:, None] * 4
    mesh.triangles = o3d.utility.Vector3iVector(np.vstack([base + [0, 1, 2], base + [0, 2, 3]]))
    mesh.vertex_colors = o3d.utility.Vector3dVector(np.repeat(rgb / 255.0, 4, axis=0))
    mesh.compute_vertex_normals()
    renderer = rendering.OffscreenRenderer(*size)
    renderer.scene.set_background([*(c / 255 for c in BEV_BACKGROUND), 1.0])
    material = rendering.MaterialRecord()
    material.shader = "defaultLit"
    renderer.scene.add_geometry("occupancy", mesh, material)
    renderer.setup_camera(40.0, list(_FOCUS), list(_EYE), [0.0, 0.0, 1.0])
    o3d.io.write_image(str(path), renderer.render_to_image())


# Both 3D backends look from behind the ego, to its right and above (as the Pillow view does).
_FOCUS = (6.0, 6.0, 0.0)
_EYE = (-64.0, -64.0, 60.0)
_EXTRAS = "pip install -e .[open3d] (open3d-cpu) or pip install pyvista vtk"


def _available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def render_occupancy_3d(
    semantics,
    path: str | Path,
    backend: str = "auto",
    mask=None,
    size: tuple[int, int] = (1280, 960),
    grid: BEVGrid = OCC3D_GRID,
    show_ego: bool = True,
    title: str = "",
    voxel_pixels: int = 4,
) -> Path:
    """3D picture of the occupied voxels (only where ``mask`` is set, when given) saved to ``path`` (PNG).

    ``backend``: ``'pyvista'`` (off-screen VTK) or ``'open3d'`` (``OffscreenRenderer``) render the faces
    between occupied and free voxels with lighting, ``size`` pixels; either raises ``RuntimeError`` naming
    the extras to install when it is not importable. ``'pillow'``: :func:`occupancy_isometric_image`, no
    extras (``voxel_pixels`` sets its scale; ``size`` is not used). ``'auto'``: pyvista, then open3d,
    then Pillow (also when a 3D library is installed but fails to render, with a warning)."""
    if backend not in ("auto", "pyvista", "open3d", "pillow"):
        raise ValueError(f"backend must be 'auto', 'pyvista', 'open3d' or 'pillow', got {backend!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if backend in ("pyvista", "open3d") and not _available(backend):
        raise RuntimeError(f"render_occupancy_3d(backend={backend!r}) needs {backend}: {_EXTRAS}")
    candidates = [backend] if backend != "auto" else [b for b in ("pyvista", "open3d") if _available(b)]
    for name in candidates:
        if name == "pillow":
            break
        quads, rgb = _face_mesh(_voxels_to_draw(semantics, mask, grid, show_ego), grid)
        try:
            (_render_pyvista if name == "pyvista" else _render_open3d)(quads, rgb, path, size, title)
            return path
        except Exception as err:  # an installed library without a working off-screen context
            if backend != "auto":
                raise
            warnings.warn(f"render_occupancy_3d: {name} failed ({err}); drawing the Pillow view", stacklevel=2)
    occupancy_isometric_image(semantics, mask, voxel_pixels, grid, show_ego, title).save(path)
    return path
