"""TRAK's features: per-sample gradients of an output function, flattened and projected.

``phi(z) = P^T grad_theta f(z)`` for every sample z of a batch at once (torch.func:
``grad`` under ``vmap``), with ``P`` a seeded Johnson-Lindenstrauss matrix
(:class:`~repwidgets.engines.projection.JLProjection`) or no projection at all. The
gradients of each parameter tensor go to the projection as they are (never
concatenated into one ``[B, D]`` copy), and the projection multiplies them in steps
bounded by its ``chunk_mb``. A model that returns a dict, tuple or object is read
through ``output=`` (:func:`repwidgets.session.select_output`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from repwidgets.engines.attribution.outputs import OutputFunction
from repwidgets.engines.projection import JLProjection
from repwidgets.session import select_output

__all__ = ["Featurizer", "GradWrt", "select_params"]

#: Which parameters to differentiate: None (all), a name prefix, prefixes, or a predicate.
GradWrt = str | Sequence[str] | Callable[[str], bool] | None


def select_params(model: nn.Module, grad_wrt: GradWrt) -> list[str]:
    """Names of the parameters that ``grad_wrt`` selects (all of them for None).

    A name is selected when it equals a prefix or starts with ``prefix + "."``.
    """
    names = [n for n, _ in model.named_parameters()]
    if grad_wrt is None:
        return names
    if callable(grad_wrt):
        chosen = [n for n in names if grad_wrt(n)]
    else:
        patterns = [grad_wrt] if isinstance(grad_wrt, str) else list(grad_wrt)
        chosen = [
            n
            for n in names
            if any(n == pat or n.startswith(pat.rstrip(".") + ".") for pat in patterns)
        ]
    if not chosen:
        raise ValueError(
            f"grad_wrt={grad_wrt!r} matches no parameter. Parameters: "
            f"{', '.join(names[:20])}{' ...' if len(names) > 20 else ''}. Pass full names or "
            "prefixes such as 'features.conv4'."
        )
    return chosen


class Featurizer:
    """Per-sample output gradients of one checkpoint, flattened and projected.

    Only parameters that influence the output (and match ``grad_wrt``) are
    differentiated; the rest are held constant. ``dim`` is the number of
    differentiated parameters, ``out_dim`` the feature size (``proj_dim`` or ``dim``).

    Args:
        model: the checkpoint (moved to ``device``, put in eval mode).
        output_fn: the scalar output (already attached to ``model`` when it hooks a layer).
        grad_wrt: see :func:`select_params`.
        proj_dim: p, or None for no projection.
        proj_kind, proj_seed, proj_cache_mb: the JL projection's settings.
        device: where gradients are computed.
        preprocess: applied to an input batch before the model (None: identity).
        example: one ``(x, y)`` sample, to find the parameters the output depends on.
        output: how to read logits from the model's output (a key, index, attribute
            name or function; None when the model returns a tensor).
        chunk_mb: working memory of one step of the projection (None: whole blocks).
    """

    def __init__(
        self,
        model: nn.Module,
        output_fn: OutputFunction,
        grad_wrt: GradWrt,
        proj_dim: int | None,
        proj_kind: str,
        proj_seed: int,
        device: torch.device,
        preprocess: Callable | None,
        example: tuple[torch.Tensor, torch.Tensor],
        proj_cache_mb: float,
        *,
        output=None,
        chunk_mb: float | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.output_fn = output_fn
        self.device = device
        self.preprocess = preprocess or (lambda x: x)
        self.output = output
        self.chunk_mb = chunk_mb
        self.names = self._used(select_params(model, grad_wrt), example)
        params = dict(model.named_parameters())
        self.params = {n: params[n].detach() for n in self.names}
        self.frozen = {n: p.detach() for n, p in params.items() if n not in self.params}
        self.frozen.update({n: b.detach() for n, b in model.named_buffers()})
        self.dim = int(sum(p.numel() for p in self.params.values()))
        self.projection = self._projection(proj_dim, proj_kind, proj_seed, proj_cache_mb)
        self.out_dim = self.dim if self.projection is None else int(proj_dim)
        self._grad = torch.func.vmap(
            torch.func.grad(self._output, has_aux=True), in_dims=(None, 0, 0)
        )
        self._value = torch.func.vmap(self._output, in_dims=(None, 0, 0))

    def _projection(
        self, proj_dim: int | None, kind: str, seed: int, cache_mb: float
    ) -> JLProjection | None:
        if proj_dim is None:
            return None
        if int(proj_dim) > self.dim:
            raise ValueError(
                f"proj_dim={proj_dim} is larger than the number of parameters being "
                f"differentiated ({self.dim}): a projection cannot add information. Use "
                f"proj_dim <= {self.dim}, or proj_dim=None for no projection."
            )
        return JLProjection(
            self.dim,
            int(proj_dim),
            kind=kind,
            seed=seed,
            device=self.device,
            cache_mb=cache_mb,
            chunk_mb=self.chunk_mb,
        )

    def _forward_with(self, params: dict) -> Callable[[torch.Tensor], torch.Tensor]:
        merged = {**self.frozen, **params}

        def forward(xb: torch.Tensor) -> torch.Tensor:
            raw = torch.func.functional_call(self.model, merged, (self.preprocess(xb),))
            return select_output(raw, self.output)

        return forward

    def _output(self, params: dict, x: torch.Tensor, y: torch.Tensor):
        out = self.output_fn(self._forward_with(params), x, y)
        return out, out

    def _used(self, candidates: list[str], example) -> list[str]:
        """The candidate parameters that the output depends on (found with one sample)."""
        x, y = example
        params = dict(self.model.named_parameters())
        leaves = {n: params[n].detach().clone().requires_grad_(True) for n in candidates}
        merged = {n: p.detach() for n, p in params.items()}
        merged.update({n: b.detach() for n, b in self.model.named_buffers()})
        merged.update(leaves)

        def forward(xb):
            raw = torch.func.functional_call(self.model, merged, (self.preprocess(xb),))
            return select_output(raw, self.output)

        with torch.enable_grad():
            out = self.output_fn(forward, x.to(self.device), torch.as_tensor(y).to(self.device))
            if out.ndim != 0:
                raise ValueError(
                    f"The output function must return a scalar per sample, got shape "
                    f"{tuple(out.shape)}."
                )
            grads = torch.autograd.grad(out, list(leaves.values()), allow_unused=True)
        used = [n for n, g in zip(candidates, grads) if g is not None]
        if not used:
            raise ValueError(
                "The output does not depend on any of the selected parameters: widen grad_wrt "
                "(parameters before the probed layer influence a probe's output)."
            )
        return used

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [B, out_dim] (float32, device) and output values [B] of a batch."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        grads, out = self._grad(self.params, x, y)
        parts = [grads[n].reshape(x.shape[0], -1) for n in self.names]
        del grads
        if self.projection is not None:
            phi = self.projection.project_parts(parts)
        else:
            phi = torch.cat(parts, dim=1)
        del parts
        return phi.float(), out.detach().float()

    def values(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Output values [B] of a batch, without gradients."""
        with torch.no_grad():
            return self._value(self.params, x.to(self.device), y.to(self.device)).float()
