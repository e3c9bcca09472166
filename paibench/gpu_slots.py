"""One GPU per local job: Snakemake limits how many GPU jobs run at once but never says *which* GPU.

``paibench train`` claims a free slot (an exclusive ``flock`` on ``<lock dir>/gpu<i>.lock``) and sets
``CUDA_VISIBLE_DEVICES=<i>`` before CUDA is initialised, so concurrent local jobs land on different GPUs.
The kernel drops a lock when its process dies, so a killed job never leaks a slot. Nothing happens when
``CUDA_VISIBLE_DEVICES`` is already set (SLURM sets it for ``--gpus`` jobs; a user may pin one) or when
fewer than two GPUs are visible.

``PAIBENCH_FAKE_GPU_COUNT`` overrides the device count (tests); ``PAIBENCH_GPU_LOCK_DIR`` the lock
directory (default: a per-user folder in the system temp directory, shared by all jobs on the machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from paibench.errors import PaibenchError


def _torch_has_cuda() -> bool:
    """Whether the installed torch is a CUDA build, read from its files (importing torch takes seconds, and
    the workflow asks this while parsing)."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return any(lib.glob("libtorch_cuda*")) or any(lib.glob("torch_cuda*.dll"))


def _visible(listing: str, present: int | None) -> int:
    """GPUs named by CUDA_VISIBLE_DEVICES (indices or UUIDs; enumeration stops at the first invalid entry)."""
    count = 0
    for entry in listing.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-") or (entry.isdigit() and present is not None and int(entry) >= present):
            break
        count += 1
    return count


def visible_gpu_count() -> int:
    """GPUs this process may use, without importing torch or initialising CUDA (so CUDA_VISIBLE_DEVICES can
    still change): the NVIDIA driver's device list, narrowed by CUDA_VISIBLE_DEVICES; 0 for a CPU build of
    torch."""
    fake = os.environ.get("PAIBENCH_FAKE_GPU_COUNT")
    if fake is not None:
        try:
            return max(0, int(fake))
        except ValueError:
            raise PaibenchError(f"PAIBENCH_FAKE_GPU_COUNT: {fake!r} is not an integer; expected a count >= 0") from None
    if not _torch_has_cuda():
        return 0
    driver = Path("/proc/driver/nvidia/gpus")
    present = len(list(driver.iterdir())) if driver.is_dir() else None
    listing = os.environ.get("CUDA_VISIBLE_DEVICES")
    if present is None:  # no Linux NVIDIA driver listing: ask torch (device_count() asks NVML, no CUDA context)
        import torch

        return torch.cuda.device_count()
    return present if listing is None else _visible(listing, present)


def lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"paibench-gpu-slots-{os.getuid()}"
    return Path(os.environ.get("PAIBENCH_GPU_LOCK_DIR") or default)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a human looking at the folder
    return fd


def acquire(count: int, directory: Path | None = None, timeout: float | None = None,
            poll: float = 0.5, log: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Claim the lowest free slot of ``count``; returns ``(slot, fd)``. Holding ``fd`` open holds the slot.

    Waits while all slots are busy (another program may use the same lock folder beyond Snakemake's own
    limit); raises PaibenchError after ``timeout`` seconds if one is given.
    """
    if count < 1:
        raise PaibenchError(f"gpu slots: count {count} is not allowed; expected at least 1")
    directory = Path(directory or lock_dir())
    directory.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    announced = False
    while True:
        for slot in range(count):
            fd = _try_lock(directory / f"gpu{slot}.lock")
            if fd is not None:
                return slot, fd
        if timeout is not None and time.monotonic() - start >= timeout:
            raise PaibenchError(f"gpu slots: all {count} GPU slots in {directory} stayed busy for {timeout:g} s")
        if log and not announced:
            log(f"all {count} GPU slots in {directory} are busy; waiting for one")
            announced = True
        time.sleep(poll)


def release(fd: int) -> None:
    os.close(fd)  # closing the only descriptor drops the flock


@contextlib.contextmanager
def gpu_slot(log: Callable[[str], None] | None = None, directory: Path | None = None) -> Iterator[int | None]:
    """Pin this process to one free GPU for the duration of the block; yields the slot or None."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        yield None
        return
    count = visible_gpu_count()
    if count < 2:
        yield None
        return
    slot, fd = acquire(count, directory, log=log)
    os.environ["CUDA_VISIBLE_DEVICES"] = str(slot)
    if log:
        log(f"gpu slot {slot} of {count}: CUDA_VISIBLE_DEVICES={slot}")
    try:
        yield slot
    finally:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        release(fd)
