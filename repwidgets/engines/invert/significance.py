"""From INVERT's final beams to reported formulas: AUCs, fractions and p-values.

The search works in its own direction (rank sums negated in ``mode="negative"``); here
the AUCs are turned back into the activations' direction and each formula gets its
two-sided Mann-Whitney p-value (normal approximation, tie-corrected, see
:func:`repwidgets.engines.ranks.mann_whitney_p`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from repwidgets.engines.ranks import mann_whitney_p

from .formulas import formula_dict

__all__ = ["beam_statistics", "collect_formulas"]


def beam_statistics(
    auc_search: torch.Tensor,
    cnt: torch.Tensor,
    ties: torch.Tensor,
    n: int,
    mode: str,
    continuity: bool,
) -> dict[str, torch.Tensor]:
    """AUC, p-value, log10 p and fraction of every beam entry, each float64 [N, B].

    Args:
        auc_search: [N, B] AUCs in the search's direction.
        cnt: [N, B] samples in each formula's mask.
        ties: [N] tie term of each neuron's activations.
        n: number of samples.
    """
    auc = auc_search if mode == "positive" else 1.0 - auc_search
    p, log10_p = mann_whitney_p(auc, cnt, n, ties[:, None], continuity=continuity)
    return {"auc": auc, "p_value": p, "log10_p": log10_p, "fraction": cnt.double() / n}


def collect_formulas(
    beam: dict[str, torch.Tensor],
    stats: dict[str, torch.Tensor],
    names: Sequence[str],
    neurons: torch.Tensor,
    return_beam: bool,
) -> tuple[list[dict], list[list[dict]] | None]:
    """Each neuron's best formula (a dict, see :class:`InvertResult`) and, with
    ``return_beam``, its whole final beam with AUC, fraction and significance."""
    atoms, ops = beam["atoms"].tolist(), beam["ops"].tolist()
    lengths, valid = beam["length"].tolist(), beam["valid"].tolist()
    formulas: list[dict] = []
    beams: list[list[dict]] | None = [] if return_beam else None
    for j in range(len(atoms)):
        if not valid[j][0]:  # cannot happen when an atom passes the filter; kept for safety
            raise RuntimeError(
                f"No formula passed the fraction filter for neuron {int(neurons[j])}."
            )
        ln = lengths[j][0]
        formulas.append(formula_dict(atoms[j][0][:ln], ops[j][0][:ln], names))
        if beams is None:
            continue
        entries = []
        for b in range(len(atoms[j])):
            if not valid[j][b]:
                continue
            ln = lengths[j][b]
            entry = formula_dict(atoms[j][b][:ln], ops[j][b][:ln], names)
            entry.update({key: float(stats[key][j, b]) for key in _ENTRY_STATS})
            entries.append(entry)
        beams.append(entries)
    return formulas, beams


_ENTRY_STATS = ("auc", "fraction", "p_value", "log10_p")
