"""Activation extraction throughput against the model's raw forward throughput.

The raw figure runs the model alone on batches already in memory; the session figure
is ``Session.activations`` end to end (data access, hooks, pooling, caching) on the same
images. The ratio says how close extraction runs to the limit.

    python benchmarks/bench_session.py [--n 4000] [--batch-size 256|auto] [--precision auto]
"""

from __future__ import annotations

import argparse

import torch
from _common import best_of, emit

import repwidgets as rw


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--batch-size", default="256", help="an int, or 'auto'")
    parser.add_argument("--layer", default="features.conv3")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "tf32", "bf16"])
    args = parser.parse_args()
    batch_size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)

    data = rw.datasets.shapes(n_test=args.n, seed=0)
    model = rw.models.demo_model(data, seed=0, progress=False)
    sess = rw.Session(model, data, batch_size=batch_size, progress=False, precision=args.precision)
    args.batch_size = sess.batch_size
    images = torch.cat(
        [sess.images(range(i, min(i + 1000, args.n))) for i in range(0, args.n, 1000)]
    )
    images = images.to(sess.device)

    def raw_forward():
        with torch.no_grad(), sess.autocast():
            for start in range(0, args.n, args.batch_size):
                model(images[start : start + args.batch_size])

    def extraction():
        sess.clear_cache()
        sess.activations(args.layer, "test")

    def data_only():
        for start in range(0, args.n, 1000):
            sess.images(range(start, min(start + 1000, args.n)))

    raw = best_of(raw_forward)
    extract = best_of(extraction)
    render = best_of(data_only, repeats=1)
    emit(
        "session_extraction",
        {
            "n_images": args.n,
            "layer": args.layer,
            "device": str(sess.device),
            "precision": sess.precision,
            "batch_size": sess.batch_size,
            "raw_forward_images_per_s": round(args.n / raw, 1),
            "extraction_images_per_s": round(args.n / extract, 1),
            "extraction_fraction_of_raw": round(raw / extract, 3),
            "image_generation_images_per_s": round(args.n / render, 1),
        },
    )


if __name__ == "__main__":
    main()
