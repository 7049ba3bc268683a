"""Pure rearrangements: permute, transpose, indexing and slicing, the items of chunk and
split, and the like.

Every output element is a copy of one input element, so relevance goes back to where
each element came from: the adjoint (transpose) of the rearrangement, which is also
its gradient. Elements an index left out get none (they had no part in the output);
an element copied more than once (``expand``) gets the sum of its copies' relevance.
This is LRP's rule for any map that only moves values (Montavon et al. 2019: a
permutation matrix under any proportional rule; Achtibat et al. 2024 route the
class token of a ViT this way).

The step learns where each element went by running the traced operation once on a
tensor of element indices, so one implementation serves every such operation.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from .steps import Step


class RearrangeStep(Step):
    """Moves, selects or copies elements (permute, transpose, x[:, 0], chunk items)."""

    kind = "rearrange"
    listed = False

    def __init__(self, name: str, inputs: Sequence[int], module: Optional[nn.Module] = None,
                 fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        super().__init__(name, inputs, module)
        self.fn = fn              # for modules: their map (the user's module is never called)
        # where elements go depends on the input's shape only (sizes, constant indices):
        # kept for the last shape seen, so later explanations skip the index run
        self._maps: Optional[tuple[Any, Any]] = None
        self.cacheable = True     # False when constant tensors (index buffers) take part
        #: the axes' order when the step is a permutation of axes that keeps the batch
        #: axis first (torchvision's Permute): relevance is permuted back as a block
        #: copy, several times faster than gathering it element by element
        self.dims: Optional[tuple[int, ...]] = None

    def forward(self, xs, call):
        if self.fn is not None:
            fn = self.fn
            call = lambda *t: fn(t[0] if t else xs[0])  # noqa: E731
        out = call()
        x = xs[0]
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"'{self.name}' does not return one tensor")
        key = (tuple(x.shape), tuple(out.shape), x.device)
        if self.cacheable and self._maps is not None and self._maps[0] == key:
            return out, self._maps[1]
        index = torch.arange(x.numel(), device=x.device).view(x.shape)
        where = call(index)
        n, per = x.shape[0], x[0].numel()
        if not isinstance(where, torch.Tensor) or where.shape != out.shape or out.shape[0] != n:
            raise ValueError(f"'{self.name}' rearranges across the batch axis "
                             f"({tuple(x.shape)} -> {tuple(out.shape)})")
        # Each input of a batch must be rearranged on its own, and all alike: then the
        # map of the first one (element indices within one input) serves every row.
        where = where.reshape(n, -1)
        if n > 1:
            where = where - torch.arange(n, device=x.device)[:, None] * per
            if not bool((where == where[0]).all()) or int(where.min()) < 0 or \
                    int(where.max()) >= per:
                raise ValueError(f"'{self.name}' rearranges across the batch axis "
                                 f"({tuple(x.shape)} -> {tuple(out.shape)})")
        where = where[0]
        inverse = None
        if where.numel() == per:
            # a permutation (each element exactly once): the inverse is a gather
            inverse = torch.empty_like(where)
            inverse[where] = torch.arange(where.numel(), device=x.device)
            if not torch.equal(where[inverse], torch.arange(where.numel(), device=x.device)):
                inverse = None
        self._maps = (key, (where, inverse))
        return out, (where, inverse)

    def propagator(self, rule, xs, z, ctx: Any):
        where, inverse = ctx
        in_shape = tuple(xs[0].shape[1:])
        dims = self.dims
        if dims is not None and inverse is not None and dims[0] == 0:
            back = tuple(sorted(range(len(dims)), key=dims.__getitem__))   # inverse order
            return lambda r: (r.permute(back).contiguous(),)

        def propagate(r: torch.Tensor):
            n = r.shape[0]
            flat = r.reshape(n, -1)
            if inverse is not None:
                return (flat[:, inverse].view((n,) + in_shape),)
            out = r.new_zeros((n, xs[0][0].numel()))
            out.index_add_(1, where, flat)
            return (out.view((n,) + in_shape),)
        return propagate

    def passes_zeros(self):
        return True

    def nonnegative(self, inputs):
        return all(inputs)
