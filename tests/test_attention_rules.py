"""LayerNorm, softmax, products and attention against plain contribution-form references.

Each reference writes the rule as explicit contributions ``c`` of every input to every
output and distributes ``R_j * c_ji / stabilize(z_j)`` entry by entry (float64). It
shares no code with the engine, which works with transposed maps on messages.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrp_widgets.engine import (AttnLRP, CPLRP, Epsilon, Explainer, InputError, Norm,
                                named_composite)
from lrp_widgets.engine.attention import MultiheadAttentionStep
from lrp_widgets.engine.norms import layernorm_step

EPS = 1e-6
D = torch.float64


def _stab(z, eps):
    return z + eps * (2.0 * (z >= 0).double() - 1.0)


def _randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=D)


def _randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=D))
    return module


# --- LayerNorm ------------------------------------------------------------------------

def layernorm_reference(x, w, b, eps_ln, r, eps):
    """ε rule on y = M x + b, M = diag(w) (I - 1 1^T / D) / std for each row."""
    rows, out = x.reshape(-1, x.shape[-1]), torch.zeros((r.shape[0],) + tuple(x.shape[1:]),
                                                        dtype=D)
    flat_out, flat_r = out.reshape(r.shape[0], -1, x.shape[-1]), r.reshape(r.shape[0], -1,
                                                                          x.shape[-1])
    d = x.shape[-1]
    for t, row in enumerate(rows):
        std = math.sqrt(float(((row - row.mean()) ** 2).mean()) + eps_ln)
        m = torch.diag(w) @ (torch.eye(d, dtype=D) - torch.ones(d, d, dtype=D) / d) / std
        c = m * row                               # c[j, i] = M_ji x_i
        z = c.sum(1) + b
        for n in range(r.shape[0]):
            flat_out[n, t] = (flat_r[n, t] / _stab(z, eps)) @ c
    return out


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("rule", [Epsilon(EPS), Epsilon(0.1), Norm()], ids=repr)
def test_layernorm_matches_reference(affine, rule):
    ln = _randomize(nn.LayerNorm(5, elementwise_affine=affine).double(), seed=1) if affine \
        else nn.LayerNorm(5, elementwise_affine=False).double()
    step = layernorm_step("ln", [0], ln)
    x = _randn(1, 4, 5, seed=2) * 3 + 1
    y, std = step.forward([x], None)
    torch.testing.assert_close(y, ln(x), rtol=1e-12, atol=1e-12)
    r = _randn(3, 4, 5, seed=3)
    ours = step.propagator(rule, [x], y, std)(r)[0]
    w = ln.weight if affine else torch.ones(5, dtype=D)
    b = ln.bias if affine else torch.zeros(5, dtype=D)
    ref = layernorm_reference(x, w.detach(), b.detach(), ln.eps, r, rule.epsilon)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_layernorm_without_bias_conserves_and_refuses_other_rules():
    ln = _randomize(nn.LayerNorm(6, bias=False).double(), seed=4)
    step = layernorm_step("ln", [0], ln)
    x = _randn(1, 3, 6, seed=4)
    y, std = step.forward([x], None)
    r = _randn(2, 3, 6, seed=5)
    out = step.propagator(Epsilon(1e-12), [x], y, std)(r)[0]
    torch.testing.assert_close(out.sum((1, 2)), r.sum((1, 2)), rtol=1e-9, atol=0)
    with pytest.raises(InputError, match="LayerNorm takes Epsilon"):
        step.check_rule(AttnLRP())


# --- softmax and products ----------------------------------------------------------------

def softmax_reference(s, r):
    """Linearisation at the input: R_m = sum_j s_m (d a_j / d s_m) R_j / a_j per row."""
    a = torch.softmax(s, -1)
    out = torch.zeros_like(r)
    for n in range(r.shape[0]):
        for i in range(s.shape[-2]):
            jac = torch.diag(a[0, i]) - torch.outer(a[0, i], a[0, i])   # jac[j, m]
            c = jac * s[0, i]                                           # c[j, m]
            out[n, i] = (r[n, i] / a[0, i]) @ c
    return out


def matmul_reference(a, b, r, eps, share_a, share_b):
    """o = a @ b (batch 1, 2-D per item): contributions a_ij b_jc to o_ic, split."""
    o = a[0] @ b[0]
    c = a[0][:, :, None] * b[0][None, :, :]            # c[i, j, c]
    msg = r / _stab(o, eps)                            # (N, i, c)
    r_a = share_a * torch.einsum("ijc,nic->nij", c, msg)
    r_b = share_b * torch.einsum("ijc,nic->njc", c, msg)
    return r_a, r_b


def attention_reference(q, k, v, r, eps, constant):
    """One head: o = softmax(q k^T scale) v with AttnLRP or CP-LRP, contribution form."""
    scale = 1 / math.sqrt(q.shape[-1])
    p = q @ k.transpose(-2, -1)
    s = p * scale
    a = torch.softmax(s, -1)
    if constant:
        r_a, r_v = matmul_reference(a, v, r, eps, 0.0, 1.0)
        return torch.zeros_like(q.expand(r.shape[0], -1, -1)), torch.zeros_like(
            k.expand(r.shape[0], -1, -1)), r_v
    r_a, r_v = matmul_reference(a, v, r, eps, 0.5, 0.5)
    r_s = softmax_reference(s, r_a)                    # the scale passes relevance on
    # R_s carries the factor s = p * scale: the fused core divides it by p exactly (no ε)
    r_q, r_kt = matmul_reference(q, k.transpose(-2, -1), r_s, 0.0, 0.5, 0.5)
    return r_q, r_kt.transpose(-2, -1), r_v


class _Blocks(nn.Module):
    """Single-head attention from building blocks (einsum, softmax, matmul)."""

    def __init__(self, e=6):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e)
        self.head = nn.Linear(e, 3)

    def core(self, q, k, v):
        s = torch.einsum("bqd,bkd->bqk", q, k)
        a = F.softmax(s, dim=-1)
        return torch.matmul(a, v)

    def forward(self, x):
        o = self.core(self.q(x), self.k(x), self.v(x))
        return self.head(o.mean(1))


class _Fused(_Blocks):
    def core(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, scale=1.0)


@pytest.mark.parametrize("rule", [AttnLRP(EPS), CPLRP(EPS), AttnLRP(0.05)], ids=repr)
def test_attention_core_matches_reference(rule):
    from lrp_widgets.engine.attention import core_backward, core_forward
    q, k, v = _randn(1, 1, 4, 3, seed=5), _randn(1, 1, 5, 3, seed=6), _randn(1, 1, 5, 3, seed=7)
    ctx = core_forward(q, k, v, 1 / math.sqrt(3), None)
    torch.testing.assert_close(ctx["o"], F.scaled_dot_product_attention(q, k, v))
    r = _randn(2, 1, 4, 3, seed=8)
    ours = core_backward(ctx, rule, r)
    ref = attention_reference(q[:, 0], k[:, 0], v[:, 0], r[:, 0], rule.epsilon,
                              rule.constant_weights)
    for got, want in zip(ours, ref):
        got = torch.zeros_like(want) if got is None else got[:, 0]
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)


def test_softmax_and_product_steps_match_reference():
    x = _randn(4, 6, seed=9)
    model = _randomize(_Blocks().double(), seed=10).eval()
    for rule in (AttnLRP(EPS), CPLRP(EPS)):
        name = "cp_lrp" if rule.constant_weights else "attn_lrp"
        exp = Explainer(model, named_composite(name, epsilon=EPS)).explain(x, target=1)
        steps = exp.plan.steps
        idx = {type(s).__name__: i for i, s in enumerate(steps)}
        i_mm, i_sm = idx["MatMulStep"], idx["SoftmaxStep"]
        r = exp._full_relevance(i_mm)
        a, v = (exp._acts[j] for j in steps[i_mm].inputs)
        share = (0.0, 1.0) if rule.constant_weights else (0.5, 0.5)
        want = matmul_reference(a, v, r, EPS, *share)
        got = exp._propagator(i_mm)(r)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-13)
        r_a = exp._full_relevance(i_sm)
        got_s = exp._propagator(i_sm)(r_a)[0]
        s = exp._acts[steps[i_sm].inputs[0]]
        want_s = torch.zeros_like(r_a) if rule.constant_weights else softmax_reference(s, r_a)
        torch.testing.assert_close(got_s, want_s, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("composite", ["attn_lrp", "cp_lrp"])
def test_fused_attention_equals_building_blocks(composite):
    x = _randn(4, 6, seed=11)
    blocks = _randomize(_Blocks().double(), seed=12).eval()
    fused = _Fused().double().eval()
    fused.load_state_dict(blocks.state_dict())
    eb = Explainer(blocks, composite).explain(x, target=0)
    ef = Explainer(fused, composite).explain(x, target=0)
    torch.testing.assert_close(ef.output, eb.output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ef.heatmap(), eb.heatmap(), rtol=1e-11, atol=1e-13)


# --- nn.MultiheadAttention ------------------------------------------------------------

def linear_reference(x, w, b, r, eps):
    c = w[None, :, :] * x[..., None, :]                # c[t, j, i] = w_ji x_ti
    z = c.sum(-1) + b
    return torch.einsum("tji,ntj->nti", c, r / _stab(z, eps))


def mha_reference(m, xs, r, eps, constant):
    """Relevance of (query, key, value) inputs ``xs`` (each (1, L, E))."""
    e, h = m.embed_dim, m.num_heads
    ws, bs = m.in_proj_weight.detach().chunk(3), m.in_proj_bias.detach().chunk(3)
    q, k, v = (x[0] @ w.T + b for x, w, b in zip(xs, ws, bs))
    heads = [t.reshape(-1, h, e // h).transpose(0, 1) for t in (q, k, v)]
    o = torch.cat([torch.softmax(heads[0][i] @ heads[1][i].T / math.sqrt(e // h), -1)
                   @ heads[2][i] for i in range(h)], dim=-1)
    r_o = linear_reference(o, m.out_proj.weight.detach(), m.out_proj.bias.detach(), r, eps)
    parts = [[], [], []]
    d = e // h
    for i in range(h):
        rq, rk, rv = attention_reference(heads[0][i][None], heads[1][i][None],
                                         heads[2][i][None], r_o[..., i * d:(i + 1) * d],
                                         eps, constant)
        for lst, part in zip(parts, (rq, rk, rv)):
            lst.append(part)
    return [linear_reference(x[0], w, b, torch.cat(part, -1), eps)
            for x, w, b, part in zip(xs, ws, bs, parts)]


@pytest.mark.parametrize("rule", [AttnLRP(EPS), CPLRP(EPS), CPLRP(0.1)], ids=repr)
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_multihead_attention_matches_reference(rule, cross):
    m = _randomize(nn.MultiheadAttention(6, 2, batch_first=True).double(), seed=13).eval()
    x = _randn(1, 5, 6, seed=14)
    xs = [x, _randn(1, 4, 6, seed=16), _randn(1, 4, 6, seed=17)] if cross else [x]
    step = MultiheadAttentionStep("attn", [0, 1, 2] if cross else [0, 0, 0], m)
    assert step.packed == (not cross)           # self-attention: one packed projection
    out, ctx = step.forward(xs, None)
    q, k, v = xs * (4 - len(xs))
    torch.testing.assert_close(out, m(q, k, v, need_weights=False)[0], rtol=1e-12, atol=1e-12)
    r = _randn(2, 5, 6, seed=15)
    ours = step.propagator(rule, xs, out, ctx)(r)
    ref = mha_reference(m, (q, k, v), r, rule.epsilon, rule.constant_weights)
    if not cross:
        ref = [sum(ref)]
    assert len(ours) == len(ref)
    for got, want in zip(ours, ref):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)
