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
* Atoms as one product. The rank sums of all K concepts for all neurons are one matrix
  product ``q^T C``; negations follow for free (``sum over NOT c = -sum over c``).
* Beam steps as one product. For a beam formula ``phi`` and every concept ``c``,
  ``ranksum(phi AND c) = (q * phi)^T C`` and ``count(phi AND c) = phi^T C``: one product
  ``[2 N B, n] x [n, K]`` per step gives all AND sums; the other three operations come
  from set algebra without touching the samples again:
  ``phi AND NOT c = phi - (phi AND c)``, ``phi OR c = phi + c - (phi AND c)``,
  ``phi OR NOT c = (phi AND c) - c`` (rank sums; counts likewise with ``n`` for the
  full set).
* Exact where it matters. The products run in float32 to shortlist candidates; the
  shortlisted formulas' masks are then built and their rank sums, counts and an
  integer hash (a random projection with integer weights, exact in float64) recomputed
  exactly, so reported AUCs are exact and equal masks are recognised as equal.
* Deduplication. Formulas with the same mask are one explanation: a formula whose mask
  equals an atom's becomes that atom; among equal masks the shorter formula is kept,
  then the lexicographically first text. The beam never holds two equal masks.

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

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from repwidgets._progress import progress_counter
from repwidgets.engines import _checks
from repwidgets.engines.ranks import auc_matrix, mann_whitney_p, ranks_of_rows
from repwidgets.results import Result, notebook_plot

__all__ = ["InvertResult", "explain", "explain_activations", "formula_mask", "demo_section"]

MODES = ("positive", "negative")
# candidate operations of a beam step, in their enumeration order
OPERATIONS = ("AND", "AND NOT", "OR", "OR NOT")
_AND, _OR = 1, 2  # op codes stored in formulas (0: first atom)


# ---------------------------------------------------------------------------------- result
@dataclass
class InvertResult(Result):
    """Per-neuron INVERT explanations of one layer.

    Fields:
        formulas: one dict per neuron: ``{"text": str, "length": int, "clauses": [
            {"op": None | "AND" | "OR", "concept": str, "index": int, "negated": bool}, ...]}``
            - the formula folds left: ``((c1 op2 c2) op3 c3) ...``.
        auc: float64 [N], AUROC of the activations for the formula's mask (in
            ``mode="negative"`` the search minimises it, so values are near 0).
        fraction: float64 [N], share of samples in the formula's mask.
        p_value, log10_p: float64 [N], two-sided Mann-Whitney U test (normal
            approximation, tie-corrected); ``log10_p`` stays finite where ``p`` underflows.
        neurons: int64 [N], the neurons' indices in the layer.
        concept_names: the K concept names.
        layer, split, pool, mode, params: how it was computed.
        beams: with ``return_beam=True``, per neuron the final beam (best first), each
            entry a formula dict plus ``auc``, ``fraction``, ``p_value``, ``log10_p``.
        top_indices: int64 [N, k], the k samples with the highest activation (lowest in
            negative mode) of each neuron, best first, for the gallery's images.
        top_values: float32 [N, k], their activations.
        timings: seconds spent in ranks, products and selection, and the products' flops.
    """

    formulas: list
    auc: torch.Tensor
    fraction: torch.Tensor
    p_value: torch.Tensor
    log10_p: torch.Tensor
    neurons: torch.Tensor
    concept_names: list
    layer: str | None = None
    split: str | None = None
    pool: str | None = None
    mode: str = "positive"
    beams: list | None = None
    top_indices: torch.Tensor | None = None
    top_values: torch.Tensor | None = None
    timings: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ tables
    @property
    def differentiability(self) -> torch.Tensor:
        """``|2 (AUC - 0.5)|`` per neuron: 0 for chance, 1 for a perfect detector."""
        return (2.0 * (self.auc.double() - 0.5)).abs()

    def to_frame(self):
        """One row per neuron: neuron, formula, length, auc, differentiability, fraction,
        p_value, log10_p (plus the layer when known)."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "neuron": self.neurons.cpu().numpy().astype(np.int64),
                "formula": [f["text"] for f in self.formulas],
                "length": [int(f["length"]) for f in self.formulas],
                "auc": self.auc.cpu().double().numpy(),
                "differentiability": self.differentiability.cpu().numpy(),
                "fraction": self.fraction.cpu().double().numpy(),
                "p_value": self.p_value.cpu().double().numpy(),
                "log10_p": self.log10_p.cpu().double().numpy(),
            }
        )
        if self.layer is not None:
            frame.insert(0, "layer", self.layer)
        return frame

    def beam_frame(self):
        """The final beams (``return_beam=True``) as one row per (neuron, rank)."""
        import pandas as pd

        if self.beams is None:
            raise ValueError("This result has no beams: run explain(..., return_beam=True).")
        rows = []
        for neuron, beam in zip(self.neurons.tolist(), self.beams):
            for rank, entry in enumerate(beam):
                rows.append(
                    {
                        "neuron": neuron,
                        "rank": rank,
                        "formula": entry["text"],
                        "length": entry["length"],
                        "auc": entry["auc"],
                        "differentiability": abs(2 * (entry["auc"] - 0.5)),
                        "fraction": entry["fraction"],
                        "p_value": entry["p_value"],
                        "log10_p": entry["log10_p"],
                    }
                )
        return pd.DataFrame(rows)

    def concept_counts(self) -> dict[str, int]:
        """How many neurons' formulas mention each concept (negated or not), most first."""
        counts: dict[str, int] = {}
        for f in self.formulas:
            for name in {c["concept"] for c in f["clauses"]}:
                counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def masks(self, concepts: torch.Tensor) -> torch.Tensor:
        """The best formulas' masks, bool [n, N], evaluated on ``concepts`` [n, K]."""
        return torch.stack([formula_mask(f, concepts) for f in self.formulas], dim=1)

    # ------------------------------------------------------------------ display
    def plot(self, *others: InvertResult):
        """Bokeh layout: AUC distribution (one histogram per layer when ``others`` are
        given) and how often each concept appears in the formulas."""
        return plot_results([self, *others])

    def widget(self, images_per_card: int = 8, split: str | None = None, **kwargs):
        """A NeuronGallery: one card per neuron labelled with its formula.

        Cards carry the scores ``auc``, ``differentiability``, ``neg_log10_p``
        (``-log10 p``: larger is more significant, finite where ``p`` underflows),
        ``p_value`` and ``fraction``, so the gallery sorts by any of them (by AUC at
        first). With a session (results of :func:`explain`), each card shows the
        neuron's top-activating images and an activation histogram, and clicking an
        image tells whether the sample is inside the formula's mask.

        Args:
            images_per_card: images per card (at most the ``top_k`` of the run).
            split: split the images come from (default: the split the result used).
            **kwargs: passed to :class:`repwidgets.widgets.NeuronGallery`.

        Example:
            >>> r = rw.invert.explain(sess, "pool")      # doctest: +SKIP
            >>> r.widget()                                # doctest: +SKIP
        """
        try:
            from repwidgets.widgets.gallery import NeuronGallery
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "The NeuronGallery widget is not available in this installation "
                f"({exc}). Use r.to_frame() or r.plot() instead."
            ) from exc
        return NeuronGallery(
            *_gallery_args(self, images_per_card, split), **_gallery_kwargs(self, kwargs)
        )


