"""Where relevance can be non-zero: a static analysis of the plan.

Most rules weigh the relevance they send to an input by that input's value
(ε, z⁺, αβ, γ, Norm). So relevance arriving at a ReLU's output is zero wherever the
ReLU outputs zero, and the layer before the ReLU receives relevance only on its
positive outputs. The γ rule can then skip the half of its work that serves
negative outputs, and its masks, and every rule can use a cheaper stabiliser
(it differs only where no relevance arrives), without changing a single number. This holds for
every backward pass the engine runs (full or conditional: a selection only zeroes
more entries), and is decided here once per Explainer from the graph and the rules.
"""
from __future__ import annotations

from typing import Any, Optional

from .activations import is_rectifying, is_zero_at_zero
from .plan import Plan
from .rules import AlphaBeta, Epsilon, Gamma, ZPlus
from .steps import (AffineStep, CatStep, LinearMapStep, MaxPoolStep, PassStep, ReshapeStep,
                    Step, SumStep)

_PROPORTIONAL_RULES = (Epsilon, ZPlus, AlphaBeta, Gamma)       # Norm is an Epsilon


def _weighs_by_input(step: Step, rule: Optional[Any]) -> bool:
    """Does ``step`` send each input relevance proportional to that input's value?"""
    if isinstance(step, AffineStep):
        return isinstance(rule, _PROPORTIONAL_RULES)
    if isinstance(step, LinearMapStep):
        return True
    return isinstance(step, SumStep) and step.proportional


def _passes_through(step: Step) -> bool:
    """Does ``step`` hand its output relevance on unchanged (or re-routed), so that
    zeros at its output stay zeros at its input where the input is zero?"""
    if isinstance(step, (ReshapeStep, CatStep, MaxPoolStep)):
        return True
    if isinstance(step, SumStep):
        return not step.proportional
    if isinstance(step, PassStep):
        if step.kind == "identity":
            return True
        if step.kind == "activation":
            return is_zero_at_zero(step.fn)
    return False


def zero_where_zero(plan: Plan, rules: list[Any]) -> list[bool]:
    """For each step: is its output relevance zero wherever its output value is zero?"""
    consumers: list[list[int]] = [[] for _ in plan.steps]
    for i, step in enumerate(plan.steps):
        for j in step.inputs:
            consumers[j].append(i)
    ok = [False] * len(plan.steps)
    for i in range(len(plan.steps) - 1, -1, -1):
        if i == plan.output or not consumers[i]:
            continue                  # the initial relevance may sit on a zero output
        ok[i] = all(_weighs_by_input(plan.steps[c], rules[c]) or
                    (_passes_through(plan.steps[c]) and ok[c]) for c in consumers[i])
    return ok


def nonnegative_outputs(plan: Plan) -> list[bool]:
    """For each step: is its output >= 0 for every input? (ReLU outputs, and pooling,
    reshapes, sums and concatenations of such outputs.)"""
    ok = [False] * len(plan.steps)
    for i, step in enumerate(plan.steps):
        if isinstance(step, PassStep):
            ok[i] = is_rectifying(step.fn) or (step.kind == "identity"
                                               and ok[step.inputs[0]])
        elif isinstance(step, (MaxPoolStep, LinearMapStep, ReshapeStep, SumStep, CatStep)):
            ok[i] = bool(step.inputs) and all(ok[j] for j in step.inputs)
    return ok


def mark_positive_relevance(plan: Plan, rules: list[Any]) -> None:
    """Flag the steps whose relevance provably sits on positive outputs only: those
    followed only by ReLU-like activations whose outputs satisfy :func:`zero_where_zero`. Linear/Conv
    layers carry the flag on their layer too, where the rules read it."""
    ok = zero_where_zero(plan, rules)
    for i, step in enumerate(plan.steps):
        if not isinstance(step, (AffineStep, SumStep, LinearMapStep)):
            continue
        users = [c for c, s in enumerate(plan.steps) if i in s.inputs]
        step.positive_relevance_only = bool(users) and i != plan.output and all(
            isinstance(plan.steps[c], PassStep) and is_rectifying(plan.steps[c].fn) and ok[c]
            for c in users)
        if isinstance(step, AffineStep):
            step.layer.positive_relevance_only = step.positive_relevance_only
    nonnegative = nonnegative_outputs(plan)
    for step in plan.steps:
        if isinstance(step, AffineStep):
            step.layer.nonnegative_input = nonnegative[step.inputs[0]]
