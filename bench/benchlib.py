"""What both benchmark scripts share; light on purpose (no torch, no klausa): the scale
benchmark's parent process imports it before its children measure memory."""

from __future__ import annotations

import json
from pathlib import Path

#: The instruction sets that decide Klausa's path (bfloat16 where AMX or AVX-512 BF16 is).
INSTRUCTION_SETS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                    "amx_bf16")


def status_mb(field: str) -> float | None:
    """A field of /proc/self/status (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def cpu_kind() -> dict:
    """The CPU's name, which of ``INSTRUCTION_SETS`` it reports, and the limit set on torch
    (how a CPU without AVX-512 or AMX is emulated)."""
    from klausa.models.base import cpu_info, torch_capability_limit  # light; imported here

    cpu = cpu_info()
    flags = cpu.get("flags", "").split()
    return {"model": cpu.get("model name", ""),
            "instruction_sets": [f for f in INSTRUCTION_SETS if f in flags],
            "limited_to": torch_capability_limit() or None}


def write_results(path: Path, results: dict) -> None:
    """The figures as JSON, beside the printed table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", "utf-8")