def _gallery_kwargs(r: InvertResult, kwargs: dict) -> dict:
    kwargs = dict(kwargs)
    where = f"{r.layer} · " if r.layer else ""
    kwargs.setdefault("title", f"INVERT · {where}formulas of up to {r.params.get('max_length')}")
    kwargs.setdefault("sort_by", "auc" if r.mode == "positive" else "differentiability")
    return kwargs


def _gallery_args(r: InvertResult, images_per_card: int, split: str | None):
    """Cards, image source and detail source of the INVERT gallery."""
    if not isinstance(images_per_card, (int, np.integer)) or images_per_card < 0:
        raise ValueError(f"images_per_card must be an integer >= 0, got {images_per_card!r}.")
    sess = r._session
    split = split or r.split or "test"
    acts = None
    if sess is not None and r.layer is not None:
        acts = sess.activations(r.layer, split=split, pool=r.pool or "mean")
        acts = acts.detach().float().cpu()[:, r.neurons]
    top = r.top_indices
    if acts is not None and (top is None or split != (r.split or "test")):
        k = min(max(images_per_card, 1), acts.shape[0])
        top = torch.topk(acts if r.mode == "positive" else -acts, k, dim=0).indices.T
    log10_p = r.log10_p.double().cpu()
    cards = []
    for j, neuron in enumerate(r.neurons.tolist()):
        card = {
            "id": int(neuron),
            "label": r.formulas[j]["text"],
            "scores": {
                "auc": float(r.auc[j]),
                "differentiability": float(r.differentiability[j]),
                "neg_log10_p": float(-log10_p[j]),
                "p_value": float(r.p_value[j]),
                "fraction": float(r.fraction[j]),
            },
        }
        if sess is not None and top is not None and images_per_card > 0:
            card["images"] = [int(i) for i in top[j, :images_per_card].tolist()]
        if acts is not None:
            card["histogram"] = acts[:, j].numpy()
        cards.append(card)
    if sess is None:
        return cards, None, None

    concepts = torch.as_tensor(sess.concepts(split)).bool().cpu()
    column = {int(neuron): j for j, neuron in enumerate(r.neurons.tolist())}
    targets = torch.as_tensor(sess.targets(split)).cpu()
    class_names = list(getattr(sess, "class_names", []) or [])

    def image_source(keys: list) -> list[bytes]:
        return list(sess.thumbnails([int(k) for k in keys], split=split))

    def detail_source(card_id: int, key: Any) -> dict:
        i, j = int(key), column[int(card_id)]
        if not 0 <= i < concepts.shape[0]:
            raise KeyError(f"sample {i} is not in split {split!r} (0..{concepts.shape[0] - 1})")
        t = int(targets[i])
        inside = bool(formula_mask(r.formulas[j], concepts[i : i + 1])[0])
        details: dict = {
            "sample": i,
            "class": class_names[t] if 0 <= t < len(class_names) else t,
            "concepts": [r.concept_names[c] for c in torch.nonzero(concepts[i]).flatten().tolist()],
            "formula": r.formulas[j]["text"],
            "in formula": "yes" if inside else "no",
        }
        if acts is not None:
            details[f"activation of #{card_id}"] = float(acts[i, j])
        return details

    return cards, image_source, detail_source


# ---------------------------------------------------------------------------------- formulas
def _atom_text(atom: int, names: Sequence[str]) -> str:
    k = len(names)
    return names[atom % k] if atom < k else f"NOT {names[atom % k]}"


def _formula_text(atoms: Sequence[int], ops: Sequence[int], names: Sequence[str]) -> str:
    text = _atom_text(atoms[0], names)
    for i in range(1, len(atoms)):
        left = f"({text})" if i >= 2 else text
        text = f"{left} {'AND' if ops[i] == _AND else 'OR'} {_atom_text(atoms[i], names)}"
    return text


def _formula_dict(atoms: Sequence[int], ops: Sequence[int], names: Sequence[str]) -> dict:
    k = len(names)
    clauses = [
        {
            "op": None if i == 0 else ("AND" if ops[i] == _AND else "OR"),
            "concept": names[a % k],
            "index": int(a % k),
            "negated": bool(a >= k),
        }
        for i, a in enumerate(atoms)
    ]
    return {"text": _formula_text(atoms, ops, names), "length": len(atoms), "clauses": clauses}


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


# ---------------------------------------------------------------------------------- checks
# ---------------------------------------------------------------------------------- search
_ONES8 = 0x0101010101010101  # one 1 per byte: XOR flips 8 packed booleans at once


