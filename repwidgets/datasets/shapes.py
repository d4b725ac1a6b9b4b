"""The embedded default dataset: generated shapes with concept labels and a planted artifact.

Each image shows one shape (the class: circle, square, triangle or star) in a colour
(red, green, blue, yellow) on a grey background texture (plain, stripes, dots, noise), at
a random size, position and rotation, plus pixel noise. A planted artifact (a corner
watermark, a coloured border or a checkerboard patch) appears in most training images of
one class (``spurious_strength``) and rarely elsewhere (``artifact_rate``), so a model
trained on the training split learns a shortcut. The validation and test splits are drawn
balanced (the artifact independent of the class), so worst-group accuracy over the groups
class x artifact shows the shortcut.

Every sample is described by a row of parameter arrays (shape, colour, texture, size,
position, rotation, artifact, ...) drawn once per split; images are rendered from those
parameters on access, in vectorised batches, with per-sample random streams
(``seed``, split, index), so any image is the same however it is accessed and a split can
be larger than memory. Targets, concept labels and groups come from the parameters
without rendering.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .bundle import DataBundle

__all__ = [
    "ARTIFACTS",
    "CLASS_NAMES",
    "COLOURS",
    "TEXTURES",
    "ShapesDataset",
    "shapes",
    "draw_artifact",
]

#: Bumped whenever rendering changes, so cached models trained on older images are not reused.
GENERATOR_VERSION = 1

CLASS_NAMES = ["circle", "square", "triangle", "star"]
COLOURS = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.12, 0.72, 0.18),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.88, 0.10),
}
TEXTURES = ["plain", "stripes", "dots", "noise"]
SIZES = ["size_small", "size_medium", "size_large"]
POSITIONS = ["pos_top_left", "pos_top_right", "pos_bottom_left", "pos_bottom_right"]
ARTIFACTS = ("watermark", "border", "patch")


def check_artifact_arguments(
    artifact: str | None,
    spurious_strength: float,
    artifact_rate: float,
    test_artifact_fraction: float,
) -> None:
    """Raise a ValueError naming the first artifact argument out of range."""
    if artifact is not None and artifact not in ARTIFACTS:
        raise ValueError(f"Unknown artifact {artifact!r}; choose one of {list(ARTIFACTS)} or None.")
    for label, value in (
        ("spurious_strength", spurious_strength),
        ("artifact_rate", artifact_rate),
        ("test_artifact_fraction", test_artifact_fraction),
    ):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{label} must be in [0, 1]; got {value!r}.")


_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# A small "(c)" mark, the default watermark glyph (1 = ink).
_WATERMARK_GLYPH = np.array(
    [
        [0, 1, 1, 1, 1, 1, 0],
        [1, 0, 0, 0, 0, 0, 1],
        [1, 0, 1, 1, 1, 0, 1],
        [1, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 1, 1, 0, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [0, 1, 1, 1, 1, 1, 0],
    ],
    dtype=np.float32,
)

_BORDER_COLOUR = np.array([1.0, 0.0, 1.0], dtype=np.float32)  # magenta


# --------------------------------------------------------------------------- artifacts
def artifact_mask(
    kind: str, image_size: int, pos: np.ndarray | None = None, scale: float = 1.0
) -> np.ndarray:
    """Where artifact ``kind`` draws on a square image of side ``image_size``.

    Returns a float mask [m, H, W] in [0, 1] (m = len(pos) for "patch", whose top-left
    corners ``pos`` [m, 2] (x, y) vary per sample; m = 1 for the fixed artifacts).
    ``scale`` enlarges the artifact (glyph size, border width, patch side).
    """
    S = image_size
    if kind == "watermark":
        y0, x0, side = _watermark_box(S, scale)
        mask = np.zeros((1, S, S), dtype=np.float32)
        mask[0, y0 : y0 + side, x0 : x0 + side] = 1
        return mask
    if kind == "border":
        b = _border_width(S, scale)
        mask = np.ones((1, S, S), dtype=np.float32)
        mask[0, b : S - b, b : S - b] = 0
        return mask
    if kind == "patch":
        if pos is None:
            raise ValueError("artifact_mask('patch', ...) needs the patch corners pos [m, 2].")
        p = _patch_size(S, scale)
        mask = np.zeros((len(pos), S, S), dtype=np.float32)
        for i, (x, y) in enumerate(np.asarray(pos, dtype=int)):
            mask[i, y : y + p, x : x + p] = 1
        return mask
    raise ValueError(f"Unknown artifact {kind!r}; choose one of {list(ARTIFACTS)} or None.")


def _watermark_box(S: int, scale: float = 1.0) -> tuple[int, int, int]:
    """(top, left, side) of the watermark stamp: 7 * k pixels, k = round(scale * S / 64)."""
    side = 7 * max(1, round(scale * S / 64))
    margin = max(1, round(2 * S / 64))
    return S - margin - side, S - margin - side, side


def _border_width(S: int, scale: float = 1.0) -> int:
    return max(1, round(2 * scale * S / 64))


def _patch_size(S: int, scale: float = 1.0) -> int:
    return max(3, round(8 * scale * S / 64))


def draw_artifact(
    images: np.ndarray,
    kind: str,
    pos: np.ndarray | None = None,
    opacity: float = 1.0,
    scale: float = 1.0,
) -> np.ndarray:
    """Draw artifact ``kind`` onto ``images`` [m, 3, H, W] (in place) and return them.

    - "watermark": a "(c)" stamp (white ink on black) in the bottom-right corner;
    - "border": a magenta frame around the image;
    - "patch": a black-and-white checkerboard square with top-left corners ``pos`` [m, 2].
    """
    m, _, S, _ = images.shape
    if m == 0:
        return images
    mask = artifact_mask(kind, S, pos, scale) * np.float32(opacity)  # [1 or m, H, W]
    if kind == "watermark":
        y0, x0, side = _watermark_box(S, scale)
        k = side // 7
        colour = np.zeros((3, S, S), dtype=np.float32)
        glyph = np.kron(_WATERMARK_GLYPH, np.ones((k, k), dtype=np.float32))
        colour[:, y0 : y0 + side, x0 : x0 + side] = 0.05 + 0.9 * glyph
    elif kind == "border":
        colour = np.broadcast_to(_BORDER_COLOUR[:, None, None], (3, S, S))
    else:
        p = _patch_size(S, scale)
        cell = max(1, p // 3)
        yy, xx = np.mgrid[0:S, 0:S]
        colour = np.empty((m, 3, S, S), dtype=np.float32)
        for i, (x, y) in enumerate(np.asarray(pos, dtype=int)):
            checker = (((xx - x) // cell + (yy - y) // cell) % 2).astype(np.float32)
            colour[i] = (0.05 + 0.9 * checker)[None]
    images *= 1 - mask[:, None]
    images += mask[:, None] * colour
    return images


# --------------------------------------------------------------------------- parameters
def _draw_params(
    n: int,
    rng: np.random.Generator,
    cfg: dict[str, Any],
    balanced_artifact: bool,
) -> dict[str, np.ndarray]:
    """All per-sample parameters of one split (arrays of length n); no images."""
    S = cfg["image_size"]
    scale = S / 64
    n_classes = len(CLASS_NAMES)
    shape = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    colour = rng.integers(0, len(COLOURS), n)
    texture = rng.integers(0, len(TEXTURES), n)
    rmin, rmax = cfg["radius_range"]
    radius = rng.uniform(rmin, rmax, n) * scale
    extent = radius * 1.3 + 2 * scale  # bounding radius of any shape plus a margin
    cx = rng.uniform(extent, S - extent)
    cy = rng.uniform(extent, S - extent)
    rotation = np.deg2rad(rng.uniform(-cfg["rotation"], cfg["rotation"], n))
    rgb = np.asarray(list(COLOURS.values()), dtype=np.float32)[colour]
    rgb = np.clip(rgb + rng.uniform(-1, 1, (n, 3)) * cfg["colour_jitter"], 0, 1)
    grey = rng.uniform(*cfg["background"], n)
    contrast = rng.uniform(*cfg["texture_contrast"], n)
    tex_angle = rng.uniform(0, np.pi, n)
    tex_period = rng.uniform(5, 10, n) * scale
    tex_phase = rng.uniform(0, 2 * np.pi, n)
    # artifact presence
    spurious = cfg["spurious_class"]
    if cfg["artifact"] is None:
        has_art = np.zeros(n, dtype=bool)
    elif balanced_artifact:
        has_art = np.zeros(n, dtype=bool)
        for k in range(n_classes):
            idx = np.flatnonzero(shape == k)
            n_art = int(round(len(idx) * cfg["test_artifact_fraction"]))
            has_art[rng.permutation(idx)[:n_art]] = True
    else:
        p = np.where(shape == spurious, cfg["spurious_strength"], cfg["artifact_rate"])
        has_art = rng.random(n) < p
    # patch position: away from the shape (first of 16 candidates that does not overlap)
    p = _patch_size(S, cfg["artifact_scale"])
    lo, hi = max(1, round(2 * scale)), S - p - max(1, round(2 * scale))
    cand = rng.uniform(lo, hi, (n, 16, 2))
    centre = cand + p / 2
    dist = np.hypot(centre[..., 0] - cx[:, None], centre[..., 1] - cy[:, None])
    ok = dist > (extent[:, None] + p * 0.72)
    first = np.where(ok.any(1), ok.argmax(1), dist.argmax(1))
    patch_xy = np.floor(cand[np.arange(n), first]).astype(np.int64)
    return {
        "shape": shape,
        "colour": colour.astype(np.int64),
        "texture": texture.astype(np.int64),
        "radius": radius.astype(np.float32),
        "cx": cx.astype(np.float32),
        "cy": cy.astype(np.float32),
        "rotation": rotation.astype(np.float32),
        "rgb": rgb.astype(np.float32),
        "grey": grey.astype(np.float32),
        "contrast": contrast.astype(np.float32),
        "tex_angle": tex_angle.astype(np.float32),
        "tex_period": tex_period.astype(np.float32),
        "tex_phase": tex_phase.astype(np.float32),
        "artifact": has_art,
        "patch_xy": patch_xy,
    }


# --------------------------------------------------------------------------- rendering
def _shape_alpha(P: dict[str, np.ndarray], idx: np.ndarray, S: int) -> np.ndarray:
    """Anti-aliased coverage [m, S, S] of each sample's shape (1 inside, 0 outside)."""
    m = len(idx)
    coords = np.arange(S, dtype=np.float32) + 0.5
    dx = coords[None, None, :] - P["cx"][idx, None, None]
    dy = coords[None, :, None] - P["cy"][idx, None, None]
    c = np.cos(P["rotation"][idx])[:, None, None]
    s = np.sin(P["rotation"][idx])[:, None, None]
    u = dx * c + dy * s  # rotated frame; v grows downwards
    v = -dx * s + dy * c
    r = P["radius"][idx][:, None, None]
    shape = P["shape"][idx]
    d = np.empty((m, S, S), dtype=np.float32)  # signed distance, positive inside
    k = shape == 0  # circle
    if k.any():
        d[k] = r[k] - np.sqrt(u[k] ** 2 + v[k] ** 2)
    k = shape == 1  # square, side 1.7 r
    if k.any():
        d[k] = 0.85 * r[k] - np.maximum(np.abs(u[k]), np.abs(v[k]))
    k = shape == 2  # triangle pointing up, circumradius 1.25 r, centroid at (cx, cy)
    if k.any():
        R = 1.25 * r[k]
        uk, vk = u[k], v[k]
        e1 = vk
        e2 = -0.8660254 * uk - 0.5 * vk
        e3 = 0.8660254 * uk - 0.5 * vk
        d[k] = R / 2 - np.maximum(np.maximum(e1, e2), e3)
    k = shape == 3  # five-pointed star, outer radius 1.3 r, inner 0.5 x outer
    if k.any():
        Ro = 1.3 * r[k]
        Ri = 0.5 * Ro
        rho = np.sqrt(u[k] ** 2 + v[k] ** 2)
        theta = np.arctan2(v[k], u[k]) + np.pi / 2  # a point straight up
        seg = 2 * np.pi / 5
        phi = np.abs(np.mod(theta, seg) - seg / 2)  # 0 at an inner vertex
        phi = seg / 2 - phi  # 0 at an outer vertex, pi/5 at an inner one
        sa = np.sin(np.pi / 5)
        boundary = Ro * Ri * sa / (Ro * np.sin(phi) + Ri * np.sin(np.pi / 5 - phi))
        d[k] = boundary - rho
    return np.clip(d + 0.5, 0.0, 1.0)


