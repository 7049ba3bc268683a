"""LXT (LRP-eXplains-Transformers, the AttnLRP authors' library) as a test oracle.

Only tests import this module. LXT's efficient mode patches *classes* (``nn.LayerNorm``,
``nn.GELU``, ``nn.MultiheadAttention``) and computes relevance as input times a
modified gradient. :func:`lxt_patched` applies a patch map for the duration of a
``with`` block and restores the classes afterwards, so other tests never see it.

* :func:`lxt_heatmap` with LXT's default map for torchvision's ViT (CP-LRP inside
  attention, the identity rule on GELU, LayerNorm with its standard deviation
  detached).
* :data:`ATTN_LRP_MAP`: the same, but torch's ``MultiheadAttention`` recomputed
  eagerly and passed through LXT's own AttnLRP attention wrapper
  (``patches.wrap_attention_forward``: the uniform rule on ``q k^T`` and ``A v`` by
  dividing the gradients of q, k by 4 and of v by 2), which is how LXT applies
  AttnLRP to the attention of the models it supports.
"""
from __future__ import annotations

import contextlib
import math
from functools import partial
from typing import Iterator

import torch
import torch.nn.functional as F
from lxt.efficient import patches as lxt_patches
from lxt.efficient.models import vit_torch
from torch import nn

CP_LRP_MAP = vit_torch.cp_LRP


def _eager_attention(module, q, k, v):
    """softmax(q k^T / sqrt(d)) v on (N, H, L, d) heads."""
    a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return a @ v


def _attn_lrp_mha_forward(self, query, key, value, *args, **kwargs):
    """nn.MultiheadAttention (batch_first, no masks) with LXT's AttnLRP wrapper inside."""
    e, h = self.embed_dim, self.num_heads
    ws, bs = self.in_proj_weight.chunk(3), self.in_proj_bias.chunk(3)
    q, k, v = (F.linear(t, w, b).unflatten(-1, (h, e // h)).transpose(1, 2)
               for t, w, b in zip((query, key, value), ws, bs))
    o = lxt_patches.wrap_attention_forward(_eager_attention)(self, q, k, v)
    return self.out_proj(o.transpose(1, 2).flatten(2)), None


ATTN_LRP_MAP = dict(CP_LRP_MAP)
ATTN_LRP_MAP[nn.MultiheadAttention] = partial(lxt_patches.patch_method, _attn_lrp_mha_forward,
                                              keep_original=True)


@contextlib.contextmanager
def lxt_patched(patch_map: dict) -> Iterator[None]:
    """Apply an LXT patch map to the classes in it; restore them on exit."""
    saved = {cls: {k: cls.__dict__[k] for k in ("forward", "original_forward")
                   if k in cls.__dict__} for cls in patch_map}
    try:
        for cls, patch in patch_map.items():
            assert patch(cls), f"LXT could not patch {cls.__name__}"
        yield
    finally:
        for cls, attrs in saved.items():
            for k in ("forward", "original_forward"):
                if k in cls.__dict__ and k not in attrs:
                    delattr(cls, k)
            for k, v in attrs.items():
                setattr(cls, k, v)


def lxt_heatmap(model: nn.Module, x: torch.Tensor, target: int,
                patch_map: dict = CP_LRP_MAP) -> torch.Tensor:
    """LXT's heatmap (input times modified gradient) of ``target``'s logit for one
    input ``x`` without batch axis."""
    with lxt_patched(patch_map):
        xb = x.unsqueeze(0).clone().requires_grad_(True)
        out = model(xb)
        out[0, target].backward()
    return (xb * xb.grad)[0].detach()
