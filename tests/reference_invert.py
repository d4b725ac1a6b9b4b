"""A plain-Python INVERT: the oracle the engine and its benchmark are checked against.

One neuron at a time, one mask and one ``sklearn.metrics.roc_auc_score`` call per
candidate formula, so it is slow and obviously right.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score


def _atom_text(a, names):
    k = len(names)
    return names[a % k] if a < k else f"NOT {names[a % k]}"


def _text(formula, names):
    text = _atom_text(formula[0][1], names)
    for i, (op, a) in enumerate(formula[1:], start=1):
        text = f"{f'({text})' if i >= 2 else text} {op} {_atom_text(a, names)}"
    return text


def reference_explain(a, C, names, L, B, min_fraction, max_fraction):
    """One neuron: beam search with one mask and one roc_auc_score call per candidate.

    Same rules as the engine (fraction filter, candidates phi AND/OR (NOT) c, a formula
    equal to an atom becomes the lexicographically first such atom, equal masks keep the
    shorter then lexicographically first formula, ties in AUC broken by length then
    generation order), so the two must agree exactly.
    """
    n, K = C.shape
    lo = max(1, math.ceil(min_fraction * n - 1e-9))
    hi = min(n - 1, math.floor(max_fraction * n + 1e-9))
    atom_masks = [C[:, k] for k in range(K)] + [~C[:, k] for k in range(K)]
    canon = {}
    for i, m in enumerate(atom_masks):
        key = np.packbits(m).tobytes()
        if key not in canon or (_atom_text(i, names), i) < canon[key]:
            canon[key] = (_atom_text(i, names), i)

    def entry(formula, mask, order):
        key = np.packbits(mask).tobytes()
        if key in canon:
            formula = ((None, canon[key][1]),)
        return {
            "formula": formula,
            "mask": mask,
            "key": key,
            "auc": roc_auc_score(mask, a),
            "length": len(formula),
            "text": _text(formula, names),
            "order": order,
        }

    def select(entries):
        best = {}
        for e in entries:
            old = best.get(e["key"])
            if old is None or (e["length"], e["text"], e["order"]) < (
                old["length"],
                old["text"],
                old["order"],
            ):
                best[e["key"]] = e
        ranked = sorted(
            best.values(), key=lambda e: (-round(e["auc"], 12), e["length"], e["order"])
        )
        return ranked[:B]

    beam = select(
        [entry(((None, i),), m, i) for i, m in enumerate(atom_masks) if lo <= m.sum() <= hi]
    )
    for _ in range(2, L + 1):
        entries = [dict(e, order=s) for s, e in enumerate(beam)]
        for b, phi in enumerate(beam):
            for op in range(4):
                for k in range(K):
                    col = C[:, k] if op % 2 == 0 else ~C[:, k]
                    mask = phi["mask"] & col if op < 2 else phi["mask"] | col
                    if lo <= mask.sum() <= hi:
                        formula = phi["formula"] + (("AND" if op < 2 else "OR", k + K * (op % 2)),)
                        entries.append(entry(formula, mask, B + (b * 4 + op) * K + k))
        beam = select(entries)
    return [(e["text"], e["auc"]) for e in beam]


# ------------------------------------------------------------------------------ parts
