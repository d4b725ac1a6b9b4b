"""Last-layer retraining on frozen penultimate features (as Deep Feature Reweighting).

One entry point, :func:`retrain`, with three strategies for the training set:

- ``"curated"``: the curated marks (see :func:`~.rules.curated_training_set`);
- ``"random"``: as many random samples, same class counts (the baseline);
- ``"oracle"``: group-balanced with the true group labels (the upper bound).

The regularisation C is chosen on a validation split; the settings are a
:class:`RetrainConfig` and the head comes back as a :class:`RetrainResult` (callable
as the head, ``r.head`` the ``nn.Linear``). :func:`retrain_last_layer`,
:func:`retrain_random` and :func:`retrain_oracle` are the three strategies by name.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from repwidgets._progress import progress_bar
from repwidgets.config import Config
from repwidgets.curation_store import MARKS
from repwidgets.engines.midrange import _data
from repwidgets.engines.midrange.fit import fit_last_layer, group_accuracy
from repwidgets.engines.midrange.plots import retrain_figure
from repwidgets.engines.midrange.rules import (
    _rng,
    as_marks,
    curated_training_set,
    oracle_training_set,
    random_training_set,
)
from repwidgets.results import Result

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = [
    "DEFAULT_CS",
    "STRATEGIES",
    "RetrainConfig",
    "RetrainResult",
    "as_head",
    "model_with_head",
    "retrain",
    "retrain_last_layer",
    "retrain_oracle",
    "retrain_random",
]

DEFAULT_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
STRATEGIES = ("curated", "random", "oracle")


@dataclass(frozen=True)
class RetrainConfig(Config):
    """Settings of :func:`retrain` (and of :func:`~.comparison.compare`).

    Attributes:
        split: the split whose samples (and marks) the head is trained on.
        val_split: the split C is chosen on (None or missing: C=1.0, with a warning).
        C: a fixed inverse regularisation strength (None: choose it from ``Cs``).
        Cs: the values of C tried on ``val_split``.
        select_by: ``"worst_group"``, ``"accuracy"`` or ``"auto"`` (worst group where the
            validation split has groups).
        seed: the random draws (the class-balanced rest, the random baseline, the
            oracle's subsample).
        spurious_weight: weight of "spurious" samples: ``"balance"`` (within a class
            they weigh as much as its other samples together) or a number.
        n_rest_per_class: samples per class drawn from the unmarked rest (None:
            max(50, curated / n_classes)).
        oracle_mode: ``"reweight"`` (every sample, groups weighted equally) or
            ``"subsample"`` (``n_per_group`` of each group) for the oracle.
        n_per_group: the oracle's subsample size per group (None: the smallest group).
    """

    split: str = "train"
    val_split: str | None = "val"
    C: float | None = None
    Cs: tuple = DEFAULT_CS
    select_by: str = "auto"
    seed: int = 0
    spurious_weight: float | str = "balance"
    n_rest_per_class: int | None = None
    oracle_mode: str = "reweight"
    n_per_group: int | None = None


@dataclass(repr=False)
class RetrainResult(Result):
    """A retrained last layer: the head, how it was chosen, and on what.

    Use it as the head: ``r(features)`` gives logits [n, n_classes] for penultimate
    features [n, D]; ``r.head`` is the ``nn.Linear`` (``r.weight``, ``r.bias`` its
    parameters). ``info`` (also ``r.retrain_info``) holds the strategy's method, the
    training split and size, the class counts, the chosen ``C``, the validation scores
    of every C tried and, for curated marks, their counts. ``state`` is the head's
    ``{"weight": [n_classes, D], "bias": [n_classes]}`` as saved.

    Example:
        >>> r = retrain_last_layer(sess, "curation.json")   # doctest: +SKIP
        >>> r.C, r.to_frame()                               # doctest: +SKIP
        >>> logits = r(sess.penultimate("test"))            # doctest: +SKIP
    """

    strategy: str = "curated"
    info: dict = field(default_factory=dict)
    class_names: list = field(default_factory=list)
    state: dict = field(default_factory=dict)
    _head: Any = field(default=None, compare=False)

    @classmethod
    def from_head(cls, head: nn.Linear, **kwargs: Any) -> RetrainResult:
        state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
        return cls(state=state, _head=head.eval(), **kwargs)

    @property
    def head(self) -> nn.Linear:
        """The retrained layer, ``nn.Linear(D, n_classes)``."""
        if self._head is None:
            if "weight" not in self.state:
                raise ValueError("This RetrainResult holds no head (its state is empty).")
            weight = self.state["weight"]
            head = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in self.state)
            head.load_state_dict({k: torch.as_tensor(v) for k, v in self.state.items()})
            self._head = head.eval()
        return self._head

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """The head's logits for penultimate features [n, D] -> [n, n_classes]."""
        return self.head(features)

    @property
    def weight(self) -> torch.Tensor:
        return self.head.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.head.bias

    @property
    def retrain_info(self) -> dict:
        """How the head was trained (same as ``info``)."""
        return self.info

    @property
    def C(self) -> float | None:  # noqa: N802 - the name the literature uses
        """The chosen inverse regularisation strength."""
        return self.info.get("C")

    def to_frame(self) -> pd.DataFrame:
        """One row per C tried: ``C``, validation ``accuracy``, ``worst_group_accuracy``,
        ``chosen``. With a fixed C, one row without scores. ``attrs`` hold ``info``."""
        rows = self.info.get("validation") or [
            {"C": self.C, "accuracy": float("nan"), "worst_group_accuracy": float("nan")}
        ]
        frame = pd.DataFrame.from_records(
            rows, columns=["C", "accuracy", "worst_group_accuracy"]
        ).astype(float)
        frame["chosen"] = frame["C"] == (float(self.C) if self.C is not None else np.nan)
        frame.attrs.update({k: v for k, v in self.info.items() if k != "validation"})
        return frame

    def plot(self):
        """Validation accuracy and worst-group accuracy against C (the chosen C marked)."""
        return retrain_figure(self)

    def save(self, path):
        """Save the head and how it was trained (see :meth:`Result.save`)."""
        if self._head is not None:
            self.state = {k: v.detach().cpu().clone() for k, v in self._head.state_dict().items()}
        return super().save(path)

    def _summary(self) -> str:
        shape = tuple(self.state["weight"].shape) if "weight" in self.state else ()
        return (
            f"RetrainResult(strategy={self.strategy!r}, C={self.C}, "
            f"n_train={self.info.get('n_train')}, weight={shape})"
        )

    def __repr__(self) -> str:
        return self._summary()


def as_head(head: Any) -> nn.Module:
    """The ``nn.Module`` of a head given as a :class:`RetrainResult` or a module."""
    return head.head if isinstance(head, RetrainResult) else head


# --------------------------------------------------------------------------- fitting
def _choose_by(select_by: str, sess: Session, val_split: str) -> str:
    if select_by == "auto":
        select_by = "worst_group" if sess.groups(val_split) is not None else "accuracy"
    if select_by not in ("worst_group", "accuracy"):
        raise ValueError(
            f"select_by must be 'auto', 'worst_group' or 'accuracy'; got {select_by!r}."
        )
    return select_by


def _fit_with_validation(
    sess: Session,
    idx: np.ndarray,
    weights: np.ndarray,
    cfg: RetrainConfig,
    *,
    strategy: str,
    method: str,
    progress: bool | None,
) -> RetrainResult:
    """Fit heads for each C, keep the best on the validation split (or fit ``cfg.C``)."""
    t0 = time.perf_counter()
    if cfg.C is None and (cfg.val_split is None or cfg.val_split not in sess.data.splits):
        warnings.warn(
            f"No validation split {cfg.val_split!r} to choose the regularisation on "
            f"(splits: {list(sess.data.splits)}); using C=1.0. Pass val_split=... or C=...",
            UserWarning,
            stacklevel=4,
        )
        cfg = cfg.replace(C=1.0, val_split=None)
    X = _data.features(sess, cfg.split)
    y = sess.targets(cfg.split)
    n_classes = len(sess.class_names)
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    Xtr, ytr, wtr = X[idx_t.to(X.device)], y[idx_t], torch.as_tensor(weights)
    info: dict[str, Any] = {
        "method": method,
        "split": cfg.split,
        "n_train": int(len(idx)),
        "seed": int(cfg.seed),
        "class_counts": np.bincount(ytr.numpy(), minlength=n_classes).tolist(),
    }

    def fit(c: float) -> nn.Linear:
        return fit_last_layer(Xtr, ytr, wtr, n_classes=n_classes, C=c, device=sess.device)

    if cfg.C is not None:
        head = fit(cfg.C)
        info.update({"C": float(cfg.C), "validation": None})
    else:
        Xv = _data.features(sess, cfg.val_split).to(sess.device).float()
        yv, gv = sess.targets(cfg.val_split), _data.eval_groups(sess, cfg.val_split)
        select_by = _choose_by(cfg.select_by, sess, cfg.val_split)
        show = sess.progress if progress is None else progress
        head, best_key, scores = None, None, []
        for c in progress_bar(list(cfg.Cs), desc=f"{method}: choosing C", enable=show):
            candidate = fit(c)
            with torch.no_grad():
                acc = group_accuracy(candidate(Xv).argmax(1).cpu(), yv, gv)
            wga, accuracy = acc["worst_group_accuracy"], acc["accuracy"]
            key = (wga, accuracy) if select_by == "worst_group" else (accuracy, wga)
            scores.append({"C": float(c), "accuracy": accuracy, "worst_group_accuracy": wga})
            if best_key is None or key > best_key:
                head, best_key, info["C"] = candidate, key, float(c)
        info.update({"validation": scores, "val_split": cfg.val_split, "select_by": select_by})
    info["seconds"] = time.perf_counter() - t0
    return RetrainResult.from_head(
        head,
        strategy=strategy,
        info=info,
        class_names=list(sess.class_names),
        params=cfg.to_dict(),
        _session=sess,
    )


# --------------------------------------------------------------------------- training sets
def _random_like(curation: Any, sess: Session, cfg: RetrainConfig) -> np.ndarray:
    """The indices whose size and class counts the random baseline copies."""
    if curation is None:
        raise ValueError(
            "strategy='random' needs the number of random samples, the curated indices or "
            "the curation whose size it copies; got None."
        )
    if isinstance(curation, (int, np.integer)) and not isinstance(curation, bool):
        n = len(sess.targets(cfg.split))
        return _rng(cfg.seed + 104729).choice(n, size=min(int(curation), n), replace=False)
    if isinstance(curation, (torch.Tensor, np.ndarray, list, tuple, range)):
        idx = np.asarray(list(np.asarray(curation).reshape(-1)), dtype=np.int64)
        n = sess.n(cfg.split)
        bad = idx[(idx < 0) | (idx >= n)]
        if len(bad):
            raise ValueError(
                f"Samples {bad[:5].tolist()} are not in split {cfg.split!r} of {n} samples: "
                "pass indices of that split (a curation file made on another dataset or "
                "split does not fit this one)."
            )
        return idx
    marks = as_marks(curation, sess, cfg.split)
    return np.asarray([i for i, m in marks.items() if m in ("keep", "spurious")], dtype=np.int64)


def _training_set(
    sess: Session, curation: Any, strategy: str, cfg: RetrainConfig
) -> tuple[np.ndarray, np.ndarray, str, dict[str, Any]]:
    """(indices, weights, method name, extra info) of a strategy's training set."""
    y = sess.targets(cfg.split)
    n_classes = len(sess.class_names)
    if strategy == "curated":
        marks = as_marks(curation, sess, cfg.split)
        idx, w = curated_training_set(
            marks,
            y,
            n_classes=n_classes,
            spurious_weight=cfg.spurious_weight,
            n_rest_per_class=cfg.n_rest_per_class,
            seed=cfg.seed,
        )
        counts = {k: sum(1 for v in marks.values() if v == k) for k in MARKS}
        return idx, w, "curated", {"marks": counts}
    if strategy == "random":
        like = _random_like(curation, sess, cfg)
        idx, w = random_training_set(
            y, like, n_classes=n_classes, n_rest_per_class=cfg.n_rest_per_class, seed=cfg.seed
        )
        return idx, w, "random", {}
    groups = sess.groups(cfg.split)
    if groups is None:
        raise ValueError(
            f"Split {cfg.split!r} has no group labels, so the group-label oracle is undefined. "
            "Use data with groups (class x artifact), e.g. repwidgets.datasets.shapes()."
        )
    idx, w = oracle_training_set(
        groups, y, n_per_group=cfg.n_per_group, seed=cfg.seed, mode=cfg.oracle_mode
    )
    return idx, w, f"oracle ({cfg.oracle_mode})", {}


# --------------------------------------------------------------------------- entry points
def retrain(
    sess: Session,
    curation: Any = None,
    strategy: str = "curated",
    config: RetrainConfig | Mapping[str, Any] | None = None,
    *,
    progress: bool | None = None,
    **overrides: Any,
) -> RetrainResult:
    """Retrain the last layer on frozen penultimate features; the base model is untouched.

    The head is a logistic regression (see :func:`~.fit.fit_last_layer`) on
    ``sess.penultimate(split)``, its C chosen from ``Cs`` on ``val_split`` by
    worst-group accuracy where the split has groups (else accuracy); pass ``C`` to skip
    the search. The training set depends on ``strategy``:

    - ``"curated"`` (see :func:`~.rules.curated_training_set`): samples marked "keep"
      (weight 1) and "spurious" (upweighted: they contradict the shortcut; with
      ``spurious_weight="balance"`` they weigh, within each class, as much as the
      class's other samples together), none marked "exclude", plus a class-balanced
      random sample of the unmarked rest, classes weighted equally;
    - ``"random"``: random samples with the same class counts as ``curation`` (a
      number of samples, indices, or marks whose "keep" and "spurious" samples are
      copied), plus the same rest: the baseline;
    - ``"oracle"``: group-balanced with the true group labels (``oracle_mode``);
      ``curation`` is not used.

    Args:
        curation: a curation widget, a :class:`~repwidgets.curation_store.Curation`, a
            curation file path, a :class:`~.selection.MidrangeResult` (all band samples
            "keep"), a dict ``{mark: [indices]}`` or ``{index: mark}``, or a list of
            indices ("keep"). Marks for samples that no longer exist are reported
            (warning) and ignored.
        config: a :class:`RetrainConfig` (or a dict of its settings); ``overrides``
            replace single settings (``C=1.0``, ``seed=3``).
        progress: show a progress bar over the values of C (None: the session's choice).

    Returns:
        :class:`RetrainResult`: call it on ``sess.penultimate(split)``, build a full
        model with :func:`model_with_head`, score it with :func:`~.comparison.evaluate`.

    Example:
        >>> r = retrain(sess, "curation.json")                  # doctest: +SKIP
        >>> base = retrain(sess, "curation.json", "random")     # doctest: +SKIP
    """
    cfg = RetrainConfig.resolve(config, overrides)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}.")
    idx, weights, method, extra = _training_set(sess, curation, strategy, cfg)
    result = _fit_with_validation(
        sess, idx, weights, cfg, strategy=strategy, method=method, progress=progress
    )
    result.info.update(extra)
    return result


