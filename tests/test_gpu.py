"""CUDA against the CPU on small cases: the session's activations and logits (float32,
and bf16 within the stated tolerance), and every engine's session-level call.

Marked ``gpu``: skipped without a CUDA device (see conftest). The CPU result is the
reference; a GPU session in float32 must match it to the float32 tolerance, and one in
bf16 (what "auto" picks on CUDA) to the bf16 tolerance of
:data:`repwidgets.session.PRECISION_TOLERANCE`.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import repwidgets as rw
from repwidgets.session import PRECISION_TOLERANCE

pytestmark = pytest.mark.gpu


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.fixture(scope="module")
def shapes():
    return rw.datasets.shapes(n_train=96, n_test=64, n_val=8, image_size=32, seed=0)


@pytest.fixture(scope="module")
def pair(shapes):
    """The same random SmallCNN in a CPU session and in a float32 CUDA session."""
    torch.manual_seed(0)
    model = rw.models.SmallCNN(len(shapes.class_names), widths=(8, 16, 16, 16)).eval()
    cpu = rw.Session(copy.deepcopy(model), shapes, device="cpu", batch_size=32, progress=False)
    gpu = rw.Session(
        copy.deepcopy(model),
        shapes,
        device="cuda",
        batch_size=32,
        progress=False,
        precision="float32",
    )
    return cpu, gpu


def test_auto_precision_on_cuda_is_bf16_and_the_batch_size_comes_from_free_memory(shapes):
    model = rw.models.SmallCNN(len(shapes.class_names), widths=(8, 16, 16, 16))
    sess = rw.Session(model, shapes, device="cuda", progress=False)
    assert sess.precision == "bf16"
    assert 8 <= sess.batch_size <= 1024 and sess.batch_size % 8 == 0
    with sess.autocast():
        assert sess.forward(sess.images(range(4))).dtype == torch.bfloat16


@pytest.mark.parametrize("precision", ["float32", "tf32", "bf16"])
def test_activations_and_logits_match_the_cpu_within_the_tolerance(pair, shapes, precision):
    cpu, gpu32 = pair
    gpu = rw.Session(
        copy.deepcopy(cpu.model),
        shapes,
        device="cuda",
        batch_size=16,
        progress=False,
        precision=precision,
    )
    tolerance = PRECISION_TOLERANCE[precision]
    layer = cpu.default_layer()
    for split in ("test", "train"):
        acts = gpu.activations(layer, split)
        assert acts.device.type == "cuda" and acts.dtype == torch.float32
        assert relative_error(acts, cpu.activations(layer, split)) < tolerance
        raw = gpu.activations(layer, split, pool=None)
        assert relative_error(raw, cpu.activations(layer, split, pool=None)) < tolerance
        logits = gpu.logits(split)
        assert logits.device.type == "cuda" and logits.dtype == torch.float32
        assert relative_error(logits, cpu.logits(split)) < tolerance
        assert relative_error(gpu.penultimate(split), cpu.penultimate(split)) < tolerance


def test_a_token_layer_matches_the_cpu_in_bf16():
    from own_models import tiny_vit

    vit = tiny_vit()
    g = torch.Generator().manual_seed(1)
    data = torch.rand(40, 3, 32, 32, generator=g), torch.randint(0, 4, (40,), generator=g)
    block = "encoder.layers.encoder_layer_1"
    cpu = rw.Session(copy.deepcopy(vit), data, device="cpu", progress=False)
    gpu = rw.Session(copy.deepcopy(vit), data, device="cuda", progress=False, precision="bf16")
    for pool in ("mean", "cls"):
        error = relative_error(gpu.activations(block, pool=pool), cpu.activations(block, pool=pool))
        assert error < PRECISION_TOLERANCE["bf16"]


def test_a_spilled_extraction_on_the_gpu_equals_the_cpu(pair, shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("REPWIDGETS_CACHE", str(tmp_path))
    cpu, _ = pair
    gpu = rw.Session(
        copy.deepcopy(cpu.model),
        shapes,
        device="cuda",
        batch_size=16,
        progress=False,
        precision="float32",
        memory_budget_mb=0.01,
    )
    layer = cpu.default_layer()
    raw = gpu.activations(layer, pool=None)
    assert raw.device.type == "cpu" and list(tmp_path.rglob("*.npy"))
    assert relative_error(raw, cpu.activations(layer, pool=None)) < PRECISION_TOLERANCE["float32"]


def test_invert_matches_the_cpu(pair):
    cpu, gpu = pair
    layer = cpu.default_layer()
    kw = dict(max_length=2, beam_size=3, progress=False)
    a, b = rw.invert.explain(cpu, layer, **kw), rw.invert.explain(gpu, layer, **kw)
    torch.testing.assert_close(b.auc.cpu(), a.auc.cpu(), atol=1e-4, rtol=0)
    same = sum(str(x) == str(y) for x, y in zip(a.formulas, b.formulas))
    assert same >= 0.8 * len(a.formulas)  # near-ties in AUC may pick another formula


def test_dora_matches_the_cpu(pair):
    cpu, gpu = pair
    layer = cpu.default_layer()
    kw = dict(n_signals=2, steps=3, neurons=list(range(6)), progress=False)
    a, b = rw.dora.analyze(cpu, layer, **kw), rw.dora.analyze(gpu, layer, **kw)
    assert relative_error(b.activations, a.activations) < 2e-2
    assert relative_error(b.distances, a.distances) < 5e-2


def test_concepts_match_the_cpu(pair):
    cpu, gpu = pair
    layer = cpu.default_layer()
    a = rw.concepts.discover(cpu, layer, n_components=3, progress=False)
    b = rw.concepts.discover(gpu, layer, n_components=3, progress=False)
    assert relative_error(b.singular_values, a.singular_values) < 1e-3
    cosines = (a.directions.double().cpu() * b.directions.double().cpu()).sum(dim=-1).abs()
    assert cosines[:2].min() > 0.99  # the leading directions, up to sign


def test_midrange_matches_the_cpu(pair):
    cpu, gpu = pair
    a, b = rw.midrange.select(cpu, 0), rw.midrange.select(gpu, 0)
    torch.testing.assert_close(b.values.cpu(), a.values.cpu(), atol=1e-4, rtol=1e-4)
    assert set(b.indices.tolist()) == set(a.indices.tolist())


def test_trak_matches_the_cpu():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 5, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    kw = dict(proj_dim=None, lam=1e-2, progress=False)  # exact gradients: no random projection
    a = rw.attribution.trak_scores(copy.deepcopy(model), (X, y), (X[:4], y[:4]), device="cpu", **kw)
    b = rw.attribution.trak_scores(
        copy.deepcopy(model), (X, y), (X[:4], y[:4]), device="cuda", **kw
    )
    assert relative_error(b.scores, a.scores) < 1e-3


def test_prefetched_batches_arrive_on_the_gpu_in_order():
    from repwidgets.datasets.batches import batch_loader, prefetched

    X = torch.arange(40 * 3, dtype=torch.float32).view(40, 3)
    dataset = torch.utils.data.TensorDataset(X, torch.arange(40))
    device = torch.device("cuda")
    loader = batch_loader(dataset, 16, device)
    assert loader.pin_memory
    got = list(prefetched(loader, device=device))
    assert all(x.device.type == "cuda" and y.device.type == "cuda" for x, y in got)
    torch.testing.assert_close(torch.cat([x for x, _ in got]).cpu(), X)
    torch.testing.assert_close(torch.cat([y for _, y in got]).cpu(), torch.arange(40))
