"""Hardware profiles: every energy figure and hardware limit, as validated data.

A profile is a YAML file (``hw_profiles/<name>.yaml``)::

    name: loihi2
    description: ...
    target: neuromorphic            # neuromorphic | gpu | cmos
    costs:                          # energies per operation (and power figures)
      synop: {value: 23.6, unit: pJ, source: "...", kind: derived, note: "..."}
    limits:                         # bit-widths and capacities
      weight_bits: {value: 8, unit: bit, source: "...", kind: measured}

Every figure carries value, unit, source and kind (measured / simulated / derived). The schema
check rejects a missing, negative or unitless figure and an unknown key, naming the field; a limit
in bits or a count must be a whole number of at least 1 (a chip of 0 cores holds nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from respike_nm.errors import RespikeError
from respike_nm.records import parse_yaml

KINDS = ("measured", "simulated", "derived")
TARGETS = ("neuromorphic", "gpu", "cmos")
ENERGY_UNITS = {"fJ": 1e-3, "pJ": 1.0, "nJ": 1e3, "uJ": 1e6}  # to pJ
POWER_UNITS = {"mW": 1e-3, "W": 1.0}  # to W
COST_KEYS = {
    # compute
    "mac_fp32": ENERGY_UNITS, "mac_fp16": ENERGY_UNITS, "mac_bf16": ENERGY_UNITS,
    "mac_int8": ENERGY_UNITS, "add_fp32": ENERGY_UNITS, "mult_fp32": ENERGY_UNITS,
    "add_int8": ENERGY_UNITS, "mult_int8": ENERGY_UNITS, "ac_fp32": ENERGY_UNITS,
    "flop_fp32": ENERGY_UNITS, "flop_bf16": ENERGY_UNITS, "flop_fp16": ENERGY_UNITS,
    "op_int8": ENERGY_UNITS,
    # neuromorphic
    "synop": ENERGY_UNITS, "neuron_update": ENERGY_UNITS, "neuron_update_active": ENERGY_UNITS,
    "neuron_update_inactive": ENERGY_UNITS, "spike_within_tile": ENERGY_UNITS,
    "spike_hop": ENERGY_UNITS, "spike_hop_ew": ENERGY_UNITS, "spike_hop_ns": ENERGY_UNITS,
    # memory
    "sram_read_64b_8kb": ENERGY_UNITS, "sram_read_64b_32kb": ENERGY_UNITS,
    "sram_read_64b_1mb": ENERGY_UNITS, "dram_access_64b": ENERGY_UNITS,
    "io_byte": ENERGY_UNITS,
    # power
    "static_power": POWER_UNITS, "tdp": POWER_UNITS,
}
LIMIT_UNITS = {"bit", "count", "flag"}
LIMIT_KEYS = {
    "weight_bits": "bit", "decay_bits": "bit", "threshold_bits": "bit", "bias_bits": "bit",
    "state_bits": "bit", "graded_spike_bits": "bit", "neurons_per_core": "count",
    "synapses_per_core": "count", "synaptic_memory_bits_per_core": "bit", "fan_in": "count",
    "fan_out": "count", "cores_per_chip": "count", "neurons_per_chip": "count",
    "synapses_per_chip": "count",
    # hardware mapping (conversion/mapping.py): fan_in is read as input axons per core
    "bits_per_synapse": "bit", "distinct_weights_per_neuron": "count", "conv_weight_sharing": "flag",
}


class ProfileError(RespikeError, ValueError):
    """A hardware profile that does not fit the schema."""


@dataclass(frozen=True)
class Figure:
    """One number with its unit and provenance."""

    value: float
    unit: str
    source: str
    kind: str  # measured | simulated | derived
    note: str = ""


@dataclass(frozen=True)
class HwProfile:
    name: str
    description: str
    target: str
    costs: dict[str, Figure]
    limits: dict[str, Figure]
    path: str = ""

    def energy_pj(self, key: str) -> float:
        """A cost in picojoules (KeyError names the profile and the key when absent)."""
        fig = self._get(self.costs, key, "costs")
        return fig.value * ENERGY_UNITS[fig.unit]

    def power_w(self, key: str) -> float:
        fig = self._get(self.costs, key, "costs")
        return fig.value * POWER_UNITS[fig.unit]

    def limit(self, key: str, default: int | None = None) -> int | None:
        if key not in self.limits:
            return default
        return int(self.limits[key].value)

    def _get(self, table: dict, key: str, section: str) -> Figure:
        if key not in table:
            raise KeyError(f"profile {self.name!r} has no {section}.{key}")
        return table[key]


def _figure(where: str, raw, units) -> Figure:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a mapping with value, unit, source, kind; got {raw!r}")
    unknown = set(raw) - {"value", "unit", "source", "kind", "note"}
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    for req in ("value", "unit", "source", "kind"):
        if raw.get(req) in (None, ""):
            raise ProfileError(f"{where}.{req}: missing")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProfileError(f"{where}.value: must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ProfileError(f"{where}.value: must be a finite number, not negative ({value})")
    if raw["unit"] not in units:
        raise ProfileError(f"{where}.unit: {raw['unit']!r} is not one of {', '.join(sorted(units))}")
    if raw["kind"] not in KINDS:
        raise ProfileError(f"{where}.kind: {raw['kind']!r} is not one of {', '.join(KINDS)}")
    return Figure(float(value), raw["unit"], str(raw["source"]), raw["kind"], str(raw.get("note", "")))


def _limit(where: str, fig: Figure) -> Figure:
    """A limit in bits or a count: whole and positive (a flag is the mapper's to read)."""
    if fig.unit != "flag" and (fig.value < 1 or not fig.value.is_integer()):
        what = "a width in bits" if fig.unit == "bit" else "a count"
        raise ProfileError(f"{where}.value: {what} must be a whole number of at least 1, not {fig.value:g}")
    return fig


def parse_profile(raw, where: str = "profile") -> HwProfile:
    """Validate a parsed YAML mapping into a :class:`HwProfile`."""
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: the top level must be a mapping")
    unknown = set(raw) - {"name", "description", "target", "costs", "limits"}
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for req in ("name", "target", "costs"):
        if not raw.get(req):
            raise ProfileError(f"{where}.{req}: missing")
    if raw["target"] not in TARGETS:
        raise ProfileError(f"{where}.target: {raw['target']!r} is not one of {', '.join(TARGETS)}")
    costs, limits = {}, {}
    for key, fig in (raw.get("costs") or {}).items():
        if key not in COST_KEYS:
            raise ProfileError(f"{where}.costs.{key}: unknown cost; valid: {', '.join(COST_KEYS)}")
        costs[key] = _figure(f"{where}.costs.{key}", fig, COST_KEYS[key])
    for key, fig in (raw.get("limits") or {}).items():
        if key not in LIMIT_KEYS:
            raise ProfileError(f"{where}.limits.{key}: unknown limit; valid: {', '.join(LIMIT_KEYS)}")
        field = f"{where}.limits.{key}"
        limits[key] = _limit(field, _figure(field, fig, {LIMIT_KEYS[key]}))
    return HwProfile(str(raw["name"]), str(raw.get("description", "")), raw["target"], costs, limits)


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in ``hw_profiles/``."""
    return sorted(p.name[:-5] for p in resources.files("hw_profiles").iterdir()
                  if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> HwProfile:
    """A shipped profile by name (``loihi2``) or a user's YAML file."""
    text_path = str(name_or_path)
    if text_path in builtin_profiles():
        ref = resources.files("hw_profiles") / f"{text_path}.yaml"
        data, where = ref.read_bytes(), f"hw_profiles/{text_path}.yaml"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ProfileError(f"{path}: no such profile file, and not a shipped profile "
                               f"({', '.join(builtin_profiles())})")
        data, where = path.read_bytes(), str(path)
    prof = parse_profile(parse_yaml(data, where, ProfileError), where)
    return HwProfile(prof.name, prof.description, prof.target, prof.costs, prof.limits, where)
