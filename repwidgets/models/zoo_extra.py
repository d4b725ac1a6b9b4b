"""A registry of trained models of several architectures, each with its own artifact.

Every method's check is meant to hold beyond the demo :class:`SmallCNN`. The registry
names a model builder, the shapes data it is trained on (another artifact and spurious
class for each), its training settings and the layers each method looks at by default.
Models are trained once per (name, seed) and cached beside the demo checkpoints,
keyed by a hash of the data, model and training configuration, and read back with
``torch.load(weights_only=True)``.

Example:
    >>> from repwidgets.models import zoo_extra
    >>> zoo_extra.names()
    ['smallcnn', 'resnet', 'vgg', 'groupnorm']
    >>> sess = zoo_extra.session("resnet")         # doctest: +SKIP
    >>> zoo_extra.entry("resnet").layers["dora"]
    'layer4'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..cache import cache_dir
from ..datasets.bundle import DataBundle
from . import zoo
from .architectures import GroupNormNet, NarrowResNet, PlainVGG
from .cnn import SmallCNN
from .train import TrainHistory, train_model

__all__ = ["ZooEntry", "data", "ensemble", "entry", "load_or_train", "names", "session"]


@dataclass(frozen=True)
class ZooEntry:
    """One registered model: how to build, train and inspect it.

    Attributes:
        name: registry key.
        builder: ``builder(n_classes, in_channels, **model_config) -> nn.Module``.
        model_config: keyword arguments of the builder.
        data_config: keyword arguments of :func:`repwidgets.datasets.shapes`.
        train_config: keyword arguments of :func:`~repwidgets.models.train_model`.
        layers: default layer per method: ``dora`` and ``concepts`` (the last spatial
            map), ``invert`` (the pooled penultimate layer), ``probes`` (a list, for
            attribution).
        description: one line for tables.
    """

    name: str
    builder: Callable[..., nn.Module]
    model_config: dict[str, Any]
    data_config: dict[str, Any]
    train_config: dict[str, Any] = field(default_factory=lambda: dict(zoo.DEMO_TRAIN))
    layers: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def artifact(self) -> str:
        """The planted artifact of the entry's data."""
        return str(self.data_config.get("artifact", "watermark"))


def _small_cnn(n_classes: int, in_channels: int = 3, **cfg: Any) -> nn.Module:
    return SmallCNN(n_classes, in_channels=in_channels, **cfg)


_REGISTRY: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry(
            "smallcnn",
            _small_cnn,
            dict(zoo.DEMO_MODEL),
            {"artifact": "watermark", "spurious_class": 0},
            layers={
                "dora": "features.conv4",
                "concepts": "features.relu4",
                "invert": "pool",
                "probes": ["features.relu3", "features.relu4", "pool"],
            },
            description="the demo SmallCNN: 4 conv blocks, batch norm, ReLU, max pooling",
        ),
        ZooEntry(
            "resnet",
            NarrowResNet,
            {"widths": [16, 32, 64, 128], "blocks": 1},
            {"artifact": "border", "spurious_class": 1},
            {**zoo.DEMO_TRAIN, "epochs": 2},
            layers={
                "dora": "layer4",
                "concepts": "layer4",
                "invert": "pool",
                "probes": ["layer3", "layer4", "pool"],
            },
            description="narrow ResNet (torchvision BasicBlock), batch norm, ReLU, skips",
        ),
        ZooEntry(
            "vgg",
            PlainVGG,
            {
                "widths": [12, 24, 48, 96],
                "init": "he",
                "stem_stride": 2,
                "weight_standardise": True,
            },
            {"artifact": "patch", "spurious_class": 2},
            {**zoo.DEMO_TRAIN, "epochs": 2, "lr": 1.6e-3},
            layers={
                # after the GELU: the patch is lost in the negative background of the
                # convolution's pre-activation average; its detectors are here
                "dora": "features.act4_2",
                "concepts": "features.act4_2",
                "invert": "pool",
                "probes": ["features.act3_2", "features.act4_2", "pool"],
            },
            description="VGG-style, two weight-standardised convs per block, no normalisation, GELU",
        ),
        ZooEntry(
            "groupnorm",
            GroupNormNet,
            {"widths": [16, 32, 64, 128], "groups": 8, "stem_stride": 2},
            {"artifact": "watermark", "spurious_class": 3},
            {**zoo.DEMO_TRAIN, "epochs": 6, "lr": 1.2e-3},
            layers={
                "dora": "blocks.3.conv",
                "concepts": "blocks.3.act",
                "invert": "pool",
                "probes": ["blocks.2.act", "blocks.3.act", "pool"],
            },
            description="conv blocks (the first with stride 2), GroupNorm, SiLU, max pooling",
        ),
    )
}


