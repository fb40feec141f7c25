"""What `horm demo` trains and how long it may take: :class:`DemoSettings` and the :class:`Variant` list."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DemoSettings", "Variant", "slug", "variants"]


@dataclass
class Variant:
    label: str  # display name, also the run folder name
    model: str  # registered model name
    loss: str  # "E-F" | "E-F-H" | "E-F-H(full)"
    overrides: dict = field(default_factory=dict)  # TrainConfig dotted overrides


@dataclass
class DemoSettings:
    out: str = "demo_out"  # results folder
    quick: bool = False  # small budget (CI): fewer steps, samples and reactions
    seed: int = 0  # seed of weights, shuffling, row sampling
    steps: int = 600  # optimizer steps per model (same for all)
    batch_size: int = 16  # molecules per batch
    lr: float = 1e-3  # AdamW learning rate
    max_eval: int = 150  # molecules evaluated per split
    n_ts: int = 6  # test reactions for the TS search
    ts_timeout: float = 240.0  # s per reaction
    shipped_timeout: float = 60.0  # s per reaction for each shipped model, at most (stage "shipped")
    shipped_min_timeout: float = 20.0  # s per reaction: a shipped model with less time left is not started
    deadline_s: float = 750.0  # the shipped stage ends by this many s after the demo started (make demo,
    #                            install included, ≤ 15 min)
    report_reserve_s: float = 30.0  # kept back from the deadline for the report
    workers: int = 2  # TS-search worker processes

    @classmethod
    def make(cls, out: str, quick: bool, seed: int = 0) -> "DemoSettings":
        if quick:
            return cls(out=out, quick=True, seed=seed, steps=20, batch_size=8, max_eval=16, n_ts=1,
                       ts_timeout=60.0)
        return cls(out=out, quick=False, seed=seed)


def variants(quick: bool) -> list[Variant]:
    """The models trained by the demo: each backbone with E-F and E-F-H, plus extras when registered."""
    from horm.models.registry import list_models

    v = [
        Variant("leftnet E-F", "leftnet", "E-F", {"loss.hessian": 0.0}),
        Variant("leftnet E-F-H", "leftnet", "E-F-H", {"loss.n_hr": 1}),
        Variant("leftnet-df E-F", "leftnet-df", "E-F", {"loss.hessian": 0.0}),
        Variant("leftnet-df E-F-H", "leftnet-df", "E-F-H", {"loss.n_hr": 2}),
    ]
    registered = set(list_models())
    if "hessian_head" in registered:
        v.append(Variant("leftnet+hessian_head", "hessian_head", "E-F-H(full)",
                         {"loss.hessian": 0.0, "loss.full_hessian": 1.0}))
    return v


def slug(label: str) -> str:
    """A run label as a folder name (``leftnet E-F-H`` -> ``leftnet_E-F-H``)."""
    return label.replace(" ", "_").replace("+", "_").replace("(", "").replace(")", "")
