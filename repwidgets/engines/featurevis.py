"""Feature visualisation: optimise input images that drive chosen units of a network.

This is the image optimiser behind DORA's synthetic activation-maximisation signals
(s-AMS), written for batches: every batch element has its own image, its own objective
and its own random transforms, and Adam's per-coordinate updates keep the elements
independent of each other, so thousands of (unit, sample) pairs can be optimised in
one batch instead of one unit at a time.

The recipe (the one that makes such images resemble what a unit responds to on data):

- **Fourier parametrisation.** Each image is a set of real FFT coefficients scaled by
  ``1 / f**decay`` (``decay`` about 0.75), turned into pixels by an orthonormal inverse
  real FFT. Low frequencies then move as fast as high ones, which steers the
  optimisation away from high-frequency adversarial noise.
- **Decorrelated colour.** The three channels are mixed by the square root of a
  natural-image colour correlation matrix, so the optimiser works in decorrelated
  colour space; a sigmoid maps the result into [0, 1].
- **Robustness transforms** at every step, drawn per element: padding (reflection or a
  constant grey, never wrapping pixels around), random translation, scale
  (0.85-1.2 by default) and rotation (+-15 degrees by default), applied as one affine
  resampling (``affine_grid``/``grid_sample``). An image that keeps the unit active
  under all of them encodes the feature itself, not a pixel-exact exploit.
- Adam or AdamW with warm-up and cosine decay of the learning rate, gradient
  clipping per element, fixed seeds.

Images may be rendered larger than the model's input (``render_scale > 1``); the
transforms then sample the model input from the larger canvas (which also smooths the
image), and the returned images are the canvas resized to the input size.

Example:
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
    ...                             torch.nn.Flatten())
    >>> units = torch.arange(8)
    >>> objective = lambda x, idx: model(x)[torch.arange(len(idx)), units[idx]]
    >>> images = visualize(objective, 8, (3, 32, 32), steps=16, progress=False)
    >>> images.shape
    torch.Size([8, 3, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from repwidgets._progress import progress_counter

__all__ = [
    "COLOR_CORRELATION_SQRT",
    "FourierImage",
    "Transforms",
    "config_dict",
    "estimate_batch_size",
    "fourier_scale",
    "random_affine",
    "visualize",
]

#: Square root of the colour correlation of natural RGB images (columns: decorrelated
#: components). Mixing decorrelated channels with it gives natural colour statistics.
COLOR_CORRELATION_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))

Objective = Callable[[Tensor, Tensor], Tensor]


def color_matrix(device=None, dtype=torch.float32) -> Tensor:
    """The colour mixing matrix [3, 3], scaled so that its largest column has norm 1."""
    m = torch.tensor(COLOR_CORRELATION_SQRT, dtype=dtype, device=device)
    return m / m.norm(dim=0).max()


def fourier_scale(height: int, width: int, decay: float = 0.75, device=None) -> Tensor:
    """Per-frequency scale ``1 / max(f, 1/max(h, w))**decay`` of an rfft2 grid, [h, w//2+1]."""
    fy = torch.fft.fftfreq(height, device=device)[:, None]
    fx = torch.fft.rfftfreq(width, device=device)[None, :]
    freq = torch.sqrt(fx * fx + fy * fy)
    return freq.clamp(min=1.0 / max(height, width)).pow(-decay)


class FourierImage:
    """A batch of images parametrised by scaled Fourier coefficients.

    Args:
        n: number of images.
        channels, height, width: image size.
        decay: spectrum decay exponent (0 gives white-noise pixels; about 0.75-1 is
            natural-image-like).
        sd: standard deviation of the initial coefficients.
        decorrelate: mix 3-channel images with :data:`COLOR_CORRELATION_SQRT`.
        generator: CPU ``torch.Generator`` for the initial coefficients (reproducible on
            every device).
        device: where the parameters live.
        init: initial coefficients [n, C, H, W//2+1, 2] (overrides ``sd``/``generator``).

    ``params`` is the leaf tensor [n, C, H, W//2+1, 2] (real and imaginary parts) to
    optimise; :meth:`render` gives images [n, C, H, W] in [0, 1].
    """

    def __init__(
        self,
        n: int,
        channels: int,
        height: int,
        width: int,
        decay: float = 0.75,
        sd: float = 0.01,
        decorrelate: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        init: Tensor | None = None,
    ) -> None:
        self.shape = (channels, height, width)
        if init is None:
            init = torch.randn(n, channels, height, width // 2 + 1, 2, generator=generator) * sd
        elif init.shape != (n, channels, height, width // 2 + 1, 2):
            raise ValueError(
                f"init must have shape {(n, channels, height, width // 2 + 1, 2)}, "
                f"got {tuple(init.shape)}."
            )
        self.params = init.to(device).requires_grad_(True)
        self.scale = fourier_scale(height, width, decay, device=self.params.device)
        self.mix = color_matrix(self.params.device) if decorrelate and channels == 3 else None

    def render(self, params: Tensor | None = None) -> Tensor:
        """Images [n, C, H, W] in [0, 1] from ``params`` (default: the current ones)."""
        p = self.params if params is None else params
        c, h, w = self.shape
        spectrum = torch.view_as_complex(p.contiguous()) * self.scale
        img = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho") / 4.0
        if self.mix is not None:
            img = torch.einsum("ij,bjhw->bihw", self.mix, img)
        return torch.sigmoid(img)


@dataclass
class Transforms:
    """Random robustness transforms, drawn independently for each batch element.

    Args:
        pad: padding added on each side before sampling, as a fraction of the image size.
        pad_mode: "reflect" (mirror the image) or "constant" (grey 0.5). Pixels are never
            wrapped around from the opposite edge.
        translate: maximum shift, as a fraction of the image size.
        scale: range of zoom factors (uniform in log-scale).
        degrees: maximum absolute rotation angle.
    """

    pad: float = 0.125
    pad_mode: str = "reflect"
    translate: float = 0.1
    scale: tuple[float, float] = (0.85, 1.2)
    degrees: float = 15.0

    def __post_init__(self) -> None:
        if self.pad_mode not in ("reflect", "constant"):
            raise ValueError(f"pad_mode must be 'reflect' or 'constant', got {self.pad_mode!r}.")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be a range 0 < low <= high, got {self.scale!r}.")
        if self.pad < 0 or self.translate < 0 or self.degrees < 0:
            raise ValueError("pad, translate and degrees must be non-negative.")


def random_affine(
    x: Tensor,
    out_size: tuple[int, int],
    generator: torch.Generator | None,
    transforms: Transforms,
    draws: Tensor | None = None,
) -> Tensor:
    """Pad, then sample a randomly translated, scaled and rotated view of each image.

    Args:
        x: images [B, C, H, W].
        out_size: (h, w) of the views; with scale 1, no shift and no rotation a view is
            exactly the (resized) unpadded image.
        generator: CPU generator for the random parameters (B x 4 numbers per call).
        transforms: ranges of the random parameters.
        draws: the uniform numbers themselves, float64 [B, 4] (scale, angle, shift x,
            shift y) instead of drawing them from ``generator``.

    Returns:
        Views [B, C, h, w]. One ``grid_sample`` call for the whole batch.
    """
    b, _c, h, w = x.shape
    pad = round(transforms.pad * max(h, w))
    if pad > 0:
        pad = min(pad, h - 1, w - 1) if transforms.pad_mode == "reflect" else pad
        kwargs = {"value": 0.5} if transforms.pad_mode == "constant" else {}
        x = F.pad(x, (pad, pad, pad, pad), mode=transforms.pad_mode, **kwargs)
    hp, wp = x.shape[-2:]
    u = draws if draws is not None else torch.rand(b, 4, generator=generator, dtype=torch.float64)
    lo, hi = transforms.scale
    scale = torch.exp(math.log(lo) + u[:, 0] * (math.log(hi) - math.log(lo)))
    angle = (2 * u[:, 1] - 1) * math.radians(transforms.degrees)
    shift = (2 * u[:, 2:] - 1) * transforms.translate * torch.tensor([w, h], dtype=torch.float64)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # Pixel-space map out -> source, expressed in each image's normalised coordinates:
    # v = Dp^-1 (R(angle)/scale Dr u + shift), Dr = diag(w/2, h/2), Dp = diag(wp/2, hp/2).
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos * w / wp
    theta[:, 0, 1] = -sin * h / wp
    theta[:, 1, 0] = sin * w / hp
    theta[:, 1, 1] = cos * h / hp
    theta[:, 0, 2] = 2 * shift[:, 0] / wp
    theta[:, 1, 2] = 2 * shift[:, 1] / hp
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [b, x.shape[1], *out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _lr_factor(step: int, steps: int, warmup: int, final: float) -> float:
    """Linear warm-up, then cosine decay from 1 to ``final``."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))


def _saved_bytes(fn: Callable[[], Tensor]) -> int:
    """Bytes of the tensors autograd saves while running ``fn`` (a backward's memory)."""
    total = 0

    def pack(t: Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return total


def estimate_batch_size(
    objective: Objective,
    image_shape: tuple[int, int, int],
    device: torch.device | str,
    memory_budget_mb: float = 1024,
    render_scale: float = 1.0,
    probe: int = 2,
) -> int:
    """How many images fit in ``memory_budget_mb`` during optimisation (at least 1).

    Runs the objective once on ``probe`` images and once on ``2 * probe`` and measures
    what autograd keeps for the backward pass: the difference is the memory of
    ``probe`` images (tensors kept whatever the batch, such as a layer's weights, cancel
    out), plus the parameters, optimiser state and rendering buffers.
    """
    c, h, w = image_shape
    rh, rw = max(h, round(h * render_scale)), max(w, round(w * render_scale))

    def saved(m: int) -> int:
        gen = torch.Generator().manual_seed(0)
        img = FourierImage(m, c, rh, rw, device=device, generator=gen)
        idx = torch.arange(m, device=img.params.device) % probe  # elements 0..probe-1

        def run() -> Tensor:
            x = random_affine(img.render(), (h, w), torch.Generator().manual_seed(0), Transforms())
            return objective(x, idx).sum()

        return _saved_bytes(run)

    per_image = max(saved(2 * probe) - saved(probe), 0) / probe
    per_image += 4 * c * rh * (rw // 2 + 1) * 2 * 4  # params, grad, two Adam moments
    per_image *= 1.5  # temporaries of the backward pass
    return max(1, int(memory_budget_mb * 2**20 // max(per_image, 1.0)))


def visualize(
    objective: Objective,
    n: int,
    image_shape: tuple[int, int, int],
    *,
    steps: int = 256,
    lr: float = 0.2,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    warmup: float = 0.05,
    final_lr: float = 0.1,
    grad_clip: float | None = 1.0,
    decay: float = 0.75,
    sd: float = 0.01,
    decorrelate: bool = True,
    transforms: Transforms | dict | bool | None = True,
    render_scale: float = 1.0,
    batch_size: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "feature visualisation",
) -> Tensor:
    """Optimise ``n`` images, image ``e`` maximising ``objective(x, idx)[e]``.

    Args:
        objective: ``f(x, idx) -> values [B]`` to maximise, where ``x`` [B, C, H, W] are
            the (transformed) images in [0, 1] of the elements ``idx`` (LongTensor [B] of
            indices into 0..n-1, on ``device``). Each value must depend only on its own
            image (models in eval mode). To minimise, return the negated value.
        n: number of images (for DORA: neurons x signals).
        image_shape: (C, H, W) of the model input.
        steps: optimisation steps.
        lr: peak learning rate (reached after ``warmup`` x steps, then cosine decay to
            ``final_lr`` x lr). Adam moves every Fourier coefficient by about ``lr`` per
            step; 0.2 reaches strong activations in one to two hundred steps at small
            input sizes (0.05, common for 224-pixel images and 512+ steps, is too slow
            there).
        optimizer: "adam" or "adamw" (``weight_decay`` applies to AdamW and Adam alike).
        grad_clip: maximum gradient norm per image (None: no clipping).
        decay, sd, decorrelate: parametrisation (see :class:`FourierImage`).
        transforms: True for the default :class:`Transforms`, a Transforms or dict of
            its fields, or False/None for none.
        render_scale: render on a canvas this much larger than the input.
        batch_size: images per batch (None: all ``n`` in one batch). Elements never
            interact and each element's start and random transforms depend on its index
            only, so this trades memory for speed and does not change the images.
        seed: seed of the initial images and the random transforms.
        device: where to optimise (default: CPU).
        progress: show a progress bar.

    Returns:
        Images [n, C, H, W] in [0, 1] on ``device``, untransformed, at the input size.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)!r}.")
    opt_name = optimizer.lower()
    if opt_name not in ("adam", "adamw"):
        raise ValueError(f"optimizer must be 'adam' or 'adamw', got {optimizer!r}.")
    if render_scale < 1:
        raise ValueError(f"render_scale must be >= 1, got {render_scale}.")
    if transforms is True:
        tf = Transforms()
    elif isinstance(transforms, dict):
        tf = Transforms(**transforms)
    elif isinstance(transforms, Transforms):
        tf = transforms
    else:
        tf = None
    device = torch.device(device) if device is not None else torch.device("cpu")
    c, h, w = (int(s) for s in image_shape)
    rh, rw = max(h, round(h * render_scale)), max(w, round(w * render_scale))
    batch_size = n if batch_size is None else max(1, min(int(batch_size), n))
    chunks = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]

    init_gen = torch.Generator().manual_seed(seed)
    # All initial coefficients are drawn up front so that they do not depend on batching.
    init = torch.randn(n, c, rh, rw // 2 + 1, 2, generator=init_gen) * sd
    out = torch.empty(n, c, h, w, device=device)
    warm = max(1, round(warmup * steps))

    bar = progress_counter(steps * len(chunks), desc, progress, unit="step")
    try:
        for start, stop in chunks:
            img = FourierImage(
                stop - start,
                c,
                rh,
                rw,
                decay,
                sd,
                decorrelate,
                device=device,
                init=init[start:stop],
            )
            idx = torch.arange(start, stop, device=device)
            opt_cls = torch.optim.AdamW if opt_name == "adamw" else torch.optim.Adam
            opt = opt_cls([img.params], lr=lr, weight_decay=weight_decay)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: _lr_factor(s, steps, warm, final_lr)
            )
            # the same stream for every chunk: step s draws [n, 4] numbers, the chunk
            # takes its own rows, so an image's transforms do not depend on batching
            gen = torch.Generator().manual_seed(seed * 1_000_003 + 1)
            for _step in range(steps):
                opt.zero_grad(set_to_none=True)
                x = img.render()
                if tf is not None:
                    draws = torch.rand(n, 4, generator=gen, dtype=torch.float64)[start:stop]
                    x = random_affine(x, (h, w), None, tf, draws)
                elif (rh, rw) != (h, w):
                    x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True)
                values = objective(x, idx)
                if values.shape != (stop - start,):
                    raise ValueError(
                        f"The objective must return one value per image, shape "
                        f"({stop - start},); it returned {tuple(values.shape)}."
                    )
                (-values.sum()).backward()
                if grad_clip is not None:
                    g = img.params.grad
                    norms = g.flatten(1).norm(dim=1)
                    factor = (grad_clip / (norms + 1e-12)).clamp(max=1.0)
                    g.mul_(factor.view(-1, *([1] * (g.ndim - 1))))
                opt.step()
                sched.step()
                if bar is not None:
                    bar.update(1)
            with torch.no_grad():
                final = img.render()
                if (rh, rw) != (h, w):
                    final = F.interpolate(final, size=(h, w), mode="bilinear", antialias=True)
                out[start:stop] = final
    finally:
        if bar is not None:
            bar.close()
    return out


def config_dict(transforms: Transforms | dict | bool | None) -> dict | None:
    """The fields of a transforms argument as a dict (None for no transforms): True
    gives the defaults, a dict is checked by building a :class:`Transforms` from it."""
    if transforms is True:
        return asdict(Transforms())
    if isinstance(transforms, Transforms):
        return asdict(transforms)
    if isinstance(transforms, dict):
        return asdict(Transforms(**transforms))
    return None
