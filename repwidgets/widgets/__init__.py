"""Interactive widgets (anywidget): galleries, heatmaps, embeddings, curation.

Every widget works wherever anywidget works (JupyterLab 4, Notebook 7, VS Code,
Colab, marimo) with no extension to install; selections are synced traits.

Example:
    >>> import repwidgets as rw
    >>> g = rw.widgets.NeuronGallery.from_activations(rw.demo_session(), "features.conv3")  # doctest: +SKIP
    >>> g.selected                                                                           # doctest: +SKIP
"""

from repwidgets.widgets.gallery import NeuronGallery
from repwidgets.widgets.heatmap import DistanceHeatmap
from repwidgets.widgets.link import Link, link

__all__ = ["DistanceHeatmap", "Link", "NeuronGallery", "link"]
