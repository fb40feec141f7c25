"""Cutoff envelopes f(d) for edge terms: 1 well inside the cutoff r_c, 0 at and beyond it.

How smooth an envelope must be depends on which derivative a model is trained and used on.
When a pair crosses r_c the graph changes, and every quantity stays continuous only if the
envelope vanishes there with enough zero derivatives:

- energy continuous: f(r_c) = 0;
- autograd forces −∇E continuous: also f'(r_c) = 0;
- autograd Hessians ∂²E/∂r² continuous: also f''(r_c) = 0.

:func:`polynomial_cutoff` (C², the autograd-force models ``leftnet``, ``alphanet``) satisfies all
three; :func:`cosine_cutoff` (C¹) only the first two: its f''(r_c) = (π/r_c)²/2, so with autograd
forces the Hessian jumps when a pair crosses the cutoff (measured on the tiny presets with
non-zero biases: 6.8e-3 eV/Å² for ``leftnet``, 3.2e-3 for ``alphanet``). It is enough for
direct-force models (``equiformer_v2``), whose Hessian is the Jacobian of the predicted forces.
"""

from __future__ import annotations

import math

import torch


def cosine_cutoff(d: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5 (cos(π d / r_c) + 1) for d < r_c, else 0. C¹ at r_c (f'' jumps by (π/r_c)²/2)."""
    return 0.5 * (torch.cos(d * (math.pi / cutoff)) + 1.0) * (d < cutoff).to(d.dtype)


def polynomial_cutoff(d: torch.Tensor, cutoff: float, p: int = 6) -> torch.Tensor:
    """Polynomial envelope of DimeNet (Gasteiger et al. 2020, Eq. 8) as NequIP uses it, x = d / r_c < 1:

    f(x) = 1 − (p+1)(p+2)/2 · x^p + p(p+2) · x^{p+1} − p(p+1)/2 · x^{p+2},  0 for x ≥ 1.

    f(1) = f'(1) = f''(1) = 0 for every p (C² at the cutoff), and f = 1 − O(x^p) near 0; for
    p = 6 it decreases monotonically from 1 to 0 on [0, 1].
    """
    if p < 1:
        raise ValueError(f"polynomial cutoff exponent p must be >= 1, got {p}")
    x = d / cutoff
    c0, c1, c2 = (p + 1) * (p + 2) / 2.0, float(p * (p + 2)), p * (p + 1) / 2.0
    f = 1.0 + x.pow(p) * (-c0 + x * (c1 - c2 * x))
    return f * (x < 1.0).to(d.dtype)
