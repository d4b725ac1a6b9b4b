"""Method configs: frozen, overridable by name, saved as a result's params."""

from __future__ import annotations

import dataclasses

import pytest

from repwidgets.config import Config


@dataclasses.dataclass(frozen=True)
class ToyConfig(Config):
    steps: int = 10
    band: tuple = (0.25, 0.75)
    name: str = "x"


def test_overrides_change_only_what_they_name():
    cfg = ToyConfig.resolve(None, {"steps": 3})
    assert cfg == ToyConfig(steps=3)
    assert ToyConfig.resolve(cfg, {"name": "y"}) == ToyConfig(steps=3, name="y")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 4


def test_unknown_setting_names_the_closest_one_and_lists_all():
    with pytest.raises(TypeError, match=r"no setting 'step'\. Did you mean 'steps'\?.*band"):
        ToyConfig.resolve(None, {"step": 3})


def test_round_trip_through_a_json_dict_keeps_tuples():
    cfg = ToyConfig(steps=2, band=(0.1, 0.9))
    data = cfg.to_dict()
    assert data == {"steps": 2, "band": [0.1, 0.9], "name": "x"}
    assert ToyConfig.from_dict(data) == cfg
    assert ToyConfig.resolve({**data, "seconds": 1.5}, {}) == cfg  # facts beside settings
    with pytest.raises(TypeError, match="no setting 'seconds'"):
        ToyConfig.from_dict({**data, "seconds": 1.5}, strict=True)


def test_a_config_of_the_wrong_type_is_refused():
    with pytest.raises(TypeError, match="config must be a ToyConfig"):
        ToyConfig.resolve(42, {})
