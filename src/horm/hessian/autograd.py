"""All derivatives of a potential, in one place: forces, full Hessians, sampled Hessian rows.

Conventions (DESIGN.md "Contracts"): positions r (N_tot, 3) Å, energy E (B,) eV, forces
F = −∂E/∂r (N_tot, 3) eV/Å, Hessian H = ∂²E/∂r² = −∂F/∂r, per molecule (3n, 3n) eV/Å² with
index 3·atom + xyz. Molecules of a batch are independent, so the batch Hessian is
block-diagonal; it is never materialised as one matrix.

Every Hessian here is "minus the Jacobian of the forces you pass in":

- autograd-force models: F = −∇E was built with ``create_graph=True``, so a VJP of F is a
  double backward and H is symmetric up to round-off;
- direct-force models: F is a network output, a VJP of F is one backward, and H = −∂F/∂r
  is the Jacobian of the predicted forces, in general *not* symmetric.

Three ways to get full Hessians (``method``):

- ``"loop"``: one ``autograd.grad`` per row, molecule by molecule (what HORM's evaluation does);
- ``"vmap"``: per molecule, all 3n one-hot VJPs at once through ``is_grads_batched`` (vmap);
- ``"batched"``: one-hot grad_outputs that select row k in *every* molecule at once, so
  3·n_max vmapped VJPs give the Hessians of the whole batch.

Row-chunks bound the memory (``chunk_size`` VJPs per vmapped call). When vmap cannot run
(an op without a batching rule), the code falls back to a Python loop and logs one warning.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Literal

import torch

from horm.errors import UsageError

log = logging.getLogger(__name__)

HessianMethod = Literal["batched", "vmap", "loop"]
HESSIAN_METHODS = ("batched", "vmap", "loop")
DEFAULT_CHUNK = 64
MAX_AUTO_CHUNK = 64
ROW_BYTES_PER_SAVED_BYTE = 0.75  # measured: one vmapped VJP row needs ≈ 0.5× the saved activations
_warned: set[str] = set()


def memory_budget_bytes(device: torch.device | str | None = None) -> int:
    """Memory allowed for one chunk of vmapped VJPs: $HORM_HESSIAN_MEMORY_GB if set, else
    2 GiB on a GPU and 0.25 GiB on a CPU (measured: larger chunks fall out of cache and run
    slower per row on CPU)."""
    env = os.environ.get("HORM_HESSIAN_MEMORY_GB")
    if env:
        return int(float(env) * 2**30)
    on_gpu = device is not None and torch.device(device).type != "cpu"
    return int((2.0 if on_gpu else 0.25) * 2**30)


class SavedTensorMeter:
    """Context manager that counts the bytes autograd saves for backward (unique storages).

    The per-row memory of a VJP through a graph scales with what that graph saved, so
    ``auto_chunk(meter.nbytes)`` picks a chunk size that fits :func:`memory_budget_bytes`.

    The pack hook stores ``t.detach()`` (same storage, no ``grad_fn``), never ``t`` itself:
    a saved *output* that holds its own ``grad_fn`` is a reference cycle through C++ that
    Python's collector cannot see, and every graph built under the meter leaked (measured:
    about 5 MB per Hessian of a tiny LEFTNet on 15 atoms, for as long as the process ran).
    Autograd restores the saved tensor's graph links on unpack, so gradients, also higher
    ones, are unchanged.
    """

    def __init__(self):
        self.nbytes = 0
        self._seen: set[int] = set()
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            key, size = st.data_ptr(), st.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without plain storage
            key, size = id(t), t.numel() * t.element_size()
        if key not in self._seen:
            self._seen.add(key)
            self.nbytes += size
        return t.detach()

    def __enter__(self) -> "SavedTensorMeter":
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)
        self._seen.clear()


def auto_chunk(saved_bytes: int, budget_bytes: int | None = None, device: torch.device | str | None = None) -> int:
    """VJPs per vmapped call so that a chunk stays within the memory budget (1 … 64)."""
    budget = memory_budget_bytes(device) if budget_bytes is None else budget_bytes
    per_row = max(1.0, ROW_BYTES_PER_SAVED_BYTE * saved_bytes)
    return int(max(1, min(MAX_AUTO_CHUNK, budget // per_row)))


def _warn_once(key: str, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg)


def _ptr_of(ptr) -> torch.Tensor:
    """Accept a (B+1,) ptr tensor or anything with a ``.ptr`` attribute (a Batch)."""
    return (ptr.ptr if hasattr(ptr, "ptr") else ptr).long()


def compute_forces(energy: torch.Tensor, pos: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """F = −∂E/∂r. energy: (B,) eV (or scalar); pos: (N_tot, 3) Å with requires_grad. Returns (N_tot, 3) eV/Å.

    Summing the per-molecule energies is exact because molecules do not interact.
    ``create_graph=True`` keeps the graph, needed for training on forces and for Hessians.
    """
    if not pos.requires_grad:
        raise ValueError("compute_forces: pos does not require grad; build the energy from pos.requires_grad_()")
    (g,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph, retain_graph=True,
                               allow_unused=True)
    if g is None:
        return torch.zeros_like(pos)
    return -g


def force_vjps(forces: torch.Tensor, pos: torch.Tensor, grad_outputs: torch.Tensor,
               create_graph: bool = False, chunk_size: int | None = DEFAULT_CHUNK,
               use_vmap: bool = True) -> torch.Tensor:
    """Batched VJPs of the forces: out[k] = Σ_{a,c} V[k,a,c] ∂F[a,c]/∂r. V: (K, N_tot, 3); returns (K, N_tot, 3).

    With one-hot V selecting force component (a, c), out[k] = −(row 3a+c of H). Runs
    ``chunk_size`` VJPs per vmapped call (None: all K at once); falls back to one
    ``autograd.grad`` per k (logged once) when vmap fails or ``use_vmap`` is False.
    """
    if forces.grad_fn is None:
        raise ValueError("forces carry no autograd graph: compute them from pos.requires_grad_() "
                         "(autograd models: with create_graph=True)")
    K = grad_outputs.shape[0]
    if K == 0:
        return grad_outputs.new_zeros((0,) + tuple(pos.shape))
    if use_vmap:
        step = K if not chunk_size else int(chunk_size)
        try:
            log.debug("vmap over %d VJPs in chunks of %d", K, step)
            parts = []
            for chunk in grad_outputs.split(step):
                (g,) = torch.autograd.grad(forces, pos, chunk, retain_graph=True, create_graph=create_graph,
                                           is_grads_batched=True, allow_unused=True)
                parts.append(torch.zeros_like(chunk) if g is None else g)
            return torch.cat(parts)
        except RuntimeError as err:  # an op without a vmap batching rule
            _warn_once("vmap", f"horm.hessian.autograd: vmap over VJPs failed ({str(err).splitlines()[0]}); "
                               f"falling back to a Python loop over rows (slower)")
    out = []
    for k in range(K):
        (g,) = torch.autograd.grad(forces, pos, grad_outputs[k], retain_graph=True, create_graph=create_graph,
                                   allow_unused=True)
        out.append(torch.zeros_like(pos) if g is None else g)
    return torch.stack(out)


def _one_hot_rows(rows_atom: torch.Tensor, rows_xyz: torch.Tensor, n_tot: int, like: torch.Tensor) -> torch.Tensor:
    """(K, N_tot, 3) tensor with a single 1 at [k, rows_atom[k], rows_xyz[k]]."""
    v = like.new_zeros((rows_atom.numel(), n_tot, 3))
    v[torch.arange(rows_atom.numel(), device=v.device), rows_atom, rows_xyz] = 1
    return v


def batched_one_hots(ptr: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Path (c) grad_outputs: (3·n_max, N_tot, 3), V[k, a, c] = 1 iff 3·(a − ptr[b(a)]) + c == k.

    Slice k selects row k of every molecule that has one (3n_b > k).
    """
    ptr = _ptr_of(ptr).to(like.device)
    natoms = ptr[1:] - ptr[:-1]
    n_tot = int(ptr[-1])
    mol = torch.repeat_interleave(torch.arange(natoms.numel(), device=like.device), natoms)
    local = torch.arange(n_tot, device=like.device) - ptr[mol]
    row = 3 * local[:, None] + torch.arange(3, device=like.device)  # (N_tot, 3) row index of each component
    k = torch.arange(3 * int(natoms.max()), device=like.device)
    return (row[None] == k[:, None, None]).to(like.dtype)


