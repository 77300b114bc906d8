"""Accounting conventions, side by side on the same counts.

- **SNN-paper convention** (the usual one in SNN papers, e.g. the ReSpike paper's lineage): 45 nm
  CMOS figures (Horowitz, ISSCC 2014: 4.6 pJ per 32-bit MAC, 0.9 pJ per accumulate), compute only:
  every MAC of the ANN side at 4.6 pJ, every SNN synaptic operation at 0.9 pJ (a graded-input layer's
  MACs at 4.6 pJ); no neuron updates, no spike routing, no GPU<->chip traffic, no memory. Papers
  differ on whether the attention products (``Q K^T``, ``A V``) are counted: both are given.
- **Per-target accounting** (this toolkit's): each device's own figures (GPU TDP over peak
  throughput, chip per-operation figures), neuron updates, routing, traffic, and the memory term
  beside the compute total (:mod:`respike_nm.energy.plans`).

A published energy ratio is only comparable with one computed under its own convention.
"""

from __future__ import annotations

from respike_nm.energy.plans import PlanCounts
from respike_nm.hardware import HwProfile, ProfileError

MAC_KEY, AC_KEY = "mac_fp32", "ac_fp32"


def snn_paper_pj(plan: PlanCounts, cmos: HwProfile, attention: bool = True) -> float:
    """Energy per clip of ``plan`` under the SNN-paper convention with ``cmos``'s 45 nm figures:
    GPU-side MACs (attention products only if ``attention``) and graded chip MACs at ``mac_fp32``,
    synaptic operations at ``ac_fp32``; nothing else."""
    for key in (MAC_KEY, AC_KEY):
        if key not in cmos.costs:
            raise ProfileError(f"{cmos.path or cmos.name}: costs.{key} missing (the SNN-paper convention "
                               "prices MACs and accumulates)")
    mac, ac = cmos.energy_pj(MAC_KEY), cmos.energy_pj(AC_KEY)
    total = 0.0
    for w in plan.layers:
        if w.device == "gpu" and (w.op == "mac" or (w.op == "matmul" and attention)):
            total += w.count * mac
        elif w.device == "chip" and w.op == "graded":
            total += w.count * mac
        elif w.device == "chip" and w.op == "synop":
            total += w.count * ac
    return total
