"""Linear and convolutional layers as plain functions of (input, weight, bias).

Rules need two things from a layer: its forward map with *modified* parameters, and
the adjoint (transpose) of its linear part, applied to a batch of relevance
messages at once. :class:`AffineLayer` provides both for ``Linear``, ``Conv1d`` and
``Conv2d``, with an optional BatchNorm folded in exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UnsupportedLayerError

AFFINE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def _explicit_padding(module: nn.Module, name: str) -> tuple[int, ...]:
    """Turn ``padding='same'/'valid'`` into integers; refuse what has no exact adjoint here."""
    if module.padding_mode != "zeros":
        raise UnsupportedLayerError(
            f"Layer '{name}' ({type(module).__name__}) uses padding_mode="
            f"'{module.padding_mode}'; only zero padding is supported.",
            name, type(module).__name__)
    pad = module.padding
    if pad == "valid":
        return (0,) * len(module.kernel_size)
    if pad == "same":
        total = [d * (k - 1) for k, d in zip(module.kernel_size, module.dilation)]
        if any(t % 2 for t in total):
            raise UnsupportedLayerError(
                f"Layer '{name}' ({type(module).__name__}) uses padding='same' with an even "
                "kernel, which pads asymmetrically; use explicit padding instead.",
                name, type(module).__name__)
        return tuple(t // 2 for t in total)
    return tuple(pad)


def _attribute(module: nn.Module, name: str) -> Any:
    """``getattr(module, name)``, read straight from the parameter and buffer tables
    when it is there: this runs for every layer of every explanation, and
    ``nn.Module.__getattr__`` is slow. Anything else (a parametrised weight, say)
    goes through ``getattr``, which computes it."""
    for table in (module._parameters, module._buffers):
        if name in table:
            return table[name]
    return getattr(module, name)


@dataclass
class AffineLayer:
    """A Linear/Conv layer of the user's model, read-only, with an optional merged BatchNorm.

    Parameters are read from the module every time :meth:`parameters` is called,
    so one plan follows a model that keeps training. Nothing is written back.
    """

    name: str
    module: nn.Module
    batchnorm: Optional[nn.Module] = None
    batchnorm_name: str = ""
    padding: tuple[int, ...] = field(default=(), init=False)
    #: set by the Explainer when the graph guarantees that relevance at this layer's
    #: output is zero wherever the output is <= 0 (see relevance_support.py)
    positive_relevance_only: bool = field(default=False, init=False)
    #: set by the Explainer when the layer's input is >= 0 for every model input
    #: (it follows a ReLU), so rules need not look for negative inputs
    nonnegative_input: bool = field(default=False, init=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.module, (nn.Conv1d, nn.Conv2d)):
            self.padding = _explicit_padding(self.module, self.name)

    @property
    def spatial_dims(self) -> int:
        """0 for Linear, 1 for Conv1d, 2 for Conv2d."""
        if isinstance(self.module, nn.Conv2d):
            return 2
        if isinstance(self.module, nn.Conv1d):
            return 1
        return 0

    @property
    def has_bias(self) -> bool:
        """Whether the layer's map has a bias (its own, or one from a merged BatchNorm)."""
        return self.module.bias is not None or self.batchnorm is not None

    def _version_key(self) -> tuple:
        """Identifies the current parameter values: changes when any is replaced,
        moved, converted or modified in place (optimizer steps bump ``_version``)."""
        tensors: list[Any] = [_attribute(self.module, "weight"), _attribute(self.module, "bias")]
        bn = self.batchnorm
        if bn is not None:
            tensors += [_attribute(bn, n) for n in ("weight", "bias", "running_mean",
                                                      "running_var")] + [bn.eps]
        return tuple((id(t), t._version, t.data_ptr(), t.dtype, t.device)
                     if isinstance(t, torch.Tensor) else t for t in tensors)

    def cached(self, key: Any, compute: Callable[[], Any], tag: Any = None) -> Any:
        """A value derived from the parameters (e.g. clamped weights), computed once
        per parameter state and reused by later explanations.

        ``tag`` names what else the value depends on (an input shape, bounds): one
        value is kept per key, recomputed when the parameters or the tag change,
        so the cache cannot grow with the number of different inputs.
        """
        version = (self._version_key(), tag)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = compute()
        self._cache[key] = (version, value)
        return value

    def parameters(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Weight and bias as used by the forward pass, BatchNorm folded in (cached)."""
        return self.cached("parameters", self._merged_parameters)

    def _merged_parameters(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Weight and bias with the BatchNorm folded in.

        The fold is exact: ``y = s * (W x + b - mean) + beta`` with
        ``s = gamma / sqrt(var + eps)`` is the same function as ``W' x + b'`` with
        ``W' = s W`` and ``b' = s (b - mean) + beta``.
        """
        weight = self.module.weight.detach()
        bias = None if self.module.bias is None else self.module.bias.detach()
        bn = self.batchnorm
        if bn is None:
            return weight, bias
        scale = torch.rsqrt(bn.running_var.detach() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.detach()
        shift = -bn.running_mean.detach() if bias is None else bias - bn.running_mean.detach()
        new_bias = shift * scale
        if bn.bias is not None:
            new_bias = new_bias + bn.bias.detach()
        shape = (-1,) + (1,) * (weight.dim() - 1)
        return weight * scale.view(shape), new_bias

    def apply(self, x: torch.Tensor, weight: torch.Tensor,
              bias: Optional[torch.Tensor]) -> torch.Tensor:
        """The layer's map with the given (possibly modified) parameters."""
        m = self.module
        if self.spatial_dims == 0:
            return F.linear(x, weight, bias)
        conv = F.conv2d if self.spatial_dims == 2 else F.conv1d
        return conv(x, weight, bias, m.stride, self.padding, m.dilation, m.groups)

    @property
    def stackable(self) -> bool:
        """Whether weights can be stacked along an axis for one call (not for grouped
        convolutions, whose channel blocks would be mixed up)."""
        return self.spatial_dims == 0 or self.module.groups == 1

    def adjoint_stacked(self, s: torch.Tensor, weights: torch.Tensor, k: int,
                        input_shape: torch.Size) -> tuple[torch.Tensor, ...]:
        """The adjoints of ``k`` weights at once, for one message batch ``s``.

        ``weights`` holds the ``k`` weights stacked along their input axis (dim 1,
        see :attr:`stackable`); the result is their ``k`` adjoints, each shaped like
        :meth:`adjoint`'s (views into one buffer). One call with ``k`` times the
        input channels costs about as much as one plain adjoint when the input has
        few channels (the first layer of an image model), where ``k`` calls would
        cost ``k`` times as much.
        """
        if self.spatial_dims == 0:                  # features are the last axis
            return torch.chunk(s @ weights, k, dim=-1)
        shape = (input_shape[0], input_shape[1] * k) + tuple(input_shape[2:])
        return torch.chunk(self.adjoint(s, weights, torch.Size(shape)), k, dim=1)

    def adjoint_pair(self, s: torch.Tensor, weights: torch.Tensor,
                     input_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """Two adjoints of two weights, each on its own message, in one call.

        ``s`` holds the messages along axis 1, ``(N, 2, *out)``, ``weights`` the
        weights along a new axis 0, ``(2, *weight.shape)``; the result is
        ``(adjoint(s[:, 0], weights[0]), adjoint(s[:, 1], weights[1]))``. A convolution
        does both as one convolution with twice the groups: its channel blocks never
        mix, so the first half of its channels sees only the first weight, and the
        (grouped, depthwise) layers of any kind can use it.
        """
        if self.spatial_dims == 0:
            return s[:, 0] @ weights[0], s[:, 1] @ weights[1]
        n, c_in = s.shape[0], input_shape[1]
        shape = (n, 2 * c_in) + tuple(input_shape[2:])
        out = self._transpose(s.flatten(1, 2), weights.flatten(0, 1), shape, 2 * self.module.groups)
        return out[:, :c_in], out[:, c_in:]

    def _transpose(self, s: torch.Tensor, weight: torch.Tensor, shape: tuple[int, ...],
                   groups: int) -> torch.Tensor:
        """The transposed convolution of ``s`` to an input of ``shape``.

        Grouped (depthwise) convolutions run it as a plain convolution of the messages
        (spread out on the input's grid where the layer strides) with the flipped,
        transposed filters: CPU kernels compute a depthwise convolution several times
        faster than its input gradient (measured: 2x for 7x7 filters, 6x for a
        stride-2 layer, more again with twice the groups). The sums are the same;
        only their order differs.
        """
        m = self.module
        kernel = tuple(weight.shape[2:])
        if max(kernel) == 1 and max(m.stride) == 1 and max(self.padding) == 0:
            # a 1x1 convolution is a matrix product per position; its transpose as one
            # batched product is about twice as fast as the input-gradient kernel
            c_out, c_in_g = weight.shape[:2]
            w_t = weight.reshape(groups, c_out // groups, c_in_g).transpose(1, 2)
            out = torch.matmul(w_t, s.reshape(s.shape[0], groups, c_out // groups, -1))
            return out.reshape(shape)
        pads = [d * (k - 1) - p for d, k, p in zip(m.dilation, kernel, self.padding)]
        if groups > 1 and min(pads) >= 0:
            return self._adjoint_by_convolution(s, weight, shape, groups, pads)
        # The same kernel autograd uses for the input gradient, without autograd's overhead.
        # It reads only the input's shape, but makes the input contiguous first: an
        # uninitialised tensor is (the memory is never touched), an expanded scalar
        # would be copied out at full size on every call.
        return torch.ops.aten.convolution_backward(
            s, s.new_empty(shape), weight, None, list(m.stride), list(self.padding),
            list(m.dilation), False, [0] * self.spatial_dims, groups, (True, False, False))[0]

    def _adjoint_by_convolution(self, s: torch.Tensor, weight: torch.Tensor,
                                shape: tuple[int, ...], groups: int,
                                pads: list[int]) -> torch.Tensor:
        """``A^T s`` as a stride-1 convolution: input position ``i`` collects
        ``s[o] w[t]`` over ``o * stride - padding + t * dilation == i``, which is the
        cross-correlation of ``s`` (placed at ``o * stride``) with the flipped filter,
        padded by ``dilation * (k - 1) - padding``."""
        m, nd = self.module, self.spatial_dims
        c_out, c_in_g = weight.shape[:2]
        kernel = tuple(weight.shape[2:])
        # (C_out, C_in/g, k) -> (C_in, C_out/g, k): swap the roles within each group
        w_t = weight.reshape((groups, c_out // groups, c_in_g) + kernel).transpose(1, 2)
        w_t = w_t.reshape((groups * c_in_g, c_out // groups) + kernel)
        w_t = w_t.flip(list(range(2, 2 + nd)))
        if any(st > 1 for st in m.stride):
            # the grid the stride-1 map needs: the input's size less the filter's reach
            # plus both paddings (positions the forward pass skipped stay zero)
            grid = [i - d * (k - 1) + 2 * p for i, d, k, p in
                    zip(shape[2:], m.dilation, kernel, self.padding)]
            spread = s.new_zeros(tuple(s.shape[:2]) + tuple(grid))
            spread[(Ellipsis,) + tuple(slice(0, (o - 1) * st + 1, st)
                                       for o, st in zip(s.shape[2:], m.stride))] = s
            s = spread
        conv = F.conv2d if nd == 2 else F.conv1d
        return conv(s, w_t, None, 1, pads, m.dilation, groups)

    def adjoint(self, s: torch.Tensor, weight: torch.Tensor,
                input_shape: torch.Size) -> torch.Tensor:
        """Transpose of the linear part, for a batch of messages ``s`` of shape ``(N, *out)``.

        ``input_shape`` is the layer's input shape with batch axis 1; the result has
        shape ``(N, *input_shape[1:])``.
        """
        if self.spatial_dims == 0:
            return s @ weight
        shape = (s.shape[0],) + tuple(input_shape[1:])
        return self._transpose(s, weight, shape, self.module.groups)
