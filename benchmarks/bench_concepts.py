"""Benchmark of concept discovery: decomposition, relevance and the whole core.

Prints one JSON object:

- ``svd``: our economy decomposition (C x C Gram matrix in float64 + eigh) against
  ``numpy.linalg.svd(X, full_matrices=False)`` on the same [n, C] float32 matrix, with
  the largest relative difference of the top singular values;
- ``relevance``: gradient x activation relevance of a layer of C channels over n samples
  against the plain forward pass and a plain forward + ``backward()`` of the same model;
- ``discover``: the whole tensor-level core (decomposition, relevance z-scores,
  clustering of 32 directions, outliers, label AUCs; no 2-D embedding);
- ``scatter``: the ConceptBrowser's frame time (rasterise every point, put the image,
  draw the overlay) at 10,000 and 100,000 points in headless Chromium (skipped, with
  the reason, when Chromium, Playwright or the JS build is missing).

Usage: python benchmarks/bench_concepts.py [--quick | --full] [--device cpu|cuda] [--no-browser]
(default n = 10,000 with C = 512 and 1,024; --full n = 50,000 with C = 512 and 2,048, the
sizes of the specification; --quick n = 2,000 with small C).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from repwidgets.engines import concepts as cd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CHROMIUM, CHROMIUM_ARGS, ROOT, emit  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _activations(n: int, C: int, seed: int = 0) -> torch.Tensor:
    """Non-negative, low-rank-plus-noise activations, like a ReLU layer's."""
    g = torch.Generator().manual_seed(seed)
    k = 24
    Z = torch.rand(n, k, generator=g) ** 3
    B = torch.rand(k, C, generator=g) * (torch.rand(k, C, generator=g) < 0.2)
    return (Z @ B + 0.1 * torch.rand(n, C, generator=g)).float()


def bench_svd(n: int, C: int, m: int, device: torch.device) -> dict:
    X = _activations(n, C)
    Xd = X.to(device)
    ours_s, (V, S, _, _) = _timed(lambda: cd.decompose(Xd, m), device, repeat=2)
    Xn = X.numpy()
    numpy_s, (_, s_np, _) = _timed(lambda: np.linalg.svd(Xn, full_matrices=False), device)
    rel = np.abs(S.cpu().numpy() - s_np[:m]) / s_np[:m]
    return {
        "n": n,
        "C": C,
        "m": m,
        "ours_s": round(ours_s, 4),
        "numpy_svd_s": round(numpy_s, 4),
        "speedup_vs_numpy": round(numpy_s / ours_s, 2),
        "max_rel_diff_singular_values": float(rel.max()),
    }


