"""Synthetic 2D sets from the synthetic world: a COCO-format detection set and an ADE20K-format segmentation
set of the same camera images, with exact labels taken from the ray caster's per-pixel hits.

Layout under the output folder (docs/pretraining_2d.md, "Data"):

* ``coco/annotations/instances_{train,val}.json`` and ``coco/{train,val}/NAME.jpg``: standard COCO instances
  json; categories are the 10 detection classes with ids 1..10 in ``DETECTION_CLASSES`` order;
* ``ade/images/{training,validation}/NAME.jpg`` and ``ade/annotations/{training,validation}/NAME.png``: uint8
  label maps holding ``SEGMENTATION_2D_CLASSES`` index + 1, 0 = other (use ``reduce_zero_label``).

Every pixel is one ray through its centre; the ray caster records which cuboid or surface it hit, so the
labels are exact and occlusion-aware. A COCO box is the visible extent of its object: the tight
pixel-edge rectangle of the pixels showing it (``[x0, y0, x1 + 1 - x0, y1 + 1 - y0]`` for the extreme
pixel columns x0..x1 and rows y0..y1), ``area`` is the visible pixel count, ``segmentation`` the visible
mask as COCO RLE and ``iscrowd`` 0. Objects with fewer than ``min_visible_pixels`` visible pixels get no
annotation (too few to learn from or to match), though their pixels keep their class in the masks.
The last scene is the validation split, the others training. Deterministic per seed.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask
from tqdm import tqdm

from perception.structures.cameras import CAMERA_NAMES
from perception.structures.classes import DETECTION_CLASSES, SEGMENTATION_2D_CLASSES, SEGMENTATION_2D_OTHER

from .generator import _solids, camera_intrinsics, camera_to_ego
from .render import (
    GROUND_ID,
    SKY_ID,
    SURFACE_LANE_PAINT,
    SURFACE_ROAD,
    SURFACE_SIDEWALK,
    SURFACE_TERRAIN,
    Solids,
    camera_rays,
    ground_surfaces,
    render_camera,
)
from .world import SceneWorld, build_scene

__all__ = ["COCO_SPLITS", "ADE_SPLITS", "Synthetic2DConfig", "coco_annotations", "coco_categories",
           "generate_2d_sets", "render_view_2d", "segmentation_label", "solid_segmentation_labels"]

COCO_SPLITS = ("train", "val")
ADE_SPLITS = {"train": "training", "val": "validation"}
_OCC_BUILDING, _OCC_VEGETATION = 15, 16  # the scenery classes of world.py, in Occ3D numbering
_SURFACE_CLASS = {SURFACE_ROAD: "road", SURFACE_SIDEWALK: "sidewalk", SURFACE_TERRAIN: "terrain",
                  SURFACE_LANE_PAINT: "lane_paint"}


@dataclass(frozen=True)
class Synthetic2DConfig:
    """What to render: ``samples_per_scene`` key frames ``frame_period_s`` apart per scene, seen by
    ``cameras`` at ``image_size`` = (width, height). Small by default, so tests generate it in seconds."""

    out_dir: str
    seed: int = 0
    num_scenes: int = 2
    samples_per_scene: int = 3
    # the cameras looking along the road see the most objects; a side camera is often filled by one vehicle
    cameras: tuple[str, ...] = ("CAM_FRONT", "CAM_BACK")
    image_size: tuple[int, int] = (320, 180)
    frame_period_s: float = 2.0
    min_visible_pixels: int = 16
    workers: int = 1

    def check(self) -> None:
        """Raise ValueError naming the bad field."""
        if self.num_scenes < 2:
            raise ValueError(f"num_scenes must be >= 2 (the last scene is the validation split), got {self.num_scenes}")
        if self.samples_per_scene < 1:
            raise ValueError(f"samples_per_scene must be >= 1, got {self.samples_per_scene}")
        unknown = [c for c in self.cameras if c not in CAMERA_NAMES]
        if unknown or not self.cameras:
            raise ValueError(f"cameras must be a non-empty subset of {CAMERA_NAMES}, got {list(self.cameras)}")
        if min(self.image_size) < 8:
            raise ValueError(f"image_size (width, height) must be at least 8 pixels each, got {self.image_size}")
        if self.min_visible_pixels < 1 or self.workers < 1 or self.frame_period_s <= 0:
            raise ValueError("min_visible_pixels and workers must be >= 1 and frame_period_s > 0, got "
                             f"{self.min_visible_pixels}, {self.workers}, {self.frame_period_s}")


def segmentation_label(name: str) -> int:
    """The label PNG value of a ``SEGMENTATION_2D_CLASSES`` name (index + 1; 0 is other)."""
    return SEGMENTATION_2D_CLASSES.index(name) + 1


def coco_categories() -> list[dict]:
    """COCO categories: the 10 detection classes, ids 1..10 in ``DETECTION_CLASSES`` order."""
    return [dict(id=i + 1, name=name, supercategory="object") for i, name in enumerate(DETECTION_CLASSES)]


def solid_segmentation_labels(world: SceneWorld) -> np.ndarray:
    """Label PNG value (uint8) per cuboid of ``generator._solids``: objects, then scenery, then traffic
    elements (other)."""
    objects = [segmentation_label(c) for c in world.object_classes]
    scenery_class = {_OCC_BUILDING: "building", _OCC_VEGETATION: "vegetation"}
    scenery = [segmentation_label(scenery_class[int(o)]) if int(o) in scenery_class else SEGMENTATION_2D_OTHER
               for o in world.scenery_occ]
    others = [SEGMENTATION_2D_OTHER] * len(world.traffic_elements)
    return np.array(objects + scenery + others, dtype=np.uint8)


def render_view_2d(world: SceneWorld, solids: Solids, intrinsics: np.ndarray, cam2global: np.ndarray,
                   size: tuple[int, int]) -> dict[str, np.ndarray]:
    """One camera image and its per-pixel labels: ``image`` (H, W, 3) uint8 (exactly the world's camera
    image), ``instance`` (H, W) int32 object index (the position in ``world.object_classes``) or -1, and
    ``semantic`` (H, W) uint8 label PNG values."""
    image, depth, ids, _ = render_camera(world, solids, intrinsics, cam2global, size)
    num_objects = len(world.object_classes)
    instance = np.where((ids >= 0) & (ids < num_objects), ids, -1).astype(np.int32)
    semantic = np.full(ids.shape, SEGMENTATION_2D_OTHER, dtype=np.uint8)
    solid = ids >= 0
    semantic[solid] = solid_segmentation_labels(world)[ids[solid]]
    semantic[ids == SKY_ID] = segmentation_label("sky")
    ground = ids == GROUND_ID
    if ground.any():  # the ground point each ground pixel's ray hit, as the ray caster textured it
        origin, dirs = camera_rays(intrinsics, cam2global, size)
        points = origin[:2] + dirs[ground][:, :2] * depth[ground][:, None]
        surface_labels = np.array([segmentation_label(_SURFACE_CLASS[k]) for k in sorted(_SURFACE_CLASS)], np.uint8)
        semantic[ground] = surface_labels[ground_surfaces(world, points)]
    return dict(image=image, instance=instance, semantic=semantic)


def coco_annotations(instance: np.ndarray, object_classes: list[str], min_visible_pixels: int) -> list[dict]:
    """COCO annotations (without ``id``/``image_id``) of the objects an instance map shows with at least
    ``min_visible_pixels`` pixels, in object order."""
    out = []
    counts = np.bincount(instance[instance >= 0], minlength=len(object_classes))
    for k in np.nonzero(counts >= min_visible_pixels)[0]:
        mask = instance == k
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        x0, x1, y0, y1 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append(dict(category_id=DETECTION_CLASSES.index(object_classes[k]) + 1,
                        bbox=[x0, y0, x1 + 1 - x0, y1 + 1 - y0], area=int(counts[k]), iscrowd=0, segmentation=rle))
    return out


@dataclass
class _ViewJob:
    out_dir: str
    world: SceneWorld
    split: str
    name: str
    camera: str
    time_s: float
    image_size: tuple[int, int]
    min_visible_pixels: int


def _render_job(job: _ViewJob) -> list[dict]:
    """Render one view, write its image (COCO and ADE copies) and label PNG; return its COCO annotations."""
    solids = _solids(job.world, job.time_s)[0]
    cam2global = job.world.ego2global(job.time_s) @ camera_to_ego(job.camera)
    view = render_view_2d(job.world, solids, camera_intrinsics(job.camera, job.image_size), cam2global,
                          job.image_size)
    out = Path(job.out_dir)
    image = Image.fromarray(view["image"])
    ade = ADE_SPLITS[job.split]
    for path in (out / "coco" / job.split / f"{job.name}.jpg", out / "ade" / "images" / ade / f"{job.name}.jpg"):
        image.save(path, quality=93, subsampling=0)  # as the world's camera JPEGs
    Image.fromarray(view["semantic"]).save(out / "ade" / "annotations" / ade / f"{job.name}.png")
    return coco_annotations(view["instance"], job.world.object_classes, job.min_visible_pixels)


def _jobs(config: Synthetic2DConfig) -> list[_ViewJob]:
    duration = (config.samples_per_scene - 1) * config.frame_period_s
    jobs = []
    for s in range(config.num_scenes):
        # seeded like generate_world's scenes, offset so the 2D sets do not repeat the BEV world's scenes
        world = build_scene(np.random.default_rng([config.seed, 1000 + s]), s, duration)
        split = "val" if s == config.num_scenes - 1 else "train"
        for k in range(config.samples_per_scene):
            for camera in config.cameras:
                jobs.append(_ViewJob(config.out_dir, world, split, f"s{s:03d}_f{k:03d}_{camera}", camera,
                                     k * config.frame_period_s, tuple(config.image_size), config.min_visible_pixels))
    return jobs


def generate_2d_sets(config: Synthetic2DConfig, progress: bool = True) -> dict[str, Path]:
    """Write both sets under ``config.out_dir``; returns the COCO instances json per split."""
    config.check()
    out = Path(config.out_dir)
    for split in COCO_SPLITS:
        for folder in (out / "coco" / split, out / "ade" / "images" / ADE_SPLITS[split],
                       out / "ade" / "annotations" / ADE_SPLITS[split]):
            folder.mkdir(parents=True, exist_ok=True)
    (out / "coco" / "annotations").mkdir(parents=True, exist_ok=True)
    jobs = _jobs(config)
    workers = max(1, min(config.workers, os.cpu_count() or 1))
    with tqdm(total=len(jobs), desc="synthetic 2D sets", unit="image", disable=not progress) as bar:
        if workers == 1:
            results = []
            for job in jobs:
                results.append(_render_job(job))
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                results = []
                for res in pool.map(_render_job, jobs, chunksize=2):
                    results.append(res)
                    bar.update()
    return {split: _write_instances(out, config, split, jobs, results) for split in COCO_SPLITS}


def _write_instances(out: Path, config: Synthetic2DConfig, split: str, jobs: list[_ViewJob],
                     results: list[list[dict]]) -> Path:
    width, height = config.image_size
    images, annotations = [], []
    for job, anns in zip(jobs, results):
        if job.split != split:
            continue
        image_id = len(images) + 1
        images.append(dict(id=image_id, file_name=f"{job.name}.jpg", width=width, height=height))
        for ann in anns:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id, **ann))
    instances = dict(
        info=dict(description=f"synthetic 2D detection set ({split}), seed {config.seed}", version="1.0"),
        licenses=[], images=images, annotations=annotations, categories=coco_categories())
    path = out / "coco" / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(instances))
    return path
