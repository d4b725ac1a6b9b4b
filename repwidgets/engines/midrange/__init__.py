"""Mid-range curation: the samples in the middle of a class's output range, curated, retrained.

The highest logits of an output neuron show what the model finds most typical of its
class; the middle of the range shows its associations, confounders included: samples
of the class *without* a spurious feature and samples of other classes *with* it. This
package finds those samples (a band of quantiles of the class's logit or logit margin),
tests which concepts the band is enriched in compared with the top extreme, lets a
person (or a rule) mark them keep / spurious / exclude in a file that is saved on every
change, and retrains only the last layer on frozen penultimate features (in the manner
of Deep Feature Reweighting, Kirichenko et al. 2023) to reduce the model's reliance on
the spurious feature. Reference: O'Mahony, Nikolov, O'Sullivan, "Towards utilising a
range of neural activations for comprehending representational associations", WACV 2025.

Modules, by concern:

- :mod:`.band`: scores, the automatic band, proportion tests;
- :mod:`.selection`: :class:`MidrangeConfig`, :func:`select_band` (tensor core),
  :func:`select` (session), :class:`MidrangeResult` (with ``candidates()`` for the
  curation widget);
- :mod:`.rules`: :func:`auto_curate` and the training sets built from marks;
- :mod:`.fit`: :func:`fit_last_layer` and :func:`group_accuracy` on tensors;
- :mod:`.retraining`: :class:`RetrainConfig`, :func:`retrain` (strategies "curated",
  "random", "oracle") returning a :class:`RetrainResult`;
- :mod:`.comparison`: :func:`evaluate` and :func:`compare` (a :class:`ComparisonResult`);
- :mod:`.plots`: the bokeh figures.

Example:
    >>> import repwidgets as rw
    >>> sess = rw.demo_session()                                   # doctest: +SKIP
    >>> m = rw.midrange.select(sess, class_index=0)  # the automatic band  # doctest: +SKIP
    >>> m.associations().head()                                    # doctest: +SKIP
    >>> cur = rw.midrange.auto_curate(m, rule="concepts")          # doctest: +SKIP
    >>> head = rw.midrange.retrain_last_layer(sess, cur)           # doctest: +SKIP
    >>> rw.midrange.evaluate(sess, head)                           # doctest: +SKIP
"""

from repwidgets.curation_store import (
    MARKS,
    Curation,
    CurationFileError,
    CurationWriteError,
    VanishedMarksWarning,
)
from repwidgets.engines.midrange.band import (
    AUTO,
    AUTO_SCORE,
    AUTO_TAIL,
    SCORES,
    auto_band,
    benjamini_hochberg,
    class_scores,
    quantiles_of_limits,
    two_proportion_ztest,
)
from repwidgets.engines.midrange.comparison import ComparisonResult, compare, evaluate
from repwidgets.engines.midrange.fit import fit_last_layer, group_accuracy
from repwidgets.engines.midrange.plots import plot_comparison
from repwidgets.engines.midrange.retraining import (
    DEFAULT_CS,
    STRATEGIES,
    RetrainConfig,
    RetrainResult,
    model_with_head,
    retrain,
    retrain_last_layer,
    retrain_oracle,
    retrain_random,
)
from repwidgets.engines.midrange.rules import (
    as_marks,
    auto_curate,
    curated_training_set,
    oracle_training_set,
    random_training_set,
    typical_pattern,
)
from repwidgets.engines.midrange.selection import (
    DEMO_BAND,
    WITHIN,
    MidrangeConfig,
    MidrangeResult,
    select,
    select_band,
    suggest_class,
)

__all__ = [
    "AUTO",
    "AUTO_SCORE",
    "AUTO_TAIL",
    "DEFAULT_CS",
    "DEMO_BAND",
    "MARKS",
    "SCORES",
    "STRATEGIES",
    "WITHIN",
    "ComparisonResult",
    "Curation",
    "CurationFileError",
    "CurationWriteError",
    "MidrangeConfig",
    "MidrangeResult",
    "RetrainConfig",
    "RetrainResult",
    "VanishedMarksWarning",
    "as_marks",
    "auto_band",
    "auto_curate",
    "benjamini_hochberg",
    "class_scores",
    "compare",
    "curated_training_set",
    "evaluate",
    "fit_last_layer",
    "group_accuracy",
    "model_with_head",
    "oracle_training_set",
    "plot_comparison",
    "quantiles_of_limits",
    "random_training_set",
    "retrain",
    "retrain_last_layer",
    "retrain_oracle",
    "retrain_random",
    "select",
    "select_band",
    "suggest_class",
    "two_proportion_ztest",
    "typical_pattern",
]