def _words(masks: torch.Tensor) -> torch.Tensor:
    """Bool [..., n_pad] (n_pad a multiple of 8) -> int64 [..., n_pad / 8], same memory."""
    shape = masks.shape
    flat = masks.contiguous().view(-1, shape[-1]).view(torch.int64)
    return flat.view(*shape[:-1], shape[-1] // 8)


def _bools(words: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_words`."""
    shape = words.shape
    flat = words.contiguous().view(-1, shape[-1]).view(torch.bool)
    return flat.view(*shape[:-1], shape[-1] * 8)


def _digit_bits(n: int) -> int:
    """Bits per digit so that a sum of n digits stays below 2^24 (exact in float32)."""
    return max(1, min(16, int(math.floor(24 - math.log2(max(n, 2))))))


def _to_digits(values: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Non-negative int64 [...] -> float32 [..., count] base-2^bits digits (least first)."""
    shifts = torch.arange(count, device=values.device) * bits
    return ((values[..., None] >> shifts) & ((1 << bits) - 1)).to(torch.float32)


def _from_digits(sums: torch.Tensor, bits: int) -> torch.Tensor:
    """Exact float32 digit sums [..., count] -> int64 [...]."""
    shifts = torch.arange(sums.shape[-1], device=sums.device) * bits
    return (sums.to(torch.int64) << shifts).sum(-1)


class _Search:
    """Beam search over formulas for a batch of neurons at a time (see the module doc).

    Masks are bool tensors whose sample axis is padded to a multiple of 8, so that they
    can be combined eight samples at a time through int64 views; padded samples carry
    zero weight in every sum and are absent from every concept.
    """

    def __init__(
        self,
        concepts: torch.Tensor,
        names: list[str],
        max_length: int,
        beam_size: int,
        min_fraction: float,
        max_fraction: float,
        max_operands: int | None,
        memory_budget: int,
        timings: dict,
        seed: int = 0,
    ) -> None:
        device = concepts.device
        self.device = device
        self.n, self.K = concepts.shape
        n, K = self.n, self.K
        self.n_pad = -(-n // 8) * 8
        self.names = names
        self.L, self.B = max_length, beam_size
        self.max_operands = max_operands
        self.memory_budget = memory_budget
        self.timings = timings
        # masks of every atom (concepts, then their negations) as bools [2K, n_pad] and
        # as int64 words [2K, n_pad / 8]
        atoms = torch.empty(2 * K, self.n_pad, dtype=torch.bool, device=device)
        atoms[:K, :n] = concepts.T
        atoms[:K, n:] = False
        self.atom_words = _words(atoms)
        torch.bitwise_xor(self.atom_words[:K], _ONES8, out=self.atom_words[K:])
        self.Cf = torch.empty(self.n_pad, K, dtype=torch.float32, device=device)
        self.Cf[:n] = concepts  # [n_pad, K] for the products
        self.Cf[n:] = 0.0
        self.lo = max(1, math.ceil(min_fraction * n - 1e-9))
        self.hi = min(n - 1, math.floor(max_fraction * n + 1e-9))
        # Exact sums in float32: every weight is split into digits of `bits` bits.
        self.bits = _digit_bits(n)
        self.q_digits = -(-math.ceil(math.log2(2 * n)) // self.bits)
        h_digits = max(2, -(-30 // self.bits))  # >= 30 bits per hash, two hashes
        self.h_digits = h_digits
        gen = torch.Generator().manual_seed(seed)
        H = torch.randint(0, 2 ** (self.bits * h_digits), (n, 2), generator=gen, dtype=torch.int64)
        H = H.to(device)
        shared = torch.zeros(self.n_pad, 2 * h_digits + 1, dtype=torch.float32, device=device)
        shared[:n, :h_digits] = _to_digits(H[:, 0], self.bits, h_digits)
        shared[:n, h_digits : 2 * h_digits] = _to_digits(H[:, 1], self.bits, h_digits)
        shared[:n, -1] = 1.0
        self.shared_w = shared  # [n_pad, 2 h + 1]: hash digits and the count column
        sums = (shared.T @ self.Cf).T  # [K, 2h + 1], exact
        self.cnt_c = sums[:, -1].to(torch.int64)  # [K]
        sig_c = torch.stack(
            [
                _from_digits(sums[:, :h_digits], self.bits),
                _from_digits(sums[:, h_digits : 2 * h_digits], self.bits),
            ],
            dim=1,
        )
        total = H.sum(0)
        self.atom_sig2 = torch.cat([sig_c, total - sig_c])  # [2K, 2] int64
        self.atom_sig = self.atom_sig2[:, 0].contiguous()
        self.atom_cnt = torch.cat([self.cnt_c, n - self.cnt_c])  # [2K]
        self.atom_valid = (self.atom_cnt >= self.lo) & (self.atom_cnt <= self.hi)
        self._text_cache: dict[tuple, str] = {}
        self.advance: Callable[[int], object] = lambda _neurons: None  # progress per step
        self._canonical_atoms()

    # -- helpers -----------------------------------------------------------------------
    def _atom_masks(self, atoms: torch.Tensor) -> torch.Tensor:
        """Masks of atom indices (any shape) -> bool [..., n_pad]."""
        return _bools(self.atom_words[atoms])

    def _text(self, atoms: tuple, ops: tuple) -> str:
        key = (atoms, ops)
        text = self._text_cache.get(key)
        if text is None:
            text = _formula_text(atoms, ops, self.names)
            self._text_cache[key] = text
        return text

    def _canonical_atoms(self) -> None:
        """Map every atom to the lexicographically first atom with the same mask."""
        K2 = 2 * self.K
        texts = [_atom_text(a, self.names) for a in range(K2)]
        lex = torch.empty(K2, dtype=torch.int64)
        lex[torch.tensor(sorted(range(K2), key=lambda a: (texts[a], a)))] = torch.arange(K2)
        lex = lex.to(self.device)
        key = torch.cat([self.atom_sig2, self.atom_cnt[:, None]], dim=1)
        _, group = torch.unique(key, dim=0, return_inverse=True)
        best = torch.full((K2,), K2, dtype=torch.int64, device=self.device)
        best.scatter_reduce_(0, group, lex, reduce="amin")
        by_lex = torch.empty_like(lex)
        by_lex[lex] = torch.arange(K2, device=self.device)
        self.canon = by_lex[best[group]]
        order = torch.argsort(self.atom_sig, stable=True)
        self.sig_sorted = self.atom_sig[order].contiguous()
        self.sig_order = order

    def _timed(self, key: str, start: float) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start

    def _weights(self, q: torch.Tensor) -> torch.Tensor:
        """Per-batch digit weights [Nb, n_pad, C]: rank digits, hash digits, count."""
        Nb = q.shape[0]
        shifted = torch.zeros(Nb, self.n_pad, dtype=torch.int64, device=self.device)
        shifted[:, : self.n] = q + (self.n - 1)  # non-negative
        qd = _to_digits(shifted, self.bits, self.q_digits)
        qd[:, self.n :] = 0.0
        return torch.cat([qd, self.shared_w.expand(Nb, *self.shared_w.shape)], dim=2)

    # -- one batch of neurons -----------------------------------------------------------
    def run(self, q: torch.Tensor) -> dict:
        """Beam search for a batch of neurons. ``q``: int64 [Nb, n] doubled centred ranks
        (negated for the negative mode). Returns the final beams (dict of tensors)."""
        n, K, B, L = self.n, self.K, self.B, self.L
        Nb = q.shape[0]
        t0 = time.perf_counter()
        qf = torch.zeros(Nb, self.n_pad, dtype=torch.float32, device=self.device)
        qf[:, :n] = q
        W = self._weights(q)
        self._timed("weights_s", t0)

        t0 = time.perf_counter()
        s_atom = qf @ self.Cf  # [Nb, K] approximate rank sums of the concepts
        self._timed("products_s", t0)
        self.timings["product_flops"] = self.timings.get("product_flops", 0) + 2.0 * Nb * n * K
        cntf = self.cnt_c.to(torch.float32)
        den = 2.0 * cntf * (n - cntf)
        auc_c = torch.where(den > 0, 0.5 + s_atom / den.clamp(min=1), 0.5)
        # operand restriction: top concepts per neuron by |AUC - 0.5|
        if self.max_operands is not None and self.max_operands < K:
            top = torch.topk((auc_c - 0.5).abs(), self.max_operands, dim=1).indices
            allowed_full = torch.zeros(Nb, K, dtype=torch.bool, device=self.device)
            allowed_full.scatter_(1, top, True)
            cols = torch.nonzero(allowed_full.any(0)).flatten()
            allowed = allowed_full[:, cols]
        else:
            cols = torch.arange(K, device=self.device)
            allowed = None
        Kc = cols.numel()
        Cf_sub = self.Cf if Kc == K else self.Cf[:, cols].contiguous()

        # ---- length 1: atoms
        t0 = time.perf_counter()
        score = torch.cat([auc_c, 1.0 - auc_c], dim=1)
        score = torch.where(self.atom_valid[None, :], score, -torch.inf)

        def decode_atoms(rows, flat):
            return {
                "atoms": torch.cat([flat[..., None], flat.new_full((*flat.shape, L - 1), -1)], -1),
                "ops": torch.zeros(*flat.shape, L, dtype=torch.int8, device=self.device),
                "length": torch.ones_like(flat),
                "masks": self._atom_masks(flat),
                "order": flat.clone(),
            }

        beam = self._select(score, decode_atoms, None, W)
        self._timed("select_s", t0)
        self.advance(Nb)

        # ---- lengths 2..L
        for _step in range(2, L + 1):
            t0 = time.perf_counter()
            m = beam["masks"]  # [Nb, B, n_pad]
            left = torch.empty(2, Nb, B, self.n_pad, dtype=torch.float32, device=self.device)
            torch.mul(m, qf[:, None, :], out=left[0])
            left[1].copy_(m)
            self._timed("products_prep_s", t0)
            t0 = time.perf_counter()
            prod = (left.view(2 * Nb * B, self.n_pad) @ Cf_sub).view(2, Nb, B, Kc)
            del left
            self._timed("products_s", t0)
            self.timings["product_flops"] += 2.0 * (2 * Nb * B) * n * Kc
            t0 = time.perf_counter()
            p_s, p_c = prod[0], prod[1]
            s_phi = beam["s2"].to(torch.float32)[:, :, None]
            c_phi = beam["cnt"].to(torch.float32)[:, :, None]
            s_c = s_atom[:, cols][:, None, :]
            c_c = cntf[cols][None, None, :]
            sums = torch.stack([p_s, s_phi - p_s, s_phi + s_c - p_s, p_s - s_c], dim=2)
            cnts = torch.stack([p_c, c_phi - p_c, c_phi + c_c - p_c, n - c_c + p_c], dim=2)
            del prod, p_s, p_c
            # equal counts with the parent mean the parent's own mask: drop (it is shorter)
            ok = (cnts >= self.lo) & (cnts <= self.hi) & (cnts != c_phi[..., None])
            ok &= beam["valid"][:, :, None, None]
            if allowed is not None:
                ok &= allowed[:, None, None, :]
            den = (2.0 * cnts * (n - cnts)).clamp(min=1.0)
            cand = torch.where(ok, 0.5 + sums / den, -torch.inf).view(Nb, B * 4 * Kc)
            del sums, cnts, ok, den
            beam_words = _words(beam["masks"])  # [Nb, B, n_pad / 8]

            def decode_step(rows, flat, beam=beam, beam_words=beam_words):
                b = flat // (4 * Kc)
                op = (flat // Kc) % 4
                k = cols[flat % Kc]
                r = rows[:, None].expand_as(flat)
                # AND: p & c;  OR: ~(~p & ~c);  c is the atom (the concept or its negation)
                is_or = op >= 2
                f = (is_or.long() * _ONES8)[..., None]
                words = beam_words[r, b] ^ f
                words &= self.atom_words[k + K * ((op % 2 == 1) ^ is_or).long()]
                words ^= f
                atoms = beam["atoms"][r, b].clone()
                ops = beam["ops"][r, b].clone()
                plen = beam["length"][r, b]  # shorter formulas stay in the beam
                slot = plen.clamp(max=L - 1)[..., None]
                atoms.scatter_(-1, slot, (k + K * (op % 2))[..., None])
                ops.scatter_(-1, slot, torch.where(op < 2, _AND, _OR).to(torch.int8)[..., None])
                return {
                    "atoms": atoms,
                    "ops": ops,
                    "length": plen + 1,
                    "masks": _bools(words),
                    "order": B + (b * 4 + op) * K + k,
                }

            beam = self._select(cand, decode_step, beam, W)
            self._timed("select_s", t0)
            self.advance(Nb)
        return beam

    # -- shortlist, exact recount, dedup, sort ---------------------------------------------
    def _select(self, cand: torch.Tensor, decode, old: dict | None, W: torch.Tensor) -> dict:
        """New beam from the old one and the candidates' approximate scores [Nb, M]."""
        Nb, M = cand.shape
        B = self.B
        n_valid = (cand > -torch.inf).sum(1)
        rows = torch.arange(Nb, device=self.device)
        # Shortlist length: enough candidates to hold B + 2 distinct scores. Equal masks
        # (e.g. commuted ANDs) have equal scores up to rounding, so they count once.
        T0 = min(M, 8 * B + 8)
        vals, flat = torch.topk(cand, T0, dim=1)
        distinct = torch.ones_like(vals, dtype=torch.int64)
        distinct[:, 1:] = ((vals[:, :-1] - vals[:, 1:]) > 2e-6).to(torch.int64)
        enough = distinct.cumsum(1) >= B + 2
        t_row = torch.where(enough.any(1), enough.to(torch.int8).argmax(1) + 1, T0)
        # one length for the batch; the few neurons that need more are retried below
        T = int(torch.quantile(t_row.to(torch.float64).cpu(), 0.9).ceil())
        out: dict | None = None
        first = True
        while True:
            if first:
                vals, flat, first = vals[:, :T], flat[:, :T], False
            else:
                vals, flat = torch.topk(cand[rows], T, dim=1)
            new = decode(rows, flat)
            new["valid"] = vals > -torch.inf
            new["s2"], new["sig"], new["cnt"] = self._exact(
                new["masks"], W if rows.numel() == Nb else W[rows]
            )
            new["valid"] &= (new["cnt"] >= self.lo) & (new["cnt"] <= self.hi)
            if old is not None:
                pool = {
                    key: torch.cat([old[key][rows], new[key]], dim=1)
                    for key in ("atoms", "ops", "length", "valid", "s2", "sig", "cnt")
                }
                pool["old_masks"] = old["masks"][rows] if rows.numel() < Nb else old["masks"]
                pool["new_masks"] = new["masks"]
                pool["order"] = torch.cat(
                    [torch.arange(B, device=self.device).expand(rows.numel(), B), new["order"]],
                    dim=1,
                )
            else:
                pool = dict(new)
                pool["new_masks"] = pool.pop("masks")
            beam, n_unique = self._dedup_sort(pool)
            if out is None:
                out = beam
            else:
                for key in out:
                    out[key][rows] = beam[key]
            retry = (n_unique < B) & (n_valid[rows] > T)
            if not bool(retry.any()) or T >= M:
                return out
            rows = rows[retry]
            self.timings["retries"] = self.timings.get("retries", 0) + int(rows.numel())
            T = min(M, max(T * 4, T0))

    def _exact(self, masks: torch.Tensor, W: torch.Tensor):
        """Exact rank sums, hashes [..., 2] and counts of masks [R, T, n_pad].

        Every weight is an integer digit small enough that all partial sums stay below
        2^24, so the float32 products are exact whatever the summation order: equal
        masks give equal values.
        """
        R, T, n_pad = masks.shape
        per = max(1, int(self.memory_budget // (4 * max(1, R) * n_pad * 2)))
        out = []
        for lo in range(0, T, per):
            out.append(torch.bmm(masks[:, lo : lo + per].to(torch.float32), W))
        res = torch.cat(out, dim=1)  # [R, T, C]
        qd, hd, bits = self.q_digits, self.h_digits, self.bits
        cnt = res[..., -1].to(torch.int64)
        s2 = _from_digits(res[..., :qd], bits) - (self.n - 1) * cnt
        sig = torch.stack(
            [
                _from_digits(res[..., qd : qd + hd], bits),
                _from_digits(res[..., qd + hd : qd + 2 * hd], bits),
            ],
            dim=-1,
        )
        return s2, sig, cnt

    def _dedup_sort(self, pool: dict):
        n, K, B = self.n, self.K, self.B
        valid, sig, cnt, length = pool["valid"], pool["sig"], pool["cnt"], pool["length"]
        s2 = pool["s2"]
        R, P = valid.shape
        # a formula whose mask is an atom's mask becomes that (canonical) atom
        pos = torch.searchsorted(self.sig_sorted, sig[..., 0].contiguous()).clamp(max=2 * K - 1)
        atom = self.sig_order[pos]
        hit = valid & (self.atom_sig2[atom] == sig).all(-1) & (self.atom_cnt[atom] == cnt)
        hit &= (length > 1) | (pool["atoms"][..., 0] != self.canon[atom])
        if bool(hit.any()):
            r, p = torch.nonzero(hit, as_tuple=True)
            pool["atoms"][r, p] = -1
            pool["atoms"][r, p, 0] = self.canon[atom[r, p]]
            pool["ops"][r, p] = 0
            pool["length"][r, p] = 1
            length = pool["length"]
        # duplicates within the pool: keep the shorter, then lexicographically first. Equal
        # masks have equal (hashes, count, rank sum); distinct masks collide with
        # probability below 2^-70.
        eq = (sig[:, :, None, :] == sig[:, None, :, :]).all(-1)
        eq &= (cnt[:, :, None] == cnt[:, None, :]) & (s2[:, :, None] == s2[:, None, :])
        eq &= valid[:, :, None] & valid[:, None, :]
        eq &= torch.ones(P, P, dtype=torch.bool, device=self.device).triu(1)
        dominated = torch.zeros(R, P, dtype=torch.bool, device=self.device)
        if bool(eq.any()):
            r, i, j = torch.nonzero(eq, as_tuple=True)
            li, lj = length[r, i], length[r, j]
            i_wins = li < lj
            tie = li == lj
            if bool(tie.any()):
                # rank the texts of the formulas involved in equal-length ties
                flat_i, flat_j = (r * P + i)[tie], (r * P + j)[tie]
                uniq, inv = torch.unique(torch.cat([flat_i, flat_j]), return_inverse=True)
                atoms_u = pool["atoms"].view(R * P, -1)[uniq].tolist()
                ops_u = pool["ops"].view(R * P, -1)[uniq].tolist()
                len_u = length.view(-1)[uniq].tolist()
                texts = [
                    self._text(tuple(a[:ln]), tuple(o[:ln]))
                    for a, o, ln in zip(atoms_u, ops_u, len_u)
                ]
                rank_of = {t: k for k, t in enumerate(sorted(set(texts)))}
                rank = torch.tensor([rank_of[t] for t in texts], device=self.device)
                ri, rj = rank[inv[: flat_i.numel()]], rank[inv[flat_i.numel() :]]
                oi = pool["order"].view(-1)[flat_i]
                oj = pool["order"].view(-1)[flat_j]
                i_wins[tie] = (ri < rj) | ((ri == rj) & (oi <= oj))
            loser = torch.where(i_wins, j, i)
            dominated[r, loser] = True
        keep = valid & ~dominated
        auc = 0.5 + pool["s2"] / (2.0 * cnt * (n - cnt)).clamp(min=1).to(torch.float64)
        key_auc = torch.where(keep, auc, -torch.inf)
        # sort by (-auc, length, order): successive stable sorts, least significant first
        perm = torch.argsort(pool["order"], dim=1, stable=True)
        perm = perm.gather(1, torch.argsort(length.gather(1, perm), dim=1, stable=True))
        perm = perm.gather(1, torch.argsort(-key_auc.gather(1, perm), dim=1, stable=True))
        sel = perm[:, : min(B, P)]
        rr = torch.arange(R, device=self.device)[:, None]
        beam = {key: pool[key][rr, sel] for key in ("atoms", "ops", "length", "s2", "sig", "cnt")}
        # the selected masks, from the old beam (first B pool slots) or the new candidates
        new_words = _words(pool["new_masks"])
        if "old_masks" in pool:
            n_old = pool["old_masks"].shape[1]
            old_words = _words(pool["old_masks"])
            from_old = (sel < n_old)[..., None]
            words = torch.where(
                from_old,
                old_words[rr, sel.clamp(max=n_old - 1)],
                new_words[rr, (sel - n_old).clamp(min=0)],
            )
        else:
            words = new_words[rr, sel]
        beam["masks"] = _bools(words)
        beam["valid"] = keep[rr, sel]
        beam["auc"] = auc[rr, sel]
        if sel.shape[1] < B:  # fewer candidates than beam slots: pad with invalid entries
            pad = B - sel.shape[1]
            for key, value in beam.items():
                filler = value[:, :1].expand(R, pad, *value.shape[2:]).clone()
                if key == "valid" or key == "masks":
                    filler[:] = False
                beam[key] = torch.cat([value, filler], dim=1)
        return beam, keep.sum(1)


# ---------------------------------------------------------------------------------- core
def explain_activations(
    acts: torch.Tensor,
    concepts: torch.Tensor,
    concept_names: Sequence[str] | None = None,
    max_length: int = 3,
    beam_size: int = 5,
    min_fraction: float = 0.0,
    max_fraction: float = 0.5,
    mode: str = "positive",
    neurons: Sequence[int] | torch.Tensor | None = None,
    return_beam: bool = False,
    max_operands: int | None = None,
    top_k: int = 16,
    continuity: bool = True,
    memory_budget_mb: float = 1024,
    batch_size: int | None = None,
    layer: str | None = None,
    progress: bool = True,
) -> InvertResult:
    """Explain every neuron of ``acts`` with its best formula over ``concepts``.

    Args:
        acts: [n, N] activations of N neurons on n samples (a 1-D [n] is one neuron).
            Computation runs on this tensor's device.
        concepts: bool [n, K]: concept k is present in sample i (0/1 accepted).
        concept_names: K names (default ``concept_0`` ...).
        max_length: longest formula (number of atoms), L >= 1.
        beam_size: formulas kept per step, B >= 1.
        min_fraction, max_fraction: a formula's mask must cover a share of samples in
            [min_fraction, max_fraction] (and at least one sample, not all).
        mode: ``"positive"`` (high activation = concept present, maximise AUC) or
            ``"negative"`` (low activation = concept present, minimise AUC).
        neurons: indices of the neurons to explain (default all).
        return_beam: also keep each neuron's final beam (``r.beams``, ``r.beam_frame()``).
        max_operands: combine beam formulas only with each neuron's top concepts by
            ``|AUC - 0.5|`` (both polarities); None uses all K concepts.
        top_k: top-activating samples kept per neuron (``r.top_indices``) for images.
        continuity: continuity correction of the Mann-Whitney p-value (scipy's default).
        memory_budget_mb: bound on the working memory; sets the neuron batch size.
        batch_size: neurons per batch (overrides the budget).
        layer: name stored in the result.
        progress: show a progress bar over neuron batches.

    Returns:
        :class:`InvertResult`.

    Raises:
        ValueError: mismatched lengths, NaN activations (naming the neurons), bad
            parameters, or no concept whose fraction fits the filter.

    Example:
        >>> r = explain_activations(acts, concepts, names, max_length=2)   # doctest: +SKIP
        >>> r.to_frame().sort_values("auc", ascending=False).head()         # doctest: +SKIP
    """
    t_start = time.perf_counter()
    _checks.invert_params(
        max_length, beam_size, min_fraction, max_fraction, mode, MODES, max_operands, top_k
    )
    acts, concepts, names, idx = _checks.invert_inputs(acts, concepts, concept_names, neurons)
    device = acts.device
    if device.type == "meta":
        raise ValueError("acts are on the meta device; pass real activations.")
    concepts = concepts.to(device)
    n, K = concepts.shape
    N = acts.shape[1]
    max_length, beam_size = int(max_length), int(beam_size)
    timings: dict = {"ranks_s": 0.0, "products_s": 0.0, "select_s": 0.0, "product_flops": 0.0}
    memory_budget = int(memory_budget_mb * 2**20)

    t0 = time.perf_counter()
    search = _Search(
        concepts,
        names,
        max_length,
        beam_size,
        min_fraction,
        max_fraction,
        None if max_operands is None else int(max_operands),
        memory_budget,
        timings,
    )
    if not bool(search.atom_valid.any()):
        frac = search.cnt_c.double() / n
        raise ValueError(
            f"No concept (or its negation) covers a fraction of samples within "
            f"[min_fraction={min_fraction}, max_fraction={max_fraction}] (at least 1 sample, "
            f"not all): concept fractions range from {float(frac.min()):.4g} to "
            f"{float(frac.max()):.4g}. Widen the fraction range."
        )

    timings["setup_s"] = time.perf_counter() - t0
    B, L = beam_size, max_length
    kk = min(K, max(1, max_operands or K))
    T = max(3 * B, B + 8)
    per_neuron = n * (40 + 9 * B + 10 * T) + 4 * B * kk * 40 + 2 * K * 8
    nb = int(batch_size) if batch_size else max(1, min(N, memory_budget // max(per_neuron, 1)))

    out_atoms, out_ops, out_len, out_valid, out_auc, out_cnt, out_ties = [], [], [], [], [], [], []
    sign = 1 if mode == "positive" else -1
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # TF32 would spoil the shortlist products
    try:
        desc = f"INVERT ({N} neurons x {L} steps)"
        with progress_counter(N * L, desc, progress, unit="neuron-step") as bar:
            search.advance = bar.update  # called once per beam step with the batch width
            for lo in range(0, N, nb):
                t0 = time.perf_counter()
                q, ties = ranks_of_rows(acts[:, lo : lo + nb].T.contiguous().to(device))
                if sign < 0:
                    q = q.neg_()
                search._timed("ranks_s", t0)
                beam = search.run(q)
                out_atoms.append(beam["atoms"].cpu())
                out_ops.append(beam["ops"].cpu())
                out_len.append(beam["length"].cpu())
                out_valid.append(beam["valid"].cpu())
                out_auc.append(beam["auc"].cpu())
                out_cnt.append(beam["cnt"].cpu())
                out_ties.append(ties.cpu())
    finally:
        torch.set_float32_matmul_precision(prev)

    atoms = torch.cat(out_atoms)
    ops = torch.cat(out_ops)
    lengths = torch.cat(out_len)
    valid = torch.cat(out_valid)
    auc_search = torch.cat(out_auc)  # [N, B], in the search direction
    cnt = torch.cat(out_cnt)
    ties = torch.cat(out_ties)
    auc_raw = auc_search if mode == "positive" else 1.0 - auc_search
    p, log10_p = mann_whitney_p(auc_raw, cnt, n, ties[:, None], continuity=continuity)
    frac = cnt.double() / n

    at_l, op_l, len_l, val_l = atoms.tolist(), ops.tolist(), lengths.tolist(), valid.tolist()
    formulas, beams = [], [] if return_beam else None
    for j in range(N):
        if not val_l[j][0]:  # cannot happen when an atom passes the filter; kept for safety
            raise RuntimeError(f"No formula passed the fraction filter for neuron {int(idx[j])}.")
        formulas.append(_formula_dict(at_l[j][0][: len_l[j][0]], op_l[j][0][: len_l[j][0]], names))
        if beams is not None:
            entries = []
            for b in range(B):
                if not val_l[j][b]:
                    continue
                entry = _formula_dict(at_l[j][b][: len_l[j][b]], op_l[j][b][: len_l[j][b]], names)
                entry.update(
                    auc=float(auc_raw[j, b]),
                    fraction=float(frac[j, b]),
                    p_value=float(p[j, b]),
                    log10_p=float(log10_p[j, b]),
                )
                entries.append(entry)
            beams.append(entries)

    top_indices = top_values = None
    if top_k > 0:
        k = min(top_k, n)
        vals, ind = torch.topk(sign * acts.to(torch.float32), k, dim=0)
        top_indices = ind.T.contiguous().cpu()
        top_values = (sign * vals).T.contiguous().cpu()

    timings["total_s"] = time.perf_counter() - t_start
    timings["neurons_per_batch"] = nb
    return InvertResult(
        formulas=formulas,
        auc=auc_raw[:, 0].contiguous(),
        fraction=frac[:, 0].contiguous(),
        p_value=p[:, 0].contiguous(),
        log10_p=log10_p[:, 0].contiguous(),
        neurons=idx.clone(),
        concept_names=list(names),
        layer=layer,
        mode=mode,
        params={
            "max_length": L,
            "beam_size": B,
            "min_fraction": float(min_fraction),
            "max_fraction": float(max_fraction),
            "max_operands": None if max_operands is None else int(max_operands),
            "continuity": bool(continuity),
            "n_samples": int(n),
        },
        beams=beams,
        top_indices=top_indices,
        top_values=top_values,
        timings=timings,
    )


def explain(
    sess,
    layer: str,
    max_length: int = 3,
    beam_size: int = 5,
    min_fraction: float = 0.0,
    max_fraction: float = 0.5,
    mode: str = "positive",
    pool: str = "mean",
    split: str = "test",
    neurons: Sequence[int] | torch.Tensor | None = None,
    return_beam: bool = False,
    **kwargs,
) -> InvertResult:
    """Explain the neurons of ``layer`` of a session's model with concept formulas.

    Takes the layer's activations on ``split`` (spatially pooled with ``pool``) and the
    split's concept labels from the session, and runs :func:`explain_activations`
    (extra keyword arguments go there) on the session's device.

    Example:
        >>> import repwidgets as rw
        >>> sess = rw.demo_session()                                   # doctest: +SKIP
        >>> r = rw.invert.explain(sess, "features.conv4", max_length=2)  # doctest: +SKIP
        >>> r.to_frame().sort_values("auc").tail()                      # doctest: +SKIP
    """
    if pool not in ("mean", "max"):
        raise ValueError(
            f"INVERT needs one value per sample and neuron: use pool='mean' or 'max', not {pool!r}."
        )
    _checks.invert_params(
        max_length,
        beam_size,
        min_fraction,
        max_fraction,
        mode,
        MODES,
        kwargs.get("max_operands"),
        kwargs.get("top_k", 16),
    )
    sess.module(layer)
    concepts = _checks.concept_table(sess, split, "INVERT")
    _checks.concept_fractions(concepts, min_fraction, max_fraction)
    if neurons is not None:
        _checks.neuron_indices(neurons, _checks.layer_width(sess, layer), layer)
    acts = sess.activations(layer, split=split, pool=pool)
    kwargs.setdefault("progress", getattr(sess, "progress", True))
    device = getattr(sess, "device", acts.device)
    r = explain_activations(
        acts.to(device),
        concepts,
        sess.concept_names,
        max_length=max_length,
        beam_size=beam_size,
        min_fraction=min_fraction,
        max_fraction=max_fraction,
        mode=mode,
        neurons=neurons,
        return_beam=return_beam,
        layer=layer,
        **kwargs,
    )
    r.split, r.pool = split, pool
    r._session = sess
    return r


# ---------------------------------------------------------------------------------- plots
@notebook_plot
def plot_results(results: Sequence[InvertResult], top_concepts: int = 25):
    """AUC distribution per result (layer) and concept frequency among the formulas."""
    from bokeh.layouts import row
    from bokeh.models import ColumnDataSource
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure

    if not results:
        raise ValueError("Give at least one InvertResult to plot.")
    fig = figure(
        title="INVERT: AUC of each neuron's best formula",
        width=520,
        height=320,
        x_axis_label="AUC",
        y_axis_label="neurons",
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    edges = np.linspace(0.0, 1.0, 41)
    for i, r in enumerate(results):
        values = r.auc.cpu().double().numpy()
        counts, _ = np.histogram(values[np.isfinite(values)], bins=edges)
        label = r.layer or f"result {i}"
        fig.quad(
            top=counts,
            bottom=0,
            left=edges[:-1],
            right=edges[1:],
            fill_color=Category10_10[i % 10],
            line_color=Category10_10[i % 10],
            fill_alpha=0.45,
            legend_label=f"{label} (n={len(values)})",
        )
    fig.legend.location = "top_left"
    counts: dict[str, int] = {}
    for r in results:
        for name, c in r.concept_counts().items():
            counts[name] = counts.get(name, 0) + c
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_concepts]
    names = [k for k, _ in items]
    source = ColumnDataSource({"concept": names, "neurons": [v for _, v in items]})
    bars = figure(
        x_range=names,
        title="Concepts in the formulas",
        width=max(420, 26 * len(names)),
        height=320,
        y_axis_label="neurons whose formula uses it",
        tools="hover,save",
        tooltips=[("concept", "@concept"), ("neurons", "@neurons")],
    )
    bars.vbar(x="concept", top="neurons", width=0.8, source=source, color=Category10_10[0])
    bars.xaxis.major_label_orientation = 0.9 if len(names) > 6 else 0
    return row(fig, bars)


# ---------------------------------------------------------------------------------- demo
def demo_section(sess, layer: str | None = None, max_length: int = 3) -> dict:
    """Run INVERT on a layer of the demo session and summarise it for the report.

    The default layer is ``pool`` (the features the classifier reads) when the model has
    one, else its last convolution. The summary names the neurons that detect the planted
    artifact on their own (AUC >= 0.95 for the artifact concept) with their formulas.

    Returns:
        ``{"title": str, "summary_lines": [str], "figures": [bokeh layout]}``.

    Example:
        >>> section = demo_section(rw.demo_session())            # doctest: +SKIP
        >>> print("\n".join(section["summary_lines"]))          # doctest: +SKIP
    """
    if layer is None:
        layers = sess.layers()
        convs = [name for name in layers if name.split(".")[-1].startswith("conv")]
        layer = "pool" if "pool" in layers else (convs[-1] if convs else layers[-1])
    r = explain(sess, layer, max_length=max_length, beam_size=5, min_fraction=0.01, progress=False)
    frame = r.to_frame().sort_values("auc", ascending=False)
    n_sig = int((frame.log10_p < math.log10(0.05 / max(len(frame), 1))).sum())
    lines = [
        f"INVERT on {layer}: {len(frame)} neurons labelled with formulas of up to "
        f"{max_length} concepts in {r.timings.get('total_s', 0.0):.2f} s.",
        f"Median AUC {frame.auc.median():.3f}; {int((frame.auc >= 0.9).sum())} neurons with "
        f"AUC >= 0.9; {n_sig} labels significant at 0.05 (Bonferroni over neurons).",
    ]
    names = list(sess.concept_names)
    data_cfg = getattr(getattr(sess, "data", None), "config", {}) or {}
    artifact = data_cfg.get("artifact")
    if artifact in names:
        k = names.index(artifact)
        acts = sess.activations(layer, split=r.split or "test", pool=r.pool or "mean")
        single = auc_matrix(acts.detach().cpu(), sess.concepts(r.split or "test"))[:, k]
        detectors = torch.nonzero(single >= 0.95).flatten().tolist()
        labelled = [j for j in detectors if _mentions(r.formulas[j], artifact)]
        mention = sum(_mentions(f, artifact) for f in r.formulas)
        lines.append(
            f"Artifact {artifact!r}: {len(detectors)} neurons detect it on their own "
            f"(AUC >= 0.95); {len(labelled)} of them are labelled with a formula containing it. "
            f"{mention} formulas mention it in all."
        )
        for j in detectors[:12]:
            lines.append(
                f"  artifact detector {int(r.neurons[j])}: {r.formulas[j]['text']} "
                f"(AUC {float(r.auc[j]):.3f}, log10 p {float(r.log10_p[j]):.1f})"
            )
        if len(detectors) > 12:
            lines.append(f"  ... and {len(detectors) - 12} more")
    lines.append("Best labels:")
    for row in frame.head(5).itertuples():
        lines.append(
            f"  neuron {row.neuron}: {row.formula}  (AUC {row.auc:.3f}, log10 p {row.log10_p:.1f})"
        )
    return {
        "title": f"INVERT: neuron labels ({layer})",
        "summary_lines": lines,
        "figures": [r.plot()],
        "result": r,
    }


def _mentions(formula: dict, concept: str) -> bool:
    return any(c["concept"] == concept for c in formula["clauses"])
