"""ArrayTrait and ArrayDict: conversion, clear errors naming the trait, and a wire
encoding identical to encode_array's in both directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets

from repwidgets.widgets._transport import decode_array, encode_array
from repwidgets.widgets.traits import ArrayDict, ArrayTrait, array_from_json, array_to_json


class Holder(traitlets.HasTraits):
    xy = ArrayTrait("float32", shape=(None, 2), finite=True)
    ids = ArrayTrait("int32", ndim=1)
    codes = ArrayTrait(("uint8", "uint16"), ndim=1, allow_none=True)
    anything = ArrayTrait()
    state = ArrayDict({"counts": ArrayTrait("float32", ndim=1)})
    maybe = ArrayDict({"a": ArrayTrait("int32")}, allow_none=True)


def test_values_are_converted_and_read_back_as_read_only_arrays():
    h = Holder(xy=[[0, 1], [2, 3]], ids=torch.arange(4), anything=np.eye(2, dtype=np.float64))
    assert h.xy.dtype == np.float32 and h.xy.shape == (2, 2)
    assert h.ids.dtype == np.int32 and h.ids.tolist() == [0, 1, 2, 3]
    assert h.anything.dtype == np.float64  # no dtype given: kept as given
    with pytest.raises(ValueError, match="read-only"):
        h.xy[0, 0] = 5.0
    source = np.zeros((3, 2), dtype=np.float32)
    h.xy = source
    source[0, 0] = 9.0  # the trait holds its own copy; the caller's array stays writable
    assert h.xy[0, 0] == 0.0
    assert h.ids.dtype == np.int32 and Holder().ids.shape == (0,)
    assert Holder().codes is None and Holder().state == {} and Holder().maybe is None


def test_codes_keep_an_accepted_dtype_and_convert_others():
    h = Holder(codes=np.array([1, 2], dtype=np.uint16))
    assert h.codes.dtype == np.uint16
    h.codes = np.array([1, 2], dtype=np.int64)
    assert h.codes.dtype == np.uint8
    h.codes = [1.0, 2.0]  # whole numbers given as floats are fine
    assert h.codes.tolist() == [1, 2]


@pytest.mark.parametrize(
    "name, value, error, message",
    [
        ("xy", [1.0, 2.0], ValueError, r"Holder.xy must have 2 dimensions \(shape \[n, 2\]\)"),
        ("xy", np.zeros((3, 3)), ValueError, r"Holder.xy must have shape \[n, 2\] \(axis 1"),
        ("xy", [[0, np.nan], [1, 1]], ValueError, r"Holder.xy has NaN or infinite .* rows \[0\]"),
        ("xy", None, ValueError, "Holder.xy must be a float32 array of shape"),
        ("ids", np.array([2**40]), ValueError, "do not fit in int32"),
        ("ids", [0.5, 1.0], ValueError, "whole numbers"),
        ("ids", np.array(["a", "b"]), TypeError, "Holder.ids must hold numbers"),
        ("codes", [[1]], ValueError, "Holder.codes must have 1 dimension"),
        ("codes", [300, -1], ValueError, "do not fit in uint8"),
        ("state", {"other": 1}, ValueError, r"Holder.state is missing the array\(s\) \['counts'\]"),
        ("state", [1, 2], TypeError, "Holder.state must be a dict with arrays"),
        ("state", {"counts": [[1.0]]}, ValueError, r"Holder.state\['counts'\] must have 1 dim"),
    ],
)
def test_bad_values_name_the_trait_and_what_it_expects(name, value, error, message):
    h = Holder()
    with pytest.raises(error, match=message) as info:
        setattr(h, name, value)
    assert isinstance(info.value, traitlets.TraitError)  # also a TraitError


def test_check_names_the_argument_for_constructors():
    trait = ArrayTrait("float32", shape=(None, 2))
    with pytest.raises(ValueError, match=r"^xy must have shape \[n, 2\]"):
        trait.check(np.zeros((4, 3)), "xy")
    assert trait.check(np.zeros((4, 2)), "xy").dtype == np.float32


@pytest.mark.parametrize(
    "value",
    [
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.linspace(0, 1, 7),
        np.array([True, False]),
        torch.arange(5, dtype=torch.int16),
        np.zeros((0, 2), dtype=np.float32),
    ],
)
def test_wire_encoding_is_encode_arrays_and_round_trips(value):
    h = Holder(anything=value)
    wire = array_to_json(h.anything)
    assert wire == encode_array(value)
    assert isinstance(wire["buffer"], bytes)
    back = array_from_json(wire)
    np.testing.assert_array_equal(back, decode_array(wire["buffer"], wire["dtype"], wire["shape"]))
    np.testing.assert_array_equal(back, np.asarray(value).astype(back.dtype))


def test_dict_entries_encode_arrays_and_pass_json_through():
    h = Holder(state={"counts": [1, 2, 3], "range": [0.0, 1.0]})
    trait = Holder.class_traits()["state"]
    wire = trait.metadata["to_json"](h.state, None)
    assert wire == {
        "counts": encode_array(np.array([1, 2, 3], dtype=np.float32)),
        "range": [0.0, 1.0],
    }
    back = trait.metadata["from_json"](wire, None)
    assert back["range"] == [0.0, 1.0] and back["counts"].tolist() == [1.0, 2.0, 3.0]
    h.state = back  # what comes back validates again
    assert h.state["counts"].dtype == np.float32
    assert trait.metadata["to_json"](None, None) is None and array_to_json(None) is None


def test_a_widget_sends_the_trait_as_binary():
    from repwidgets.widgets import DistanceHeatmap

    hm = DistanceHeatmap(np.array([[0.0, 1.0], [1.0, 0.0]]), ids=[7, 9])
    assert hm.neuron_ids.tolist() == [7, 9] and hm.neuron_ids.dtype == np.int32
    state = hm.get_state(["neuron_ids", "values"])
    assert state["neuron_ids"] == encode_array(np.array([7, 9]))
    assert isinstance(state["values"]["values"]["buffer"], bytes)
    with pytest.raises(traitlets.TraitError, match="DistanceHeatmap.permutation"):
        hm.permutation = [[0, 1]]


def test_choice_refuses_other_strings_in_the_constructor_and_later():
    from repwidgets.widgets import ConceptBrowser, DistanceHeatmap
    from repwidgets.widgets.traits import Choice

    class Map(traitlets.HasTraits):
        colormap = Choice(("viridis", "magma"))

    assert Map().colormap == "viridis" and Map(colormap="magma").colormap == "magma"
    with pytest.raises(
        ValueError, match=r"colormap must be one of \('viridis', 'magma'\); got 'x'"
    ):
        Map(colormap="x")
    D = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(traitlets.TraitError, match="colormap must be one of"):
        DistanceHeatmap(D, colormap="jet")
    hm = DistanceHeatmap(D, order="none")
    assert hm.permutation.tolist() == [0, 1]
    b = ConceptBrowser(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="mode must be one of"):
        b.mode = "zoom"
    with pytest.raises(ValueError, match="mode must be one of"):
        ConceptBrowser(np.zeros((3, 2)), mode="zoom")
