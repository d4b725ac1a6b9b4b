"""The long loops report their progress through the one helper, with the right totals."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import repwidgets._progress as progress_module
from repwidgets._progress import progress_bar, progress_counter


class RecordedBar:
    """Stands in for tqdm: keeps the total, the description and every update."""

    made: list[RecordedBar] = []

    def __init__(self, iterable=None, total=None, desc="", disable=False, **_kwargs):
        self.iterable, self.total, self.desc, self.disable = iterable, total, desc, disable
        self.updates: list[int] = []
        self.closed = False
        RecordedBar.made.append(self)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.updates.append(1)

    def update(self, k=1):
        self.updates.append(int(k))

    def set_postfix(self, **_kwargs):
        pass

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    @property
    def n(self) -> int:
        return sum(self.updates)


@pytest.fixture()
def bars(monkeypatch):
    RecordedBar.made = []
    monkeypatch.setattr(progress_module, "tqdm", RecordedBar)
    return RecordedBar.made


def _only(bars, prefix: str) -> RecordedBar:
    found = [b for b in bars if b.desc.startswith(prefix) and not b.disable]
    assert len(found) == 1, [b.desc for b in bars]
    return found[0]


def test_helpers_count_items_and_manual_updates(bars):
    assert list(progress_bar(range(5), total=5, desc="loop")) == list(range(5))
    with progress_counter(7, "manual") as bar:
        bar.update(3)
        bar.update(4)
    loop, manual = _only(bars, "loop"), _only(bars, "manual")
    assert (loop.total, loop.n) == (5, 5)
    assert (manual.total, manual.updates, manual.closed) == (7, [3, 4], True)
    assert list(progress_bar(range(3), enable=False)) == [0, 1, 2]
    assert len(bars) == 2  # a disabled loop makes no bar at all


def test_activation_extraction_counts_batches(bars):
    from repwidgets.session import Session

    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    X, y = torch.rand(37, 3, 8, 8), torch.arange(37) % 2
    sess = Session(model, (X, y), device="cpu", batch_size=10, progress=True)
    sess.activations("0")
    bar = _only(bars, "activations (test)")
    assert (bar.total, bar.n) == (4, 4)


def test_invert_counts_neuron_steps_across_batches(bars):
    from repwidgets.engines.invert import explain_activations

    g = torch.Generator().manual_seed(0)
    concepts = torch.rand(60, 4, generator=g) > 0.5
    acts = torch.rand(60, 5, generator=g)
    explain_activations(acts, concepts, max_length=3, beam_size=2, batch_size=2, progress=True)
    bar = _only(bars, "INVERT")
    assert bar.total == 5 * 3
    assert bar.updates == [2, 2, 2, 2, 2, 2, 1, 1, 1]  # 3 batches of neurons x 3 beam steps
    assert bar.n == bar.total and bar.closed


def test_training_counts_optimiser_steps(bars):
    from repwidgets.models.train import train_model

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    data = TensorDataset(torch.rand(20, 3, 4, 4), torch.arange(20) % 2)
    train_model(model, data, epochs=2, batch_size=8, progress=True)
    bar = _only(bars, "training")
    assert (bar.total, bar.n) == (2 * 3, 2 * 3)


def test_signal_generation_counts_steps_of_every_chunk(bars):
    from repwidgets.engines import dora

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    dora.generate_signals(
        model, "0", [0, 1, 2], n_signals=1, steps=4, input_shape=(3, 8, 8), batch_size=2
    )
    bar = _only(bars, "s-AMS")
    assert (bar.total, bar.n) == (4 * 2, 4 * 2)  # 3 images in chunks of 2: two chunks


def test_trak_featurisation_counts_batches_per_model(bars):
    from repwidgets.engines.attribution import trak_scores

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    X, y = torch.randn(50, 5), torch.arange(50) % 3
    trak_scores(model, (X, y), (X[:3], y[:3]), proj_dim=8, batch_size=16, progress=True)
    bar = _only(bars, "TRAK features")
    assert (bar.total, bar.n) == (4, 4)


class Unlabelled(torch.utils.data.Dataset):
    """A dataset without a ``targets`` attribute: its labels are read item by item,
    behind a bar once it has more than 2,000 items."""

    def __len__(self) -> int:
        return 2100

    def __getitem__(self, i: int):
        return torch.zeros(3, 4, 4), i % 2


@pytest.mark.parametrize("shown", [True, False])
def test_session_label_reading_follows_the_progress_switch(bars, shown):
    from repwidgets.session import Session

    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    data = {"train": Unlabelled(), "test": Unlabelled()}
    sess = Session(model, data, device="cpu", batch_size=700, progress=shown)
    sess.targets("test")
    sess.activations("0")
    drawn = sorted(b.desc for b in bars if not b.disable)
    if shown:
        assert drawn == ["activations (test)", "reading test labels", "reading train labels"]
    else:
        assert drawn == []


def test_progress_false_prints_nothing(capfd):
    from repwidgets.session import Session

    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    sess = Session(model, {"test": Unlabelled()}, device="cpu", batch_size=700, progress=False)
    sess.targets("test")
    sess.activations("0")
    with progress_counter(5, "manual", enable=False) as bar:
        bar.update(5)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_plain_bars_write_no_escape_sequences(capfd):
    """Outside a notebook, nested bars in a redirected stream stay on one line:
    no cursor-movement escapes, only text and carriage returns."""
    assert not progress_module.in_notebook()
    for _ in progress_bar(range(2), total=2, desc="outer"):
        with progress_counter(3, "inner") as bar:
            bar.update(3)
    _out, err = capfd.readouterr()
    assert "outer" in err and "inner" in err
    assert "\x1b" not in err


def test_notebook_gets_the_notebook_bar(monkeypatch):
    monkeypatch.setattr(progress_module, "in_notebook", lambda: True)
    monkeypatch.setattr(progress_module, "notebook_tqdm", RecordedBar)
    RecordedBar.made = []
    assert list(progress_bar(range(3), desc="nb")) == [0, 1, 2]
    assert [b.desc for b in RecordedBar.made] == ["nb"]
    monkeypatch.setattr(progress_module, "in_notebook", lambda: False)
    with progress_counter(2, "plain") as bar:
        assert isinstance(bar, progress_module.plain_tqdm)
