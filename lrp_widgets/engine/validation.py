"""Checks of the arguments users give: class targets, channel lists, input bounds.

One copy of each check, shared by the engine, ``analysis`` and the widgets, so that a
bad value gets the same clear :class:`~.errors.InputError` wherever it is given. Each
check names the argument (``argument=``) and shows what was given. Python and numpy
integers and integer tensors are accepted; floats, bools and strings never are, even
when they look like integers: ``int(2.7)`` and ``list("12")`` would silently turn
them into other indices.

Examples
--------
>>> import torch
>>> check_target(torch.tensor(3), n_classes=10)
3
>>> check_channels([5, 1, 5], n_channels=8)
[1, 5]
>>> check_channels("12", n_channels=8)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lrp_widgets.engine.errors.InputError: channels must be channel indices (integers), got the ...
>>> low, high = check_bounds((0.0, 1.0), torch.zeros(1, 3, 4, 4))
>>> low.shape, float(high)
(torch.Size([]), 1.0)
"""
from __future__ import annotations

import numbers
from typing import Any, Optional

import numpy as np
import torch

from .errors import InputError

__all__ = ["check_target", "check_channels", "check_bounds", "check_input", "check_inputs",
           "check_targets", "check_init"]


def _show(value: Any) -> str:
    """A short description of a rejected value for messages."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return f"a 0-d {value.dtype} tensor ({value.item()!r})"
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, str):
        return f"the string {value!r}"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _integer(value: Any) -> Optional[int]:
    """``value`` as an int if it is an integer (Python, numpy, or a 0-d integer tensor /
    array), else None. Bools are not integers here."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        dtype = value.dtype
        is_int = (not dtype.is_floating_point and not dtype.is_complex
                  and dtype != torch.bool) if isinstance(value, torch.Tensor) \
            else np.issubdtype(dtype, np.integer)
        return int(value.item()) if is_int else None
    return None


def check_target(target: Any, n_classes: int, argument: str = "target") -> Optional[int]:
    """A class index in ``range(n_classes)``, or None (meaning: the predicted class).

    Parameters
    ----------
    target : int, numpy integer, 0-d integer tensor or None
    n_classes : int
        Number of classes of the model.
    argument : str
        Name of the argument, for the message.

    Raises
    ------
    InputError
        For floats (also ``2.0``), bools, strings, 0-d float tensors, anything else that
        is not an integer, and indices outside ``0 .. n_classes - 1``.

    Examples
    --------
    >>> check_target(None, 5) is None, check_target(np.int64(4), 5)
    (True, 4)
    >>> check_target(1.0, 5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrp_widgets.engine.errors.InputError: target must be a class index ..., got 1.0 (float)
    """
    if target is None:
        return None
    index = _integer(target)
    if index is None:
        raise InputError(f"{argument} must be a class index (an integer) or None, "
                         f"got {_show(target)}")
    if not 0 <= index < n_classes:
        raise InputError(f"{argument} {index} is out of range: the model has {n_classes} "
                         f"classes (0 to {n_classes - 1})")
    return index


