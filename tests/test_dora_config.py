"""DoraConfig (repwidgets.engines.dora.config): settings, checks and round trips."""

from __future__ import annotations

import pytest

from repwidgets.engines import dora


def test_unknown_setting_names_the_close_one_and_lists_the_settings():
    with pytest.raises(TypeError, match=r"no setting 'n_signal'\. Did you mean 'n_signals'"):
        dora.analyze_activations([[1.0, 0.0], [0.0, 1.0]], n_signal=2)
    with pytest.raises(TypeError, match="Settings: n_signals, steps"):
        dora.DoraConfig().replace(stepz=3)
    with pytest.raises(TypeError, match="no setting 'stepz'"):
        dora.generate_signals(None, "x", stepz=3)


def test_bad_values_are_refused_when_the_config_is_made():
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        dora.DoraConfig(steps=0)
    with pytest.raises(ValueError, match="embedding must be one of"):
        dora.DoraConfig(embedding="tsne")
    with pytest.raises(ValueError, match="contamination must be in"):
        dora.DoraConfig(contamination=0.9)
    with pytest.raises(ValueError, match="signal_size must be at least 8"):
        dora.DoraConfig(signal_size=4)
    with pytest.raises(ValueError, match="optimizer must be 'adam' or 'adamw'"):
        dora.DoraConfig(optimizer="sgd")
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\)"):
        dora.DoraConfig(input_shape=(3, 8))
    with pytest.raises(TypeError, match="transforms must be"):
        dora.DoraConfig(transforms="yes")
    with pytest.raises(TypeError, match="config must be a DoraConfig"):
        dora.DoraConfig.resolve(3, {})


def test_config_round_trips_through_its_dict():
    from repwidgets.engines.featurevis import Transforms

    config = dora.DoraConfig(
        n_signals=2,
        input_shape=(3, 16, 16),
        transforms=Transforms(degrees=5.0),
        contamination="auto",
    )
    values = config.to_dict()
    assert values["input_shape"] == [3, 16, 16]
    assert values["transforms"]["degrees"] == 5.0 and values["transforms"]["scale"] == [0.85, 1.2]
    assert dora.DoraConfig.from_dict(values) == config
    assert dora.DoraConfig(transforms=False) == dora.DoraConfig()  # none by default
    assert dora.DoraConfig().transforms is None
    assert dora.DoraConfig(transforms=True).transforms["degrees"] == 15.0


def test_signal_shape():
    assert dora.DoraConfig().signal_shape((3, 64, 64)) == (3, 64, 64)
    assert dora.DoraConfig(signal_size=32).signal_shape((3, 64, 64)) == (3, 32, 32)
    assert dora.DoraConfig(input_shape=(1, 20, 20)).signal_shape((3, 64, 64)) == (1, 20, 20)
    with pytest.raises(ValueError, match="the s-AMS are images"):
        dora.DoraConfig().signal_shape((12, 64))
