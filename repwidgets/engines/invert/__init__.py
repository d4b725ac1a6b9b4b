"""INVERT: label each neuron with the boolean formula of concepts it recognises best.

Inverse recognition (Bykov et al., NeurIPS 2023) explains a neuron by the compositional
concept (a formula over the dataset's concept labels, such as ``(red AND NOT circle) OR
stripes``) whose samples the neuron ranks highest: the formula that maximises the AUROC
of the neuron's activations for the formula's mask, found by beam search, with the
Mann-Whitney p-value as its significance.

How this engine computes it (the numerics, not the method, differ from the reference):

* Ranks once. Each neuron's activations are turned into doubled centred average ranks
  ``q`` (exact tie handling, see :mod:`repwidgets.engines.ranks`); the AUC of any mask
  is then ``1/2 + sum(q[mask]) / (2 n+ n-)``.
* Atoms and beam steps as matrix products, shortlisted in float32 and recounted exactly,
  with equal masks deduplicated (:mod:`.search`, :mod:`.bits`).

Modules:

* :mod:`.config`: :class:`InvertConfig`, the settings.
* :mod:`.formulas`: formula text, dicts and masks (:func:`formula_mask`).
* :mod:`.bits`, :mod:`.search`: the beam search.
* :mod:`.significance`: AUCs, fractions and Mann-Whitney p-values of the final beams.
* :mod:`.result`: :class:`InvertResult` and its plot.
* :mod:`.explain`: :func:`explain_activations` (tensors) and :func:`explain` (a session).

Example:
    >>> import torch
    >>> from repwidgets.engines import invert
    >>> concepts = torch.rand(2000, 6) < 0.3
    >>> acts = (concepts[:, 0] & ~concepts[:, 1]).float()[:, None] + 0.1 * torch.randn(2000, 1)
    >>> r = invert.explain_activations(acts, concepts, list("abcdef"), progress=False)
    >>> r.to_frame().formula[0]                                      # doctest: +SKIP
    'a AND NOT b'
"""

from __future__ import annotations

from .config import MODES, InvertConfig
from .explain import explain, explain_activations
from .formulas import OPERATIONS, formula_mask
from .result import InvertResult, concat_results, plot_results

__all__ = [
    "MODES",
    "OPERATIONS",
    "InvertConfig",
    "InvertResult",
    "concat_results",
    "explain",
    "explain_activations",
    "formula_mask",
    "plot_results",
]
