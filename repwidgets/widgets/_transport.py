"""Binary transport shared by all widgets: arrays, image batches and lazy requests.

Arrays and images cross the wire as binary buffers, never as JSON lists or base64:

- an array becomes ``{"dtype": "float32", "shape": [n, m], "buffer": <bytes>}``
  (little-endian, C order; float64 is sent as float32, int64 as int32 and bool as
  uint8, because JavaScript typed arrays have no 64-bit integers and widgets need no
  double precision). In widget state, ipywidgets moves the bytes into a binary
  buffer and the front end receives a DataView in its place
  (``js/src/lib/codec.ts: decodeArray``).
- a batch of encoded images (PNG, JPEG, WebP) becomes one buffer with all images
  back to back plus ``{"offsets": [0, a, b, ...], "mimes": [...]}``; the front end
  turns each slice into a Blob URL without copying (``decodeImageBatch``).

Lazy requests: the front end sends custom messages
``{"type": "fetch", "request_id": "...", "keys": [...]}``; a :class:`RequestRouter`
attached to the widget calls the registered handler and answers with
``widget.send({"type": ..., "request_id": ..., "ok": True, ...}, buffers=[...])``
(``ok: False`` and an ``error`` message when the handler raised). Every router also
answers ``{"type": "ping"}``: the kernel handles messages in the order they came, so
a ping answered before an earlier request tells the front end that the request was
lost (say, the kernel was interrupted while handling it) and must be sent again;
requests are never given up for taking long (``js/src/lib/rpc.ts``).

Example:
    >>> import numpy as np
    >>> meta = encode_array(np.arange(6, dtype=np.int64).reshape(2, 3))
    >>> meta["dtype"], meta["shape"]
    ('int32', [2, 3])
    >>> decode_array(meta["buffer"], meta["dtype"], meta["shape"]).tolist()
    [[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger("repwidgets.widgets")

#: dtypes the front end decodes (js/src/lib/codec.ts), all little-endian.
WIRE_DTYPES = ("float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32")

_INT32 = np.iinfo(np.int32)
_UINT32 = np.iinfo(np.uint32)

ImageKey = Hashable
ImageSource = Callable[[list], Sequence[bytes]]


def to_numpy(arr: Any) -> np.ndarray:
    """A numpy array from a numpy array, a torch tensor (any device) or a nested list."""
    if isinstance(arr, np.ndarray):
        return arr
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(arr, torch.Tensor):
        arr = arr.detach()
        if arr.dtype == torch.bfloat16:
            arr = arr.float()
        return arr.cpu().numpy()
    try:
        return np.asarray(arr)
    except Exception as exc:
        raise TypeError(
            f"Cannot send a {type(arr).__name__} as an array; pass a numpy array, a torch "
            "tensor or a list of numbers."
        ) from exc


def wire_array(arr: Any) -> np.ndarray:
    """Convert ``arr`` to the contiguous little-endian array that goes on the wire.

    float64/float16 -> float32, int64 -> int32, uint64 -> uint32, bool -> uint8.
    Integers that do not fit in 32 bits raise a ValueError rather than wrap around.
    """
    a = to_numpy(arr)
    kind = a.dtype.kind
    if kind == "b":
        a = a.astype(np.uint8)
    elif kind == "f":
        if a.dtype != np.float32 or a.dtype.byteorder == ">":
            a = a.astype("<f4")
    elif kind == "i":
        if a.dtype.itemsize > 4:
            if a.size and (a.min() < _INT32.min or a.max() > _INT32.max):
                raise ValueError(
                    f"Integer values from {a.min()} to {a.max()} do not fit in int32, which is "
                    "the widest integer the browser side reads. Convert them to float first."
                )
            a = a.astype("<i4")
    elif kind == "u":
        if a.dtype.itemsize > 4:
            if a.size and a.max() > _UINT32.max:
                raise ValueError(
                    f"Integer values up to {a.max()} do not fit in uint32, which is the widest "
                    "unsigned integer the browser side reads. Convert them to float first."
                )
            a = a.astype("<u4")
    else:
        raise TypeError(
            f"Cannot send an array of dtype {a.dtype}: only numbers and booleans can be "
            "sent as binary arrays."
        )
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False):
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a)


def encode_array(arr: Any) -> dict:
    """Encode an array as ``{"buffer": bytes, "dtype": str, "shape": list[int]}``.

    Args:
        arr: numpy array, torch tensor (any device) or nested list of numbers/bools.

    Returns:
        A dict to put in widget state or a message; its ``buffer`` travels as binary.

    Example:
        >>> encode_array([True, False])["dtype"]
        'uint8'
    """
    a = wire_array(arr)
    return {"buffer": a.tobytes(), "dtype": a.dtype.name, "shape": [int(s) for s in a.shape]}


def decode_array(buffer: bytes | memoryview, dtype: str, shape: Sequence[int]) -> np.ndarray:
    """The inverse of :func:`encode_array` (for arrays coming back from the front end).

    Example:
        >>> m = encode_array(np.eye(2))
        >>> decode_array(m["buffer"], m["dtype"], m["shape"]).dtype
        dtype('float32')
    """
    if dtype not in WIRE_DTYPES:
        raise ValueError(f"Unknown wire dtype {dtype!r}; expected one of {', '.join(WIRE_DTYPES)}.")
    dt = np.dtype(dtype).newbyteorder("<")
    expected = math.prod(int(s) for s in shape) * dt.itemsize
    data = bytes(buffer) if not isinstance(buffer, bytes) else buffer
    if len(data) != expected:
        raise ValueError(
            f"An array of dtype {dtype} and shape {list(shape)} needs {expected} bytes, "
            f"got {len(data)}."
        )
    return (
        np.frombuffer(data, dtype=dt).reshape([int(s) for s in shape]).astype(dt.newbyteorder("="))
    )


# --- images ------------------------------------------------------------------------------

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def sniff_mime(data: bytes) -> str:
    """The MIME type of encoded image bytes, from their first bytes.

    Unknown formats give ``application/octet-stream`` (the browser will not show them).
    """
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return "application/octet-stream"


def encode_image_batch(images: Sequence[bytes]) -> tuple[dict, bytes]:
    """Pack encoded images into one buffer.

    Returns:
        ``(meta, buffer)``: ``meta = {"offsets": [0, ..., len(buffer)], "mimes": [...]}``
        with ``len(offsets) == len(images) + 1``; image ``i`` is
        ``buffer[offsets[i]:offsets[i + 1]]``.

    Example:
        >>> meta, buf = encode_image_batch([b"\\x89PNG\\r\\n\\x1a\\nAB", b"\\xff\\xd8\\xffC"])
        >>> meta["offsets"], meta["mimes"]
        ([0, 10, 14], ['image/png', 'image/jpeg'])
    """
    offsets = [0]
    mimes = []
    for i, img in enumerate(images):
        if isinstance(img, (bytearray, memoryview)):
            img = bytes(img)
        if not isinstance(img, bytes):
            raise TypeError(
                f"Image {i} is a {type(img).__name__}, not encoded bytes. Image sources must "
                "return PNG/JPEG/WebP bytes (e.g. from Session.thumbnails)."
            )
        offsets.append(offsets[-1] + len(img))
        mimes.append(sniff_mime(img))
    return {"offsets": offsets, "mimes": mimes}, b"".join(bytes(i) for i in images)


def decode_image_batch(meta: Mapping, buffer: bytes | memoryview) -> list[bytes]:
    """The inverse of :func:`encode_image_batch`."""
    data = bytes(buffer)
    offsets = list(meta["offsets"])
    if offsets[-1] != len(data):
        raise ValueError(f"Offsets end at {offsets[-1]} but the buffer has {len(data)} bytes.")
    return [data[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def as_image_source(source: ImageSource | Mapping) -> ImageSource:
    """Normalise an image source: a callable ``keys -> list[bytes]`` or a mapping key -> bytes."""
    if isinstance(source, Mapping):
        mapping = source

        def from_mapping(keys: list) -> list[bytes]:
            missing = [k for k in keys if k not in mapping]
            if missing:
                raise KeyError(f"No image for key(s) {missing[:10]} in the image mapping.")
            return [mapping[k] for k in keys]

        return from_mapping
    if not callable(source):
        raise TypeError(
            f"image_source must be a callable keys -> list of encoded images, or a dict "
            f"key -> bytes; got {type(source).__name__}."
        )
    return source


def load_images(source: ImageSource, keys: list) -> list[bytes]:
    """Call an image source and check that it returned one encoded image per key."""
    images = list(source(list(keys)))
    if len(images) != len(keys):
        raise ValueError(
            f"The image source returned {len(images)} images for {len(keys)} keys; it must "
            "return exactly one encoded image per key, in order."
        )
    return images


# --- request routing ------------------------------------------------------------------------

Handler = Callable[[dict, list], tuple[dict, list]]

#: The request type that asks the kernel only whether it got this far.
PING = "ping"


class RequestRouter:
    """Answers the front end's custom requests ``{"type", "request_id", ...}``.

    Register one handler per message type; a handler takes ``(content, buffers)`` and
    returns ``(reply_fields, reply_buffers)``. The reply is sent with the same
    ``type`` and ``request_id`` and ``ok: True``; an exception becomes
    ``{"ok": False, "error": "<TypeName>: <message>"}`` so the front end can show it.

    Example:
        >>> router = RequestRouter(widget)                                  # doctest: +SKIP
        >>> router.register("echo", lambda content, buffers: ({"x": content["x"]}, []))  # doctest: +SKIP
    """

    def __init__(self, widget: Any) -> None:
        self.widget = widget
        self.handlers: dict[str, Handler] = {}
        self.requests = 0
        self.bytes_sent = 0
        self.last_error: str | None = None
        self.register(PING, lambda _content, _buffers: ({}, []))
        widget.on_msg(self._on_msg)

    def register(self, msg_type: str, handler: Handler) -> None:
        self.handlers[msg_type] = handler

    def handle(self, content: Any, buffers: list | None = None) -> tuple[dict, list] | None:
        """Process one message; returns what was sent (or None for messages not ours)."""
        if not isinstance(content, dict):
            return None
        msg_type = content.get("type")
        request_id = content.get("request_id")
        if msg_type not in self.handlers or request_id is None:
            return None
        self.requests += 1
        try:
            fields, out_buffers = self.handlers[msg_type](content, list(buffers or []))
            reply = {**fields, "type": msg_type, "request_id": request_id, "ok": True}
        except Exception as exc:  # reported to the front end, not raised into the kernel
            message = f"{type(exc).__name__}: {exc}"
            logger.warning("repwidgets: %s request failed: %s", msg_type, message)
            self.last_error = message
            reply = {"type": msg_type, "request_id": request_id, "ok": False, "error": message}
            out_buffers = []
        out_buffers = [bytes(b) if not isinstance(b, bytes) else b for b in out_buffers]
        self.bytes_sent += sum(len(b) for b in out_buffers)
        self.widget.send(reply, buffers=out_buffers)
        return reply, out_buffers

    def _on_msg(self, _widget: Any, content: Any, buffers: list) -> None:
        self.handle(content, buffers)


def image_fetch_handler(source: ImageSource, max_keys: int = 512) -> Handler:
    """A ``fetch`` handler: ``{"keys": [...]}`` -> the images as one batch buffer."""

    def handler(content: dict, _buffers: list) -> tuple[dict, list]:
        keys = content.get("keys")
        if not isinstance(keys, list):
            raise TypeError("fetch request needs a list of 'keys'.")
        if len(keys) > max_keys:
            raise ValueError(f"fetch request for {len(keys)} keys; at most {max_keys} per batch.")
        meta, buffer = encode_image_batch(load_images(source, keys))
        return {"keys": keys, **meta}, [buffer]

    return handler


def json_safe(value: Any) -> Any:
    """Make numbers JSON-safe for the browser: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- front-end bundles -----------------------------------------------------------------------

STATIC_DIR = pathlib.Path(__file__).resolve().parent.parent / "static"


def static_esm(name: str):
    """The built ES module of widget ``name`` (repwidgets/static/<name>.js).

    When the bundle has not been built (a source checkout before ``npm run build``),
    returns a tiny module that shows how to build it instead of failing at import.
    """
    path = STATIC_DIR / f"{name}.js"
    if path.is_file():
        return path
    message = (
        f"repwidgets: the front-end bundle static/{name}.js is missing. Build it with "
        "`cd js && npm ci && npm run build` (or `make js`), then restart the kernel."
    )
    return (
        "export default { render({ el }) { const d = document.createElement('pre'); "
        f"d.textContent = {json.dumps(message)}; el.appendChild(d); }} }};"
    )


def static_css(name: str):
    """The built styles of widget ``name`` (repwidgets/static/<name>.css), or "" when unbuilt.

    Shipped as the widget's ``_css``: anywidget puts it where the widget renders (the
    page's head in Jupyter, the widget's shadow root in marimo), so the styles reach the
    widget wherever it is shown.
    """
    path = STATIC_DIR / f"{name}.css"
    return path if path.is_file() else ""
