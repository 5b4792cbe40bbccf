"""Small building blocks shared by the transformer heads and encoders."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["FFN"]


class FFN(nn.Module):
    """Residual feed-forward block ``x + (Linear, ReLU, Dropout, Linear, Dropout)(x)``.

    The residual is inside the block (mmcv's FFN convention), so a post-norm layer wraps it as
    ``norm(ffn(x))``. The sub-layers live in ``layers`` so checkpoints keep the ``ffn.layers.{0,3}`` keys.
    """

    def __init__(self, dims: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(dims, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                    nn.Linear(hidden, dims), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)
