"""Attention: its building blocks and the two rule sets of the literature.

Self-attention computes, per head, ``A = softmax(q k^T * scale (+ bias))`` and
``o = A v``. Two rule sets explain it; a composite picks one per layer type
(:class:`AttnLRP` or :class:`CPLRP`, both taking the ε of the maps around them):

* **AttnLRP** (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance
  Propagation for Transformers", ICML 2024). A product of two signals (``A v``,
  ``q k^T``, any matmul/bmm/einsum of two signals) splits each contribution's
  relevance *uniformly*, half to each factor (their Prop. 3.3 / Eq. 7, applied after
  the ε rule of the sum over the contracted axis). The softmax is explained by its
  linearisation at the input (their Prop. 3.1, Eq. 13): ``R_x = x * (R - y * sum R)``
  with ``y = softmax(x)``; the bias of the linearisation absorbs the rest. Masked
  scores (``-inf``) receive nothing.
* **CP-LRP** (Ali et al., "XAI for Transformers: Better Explanations through
  Conservative Propagation", ICML 2022, Sec. 3.1). The attention weights ``A`` are
  held constant, so ``o = A v`` is a linear map of ``v`` and relevance flows through
  the values only (the ε rule on that map); queries and keys receive none, and a
  softmax passes nothing. This is what LXT applies to torchvision's ViT by default.

Around the core, ``nn.MultiheadAttention`` has its input projections (one Linear each
for queries, keys and values) and its output projection; they get the ε rule with
the attention rule's ``epsilon``. A multiplication by the constant ``scale`` passes
relevance unchanged (the ε rule on ``y = c x`` with ε → 0); an additive bias
(a mask) takes its proportional share, as a Linear layer's bias does.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from lrp_widgets.engine import Explainer
>>> class Tiny(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
...         self.head = nn.Linear(4, 3)
...     def forward(self, x):
...         y, _ = self.attn(x, x, x, need_weights=False)
...         return self.head(y.mean(1))
>>> _ = torch.manual_seed(0)
>>> exp = Explainer(Tiny().eval(), "cp_lrp").explain(torch.randn(5, 4), target=0)
>>> exp.heatmap().shape
torch.Size([5, 4])
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import RuleError
from .rules import Rule
from .stabilize import stabilize
from .steps import Relevances, Step


# -- rules and the marker types composites map them by ----------------------------------

class AttentionRule(Rule):
    """Base of the attention rule sets; ``epsilon`` stabilises every ε-rule division
    inside the unit (projections, the products' sums)."""

    affine = False
    #: whether attention weights are held constant (CP-LRP)
    constant_weights = False

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = float(epsilon)


class AttnLRP(AttentionRule):
    """AttnLRP (Achtibat et al. 2024): uniform split on products of two signals,
    softmax by its linearisation at the input."""


class CPLRP(AttentionRule):
    """CP-LRP (Ali et al. 2022): attention weights held constant, relevance through
    the values only."""

    constant_weights = True


class MatMul(nn.Module):
    """Stands for a product of two signals (``torch.matmul``, ``@``, ``bmm``,
    ``einsum``) in composites' layer maps."""


class ScaledDotProductAttention(nn.Module):
    """Stands for ``F.scaled_dot_product_attention`` calls in composites' layer maps."""


#: stand-ins for calls that are no modules (the registry lists the module types)
ATTENTION_MARKERS = (ScaledDotProductAttention, MatMul)


def _check_attention_rule(step: Step, rule: Optional[Rule]) -> AttentionRule:
    if not isinstance(rule, AttentionRule):
        raise RuleError(f"rule {rule!r} cannot be used on layer '{step.name}' "
                        f"({step.type_name}): attention takes AttnLRP or CPLRP", step.name)
    return rule


class AttentionStep(Step):
    """Base of the steps whose rule comes from the composite's attention slot."""

    role = "attention"
    #: what composites match by type (the module, or a marker for a function call)
    rule_module: Any = None

    def rule_key(self) -> Any:
        return self.rule_module

    def check_rule(self, rule: Optional[Rule]) -> None:
        _check_attention_rule(self, rule)


# -- the attention core: per head, softmax(q k^T * scale + bias) v ----------------------

def core_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Any,
                 bias: Optional[torch.Tensor]) -> dict[str, Any]:
    """Forward pass of the core on ``(..., H, L, d)`` heads; everything the rules need.
    ``scale`` is a number or a tensor broadcastable to the heads (one per head)."""
    s = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        s = s.add_(bias)
    a = torch.softmax(s, dim=-1)
    return {"q": q, "k": k, "v": v, "a": a, "o": a @ v, "scale": scale,
            "s": s if bias is not None else None}