def _background(
    P: dict[str, np.ndarray], idx: np.ndarray, S: int, streams: list[np.random.Generator]
) -> np.ndarray:
    """Grey background texture [m, S, S] in [0, 1]."""
    m = len(idx)
    coords = np.arange(S, dtype=np.float32) + 0.5
    xx = np.broadcast_to(coords[None, :], (S, S))
    yy = np.broadcast_to(coords[:, None], (S, S))
    bg = np.broadcast_to(P["grey"][idx, None, None], (m, S, S)).copy()
    tex = P["texture"][idx]
    amp = P["contrast"][idx]
    ang = P["tex_angle"][idx, None, None]
    period = P["tex_period"][idx, None, None]
    phase = P["tex_phase"][idx, None, None]
    k = tex == 1  # stripes
    if k.any():
        t = xx * np.cos(ang[k]) + yy * np.sin(ang[k])
        wave = np.clip(3 * np.sin(2 * np.pi * t / period[k] + phase[k]), -1, 1)
        bg[k] += 0.5 * amp[k][:, None, None] * wave
    k = tex == 2  # dots on a grid
    if k.any():
        per = period[k]
        off = phase[k] / (2 * np.pi) * per
        du = np.mod(xx + off, per) - per / 2
        dv = np.mod(yy + off * 0.7, per) - per / 2
        dot = np.clip(0.22 * per - np.sqrt(du**2 + dv**2) + 0.5, 0, 1)
        bg[k] += amp[k][:, None, None] * (dot - 0.3)
    k = np.flatnonzero(tex == 3)  # smooth noise
    if len(k):
        grid = np.stack([streams[j].random((8, 8), dtype=np.float32) for j in k])
        up = F.interpolate(
            torch.from_numpy(grid)[:, None], size=(S, S), mode="bicubic", align_corners=False
        )[:, 0].numpy()
        bg[k] += 1.4 * amp[k][:, None, None] * (up - 0.5)
    return bg


