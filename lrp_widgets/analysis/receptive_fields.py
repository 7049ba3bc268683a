"""Receptive fields of a layer's neurons, from the model's convolution and pooling geometry.

The concept atlas cuts each reference sample to the part of the input that one neuron of
the layer can see. That region follows from the geometry alone (kernel sizes, strides,
padding, dilation of every convolution and pooling on the way up), not from the data, so
it is computed once per layer by walking the model's traced graph (``torch.fx``):

* every input axis starts with jump 1, size 1 and first centre 0 (pixel ``i`` covers
  ``[i, i + 1)``);
* a convolution or pooling with kernel ``k``, stride ``s``, padding ``p``, dilation ``d``
  maps ``(jump, size, start)`` to ``(jump * s, size + (k - 1) * d * jump,
  start + ((k - 1) / 2 * d - p) * jump)``;
* adaptive pooling, ``Linear`` and ``Flatten`` see the whole input (size ``inf``);
* a node with several tensor inputs (a residual addition, a concatenation) takes the
  input with the largest field; anything else (activations, BatchNorm, dropout) keeps
  its input's geometry.

A model that cannot be traced, or a layer name that is not found in the traced graph,
gets the whole input as its field: a larger crop is never wrong, only less focused.

Examples
--------
>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
...                       nn.Conv2d(2, 2, 3, padding=1))
>>> rf = receptive_field(model, "3")
>>> rf.size, rf.jump
((8.0, 8.0), (2.0, 2.0))
>>> rf.box((0, 0), (16, 16))      # neuron (0, 0): the field, clipped to the input
((0, 5), (0, 5))
>>> rf.box((4, 4), (16, 16))
((5, 13), (5, 13))
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from torch import nn

__all__ = ["ReceptiveField", "receptive_field"]

_GLOBAL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d,
           nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)
_WINDOWED = (nn.Conv1d, nn.Conv2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)


@dataclass(frozen=True)
class ReceptiveField:
    """Geometry of the region of the input one neuron of a layer sees, per spatial axis.

    Attributes
    ----------
    jump : tuple of float
        Input pixels between neighbouring neurons of the layer.
    size : tuple of float
        Side of the field in input pixels (``inf``: the whole input).
    start : tuple of float
        Input coordinate of the centre of the first neuron's field.
    """

    jump: tuple[float, ...]
    size: tuple[float, ...]
    start: tuple[float, ...]

    @property
    def is_global(self) -> bool:
        """Whether each neuron sees the whole input."""
        return any(math.isinf(s) for s in self.size)

    def box(self, position: Sequence[int], input_shape: Sequence[int]
            ) -> tuple[tuple[int, int], ...]:
        """``((lo, hi), ...)`` per spatial axis: the input slice seen by the neuron at
        ``position`` (layer coordinates), clipped to ``input_shape`` (spatial axes)."""
        out = []
        for axis, length in enumerate(input_shape):
            if self.is_global or axis >= len(self.size):
                out.append((0, int(length)))
                continue
            centre = self.start[axis] + position[axis] * self.jump[axis]
            lo = math.ceil(centre - (self.size[axis] - 1) / 2)
            hi = lo + int(self.size[axis])
            out.append((max(0, lo), min(int(length), hi)))
        return tuple(out)


def _whole(n_axes: int) -> ReceptiveField:
    return ReceptiveField((1.0,) * n_axes, (math.inf,) * n_axes, (0.0,) * n_axes)


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _through(module: nn.Module, rf: ReceptiveField) -> ReceptiveField:
    """The field after one module, given the field of its input."""
    if isinstance(module, _GLOBAL):
        return _whole(len(rf.size))
    if not isinstance(module, _WINDOWED):
        return rf
    n = len(rf.size)
    k, s = _tuple(module.kernel_size, n), _tuple(module.stride or module.kernel_size, n)
    p = _tuple(module.padding, n) if not isinstance(module.padding, str) else None
    d = _tuple(getattr(module, "dilation", 1), n)
    if p is None:                               # padding="same"/"valid" (stride 1)
        p = tuple((ki - 1) * di // 2 if module.padding == "same" else 0
                  for ki, di in zip(k, d))
    return ReceptiveField(
        tuple(j * si for j, si in zip(rf.jump, s)),
        tuple(sz + (ki - 1) * di * j for sz, ki, di, j in zip(rf.size, k, d, rf.jump)),
        tuple(st + ((ki - 1) / 2 * di - pi) * j
              for st, ki, di, pi, j in zip(rf.start, k, d, p, rf.jump)))


def receptive_field(model: nn.Module, layer: str, n_axes: int = 2) -> ReceptiveField:
    """The receptive field of the neurons of ``layer`` (a dotted module name as the
    engine lists it), over ``n_axes`` spatial input axes; see the module docstring."""
    import torch.fx as fx
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:                           # untraceable: the whole input is safe
        return _whole(n_axes)
    modules = dict(model.named_modules())
    fields: dict[Any, ReceptiveField] = {}
    found: Optional[ReceptiveField] = None
    for node in graph.nodes:
        inputs = [fields[a] for a in node.all_input_nodes if a in fields]
        if node.op == "placeholder":
            rf = ReceptiveField((1.0,) * n_axes, (1.0,) * n_axes, (0.0,) * n_axes)
        elif not inputs:
            continue                            # constants, attributes
        else:
            rf = max(inputs, key=lambda f: f.size)
            if node.op == "call_module":
                rf = _through(modules[node.target], rf)
            elif node.op == "call_function" and getattr(node.target, "__name__", "") in (
                    "flatten", "adaptive_avg_pool2d", "linear"):
                rf = _whole(n_axes)
        fields[node] = rf
        # The layer's output: its own module call, or the last node inside a container
        # module (a residual block's output), or a functional node of that name.
        target = str(node.target) if node.op == "call_module" else ""
        if target == layer or target.startswith(layer + ".") or node.name == layer:
            found = rf
    return found if found is not None else _whole(n_axes)