def softmax_relevance(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor,
                      dim: int = -1) -> torch.Tensor:
    """AttnLRP's softmax rule: ``x * (r - y * sum(r))`` along ``dim``; ``-inf`` inputs
    (masked entries, whose output is 0) receive 0."""
    g = r - y * r.sum(dim, keepdim=True)
    return g.mul_(torch.where(torch.isneginf(x), torch.zeros_like(x), x))


def core_backward(ctx: dict[str, Any], rule: AttentionRule,
                  r: torch.Tensor) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor],
                                            torch.Tensor]:
    """Relevance of queries, keys and values (None under CP-LRP) for a batch ``r`` of
    relevances at the heads' output ``(N, H, Lq, d)``.

    AttnLRP in three steps, with the scores ``s = p * scale (+ bias)``, ``p = q k^T``:
    ``o = A v`` splits its ε-rule relevance half and half; the softmax rule gives
    ``R_s = s * g`` with ``g = R_A - A * sum(R_A)``; the bias keeps its share
    (``R_p = p scale / stabilize(s) * R_s``); ``q k^T`` splits ``R_p`` half and half,
    dividing by ``p``. The factor ``p`` cancels: ``R_p / p = scale * g`` (times
    ``s / stabilize(s)`` with a bias), so no division by the raw scores is needed,
    and none is made (this is the ε → 0 limit of the stabilised division by ``p``).
    """
    eps, a, v = rule.epsilon, ctx["a"], ctx["v"]
    msg = r / stabilize(ctx["o"], eps)
    if rule.constant_weights:                            # ε rule on o = A v, A constant
        return None, None, (a.transpose(-2, -1) @ msg).mul_(v)
    msg.mul_(0.5)                                        # uniform: half to v, half to A
    r_v = (a.transpose(-2, -1) @ msg).mul_(v)
    r_a = (msg @ v.transpose(-2, -1)).mul_(a)
    g = torch.addcmul(r_a, a, r_a.sum(-1, keepdim=True), value=-1.0)
    if ctx["s"] is not None:                             # the bias keeps its share
        s = ctx["s"]
        share = s / stabilize(s, eps)
        g.mul_(share.masked_fill_(torch.isneginf(s), 0.0))   # masked scores: nothing
    half = 0.5 * ctx["scale"]                            # uniform on q k^T, scale folded in
    q, k = ctx["q"], ctx["k"]
    return (g @ (k * half)).mul_(q), (g.transpose(-2, -1) @ (q * half)).mul_(k), r_v


def _heads(t: torch.Tensor, h: int) -> torch.Tensor:
    """``(N, L, E)`` -> ``(N, H, L, E/H)``."""
    return t.unflatten(-1, (h, -1)).transpose(1, 2)


def _tokens(t: torch.Tensor) -> torch.Tensor:
    """``(N, H, L, d)`` -> ``(N, L, H*d)``."""
    return t.transpose(1, 2).flatten(2)


