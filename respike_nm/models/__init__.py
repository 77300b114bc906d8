"""Models: the ReSpike hybrid and its ``ann`` / ``snn`` baselines, one code path.

``create_model("hybrid", num_classes=12, fusion="late")`` builds any registered variant;
overrides are fields of :class:`~respike_nm.models.respike.ReSpikeSpec`.
"""

from __future__ import annotations

from dataclasses import fields

from respike_nm.errors import UsageError
from respike_nm.models.names import KINDS


def list_models() -> tuple[str, ...]:
    """The registered model names (importable without torch, for the command line)."""
    return KINDS


def create_model(name: str, num_classes: int, **overrides):
    """A registered model (``hybrid``, ``ann``, ``snn``) with spec field overrides."""
    from respike_nm.models.respike import ReSpike, ReSpikeSpec

    if name not in KINDS:
        raise UsageError(f"unknown model {name!r}; registered: {', '.join(KINDS)}")
    valid = {f.name for f in fields(ReSpikeSpec)} - {"kind", "num_classes"}
    unknown = set(overrides) - valid
    if unknown:
        raise UsageError(f"unknown model option(s) {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(sorted(valid))}")
    return ReSpike(ReSpikeSpec(kind=name, num_classes=num_classes, **overrides))