def names() -> list[str]:
    """Registered model names, the demo model first."""
    return list(_REGISTRY)


def entry(name: str) -> ZooEntry:
    """The registry entry called ``name`` (a clear error listing the names otherwise)."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; registered: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def data(name: str, seed: int = 0, **overrides: Any) -> DataBundle:
    """The shapes data of entry ``name`` (its artifact and spurious class)."""
    from ..datasets.shapes import shapes

    return shapes(seed=seed, **{**entry(name).data_config, **overrides})


def _checkpoint_path(e: ZooEntry, bundle: DataBundle, seed: int) -> Any:
    payload = {
        "zoo_version": zoo.ZOO_VERSION,
        "arch": e.name,
        "data": bundle.config,
        "model": e.model_config,
        "train": {**e.train_config, "seed": int(seed)},
    }
    return cache_dir("models") / f"{e.name}-{bundle.name}-{zoo._key(payload)}.pt"


def _build(e: ZooEntry, bundle: DataBundle) -> nn.Module:
    return e.builder(bundle.n_classes, zoo._input_channels(bundle), **e.model_config)


def _read(e: ZooEntry, bundle: DataBundle, path) -> tuple[nn.Module, TrainHistory] | None:
    if not path.exists():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = _build(e, bundle)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), TrainHistory.from_dict(ckpt.get("history", {}))


def load_or_train(
    name: str,
    seed: int = 0,
    bundle: DataBundle | None = None,
    progress: bool = False,
    device: str | torch.device | None = "auto",
) -> tuple[nn.Module, TrainHistory]:
    """Entry ``name``'s model trained with ``seed``, from the cache when possible.

    ``bundle`` defaults to :func:`data` (seed 0); the demo entry uses the demo model's own
    cache (:func:`repwidgets.models.load_or_train`). Returns (model on CPU in eval mode,
    history).
    """
    e = entry(name)
    bundle = data(name) if bundle is None else bundle
    if e.builder is _small_cnn:
        return zoo.load_or_train(
            bundle,
            seed,
            model_config=e.model_config,
            train_config=e.train_config,
            progress=progress,
            device=device,
        )
    path = _checkpoint_path(e, bundle, seed)
    with zoo._training_lock(path):
        cached = _read(e, bundle, path)
        if cached is not None:
            return cached
        torch.manual_seed(int(seed))
        model = _build(e, bundle)
        hist = train_model(
            model, bundle, seed=int(seed), progress=progress, device=device, **e.train_config
        )
        model = model.to("cpu").eval()
        zoo._save_atomic(
            {
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "history": hist.to_dict(),
                "model_config": e.model_config,
                "train_config": {**e.train_config, "seed": int(seed)},
                "data_config": bundle.config,
            },
            path,
        )
    return model, hist


def ensemble(
    name: str, seeds: Iterable[int] = (0, 1), bundle: DataBundle | None = None, **kwargs: Any
) -> list[nn.Module]:
    """Independently trained models of entry ``name``, one per seed (each cached)."""
    bundle = data(name) if bundle is None else bundle
    return [load_or_train(name, int(s), bundle, **kwargs)[0] for s in seeds]


def session(name: str, seed: int = 0, progress: bool = False, **session_kwargs: Any):
    """A :class:`~repwidgets.session.Session` on entry ``name``'s data and trained model."""
    from ..session import Session

    bundle = data(name)
    model, _ = load_or_train(name, seed, bundle, progress=progress)
    return Session(model, bundle, progress=progress, **session_kwargs)