def render_shapes(
    P: dict[str, np.ndarray],
    idx: Sequence[int] | np.ndarray,
    cfg: dict[str, Any],
    split_code: int,
) -> np.ndarray:
    """Render samples ``idx`` of one split: float32 array [m, 3, S, S] in [0, 1]."""
    idx = np.asarray(idx, dtype=np.int64)
    S = cfg["image_size"]
    m = len(idx)
    streams = [np.random.default_rng([cfg["seed"], split_code, int(i)]) for i in idx]
    bg = _background(P, idx, S, streams)
    alpha = _shape_alpha(P, idx, S)[:, None]
    img = np.repeat(bg[:, None], 3, axis=1)
    img = img * (1 - alpha) + P["rgb"][idx][:, :, None, None] * alpha
    img = np.clip(img, 0, 1).astype(np.float32)
    kind = cfg["artifact"]
    if kind is not None:
        art = np.flatnonzero(P["artifact"][idx])
        if len(art):
            img[art] = draw_artifact(
                img[art],
                kind,
                P["patch_xy"][idx[art]],
                cfg["artifact_opacity"],
                cfg["artifact_scale"],
            )
    if cfg["noise"] > 0 and m:
        noise = np.stack(
            [st.standard_normal((3, S, S), dtype=np.float32) for st in streams]
        ) * np.float32(cfg["noise"])
        img = np.clip(img + noise, 0, 1)
    return img


