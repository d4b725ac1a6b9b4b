"""Scoring retrained heads: accuracy per group, and ERM vs random vs curated vs oracle.

:func:`evaluate` scores the model and retrained heads on a split; :func:`compare` runs
the whole comparison over several seeds and returns a :class:`ComparisonResult`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from repwidgets._progress import progress_bar
from repwidgets.engines.midrange import _data
from repwidgets.engines.midrange.fit import group_accuracy, predict
from repwidgets.engines.midrange.plots import plot_comparison
from repwidgets.engines.midrange.retraining import RetrainConfig, as_head, retrain
from repwidgets.engines.midrange.rules import as_marks
from repwidgets.results import Result

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["ComparisonResult", "compare", "evaluate"]

#: The columns of the comparison table, after ``method``.
COLUMNS = (
    "accuracy_mean",
    "accuracy_std",
    "worst_group_accuracy_mean",
    "worst_group_accuracy_std",
    "n_seeds",
)


@dataclass(repr=False)
class ComparisonResult(Result):
    """Test accuracy and worst-group accuracy of each way of retraining, over seeds.

    ``per_seed`` holds one record per method and seed (``method``, ``seed``, ``C`` for
    retrained heads, ``accuracy``, ``worst_group_accuracy``); ``to_frame()`` is the
    table of means and spreads. ``r["worst_group_accuracy_mean"]`` reads a column of
    that table.

    Example:
        >>> c = compare(sess, cur, seeds=(0, 1, 2))          # doctest: +SKIP
        >>> c.to_frame()["worst_group_accuracy_mean"]        # doctest: +SKIP
    """

    per_seed: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    test_split: str = "test"

    def to_frame(self) -> pd.DataFrame:
        """One row per method (``ERM``, ``random``, ``curated``, ``oracle``) with
        ``accuracy_mean``, ``accuracy_std``, ``worst_group_accuracy_mean``,
        ``worst_group_accuracy_std``, ``n_seeds``; ``attrs["per_seed"]`` holds the
        per-seed records and ``attrs["test_split"]`` the split scored."""
        if not self.per_seed:
            return pd.DataFrame(columns=list(COLUMNS), index=pd.Index([], name="method"))
        per_seed = pd.DataFrame.from_records(self.per_seed)
        table = per_seed.groupby("method", sort=False).agg(
            accuracy_mean=("accuracy", "mean"),
            accuracy_std=("accuracy", "std"),
            worst_group_accuracy_mean=("worst_group_accuracy", "mean"),
            worst_group_accuracy_std=("worst_group_accuracy", "std"),
            n_seeds=("seed", "nunique"),
        )
        table = table.fillna({"accuracy_std": 0.0, "worst_group_accuracy_std": 0.0})
        table.attrs["per_seed"] = per_seed.to_dict("records")
        table.attrs["test_split"] = self.test_split
        return table

    def __getitem__(self, column: str) -> pd.Series:
        """A column of :meth:`to_frame` (``r["worst_group_accuracy_mean"]["curated"]``)."""
        return self.to_frame()[column]

    @property
    def methods(self) -> list[str]:
        return [str(m) for m in self.to_frame().index]

    def plot(self):
        """Bars of accuracy and worst-group accuracy per method, spread over seeds."""
        return plot_comparison(self.to_frame())

    def _summary(self) -> str:
        frame = self.to_frame()
        wga = ", ".join(f"{m} {v:.3f}" for m, v in frame["worst_group_accuracy_mean"].items())
        return (
            f"ComparisonResult({self.test_split} split, {len(self.seeds)} seeds; "
            f"worst-group accuracy: {wga})"
        )

    def __repr__(self) -> str:
        return self._summary()


def evaluate(
    sess: Session,
    head: Any = None,
    split: str = "test",
) -> pd.DataFrame:
    """Accuracy and worst-group accuracy of the model before ("ERM") and after retraining.

    Args:
        head: a retrained head (a :class:`~.retraining.RetrainResult` or ``nn.Linear``),
            or ``{name: head}`` for several (None: only the model).
        split: the split to score (the shapes test split is group-balanced).

    Returns:
        One row per model ("before" = the session's model, then "after" or the dict's
        names); columns ``accuracy``, ``worst_group_accuracy``, ``worst_group``,
        ``mean_group_accuracy``, then ``acc[<group>]`` per group.
    """
    _data.check_split(sess, split)
    y = sess.targets(split)
    groups = sess.groups(split)
    g = y if groups is None else groups
    n_groups = int(g.max()) + 1 if g.numel() else 0
    names = _data.group_names(sess, n_groups) if groups is not None else list(sess.class_names)
    # the features first: their pass over the split fills the logits too
    X = _data.features(sess, split) if head is not None else None
    rows = {"before": sess.logits(split).argmax(1).cpu()}
    if head is not None:
        heads = head if isinstance(head, Mapping) else {"after": head}
        for name, h in heads.items():
            rows[str(name)] = predict(as_head(h), X)
    records = []
    for name, pred in rows.items():
        acc = group_accuracy(pred, y, g)
        rec = {
            "model": name,
            "accuracy": acc["accuracy"],
            "worst_group_accuracy": acc["worst_group_accuracy"],
            "worst_group": names[acc["worst_group"]] if acc["worst_group"] >= 0 else "",
            "mean_group_accuracy": acc["mean_group_accuracy"],
        }
        for gid, a in acc["per_group"].items():
            rec[f"acc[{names[gid]}]"] = a
        records.append(rec)
    return pd.DataFrame.from_records(records).set_index("model")


def compare(
    sess: Session,
    curated: Any,
    seeds: Iterable[int] = (0, 1, 2),
    config: RetrainConfig | Mapping[str, Any] | None = None,
    *,
    test_split: str = "test",
    progress: bool | None = None,
    **overrides: Any,
) -> ComparisonResult:
    """ERM vs random last-layer retraining vs curated vs the group-label oracle.

    For every seed (the random draws: the rest sample, the random baseline, an oracle
    subsample) each strategy of :func:`~.retraining.retrain` is run with the same
    :class:`~.retraining.RetrainConfig` (``overrides`` such as ``oracle_mode``,
    ``spurious_weight``, ``n_rest_per_class``, ``Cs``, ``split``, ``val_split``), C
    chosen on ``val_split``, then scored on ``test_split``. ERM (the model itself) does
    not depend on the seed. The oracle is left out when the data has no group labels.

    Returns:
        :class:`ComparisonResult` (``to_frame()``: one row per method).

    Example:
        >>> compare(sess, auto_curate(select(sess, 0)), seeds=(0, 1, 2))  # doctest: +SKIP
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed.")
    cfg = RetrainConfig.resolve(config, overrides)
    marks = as_marks(curated, sess, cfg.split)
    y_test = sess.targets(test_split)
    g_test = _data.eval_groups(sess, test_split)
    X_test = _data.features(sess, test_split)  # before the logits: one pass fills both
    has_groups = sess.groups(cfg.split) is not None
    show = sess.progress if progress is None else progress
    erm = group_accuracy(sess.logits(test_split).argmax(1).cpu(), y_test, g_test)
    curated_idx = [i for i, m in marks.items() if m in ("keep", "spurious")]
    records, oracle = [], None
    for seed in progress_bar(seeds, desc="midrange.compare", enable=show):
        run = cfg.replace(seed=seed)
        records.append({"method": "ERM", "seed": seed, **_scores(erm)})
        heads = {
            "random": retrain(sess, curated_idx, "random", run, progress=False),
            "curated": retrain(sess, marks, "curated", run, progress=False),
        }
        if has_groups:
            # the reweighted oracle uses every sample: no random draw, so fit it once
            if oracle is None or cfg.oracle_mode != "reweight":
                oracle = retrain(sess, None, "oracle", run, progress=False)
            heads["oracle"] = oracle
        for name, head in heads.items():
            acc = group_accuracy(predict(head.head, X_test), y_test, g_test)
            records.append({"method": name, "seed": seed, "C": head.C, **_scores(acc)})
    return ComparisonResult(
        per_seed=records,
        seeds=seeds,
        test_split=test_split,
        params={**cfg.to_dict(), "seeds": seeds, "test_split": test_split},
        _session=sess,
    )


def _scores(acc: Mapping[str, Any]) -> dict[str, float]:
    return {"accuracy": acc["accuracy"], "worst_group_accuracy": acc["worst_group_accuracy"]}
