"""Facts about the board that do not change while the agent runs."""

from __future__ import annotations

import os
import platform
import re
import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from ._files import cpu_dirs, read_text

# (CPU implementer, CPU part) from /proc/cpuinfo on ARM, as in Linux
# arch/arm64/include/asm/cputype.h. Only cores found on boards this project targets.
_ARM_PARTS: Dict[Tuple[int, int], str] = {
    (0x41, 0xD03): "ARM Cortex-A53",
    (0x41, 0xD04): "ARM Cortex-A35",
    (0x41, 0xD05): "ARM Cortex-A55",
    (0x41, 0xD07): "ARM Cortex-A57",
    (0x41, 0xD08): "ARM Cortex-A72",
    (0x41, 0xD09): "ARM Cortex-A73",
    (0x41, 0xD0A): "ARM Cortex-A75",
    (0x41, 0xD0B): "ARM Cortex-A76",
    (0x41, 0xD0C): "ARM Neoverse-N1",
    (0x41, 0xD0D): "ARM Cortex-A77",
    (0x41, 0xD41): "ARM Cortex-A78",
    (0x41, 0xD42): "ARM Cortex-A78AE",
    (0x41, 0xD44): "ARM Cortex-X1",
    (0x41, 0xD46): "ARM Cortex-A510",
    (0x41, 0xD47): "ARM Cortex-A710",
    (0x41, 0xD48): "ARM Cortex-X2",
    (0x41, 0xD4D): "ARM Cortex-A715",
    (0x41, 0xD80): "ARM Cortex-A520",
    (0x4E, 0x003): "NVIDIA Denver",
    (0x4E, 0x004): "NVIDIA Carmel",
}


def _cpuinfo_blocks(root: Path) -> List[Dict[str, str]]:
    """/proc/cpuinfo as one dict per blank-line-separated block."""
    text = read_text(root / "proc/cpuinfo") or ""
    blocks: List[Dict[str, str]] = []
    for chunk in re.split(r"\n\s*\n", text):
        block: Dict[str, str] = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                block[key.strip()] = value.strip()
        if block:
            blocks.append(block)
    return blocks


def _cpu_model(blocks: List[Dict[str, str]]) -> Optional[str]:
    # ARM first: its "model name" (if any) is the generic "ARMv8 Processor rev 1 (v8l)".
    names: List[str] = []
    for b in blocks:
        try:
            part = (int(b["CPU implementer"], 16), int(b["CPU part"], 16))
        except (KeyError, ValueError):
            continue
        name = _ARM_PARTS.get(part)
        if name is not None and name not in names:
            names.append(name)
    if names:
        return " + ".join(names)
    for key in ("model name", "Hardware"):
        for b in blocks:
            if b.get(key):
                return b[key]
    proc = platform.processor()
    # On Linux this is `uname -p`: "", "unknown" or the arch, none of them a CPU model.
    return proc if proc and proc not in ("unknown", platform.machine()) else None


def _cores_physical(root: Path, blocks: List[Dict[str, str]]) -> Optional[int]:
    pairs = {(b.get("physical id"), b.get("core id")) for b in blocks if "processor" in b}
    if pairs and all(p is not None and c is not None for p, c in pairs):
        return len(pairs)
    # ARM cpuinfo has no core ids: one core per distinct set of hardware-thread siblings.
    # An offline CPU has no topology/ (x86) and is skipped, as cpuinfo and os.cpu_count do.
    cores: Set[str] = set()
    for _, d in cpu_dirs(root):
        siblings = read_text(d / "topology/thread_siblings_list")
        if siblings is None:
            pkg = read_text(d / "topology/physical_package_id")
            core = read_text(d / "topology/core_id")
            if pkg is None or core is None:
                continue
            siblings = pkg.strip() + "/" + core.strip()
        cores.add(siblings.strip())
    return len(cores) if cores else None


def _memory_mb(root: Path) -> Optional[float]:
    text = read_text(root / "proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return round(int(m.group(1)) / 1024, 1) if m else None


def _os_name(root: Path) -> str:
    for rel in ("etc/os-release", "usr/lib/os-release"):
        for line in (read_text(root / rel) or "").splitlines():
            if line.startswith("PRETTY_NAME="):
                try:
                    words = shlex.split(line[len("PRETTY_NAME=") :])
                except ValueError:
                    continue
                if words and words[0]:
                    return words[0]
    return platform.platform()


def _device_model(root: Path, blocks: List[Dict[str, str]]) -> Optional[str]:
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        text = read_text(root / rel)
        if text is not None and text.strip("\x00 \n"):
            return text.strip("\x00 \n")
    text = read_text(root / "sys/class/dmi/id/product_name")
    if text is not None and text.strip():
        return text.strip()
    for b in blocks:  # Raspberry Pi kernels also put the board name in cpuinfo
        if b.get("Model"):
            return b["Model"]
    return None


def _jetson_l4t(root: Path) -> Optional[str]:
    text = read_text(root / "etc/nv_tegra_release")
    if not text:
        return None
    first = text.splitlines()[0]
    m = re.match(r"#\s*R(\d+)\s*\(release\)(?:,\s*REVISION:\s*([\d.]+))?", first)
    if m is None:
        return None
    return m.group(1) + ("." + m.group(2).rstrip(".") if m.group(2) else "")


def _runtime_versions() -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "numpy": None,
        "onnxruntime": None,
        "onnxruntime_error": None,
        "providers": [],
    }
    try:
        import numpy

        out["numpy"] = str(numpy.__version__)
    except Exception:  # a broken install must not stop the agent from reporting
        pass
    try:
        import onnxruntime

        out["onnxruntime"] = str(onnxruntime.__version__)
        out["providers"] = [str(p) for p in onnxruntime.get_available_providers()]
    except Exception as exc:  # ImportError, or OSError from a missing shared library
        out["onnxruntime_error"] = f"{type(exc).__name__}: {exc}"
    return out


def static_facts(root: Path = Path("/")) -> Dict[str, Any]:
    """Facts that do not change while the agent runs.

    Keys: hostname, arch, cpu_model, cores_logical, cores_physical, memory_mb, os, kernel,
    device_model, jetson_l4t, python, numpy, onnxruntime, onnxruntime_error, providers.
    hostname, arch, cores_logical, kernel and python describe the running interpreter's
    host whatever ``root`` is; os falls back to ``platform.platform()``.
    """
    blocks = _cpuinfo_blocks(root)
    facts: Dict[str, Any] = {
        "hostname": platform.node() or None,
        "arch": platform.machine() or None,
        "cpu_model": _cpu_model(blocks),
        "cores_logical": os.cpu_count(),
        "cores_physical": _cores_physical(root, blocks),
        "memory_mb": _memory_mb(root),
        "os": _os_name(root),
        "kernel": platform.release() or None,
        "device_model": _device_model(root, blocks),
        "jetson_l4t": _jetson_l4t(root),
        "python": platform.python_version(),
    }
    facts.update(_runtime_versions())
    return facts
