"""IPython extension: ``%load_ext repwidgets``.

Loading the extension

- makes every repwidgets result (``repwidgets.results.Result``) that ends a cell
  display as its interactive widget (``result.widget()``), and
- adds the ``%repwidgets`` line magic:

  ``%repwidgets demo [seed] [--name NAME]``
      builds the ready demo session (``rw.demo_session(seed)``) and puts it in the
      notebook namespace as ``sess`` (or NAME);
  ``%repwidgets layers [NAME]``
      lists the layers of the session ``sess`` (or NAME) with their output shapes;
  ``%repwidgets explore [LAYER] [--session NAME]``
      opens the explorer (``rw.explore``) of a layer of ``sess`` (or NAME) and
      returns it, so it shows as the cell's value;
  ``%repwidgets help``
      shows this help.

Example:
    In a notebook::

        %load_ext repwidgets
        %repwidgets demo
        %repwidgets layers
        rw.invert.explain(sess, "features.conv3")   # shows the gallery widget
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from typing import Any

logger = logging.getLogger("repwidgets")

_RESULT_MODULE = "repwidgets.results"
_RESULT_CLASS = "Result"

USAGE = """\
%repwidgets demo [seed] [--name NAME]   put the demo session in the namespace as `sess` (or NAME)
%repwidgets layers [NAME]               list the session's layers with their output shapes
%repwidgets explore [LAYER] [--session NAME]   open the explorer of a layer (default layer
                                        when none is given) of `sess` (or NAME)
%repwidgets help                        show this help"""


def result_mimebundle(result: Any) -> tuple[dict, dict] | None:
    """The widget's MIME bundle for a result (None falls back to the plain repr)."""
    try:
        widget = result.widget()
    except NotImplementedError:
        return None
    except Exception as exc:  # show the plain repr rather than break display
        logger.warning(
            "repwidgets: could not build the widget for %s: %s", type(result).__name__, exc
        )
        return None
    bundle = widget._repr_mimebundle_()
    if bundle is None:
        return None
    data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
    data = dict(data)
    data["text/plain"] = repr(result)
    return data, metadata


def _parse_demo(args: list[str]) -> tuple[int, str]:
    seed, name = 0, "sess"
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("--name", "-n"):
            if not rest:
                raise ValueError("--name needs a variable name, e.g. `%repwidgets demo --name s`.")
            name = rest.pop(0)
        elif arg.startswith("--seed="):
            seed = int(arg.split("=", 1)[1])
        elif arg == "--seed":
            if not rest:
                raise ValueError("--seed needs a number, e.g. `%repwidgets demo --seed 1`.")
            seed = int(rest.pop(0))
        else:
            try:
                seed = int(arg)
            except ValueError:
                raise ValueError(
                    f"Unknown argument {arg!r} for `%repwidgets demo`. Usage:\n{USAGE}"
                ) from None
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not a valid Python variable name.")
    return seed, name


def format_layers(sess: Any) -> str:
    """A two-column text table of ``sess.layers()`` and their per-sample output shapes."""
    layers = list(sess.layers())
    try:
        shapes = dict(sess.layer_shapes())
    except Exception as exc:  # shapes need one forward pass; list names even if it fails
        logger.warning("repwidgets: could not compute layer shapes: %s", exc)
        shapes = {}
    rows = [
        (name, "x".join(str(s) for s in shapes[name]) if name in shapes else "?") for name in layers
    ]
    width = max([len("layer"), *(len(r[0]) for r in rows)])
    lines = [f"{'layer':<{width}}  shape", f"{'-' * width}  -----"]
    lines += [f"{name:<{width}}  {shape}" for name, shape in rows]
    return "\n".join(lines)


def _session_named(name: str, user_ns: dict, command: str) -> Any:
    if name not in user_ns:
        raise NameError(
            f"No session called {name!r} in the notebook. Run `%repwidgets demo` first, "
            f"or pass the variable name: `%repwidgets {command} --session my_session`."
        )
    sess = user_ns[name]
    if not hasattr(sess, "layers"):
        raise TypeError(f"{name!r} is a {type(sess).__name__}, not a repwidgets Session.")
    return sess


def _parse_explore(args: list[str]) -> tuple[str | None, str]:
    layer, name = None, "sess"
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("--session", "-s"):
            if not rest:
                raise ValueError(
                    "--session needs a variable name: `%repwidgets explore --session s`."
                )
            name = rest.pop(0)
        elif arg.startswith("-"):
            raise ValueError(f"Unknown option {arg!r} for `%repwidgets explore`. Usage:\n{USAGE}")
        elif layer is None:
            layer = arg
        else:
            raise ValueError(f"`%repwidgets explore` takes one layer; got {layer!r} and {arg!r}.")
    return layer, name


def repwidgets_magic(line: str, user_ns: dict) -> Any:
    """Run ``%repwidgets <line>`` against the namespace ``user_ns``."""
    args = shlex.split(line)
    command = args[0] if args else "help"
    if command in ("help", "-h", "--help"):
        print(USAGE)
        return None
    if command == "demo":
        seed, name = _parse_demo(args[1:])
        import repwidgets

        sess = repwidgets.demo_session(seed=seed)
        user_ns[name] = sess
        print(f"{name} = {sess!r}")
        return None
    if command == "layers":
        name = args[1] if len(args) > 1 else "sess"
        if name not in user_ns:
            raise NameError(
                f"No session called {name!r} in the notebook. Run `%repwidgets demo` first, "
                f"or pass the variable name: `%repwidgets layers my_session`."
            )
        sess = user_ns[name]
        if not hasattr(sess, "layers"):
            raise TypeError(f"{name!r} is a {type(sess).__name__}, not a repwidgets Session.")
        print(format_layers(sess))
        return None
    if command == "explore":
        layer, name = _parse_explore(args[1:])
        sess = _session_named(name, user_ns, "explore")
        from repwidgets.views.explorer import explore

        return explore(sess, layer)
    raise ValueError(f"Unknown %repwidgets command {command!r}. Usage:\n{USAGE}")


def load_ipython_extension(ipython: Any) -> None:
    """Register the Result display formatter and the ``%repwidgets`` magic."""
    formatter = ipython.display_formatter.mimebundle_formatter
    formatter.for_type_by_name(_RESULT_MODULE, _RESULT_CLASS, result_mimebundle)

    def magic(line: str) -> Any:
        return repwidgets_magic(line, ipython.user_ns)

    magic.__doc__ = __doc__
    ipython.register_magic_function(magic, magic_kind="line", magic_name="repwidgets")


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the Result display formatter (the magic stays until restart)."""
    formatter = ipython.display_formatter.mimebundle_formatter
    with contextlib.suppress(KeyError):
        formatter.pop(f"{_RESULT_MODULE}.{_RESULT_CLASS}")
    try:
        from repwidgets.results import Result
    except ImportError:  # pragma: no cover
        return
    with contextlib.suppress(KeyError):
        formatter.pop(Result)
