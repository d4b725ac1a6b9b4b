"""The session and the engines on real architectures: torchvision's ResNet-50 and
ViT-B/16 with random weights (nothing is downloaded).

Each figure is a ratio to the raw cost of the same model on the same device, measured
in the same run:

- extraction: ``Session.activations`` end to end (data loading, hooks, pooling, cache)
  against the model's raw forward pass over the same batches, already on the device,
  at the session's precision (bf16 autocast on CUDA, float32 on the CPU);
- DORA: seconds per neuron of s-AMS signal generation against ``steps`` raw
  forward+backward passes of that neuron's ``n_signals`` images (the gradient taken
  with respect to the input, as DORA's is);
- TRAK: training samples featurised per second (per-sample gradients of every
  parameter, projected to ``proj_dim``) against the raw forward+backward throughput
  (gradients of the batch loss with respect to the parameters);
- peak memory of the extraction against the session's memory budget (CUDA: peak
  allocated device memory; CPU: the rise of the process's peak resident memory).

    python benchmarks/bench_real_models.py --quick      # CPU: 112 px, a few images
    python benchmarks/bench_real_models.py              # 224 px when CUDA is available
"""

from __future__ import annotations

import argparse
import contextlib
import re
import time
import warnings
from pathlib import Path

import torch
import torchvision
from _common import best_of, emit

import repwidgets as rw
from repwidgets.session import resolve_device

MODELS = {
    "resnet50": ("layer4", lambda size: torchvision.models.resnet50()),
    "vit_b_16": (
        "encoder.layers.encoder_layer_11",
        lambda size: torchvision.models.vit_b_16(image_size=size),
    ),
}
#: The parameters TRAK takes gradients of in the quick (CPU) run: the last block and
#: the head, as a study of a big model on a CPU would; the full run takes all of them.
LAST_BLOCK = {
    "resnet50": ["layer4.2", "fc"],
    "vit_b_16": ["encoder.layers.encoder_layer_11", "encoder.ln", "heads"],
}


def _rss_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


