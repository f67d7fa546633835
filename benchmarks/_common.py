"""Shared plumbing: interleaved rounds, medians with their spread, targets, and result rows."""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["BenchResult", "Check", "Row", "Spread", "fmt_int", "interleaved", "ratios"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Spread:
    """The median of a sample and its min–max range."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def format(self, spec: str = ",.0f", suffix: str = "") -> str:
        """``"median (min–max)"``, e.g. ``"31,200 (30,900–31,500)"``."""
        return f"{self.median:{spec}}{suffix} ({self.low:{spec}}–{self.high:{spec}}{suffix})"


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def interleaved(rounds: int, variants: Sequence[str], measure: Callable[[str], _T]) -> dict[str, list[_T]]:
    """Measure every variant once per round, in ABBA order (ABC, CBA, ABC, ...).

    Alternating the order cancels a steady drift (thermal, other load on the machine) and the
    "who runs first" advantage, so each round's variants can be compared with each other.
    """
    results: dict[str, list[_T]] = {variant: [] for variant in variants}
    for i in range(rounds):
        for variant in variants if i % 2 == 0 else reversed(variants):
            results[variant].append(measure(variant))
    return results


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-round ratios: each round's pair was measured back to back, under the same load."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge, "<": operator.lt}


@dataclass(frozen=True)
class Check:
    """A target: ``value op limit``, e.g. the median ratio ``>= 0.99``."""

    label: str
    value: float
    op: str
    limit: float
    unit: str = "x"
    spec: str = ".3f"

    @property
    def passed(self) -> bool:
        return _OPS[self.op](self.value, self.limit)

    @property
    def target(self) -> str:
        return f"{self.op} {self.limit:{self.spec}}{self.unit}"

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict}  {self.label}: {self.value:{self.spec}}{self.unit} (target {self.target})"


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    case: str
    without: str
    with_: str
    ratio: str
    check: Check | None = None


@dataclass
class BenchResult:
    """What one benchmark reports: its table rows and its checked targets."""

    number: int
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, row: Row) -> None:
        self.rows.append(row)
        if row.check is not None:
            self.checks.append(row.check)
