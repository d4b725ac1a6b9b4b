"""Interactive widgets (anywidget): galleries, heatmaps, embeddings, curation.

Every widget works wherever anywidget works (JupyterLab 4, Notebook 7, VS Code,
Colab, marimo) with no extension to install; selections are synced traits. They know
no engine: they take arrays, labels, image sources and
:class:`~repwidgets.candidates.Candidates`; :mod:`repwidgets.views` turns results
into them.

Example:
    >>> import repwidgets as rw
    >>> g = rw.widgets.NeuronGallery.from_activations(rw.demo_session(), "features.conv3")  # doctest: +SKIP
    >>> g.selected                                                                           # doctest: +SKIP
"""

from repwidgets.widgets.clusters import Coloring, ConceptBrowser, ContinuousColoring
from repwidgets.widgets.curation import CurationSelector
from repwidgets.widgets.gallery import NeuronGallery
from repwidgets.widgets.heatmap import DistanceHeatmap
from repwidgets.widgets.link import Link, link
from repwidgets.widgets.traits import ArrayDict, ArrayTrait

__all__ = [
    "ArrayDict",
    "ArrayTrait",
    "Coloring",
    "ConceptBrowser",
    "ContinuousColoring",
    "CurationSelector",
    "DistanceHeatmap",
    "Link",
    "NeuronGallery",
    "link",
]
