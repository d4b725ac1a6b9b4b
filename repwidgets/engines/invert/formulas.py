"""Formula algebra of INVERT: a formula's text, its dict form and its mask.

A formula is a left fold of atoms, ``((a1 op2 a2) op3 a3) ...``, where an atom is a
concept (index ``k < K``) or its negation (index ``k + K``) and each operation is AND or
OR. The search keeps formulas as two integer rows (atoms, op codes); results keep them
as dicts (see :func:`formula_dict`) that :func:`formula_mask` evaluates on any concept
table.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["OPERATIONS", "formula_mask"]

#: Candidate operations of a beam step, in their enumeration order.
OPERATIONS = ("AND", "AND NOT", "OR", "OR NOT")
#: Op codes stored in formulas (0: the first atom, which has no operation).
AND, OR = 1, 2


def atom_text(atom: int, names: Sequence[str]) -> str:
    """Text of atom ``atom``: the concept's name, or ``NOT name`` for a negation."""
    k = len(names)
    return names[atom % k] if atom < k else f"NOT {names[atom % k]}"


def formula_text(atoms: Sequence[int], ops: Sequence[int], names: Sequence[str]) -> str:
    """Text of a formula, with brackets around each left operand of length >= 2."""
    text = atom_text(atoms[0], names)
    for i in range(1, len(atoms)):
        left = f"({text})" if i >= 2 else text
        text = f"{left} {'AND' if ops[i] == AND else 'OR'} {atom_text(atoms[i], names)}"
    return text


def formula_dict(atoms: Sequence[int], ops: Sequence[int], names: Sequence[str]) -> dict:
    """The dict form of a formula: ``{"text", "length", "clauses": [{"op", "concept",
    "index", "negated"}, ...]}`` (see :class:`InvertResult`)."""
    k = len(names)
    clauses = [
        {
            "op": None if i == 0 else ("AND" if ops[i] == AND else "OR"),
            "concept": names[a % k],
            "index": int(a % k),
            "negated": bool(a >= k),
        }
        for i, a in enumerate(atoms)
    ]
    return {"text": formula_text(atoms, ops, names), "length": len(atoms), "clauses": clauses}


def formula_mask(formula: dict, concepts: torch.Tensor) -> torch.Tensor:
    """Evaluate a formula dict (from :class:`InvertResult`) on concepts [n, K] -> bool [n].

    Example:
        >>> f = {"clauses": [{"op": None, "index": 0, "negated": False},
        ...                  {"op": "AND", "index": 1, "negated": True}]}
        >>> formula_mask(f, torch.tensor([[1, 0], [1, 1]]).bool())
        tensor([ True, False])
    """
    concepts = torch.as_tensor(concepts).bool()
    mask = None
    for clause in formula["clauses"]:
        col = concepts[:, int(clause["index"])]
        if clause.get("negated"):
            col = ~col
        if mask is None:
            mask = col.clone()
        elif clause["op"] == "AND":
            mask &= col
        elif clause["op"] == "OR":
            mask |= col
        else:
            raise ValueError(f"Unknown operation {clause['op']!r} in formula {formula}.")
    if mask is None:
        raise ValueError("The formula has no clauses.")
    return mask


def mentions(formula: dict, concept: str) -> bool:
    """Whether ``formula`` uses ``concept`` (negated or not)."""
    return any(c["concept"] == concept for c in formula["clauses"])
