"""A pure-Python meaning of the filter language, to check the SQL the compiler produces against.

It evaluates the plain AST (``imagesearch_pg.store.filters`` dataclasses) without any SQL, with the documented
NULL rule: a missing value (None, or no key in the row) never satisfies =, <, <=, >, >= or in, and always
satisfies != and not in. The property tests evaluate the ASTs they generate themselves, so a parser bug cannot
hide behind this module; ``evaluate(text, row)`` (through the parser) is for hand-written examples.
"""

from __future__ import annotations

from collections.abc import Mapping

from imagesearch_pg.store.filters import And, Membership, Node, Or, parse_filter

_ORDERED = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
}


def evaluate_node(node: Node, row: Mapping[str, int | str | None]) -> bool:
    if isinstance(node, And):
        return all(evaluate_node(operand, row) for operand in node.operands)
    if isinstance(node, Or):
        return any(evaluate_node(operand, row) for operand in node.operands)
    value = row.get(node.field)
    if isinstance(node, Membership):
        if value is None:
            return node.negated
        return (value in node.values) != node.negated
    if node.op == "!=":
        return value is None or value != node.value
    if value is None:
        return False
    return _ORDERED[node.op](value, node.value)


def evaluate(text: str, row: Mapping[str, int | str | None]) -> bool:
    """Does ``row`` (attribute name -> value or None) satisfy the filter ``text``?"""
    return evaluate_node(parse_filter(text), row)
