"""GPU slot picker for local multi-GPU runs (paibench/gpu_slots.py), driven by a fake device count."""

import os
import subprocess
import sys
import textwrap

import pytest

from paibench import gpu_slots
from paibench.errors import PaibenchError


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PAIBENCH_GPU_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


def test_fake_count_and_bad_value(monkeypatch):
    monkeypatch.setenv("PAIBENCH_FAKE_GPU_COUNT", "3")
    assert gpu_slots.visible_gpu_count() == 3
    monkeypatch.setenv("PAIBENCH_FAKE_GPU_COUNT", "two")
    with pytest.raises(PaibenchError, match="PAIBENCH_FAKE_GPU_COUNT.*'two'"):
        gpu_slots.visible_gpu_count()


def test_slots_are_exclusive_until_released(env):
    a, fa = gpu_slots.acquire(2, env)
    b, fb = gpu_slots.acquire(2, env)
    assert (a, b) == (0, 1)
    with pytest.raises(PaibenchError, match="all 2 GPU slots"):
        gpu_slots.acquire(2, env, timeout=0.2, poll=0.05)
    gpu_slots.release(fa)
    c, fc = gpu_slots.acquire(2, env, timeout=0)
    assert c == 0  # the freed slot is reused
    gpu_slots.release(fb)
    gpu_slots.release(fc)


def test_context_sets_distinct_devices_and_restores(env, monkeypatch):
    monkeypatch.setenv("PAIBENCH_FAKE_GPU_COUNT", "2")
    held, fd = gpu_slots.acquire(2, env)  # another job holds slot 0
    messages = []
    with gpu_slots.gpu_slot(log=messages.append) as slot:
        assert slot == 1
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert any("CUDA_VISIBLE_DEVICES=1" in m for m in messages)
    gpu_slots.release(fd)


def test_noop_when_pinned_or_single_gpu(env, monkeypatch):
    monkeypatch.setenv("PAIBENCH_FAKE_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # e.g. set by SLURM for a --gpus job
    with gpu_slots.gpu_slot() as slot:
        assert slot is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PAIBENCH_FAKE_GPU_COUNT", "1")
    with gpu_slots.gpu_slot() as slot:
        assert slot is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_lock_dies_with_its_process(env):
    """A killed job never leaks its GPU: the kernel drops the flock when the holder exits."""
    code = textwrap.dedent(f"""
        import sys
        from paibench import gpu_slots
        slot, fd = gpu_slots.acquire(2, {str(env)!r})
        print(slot, flush=True)
        sys.stdin.read()
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"
        slot, fd = gpu_slots.acquire(2, env, timeout=0)
        assert slot == 1  # slot 0 is held by the other process
        gpu_slots.release(fd)
    finally:
        holder.kill()
        holder.wait()
    slot, fd = gpu_slots.acquire(2, env, timeout=0)
    assert slot == 0
    gpu_slots.release(fd)


def test_concurrent_processes_get_different_slots(env):
    """Four jobs on a fake 2-GPU machine: at most two hold a GPU at once and never the same one."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from paibench import gpu_slots
        with gpu_slots.gpu_slot() as slot:
            log = open({str(env.parent / 'events')!r}, 'a')
            print(f"start {{slot}} {{os.environ['CUDA_VISIBLE_DEVICES']}}", file=log, flush=True)
            time.sleep(0.4)
            print(f"end {{slot}}", file=log, flush=True)
    """)
    envs = {**os.environ, "PAIBENCH_FAKE_GPU_COUNT": "2"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=envs) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4
    busy = set()
    starts = 0
    for line in (env.parent / "events").read_text().splitlines():
        kind, slot, *rest = line.split()
        if kind == "start":
            assert slot not in busy and rest == [slot]  # CUDA_VISIBLE_DEVICES matches the claimed slot
            busy.add(slot)
            starts += 1
        else:
            busy.remove(slot)
    assert starts == 4 and not busy
