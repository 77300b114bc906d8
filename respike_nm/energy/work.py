"""What a deployment plan is: its rows (:class:`Work`), its counts (:class:`PlanCounts`) and the
registry of plans (:data:`PLANS`, :func:`register_plan`), below the plans themselves
(:mod:`respike_nm.energy.plans`, :mod:`respike_nm.energy.baselines`) so that either can register."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from respike_nm.energy.counters import ClipCounts
from respike_nm.errors import RespikeError

DEVICES = ("gpu", "chip")
OPS = ("mac", "matmul", "synop", "graded", "active_update", "neuron_update", "spike")


class Work(NamedTuple):
    """One layer's work in a plan, per clip: ``count`` operations of kind ``op`` on ``device``.
    GPU ops: ``mac`` (a layer) and ``matmul`` (attention products, priced as MACs); chip ops:
    ``synop``, ``graded`` (MACs on graded input), ``active_update``, ``neuron_update``, ``spike``."""

    layer: str
    device: str
    op: str
    count: float


@dataclass
class PlanCounts:
    """Operations and traffic of one plan, per clip."""

    plan: str
    title: str
    fused_stages: tuple[int, ...]
    activity: str
    layers: list[Work] = field(default_factory=list)
    bytes_to_chip: float = 0.0
    bytes_to_gpu: float = 0.0
    notes: list[str] = field(default_factory=list)

    def total(self, device: str, op: str) -> float:
        return sum(w.count for w in self.layers if w.device == device and w.op == op)

    @property
    def uses_chip(self) -> bool:
        """Whether any of the plan's work runs on a neuromorphic chip (then it is priced on a host and
        chip pair, else on every GPU/CMOS host alone)."""
        return any(w.device == "chip" for w in self.layers)


class PlanNotApplicable(RespikeError):
    """A plan that cannot be built for these counts (e.g. a baseline that cannot take the frames)."""


PlanBuilder = Callable[[ClipCounts, int], PlanCounts]


@dataclass(frozen=True)
class Plan:
    """A registered deployment plan: ``build(counts, graded_bits) -> PlanCounts``."""

    key: str
    title: str
    build: PlanBuilder
    default: bool = True  # priced by ``respike-nm energy`` unless plans are named


PLANS: dict[str, Plan] = {}


def register_plan(key: str, title: str, default: bool = True) -> Callable[[PlanBuilder], PlanBuilder]:
    """Decorator: register ``build`` under ``key`` (a new plan is one function and this line)."""
    def add(build: PlanBuilder) -> PlanBuilder:
        if key in PLANS:
            raise ValueError(f"plan {key!r} registered twice")
        PLANS[key] = Plan(key, title, build, default)
        return build
    return add