# --------------------------------------------------------------------------- dataset
class ShapesDataset(Dataset):
    """One split of the shapes data: items ``(image FloatTensor [3, S, S] in [0, 1], target)``.

    Attributes ``targets`` [n] (long), ``concepts`` [n, K] (bool), ``groups`` [n] (long) and
    ``params`` (dict of per-sample parameter arrays) need no rendering. ``render(indices)``
    draws a batch at once; ``__getitems__`` lets a DataLoader do the same.

    Example:
        >>> ds = shapes(n_train=64, n_test=32, n_val=0).test
        >>> img, y = ds[0]
        >>> img.shape, ds.concepts.shape
        (torch.Size([3, 64, 64]), torch.Size([32, 20]))
    """

    def __init__(
        self,
        split: str,
        params: dict[str, np.ndarray],
        cfg: dict[str, Any],
        concept_names: list[str],
        cache_items: int = 256,
    ):
        self.split = split
        self.split_code = _SPLIT_CODES.get(split, 3)
        self.params = params
        self.cfg = cfg
        self.concept_names = concept_names
        self.targets = torch.from_numpy(params["shape"].copy())
        self.concepts = torch.from_numpy(_concept_matrix(params, cfg))
        n_art = 2 if cfg["artifact"] is not None else 1
        self.groups = torch.from_numpy(params["shape"] * n_art + params["artifact"].astype(int))
        self.classes = list(CLASS_NAMES)
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_items = cache_items

    def __len__(self) -> int:
        return len(self.params["shape"])

    def _check(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][:5].tolist()
            raise IndexError(f"Indices {bad} out of range for the {self.split!r} split of {n}.")
        return np.where(idx < 0, idx + n, idx)

    def render(self, indices: Sequence[int]) -> torch.Tensor:
        """Images at ``indices`` as FloatTensor [m, 3, S, S] in [0, 1] (rendered in chunks)."""
        idx = self._check(indices)
        out = []
        for start in range(0, len(idx), 512):
            part = idx[start : start + 512]
            out.append(
                torch.from_numpy(render_shapes(self.params, part, self.cfg, self.split_code))
            )
        if not out:
            S = self.cfg["image_size"]
            return torch.zeros(0, 3, S, S)
        return torch.cat(out)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = int(self._check([i])[0])
        img = self._cache.get(i)
        if img is None:
            img = self.render([i])[0]
            self._cache[i] = img
            if len(self._cache) > self._cache_items:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return img, int(self.targets[i])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        imgs = self.render(indices)
        idx = self._check(indices)
        return [(imgs[k], int(self.targets[j])) for k, j in enumerate(idx)]

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(split={self.split!r}, n={len(self)}, artifact={self.cfg['artifact']!r})"
        )


