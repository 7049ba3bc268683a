"""The stabilised division shared by all rules."""
from __future__ import annotations

import torch


def sign_no_zero(z: torch.Tensor) -> torch.Tensor:
    """+1 where ``z >= 0`` (zeros, also -0.0, count as positive), -1 where ``z < 0``.

    Built from float operations only: on CPU they run many times faster than
    comparisons and ``torch.where`` on the same data. ``sign`` gives -1, ±0 or 1;
    adding 0.5 moves the zeros to 0.5, whose sign is 1.
    """
    return torch.sign(z).add_(0.5).sign_()


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Move every entry of ``z`` away from zero by ``epsilon``, keeping its sign.

    Zeros count as positive, so the result is never zero for ``epsilon > 0``.
    This is the denominator convention of the LRP literature (and of Zennit),
    which makes our numbers comparable with theirs; the result equals
    ``where(z < 0, z - epsilon, z + epsilon)`` bit for bit.

    Examples
    --------
    >>> stabilize(torch.tensor([-1.0, 0.0, 2.0]), 0.5)
    tensor([-1.5000,  0.5000,  2.5000])
    """
    return torch.add(z, sign_no_zero(z), alpha=epsilon)


def stabilize_positive(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``stabilize(z, epsilon)`` where ``z >= 0``; ``epsilon`` where ``z < 0``.

    For denominators whose negative entries never meet any relevance (the
    numerator is zero there). Two cheap passes instead of four: in those places the
    result equals :func:`stabilize` bit for bit, and elsewhere it is positive, so
    dividing a zero by it still gives zero.

    Examples
    --------
    >>> stabilize_positive(torch.tensor([-1.0, 0.0, 2.0]), 0.5)
    tensor([0.5000, 0.5000, 2.5000])
    """
    return z.clamp_min(0).add_(epsilon)
