"""The binary transport: array codec, image batches and request routing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from repwidgets.widgets._transport import (
    RequestRouter,
    as_image_source,
    decode_array,
    decode_image_batch,
    encode_array,
    encode_image_batch,
    image_fetch_handler,
    json_safe,
    sniff_mime,
    static_esm,
)


def png_bytes(value: int, size: int = 4) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (size, size), color=value).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("array", "wire"),
    [
        (np.linspace(-2, 2, 12, dtype=np.float64).reshape(3, 4), "float32"),
        (np.arange(-5, 7, dtype=np.int64).reshape(2, 2, 3), "int32"),
        (np.array([[True, False, True]]), "uint8"),
        (np.arange(10, dtype=np.uint8), "uint8"),
        (np.arange(6, dtype=np.int16).reshape(3, 2), "int16"),
        (np.arange(5, dtype=np.float16), "float32"),
        (torch.arange(12, dtype=torch.float64).reshape(4, 3) / 7, "float32"),
        (torch.tensor([[1, -2], [3, -4]], dtype=torch.int64), "int32"),
        (torch.tensor([True, False]), "uint8"),
        (np.arange(6, dtype=">i4").reshape(2, 3), "int32"),
    ],
)
def test_array_round_trip(array, wire):
    meta = encode_array(array)
    assert meta["dtype"] == wire
    expected = np.asarray(array.numpy() if isinstance(array, torch.Tensor) else array)
    assert meta["shape"] == list(expected.shape)
    assert isinstance(meta["buffer"], bytes)
    assert len(meta["buffer"]) == expected.size * np.dtype(wire).itemsize
    back = decode_array(meta["buffer"], meta["dtype"], meta["shape"])
    assert back.shape == expected.shape
    np.testing.assert_allclose(back.astype(np.float64), expected.astype(np.float64), rtol=1e-6)


def test_buffer_is_little_endian_c_order():
    a = np.array([[1, 2], [3, 258]], dtype=np.int64)[:, ::-1]  # non-contiguous view
    meta = encode_array(a)
    assert meta["buffer"] == np.array([2, 1, 258, 3], dtype="<i4").tobytes()


def test_int64_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="int32"):
        encode_array(np.array([2**40], dtype=np.int64))


def test_unsupported_dtype_is_a_type_error():
    with pytest.raises(TypeError, match="dtype"):
        encode_array(np.array(["a", "b"]))


def test_decode_checks_the_length():
    with pytest.raises(ValueError, match="needs 24 bytes"):
        decode_array(b"\0" * 20, "float32", [2, 3])


def test_sniff_mime():
    assert sniff_mime(png_bytes(3)) == "image/png"
    assert sniff_mime(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_mime(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff_mime(b"<svg onload=alert(1)>") == "application/octet-stream"


def test_image_batch_round_trip():
    images = [png_bytes(v, size=s) for v, s in [(0, 4), (128, 8), (255, 3)]]
    meta, buf = encode_image_batch(images)
    assert meta["offsets"][0] == 0 and meta["offsets"][-1] == len(buf)
    assert len(meta["offsets"]) == len(images) + 1
    assert meta["mimes"] == ["image/png"] * 3
    assert decode_image_batch(meta, buf) == images


def test_image_batch_rejects_non_bytes():
    with pytest.raises(TypeError, match="encoded bytes"):
        encode_image_batch([png_bytes(1), np.zeros((2, 2))])


class FakeWidget:
    """Records what a RequestRouter sends, like ipywidgets' Widget.send."""

    def __init__(self):
        self.sent = []
        self.callbacks = []

    def on_msg(self, cb):
        self.callbacks.append(cb)

    def send(self, content, buffers=None):
        self.sent.append((content, buffers))

    def receive(self, content, buffers=()):
        for cb in self.callbacks:
            cb(self, content, list(buffers))


def test_fetch_request_answers_with_the_right_images():
    library = {k: png_bytes(k * 20, size=4 + k) for k in range(6)}
    calls = []

    def source(keys):
        calls.append(list(keys))
        return [library[k] for k in keys]

    w = FakeWidget()
    router = RequestRouter(w)
    router.register("fetch", image_fetch_handler(source))
    w.receive({"type": "fetch", "request_id": "v1:7", "keys": [4, 1, 5]})
    assert calls == [[4, 1, 5]]
    ((content, buffers),) = w.sent
    assert content["ok"] is True and content["request_id"] == "v1:7" and content["type"] == "fetch"
    assert content["keys"] == [4, 1, 5]
    assert len(buffers) == 1
    assert decode_image_batch(content, buffers[0]) == [library[4], library[1], library[5]]


def test_failing_source_becomes_an_error_reply():
    w = FakeWidget()
    router = RequestRouter(w)
    router.register("fetch", image_fetch_handler(as_image_source({1: png_bytes(1)})))
    w.receive({"type": "fetch", "request_id": "a", "keys": [1, 99]})
    ((content, buffers),) = w.sent
    assert content["ok"] is False and "99" in content["error"] and "KeyError" in content["error"]
    assert buffers == []
    assert router.last_error == content["error"]


def test_source_returning_wrong_count_is_reported():
    w = FakeWidget()
    RequestRouter(w).register("fetch", image_fetch_handler(lambda keys: [png_bytes(0)]))
    w.receive({"type": "fetch", "request_id": "a", "keys": [1, 2]})
    assert w.sent[0][0]["ok"] is False
    assert "returned 1 images for 2 keys" in w.sent[0][0]["error"]


def test_router_ignores_foreign_messages():
    w = FakeWidget()
    RequestRouter(w).register("fetch", image_fetch_handler(lambda keys: []))
    w.receive({"type": "something-else", "request_id": "a"})
    w.receive({"type": "fetch"})  # no request id
    w.receive("not a dict")
    assert w.sent == []


def test_router_answers_pings_in_order_with_requests():
    w = FakeWidget()
    RequestRouter(w).register(
        "fetch", image_fetch_handler(lambda keys: [png_bytes(k) for k in keys])
    )
    w.receive({"type": "fetch", "request_id": "v:0", "keys": [3]})
    w.receive({"type": "ping", "request_id": "v:1"})
    assert [(c["type"], c["request_id"], c["ok"]) for c, _ in w.sent] == [
        ("fetch", "v:0", True),
        ("ping", "v:1", True),
    ]
    assert w.sent[1][1] == []


def test_json_safe_replaces_non_finite_numbers():
    out = json_safe({"a": float("nan"), "b": [np.float32(1.5), float("inf")], "c": np.int64(3)})
    assert out == {"a": None, "b": [1.5, None], "c": 3}
    assert isinstance(out["c"], int)


def test_static_esm_points_at_the_bundle_or_explains():
    esm = static_esm("no-such-widget")
    assert isinstance(esm, str) and "npm run build" in esm and "textContent" in esm
