"""The explorer: a layer's neurons, one neuron, one sample and the actions, in one view.

``x = rw.explore(sess, layer)`` composes the existing widgets (ConceptBrowser,
DistanceHeatmap, NeuronGallery) in ipywidgets containers, so it shows in JupyterLab 4
and Notebook 7 with nothing to install. Modules, one concern each:

- :mod:`.data`: the layer's results (given, remembered per session and layer, loaded
  from ``cache=``, or computed) and each neuron's panel data, cached on first visit;
- :mod:`.jobs`: the one background worker (progress, status, Cancel; model use is
  serialised by one lock);
- :mod:`.neurons`: the neuron map beside the heatmap, linked, with the formula search;
- :mod:`.panels` and :mod:`.galleries`: the neuron and sample panels, sample galleries;
- :mod:`.actions`: flag, export, retrain and its table and plot;
- :mod:`.explorer`: :class:`Explorer`, the wiring and the public API.

Example:
    >>> import repwidgets as rw
    >>> sess = rw.demo_session()                  # doctest: +SKIP
    >>> x = rw.explore(sess, "features.conv4")    # doctest: +SKIP
    >>> x                                         # shows the view   # doctest: +SKIP
    >>> x.search("watermark"); x.selected_neurons # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repwidgets.curation_store import Curation
from repwidgets.views.explorer.data import DEFAULT_SETTINGS, ExplorerData, layer_results
from repwidgets.views.explorer.explorer import Explorer

if TYPE_CHECKING:
    from repwidgets.session import Session

__all__ = ["DEFAULT_SETTINGS", "Explorer", "explore"]

#: The curation file of an explorer opened without ``curation=`` (in the working folder).
DEFAULT_CURATION = "explorer_curation.json"


def default_layer(sess: Session) -> str:
    """The demo's ``features.conv4`` when the model has it, else ``sess.default_layer()``."""
    return "features.conv4" if "features.conv4" in sess.layers() else sess.default_layer()


def explore(
    sess: Session,
    layer: str | None = None,
    *,
    dora: Any = None,
    invert: Any = None,
    concepts: Any = None,
    cache: str | os.PathLike | None = None,
    curation: Curation | str | os.PathLike | None = None,
    split: str = "train",
    band: tuple[float, float] = (0.5, 0.9),
    top_k: int = 16,
    settings: dict[str, dict[str, Any]] | None = None,
    attribution_options: dict[str, Any] | None = None,
    retrain_options: dict[str, Any] | None = None,
    export_path: str | os.PathLike = "explorer_selection.csv",
) -> Explorer:
    """Open the explorer of ``layer``: neurons, one neuron, one sample, and actions.

    Args:
        sess: the session.
        layer: the layer (default: ``features.conv4`` where it exists, else
            ``sess.default_layer()``).
        dora, invert, concepts: results to show; None uses the ones remembered for this
            session and layer, or loads them from ``cache``, or computes them now (with
            :data:`DEFAULT_SETTINGS`, changed by ``settings``); False leaves one out.
        cache: a folder to save the results and the layer's pooled activations on
            ``split`` in, and to load them from next time (made for one model and data:
            use one folder per model).
        curation: the :class:`Curation` (split "train") flags go to, or its file path
            (default: ``explorer_curation.json`` in the working folder, or in ``cache``).
        split: the split whose samples are shown, selected and flagged.
        band: the initial mid-range band (quantiles of a neuron's activation).
        top_k: top-activating samples per neuron.
        attribution_options: settings of
            :func:`repwidgets.engines.attribution.neuron_attribution` (``proj_dim``,
            ``max_train``, ``n_targets``, ...).
        retrain_options: settings of :class:`repwidgets.engines.midrange.RetrainConfig`.
        export_path: where the Export button writes the selection.

    Returns:
        An :class:`Explorer` (an ipywidgets VBox; ``x.open_seconds`` says how long
        opening took).

    Raises:
        ValueError: an unknown layer or split, before anything is computed.

    Example:
        >>> x = explore(sess, "features.conv4", cache="explorer-cache")   # doctest: +SKIP
        >>> x.select_neuron(12).attribute(); x.flag("spurious")           # doctest: +SKIP
    """
    t0 = time.perf_counter()
    layer = default_layer(sess) if layer is None else str(layer)
    if layer not in sess.layers():
        from repwidgets.session import unknown_layer_message

        raise ValueError(unknown_layer_message(layer, sess.layers()))
    if split not in sess.splits:
        raise ValueError(f"split {split!r} is not in the session; splits: {sess.splits}.")
    store = _curation(sess, curation, cache, split)
    results = layer_results(
        sess, layer, dora=dora, invert=invert, concepts=concepts, cache=cache, settings=settings
    )
    data = ExplorerData(sess, layer, **results, split=split, top_k=top_k, band=band, cache=cache)
    x = Explorer(
        data,
        store,
        attribution_options=attribution_options,
        retrain_options=retrain_options,
        export_path=export_path,
    )
    x.open_seconds = time.perf_counter() - t0
    return x


def _curation(sess: Session, curation: Any, cache: Any, split: str) -> Curation:
    if isinstance(curation, Curation):
        if curation.split != split:
            raise ValueError(
                f"The curation is of split {curation.split!r} but the explorer shows {split!r}."
            )
        return curation
    if curation is None:
        folder = Path(cache).expanduser() if cache is not None else Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        curation = folder / DEFAULT_CURATION
    return Curation.open(
        curation,
        split=split,
        n_samples=sess.n(split),
        dataset={"name": str(getattr(sess.data, "name", ""))},
        context={"source": "explorer"},
    )
