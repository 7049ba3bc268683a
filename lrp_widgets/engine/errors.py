"""Errors raised by the engine.

Every error a user can cause derives from :class:`LRPError`, so notebooks can catch
one type; each also derives from the built-in type that describes it best
(``ValueError``, ``TypeError``) so generic code keeps working.
"""
from __future__ import annotations


class LRPError(Exception):
    """Base class of all errors raised by lrp_widgets."""


class UnsupportedLayerError(LRPError, TypeError):
    """The model contains a module or operation the engine cannot propagate through.

    Attributes
    ----------
    name : str
        Dotted name of the module (or of the traced operation) in the model.
    module_type : str
        Qualified type name of the module, or the name of the function.
    """

    def __init__(self, message: str, name: str = "", module_type: str = "") -> None:
        super().__init__(message)
        self.name = name
        self.module_type = module_type


class InputError(LRPError, ValueError):
    """An argument (input tensor, target, layer name, selection) is not acceptable."""


class RuleError(InputError):
    """A composite gives a layer a rule that cannot be used on it (a Gamma rule on a max
    pooling, a Flat rule on a residual sum); raised when the ``Explainer`` is built.

    Attributes
    ----------
    name : str
        Dotted name of the layer.
    """

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name