def check_channels(channels: Any, n_channels: int, argument: str = "channels", *,
                   layer: Optional[str] = None) -> list[int]:
    """Channel indices as a sorted list without repeats.

    Parameters
    ----------
    channels : iterable of int, 1-d integer tensor or array, or a single integer
        Repeated indices are accepted and counted once: a selection is a set of
        channels (selecting a channel twice selects it). An empty iterable gives ``[]``.
    n_channels : int
        Number of channels of the layer.
    argument : str
        Name of the argument, for the message.
    layer : str, optional
        Name of the layer, for the message.

    Raises
    ------
    InputError
        For strings (``"12"`` is not ``[1, 2]``), bools, floats, boolean or float
        tensors, tensors with more than one axis, non-iterables, and indices outside
        ``0 .. n_channels - 1``.

    Examples
    --------
    >>> check_channels(torch.tensor([3, 0]), 4), check_channels(2, 4), check_channels([], 4)
    ([0, 3], [2], [])
    >>> check_channels([0, 4], 4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrp_widgets.engine.errors.InputError: channels: channel 4 is out of range (the layer has 4 ...
    """
    single = _integer(channels)
    if single is not None:
        items: list[Any] = [single]
    elif isinstance(channels, (str, bytes)):
        raise InputError(f"{argument} must be channel indices (integers), got {_show(channels)}")
    elif isinstance(channels, (torch.Tensor, np.ndarray)):
        if channels.ndim != 1 or not _int_dtype(channels):
            raise InputError(f"{argument} must be a 1-d integer tensor or a list of integers, "
                             f"got {_show(channels)}")
        items = [int(c) for c in channels.tolist()]
    elif isinstance(channels, dict) or not hasattr(channels, "__iter__"):
        raise InputError(f"{argument} must be a list of channel indices, got {_show(channels)}")
    else:
        items = []
        for c in channels:
            index = _integer(c)
            if index is None:
                raise InputError(f"{argument} must hold channel indices (integers), "
                                 f"got {_show(c)}")
            items.append(index)
    bad = [c for c in items if not 0 <= c < n_channels]
    if bad:
        which = f"for layer '{layer}', which has" if layer is not None else "(the layer has"
        close = "" if layer is not None else ")"
        raise InputError(f"{argument}: channel {bad[0]} is out of range {which} "
                         f"{n_channels} channels (0 to {n_channels - 1}){close}")
    return sorted(set(items))


def _int_dtype(t: Any) -> bool:
    if isinstance(t, torch.Tensor):
        return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool
    return np.issubdtype(t.dtype, np.integer)


def _bound_tensor(value: Any, which: str, argument: str, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        raise InputError(f"{argument}: the {which} bound must be a number or a tensor, "
                         f"got {_show(value)}")
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if isinstance(value, numbers.Real):
        t = torch.tensor(float(value), dtype=like.dtype, device=like.device)
    elif isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise InputError(f"{argument}: the {which} bound must hold real numbers, "
                             f"got {_show(value)}")
        t = value.detach().to(dtype=like.dtype, device=like.device)
    else:
        try:                                  # a (nested) list of numbers, e.g. per channel
            t = torch.tensor(value, dtype=like.dtype, device=like.device)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"{argument}: the {which} bound must be a number or a tensor, "
                             f"got {_show(value)}") from None
    if not torch.isfinite(t).all():
        bad = "NaN" if torch.isnan(t).any() else "inf"
        raise InputError(f"{argument}: the {which} bound contains {bad}; bounds must be finite "
                         "numbers")
    return t


def check_bounds(input_bounds: Any, x: Optional[torch.Tensor],
                 argument: str = "input_bounds") -> tuple[torch.Tensor, torch.Tensor]:
    """The input domain ``(low, high)`` as two finite tensors broadcastable to one input.

    Parameters
    ----------
    input_bounds : (low, high)
        Each a number, or a tensor / array / list broadcastable to the input without
        batch axis; a 1-d bound of length C (the input's channels) is taken per channel.
    x : Tensor or None
        The input, with a batch axis of 1 (``(1, C, H, W)``) or without one only when it
        is 1-d; its dtype and device are used. ``None`` checks the bounds alone (values
        and ``low <= high``), as far as they can be checked without an input.
    argument : str
        Name of the argument, for the message.

    Returns
    -------
    (low, high) : tuple of Tensor
        In ``x``'s dtype and device, shaped to broadcast against ``x[0]`` (a per-channel
        bound becomes ``(C, 1, ..., 1)``), not expanded.

    Raises
    ------
    InputError
        When ``input_bounds`` is not a pair, a bound is not a number or real tensor,
        contains NaN or inf, does not broadcast to the input, or ``low > high`` anywhere.

    Examples
    --------
    >>> x = torch.zeros(1, 3, 2, 2)
    >>> low, high = check_bounds(([-1.0, -2.0, -3.0], 1.0), x)
    >>> low.shape
    torch.Size([3, 1, 1])
    >>> check_bounds((1.0, 0.0), x)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrp_widgets.engine.errors.InputError: input_bounds: low must not exceed high, but low = 1.0 ...
    """
    if isinstance(input_bounds, (str, bytes, dict, torch.Tensor, np.ndarray)) or \
            not hasattr(input_bounds, "__len__") or len(input_bounds) != 2:
        raise InputError(f"{argument} must be a pair (low, high) of numbers or tensors, "
                         f"got {_show(input_bounds)}")
    like = x if x is not None else torch.zeros((), dtype=torch.get_default_dtype())
    if not like.is_floating_point():
        like = like.to(torch.get_default_dtype())
    low, high = (_bound_tensor(v, w, argument, like) for v, w in zip(input_bounds,
                                                                        ("low", "high")))
    if x is not None:
        sample = tuple(x.shape[1:]) if x.dim() > 1 else tuple(x.shape)
        low, high = (fit_bound(t, sample, w, argument) for t, w in ((low, "low"), (high, "high")))
    try:
        above = low > high
    except RuntimeError:
        raise InputError(f"{argument}: low of shape {tuple(low.shape)} and high of shape "
                         f"{tuple(high.shape)} do not broadcast together") from None
    if above.any():
        where = above.nonzero()[0].tolist() if above.dim() else []
        lo, hi = torch.broadcast_tensors(low, high)
        at = f" at index {tuple(where)}" if where else ""
        raise InputError(f"{argument}: low must not exceed high, but low = "
                         f"{float(lo[tuple(where)])} > high = {float(hi[tuple(where)])}{at}")
    return low, high


