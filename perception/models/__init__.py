"""Models and building blocks shared by the tasks:

- ``classifier``: the image classifier (``ImageClassifier``) wrapping a backbone classifier;
- ``necks``: the feature pyramid (``FPN``) of the 2D and BEV models;
- ``detr/``: DETR toolkit (decoder layer, reference refinement, Group-DETR, Hungarian matcher, set criterion);
- ``layers``: FFN (the residual feed-forward block of the transformer layers);
- ``matching``: bipartite matching, a re-export of ``detr``'s matcher;
- ``losses``: sigmoid focal loss and weighted smooth L1.

Importing registers the model classes (``ImageClassifier``) into the project's MODELS registry.
"""

from .classifier import ImageClassifier

__all__ = ["ImageClassifier"]
