"""DORA on a session's model: s-AMS, EA distances, outliers and the map in one call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor

from repwidgets.engines import _checks
from repwidgets.engines.dora.config import DoraConfig
from repwidgets.engines.dora.layer import check_neurons
from repwidgets.engines.dora.result import DoraResult
from repwidgets.engines.dora.signals import analyze_signals, generate_signals

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["analyze"]


def analyze(
    sess: Session,
    layer: str,
    config: DoraConfig | dict | None = None,
    *,
    neurons: Sequence[int] | Tensor | None = None,
    progress: bool | None = None,
    **overrides,
) -> DoraResult:
    """DORA on a layer of a session's model: s-AMS, EA distances, outliers, map.

    Args:
        sess: a :class:`~repwidgets.session.Session` (its model, device and
            ``preprocess`` are used; its data is not).
        layer: name of the layer (``sess.layers()`` lists them).
        config: a :class:`DoraConfig` or a dict of its settings (for example another
            result's ``params``); None for the defaults.
        neurons: channel indices to analyse (default: all).
        progress: progress bars (default: the session's setting).
        **overrides: single settings of :class:`DoraConfig`, for example
            ``n_signals`` (s-AMS per neuron), ``steps`` (optimisation steps),
            ``signal_size`` (side in pixels of the s-AMS; half the side is about four
            times faster), ``batch_size`` (images per optimisation batch; default: as
            many as the session's memory budget allows), ``contamination``,
            ``n_neighbors``, ``embedding``, ``representation``, ``center``, ``seed``,
            ``lr``, ``transforms``, ... An unknown name raises a TypeError listing the
            settings.

    Returns:
        :class:`DoraResult` with ``signals`` [k, n, C, H, W], ``distances`` [k, k] and
        per-neuron scores (``to_frame()``); ``params`` holds the settings and
        ``signal_shape``, the (C, H, W) of the s-AMS.

    Example:
        >>> r = rw.dora.analyze(sess, "features.conv3", n_signals=2, steps=128)  # doctest: +SKIP
        >>> r.outliers()[:5]                                                      # doctest: +SKIP
    """
    cfg = DoraConfig.resolve(config, overrides)
    module = sess.module(layer)
    _checks.neuron_indices(neurons, _checks.layer_width(sess, layer), layer, minimum=2)
    show = sess.progress if progress is None else bool(progress)
    input_shape = cfg.signal_shape(tuple(sess.input_shape))
    budget = getattr(sess, "memory_budget", 2**31) / 2**20
    signals = generate_signals(
        sess.model,
        module,
        neurons,
        cfg.replace(input_shape=input_shape, signal_size=None),
        device=sess.device,
        preprocess=sess.preprocess,
        memory_budget_mb=budget / 2,
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
        batch_size=getattr(sess, "batch_size", 256),
        layer_name=layer,
    )
    result.params["signal_shape"] = list(input_shape)
    result._session = sess
    return result