def full_hessian(forces: torch.Tensor | Callable[[torch.Tensor], torch.Tensor], pos: torch.Tensor, ptr,
                 method: HessianMethod = "batched", chunk_size: int | None = DEFAULT_CHUNK,
                 create_graph: bool = False) -> list[torch.Tensor]:
    """Full per-molecule Hessians H_b = −∂F/∂r restricted to molecule b's atoms.

    forces: (N_tot, 3) eV/Å carrying a graph to ``pos`` (or a callable pos -> forces);
    pos: (N_tot, 3) Å; ptr: (B+1,) atom offsets (or a Batch). Returns a list of B tensors
    (3n_b, 3n_b) eV/Å², row-major over 3·atom + xyz. See the module docstring for ``method``.
    ``create_graph=True`` keeps the result differentiable (e.g. a full-Hessian loss).
    """
    if method not in HESSIAN_METHODS:
        raise UsageError(f"unknown Hessian method {method!r}; valid: {', '.join(HESSIAN_METHODS)}")
    if callable(forces):
        forces = forces(pos)
    ptr = _ptr_of(ptr).to(pos.device)
    natoms = (ptr[1:] - ptr[:-1]).tolist()
    n_tot = pos.shape[0]
    blocks: list[torch.Tensor] = []
    if method == "batched":
        v = batched_one_hots(ptr, pos)
        g = force_vjps(forces, pos, v, create_graph, chunk_size)  # (3 n_max, N_tot, 3)
        for b, n in enumerate(natoms):
            lo = int(ptr[b])
            blocks.append(-g[: 3 * n, lo:lo + n].reshape(3 * n, 3 * n))
        return blocks
    for b, n in enumerate(natoms):
        lo = int(ptr[b])
        r = torch.arange(3 * n, device=pos.device)
        v = _one_hot_rows(lo + r // 3, r % 3, n_tot, pos)
        g = force_vjps(forces, pos, v, create_graph, chunk_size, use_vmap=(method == "vmap"))
        blocks.append(-g[:, lo:lo + n].reshape(3 * n, 3 * n))
    return blocks


def draw_row_indices(natoms: torch.Tensor, s: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """s distinct row indices per molecule, uniform in [0, 3n_b). Returns (B, s) long.

    A molecule with fewer than s rows (3n_b < s) gets all its 3n_b rows in random order;
    the remaining slots hold −1 ("no row"), which every consumer treats as masked.
    """
    if s < 1:
        raise UsageError(f"number of Hessian rows s must be >= 1, got {s}")
    natoms = natoms.long().cpu()
    n3 = 3 * natoms
    width = max(int(n3.max()), s)
    keys = torch.rand((natoms.numel(), width), generator=generator)
    cols = torch.arange(width)
    keys = torch.where(cols[None, :] < n3[:, None], keys, torch.full_like(keys, 2.0))
    idx = torch.argsort(keys, dim=1)[:, :s]
    return torch.where(torch.arange(s)[None, :] < n3[:, None], idx, torch.full_like(idx, -1))


def sample_hessian_rows(forces: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor, ptr: torch.Tensor,
                        s: int = 1, generator: torch.Generator | None = None, create_graph: bool = False,
                        idx: torch.Tensor | None = None, chunk_size: int | None = DEFAULT_CHUNK,
                        use_vmap: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """s randomly chosen Hessian rows of every molecule, in s batched VJPs (Eq. 3 of HORM).

    forces: (N_tot, 3) eV/Å with a graph to pos (autograd models: computed with
    create_graph=True); pos: (N_tot, 3) Å; batch: (N_tot,) molecule index; ptr: (B+1,).
    For each molecule draw s distinct rows j ∈ [0, 3n_b) (or pass ``idx`` (B, s); ``generator``
    is a CPU ``torch.Generator``, the draw happens on CPU). The k-th
    grad_output holds a one-hot at row idx[b, k] of every molecule b, so one VJP gives the
    k-th sampled row of all molecules; the s VJPs run under vmap (loop fallback, logged).

    Returns ``rows`` (s, N_tot, 3) eV/Å² and ``idx`` (B, s) long, with
    rows[k, a, c] = H_b[idx[b, k], 3·(a − ptr[b]) + c] = −∂F_{idx[b,k]}/∂r_{a,c}, b = batch[a].
    Slots with idx = −1 (molecules with 3n_b < s, see :func:`draw_row_indices`) are zero.
    The layout matches :func:`horm.data.batch.gather_hessian_rows`.
    ``create_graph=True`` (training) makes the rows differentiable w.r.t. the parameters.
    ``use_vmap=False`` runs the s VJPs as a loop (faster on CPU for training, see
    benchmarks/train_step.py).
    """
    ptr = _ptr_of(ptr).to(pos.device)
    batch = batch.to(pos.device).long()
    natoms = ptr[1:] - ptr[:-1]
    if idx is None:
        idx = draw_row_indices(natoms, s, generator)
    idx = idx.to(pos.device).long()
    s = idx.shape[1]
    valid = idx >= 0  # (B, s)
    kk, bb = torch.nonzero(valid.T, as_tuple=True)  # slot k, molecule b
    j = idx[bb, kk]
    v = pos.new_zeros((s, pos.shape[0], 3))
    v[kk, ptr[bb] + j // 3, j % 3] = 1
    g = force_vjps(forces, pos, v, create_graph, chunk_size, use_vmap=use_vmap)
    rows = -g * valid.T[:, batch, None].to(g.dtype)
    return rows, idx
