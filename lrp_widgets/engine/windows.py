"""Window attention of Swin (v1, v2) and MaxViT, each explained as one unit.

torchvision's ``ShiftedWindowAttention(V2)`` and MaxViT's
``RelativePositionalMultiHeadAttention`` compute their relative position bias from
parameters and (Swin) cut the feature map into shifted windows with ``pad``,
``roll``, ``view`` and ``permute``. The engine traces them as single steps (leaf
modules) and recomputes them functionally from their parameters, read-only:

* the window partition, cyclic shift and padding (and their reverses) are pure
  rearrangements: relevance goes back the same way, by their adjoint (the gradient of
  a map that only moves entries);
* the query/key/value projection and the output projection get the ε rule;
* the attention core is :mod:`.attention`'s, with the rule set of the composite
  (:class:`~.attention.AttnLRP` or :class:`~.attention.CPLRP`). The relative
  position bias and Swin's shift mask (-100 between windows' pieces) are an
  additive bias of the scores: it keeps its proportional share, as any bias does;
* Swin v2's cosine attention normalises queries and keys (``F.normalize``); as for
  LayerNorm, the division by the norm is held constant (AttnLRP's identity rule,
  Achtibat et al. 2024, Prop. 3.4), so their relevance passes to q and k unchanged.
  Its per-head ``logit_scale`` is a constant factor, which passes relevance on.

The registry names the classes as strings (``transformer_ops.py``): this module never
imports torchvision.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionRule, AttentionStep, CPLRP, core_backward, core_forward
from .stabilize import stabilize
from .steps import Relevances, Step

def adjoint(fn: Callable[[torch.Tensor], torch.Tensor], shape: Sequence[int],
            r: torch.Tensor) -> torch.Tensor:
    """``fn^T r`` for a linear rearrangement ``fn`` of tensors of ``shape``."""
    with torch.enable_grad():
        probe = r.new_zeros(tuple(shape), requires_grad=True)
        return torch.autograd.grad(fn(probe), probe, r)[0]


def _linear(x: torch.Tensor, lin: nn.Linear, bias: Any = "module") -> torch.Tensor:
    b = lin.bias if isinstance(bias, str) else bias
    return F.linear(x, lin.weight.detach(), None if b is None else b.detach())


def _epsilon(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, r: torch.Tensor,
             eps: float) -> torch.Tensor:
    return ((r / stabilize(y, eps)) @ weight.detach()).mul_(x)


class _UnitStep(AttentionStep):
    """Common part: a rearrangement ``split`` of the input into token groups
    ``(groups, L, C)``, a fused qkv projection, the core per head, the output
    projection ``proj`` and the reverse rearrangement ``merge``."""

    kind = "attention"

    def __init__(self, name: str, inputs: Sequence[int], module: nn.Module) -> None:
        super().__init__(name, inputs, module)
        self.rule_module = module

    # subclasses: split, merge (batched), heads, qkv layer, proj layer, scale, bias
    def forward(self, xs, call):
        x = xs[0]
        groups = self.split(x)
        qkv = _linear(groups, self.qkv_layer, self.qkv_bias())
        q, k, v = qkv.unflatten(-1, (3, self.num_heads, -1)).movedim(-3, 0).transpose(-2, -3)
        qn, kn = self.normalize(q), self.normalize(k)
        ctx = core_forward(qn, kn, v, self.scale(), self.bias(groups, x.shape))
        concat = ctx["o"].transpose(-2, -3).flatten(-2)
        out = _linear(concat, self.proj_layer)
        ctx.update(groups=groups, qkv=qkv, concat=concat, out=out, q_raw=q, k_raw=k)
        return self.merge(out, x.shape), ctx

    def normalize(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def qkv_bias(self) -> Optional[torch.Tensor]:
        return self.qkv_layer.bias

    def propagator(self, rule, xs, z, ctx):
        rule = rule if isinstance(rule, AttentionRule) else CPLRP(1e-6)
        x, eps = xs[0], rule.epsilon
        out_shape = tuple(ctx["out"].shape)

        def propagate(r: torch.Tensor) -> Relevances:
            n = r.shape[0]
            shape = (n * out_shape[0],) + out_shape[1:]
            r_out = adjoint(lambda t: self.merge(t, (n,) + tuple(x.shape[1:])), shape, r)
            r_out = r_out.unflatten(0, (n, -1))         # (N, groups, ...) against ctx's
            r_concat = _epsilon(ctx["concat"], ctx["out"], self.proj_layer.weight, r_out, eps)
            r_heads = r_concat.unflatten(-1, (self.num_heads, -1)).transpose(-2, -3)
            parts = core_backward(ctx, rule, r_heads)
            # q and k: normalisation held constant (identity); all three back to tokens
            r_qkv = torch.stack([torch.zeros_like(parts[2]) if p is None else p
                                 for p in parts]).transpose(-2, -3).movedim(0, -3).flatten(-3)
            r_groups = _epsilon(ctx["groups"], ctx["qkv"], self.qkv_layer.weight, r_qkv, eps)
            return (adjoint(self.split, (n,) + tuple(x.shape[1:]), r_groups.flatten(0, 1)),)
        return propagate

    def deconvolution(self, xs, z, ctx):
        raise NotImplementedError


class WindowAttentionStep(_UnitStep):
    """torchvision's ``ShiftedWindowAttention`` / ``ShiftedWindowAttentionV2`` on
    ``(N, H, W, C)``."""

    def __init__(self, name: str, inputs: Sequence[int], module: nn.Module) -> None:
        super().__init__(name, inputs, module)
        self.qkv_layer, self.proj_layer = module.qkv, module.proj
        self.num_heads = module.num_heads
        self.v2 = hasattr(module, "logit_scale")

    def _geometry(self, shape: Sequence[int]) -> tuple[int, int, int, int, list[int]]:
        h, w = shape[1], shape[2]
        ws = self.module.window_size
        pad_h, pad_w = h + (ws[0] - h % ws[0]) % ws[0], w + (ws[1] - w % ws[1]) % ws[1]
        shift = [s if ws[i] < (pad_h, pad_w)[i] else 0
                 for i, s in enumerate(self.module.shift_size)]
        return h, w, pad_h, pad_w, shift

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """Pad, shift and cut into windows: ``(N * windows, Wh * Ww, C)``."""
        h, w, ph, pw, shift = self._geometry(x.shape)
        ws, c = self.module.window_size, x.shape[-1]
        x = F.pad(x, (0, 0, 0, pw - w, 0, ph - h))
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        x = x.view(x.shape[0], ph // ws[0], ws[0], pw // ws[1], ws[1], c)
        return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws[0] * ws[1], c)

    def merge(self, t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """The reverse of :meth:`split` for the output ``t`` of an input of ``shape``."""
        h, w, ph, pw, shift = self._geometry(shape)
        ws, c = self.module.window_size, t.shape[-1]
        x = t.reshape(shape[0], ph // ws[0], pw // ws[1], ws[0], ws[1], c)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(shape[0], ph, pw, c)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :h, :w, :].contiguous()

    def qkv_bias(self) -> Optional[torch.Tensor]:
        b = self.qkv_layer.bias
        if b is None or not self.v2:
            return b
        b = b.detach().clone()                    # v2 uses no key bias
        b[b.numel() // 3: 2 * b.numel() // 3] = 0
        return b

    def normalize(self, t: torch.Tensor) -> torch.Tensor:
        return F.normalize(t, dim=-1) if self.v2 else t

    def scale(self) -> Any:
        m = self.module
        if self.v2:
            return torch.clamp(m.logit_scale.detach(), max=torch.log(torch.tensor(100.0)).item()
                               ).exp()
        return (self.qkv_layer.weight.shape[1] // self.num_heads) ** -0.5

    def _table(self) -> torch.Tensor:
        m = self.module
        if not self.v2:
            return m.relative_position_bias_table.detach()
        t = m.relative_coords_table.detach()
        for layer in m.cpb_mlp:                   # Linear, ReLU, Linear, functionally
            t = _linear(t, layer) if isinstance(layer, nn.Linear) else F.relu(t)
        return t.reshape(-1, self.num_heads)

    def bias(self, groups: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Relative position bias, plus the shift mask: ``(windows, heads, L, L)``."""
        m, n = self.module, groups.shape[1]
        bias = self._table()[m.relative_position_index].view(n, n, -1).permute(2, 0, 1)
        if self.v2:
            bias = 16 * torch.sigmoid(bias)
        _, _, ph, pw, shift = self._geometry(shape)
        if sum(shift) == 0:
            return bias.unsqueeze(0)
        ws = m.window_size
        label = groups.new_zeros((ph, pw))
        count = 0
        for hs in ((0, -ws[0]), (-ws[0], -shift[0]), (-shift[0], None)):
            for wsl in ((0, -ws[1]), (-ws[1], -shift[1]), (-shift[1], None)):
                label[hs[0]:hs[1], wsl[0]:wsl[1]] = count
                count += 1
        label = label.view(ph // ws[0], ws[0], pw // ws[1], ws[1]).permute(0, 2, 1, 3)
        label = label.reshape(-1, n)
        mask = (label.unsqueeze(1) - label.unsqueeze(2) != 0) * -100.0
        return bias.unsqueeze(0) + mask.unsqueeze(1).to(groups.dtype)


class RelativeAttentionStep(_UnitStep):
    """MaxViT's ``RelativePositionalMultiHeadAttention`` on ``(N, G, P, D)``."""

    def __init__(self, name: str, inputs: Sequence[int], module: nn.Module) -> None:
        super().__init__(name, inputs, module)
        self.qkv_layer, self.proj_layer = module.to_qkv, module.merge
        self.num_heads = module.n_heads

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def merge(self, t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return t

    def scale(self) -> float:
        return self.module.scale_factor

    def bias(self, groups: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        m = self.module
        table = m.relative_position_bias_table.detach()
        bias = table[m.relative_position_index.view(-1)].view(m.max_seq_len, m.max_seq_len, -1)
        return bias.permute(2, 0, 1).to(groups.dtype)


def unit_step(name: str, inputs: Sequence[int], module: nn.Module) -> Step:
    """The step of one of :func:`unit_types`."""
    if hasattr(module, "to_qkv"):
        return RelativeAttentionStep(name, inputs, module)
    return WindowAttentionStep(name, inputs, module)


__all__ = ["unit_step", "WindowAttentionStep", "RelativeAttentionStep",
           "adjoint"]
