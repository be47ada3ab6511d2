"""What this machine is: physical cores, CPU model and vector features, and whether PyTorch sees a GPU."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def physical_cores() -> int:
    """Physical cores this process may use: distinct (package, core) pairs of /proc/cpuinfo,
    capped by the CPU affinity mask; ``os.cpu_count()`` where /proc/cpuinfo is missing (macOS)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    cores, package = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            package = value
        elif key == "core id":
            cores.add((package, value))
    if not cores and platform.system() == "Darwin":
        try:
            found = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, timeout=5)
            cores = {(str(i), "") for i in range(int(found.stdout.strip()))}
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    return max(1, min(len(cores) or usable, usable))


def cpu_model() -> str:
    """The CPU's marketing name ("model name" of /proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> str:
    """The vector ISA the CPU flags advertise (AVX2, AVX-512, VNNI), for the report's machine line."""
    try:
        flags = next((line.partition(":")[2].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        return platform.machine()
    found = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX512-VNNI"),
                                     ("avx_vnni", "AVX-VNNI")) if flag in flags]
    return "/".join(found) or platform.machine()


def machine_description(threads: int | None = None) -> str:
    cores = physical_cores()
    text = f"{cpu_model()}, {cores} physical core{'s' if cores != 1 else ''}, {cpu_features()}"
    return text + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else "")


def thread_budget() -> int:
    """Threads a runtime of this process takes when nobody names a number: ``OMP_NUM_THREADS`` when
    set (the report's build workers get their share of the cores there), else the physical cores."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return physical_cores()


def thread_variables(threads: int) -> dict[str, str]:
    """Environment that caps a child process's OpenMP, OpenBLAS (numpy) and MKL pools at ``threads``.
    These pools size themselves when their library loads, so only a child's environment sets them."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


@contextmanager
def children_environment(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` in ``os.environ`` for the child processes started inside the block, restored after."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True if PyTorch sees a GPU (asked in a subprocess so this process never imports torch)."""
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
