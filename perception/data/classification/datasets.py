"""ImageNet-style classification datasets: class-per-folder and file list."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from perception.engine.registry import DATASETS

from .shapes import generate_shapes_dataset
from .transforms import Compose

__all__ = ["FileListDataset", "ImageFolderDataset", "IMAGE_EXTENSIONS", "ShapesDataset"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".JPEG")


class _ClassificationDataset(Dataset):
    """Samples ``(img_path, gt_label)`` through a transform pipeline."""

    def __init__(self, samples: list[tuple[str, int]], classes: Sequence[str], pipeline: Sequence[dict]) -> None:
        self.samples, self.classes = samples, list(classes)
        self.pipeline = Compose(pipeline)

    @property
    def metainfo(self) -> dict[str, Any]:
        return {"classes": tuple(self.classes)}

    def __len__(self) -> int:
        return len(self.samples)

    def get_data_info(self, index: int) -> dict[str, Any]:
        path, label = self.samples[index]
        return {"img_path": path, "gt_label": label, "sample_idx": index}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.pipeline(self.get_data_info(index))


def _read_classes(classes: Sequence[str] | str | None) -> list[str] | None:
    if classes is None or not isinstance(classes, str):
        return None if classes is None else list(classes)
    path = Path(classes)
    if not path.is_file():
        raise FileNotFoundError(f"classes file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@DATASETS.register_module()
class ImageFolderDataset(_ClassificationDataset):
    """``data_root/<class name>/**/<image>``; labels are the sorted class folder names (or ``classes``,
    a list or a file with one name per line)."""

    def __init__(self, data_root: str, pipeline: Sequence[dict] = (), classes: Sequence[str] | str | None = None,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, test_mode: bool = False) -> None:
        root = Path(data_root)
        if not root.is_dir():
            raise FileNotFoundError(f"ImageFolderDataset: data_root {root} is not a directory")
        names = _read_classes(classes) or sorted(p.name for p in root.iterdir() if p.is_dir())
        if not names:
            raise ValueError(f"ImageFolderDataset: no class folders in {root}")
        suffixes = {e.lower() for e in extensions}
        samples = []
        for label, name in enumerate(names):
            folder = root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"ImageFolderDataset: class folder {folder} missing")
            samples += [(str(p), label) for p in sorted(folder.rglob("*")) if p.suffix.lower() in suffixes]
        if not samples:
            raise ValueError(f"ImageFolderDataset: no images with extensions {sorted(suffixes)} under {root}")
        super().__init__(samples, names, pipeline)


@DATASETS.register_module()
class FileListDataset(_ClassificationDataset):
    """``ann_file`` lines ``<path relative to data_root> <label>`` (the official ImageNet list format)."""

    def __init__(self, data_root: str, ann_file: str, pipeline: Sequence[dict] = (),
                 classes: Sequence[str] | str | None = None, test_mode: bool = False) -> None:
        root, ann = Path(data_root), Path(ann_file)
        if not ann.is_absolute() and not ann.is_file():
            ann = root / ann
        if not ann.is_file():
            raise FileNotFoundError(f"FileListDataset: ann_file {ann_file} not found (also tried {ann})")
        samples = []
        for number, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{ann}:{number}: expected '<path> <label>', got {line!r}")
            samples.append((str(root / parts[0]), int(parts[1])))
        names = _read_classes(classes) or [str(i) for i in range(max(s[1] for s in samples) + 1)]
        super().__init__(samples, names, pipeline)


@DATASETS.register_module()
class ShapesDataset(ImageFolderDataset):
    """The embedded procedural shapes set (:mod:`.shapes`), generated under ``data_root`` on first use.

    ``split``: 'train' or 'val'. Generation arguments must match between the splits of one root.
    """

    def __init__(self, data_root: str = "data/shapes", split: str = "train", pipeline: Sequence[dict] = (),
                 train_per_class: int = 60, val_per_class: int = 20, image_size: int = 64, seed: int = 0,
                 test_mode: bool = False) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"ShapesDataset: split must be 'train' or 'val', got {split!r}")
        root = generate_shapes_dataset(data_root, train_per_class=train_per_class, val_per_class=val_per_class,
                                       image_size=image_size, seed=seed)
        super().__init__(str(root / split), pipeline=pipeline, classes=str(root / "classes.txt"),
                         test_mode=test_mode)
