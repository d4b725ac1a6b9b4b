"""Attribution to training data with TRAK, and concept attribution with linear probes.

Two layers, as for every engine:

* the tensor-level core, :class:`TRAK` and :func:`trak_scores`: models, a training set
  and target samples in; a score for every (training sample, target) pair out. A
  positive score says that training on that sample pushed the target's output up.
* the session-level entry points, :func:`probe_layers`, :func:`concept_attribution`
  and :func:`removal_experiment` (settings in :class:`ConceptAttributionConfig`): for a concept (a label of the session's data, or a
  selection of samples), where in the network it lives and which training samples
  taught it; :func:`neuron_attribution` (settings in :class:`NeuronAttributionConfig`):
  which training samples taught one neuron to fire on its top-activating samples.
  Long runs take ``cancel`` (a ``threading.Event``; :class:`Cancelled` is raised) and
  ``on_progress(done, total, stage)``.

TRAK (Park et al., 2023) in brief, for M checkpoints c = 1..M:

1. ``phi_c(z) = P_c^T grad_theta f_c(z)``: the gradient of a scalar model output f
   (the class margin ``logit_y - logsumexp(other logits)``, or a concept probe's
   logit) with respect to the parameters, for every sample separately (torch.func:
   ``grad`` under ``vmap``), projected by a seeded Johnson-Lindenstrauss matrix
   ``P_c`` [D, p] (entries +-1/sqrt(p) or N(0, 1/p), generated in blocks, never
   whole when D is large; see :mod:`repwidgets.engines.projection`).
2. ``K_c = Phi_c^T Phi_c + lambda I`` over the training features ``Phi_c`` [n, p].
3. ``S = mean_c(Phi_c K_c^-1 Phi_c,target^T) * mean_c(Q_c)`` where
   ``Q_c = 1 - p_c(correct)`` per training sample (the out-to-loss term; for a
   margin, ``p(correct) = sigmoid(margin)`` is the softmax probability of the label;
   for a probe, the sigmoid of the logit signed by the concept label).

Choices that differ from the reference library, on purpose:

* the ensemble is an unweighted mean over checkpoints (the reference rescales each
  checkpoint's inverse kernel by its own mean magnitude, which weights them);
* ``lam`` is explicit; by default it is relative (``lam * trace(Phi^T Phi)/p``, with
  lam = 1 by default, chosen by LDS), which makes every checkpoint's term invariant to
  the scale of its gradients;
* soft-thresholding of each target's scores is an explicit option;
* the out-to-loss term comes from the same forward pass as the gradients;
* when there are more features than training samples (no projection on a large
  model) the kernel is solved in its dual form ``(Phi Phi^T + lambda I)^-1 Phi``,
  which is the same matrix.

Training features are written to memory-mapped chunks on disk, so the training set
need not fit in memory; the kernel is a sum over chunks (shards of the dataset whose
partial sums combine exactly).

The package, by concern: :mod:`.outputs` (output functions), :mod:`.featurize`
(per-sample gradients, projected), :mod:`.store` (feature store), :mod:`.solve`
(kernel solve), :mod:`.trak` (the :class:`TRAK` orchestrator and :func:`trak_scores`),
:mod:`.lds` (linear datamodeling score), :mod:`.probes` (linear concept probes),
:mod:`.ensemble` (the models probes and TRAK average over), :mod:`.concept` and
:mod:`.concept_result` (concept attribution), :mod:`.neuron` and :mod:`.neuron_result`
(per-neuron attribution), :mod:`.removal` (retraining without the top-k samples),
:mod:`.config` (the settings).

Example:
    >>> import repwidgets as rw
    >>> sess = rw.demo_session()                                        # doctest: +SKIP
    >>> r = rw.attribution.concept_attribution(sess, "watermark")       # doctest: +SKIP
    >>> r.to_frame().head(); r.top(100); r.plot()                       # doctest: +SKIP
"""

from repwidgets.engines.attribution.concept import concept_attribution
from repwidgets.engines.attribution.concept_result import ConceptAttributionResult
from repwidgets.engines.attribution.config import ConceptAttributionConfig, TRAKConfig
from repwidgets.engines.attribution.lds import LDSResult, lds, model_outputs, subset_outputs
from repwidgets.engines.attribution.neuron import NeuronAttributionConfig, neuron_attribution
from repwidgets.engines.attribution.neuron_result import NeuronAttributionResult
from repwidgets.engines.attribution.outputs import (
    ClassMargin,
    LayerOutput,
    LogitOutput,
    NeuronActivation,
    OutputFunction,
    ProbeLogit,
)
from repwidgets.engines.attribution.probes import (
    LinearProbe,
    ProbeLayersResult,
    concept_labels,
    default_probe_layers,
    fit_probe,
    probe_activations,
    probe_layers,
)
from repwidgets.engines.attribution.removal import RemovalResult, removal_experiment
from repwidgets.engines.attribution.store import FeatureStore
from repwidgets.engines.attribution.trak import TRAK, Cancelled, TRAKResult, trak_scores

__all__ = [
    "OutputFunction",
    "ClassMargin",
    "LogitOutput",
    "ProbeLogit",
    "LayerOutput",
    "NeuronActivation",
    "TRAK",
    "TRAKConfig",
    "TRAKResult",
    "trak_scores",
    "FeatureStore",
    "lds",
    "LDSResult",
    "subset_outputs",
    "model_outputs",
    "LinearProbe",
    "ProbeLayersResult",
    "fit_probe",
    "default_probe_layers",
    "probe_activations",
    "concept_labels",
    "probe_layers",
    "concept_attribution",
    "ConceptAttributionConfig",
    "ConceptAttributionResult",
    "removal_experiment",
    "RemovalResult",
    "neuron_attribution",
    "NeuronAttributionConfig",
    "NeuronAttributionResult",
    "Cancelled",
]
