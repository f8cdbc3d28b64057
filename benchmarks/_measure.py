"""Peak memory for benchmarks: CUDA's allocator peak, else this process's own RSS high-water mark.

``ru_maxrss`` is avoided on Linux because it is carried across fork+exec: a child would report its (larger)
parent's peak. ``/proc/self/status`` ``VmHWM`` belongs to this process alone.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_memory_mb() -> float:
    """Peak memory of this process in MiB (CUDA allocations when a GPU is in use)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
