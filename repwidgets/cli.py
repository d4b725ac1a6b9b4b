"""The ``repwidgets`` command: ``repwidgets demo`` runs every method on the embedded default;
``repwidgets run job.toml`` runs a job file's steps (under ``torchrun`` on several ranks)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from repwidgets.demo import METHODS


class _Clock:
    """Times named steps and prints them as they finish."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    def run(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        self.steps.append((name, seconds))
        print(f"  [{seconds:7.1f} s] {name}", flush=True)
        return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repwidgets",
        description="Explore what a trained PyTorch model's representations have learned.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo",
        help="train the default model once (cached), run the methods, write an HTML report",
        description="Run every method on the embedded default (generated shapes + small CNN).",
    )
    demo.add_argument("--report", default="report/index.html", help="where to write the report")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", ...')
    demo.add_argument("--n-train", type=int, default=None, help="training images (default 8000)")
    demo.add_argument("--n-test", type=int, default=None, help="test images (default 2000)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default model's)")
    demo.add_argument(
        "--methods",
        default="all",
        help=f"comma-separated subset of {','.join(METHODS)}, 'all' or 'none'",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    run = sub.add_parser(
        "run",
        help="run a job file's steps (extract, invert, ...), resumably; under torchrun on N ranks",
        description="Run the steps of a job file. On several processes: "
        "torchrun --nproc-per-node N -m repwidgets run job.toml",
    )
    run.add_argument("job", help="the job file (TOML)")
    return parser


def run_job_file(args: argparse.Namespace) -> int:
    from repwidgets.distributed.job import JobError
    from repwidgets.distributed.runner import run_job

    try:
        out = run_job(args.job)
    except (JobError, FileNotFoundError, ImportError) as exc:
        print(f"repwidgets run: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[repwidgets run] output: {out}", flush=True)
    return 0


def _methods(spec: str) -> list[str]:
    if spec == "all":
        return list(METHODS)
    if spec == "none":
        return []
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise SystemExit(f"Unknown method(s) {unknown}; choose from {', '.join(METHODS)}.")
    return chosen


def run_demo(args: argparse.Namespace) -> int:
    import pandas as pd

    import repwidgets as rw
    from repwidgets.cache import cache_dir
    from repwidgets.demo import add_section, run_section
    from repwidgets.demo.overview import add_data_and_model, add_examples
    from repwidgets.report import Report

    methods = _methods(args.methods)
    progress = not args.quiet
    clock = _Clock()
    print("repwidgets demo: the embedded default (generated shapes, small CNN)", flush=True)
    data_kwargs = {k: v for k, v in (("n_train", args.n_train), ("n_test", args.n_test)) if v}
    data = clock.run("generate data", rw.datasets.shapes, seed=args.seed, **data_kwargs)
    train_kwargs = {"train_config": {"epochs": args.epochs}} if args.epochs else {}
    model, history = clock.run(
        "load or train the default model",
        rw.models.load_or_train,
        data,
        seed=args.seed,
        progress=progress,
        **train_kwargs,
    )
    sess = rw.Session(model, data, device=args.device, progress=progress)
    evaluation = clock.run("evaluate", rw.models.evaluate, model, data, "test")
    conv_layers = [name for name in sess.layers() if name.startswith("features.conv")]
    clock.run("extract activations", sess.activations_many, conv_layers, "test")

    sizes = ", ".join(f"{s} {sess.n(s)}" for s in sess.splits)
    print(f"\nData: {data.name}, {sizes}; classes {', '.join(data.class_names)}")
    print(f"Artifact: {data.config.get('artifact')} in class {data.config.get('spurious_class')}")
    print(f"Device: {sess.device}; layers hooked: {', '.join(conv_layers)}")
    print(f"Test accuracy: {evaluation['accuracy']:.3f}", end="")
    if "worst_group_accuracy" in evaluation:
        print(
            f"; worst group {evaluation['worst_group']}: {evaluation['worst_group_accuracy']:.3f}"
        )
        for name, acc in evaluation["groups"].items():
            print(f"    {name:<28s} {acc:.3f}  (n={evaluation['group_counts'][name]})")
    else:
        print()
    print(f"Cache: {cache_dir()}")

    report = Report("repwidgets demo: the embedded default")
    add_data_and_model(report, data, model, history, evaluation, sizes)
    add_examples(report, sess)

    failures = []
    for method in methods:
        print(f"\n== {method}", flush=True)
        try:
            section = clock.run(method, run_section, method, sess)
        except Exception as exc:  # report every method, then fail at the end
            failures.append(method)
            print(f"  {method} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            report.add_section(method)
            report.add_text(f"This method failed: {type(exc).__name__}: {exc}")
            continue
        for line in section.get("summary_lines", []):
            print(f"  {line}")
        add_section(report, method, section, sess)

    report.add_section("Timings")
    report.add_table(
        pd.DataFrame({"step": [n for n, _ in clock.steps], "seconds": [s for _, s in clock.steps]}),
        float_format="{:.1f}",
    )
    path = report.save(args.report)
    print(f"\nReport: {Path(path).resolve()}")
    print("Timings: " + ", ".join(f"{name} {s:.1f} s" for name, s in clock.steps))
    if failures:
        print(f"Methods that failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from repwidgets import __version__

        print(__version__)
        return 0
    if args.command == "demo":
        return run_demo(args)
    if args.command == "run":
        return run_job_file(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
