"""Comparing a state dict with a model's: one comparison, two ways of saying it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class StateMismatch:
    """Tensors ``given`` lacks, has in excess, or has in another shape than ``expected``."""

    missing: tuple[tuple[str, tuple[int, ...]], ...]
    unexpected: tuple[tuple[str, tuple[int, ...]], ...]
    wrong: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # name, given shape, expected shape

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong)

    def lines(self) -> list[str]:
        """One line per tensor, with shapes."""
        return ([f"missing {k} {list(s)}" for k, s in self.missing]
                + [f"shape mismatch {k}: file {list(g)}, model {list(e)}" for k, g, e in self.wrong]
                + [f"unexpected {k} {list(s)}" for k, s in self.unexpected])

    def summary(self, most: int = 8) -> str:
        """One line: at most ``most`` names per kind."""
        def names(items) -> str:
            return ", ".join(i[0] for i in items[:most]) + (" ..." if len(items) > most else "")

        parts = []
        if self.missing:
            parts.append("missing " + names(self.missing))
        if self.unexpected:
            parts.append("unexpected " + names(self.unexpected))
        if self.wrong:
            parts.append("wrong shape " + ", ".join(f"{k} {g} vs model {e}" for k, g, e in self.wrong[:most]))
        return "; ".join(parts)


def compare_state(expected: Mapping[str, Tensor], given: Mapping[str, Tensor],
                  tolerate_missing: tuple[str, ...] = ()) -> StateMismatch:
    """``given`` against ``expected``, names sorted; missing names ending in ``tolerate_missing`` pass."""
    missing = tuple((k, tuple(expected[k].shape)) for k in sorted(set(expected) - set(given))
                    if not k.endswith(tolerate_missing or ("\0",)))
    unexpected = tuple((k, tuple(given[k].shape)) for k in sorted(set(given) - set(expected)))
    both = sorted(set(expected) & set(given))
    wrong = tuple((k, tuple(given[k].shape), tuple(expected[k].shape))
                  for k in both if tuple(given[k].shape) != tuple(expected[k].shape))
    return StateMismatch(missing, unexpected, wrong)
