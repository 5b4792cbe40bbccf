"""OpenMMLab interop: our InternImage as an mmdet/mmseg/mmdet3d backbone, and checkpoint keys both ways.

Load it from an OpenMMLab (mmengine-based) config, which can then name the backbone ``perception.InternImage``::

    custom_imports = dict(imports=["perception.interop.openmmlab"], allow_failed_imports=False)
    model = dict(backbone=dict(type="perception.InternImage", variant="t", out_indices=(1, 2, 3),
                               init_cfg=dict(type="Pretrained", checkpoint="internimage_t_1k_224.pth")))

How the name resolves: mmengine reads ``perception.InternImage`` as "InternImage in the registry of scope
``perception``", searching the children of the registry that builds (mmdet's, mmseg's, ...) and then those of
the root registry. Our registry tree (perception/engine/registry.py) is that root child, so importing this module
makes sure the tree exists and puts :class:`OpenMMLabInternImage` under ``InternImage`` in it. The subclass differs
from :class:`backbones.InternImage` only in returning a tuple, the container OpenMMLab necks and heads are
written for; arguments, weights and features are the same, and every consumer in this repository accepts either
container, so our own configs run unchanged in a process that loaded it.

Only mmengine is needed: mmdet, mmseg and mmdet3d are never imported here. Checkpoints: an OpenMMLab model keeps
its backbone under a prefix (``backbone.`` in mmdet/mmseg, ``img_backbone.`` in mmdet3d's camera detectors);
:func:`backbone_state_from_openmmlab` and :func:`backbone_checkpoint_for_openmmlab` convert between that and our
key names, which equal the official InternImage ones (docs/pretraining_2d.md, "OpenMMLab interop").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from backbones import InternImage
from backbones.checkpoint import convert_state_dict, extract_state_dict, load_checkpoint_file
from perception.engine.registry import MODELS, register_lower_layers

__all__ = ["REGISTERED_NAME", "OpenMMLabInternImage", "backbone_checkpoint_for_openmmlab",
           "backbone_state_from_openmmlab", "register_openmmlab_modules"]

REGISTERED_NAME = "perception.InternImage"


class OpenMMLabInternImage(InternImage):
    """InternImage with the OpenMMLab backbone interface: ``forward(img)`` returns a tuple with one NCHW map per
    ``out_indices`` stage (strides 4, 8, 16, 32); ``init_weights()`` is what an OpenMMLab runner calls after the
    build, and finds the weights already in place (``pretrained`` / ``init_cfg=dict(type='Pretrained', ...)`` are
    loaded at construction)."""

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(super().forward(x))

    def init_weights(self) -> None:
        """Nothing left to do: initialised (and the checkpoint loaded) in ``__init__``."""


def register_openmmlab_modules() -> None:
    """Make ``perception.InternImage`` resolve to :class:`OpenMMLabInternImage` from any registry of the mmengine
    tree (the root's, mmdet's, mmseg's, mmdet3d's). Idempotent."""
    register_lower_layers()  # first, so that it cannot put the plain class back later
    MODELS.register_module(name="InternImage", module=OpenMMLabInternImage, force=True)


def backbone_state_from_openmmlab(checkpoint: str | Path | Mapping[str, Any], prefix: str = "backbone.", *,
                                  trusted: bool = False) -> dict[str, Tensor]:
    """The backbone of an OpenMMLab checkpoint (a file, a loaded checkpoint or a state dict) as our InternImage
    state dict: the ``prefix`` keys without the prefix; neck and head keys are left out. Files are read safely
    (backbones/checkpoint.py); ``trusted`` allows full unpickling."""
    raw = load_checkpoint_file(checkpoint, trusted=trusted) if isinstance(checkpoint, str | Path) else checkpoint
    state = convert_state_dict(extract_state_dict(raw), prefix=prefix)
    if not state:
        raise ValueError(f"the checkpoint has no keys under {prefix!r}; pass the prefix its model keeps the "
                         "backbone under (mmdet/mmseg: 'backbone.', mmdet3d camera detectors: 'img_backbone.')")
    return state


def backbone_checkpoint_for_openmmlab(backbone: nn.Module | Mapping[str, Tensor], prefix: str = "backbone.",
                                      meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An mmengine-style checkpoint ``{'meta', 'state_dict'}`` holding our backbone (a module or its state dict)
    under ``prefix``, as an OpenMMLab model of the same backbone keeps it; save it with ``torch.save`` and load it
    with mmengine's ``load_checkpoint`` or a ``load_from``."""
    state = backbone.state_dict() if isinstance(backbone, nn.Module) else dict(backbone)
    return dict(meta=dict(meta or {}), state_dict={prefix + key: value for key, value in state.items()})


register_openmmlab_modules()
