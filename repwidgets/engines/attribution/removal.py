"""The counterfactual check of concept attribution: retrain without the top-k samples.

If the top-k attributed training samples taught a concept, a model trained without
them should hold the concept less well (lower probe accuracy, or at other layers)
than one trained without k random samples. :func:`removal_experiment` runs the three
trainings (all data, minus the top k, minus k random) and probes each model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from repwidgets.engines.attribution.concept import concept_attribution
from repwidgets.engines.attribution.concept_result import ConceptAttributionResult
from repwidgets.engines.attribution.ensemble import model_sessions
from repwidgets.engines.attribution.plotting import COLORS
from repwidgets.engines.attribution.probes import (
    concept_name,
    default_probe_layers,
    probe_layers,
    split_labels,
)
from repwidgets.results import Result

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["RemovalResult", "removal_experiment"]


def _default_train_fn(sess: Session, progress: bool) -> Callable[[Dataset, int], nn.Module]:
    from repwidgets.models import DEMO_MODEL, DEMO_TRAIN, SmallCNN, train_model

    if not isinstance(sess.model, SmallCNN):
        raise ValueError(
            "removal_experiment retrains the model; it knows how to train the default SmallCNN "
            f"but the session's model is a {type(sess.model).__name__}. Pass "
            "train_fn=lambda dataset, seed: <your trained model>."
        )
    n_classes, channels = sess.model.n_classes, sess.model.in_channels

    def train_fn(dataset: Dataset, seed: int) -> nn.Module:
        torch.manual_seed(int(seed))
        model = SmallCNN(n_classes, in_channels=channels, **DEMO_MODEL)
        train_model(
            model, dataset, seed=int(seed), progress=progress, device=sess.device, **DEMO_TRAIN
        )
        return model.to("cpu").eval()

    return train_fn


def removal_experiment(
    sess: Session,
    concept: Any,
    k: int = 100,
    *,
    attribution: ConceptAttributionResult | None = None,
    layers: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    train_fn: Callable[[Dataset, int], nn.Module] | None = None,
    random_seed: int = 0,
    progress: bool | None = None,
    **attribution_kwargs: Any,
) -> RemovalResult:
    """Retrain without the top-k attributed training samples, and without k random ones.

    The counterfactual check of concept attribution: if the top-k samples taught the
    concept, a model trained without them should hold the concept less well (lower
    probe accuracy, or at other layers) than one trained without k random samples.

    Args:
        sess: the session (default: retrains its SmallCNN architecture with the demo
            training configuration).
        concept: as in :func:`concept_attribution`.
        k: how many samples to remove.
        attribution: a :class:`ConceptAttributionResult` to use (else computed with
            ``attribution_kwargs``: settings of :func:`concept_attribution`, e.g.
            ``n_models=1, max_train=...``, or ``config=``). Removal is only
            among the attributed samples' indices.
        layers: layers to probe (default: every conv/linear block).
        seeds: one retraining per seed and condition.
        train_fn: ``train_fn(dataset, seed) -> trained model`` for your own architecture.

    Returns:
        :class:`RemovalResult`: probe accuracy per layer for the model trained on all
        data ("full"), without the top k ("minus_top") and without k random samples
        ("minus_random").

    Example:
        >>> rm = removal_experiment(sess, "watermark", k=500, n_models=1)   # doctest: +SKIP
        >>> rm.to_frame(); rm.plot()                                         # doctest: +SKIP
    """
    from torch.utils.data import Subset

    progress = sess.progress if progress is None else progress
    r = attribution
    if r is None:
        r = concept_attribution(sess, concept, progress=progress, **attribution_kwargs)
    n = sess.n("train")
    if not 1 <= int(k) < n:
        raise ValueError(f"k must lie in [1, {n}) (the training split's size), got {k}.")
    top = np.sort(r.top(int(k)))
    rng = np.random.default_rng(random_seed)
    rand = np.sort(rng.choice(n, size=int(k), replace=False))
    layers = list(layers) if layers is not None else default_probe_layers(sess.model)
    fn = train_fn or _default_train_fn(sess, progress)
    full_train = sess.dataset("train")
    keep = {
        "full": None,
        "minus_top": np.setdiff1d(np.arange(n), top),
        "minus_random": np.setdiff1d(np.arange(n), rand),
    }
    conditions = list(keep)
    params = r.params or {}
    read = {"pool": params.get("pool", "mean"), "neuron_axis": params.get("neuron_axis")}
    bal = np.zeros((len(conditions), len(layers), len(seeds)))
    acc = np.zeros_like(bal)
    test_acc = np.zeros((len(conditions), len(seeds)))
    groups = sess.groups("test")
    group_names = list(getattr(sess.data, "group_names", []) or [])
    n_groups = int(groups.max()) + 1 if groups is not None and len(groups) else 0
    group_acc = np.full((len(conditions), n_groups, len(seeds)), np.nan)
    for ci, cond in enumerate(conditions):
        for si, seed in enumerate(seeds):
            if cond == "full" and train_fn is None:
                from repwidgets import models as zoo

                model = zoo.ensemble(sess.data, seeds=[int(seed)], progress=progress)[0]
            else:
                data = full_train if keep[cond] is None else Subset(full_train, keep[cond].tolist())
                model = fn(data, int(seed))
            p = probe_layers(sess, concept, layers=layers, models=[model], progress=False, **read)
            bal[ci, :, si] = p.balanced_accuracy[:, 0]
            acc[ci, :, si] = p.accuracy[:, 0]
            test_acc[ci, si], group_acc[ci, :, si] = _test_accuracy(sess, model, groups, n_groups)
    labels = split_labels(sess, concept, "train")
    result = RemovalResult(
        concept=concept_name(concept),
        k=int(k),
        layers=layers,
        conditions=conditions,
        balanced_accuracy=bal,
        accuracy=acc,
        test_accuracy=test_acc,
        group_accuracy=group_acc,
        group_names=group_names or [str(g) for g in range(n_groups)],
        removed_top=torch.as_tensor(top),
        removed_random=torch.as_tensor(rand),
        top_concept_fraction=float(labels[torch.as_tensor(top)].float().mean()),
        random_concept_fraction=float(labels[torch.as_tensor(rand)].float().mean()),
        seeds=[int(s) for s in seeds],
        params={
            "k": int(k),
            "layers": list(layers),
            "seeds": [int(s) for s in seeds],
            "random_seed": int(random_seed),
            "attribution": dict(r.params),
        },
    )
    result._session = sess
    return result


def _test_accuracy(
    sess: Session, model: nn.Module, groups: torch.Tensor | None, n_groups: int
) -> tuple[float, np.ndarray]:
    """A retrained model's test accuracy, overall and per group ([n_groups], NaN where
    a group is empty)."""
    s = model_sessions(sess, [model])[0]
    correct = (s.predictions("test").cpu() == sess.targets("test")).float()
    per_group = np.full(n_groups, np.nan)
    for gi in range(n_groups):
        in_group = groups == gi
        if bool(in_group.any()):
            per_group[gi] = float(correct[in_group].mean())
    return float(correct.mean()), per_group


@dataclass
class RemovalResult(Result):
    """Probe accuracy per layer after removing the top-k attributed (or k random) samples.

    Attributes:
        conditions: ``["full", "minus_top", "minus_random"]``.
        balanced_accuracy, accuracy: [n_conditions, n_layers, n_seeds] probe accuracy.
        test_accuracy: [n_conditions, n_seeds] classification accuracy on the test split.
        group_accuracy: [n_conditions, n_groups, n_seeds] the same per (class x artifact)
            group of the test split (``group_names``; empty without groups). This shows
            whether the retrained model still relies on the concept: e.g. how well it
            classifies watermarked samples of other classes.
        removed_top, removed_random: training indices removed in each condition.
        top_concept_fraction, random_concept_fraction: share of removed samples carrying
            the concept.
    """

    concept: str
    k: int
    layers: list
    conditions: list
    balanced_accuracy: np.ndarray
    accuracy: np.ndarray
    test_accuracy: np.ndarray
    removed_top: torch.Tensor
    removed_random: torch.Tensor
    group_accuracy: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    group_names: list = field(default_factory=list)
    top_concept_fraction: float = float("nan")
    random_concept_fraction: float = float("nan")
    seeds: list = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """One row per (condition, layer): probe balanced accuracy mean/std over seeds,
        the condition's test accuracy and whether the layer is the condition's best."""
        bal = np.asarray(self.balanced_accuracy, dtype=float)
        acc = np.asarray(self.accuracy, dtype=float)
        test = np.asarray(self.test_accuracy, dtype=float)
        rows = []
        for ci, cond in enumerate(self.conditions):
            best = int(np.argmax(bal[ci].mean(axis=1)))
            for li, layer in enumerate(self.layers):
                rows.append(
                    {
                        "condition": cond,
                        "layer": layer,
                        "balanced_accuracy": bal[ci, li].mean(),
                        "balanced_accuracy_std": bal[ci, li].std(),
                        "accuracy": acc[ci, li].mean(),
                        "test_accuracy": test[ci].mean(),
                        "best_layer": li == best,
                    }
                )
        return pd.DataFrame(rows)

    def groups_frame(self) -> pd.DataFrame:
        """Test accuracy per group (rows) and condition (columns), mean over seeds."""
        acc = np.asarray(self.group_accuracy, dtype=float)
        if acc.size == 0:
            return pd.DataFrame(columns=["group", *self.conditions])
        mean = acc.mean(axis=2)
        frame = pd.DataFrame({"group": list(self.group_names)})
        for ci, cond in enumerate(self.conditions):
            frame[cond] = mean[ci]
        return frame

    def change(self) -> pd.DataFrame:
        """Per layer: probe balanced accuracy drop after removing the top k vs k random."""
        bal = np.asarray(self.balanced_accuracy, dtype=float).mean(axis=2)
        full, top, rnd = (bal[self.conditions.index(c)] for c in self.conditions)
        return pd.DataFrame(
            {"layer": self.layers, "drop_top": full - top, "drop_random": full - rnd}
        )

    def plot(self):
        """Bokeh figure: probe balanced accuracy per layer, one line per condition (and,
        when the data has groups, the test accuracy per group and condition beside it)."""
        from bokeh.plotting import figure

        bal = np.asarray(self.balanced_accuracy, dtype=float).mean(axis=2)
        fig = figure(
            x_range=[str(x) for x in self.layers],
            height=280,
            width=520,
            title=f"'{self.concept}' probe accuracy after removing k={self.k} samples",
            toolbar_location="above",
        )
        names = {
            "full": "all data",
            "minus_top": f"without top {self.k}",
            "minus_random": f"without {self.k} random",
        }
        for ci, (cond, color) in enumerate(zip(self.conditions, COLORS)):
            label = names.get(cond, cond)
            fig.line(
                [str(x) for x in self.layers],
                bal[ci],
                line_width=2,
                color=color,
                legend_label=label,
            )
            fig.scatter(
                [str(x) for x in self.layers], bal[ci], size=7, color=color, legend_label=label
            )
        fig.yaxis.axis_label = "balanced accuracy (held out)"
        fig.legend.location = "bottom_right"
        fig.xaxis.major_label_orientation = 0.6
        groups = self.groups_frame()
        if not len(groups):
            return fig
        from bokeh.layouts import row

        gfig = figure(
            x_range=[str(g) for g in groups["group"]],
            height=280,
            width=520,
            y_range=(0, 1.02),
            title="Test accuracy per group after retraining",
            toolbar_location="above",
        )
        for cond, color in zip(self.conditions, COLORS):
            gfig.scatter(
                [str(g) for g in groups["group"]],
                groups[cond].to_numpy(),
                size=9,
                color=color,
                legend_label=names.get(cond, cond),
            )
        gfig.yaxis.axis_label = "accuracy"
        gfig.xaxis.major_label_orientation = 0.8
        gfig.legend.location = "bottom_left"
        return row(fig, gfig)
