"""Image classification data: folder / file-list datasets, Pillow transforms, mixup/cutmix and the
embedded procedural shapes set. Importing registers the datasets and transforms."""

from .datasets import FileListDataset, ImageFolderDataset, ShapesDataset
from .mixup import MixupCutmix, smooth_one_hot
from .shapes import SHAPE_CLASSES, generate_shapes_dataset
from .transforms import (
    CenterCrop,
    Compose,
    LoadImage,
    PackClsInputs,
    RandAugment,
    RandomErasing,
    RandomFlip,
    RandomResizedCrop,
    ResizeShorter,
)

__all__ = [
    "SHAPE_CLASSES",
    "ShapesDataset",
    "CenterCrop",
    "Compose",
    "FileListDataset",
    "ImageFolderDataset",
    "LoadImage",
    "MixupCutmix",
    "PackClsInputs",
    "RandAugment",
    "RandomErasing",
    "RandomFlip",
    "RandomResizedCrop",
    "ResizeShorter",
    "generate_shapes_dataset",
    "smooth_one_hot",
]