@contextlib.contextmanager
def peak_memory(device: torch.device, out: dict):
    """Peak memory a block adds (MiB): CUDA's allocator peak, else the process's peak RSS."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield
        torch.cuda.synchronize(device)
        out["mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kib("VmRSS")
    except OSError:
        base = None
    yield
    out["mb"] = None if base is None else (_rss_kib("VmHWM") - base) / 1024


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def extraction(model, layer: str, images, sess: rw.Session, repeats: int) -> dict:
    """Session extraction against the raw forward over the same batches."""
    device, bs = sess.device, sess.batch_size
    on_device = images.to(device)

    def raw():
        with torch.no_grad(), sess.autocast():
            for start in range(0, len(on_device), bs):
                model(on_device[start : start + bs])

    def extract():
        sess.clear_cache()
        sess.activations(layer, "test")

    raw_s = best_of(raw, repeats)
    extract_s = best_of(extract, repeats)
    memory: dict = {}
    sess.clear_cache()
    with peak_memory(device, memory):
        sess.activations(layer, "test", pool=None)
    n = len(images)
    return {
        "batch_size": bs,
        "precision": sess.precision,
        "raw_forward_images_per_s": round(n / raw_s, 2),
        "extraction_images_per_s": round(n / extract_s, 2),
        "extraction_fraction_of_raw": round(raw_s / extract_s, 3),
        "raw_extraction_peak_memory_mb": None if memory["mb"] is None else round(memory["mb"], 1),
        "raw_extraction_mb": round(
            sess.activations(layer, "test", pool=None).numel() * 4 / 2**20, 1
        ),
        "memory_budget_mb": round(sess.memory_budget / 2**20, 1),
        "spilled": sess.activations(layer, "test", pool=None).device != device,
    }


def forward_backward(model, x: torch.Tensor, wrt_input: bool) -> None:
    if wrt_input:
        x = x.detach().requires_grad_(True)
    out = model(x)
    out[:, 0].sum().backward()
    if wrt_input:
        model.zero_grad(set_to_none=True)


def dora_cost(model, layer: str, size: int, device, neurons: int, steps: int) -> dict:
    """Seconds of s-AMS per neuron against ``steps`` raw forward+backward passes."""
    n_signals = 2
    x = torch.rand(neurons * n_signals, 3, size, size, device=device)
    for p in model.parameters():
        p.requires_grad_(False)
    raw_s = best_of(lambda: forward_backward(model, x, wrt_input=True), 2)
    for p in model.parameters():
        p.requires_grad_(True)
    kw = dict(n_signals=n_signals, steps=steps, input_shape=(3, size, size), progress=False)
    dora_s = timed(
        lambda: rw.dora.generate_signals(model, layer, list(range(neurons)), device=device, **kw),
        device,
    )
    per_neuron = dora_s / neurons
    raw_per_neuron = steps * raw_s / neurons
    return {
        "neurons": neurons,
        "steps": steps,
        "n_signals": n_signals,
        "seconds_per_neuron": round(per_neuron, 3),
        "multiple_of_raw_forward_backward": round(per_neuron / raw_per_neuron, 2),
    }


def trak_cost(model, images, device, proj_dim: int, batch_size: int, grad_wrt) -> dict:
    """TRAK featurisation throughput against the raw forward+backward throughput (the
    raw backward computes the gradients of every parameter)."""
    n = len(images)
    labels = torch.arange(n) % 10
    x = images[:batch_size].to(device)
    raw_s = best_of(lambda: forward_backward(model, x, wrt_input=False), 2)
    model.zero_grad(set_to_none=True)
    trak = rw.attribution.TRAK(
        model,
        proj_dim=proj_dim,
        batch_size=batch_size,
        grad_wrt=grad_wrt,
        device=device,
        progress=False,
    )
    try:
        trak_s = timed(lambda: trak.featurize((images, labels)), device)
    finally:
        trak.close()
    raw_rate = len(x) / raw_s
    return {
        "n_train": n,
        "proj_dim": proj_dim,
        "grad_wrt": grad_wrt or "all parameters",
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "samples_per_s": round(n / trak_s, 2),
        "raw_forward_backward_samples_per_s": round(raw_rate, 2),
        "fraction_of_raw_forward_backward": round((n / trak_s) / raw_rate, 4),
    }


def main() -> None:
    warnings.filterwarnings("ignore", "There is a performance drop", UserWarning)
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (the CPU run)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    quick = args.quick or device.type != "cuda"
    size = 112 if quick else 224
    n = 16 if quick else 1024
    sizes = {
        "image_size": size,
        "n_images": n,
        "dora_neurons": 2 if quick else 16,
        "dora_steps": 2 if quick else 32,
        "trak_n": 2 if quick else 256,
        "trak_proj_dim": 64 if quick else 1024,
        "trak_batch": 2 if quick else 32,
    }
    torch.manual_seed(0)
    images = torch.rand(n, 3, size, size)
    labels = torch.arange(n) % 10
    figures: dict = {"device": str(device), "quick": quick, **sizes, "models": {}}
    for name in args.models:
        layer, build = MODELS[name]
        model = build(size).eval().to(device)
        sess = rw.Session(model, (images, labels), device=device, progress=False)
        entry = {"layer": layer, "layer_shape": list(sess.layer_shapes()[layer])}
        entry["extraction"] = extraction(model, layer, images, sess, 1 if quick else 3)
        entry["dora"] = dora_cost(
            model, layer, size, device, sizes["dora_neurons"], sizes["dora_steps"]
        )
        entry["trak"] = trak_cost(
            model,
            images[: sizes["trak_n"]],
            device,
            sizes["trak_proj_dim"],
            sizes["trak_batch"],
            LAST_BLOCK[name] if quick else None,
        )
        figures["models"][name] = entry
        sess.clear_cache()
        del sess, model
    emit("real_models", figures)


if __name__ == "__main__":
    main()
