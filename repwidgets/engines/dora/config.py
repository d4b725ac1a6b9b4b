"""DORA's settings: one frozen dataclass for s-AMS generation, distances, LOF and the map."""

from __future__ import annotations

import dataclasses
from typing import Any

from repwidgets.config import Config
from repwidgets.engines import _checks, featurevis

__all__ = ["OBJECTIVES", "OUTLIER_SCORES", "DoraConfig"]

#: The outlier scores of :func:`~repwidgets.engines.dora.analyze_activations`.
OUTLIER_SCORES = ("lof", "knn")
#: What each s-AMS maximises: its neuron's mean activation, or that minus the layer's.
OBJECTIVES = ("mean", "contrast")


@dataclasses.dataclass(frozen=True)
class DoraConfig(Config):
    """The settings of :func:`~repwidgets.engines.dora.analyze` and its tensor-level cores.

    Every call takes ``config=None, **overrides``; the settings a result was computed
    with are its ``params`` (``DoraConfig.from_dict(r.params)`` gives them back).

    s-AMS generation (:func:`~repwidgets.engines.dora.generate_signals`):
        n_signals: s-AMS per neuron.
        steps: optimisation steps per s-AMS (default 64, at ``lr`` 0.2). Longer
            optimisation drives each signal further from natural images and the
            distances away from function: on the four models of
            ``benchmarks/bench_truth.py``, 192 steps agree less with the functional
            distances than 64 on every model and group the artifact detectors less
            tightly, in three times the time (README, "Truth across models").
        signal_size: side in pixels of the s-AMS (None: the model's input size).
            Models that pool globally accept smaller images; half the side is about
            four times faster, and on the demo model gives distances as faithful as
            full-size signals.
        input_shape: (C, H, W) of the s-AMS (None: the session's input shape, or
            (3, 64, 64) for the tensor-level call); ``signal_size`` replaces H and W.
        batch_size: images per optimisation chunk (None: as many as the device's memory
            allows), rounded down to whole neurons. Each image's start and random
            transforms depend on its index only, so this does not change the signals.
        minimize: optimise for the lowest activation instead.
        objective: what each s-AMS maximises. "mean" (default, the specification): its
            neuron's mean activation over positions or tokens. "contrast" (an option):
            that minus the mean over all the layer's neurons, so that the signal drives
            its neuron above the rest of the layer rather than the whole layer with it.
            On the four models of ``benchmarks/bench_truth.py`` "contrast" raises the
            agreement with functional distance and the grouping of the artifact
            detectors a little on every model (ResNet grouping 0.80 to 0.84) and lowers
            the VGG's outlier figures (README, "Truth across models"). Scaling a
            neuron's objective by a constant changes nothing to speak of (Adam and the
            per-image gradient clipping make each image's steps scale-free), and
            dividing by the layer's norm made the signals unlike the neurons' function
            (Spearman 0.12-0.26 on three of the models).
        lr, optimizer, weight_decay, grad_clip, decay, render_scale: see
            :func:`repwidgets.engines.featurevis.visualize`.
        transforms: the robustness transforms: None / False (default: none), True (the
            defaults of :class:`~repwidgets.engines.featurevis.Transforms`, as METHODS.md
            section 1 specifies), or a dict of its fields (or a Transforms). Kept as a
            dict of the fields (or None). The default departs from the specification on
            purpose: the s-AMS are fed back as they are, untransformed, and optimised
            without transforms each signal drives its own neuron harder and more
            selectively there. On the four models of ``benchmarks/bench_truth.py`` every
            neuron is then live on its own s-AMS and the EA distances agree better with
            function (README, "Truth across models"). ``transforms=True`` restores the
            specification's transforms, for signals that look more natural.

    Analysis (:func:`~repwidgets.engines.dora.analyze_activations`):
        contamination: expected outlier fraction for the flags (the reference uses
            0.01; "auto": LOF's own threshold, or for "knn" the median plus three robust
            standard deviations). The raw scores are always kept.
        n_neighbors: neighbourhood size of both outlier scores (capped at the number of
            live neurons - 1).
        dead_tol: relative tolerance of :func:`~repwidgets.engines.dora.find_dead`.
        embedding: the 2-D map: "umap", "mds" or None (no map).
        umap_neighbors: UMAP's neighbourhood size.
        representation: "responses" (compare columns of A) or "signals" (rows).
        center: remove each neuron's mean response over the signals before comparing
            (an option; default False: the plain cosine of the specification). Centred,
            the EA distances agree a little better with function and the artifact
            detectors group a little tighter on most models of the benchmark.
        equalise_signals: give every s-AMS the same weight in the comparison (scale each
            signal's responses over the layer to unit norm; see
            :func:`~repwidgets.engines.dora.distance.compared_vectors`).
        outlier: the outlier score that ranks and flags neurons (``outlier_scores``):
            "lof" (default: the local outlier factor of the specification, the same as
            ``lof_scores``) or "knn" (an option: the distance to the ``n_neighbors``-th
            nearest live neuron). LOF takes a tight group of detectors, each the others'
            neighbour, for inliers; a group smaller than ``n_neighbors`` far from the
            rest still scores high with "knn". For groups of detectors use
            ``outlier="knn", center=True`` (or :func:`~repwidgets.engines.dora.reanalyze`
            on a result).

    Both:
        seed: fixes the initial images, the random transforms and the map.
    """

    n_signals: int = 3
    steps: int = 64
    signal_size: int | None = None
    input_shape: tuple[int, ...] | None = None
    batch_size: int | None = None
    minimize: bool = False
    objective: str = "mean"
    lr: float = 0.2
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    decay: float = 0.75
    transforms: Any = None
    render_scale: float = 1.0
    contamination: float | str = 0.01
    n_neighbors: int = 20
    dead_tol: float = 1e-3
    embedding: str | None = "umap"
    umap_neighbors: int = 15
    representation: str = "responses"
    center: bool = False
    equalise_signals: bool = False
    outlier: str = "lof"
    seed: int = 0

    def __post_init__(self) -> None:
        _checks.dora_params(
            self.n_signals,
            self.steps,
            self.contamination,
            self.n_neighbors,
            self.embedding,
            self.representation,
        )
        _checks.positive_int("umap_neighbors", self.umap_neighbors)
        _checks.one_of("outlier", self.outlier, OUTLIER_SCORES)
        _checks.one_of("objective", self.objective, OBJECTIVES)
        if (
            self.signal_size is not None
            and _checks.positive_int("signal_size", self.signal_size) < 8
        ):
            raise ValueError(f"signal_size must be at least 8 pixels; got {self.signal_size}.")
        if self.batch_size is not None:
            _checks.positive_int("batch_size", self.batch_size)
        if self.input_shape is not None:
            shape = tuple(int(s) for s in self.input_shape)
            if len(shape) != 3:
                raise ValueError(f"input_shape must be (C, H, W), got {self.input_shape!r}.")
            object.__setattr__(self, "input_shape", shape)
        if str(self.optimizer).lower() not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}.")
        if not float(self.render_scale) >= 1:
            raise ValueError(f"render_scale must be >= 1, got {self.render_scale}.")
        object.__setattr__(self, "transforms", _transforms_dict(self.transforms))

    def signal_shape(self, default: tuple[int, ...]) -> tuple[int, int, int]:
        """(C, H, W) of the s-AMS: ``input_shape`` (else ``default``, the model's input
        shape) with H and W replaced by ``signal_size`` when it is set."""
        shape = tuple(int(s) for s in (self.input_shape or default))
        if len(shape) != 3:
            raise ValueError(
                f"input_shape must be (C, H, W): the s-AMS are images; got {shape!r}. "
                "Pass input_shape=(C, H, W)."
            )
        if self.signal_size is not None:
            shape = (shape[0], int(self.signal_size), int(self.signal_size))
        return shape

    def transforms_spec(self) -> featurevis.Transforms | None:
        """The transforms as :func:`~repwidgets.engines.featurevis.visualize` takes them."""
        return None if self.transforms is None else featurevis.Transforms(**self.transforms)


def _transforms_dict(transforms: Any) -> dict | None:
    """A transforms setting as a dict of Transforms fields (None for no transforms)."""
    if transforms is None or transforms is False:
        return None
    if not isinstance(transforms, (bool, dict, featurevis.Transforms)):
        raise TypeError(
            "transforms must be True, False, None, a dict of Transforms fields or a "
            f"featurevis.Transforms; got {type(transforms).__name__}."
        )
    fields = featurevis.config_dict(transforms)
    fields["scale"] = tuple(fields["scale"])
    return fields
