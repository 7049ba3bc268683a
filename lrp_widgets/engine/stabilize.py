"""The stabilised division shared by all rules."""
from __future__ import annotations

import torch


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Move every entry of ``z`` away from zero by ``epsilon``, keeping its sign.

    Zeros count as positive, so the result is never zero for ``epsilon > 0``.
    This is the denominator convention of the LRP literature (and of Zennit),
    which makes our numbers comparable with theirs.

    Examples
    --------
    >>> stabilize(torch.tensor([-1.0, 0.0, 2.0]), 0.5)
    tensor([-1.5000,  0.5000,  2.5000])
    """
    return torch.where(z < 0, z - epsilon, z + epsilon)
