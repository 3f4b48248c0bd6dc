"""Device choice: ``auto`` uses CUDA when present, else CPU. Nothing here assumes a GPU."""
from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")  # importable without torch (the CLI's --device choices)


def resolve_device(device: str | torch.device = "auto") -> torch.device:  # noqa: F821
    """``"auto"`` -> cuda if available else cpu; ``"cuda"`` without a GPU raises a clear error."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA GPU is available (use --device cpu or auto)")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)
