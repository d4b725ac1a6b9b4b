"""DORA on a session's model: s-AMS, EA distances, outliers and the map in one call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor

from repwidgets.engines import _checks
from repwidgets.engines.dora.config import DoraConfig
from repwidgets.engines.dora.layer import check_neurons
from repwidgets.engines.dora.outliers import analyze_activations
from repwidgets.engines.dora.result import DoraResult
from repwidgets.engines.dora.signals import analyze_signals, generate_signals, signal_memory_mb

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["analyze", "reanalyze"]


def analyze(
    sess: Session,
    layer: str,
    config: DoraConfig | dict | None = None,
    *,
    neurons: Sequence[int] | Tensor | None = None,
    neuron_axis: int | None = None,
    progress: bool | None = None,
    **overrides,
) -> DoraResult:
    """DORA on a layer of a session's model: s-AMS, EA distances, outliers, map.

    Args:
        sess: a :class:`~repwidgets.session.Session` (its model, device and
            ``preprocess`` are used: the s-AMS are images in [0, 1] and the model sees
            ``sess.preprocess(signal)``; its data is not). The forward pass stops at the
            layer, so what the model returns (a dict, an object) does not matter.
        layer: name of the layer (``sess.layers()`` lists them).
        config: a :class:`DoraConfig` or a dict of its settings (for example another
            result's ``params``); None for the defaults.
        neurons: neuron indices to analyse (default: all).
        neuron_axis: the axis of the layer's neurons; None: ``sess.layout(layer)`` (dim
            1 for convolutions, the last dim for token layers ``[b, T, C]`` and
            channels-last blocks ``[b, H, W, C]``). The s-AMS objective and the
            activation matrix average each neuron over the other axes.
        progress: progress bars (default: the session's setting).
        **overrides: single settings of :class:`DoraConfig`, for example
            ``n_signals`` (s-AMS per neuron), ``steps`` (optimisation steps),
            ``signal_size`` (side in pixels of the s-AMS; half the side is about four
            times faster), ``batch_size`` (images per optimisation chunk; default: as
            many as the device's memory allows: half a GPU's free memory, or half the
            session's memory budget up to 1 GiB on a CPU), ``contamination``,
            ``n_neighbors``, ``embedding``, ``representation``, ``center``, ``seed``,
            ``lr``, ``transforms``, ... An unknown name raises a TypeError listing the
            settings.

    Returns:
        :class:`DoraResult` with ``signals`` [k, n, C, H, W], ``distances`` [k, k] and
        per-neuron scores (``to_frame()``); ``params`` holds the settings,
        ``signal_shape``, the (C, H, W) of the s-AMS, and ``neuron_axis``.

    Example:
        >>> r = rw.dora.analyze(sess, "features.conv3", n_signals=2, steps=128)  # doctest: +SKIP
        >>> r.outliers()[:5]                                                      # doctest: +SKIP
    """
    cfg = DoraConfig.resolve(config, overrides)
    module = sess.module(layer)
    layout = sess.layout(layer, neuron_axis)
    width = int(sess.layer_shapes()[layer][layout.neuron_axis - 1])
    _checks.neuron_indices(neurons, width, layer, minimum=2)
    show = sess.progress if progress is None else bool(progress)
    input_shape = cfg.signal_shape(tuple(sess.input_shape))
    budget = signal_memory_mb(sess.device, getattr(sess, "memory_budget", 2**31) / 2**21)
    signals = generate_signals(
        sess.model,
        module,
        neurons,
        cfg.replace(input_shape=input_shape, signal_size=None),
        device=sess.device,
        preprocess=sess.preprocess,
        neuron_axis=layout,
        memory_budget_mb=budget,
        progress=show,
    )
    k = signals.shape[0]
    idx = check_neurons(neurons, 10**9) if neurons is not None else None
    result = analyze_signals(
        sess.model,
        module,
        signals,
        idx if idx is not None else list(range(k)),
        cfg,
        preprocess=sess.preprocess,
        neuron_axis=layout,
        batch_size=getattr(sess, "batch_size", 256),
        layer_name=layer,
    )
    result.params["signal_shape"] = list(input_shape)
    result.params["neuron_axis"] = layout.neuron_axis
    result._session = sess
    return result


def reanalyze(
    result: DoraResult, config: DoraConfig | dict | None = None, **overrides
) -> DoraResult:
    """The same s-AMS analysed with other settings, without making them again.

    Only the analysis settings can change (``center``, ``equalise_signals``,
    ``representation``, ``outlier``, ``n_neighbors``,
    ``contamination``, ``embedding``, ...); the activation matrix, the dead neurons, the
    signals and the session stay the result's own.

    Args:
        result: a :class:`DoraResult` (from :func:`analyze`, or loaded).
        config: the settings to start from (None: the result's ``params``).
        **overrides: single settings of :class:`DoraConfig`.

    Returns:
        A new :class:`DoraResult` with the result's ``activations``, ``is_dead``,
        ``signals``, layer, ``signal_shape`` and ``neuron_axis``.

    Example:
        >>> r = rw.dora.analyze(sess, "features.conv3")                 # doctest: +SKIP
        >>> knn = rw.dora.reanalyze(r, outlier="knn", center=True)      # doctest: +SKIP
    """
    if not isinstance(result, DoraResult):
        raise TypeError(f"result must be a DoraResult, got {type(result).__name__}.")
    cfg = DoraConfig.resolve(result.params if config is None else config, overrides)
    out = analyze_activations(
        result.activations, result.neurons, cfg, dead=result.is_dead, layer=result.layer
    )
    for key in ("signal_shape", "neuron_axis"):
        if key in result.params:
            out.params[key] = result.params[key]
    out.signals = result.signals
    out._session = result._session
    return out
