"""Linear concept probes: does a layer's activation space hold a concept linearly?

A probe is a logistic regression on (spatially pooled) activations of one layer,
fitted to a binary concept label. Its held-out accuracy says how linearly readable
the concept is at that layer; its weight vector is a direction in activation space
whose logit can be differentiated through the network (used by concept attribution).

The standardisation that the fit uses (zero mean, unit variance per channel) is
folded into the weights, so ``probe.logit(acts)`` works on raw activations.

:func:`probe_layers` is the session-level call: a probe per layer and per model of an
ensemble, with the concept given by name or as the user's own selection of samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from repwidgets._progress import progress_bar
from repwidgets.datasets.bundle import missing_concepts_message
from repwidgets.engines import _checks
from repwidgets.engines.attribution.ensemble import check_layers, ensemble, model_sessions
from repwidgets.results import Result
from repwidgets.session import check_layer_names

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = [
    "LinearProbe",
    "ProbeLayersResult",
    "fit_probe",
    "default_probe_layers",
    "probe_activations",
    "concept_labels",
    "concept_name",
    "probe_layers",
    "split_labels",
]

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Softplus)


@dataclass
class LinearProbe:
    """A fitted linear probe: ``logit(a) = a @ weight + bias`` on raw pooled activations.

    Attributes:
        weight: [C] direction in the layer's (pooled) activation space.
        bias: scalar offset.
        accuracy: accuracy on the held-out samples (NaN when there were none).
        balanced_accuracy: mean of the true-positive and true-negative rates held out.
        n_fit: number of samples the probe was fitted on.
    """

    weight: torch.Tensor
    bias: float
    accuracy: float = float("nan")
    balanced_accuracy: float = float("nan")
    n_fit: int = 0

    def logit(self, acts: torch.Tensor) -> torch.Tensor:
        """Probe logits of activations ``acts`` [n, C] -> [n]."""
        w = self.weight.to(device=acts.device, dtype=acts.dtype)
        return acts @ w + self.bias

    def predict(self, acts: torch.Tensor) -> torch.Tensor:
        """Predicted concept presence [n] (bool)."""
        return self.logit(acts) > 0


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    rates = [float(np.mean(pred[y == c] == c)) for c in (False, True) if np.any(y == c)]
    return float(np.mean(rates)) if rates else float("nan")


def fit_probe(
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    X_test: torch.Tensor | np.ndarray | None = None,
    y_test: torch.Tensor | np.ndarray | None = None,
    C: float = 1.0,
    class_weight: str | None = "balanced",
    max_iter: int = 1000,
) -> LinearProbe:
    """Fit a logistic-regression probe on activations ``X`` [n, C] for a binary label ``y`` [n].

    Features are standardised for the fit (the scaling is folded back into the weights),
    classes are balanced by default so that a rare concept is not ignored, and held-out
    accuracy is measured on ``(X_test, y_test)`` when given.

    Example:
        >>> X = torch.randn(200, 5); y = X[:, 0] > 0
        >>> probe = fit_probe(X[:100], y[:100], X[100:], y[100:])
        >>> probe.accuracy > 0.9
        True
    """
    from sklearn.linear_model import LogisticRegression

    Xn = _as_numpy(X).astype(np.float64)
    yn = _as_numpy(y).astype(bool).reshape(-1)
    if Xn.ndim != 2:
        raise ValueError(f"X must be a matrix [n, C] of pooled activations, got shape {Xn.shape}.")
    if Xn.shape[0] != yn.shape[0]:
        raise ValueError(
            f"X and y have different lengths: X has {Xn.shape[0]} rows, y has {yn.shape[0]}."
        )
    n_pos = int(yn.sum())
    if n_pos == 0 or n_pos == len(yn):
        raise ValueError(
            f"The concept labels are all {'negative' if n_pos == 0 else 'positive'} "
            f"({n_pos} of {len(yn)} samples carry the concept): a probe needs both positive "
            "and negative samples. Choose another concept or split, or label some samples."
        )
    if not np.isfinite(Xn).all():
        bad = np.where(~np.isfinite(Xn).all(axis=0))[0]
        raise ValueError(f"Activations contain NaN or inf in channels {bad[:10].tolist()}.")
    mean = Xn.mean(axis=0)
    scale = Xn.std(axis=0)
    scale[scale < 1e-12] = 1.0
    clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter)
    clf.fit((Xn - mean) / scale, yn)
    w = clf.coef_[0] / scale
    b = float(clf.intercept_[0] - (w * mean).sum())
    probe = LinearProbe(weight=torch.as_tensor(w, dtype=torch.float32), bias=b, n_fit=len(yn))
    if X_test is not None and y_test is not None:
        Xt = _as_numpy(X_test).astype(np.float64)
        yt = _as_numpy(y_test).astype(bool).reshape(-1)
        if Xt.shape[0] != yt.shape[0]:
            raise ValueError(
                f"X_test and y_test have different lengths: {Xt.shape[0]} and {yt.shape[0]}."
            )
        pred = Xt @ w + b > 0
        probe.accuracy = float(np.mean(pred == yt))
        probe.balanced_accuracy = _balanced_accuracy(yt, pred)
    return probe


def default_probe_layers(model: nn.Module) -> list[str]:
    """The layers worth probing: the output of every conv/linear block, after its activation.

    For each ``nn.Conv*d``/``nn.Linear`` leaf (except the last linear, the logits), the
    activation module that follows it when there is one, else the layer itself.

    Example:
        >>> default_probe_layers(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
        ['1']
    """
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    weighted = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    linear_names = [n for n, m in leaves if isinstance(m, nn.Linear)]
    last_linear = linear_names[-1] if linear_names else None
    names: list[str] = []
    for i, (name, module) in enumerate(leaves):
        if not isinstance(module, weighted) or name == last_linear:
            continue
        chosen = name
        for nxt, nxt_mod in leaves[i + 1 : i + 3]:
            if isinstance(nxt_mod, _ACTIVATIONS):
                chosen = nxt
                break
            if isinstance(nxt_mod, weighted):
                break
        names.append(chosen)
    return names


def concept_labels(
    sess: Session, concept: str | Sequence[int] | torch.Tensor, split: str
) -> torch.Tensor:
    """Binary labels [n] (bool, CPU) of a concept over a split.

    ``concept`` is a concept name of the session's data, or a selection of sample
    indices of ``split`` (a list of ints, or a bool mask of length n) that defines a
    user's own concept.
    """
    n = sess.n(split)
    if isinstance(concept, str):
        names = list(sess.concept_names)
        if not names:
            raise ValueError(
                f"Concept {concept!r} cannot be looked up: "
                + missing_concepts_message(sess.data.name, split)
                + " Or select your concept's samples yourself: a list of sample indices (or "
                "a bool mask) per split instead of a name."
            )
        if concept not in names:
            raise ValueError(
                f"Unknown concept {concept!r}. The data's concepts are: "
                f"{', '.join(names) if names else '(none)'}. Pass a concept name, or a list of "
                "sample indices that carry your concept."
            )
        return sess.concepts(split)[:, names.index(concept)].bool().cpu()
    mask = torch.as_tensor(concept)
    if mask.dtype == torch.bool:
        if mask.numel() != n:
            raise ValueError(
                f"A boolean concept mask must have one entry per sample of split {split!r} "
                f"({n}), got {mask.numel()}."
            )
        return mask.reshape(-1).cpu()
    idx = mask.long().reshape(-1)
    if idx.numel() and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"Concept sample indices must lie in [0, {n}) for split {split!r}.")
    out = torch.zeros(n, dtype=torch.bool)
    out[idx] = True
    return out


def probe_activations(
    acts_fit: torch.Tensor,
    y_fit: torch.Tensor,
    acts_eval: torch.Tensor,
    y_eval: torch.Tensor,
    max_fit: int | None = 4000,
    seed: int = 0,
    C: float = 1.0,
) -> LinearProbe:
    """Fit a probe on (a stratified subsample of at most ``max_fit``) fitting activations.

    Args:
        acts_fit: [n, C] pooled activations used for fitting.
        y_fit: [n] bool concept labels of those samples.
        acts_eval, y_eval: held-out activations and labels for the reported accuracy.
        max_fit: cap on fitting samples (keeps both classes in proportion); None for all.
    """
    y_fit = torch.as_tensor(y_fit).bool().cpu()
    idx = torch.arange(len(y_fit))
    if max_fit is not None and len(idx) > max_fit:
        rng = np.random.default_rng(seed)
        picked = []
        for c in (False, True):
            members = idx[y_fit == c].numpy()
            take = max(1, round(max_fit * len(members) / len(idx))) if len(members) else 0
            picked.append(rng.choice(members, size=min(take, len(members)), replace=False))
        idx = torch.as_tensor(np.sort(np.concatenate(picked)))
    return fit_probe(acts_fit[idx.to(acts_fit.device)], y_fit[idx], acts_eval, y_eval, C=C)


@dataclass
class ProbeLayersResult(Result):
    """Probe accuracy of a concept at each layer, for each model of an ensemble.

    Attributes:
        concept: the concept's name (or "selection" for a user's sample selection).
        layers: the probed layers, in model order.
        accuracy: [n_layers, n_models] held-out accuracy.
        balanced_accuracy: [n_layers, n_models] held-out balanced accuracy.
        prevalence: fraction of held-out samples that carry the concept.
    """

    concept: str
    layers: list
    accuracy: np.ndarray
    balanced_accuracy: np.ndarray
    prevalence: float = float("nan")
    _probes: list | None = field(default=None, repr=False, compare=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: mean and spread (std, min, max) over the ensemble."""
        acc = np.asarray(self.accuracy, dtype=float)
        bal = np.asarray(self.balanced_accuracy, dtype=float)
        n_models = acc.shape[1] if acc.ndim == 2 else 1
        return pd.DataFrame(
            {
                "layer": list(self.layers),
                "accuracy": acc.mean(axis=1),
                "accuracy_std": acc.std(axis=1),
                "balanced_accuracy": bal.mean(axis=1),
                "balanced_accuracy_std": bal.std(axis=1),
                "balanced_accuracy_min": bal.min(axis=1),
                "balanced_accuracy_max": bal.max(axis=1),
                "n_models": n_models,
            }
        )

    def best_layer(self) -> str:
        """The layer where the concept is most linearly readable (mean balanced accuracy)."""
        bal = np.asarray(self.balanced_accuracy, dtype=float).mean(axis=1)
        return str(self.layers[int(np.argmax(bal))])

    def plot(self):
        """Bokeh figure: balanced accuracy per layer, ensemble mean with min-max whiskers."""
        from bokeh.models import ColumnDataSource, HoverTool, Whisker
        from bokeh.plotting import figure

        df = self.to_frame()
        src = ColumnDataSource(df.to_dict(orient="list"))
        fig = figure(
            x_range=[str(x) for x in df["layer"]],
            height=280,
            width=520,
            y_range=(0.4, 1.02),
            title=f"Probe accuracy for '{self.concept}' per layer",
            toolbar_location="above",
        )
        fig.line("layer", "balanced_accuracy", source=src, line_width=2)
        fig.scatter("layer", "balanced_accuracy", source=src, size=8)
        fig.add_layout(
            Whisker(
                source=src,
                base="layer",
                lower="balanced_accuracy_min",
                upper="balanced_accuracy_max",
            )
        )
        fig.add_tools(
            HoverTool(
                tooltips=[
                    ("layer", "@layer"),
                    ("balanced acc.", "@balanced_accuracy{0.000}"),
                    ("accuracy", "@accuracy{0.000}"),
                    ("models", "@n_models"),
                ]
            )
        )
        fig.yaxis.axis_label = "balanced accuracy (held out)"
        fig.xaxis.major_label_orientation = 0.6
        return fig