def retrain_last_layer(
    sess: Session, curated: Any, config: RetrainConfig | None = None, **overrides: Any
) -> RetrainResult:
    """Retrain the last layer on curated samples: ``retrain(sess, curated, "curated")``."""
    return retrain(sess, curated, "curated", config, **overrides)


def retrain_random(
    sess: Session, n: int | Sequence[int], config: RetrainConfig | None = None, **overrides: Any
) -> RetrainResult:
    """Baseline on ``n`` random samples (or as many as the indices ``n``, same class
    counts): ``retrain(sess, n, "random")``."""
    return retrain(sess, n, "random", config, **overrides)


def retrain_oracle(
    sess: Session, config: RetrainConfig | None = None, *, mode: str | None = None, **overrides
) -> RetrainResult:
    """Upper bound with the true group labels: ``retrain(sess, None, "oracle")``
    (``mode``: the config's ``oracle_mode``, "reweight" or "subsample")."""
    return retrain(sess, None, "oracle", config, **overrides, **_mode(mode))


def _mode(mode: str | None) -> dict[str, str]:
    return {} if mode is None else {"oracle_mode": mode}


def model_with_head(sess: Session, head: Any) -> nn.Module:
    """A copy of the session's model whose last linear layer is ``head`` (a
    :class:`RetrainResult` or an ``nn.Linear``); the base model is untouched."""
    head = as_head(head)
    name, old = sess.last_linear()
    if not isinstance(head, nn.Linear) or head.weight.shape != old.weight.shape:
        shape = tuple(getattr(head, "weight", torch.zeros(0)).shape)
        raise ValueError(
            f"head must be an nn.Linear with weight shape {tuple(old.weight.shape)}; got {shape}."
        )
    model = copy.deepcopy(sess.model)
    parent = model
    *path, last = name.split(".")
    for part in path:
        parent = getattr(parent, part)
    new = copy.deepcopy(head).to(old.weight.device, old.weight.dtype)
    setattr(parent, last, new)
    return model.eval()
