"""Oracle tests of the feature-visualisation optimiser (repwidgets.engines.featurevis)."""

from __future__ import annotations

import math

import pytest
import torch

from repwidgets.engines import featurevis as fv


def test_fourier_scale_is_inverse_frequency_power():
    s = fv.fourier_scale(8, 8, decay=1.0)
    assert s.shape == (8, 5)
    # f(0, 1) = 1/8 -> scale 8; f(1, 1) = sqrt(2)/8; the DC term is clamped to 1/max(h, w).
    assert s[0, 1].item() == pytest.approx(8.0)
    assert s[1, 1].item() == pytest.approx(8 / math.sqrt(2), rel=1e-6)
    assert s[0, 0].item() == pytest.approx(8.0)
    assert fv.fourier_scale(8, 8, decay=0.0).eq(1).all()


def test_render_is_orthonormal_irfft_in_unit_range():
    img = fv.FourierImage(
        3,
        3,
        16,
        16,
        decay=0.0,
        decorrelate=False,
        sd=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    x = img.render()
    assert x.shape == (3, 3, 16, 16)
    assert x.min() >= 0 and x.max() <= 1
    # Undo the sigmoid and the 1/4 factor: the pixels are an orthonormal inverse rFFT of the
    # coefficients, so the forward rFFT (orthonormal) gives the coefficients back.
    pixels = torch.logit(x.double()) * 4
    spec = torch.fft.rfft2(pixels, norm="ortho")
    target = torch.view_as_complex(img.params.detach().double())
    # Columns 0 and W/2 of a real signal's spectrum are Hermitian; compare the others.
    assert torch.allclose(spec[..., 1:-1], target[..., 1:-1], atol=1e-5)


def test_colour_decorrelation_matrix_is_normalised():
    m = fv.color_matrix()
    assert m.norm(dim=0).max().item() == pytest.approx(1.0)
    img = fv.FourierImage(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert img.mix is not None
    assert fv.FourierImage(1, 1, 8, 8).mix is None  # grey images are not mixed


def test_identity_transform_returns_the_image():
    x = torch.rand(2, 3, 20, 24)
    none = fv.Transforms(pad=0.2, translate=0.0, scale=(1.0, 1.0), degrees=0.0)
    out = fv.random_affine(x, (20, 24), torch.Generator().manual_seed(0), none)
    assert torch.allclose(out, x, atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_translation_never_wraps_pixels_around(mode):
    # A bright column on the left edge; shifting the view right by up to 25% must not make
    # it reappear on the right edge (a torch.roll jitter would).
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, :, :2] = 1.0
    tf = fv.Transforms(pad=0.25, pad_mode=mode, translate=0.25, scale=(1.0, 1.0), degrees=0.0)
    out = fv.random_affine(x, (32, 32), torch.Generator().manual_seed(1), tf)
    assert out[:, :, :, -4:].max() < 0.51  # the right edge stays dark (or grey padding)


def test_transforms_are_drawn_per_element():
    x = torch.rand(1, 3, 16, 16).repeat(6, 1, 1, 1)
    out = fv.random_affine(x, (16, 16), torch.Generator().manual_seed(0), fv.Transforms())
    diffs = (out[1:] - out[:1]).abs().flatten(1).amax(dim=1)
    assert (diffs > 1e-3).all()


def test_rotation_and_scale_ranges_are_respected():
    # A centred square: rotating by <= 15 degrees and scaling by 0.85..1.2 keeps its area
    # between 0.85^2 and 1.2^2 of the original (measured on a smooth render).
    x = torch.zeros(32, 1, 64, 64)
    x[:, :, 24:40, 24:40] = 1.0
    tf = fv.Transforms(pad=0.25, translate=0.0)
    out = fv.random_affine(x, (64, 64), torch.Generator().manual_seed(0), tf)
    area = out.sum(dim=(1, 2, 3)) / x[0].sum()
    assert area.min() > 0.85**2 - 0.05 and area.max() < 1.2**2 + 0.05
    assert area.std() > 0.01


def test_bad_transform_settings_are_rejected():
    with pytest.raises(ValueError, match="pad_mode"):
        fv.Transforms(pad_mode="wrap")
    with pytest.raises(ValueError, match="scale"):
        fv.Transforms(scale=(1.2, 0.8))


def test_lr_schedule_warms_up_then_decays():
    f = [fv._lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b - 1e-12 for a, b in zip(f[10:], f[11:]))
    assert f[-1] == pytest.approx(0.1, abs=0.01)


def _colour_objective(target: torch.Tensor):
    # value = mean of the target channel minus the mean of the others, per image
    def objective(x, idx):
        ch = x.mean(dim=(2, 3))  # [B, 3]
        t = target[idx]
        own = ch.gather(1, t[:, None]).squeeze(1)
        return own - (ch.sum(dim=1) - own) / 2

    return objective


def test_visualize_maximises_each_elements_own_objective():
    target = torch.tensor([0, 1, 2, 0])
    imgs = fv.visualize(_colour_objective(target), 4, (3, 16, 16), steps=60, progress=False)
    assert imgs.shape == (4, 3, 16, 16)
    assert imgs.min() >= 0 and imgs.max() <= 1
    means = imgs.mean(dim=(2, 3))
    assert (means.argmax(dim=1) == target).all()
    # Each image scores higher on its own objective than any of 512 random images does,
    # and higher than the images optimised for the other colours.
    rand = torch.rand(512, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for e, t in enumerate(target.tolist()):
        objective = _colour_objective(torch.full((512,), t))
        own = objective(imgs[e : e + 1], torch.zeros(1, dtype=torch.long)).item()
        assert own > objective(rand, torch.arange(512)).max().item()
        others = [i for i in range(4) if target[i] != t]
        values = objective(imgs[others], torch.zeros(len(others), dtype=torch.long))
        assert own > values.max().item()


def test_visualize_is_reproducible_and_seeded():
    obj = _colour_objective(torch.tensor([0, 1]))
    kwargs = dict(steps=8, progress=False)
    a = fv.visualize(obj, 2, (3, 12, 12), seed=3, **kwargs)
    b = fv.visualize(obj, 2, (3, 12, 12), seed=3, **kwargs)
    c = fv.visualize(obj, 2, (3, 12, 12), seed=4, **kwargs)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batching_does_not_mix_elements():
    # Without random transforms the elements are independent: batched == one at a time.
    obj = _colour_objective(torch.tensor([2, 0, 1]))
    kwargs = dict(steps=10, transforms=False, progress=False, seed=0)
    together = fv.visualize(obj, 3, (3, 10, 10), **kwargs)
    apart = fv.visualize(obj, 3, (3, 10, 10), batch_size=1, **kwargs)
    assert torch.allclose(together, apart, atol=1e-5)


def test_batching_does_not_change_the_random_transforms():
    # Each element's transforms depend on its index only: chunks of any size give the
    # images of one batch, and the seed still matters.
    obj = _colour_objective(torch.tensor([2, 0, 1, 1, 0]))
    kwargs = dict(steps=10, progress=False, seed=5)
    together = fv.visualize(obj, 5, (3, 10, 10), **kwargs)
    for batch_size in (1, 2, 3):
        apart = fv.visualize(obj, 5, (3, 10, 10), batch_size=batch_size, **kwargs)
        assert torch.allclose(together, apart, atol=1e-5)
    other = fv.visualize(obj, 5, (3, 10, 10), **{**kwargs, "seed": 6})
    assert (together - other).abs().max() > 1e-3


def test_estimate_batch_size_ignores_what_every_batch_keeps():
    # A big weight saved for the backward pass is not memory per image.
    layer = torch.nn.Linear(3 * 8 * 8, 4096)
    obj = lambda x, idx: layer(x.flatten(1))[:, 0]  # noqa: E731
    size = fv.estimate_batch_size(obj, (3, 8, 8), "cpu", memory_budget_mb=4)
    per_image = 4 * 2**20 / size
    assert per_image < 3 * 4 * (3 * 8 * 8 + 4096 + 3 * 8 * 5 * 2 * 4)  # not the 3 MiB weight


def test_render_scale_and_adamw_give_input_sized_images():
    obj = _colour_objective(torch.tensor([1]))
    out = fv.visualize(
        obj,
        1,
        (3, 16, 16),
        steps=4,
        render_scale=1.5,
        optimizer="adamw",
        weight_decay=1e-3,
        progress=False,
    )
    assert out.shape == (1, 3, 16, 16)


def test_visualize_rejects_bad_input():
    obj = _colour_objective(torch.tensor([0]))
    with pytest.raises(ValueError, match="optimizer"):
        fv.visualize(obj, 1, (3, 8, 8), steps=1, optimizer="sgd", progress=False)
    with pytest.raises(ValueError, match="image_shape"):
        fv.visualize(obj, 1, (8, 8), steps=1, progress=False)
    with pytest.raises(ValueError, match="one value per image"):
        fv.visualize(lambda x, i: x.mean(), 2, (3, 8, 8), steps=1, progress=False)


def test_estimate_batch_size_scales_with_budget():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def obj(x, idx):
        return conv(x).mean(dim=(1, 2, 3))

    small = fv.estimate_batch_size(obj, (3, 32, 32), "cpu", memory_budget_mb=4)
    large = fv.estimate_batch_size(obj, (3, 32, 32), "cpu", memory_budget_mb=64)
    assert 1 <= small < large
    assert large == pytest.approx(16 * small, rel=0.2)