class _Net(nn.Module):
    """x [b, 16, 4, 4] -> conv 1x1 to C -> relu (the layer) -> conv 1x1 to 64 -> pool -> fc."""

    def __init__(self, C: int):
        super().__init__()
        self.conv1 = nn.Conv2d(16, C, 1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(C, 64, 1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(h).flatten(1))


def bench_relevance(n: int, C: int, device: torch.device, batch: int = 1024) -> dict:
    torch.manual_seed(0)
    model = _Net(C).to(device).eval()
    x_all = torch.rand(n, 16, 4, 4, device=device)
    batches = [x_all[i : i + batch] for i in range(0, n, batch)]

    def forward():
        with torch.no_grad():
            return [model(x).argmax(1) for x in batches]

    def forward_backward():
        for x in batches:
            model.zero_grad(set_to_none=True)
            logits = model(x)
            logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()

    def relevance():
        return cd.layer_relevance(model, model.relu1, batches, device=device, progress=False)

    fwd_s, _ = _timed(forward, device, repeat=2)
    fb_s, _ = _timed(forward_backward, device, repeat=2)
    rel_s, _ = _timed(relevance, device, repeat=2)
    return {
        "n": n,
        "C": C,
        "relevance_s": round(rel_s, 4),
        "forward_s": round(fwd_s, 4),
        "forward_backward_s": round(fb_s, 4),
        "relevance_over_forward": round(rel_s / fwd_s, 2),
        "relevance_over_forward_backward": round(rel_s / fb_s, 2),
    }


def bench_discover(n: int, C: int, m: int, device: torch.device) -> dict:
    X = _activations(n, C, seed=1).to(device)
    g = torch.Generator().manual_seed(2)
    G = torch.randn(n, C, generator=g).to(device)
    pred = torch.randint(0, 10, (n,), generator=g)
    labels = torch.rand(n, 20, generator=g) < 0.2
    secs, r = _timed(
        lambda: cd.discover_activations(
            X,
            n_components=m,
            grads=G,
            predictions=pred,
            labels=pred,
            concepts=labels,
            embedding=None,
            progress=False,
        ),
        device,
    )
    return {"n": n, "C": C, "m": m, "seconds": round(secs, 3), "concepts": r.n_concepts}


def _scatter_widget(n: int, seed: int = 0):
    from repwidgets.widgets.clusters import ConceptBrowser

    rng = np.random.default_rng(seed)
    k = 20
    centres = rng.normal(0, 8, size=(k, 2))
    member = rng.integers(-1, k, size=n)
    xy = centres[np.maximum(member, 0)] + rng.normal(0, 1.2, size=(n, 2))
    return ConceptBrowser(
        xy.astype(np.float32),
        {"concept": (member + 1, ["none", *[f"c{j}" for j in range(k)]], True)},
        membership=member,
        point_size=3,
    )


_FRAMES_JS = """async (frames) => {
  const h = document.querySelector('.rw-browser').__rw;
  const out = [];
  for (let k = 0; k < frames; k++) {
    out.push(h.draw());
    await new Promise((r) => requestAnimationFrame(r));
  }
  return out;
}"""


def bench_scatter(sizes: tuple[int, ...], frames: int = 40) -> dict:
    """Frame time of the ConceptBrowser scatter in headless Chromium (milliseconds)."""
    bundle = ROOT / "repwidgets" / "static" / "clusters.js"
    if not Path(CHROMIUM).is_file():
        return {"skipped": f"Chromium not found at {CHROMIUM}"}
    if not bundle.is_file():
        return {"skipped": "repwidgets/static/clusters.js not built (cd js && npm run build)"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "the Python package playwright is not installed"}
    from harness import Harness

    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for n in sizes:
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                Harness(page, _scatter_widget(n), bundle, mode="page", pool=[b""]).open()
                load_ms = page.evaluate("() => window.__rwT1 - window.__rwT0")
                times = np.array(page.evaluate(_FRAMES_JS, frames))
                size = page.evaluate(
                    "() => { const c = document.querySelector('canvas.rw-points');"
                    " return [c.width, c.height]; }"
                )
                rows.append(
                    {
                        "points": n,
                        "canvas_px": size,
                        "first_render_ms": round(float(load_ms), 1),
                        "frame_ms_median": round(float(np.median(times)), 2),
                        "frame_ms_p95": round(float(np.percentile(times, 95)), 2),
                        "fps_at_median": round(1000.0 / max(float(np.median(times)), 1e-3), 1),
                    }
                )
                page.close()
        finally:
            browser.close()
    return {"renderer": "canvas 2D ImageData (no WebGL)", "chromium": CHROMIUM, "sizes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    size.add_argument("--full", action="store_true", help="n = 50,000, C = 512 and 2,048")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--no-browser", action="store_true", help="skip the scatter frame time")
    args = parser.parse_args()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)

    if args.quick:
        n, channels = 2000, (64, 256)
    elif args.full:
        n, channels = 50_000, (512, 2048)
    else:
        n, channels = 10_000, (512, 1024)
    m = 32

    figures = {
        "mode": "quick" if args.quick else "full" if args.full else "default",
        "device": str(device),
        "numpy": np.__version__,
        "svd": [bench_svd(n, C, m, device) for C in channels],
        "relevance": [bench_relevance(n, C, device) for C in channels],
        "discover": bench_discover(n, channels[0], m, device),
    }
    if not args.no_browser:
        figures["scatter"] = bench_scatter((2_000,) if args.quick else (10_000, 100_000))
    emit("concepts", figures)


if __name__ == "__main__":
    main()
