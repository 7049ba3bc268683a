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

from typing import Any

from .plan import Plan


def zero_where_zero(plan: Plan, rules: list[Any]) -> list[bool]:
    """For each step: is its output relevance zero wherever its output value is zero?

    True when every consumer of the output either weighs the relevance it sends back
    by the input value (ε, z⁺, αβ, γ, Norm: :meth:`Step.weighs_by_input`) or hands
    relevance on unchanged and has this property itself (:meth:`Step.passes_zeros`).
    """
    consumers: list[list[int]] = [[] for _ in plan.steps]
    for i, step in enumerate(plan.steps):
        for j in step.inputs:
            consumers[j].append(i)
    ok = [False] * len(plan.steps)
    for i in range(len(plan.steps) - 1, -1, -1):
        if i == plan.output or not consumers[i]:
            continue                  # the initial relevance may sit on a zero output
        ok[i] = all(plan.steps[c].weighs_by_input(rules[c]) or
                    (plan.steps[c].passes_zeros() and ok[c]) for c in consumers[i])
    return ok


def nonnegative_outputs(plan: Plan) -> list[bool]:
    """For each step: is its output >= 0 for every input? (ReLU outputs, and pooling,
    reshapes, sums and concatenations of such outputs.)"""
    ok = [False] * len(plan.steps)
    for i, step in enumerate(plan.steps):
        ok[i] = bool(step.inputs) and step.nonnegative([ok[j] for j in step.inputs])
    return ok


def mark_positive_relevance(plan: Plan, rules: list[Any]) -> None:
    """Flag the steps whose relevance provably sits on positive outputs only: those
    followed only by ReLU-like activations whose outputs satisfy
    :func:`zero_where_zero`. Linear/Conv layers carry the flag on their layer too,
    where the rules read it."""
    ok = zero_where_zero(plan, rules)
    consumers: list[list[int]] = [[] for _ in plan.steps]
    for c, s in enumerate(plan.steps):
        for j in s.inputs:
            consumers[j].append(c)
    for i, step in enumerate(plan.steps):
        if not step.uses_denominator:
            continue
        users = consumers[i]
        step.positive_relevance_only = bool(users) and i != plan.output and all(
            plan.steps[c].rectifies() and ok[c] for c in users)
        if hasattr(step, "layer"):
            step.layer.positive_relevance_only = step.positive_relevance_only
    nonnegative = nonnegative_outputs(plan)
    for step in plan.steps:
        if hasattr(step, "layer"):
            step.layer.nonnegative_input = nonnegative[step.inputs[0]]
