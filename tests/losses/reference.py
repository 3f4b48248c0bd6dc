"""Plain-Python helpers shared by the slow loss references in the tests (no torch vector ops)."""
from __future__ import annotations

import math

import torch


def unit_rows(z1: torch.Tensor, z2: torch.Tensor) -> list[list[float]]:
    """The 2B rows of cat([z1, z2]) as Python lists, each divided by its Euclidean norm."""
    out = []
    for r in torch.cat([z1, z2]).tolist():
        nrm = math.sqrt(sum(x * x for x in r))
        out.append([x / nrm for x in r])
    return out


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))