def _concept_names(artifact: str | None) -> list[str]:
    names = CLASS_NAMES + list(COLOURS) + TEXTURES + SIZES + POSITIONS
    return names + ([artifact] if artifact is not None else [])


def _concept_matrix(P: dict[str, np.ndarray], cfg: dict[str, Any]) -> np.ndarray:
    """Boolean concept labels [n, K] from the parameters (no rendering)."""
    n = len(P["shape"])
    cols = [P["shape"] == k for k in range(len(CLASS_NAMES))]
    cols += [P["colour"] == k for k in range(len(COLOURS))]
    cols += [P["texture"] == k for k in range(len(TEXTURES))]
    rmin, rmax = cfg["radius_range"]
    rel = (P["radius"] / (cfg["image_size"] / 64) - rmin) / (rmax - rmin)
    bucket = np.clip((rel * 3).astype(int), 0, 2)
    cols += [bucket == k for k in range(3)]
    half = cfg["image_size"] / 2
    top, left = P["cy"] < half, P["cx"] < half
    cols += [top & left, top & ~left, ~top & left, ~top & ~left]
    if cfg["artifact"] is not None:
        cols.append(P["artifact"].astype(bool))
    return np.stack(cols, axis=1).reshape(n, -1).astype(bool)


def _class_index(spurious_class: int | str) -> int:
    if isinstance(spurious_class, str):
        if spurious_class not in CLASS_NAMES:
            raise ValueError(
                f"Unknown spurious_class {spurious_class!r}; choose one of {CLASS_NAMES} "
                f"or an index 0..{len(CLASS_NAMES) - 1}."
            )
        return CLASS_NAMES.index(spurious_class)
    k = int(spurious_class)
    if not 0 <= k < len(CLASS_NAMES):
        raise ValueError(
            f"spurious_class={spurious_class} is out of range; use 0..{len(CLASS_NAMES) - 1} "
            f"or a name from {CLASS_NAMES}."
        )
    return k


def group_names_for(class_names: Sequence[str], artifact: str | None) -> list[str]:
    """Names of the groups class x artifact, in group-id order (class * 2 + has_artifact)."""
    if artifact is None:
        return list(class_names)
    return [f"{c}/{p}{artifact}" for c in class_names for p in ("no-", "")]


