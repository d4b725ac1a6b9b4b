"""INVERT's settings: one frozen dataclass shared by the session call and the tensor core."""

from __future__ import annotations

from dataclasses import dataclass

from repwidgets.config import Config
from repwidgets.engines import _checks

__all__ = ["MODES", "InvertConfig"]

#: Directions of the search: high activation (maximise AUC) or low (minimise it).
MODES = ("positive", "negative")


@dataclass(frozen=True)
class InvertConfig(Config):
    """How INVERT searches for each neuron's formula.

    Attributes:
        max_length: longest formula (number of atoms), L >= 1.
        beam_size: formulas kept per step, B >= 1.
        min_fraction, max_fraction: a formula's mask must cover a share of samples in
            [min_fraction, max_fraction] (and at least one sample, not all).
        mode: ``"positive"`` (high activation = concept present, maximise AUC) or
            ``"negative"`` (low activation = concept present, minimise AUC).
        return_beam: also keep each neuron's final beam (``r.beams``, ``r.beam_frame()``).
        max_operands: combine beam formulas only with each neuron's top concepts by
            ``|AUC - 0.5|`` (both polarities); None uses all K concepts.
        top_k: top-activating samples kept per neuron (``r.top_indices``) for images.
        continuity: continuity correction of the Mann-Whitney p-value (scipy's default).
        memory_budget_mb: bound on the working memory; sets the neuron batch size.
        batch_size: neurons per batch (overrides the budget).

    Example:
        >>> InvertConfig(max_length=2).replace(beam_size=8).to_dict()["beam_size"]
        8
    """

    max_length: int = 3
    beam_size: int = 5
    min_fraction: float = 0.0
    max_fraction: float = 0.5
    mode: str = "positive"
    return_beam: bool = False
    max_operands: int | None = None
    top_k: int = 16
    continuity: bool = True
    memory_budget_mb: float = 1024.0
    batch_size: int | None = None

    def normalised(self) -> InvertConfig:
        """The checked config with plain Python numbers (so that it saves as JSON)."""
        self.check()
        return self.replace(
            max_length=int(self.max_length),
            beam_size=int(self.beam_size),
            min_fraction=float(self.min_fraction),
            max_fraction=float(self.max_fraction),
            max_operands=None if self.max_operands is None else int(self.max_operands),
            top_k=int(self.top_k),
            continuity=bool(self.continuity),
            return_beam=bool(self.return_beam),
            memory_budget_mb=float(self.memory_budget_mb),
            batch_size=None if self.batch_size is None else int(self.batch_size),
        )

    def check(self) -> InvertConfig:
        """Raise a ValueError naming the first bad setting; returns the config."""
        _checks.invert_params(
            self.max_length,
            self.beam_size,
            self.min_fraction,
            self.max_fraction,
            self.mode,
            MODES,
            self.max_operands,
            self.top_k,
        )
        _checks.optional_positive_int("batch_size", self.batch_size)
        if not float(self.memory_budget_mb) > 0:
            raise ValueError(f"memory_budget_mb must be > 0, got {self.memory_budget_mb!r}.")
        return self
