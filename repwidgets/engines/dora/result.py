"""What DORA found for one layer: :class:`DoraResult` (tables, thumbnails and a map)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from repwidgets.results import Result

__all__ = ["OUTLIER_SCORE_LABELS", "OUTLIER_SCORE_NAMES", "DoraResult"]

#: How figures and tables name each outlier score (``params["outlier"]``).
OUTLIER_SCORE_NAMES = {"lof": "LOF", "knn": "k-th-neighbour distance"}
#: ... and its values, as a column or axis title.
OUTLIER_SCORE_LABELS = {"lof": "LOF score", "knn": "k-th-neighbour distance"}


@dataclass
class DoraResult(Result):
    """What DORA found for one layer.

    Attributes:
        layer: the layer's name (None when unknown).
        neurons: LongTensor [k], the analysed neurons (channel indices of the layer).
        activations: A [k, k]; ``A[i, j]`` = mean activation of neuron ``neurons[j]`` on
            the s-AMS of neuron ``neurons[i]``.
        distances: EA distances [k, k] (rows/columns follow ``neurons``);
            ``ea_distance(activations.T)`` for the default representation "responses",
            ``ea_distance(activations)`` for "signals" (see ``params``).
        lof_scores: LOF score [k] (about 1 for inliers, larger for outliers; NaN for
            dead neurons).
        is_outlier: BoolTensor [k], flagged by the outlier score at the chosen
            contamination.
        is_dead: BoolTensor [k], neurons set aside (not active on their own s-AMS, or
            constant).
        embedding: [k, 2] map of the live neurons (UMAP, or MDS for tiny k); NaN for dead.
        self_activation: [k], each neuron's activation on its own s-AMS (``diag(A)``).
        signals: s-AMS images [k, n, C, H, W] in [0, 1], or None when not generated here.
        outlier_scores: [k] the score that ranks and flags the outliers (``params
            ["outlier"]``: the LOF scores for "lof", the k-th neighbour distance for
            "knn"); NaN for dead neurons. None for results saved before it existed:
            the LOF scores rank them.
        params: the settings used: ``DoraConfig.to_dict()`` (with ``embedding`` the map
            actually drawn), plus ``signal_shape`` [C, H, W] when the s-AMS were made here.

    ``r.widget()`` is the linked heatmap and gallery of :mod:`repwidgets.views`.
    """

    layer: str | None
    neurons: Tensor
    activations: Tensor
    distances: Tensor
    lof_scores: Tensor
    is_outlier: Tensor
    is_dead: Tensor
    embedding: Tensor
    self_activation: Tensor
    signals: Tensor | None = None
    outlier_scores: Tensor | None = None

    # --- tables ------------------------------------------------------------------------
    @property
    def k(self) -> int:
        """Number of analysed neurons."""
        return int(self.neurons.numel())

    def outliers(self) -> list[int]:
        """Neuron ids flagged as outliers, most outlying first."""
        order = self._outlier_order()
        flagged = self.is_outlier.cpu().numpy()
        ids = self.neurons.cpu().numpy()
        return [int(ids[i]) for i in order if flagged[i]]

    def dead(self) -> list[int]:
        """Neuron ids set aside as dead."""
        return [int(n) for n, d in zip(self.neurons.tolist(), self.is_dead.tolist()) if d]

    @property
    def outlier_score_name(self) -> str:
        """The name of the score that ranks and flags the neurons: "LOF" (the default)
        or "k-th-neighbour distance" (``params["outlier"] == "knn"``).

        Example:
            >>> r = analyze_activations(torch.rand(8, 8), embedding=None)  # doctest: +SKIP
            >>> r.outlier_score_name                                       # doctest: +SKIP
            'LOF'
        """
        return OUTLIER_SCORE_NAMES[self._outlier_kind()]

    @property
    def outlier_score_label(self) -> str:
        """The ranking score's values as a title: "LOF score" or "k-th-neighbour distance"."""
        return OUTLIER_SCORE_LABELS[self._outlier_kind()]

    def _outlier_kind(self) -> str:
        """``params["outlier"]`` ("lof" for results made before it existed or without scores)."""
        kind = str(self.params.get("outlier", "lof")) if self.outlier_scores is not None else "lof"
        return kind if kind in OUTLIER_SCORE_NAMES else "lof"

    def ranking_scores(self) -> np.ndarray:
        """The outlier score [k] that ranks and flags the neurons (``outlier_scores``, or
        the LOF scores where the result has none); NaN for dead neurons."""
        scores = self.outlier_scores if self.outlier_scores is not None else self.lof_scores
        return scores.cpu().double().numpy()

    def _outlier_order(self) -> np.ndarray:
        scores = self.ranking_scores()
        return np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")

    def nearest(self, n_nearest: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Nearest live neighbours of every neuron: (positions [k, m], distances [k, m])."""
        D = self.distances.detach().double().cpu().numpy().copy()
        dead = self.is_dead.cpu().numpy()
        D[:, dead] = np.inf
        np.fill_diagonal(D, np.inf)
        m = max(0, min(n_nearest, int((~dead).sum()) - 1))
        order = np.argsort(D, axis=1, kind="stable")[:, :m]
        return order, np.take_along_axis(D, order, axis=1)

    def to_frame(self, n_nearest: int = 5):
        """One row per neuron: outlier score and flag, dead flag, neighbours, map position.

        Columns: neuron, lof_score, outlier_rank (1 = most outlying live neuron by the
        outlier score),
        is_outlier, is_dead, self_activation, neighbours (nearest live neurons' ids),
        neighbour_distances, umap_x, umap_y, outlier_score (the score of
        ``params["outlier"]``: the LOF score by default).
        """
        import pandas as pd

        ids = self.neurons.cpu().numpy().astype(int)
        order, dist = self.nearest(n_nearest)
        rank = np.full(self.k, np.nan)
        scores = self.ranking_scores()
        live_order = [i for i in self._outlier_order() if np.isfinite(scores[i])]
        rank[live_order] = np.arange(1, len(live_order) + 1)
        emb = self.embedding.cpu().double().numpy()
        return pd.DataFrame(
            {
                "neuron": ids,
                "lof_score": self.lof_scores.cpu().double().numpy(),
                "outlier_rank": pd.array(
                    [None if np.isnan(r) else int(r) for r in rank], dtype="Int64"
                ),
                "is_outlier": self.is_outlier.cpu().numpy().astype(bool),
                "is_dead": self.is_dead.cpu().numpy().astype(bool),
                "self_activation": self.self_activation.cpu().double().numpy(),
                "neighbours": [[int(ids[j]) for j in row] for row in order],
                "neighbour_distances": [[float(d) for d in row] for row in dist],
                "umap_x": emb[:, 0],
                "umap_y": emb[:, 1],
                "outlier_score": scores,
            }
        )

    # --- images and figures --------------------------------------------------------------
    def signal_thumbnails(self, size: int | None = 48) -> list[bytes]:
        """PNG bytes per neuron: its s-AMS side by side (needs ``signals``)."""
        if self.signals is None:
            raise ValueError(
                "This result has no s-AMS images (it was made from activations only). "
                "Run dora.analyze(...) or dora.analyze_signals(...) to keep the signals."
            )
        from repwidgets.session import encode_image

        sig = self.signals.detach().float().cpu()
        k, n, c, h, w = sig.shape
        strips = sig.permute(0, 2, 3, 1, 4).reshape(k, c, h, n * w)
        return [encode_image(s, size=None if size is None else size * n) for s in strips]

    def plot(self, thumbnail_size: int = 48):
        """Bokeh map of the neurons (UMAP of the EA distances): outliers in red, dead
        neurons apart, each neuron's s-AMS in the hover tooltip."""
        from bokeh.models import ColumnDataSource, HoverTool
        from bokeh.plotting import figure

        frame = self.to_frame(n_nearest=3)
        thumbs = (
            self.signal_thumbnails(thumbnail_size) if self.signals is not None else [b""] * self.k
        )
        uris = [
            "data:image/png;base64," + base64.b64encode(t).decode("ascii") if t else ""
            for t in thumbs
        ]
        live = ~frame["is_dead"].to_numpy()
        x = frame["umap_x"].to_numpy(dtype=float).copy()
        y = frame["umap_y"].to_numpy(dtype=float).copy()
        no_map = not np.isfinite(x[live]).any()
        if no_map:  # made without a map (embedding=None): outlier score against neuron id
            x = frame["neuron"].to_numpy(dtype=float)
            y = np.nan_to_num(frame["outlier_score"].to_numpy(dtype=float), nan=0.0)
        if live.any():
            x0, x1 = np.nanmin(x[live]), np.nanmax(x[live])
            y0, y1 = np.nanmin(y[live]), np.nanmax(y[live])
        else:
            x0, x1, y0, y1 = 0.0, 1.0, 0.0, 1.0
        span = max(x1 - x0, 1e-9)
        n_dead = int((~live).sum())
        if n_dead:  # a row of dead neurons below the map
            x[~live] = np.linspace(x0, x1, n_dead) if n_dead > 1 else [(x0 + x1) / 2]
            y[~live] = y0 - 0.12 * max(y1 - y0, span)
        kind = np.where(
            ~live, "dead", np.where(frame["is_outlier"].to_numpy(), "outlier", "inlier")
        )
        colour = {"inlier": "#4c78a8", "outlier": "#e45756", "dead": "#9d9d9d"}
        score = frame["outlier_score"].to_numpy(dtype=float)
        source_all = {
            "x": x,
            "y": y,
            "neuron": frame["neuron"].to_numpy(),
            "score": [f"{v:.2f}" if np.isfinite(v) else "-" for v in score],
            "kind": kind,
            "neighbours": [", ".join(map(str, v)) for v in frame["neighbours"]],
            "img": uris,
            "colour": [colour[k] for k in kind],
            "size": [12 if k == "outlier" else 8 for k in kind],
        }
        title = f"DORA: EA-distance map of {self.layer or 'the layer'}"
        title += f" ({int(frame['is_outlier'].sum())} outliers, {n_dead} dead)"
        fig = figure(
            title=title,
            width=640,
            height=520,
            tools="pan,wheel_zoom,box_zoom,reset,save",
            x_axis_label="neuron" if no_map else "map x",
            y_axis_label=self.outlier_score_label if no_map else "map y",
        )
        renderers = []
        for name in ("inlier", "outlier", "dead"):
            mask = kind == name
            if not mask.any():
                continue
            src = ColumnDataSource({key: np.asarray(v)[mask] for key, v in source_all.items()})
            marker = "x" if name == "dead" else "circle"
            r = fig.scatter(
                "x",
                "y",
                source=src,
                size="size",
                color="colour",
                marker=marker,
                alpha=0.85,
                legend_label=f"{name} ({int(mask.sum())})",
            )
            renderers.append(r)
        tooltip = f"""
        <div style="max-width: 420px">
          <div><b>neuron @neuron</b> (@kind) &middot; {self.outlier_score_name} @score</div>
          <div>nearest: @neighbours</div>
          <img src="@img" style="image-rendering: pixelated; margin-top: 4px"/>
        </div>"""
        fig.add_tools(HoverTool(renderers=renderers, tooltips=tooltip))
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
        return fig