def shapes(
    n_train: int = 8000,
    n_test: int = 2000,
    n_val: int = 1000,
    artifact: str | None = "watermark",
    spurious_class: int | str = 0,
    spurious_strength: float = 0.95,
    seed: int = 0,
    image_size: int = 64,
    balanced_test: bool = True,
    *,
    artifact_rate: float = 0.02,
    test_artifact_fraction: float = 0.5,
    radius_range: tuple[float, float] = (7.0, 12.0),
    rotation: float = 25.0,
    noise: float = 0.08,
    colour_jitter: float = 0.08,
    background: tuple[float, float] = (0.25, 0.65),
    texture_contrast: tuple[float, float] = (0.15, 0.35),
    artifact_opacity: float = 1.0,
    artifact_scale: float = 1.0,
) -> DataBundle:
    """Generated shapes with concept labels and a planted shortcut artifact.

    Args:
        n_train, n_test, n_val: split sizes (``n_val=0`` leaves out the validation split).
        artifact: "watermark" (a small black-and-white "(c)" stamp in the bottom-right corner), "border" (a
            magenta frame), "patch" (a checkerboard square placed away from the shape), or
            None for no artifact.
        spurious_class: the class (index or name) whose training images mostly carry the
            artifact.
        spurious_strength: fraction of the spurious class's training images with the
            artifact.
        seed: everything (parameters and pixels) is a function of the seed.
        image_size: side S of the square RGB images; sizes scale with it (64 is native).
        balanced_test: draw val and test with the artifact independent of the class
            (``test_artifact_fraction`` of every class), so worst-group accuracy is
            measurable; otherwise they follow the training distribution.
        artifact_rate: fraction of other classes' training images with the artifact.
        radius_range: shape radius range in pixels at S=64 (also the size buckets: thirds).
        rotation: maximal absolute rotation of the shape, degrees.
        noise: std of the Gaussian pixel noise.
        colour_jitter, background, texture_contrast: appearance of shapes and backgrounds.
        artifact_opacity, artifact_scale: how strongly and how large the artifact is drawn
            (scale 1: a 7 px glyph, a 2 px border, an 8 px patch at S=64).

    Returns:
        DataBundle with splits train, val (if n_val > 0), test. Items are
        ``(FloatTensor [3, S, S] in [0, 1], class)``; classes are circle, square,
        triangle, star. Concepts (one boolean column each): the 4 shapes, the colours red,
        green, blue, yellow, the textures plain, stripes, dots, noise, size_small /
        size_medium / size_large, pos_top_left / pos_top_right / pos_bottom_left /
        pos_bottom_right (quadrant of the shape's centre) and the artifact's name.
        Groups: class x artifact, e.g. "circle/no-watermark", "circle/watermark".

    Example:
        >>> data = shapes(n_train=1000, n_test=400, artifact="border")
        >>> data.concepts("test")[:, data.concept_index("border")].float().mean()
        tensor(0.5000)
    """
    check_artifact_arguments(artifact, spurious_strength, artifact_rate, test_artifact_fraction)
    for label, value in (("n_train", n_train), ("n_test", n_test), ("n_val", n_val)):
        if int(value) < 0 or int(value) != value:
            raise ValueError(f"{label} must be a non-negative integer; got {value!r}.")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1; got {n_train} and {n_test}.")
    if int(image_size) < 16:
        raise ValueError(f"image_size must be >= 16 pixels; got {image_size}.")
    if not 0 < radius_range[0] < radius_range[1]:
        raise ValueError(
            f"radius_range must be (low, high) with 0 < low < high; got {radius_range}."
        )
    if radius_range[1] * 1.3 + 2 > 32:
        raise ValueError(f"radius_range {radius_range} is too large for the image (max about 23).")
    cfg: dict[str, Any] = {
        "name": "shapes",
        "version": GENERATOR_VERSION,
        "n_train": int(n_train),
        "n_val": int(n_val),
        "n_test": int(n_test),
        "artifact": artifact,
        "spurious_class": _class_index(spurious_class),
        "spurious_strength": float(spurious_strength),
        "artifact_rate": float(artifact_rate),
        "test_artifact_fraction": float(test_artifact_fraction),
        "balanced_test": bool(balanced_test),
        "seed": int(seed),
        "image_size": int(image_size),
        "radius_range": [float(radius_range[0]), float(radius_range[1])],
        "rotation": float(rotation),
        "noise": float(noise),
        "colour_jitter": float(colour_jitter),
        "background": [float(background[0]), float(background[1])],
        "texture_contrast": [float(texture_contrast[0]), float(texture_contrast[1])],
        "artifact_opacity": float(artifact_opacity),
        "artifact_scale": float(artifact_scale),
    }
    names = _concept_names(artifact)
    splits: dict[str, Dataset] = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n == 0:
            continue
        rng = np.random.default_rng([int(seed), 1000 + _SPLIT_CODES[split]])
        params = _draw_params(
            int(n), rng, cfg, balanced_artifact=balanced_test and split != "train"
        )
        splits[split] = ShapesDataset(split, params, cfg, names)
    splits = {k: splits[k] for k in ("train", "val", "test") if k in splits}
    return DataBundle(
        "shapes",
        splits,
        CLASS_NAMES,
        names,
        cfg,
        group_names=group_names_for(CLASS_NAMES, artifact),
    )