def concept_name(concept: Any) -> str:
    """The concept's name, or "selection" for a user's own selection of samples."""
    return concept if isinstance(concept, str) else "selection"


def split_labels(sess: Session, concept: Any, split: str) -> torch.Tensor:
    """Concept labels [n] of a split, from a concept name or a {split: selection} dict."""
    if isinstance(concept, dict):
        if split not in concept:
            raise ValueError(
                f"The concept selection has no entry for split {split!r} (it has "
                f"{sorted(concept)}); give indices or a mask for every split used "
                "(fit_split, eval_split, 'train' and the target split)."
            )
        return concept_labels(sess, concept[split], split)
    if not isinstance(concept, str):
        raise TypeError(
            "concept must be a concept name of the data, or a dict {split: sample indices or "
            f"bool mask}} for your own concept; got {type(concept).__name__}."
        )
    return concept_labels(sess, concept, split)


def default_fit_split(sess: Session) -> str:
    """The split probes are fitted on by default: "val" when the data has one."""
    return "val" if "val" in sess.splits else "train"


def probe_layers(
    sess: Session,
    concept: Any,
    layers: Sequence[str] | None = None,
    n_models: int = 1,
    models: Sequence[nn.Module] | None = None,
    seeds: Sequence[int] | None = None,
    pool: str = "mean",
    fit_split: str | None = None,
    eval_split: str = "test",
    max_fit: int | None = 4000,
    C: float = 1.0,
    progress: bool | None = None,
    neuron_axis: int | None = None,
) -> ProbeLayersResult:
    """Probe accuracy of a concept at each layer, for each model of an ensemble.

    Args:
        sess: the session (its model is the ensemble's first member).
        concept: a concept name of the data (``sess.concept_names``), or a dict
            ``{split: indices or bool mask}`` defining your own concept on each split used.
        layers: layers to probe; default :func:`default_probe_layers`
            (every conv/linear block after its activation).
        n_models: ensemble size: the session's model plus default models trained on the
            session's data with other seeds (``rw.models.ensemble``, cached).
        models: your own list of models instead (overrides n_models).
        pool: pooling of the activations over positions or tokens ("mean", "max", or
            "cls": a token layer's class token), as ``sess.activations`` pools them.
        fit_split: split the probes are fitted on; default "val" when the data has one (in
            the embedded data it is balanced, so the concept is not confounded with the
            class), else "train".
        eval_split: split for the held-out accuracy.
        max_fit: cap on fitting samples (stratified subsample).
        neuron_axis: the layers' neuron axis where the session cannot tell it (None:
            each layer's layout, see :meth:`repwidgets.Session.layout`).

    Returns:
        :class:`ProbeLayersResult` (``to_frame()``: one row per
        layer, ensemble mean and spread).

    Example:
        >>> p = probe_layers(sess, "watermark", n_models=2)     # doctest: +SKIP
        >>> p.to_frame(); p.best_layer(); p.plot()              # doctest: +SKIP
    """
    progress = sess.progress if progress is None else progress
    fit_split = fit_split or default_fit_split(sess)
    layers = list(layers) if layers is not None else default_probe_layers(sess.model)
    if not layers:
        raise ValueError("No layers to probe: pass layers=[...] (see sess.layers()).")
    _checks.one_of("pool", pool, ("mean", "max", "cls"))
    if models is None:  # checked before any extra model is trained or any activation read
        _checks.positive_int("n_models", n_models)
        check_layer_names(sess.model, layers)
    y_fit = split_labels(sess, concept, fit_split)
    y_eval = split_labels(sess, concept, eval_split)
    for name, y, split in (("fitting", y_fit, fit_split), ("evaluation", y_eval, eval_split)):
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == len(y):
            raise ValueError(
                f"The concept {concept_name(concept)!r} has {n_pos} positive samples out of "
                f"{len(y)} in the {name} split {split!r}: probes need both positive and "
                "negative samples there. Choose other splits or another concept."
            )
    model_list = ensemble(sess, n_models, models, seeds, progress)
    sessions = model_sessions(sess, model_list)
    check_layers(sessions, layers)
    acc = np.zeros((len(layers), len(sessions)))
    bal = np.zeros_like(acc)
    probes: list[list[LinearProbe]] = [[None] * len(sessions) for _ in layers]  # type: ignore[list-item]
    loop = progress_bar(
        list(enumerate(sessions)), total=len(sessions), desc="probes", enable=progress
    )
    for j, s in loop:
        fit = s.activations_many(layers, split=fit_split, pool=pool, neuron_axis=neuron_axis)
        ev = s.activations_many(layers, split=eval_split, pool=pool, neuron_axis=neuron_axis)
        for i, layer in enumerate(layers):
            probe = probe_activations(fit[layer], y_fit, ev[layer], y_eval, max_fit=max_fit, C=C)
            probes[i][j] = probe
            acc[i, j] = probe.accuracy
            bal[i, j] = probe.balanced_accuracy
    result = ProbeLayersResult(
        concept=concept_name(concept),
        layers=list(layers),
        accuracy=acc,
        balanced_accuracy=bal,
        prevalence=float(y_eval.float().mean()),
    )
    result._probes = probes
    result._models = model_list  # type: ignore[attr-defined]
    return result
