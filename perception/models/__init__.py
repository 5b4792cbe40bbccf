"""Models shared by the tasks: 2D heads, necks, transformer layers, matching, losses.

Importing registers the model classes into the project's MODELS registry.
"""

from .classifier import ImageClassifier

__all__ = ["ImageClassifier"]
