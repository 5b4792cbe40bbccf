"""Ground truth of a batch, typed by key, for models with several task heads.

The collated batch (docs/architecture.md, "The sample contract") carries each label the pipeline loaded
under its own key: ``gt_boxes`` / ``gt_labels`` (3D boxes), ``occ_semantics`` / ``occ_mask_camera`` /
``occ_mask_lidar`` (Occ3D voxels), ``lanes``, ``traffic_elements``, ``traffic_element_labels``,
``topology_lane_lane``, ``topology_lane_te`` (OpenLane-V2), ``gt_boxes_2d`` / ``gt_labels_2d`` (2D boxes),
and whatever a newly registered label type adds. A value is either a list with one entry per sample or
a tensor stacked along the batch (fixed-size labels such as occupancy grids).

Each head declares the keys it needs (``required_targets``) and the ones it reads when present
(``optional_targets``). :meth:`BatchTargets.check` turns a mismatch into an error that names the head
and the keys, instead of a ``KeyError`` deep inside a loss or a label silently left unused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["BatchTargets", "MissingTargetError", "UnusedTargetError"]


class MissingTargetError(KeyError):
    """A configured head needs a target the batch does not carry."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class UnusedTargetError(ValueError):
    """The batch carries a target that no head reads and that the config does not list as ignored."""


class BatchTargets(Mapping[str, Any]):
    """Read-only mapping key -> per-sample list (or batch-stacked tensor) of a batch's ground truth."""

    def __init__(self, values: Mapping[str, Any], batch_size: int) -> None:
        self._values = dict(values)
        self.batch_size = batch_size
        for key, value in self._values.items():
            if len(value) != batch_size:
                raise ValueError(f"target {key!r} has {len(value)} entries for a batch of {batch_size}")

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise MissingTargetError(f"the batch carries no target {key!r} (it has {sorted(self._values)})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def sample(self, index: int) -> dict[str, Any]:
        """The targets of one sample of the batch."""
        return {key: value[index] for key, value in self._values.items()}

    def check(self, heads: Mapping[str, Any], ignored: Iterable[str] = ()) -> None:
        """Fail unless every head's ``required_targets`` are present and every present key is read by a
        head (``required_targets`` or ``optional_targets``) or listed in ``ignored``."""
        for name, head in heads.items():
            missing = [key for key in getattr(head, "required_targets", ()) if key not in self._values]
            if missing:
                raise MissingTargetError(
                    f"head {name!r} needs targets {missing} that the batch lacks (it has {sorted(self._values)}); "
                    f"load them in the dataset (its labels=... argument)")
        used = {key for head in heads.values()
                for key in (*getattr(head, "required_targets", ()), *getattr(head, "optional_targets", ()))}
        unused = sorted(set(self._values) - used - set(ignored))
        if unused:
            raise UnusedTargetError(
                f"the batch carries targets {unused} that no head ({sorted(heads)}) uses; drop them from the "
                f"dataset's labels or list them in the model's ignore_targets")
