"""Loading a checkpoint saved elsewhere: the layouts people save, and clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import repwidgets as rw
from repwidgets.models import CheckpointError, load_weights


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


@pytest.fixture()
def trained():
    torch.manual_seed(1)
    return net()


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {"model_state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["plain", "state_dict", "model", "ddp_nested", "dataparallel"],
)
def test_the_saved_layouts_load_the_same_weights(trained, tmp_path, wrap):
    path = tmp_path / "ck.pt"
    torch.save(wrap(trained.state_dict()), path)
    torch.manual_seed(2)
    fresh = net()
    assert not same_weights(fresh, trained)
    assert load_weights(fresh, path) is fresh
    assert same_weights(fresh, trained)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(fresh(x), trained(x))
    assert rw.models.load_weights is load_weights


def test_missing_and_unexpected_keys_are_listed(trained, tmp_path):
    sd = trained.state_dict()
    sd.pop("3.bias")
    sd["head.weight"] = torch.zeros(1)
    path = tmp_path / "ck.pt"
    torch.save(sd, path)
    with pytest.raises(
        CheckpointError,
        match=r"missing .*\(1\): 3\.bias.*not in the model .*head\.weight.*strict=False",
    ):
        load_weights(net(), path)
    fresh = net()
    load_weights(fresh, path, strict=False)
    torch.testing.assert_close(fresh[3].weight, trained[3].weight)


def test_a_shape_mismatch_is_named(trained, tmp_path):
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 7))
    path = tmp_path / "ck.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(
        CheckpointError, match=r"3\.weight \(checkpoint \(7, 144\), model \(5, 144\)\)"
    ):
        load_weights(trained, path, strict=False)


def test_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        load_weights(net(), text)
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        load_weights(net(), tmp_path / "absent.pt")
    listing = tmp_path / "list.pt"
    torch.save([1, 2, 3], listing)
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_weights(net(), listing)
    empty = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, empty)
    with pytest.raises(CheckpointError, match=r"keys epoch, lr, not a state dict"):
        load_weights(net(), empty)


class _Pickled:
    pass


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"state_dict": net().state_dict(), "extra": _Pickled()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_weights(net(), path)
