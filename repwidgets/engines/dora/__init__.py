"""DORA: data-agnostic representation analysis.

DORA finds the neurons of a layer whose function is unlike the others, without looking
at any data. For each neuron it synthesises a few images that drive the neuron as
high as possible (synthetic activation-maximisation signals, s-AMS), feeds every s-AMS
back through the model, and compares neurons by how the whole layer responds to their
signals: neurons whose signals excite the layer in the same way do the same thing. The
resulting extreme-activation (EA) distance needs no data; an outlier score on it
flags neurons (or tight groups of neurons) far from everything else, which are often
detectors of artifacts or spurious features (watermarks, borders, text).

Pipeline (see METHODS.md, section 1), one module per step:

1. :func:`generate_signals` (``signals``) - s-AMS for every (neuron, signal) pair of
   the layer, optimised together as one batch (or as few as memory allows), one
   objective per batch element: the neuron's spatially averaged activation on its own
   image (without robustness transforms by default: the signals are fed back as they
   are). ``layer`` holds how the layer is reached (hooks, the redirected ReLU).
2. :func:`analyze_signals` (``signals``) - feed the signals back: ``A[i, j]`` =
   activation of neuron ``j`` on the signals of neuron ``i`` (mean over the n
   signals), A is k x k.
3. :func:`ea_distance` (``distance``) - ``D = sqrt((1 - cos(r_i, r_j)) / 2)``, one
   matrix product, where ``r_i`` is neuron i's representation activation vector: by
   default its responses to all the s-AMS (column i of A, as in the DORA paper), or
   optionally the layer's response to its own signals (row i of A); the plain cosine
   by default, optionally centred (a Pearson correlation) and with every s-AMS weighted
   the same (:func:`compared_vectors`).
4. :func:`analyze_activations` (``outliers``) - dead neurons are set aside, then the
   outlier scores (by default LOF on the precomputed distances, as in the paper;
   optionally the distance to the ``n_neighbors``-th nearest live neuron,
   :func:`knn_scores`, which also finds a tight group of outlying neurons) and a 2-D
   map (UMAP, MDS for tiny layers) on the live neurons.

:func:`analyze` (``pipeline``) runs all of it on a
:class:`~repwidgets.session.Session` with the settings of a :class:`DoraConfig`
(``config``) and returns a :class:`DoraResult` (``result``); :func:`reanalyze`
analyses the same s-AMS with other analysis settings; :func:`validate`
(``validation``) checks the data-free distances against what the neurons do on real
images (functional distance, artifact detectors) and returns a :class:`DoraValidation`.

Example:
    >>> import repwidgets as rw
    >>> sess = rw.demo_session()                                  # doctest: +SKIP
    >>> r = rw.dora.analyze(sess, "features.conv3", n_signals=2)  # doctest: +SKIP
    >>> r.to_frame().sort_values("lof_score", ascending=False).head()  # doctest: +SKIP
"""

from repwidgets.engines.dora.config import DoraConfig
from repwidgets.engines.dora.distance import compared_vectors, ea_distance, functional_distance
from repwidgets.engines.dora.layer import LayerSpec
from repwidgets.engines.dora.outliers import analyze_activations, find_dead, knn_scores
from repwidgets.engines.dora.pipeline import analyze, reanalyze
from repwidgets.engines.dora.result import DoraResult
from repwidgets.engines.dora.signals import analyze_signals, generate_signals
from repwidgets.engines.dora.validation import DoraValidation, validate

__all__ = [
    "DoraConfig",
    "DoraResult",
    "DoraValidation",
    "LayerSpec",
    "analyze",
    "analyze_activations",
    "analyze_signals",
    "compared_vectors",
    "ea_distance",
    "find_dead",
    "functional_distance",
    "generate_signals",
    "knn_scores",
    "reanalyze",
    "validate",
]