def _epsilon_linear(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, r: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """ε rule on ``y = x W^T + b`` (features last)."""
    return ((r / stabilize(y, eps)) @ weight).mul_(x)


# -- steps ----------------------------------------------------------------------------

class MultiheadAttentionStep(AttentionStep):
    """``nn.MultiheadAttention`` (``batch_first=True``) as one unit with the attention
    rule; its inputs are (query, key, value), or one input for self-attention
    (``attn(x, x, x)``), whose three projections then run as one."""

    kind = "attention"

    def __init__(self, name: str, inputs: Sequence[int], module: nn.MultiheadAttention) -> None:
        if len(set(inputs)) == 1:
            inputs = inputs[:1]
        super().__init__(name, inputs, module)
        self.rule_module = module
        self.packed = len(self.inputs) == 1 and module._qkv_same_embed_dim

    def _weights(self) -> tuple[list[torch.Tensor], list[Optional[torch.Tensor]]]:
        m = self.module
        if m._qkv_same_embed_dim:
            ws = list(m.in_proj_weight.detach().chunk(3))
        else:
            ws = [m.q_proj_weight.detach(), m.k_proj_weight.detach(), m.v_proj_weight.detach()]
        bs = [None] * 3 if m.in_proj_bias is None else list(m.in_proj_bias.detach().chunk(3))
        return ws, bs

    def forward(self, xs, call):
        m = self.module
        ws, bs = self._weights()
        qkv = None
        if self.packed:
            b = None if m.in_proj_bias is None else m.in_proj_bias.detach()
            qkv = F.linear(xs[0], m.in_proj_weight.detach(), b)
            projected = list(qkv.chunk(3, dim=-1))
        else:
            projected = [F.linear(x, w, b) for x, w, b in zip(xs * (4 - len(xs)), ws, bs)]
        heads = [_heads(t, m.num_heads) for t in projected]
        ctx = core_forward(*heads, 1.0 / math.sqrt(heads[0].shape[-1]), None)
        concat = _tokens(ctx["o"])
        out_b = None if m.out_proj.bias is None else m.out_proj.bias.detach()
        out = F.linear(concat, m.out_proj.weight.detach(), out_b)
        ctx.update(projected=projected, qkv=qkv, concat=concat)
        return out, ctx

    def propagator(self, rule, xs, z, ctx):
        rule = rule if isinstance(rule, AttentionRule) else CPLRP(1e-6)
        ws, _ = self._weights()
        w_out, eps, h = self.module.out_proj.weight.detach(), rule.epsilon, self.module.num_heads
        x_in = xs * (4 - len(xs))                          # (query, key, value)

        def propagate(r: torch.Tensor) -> Relevances:
            r_concat = _epsilon_linear(ctx["concat"], z, w_out, r, eps)
            parts = core_backward(ctx, rule, _heads(r_concat, h))
            if self.packed and parts[0] is not None:       # one ε rule on the packed map
                r_qkv = torch.cat([_tokens(p) for p in parts], dim=-1)
                w_in = self.module.in_proj_weight.detach()
                return (_epsilon_linear(xs[0], ctx["qkv"], w_in, r_qkv, eps),)
            out = [None if part is None else _epsilon_linear(x, y, w, _tokens(part), eps)
                   for x, y, w, part in zip(x_in, ctx["projected"], ws, parts)]
            if len(xs) == 1:                               # CP-LRP: the values alone
                return (out[2],) if parts[0] is None else (out[0] + out[1] + out[2],)
            return tuple(r.new_zeros((r.shape[0],) + tuple(x.shape[1:])) if o is None else o
                         for x, o in zip(xs, out))
        return propagate

    def deconvolution(self, xs, z, ctx):
        ws, _ = self._weights()
        w_out, h, a = self.module.out_proj.weight.detach(), self.module.num_heads, ctx["a"]

        def transposed(r: torch.Tensor) -> Relevances:   # the value path, weights constant
            o = _heads(r @ w_out, h)
            v = _tokens(a.transpose(-2, -1) @ o) @ ws[2]
            return (v,) if len(xs) == 1 else (torch.zeros_like(v), torch.zeros_like(v), v)
        return transposed


class ScaledDotProductStep(AttentionStep):
    """``F.scaled_dot_product_attention(q, k, v)`` on ``(N, ..., L, d)`` heads."""

    kind = "attention"
    listed = False

    def __init__(self, name: str, inputs: Sequence[int], scale: Optional[float],
                 causal: bool) -> None:
        super().__init__(name, inputs)
        self.scale, self.causal = scale, causal
        self.rule_module = ScaledDotProductAttention()

    @property
    def type_name(self) -> str:
        return "scaled_dot_product_attention"

    def forward(self, xs, call):
        q, k, v = xs
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(q.shape[-1])
        bias = None
        if self.causal:
            lq, lk = q.shape[-2], k.shape[-2]
            keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
            bias = q.new_zeros(lq, lk).masked_fill_(~keep, float("-inf"))
        ctx = core_forward(q, k, v, scale, bias)
        return ctx["o"], ctx

    def propagator(self, rule, xs, z, ctx):
        rule = rule if isinstance(rule, AttentionRule) else CPLRP(1e-6)

        def propagate(r: torch.Tensor) -> Relevances:
            parts = core_backward(ctx, rule, r)
            return tuple(r.new_zeros((r.shape[0],) + tuple(x.shape[1:])) if part is None
                         else part for x, part in zip(xs, parts))
        return propagate


class MatMulStep(AttentionStep):
    """A product of two signals, bilinear in them (matmul, ``@``, bmm, einsum).

    ``constant[i]`` says that operand ``i`` is attention weights (a softmax output,
    possibly through dropout or reshapes), which CP-LRP holds constant. ``scores``
    says that the result only feeds softmaxes (``q k^T``): under CP-LRP the
    attention weights computed from it are constant, so it passes nothing on.
    """

    #: set by the plan once the consumers are known
    scores = False

    kind = "matmul"
    listed = False

    def __init__(self, name: str, inputs: Sequence[int], fn: Any, constant: Sequence[bool]):
        super().__init__(name, inputs)
        self.fn = fn
        self.constant = tuple(constant)
        self.rule_module = MatMul()

    def check_rule(self, rule: Optional[Rule]) -> None:
        rule = _check_attention_rule(self, rule)
        if rule.constant_weights and sum(self.constant) != 1 and not self.scores:
            which = "both" if all(self.constant) else "neither"
            raise RuleError(
                f"CP-LRP holds attention weights constant, but {which} operand of the "
                f"product '{self.name}' is a softmax output, and its result is no attention "
                "score; use AttnLRP on it", self.name)

    def forward(self, xs, call):
        out = self.fn(*xs)
        n = xs[0].shape[0]
        # the inputs of a batch stay apart: the batch axis first everywhere and, for
        # matmul, operands of as many axes, at least 3 (else broadcasting or the
        # contraction would meet the batch axis; einsum's equation keeps it apart)
        if out.shape[0] != n or any(x.shape[0] != n for x in xs) or (
                n > 1 and self.fn is torch.matmul and not 3 <= xs[0].dim() == xs[1].dim()):
            raise ValueError(f"'{self.name}' mixes the batch axis")
        return out, None

    def propagator(self, rule, xs, z, ctx):
        rule = rule if isinstance(rule, AttentionRule) else AttnLRP(1e-6)
        denom = stabilize(z, rule.epsilon)
        share = [0.0 if c else 1.0 for c in self.constant] if rule.constant_weights \
            else [0.5, 0.5]
        if rule.constant_weights and sum(self.constant) != 1:      # attention scores
            return lambda r: tuple(r.new_zeros((r.shape[0],) + tuple(x.shape[1:]))
                                   for x in xs)

        def propagate(r: torch.Tensor) -> Relevances:
            n = r.shape[0]
            with torch.enable_grad():
                probes = [x.detach().expand((n,) + tuple(x.shape[1:])).requires_grad_(s > 0)
                          for x, s in zip(xs, share)]
                wanted = [p for p in probes if p.requires_grad]
                grads = iter(torch.autograd.grad(self.fn(*probes), wanted, r / denom))
            return tuple(next(grads).mul_(x).mul_(s) if s > 0
                         else r.new_zeros((n,) + tuple(x.shape[1:]))
                         for x, s in zip(xs, share))
        return propagate


class SoftmaxStep(AttentionStep):
    """A softmax along ``dim``: linearised at its input (AttnLRP), or passing nothing
    (CP-LRP: its output, the attention weights, is held constant downstream)."""

    kind = "softmax"
    listed = False

    def __init__(self, name: str, inputs: Sequence[int], dim: int,
                 module: Optional[nn.Module] = None) -> None:
        super().__init__(name, inputs, module)
        self.dim = dim
        self.rule_module = module if module is not None else nn.Softmax(dim)

    def forward(self, xs, call):
        return torch.softmax(xs[0], self.dim), None

    def propagator(self, rule, xs, z, ctx):
        if isinstance(rule, AttentionRule) and rule.constant_weights:
            return lambda r: (torch.zeros_like(r),)
        x = xs[0]
        return lambda r: (softmax_relevance(x, z, r, self.dim),)


__all__ = ["AttentionRule", "AttnLRP", "CPLRP", "MatMul", "ScaledDotProductAttention",
           "ATTENTION_MARKERS", "AttentionStep", "MultiheadAttentionStep",
           "ScaledDotProductStep", "MatMulStep", "SoftmaxStep", "core_forward",
           "core_backward", "softmax_relevance"]