def fit_bound(t: torch.Tensor, sample: tuple[int, ...], which: str = "low",
              argument: str = "input_bounds") -> torch.Tensor:
    """``t`` reshaped to broadcast against one input of shape ``sample`` (a 1-d bound of
    length C taken per channel), or an InputError naming ``argument``."""
    if t.dim() == 1 and len(sample) > 1 and t.numel() == sample[0] and t.numel() > 1:
        t = t.view((-1,) + (1,) * (len(sample) - 1))     # per-channel bounds
    try:
        ok = torch.broadcast_shapes(tuple(t.shape), sample) == torch.Size(sample)
    except RuntimeError:
        ok = False
    if not ok:
        raise InputError(f"{argument}: the {which} bound has shape {tuple(t.shape)}, which does "
                         f"not broadcast to the input's shape {sample} (give a number, one "
                         f"value per channel, or a tensor of that shape)")
    return t


def _real_tensor(x: Any, argument: str) -> torch.Tensor:
    """``x`` as a tensor of real numbers (numpy arrays converted), or an InputError."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{argument} must be a torch.Tensor or numpy array, "
                         f"not {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex():
        raise InputError(f"{argument} must hold real numbers, not {x.dtype}")
    return x


def _check_finite(xb: torch.Tensor, argument: str, batch: bool) -> None:
    """NaN or inf anywhere in ``xb`` (batch axis first): an InputError naming the input,
    ``argument[i]`` for the first bad one of a batch."""
    if bool(torch.isfinite(xb).all()):
        return
    i = int((~torch.isfinite(xb.reshape(xb.shape[0], -1))).any(1).nonzero()[0]) if batch else 0
    what = "NaN" if torch.isnan(xb[i]).any() else "inf"
    raise InputError(f"{argument}[{i}] contains {what} values" if batch else
                     f"{argument} contains {what} values")


def check_input(x: Any, device: torch.device, dtype: torch.dtype,
                expected: Optional[tuple[int, str]], argument: str = "x") -> torch.Tensor:
    """Validate one input; return it with a batch axis of 1 on the model's device and dtype.

    ``expected`` is (batched number of axes, description) when the first layer
    tells (Conv2d: 4, Conv1d: 3, Linear: 2), else None.
    """
    x = _real_tensor(x, argument)
    if x.dim() == 0:
        raise InputError(f"{argument} must have at least one axis, got a scalar")
    if expected is not None:
        ndim, what = expected
        if x.dim() not in (ndim - 1, ndim):
            raise InputError(f"{argument} has shape {tuple(x.shape)}, but the model's first "
                             f"layer {what}")
        batched = x.dim() == ndim
    else:
        batched = x.dim() in (2, 4) and x.shape[0] == 1
    if batched and x.shape[0] != 1:
        raise InputError(f"{argument} has shape {tuple(x.shape)}: explain one input at a time "
                         "(a batch axis of size 1, or none), or use explain_batch")
    xb = (x if batched else x.unsqueeze(0)).detach().to(device=device, dtype=dtype)
    _check_finite(xb, argument, batch=False)
    return xb


def check_inputs(xs: Any, device: torch.device, dtype: torch.dtype,
                 expected: Optional[tuple[int, str]], argument: str = "xs") -> torch.Tensor:
    """Validate a batch of inputs; return it as one tensor ``(N, ...)`` on the model's
    device and dtype.

    ``xs`` is a tensor or array with the batch axis first, or a list of single inputs
    (each as :func:`check_input` accepts it, all of one shape). ``expected`` as for
    :func:`check_input`.

    Examples
    --------
    >>> check_inputs([torch.zeros(3, 2, 2), torch.ones(1, 3, 2, 2)], torch.device("cpu"),
    ...              torch.float64, (4, "expects (C, H, W)")).shape
    torch.Size([2, 3, 2, 2])
    >>> check_inputs(torch.tensor([[0.0], [float("nan")]]), torch.device("cpu"),
    ...              torch.float32, None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrp_widgets.engine.errors.InputError: xs[1] contains NaN values
    """
    if isinstance(xs, (list, tuple)):
        if not xs:
            raise InputError(f"{argument} is empty: give at least one input")
        parts = [check_input(x, device, dtype, expected, f"{argument}[{i}]")
                 for i, x in enumerate(xs)]
        for i, part in enumerate(parts):
            if part.shape != parts[0].shape:
                raise InputError(f"{argument}[{i}] has shape {tuple(part.shape[1:])}, but "
                                 f"{argument}[0] has {tuple(parts[0].shape[1:])}: the inputs "
                                 "of one batch must have one shape")
        return torch.cat(parts)
    xb = _real_tensor(xs, argument)
    if expected is not None and xb.dim() != expected[0]:
        raise InputError(f"{argument} has shape {tuple(xb.shape)}, but must be a batch of "
                         f"inputs with {expected[0]} axes, the batch axis first (the model's "
                         f"first layer {expected[1]}), or a list of inputs")
    if expected is None and xb.dim() < 2:
        raise InputError(f"{argument} has shape {tuple(xb.shape)}, but must be a batch of "
                         "inputs, the batch axis first, or a list of inputs")
    if xb.shape[0] == 0:
        raise InputError(f"{argument} is empty (shape {tuple(xb.shape)}): give at least "
                         "one input")
    xb = xb.detach().to(device=device, dtype=dtype)
    _check_finite(xb, argument, batch=True)
    return xb


def check_targets(targets: Any, n: int, n_classes: int,
                  argument: str = "targets") -> list[Optional[int]]:
    """One class index or None (the predicted class) per input of a batch of ``n``.

    ``targets`` is None (every input for its predicted class), or a list, 1-d integer
    tensor or array of length ``n`` whose items :func:`check_target` accepts.

    Examples
    --------
    >>> check_targets([2, None, torch.tensor(0)], 3, n_classes=4)
    [2, None, 0]
    >>> check_targets(torch.tensor([1.0, 2.0]), 2, 4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrp_widgets.engine.errors.InputError: targets must hold class indices (integers) ...
    """
    if targets is None:
        return [None] * n
    if isinstance(targets, (torch.Tensor, np.ndarray)):
        if targets.ndim != 1 or not _int_dtype(targets):
            raise InputError(f"{argument} must hold class indices (integers) in a list or a "
                             f"1-d integer tensor, got {_show(targets)}")
        targets = targets.tolist()
    elif isinstance(targets, (str, bytes, dict)) or not hasattr(targets, "__len__") or \
            _integer(targets) is not None:
        raise InputError(f"{argument} must be None or a list with one class index (or None) "
                         f"per input, got {_show(targets)}")
    if len(targets) != n:
        raise InputError(f"{argument} has {len(targets)} entries, but there are {n} inputs: "
                         "give one target (or None) per input")
    return [check_target(t, n_classes, f"{argument}[{i}]") for i, t in enumerate(targets)]


def check_init(init: Any) -> str:
    """The relevance put on the output: ``"logit"`` or ``"one_hot"``."""
    if not isinstance(init, str) or init not in ("logit", "one_hot"):
        raise InputError(f"init must be 'logit' or 'one_hot', not {init!r}")
    return init
