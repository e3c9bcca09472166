"""One command for a visit to a GPU machine: everything it measures lands in one archive plus one log.

    python benchmarks/gpu_visit.py --out DIR [--cifar-dir DIR] [--budget-min 9] [--commit SHA]

Steps, in order of value, each started only while the time budget (``--budget-min``, from the start of
the command) allows, and each stopped cleanly when it runs out, so the archive is always written:

  environment   GPU, driver (nvidia-smi), torch/CUDA/cuDNN versions, git commit, the command line
  pytest_cuda   ``pytest -m cuda tests/test_cuda.py`` (log, JUnit XML, the tests' measurements as JSON lines)
  bench_train   benchmarks/bench_train.py: VGG-16 on CIFAR-10 from the JPEG archives, reference-style loop
                vs engine, and 1 vs 8 packed ResNet-20; plus the engine's share of the GPU's bf16 peak
  force_vgg19   FORCE with T = 300 on VGG-19 (vgg19_force), CIFAR-10, compression 100, timed on CUDA
  validation    as much of config/validation/cifar10.yaml as the remaining minutes allow, with Snakemake
                when it is importable: runs in priority order (claim 1 on VGG-16, then claim 2, claim 3,
                then MiCA on ResNet-20; per experiment seed by seed, the dense reference first, then the
                highest compression first), a few runs per Snakemake call (``--chunk``; the masks of the
                next few are made on the free CPU cores meanwhile). Finished runs of earlier visits
                (``--previous``, default results/validation/cifar10) are copied in first and reused; a
                run that fails is not retried within the visit.

Output: ``DIR/gpu_visit.tar.gz`` and ``DIR/gpu_visit.log``. The archive mirrors the repository, so
``tar xzf DIR/gpu_visit.tar.gz`` in the checkout's root puts everything where it belongs:

  results/benchmarks/gpu_visit-<UTC stamp>/   environment.json, steps.json, steps.md, pytest_cuda.{log,xml},
                                              cuda_report.jsonl, train_gpu.{md,json}, force_vgg19.json, logs
  results/validation/cifar10/                 runs/ (metrics.json, eval.json, epochs.csv; no weights),
                                              masks/ (statistics JSON; no masks), tables/, figures/,
                                              visits/<stamp>.json (hardware, commit, command, budget, runs)

At the end a table (step, status, seconds, key figure) is printed and kept in the archive (steps.md/.json).

``--smoke`` runs every step at toy size (a synthetic 10-class 32x32 JPEG set built in a temporary folder,
1 epoch, FORCE with T = 3, one validation run and its tables but no figures; the CUDA tier, which only
skips on the CPU, is left out on a GPU), on CUDA when there is one and else on the CPU, in under a minute on 2 CPU cores; its results go to
gpu_visit_smoke-<stamp>/ and validation/cifar10-smoke/.
Without ``--smoke`` and without CUDA the GPU steps report 'skipped (no cuda)'.

Recipe for a lent GPU machine (torch 2.11, torchvision 0.26, torch-geometric 2.8, pandas, seaborn,
pytest, psutil and pyyaml are there; Snakemake and jsonschema are not, and it has no internet):

1. Here, once, in the repository root: bring the wheels the GPU machine lacks into ``.whl/`` (git-ignored).
   These are Snakemake 9.27.1 and the packages it needs that the GPU image does not have (pulp is left out:
   this script runs Snakemake with ``--scheduler greedy``). connection-pool 0.0.3 has no wheel on the index,
   so it is built from its sdist (pure Python)::

     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \\
       snakemake==9.27.1 snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0 \\
       snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0 \\
       snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1 \\
       annotated-types==0.8.0 argparse-dataclass==2.0.0 conda-inject==1.3.2 configargparse==1.9.0 \\
       docutils==0.22.4 dpath==2.2.0 fastjsonschema==2.22.3 gitdb==4.0.12 gitpython==3.2.1 greenlet==3.5.6 \\
       humanfriendly==10.0 immutables==0.21 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \\
       jupyter-core==5.9.1 nbformat==5.11.1 platformdirs==4.14.7 pydantic==2.14.3 pydantic-core==2.50.4 \\
       referencing==0.37.0 rpds-py==2026.9.1 smart-open==7.7.1 smmap==5.0.3 sqlalchemy==2.0.58 \\
       sqlmodel==0.0.37 tenacity==9.2.1 throttler==1.2.3 traitlets==5.16.1 typing-inspection==0.4.5 yte==1.9.4
     python3 -m pip wheel --no-deps -w .whl connection-pool==0.0.3

   (about 10 MB; ``.venv/bin/pip show snakemake`` lists Snakemake's direct needs if the versions move).

2. Copy the CIFAR-10 JPEG archives (``train.tar.xz``, ``test.tar.xz``, 18 MB; see ../shared/data/README.md)
   into a git-ignored folder of the checkout, which is carried along: ``resources/`` is ignored already::

     mkdir -p resources/cifar10-jpeg && cp ../shared/data/cifar10-jpeg/*.tar.xz resources/cifar10-jpeg/

3. On the GPU machine (carry: ``.whl`` and ``resources/cifar10-jpeg``), install the wheels without an index::

     python3 -m pip install -q --no-index --no-deps --no-compile --target .gpu/site .whl/*.whl
     export PYTHONPATH=$PWD/.gpu/site:$PWD

   (or into the machine's own environment with ``pip install --no-index --find-links .whl snakemake``, which
   resolves Snakemake's requirements and so also needs ``pulp==3.3.2``, 16 MB, in ``.whl``), then run this
   script; ``--cifar-dir`` defaults to resources/cifar10-jpeg when it exists. Where one command may
   run only 10 minutes, start it detached and collect it with ``--collect`` (benchmarks/GPU_VISIT.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("environment", "pytest_cuda", "bench_train", "force_vgg19", "validation")
ARCHIVE, LOG = "gpu_visit.tar.gz", "gpu_visit.log"
# Priority inside the validation grid (issue 13): claim 1 on VGG-16, claim 2, claim 3, then the rest.
PRIORITY = ("mica_vgg16", "force_vgg19", "rreg_vgg16", "mica_resnet20")
# Longest each step may run on a real visit, as a share of --budget-min (9 min: 2.0, 3.6 and 1.1 min); validation
# takes whatever is left. Shares, not minutes: a lent machine's session now has 15 minutes of device time in all.
CAPS_SHARE = {"pytest_cuda": 0.22, "bench_train": 0.40, "force_vgg19": 0.12}
# Datasheet dense bf16 tensor-core peaks (TFLOP/s), matched in this order against the device name.
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
                    ("GH200", 989.4), ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0))
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SKIP_FILES = (".safetensors", ".pt", ".ckpt")  # weights, masks and checkpoints never travel back


# ------------------------------------------------------------------------------------------- helpers
def child_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _descendants(pid: int) -> list:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 (psutil missing or the process is gone)
        return []


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL, to a process this script started, its process group and its descendants."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        kids = _descendants(proc.pid)
        try:
            os.killpg(proc.pid, sig)  # started with start_new_session: its group id is its pid
        except (ProcessLookupError, PermissionError):
            pass
        for kid in kids:
            try:
                kid.send_signal(sig)
            except Exception:  # noqa: BLE001 (already gone)
                pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if not any(_alive(k) for k in kids):
            return


def _alive(proc) -> bool:
    try:
        return proc.is_running() and proc.status() != "zombie"
    except Exception:  # noqa: BLE001
        return False


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


# ------------------------------------------------------------------------------------------ the visit
class Visit:
    def __init__(self, args):
        self.args = args
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget_min * 60
        self.reserve = 15.0 if args.smoke else 90.0  # kept back for the tables and the archive
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in (self.out / ARCHIVE, self.out / LOG):
            stale.unlink(missing_ok=True)
        self.logf = open(self.out / LOG, "w")
        self.work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="gpu_visit-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.stage = self.work / "stage"
        self.tmp = self.work / "tmp"
        self.tmp.mkdir(exist_ok=True)
        prefix = "gpu_visit_smoke" if args.smoke else "gpu_visit"
        self.bench = self.stage / "results" / "benchmarks" / f"{prefix}-{self.stamp}"
        self.val_name = "cifar10-smoke" if args.smoke else "cifar10"
        self.val = self.stage / "results" / "validation" / self.val_name
        self.bench.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        self.env: dict = {}
        self.cuda = False
        self.cifar: Path | None = None

    # ------------------------------------------------------------------------------------ plumbing
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, msg: str) -> None:
        line = f"[{self.elapsed():7.1f}s] {msg}"
        print(line, flush=True)
        self.logf.write(line + "\n")
        self.logf.flush()

    def run(self, cmd: list, name: str, timeout: float, cwd: Path = REPO, env: dict | None = None) -> tuple[int, bool]:
        """Run ``cmd`` with its output in ``<bench>/<name>.log``; returns (exit code, timed out)."""
        timeout = max(1.0, timeout)
        env = dict(env or child_env())
        env.setdefault("TMPDIR", str(self.tmp))  # bench_train and pytest leave their scratch files in the work folder
        if self.args.smoke:
            env.setdefault("OMP_NUM_THREADS", "1")  # toy sizes: one thread each beats oversubscribed cores
        self.log(f"{name}: {shlex.join(str(c) for c in cmd)} (limit {timeout:.0f}s)")
        with open(self.bench / f"{name}.log", "a") as out:
            proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                return proc.wait(timeout=timeout), False
            except subprocess.TimeoutExpired:
                self.log(f"{name}: time is up after {timeout:.0f}s; stopping it")
                stop_process(proc)
                return proc.returncode if proc.returncode is not None else -9, True
            except BaseException:
                stop_process(proc, grace=5)
                raise

    def tail(self, name: str, lines: int = 15) -> None:
        path = self.bench / f"{name}.log"
        if path.exists():
            for line in path.read_text(errors="replace").splitlines()[-lines:]:
                self.log(f"  | {line}")

    def limit(self, step: str) -> float:
        cap = CAPS_SHARE.get(step)
        left = self.remaining() - self.reserve
        return min(left, cap * self.args.budget_min * 60) if cap and not self.args.smoke else left

    def step(self, name: str, fn, needs_cuda: bool = False) -> None:
        started = time.monotonic()
        if name in (self.args.skip or []):
            status, key = "skipped (--skip)", ""
        elif needs_cuda and not self.cuda and not self.args.smoke:
            status, key = "skipped (no cuda)", ""
        elif self.limit(name) < (5 if self.args.smoke else 30):
            status, key = "skipped (budget)", f"{self.remaining():.0f}s left"
        else:
            self.log(f"=== {name}")
            try:
                status, key = fn()
            except Exception as exc:  # noqa: BLE001 (one step's failure must not cost the archive)
                status, key = "error", f"{type(exc).__name__}: {exc}"[:300]
        row = {"step": name, "status": status, "seconds": round(time.monotonic() - started, 1), "key": key}
        self.rows.append(row)
        self.log(f"{name}: {status} ({row['seconds']}s) {key}")

    # ---------------------------------------------------------------------------------- the steps
    def step_environment(self):
        probe = self.bench / "probe.json"
        rc, _ = self.run([sys.executable, __file__, "--probe-env", probe], "environment", min(120, self.limit("x")))
        env = json.loads(probe.read_text()) if probe.exists() else {"probe_error": f"exit code {rc}"}
        probe.unlink(missing_ok=True)
        env.update({
            "stamp_utc": self.stamp, "command": shlex.join([sys.executable, *sys.argv]), "cwd": os.getcwd(),
            "budget_min": self.args.budget_min, "smoke": self.args.smoke, "host": socket.gethostname(),
            "platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "commit": self.commit(), "cifar_dir": str(self.cifar) if self.cifar else None,
            "snakemake": _version("snakemake"), "jsonschema": _version("jsonschema"),
            "nvidia_smi": _nvidia_smi(),
        })
        self.env = env
        self.cuda = bool(env.get("cuda_available"))
        (self.bench / "environment.json").write_text(json.dumps(env, indent=2, default=str) + "\n")
        gpu = env.get("gpus", [{}])[0].get("name") if env.get("gpus") else "no cuda"
        return "ok", f"{gpu}; torch {env.get('torch')} (cuda {env.get('torch_cuda')}); commit {env['commit'][:12]}"

    def commit(self) -> str:
        if self.args.commit:
            return self.args.commit
        try:
            sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                 timeout=20, check=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=20).stdout.strip()
            return sha + (" (uncommitted changes)" if dirty else "")
        except Exception:  # noqa: BLE001 (no git, or a copy without .git, as on a lent GPU machine)
            return "unknown (no git here; pass --commit)"

    def step_pytest(self):
        if self.args.smoke and self.cuda:  # on the CPU the tier only skips (3 s): the smoke checks the step itself
            return "skipped (smoke)", "the full visit runs the CUDA tier"
        xml = self.bench / "pytest_cuda.xml"
        env = child_env({"PAIBENCH_CUDA_REPORT": str(self.bench / "cuda_report.jsonl")})
        # -v: a test's result is in the log as it ends, so a tier stopped by its time limit still shows how far it got
        rc, timed_out = self.run([sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-v", "-rA",
                                  "--durations=10", "-p", "no:cacheprovider", f"--junitxml={xml}"], "pytest_cuda",
                                 self.limit("pytest_cuda"), env=env)
        counts = _junit_counts(xml)
        key = ", ".join(f"{v} {k}" for k, v in counts.items()) if counts else "no JUnit report"
        self.tail("pytest_cuda", 8)
        if timed_out:
            return "timeout", key
        return ("ok" if rc == 0 else f"failed (exit {rc})"), key

    def step_bench(self):
        smoke = self.args.smoke
        device = "cuda" if self.cuda else "cpu"
        name = "train_smoke" if smoke else "train_gpu"
        cmd = [sys.executable, REPO / "benchmarks" / "bench_train.py", "--device", device,
               "--data-dir", self.cifar, "--arch", "vgg16", "--pack", "8", "--pack-arch", "resnet20",
               "--epochs", str(self.args.bench_epochs), "--out", self.bench / name]
        if smoke:
            cmd += ["--width", "0.125", "--pack", "2", "--pack-width", "0.25", "--epochs", "1", "--batch-size", "16",
                    "--workers", "0", "--threads", "1"]
        rc, timed_out = self.run(cmd, "bench_train", self.limit("bench_train"))
        result = self.bench / f"{name}.json"
        if timed_out or rc != 0 or not result.exists():
            self.tail("bench_train")
            return ("timeout" if timed_out else f"failed (exit {rc})"), ""
        data = json.loads(result.read_text())
        rows = {r[0].split(" (")[0]: r for r in data["rows"]}
        parts = []
        if "paibench engine" in rows:
            parts.append(f"engine {rows['paibench engine'][4]}")
        packed = [r for k, r in rows.items() if k.endswith("packed runs")]
        if packed:
            parts.append(f"pack {packed[0][4]}")
        if self.cuda and "paibench engine" in rows and not smoke:
            share = self.bf16_share(rows["paibench engine"][1])
            data["bf16_peak"] = share
            result.write_text(json.dumps(data, indent=2, default=float) + "\n")
            if share.get("ratio"):
                parts.append(f"bf16 peak / engine = {share['ratio']:.1f}x")
        return "ok", "; ".join(parts)

    def bf16_share(self, images_per_s: float) -> dict:
        """The engine's training FLOP rate against the GPU's datasheet bf16 peak (dense, tensor cores)."""
        out = self.bench / "flops.json"
        self.run([sys.executable, __file__, "--count-flops", out], "flops", min(120, self.limit("x")))
        if not out.exists():
            return {}
        flops = json.loads(out.read_text())
        out.unlink()
        name = (self.env.get("gpus") or [{}])[0].get("name", "")
        peak = next((tf for key, tf in BF16_PEAK_TFLOPS if key in name), None)
        achieved = images_per_s * flops["train_flops_per_image"] / 1e12
        return {**flops, "gpu": name, "images_per_s": images_per_s, "achieved_tflops": achieved,
                "peak_bf16_tflops": peak, "ratio": (peak / achieved) if peak and achieved else None,
                "note": "engine images/s of its last epoch (evaluation included) x FLOPs of one dense training "
                        "step per image (forward + backward, torch.utils.flop_counter), against the datasheet "
                        "dense bf16 peak"}

    def step_force(self):
        smoke = self.args.smoke
        out = self.bench / ("force_smoke.json" if smoke else "force_vgg19.json")
        cmd = [sys.executable, __file__, "--force-step", out, "--cifar-dir", self.cifar,
               "--device", "cuda" if self.cuda else "cpu", "--T", "3" if smoke else str(self.args.force_T),
               "--force-width", "0.125" if smoke else "1"]
        rc, timed_out = self.run(cmd, "force_vgg19", self.limit("force_vgg19"))
        if timed_out or rc != 0 or not out.exists():
            self.tail("force_vgg19")
            return ("timeout" if timed_out else f"failed (exit {rc})"), ""
        r = json.loads(out.read_text())
        goal = "" if smoke else f" (goal < 30 s: {'met' if r['seconds'] < 30 else 'missed'})"
        return "ok", f"T={r['T']} on {r['device']}: {r['seconds']:.1f}s{goal}; effective compression {_num(r.get('effective_compression'))}"

    # --------------------------------------------------------------------------------- validation
    def step_validation(self):
        if importlib.util.find_spec("snakemake") is None:
            return "skipped (no snakemake)", "bring the wheels (see this script's docstring)"
        import yaml

        from paibench.config import Grid

        wd = self.work / "validation"
        wd.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((REPO / self.args.config).read_text())
        for entry in config.get("datasets", {}).values():
            if isinstance(entry, dict) and entry.get("type") == "imagefolder":
                entry["path"] = str(self.cifar)
        if self.args.smoke:
            config = smoke_config(config)
        config_file = wd / "config.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        grid = Grid(config, base_dir=wd)
        restored = self.restore(wd)
        runs = sorted(grid.runs, key=priority_key(config))
        done = lambda r: (wd / r.run_dir / "metrics.json").exists() and (wd / r.run_dir / "eval.json").exists()  # noqa: E731
        before = {r.key for r in runs if done(r)}
        todo = [r for r in runs if not done(r)]
        self.log(f"validation: {len(runs)} runs in the grid, {len(before)} finished already "
                 f"({restored} restored from earlier visits), {len(todo)} to go")
        bindir = wd / "bin"
        bindir.mkdir(exist_ok=True)
        shim = bindir / "paibench"  # the workflow's jobs call `paibench`; it need not be installed
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m paibench \"$@\"\n")
        shim.chmod(0o755)
        env = child_env({"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"})
        cores = self.args.cores or ("1" if self.args.smoke else "all")
        chunk = max(1, self.args.chunk)
        calls, status, failed, fruitless = [], "ok", set(), 0
        while True:
            # Each call targets the next chunk (prioritised: its masks and trainings go first) and the chunk
            # after it, whose masks are made on the free CPU cores while the GPU trains the first one.
            todo = [r for r in runs if not done(r) and r.key not in failed]
            if not todo:
                break
            left = self.remaining() - self.reserve
            if left < (10 if self.args.smoke else 120):
                status = "partial (budget)"
                break
            first, ahead = todo[:chunk], todo[chunk : 2 * chunk]
            targets = [f"{r.run_dir}/eval.json" for r in first]
            cmd = [sys.executable, "-m", "snakemake", "-s", REPO / "Snakefile", "-d", wd, "--configfile", config_file,
                   "--cores", cores, "--scheduler", "greedy", "--rerun-incomplete", "--keep-going", "--nolock",
                   *targets, *[f"{r.run_dir}/eval.json" for r in ahead], "--prioritize", *targets]
            finished_before = sum(done(r) for r in runs)
            rc, timed_out = self.run(cmd, "validation_snakemake", left, cwd=wd, env=env)
            calls.append({"runs": [r.key for r in first], "ahead": [r.key for r in ahead], "exit": rc,
                          "timed_out": timed_out})
            if timed_out:
                status = "partial (budget)"
                break
            failed |= {r.key for r in first if not done(r)}  # never retried in this visit (see its log)
            if rc != 0:
                self.tail("validation_snakemake")
                fruitless = fruitless + 1 if sum(done(r) for r in runs) == finished_before else 0
                if fruitless >= 2:
                    status = f"failed (snakemake exit {rc}, twice without a finished run)"
                    break
        if failed and status == "ok":
            status = f"ok, {len(failed)} runs failed"
        finished = [r for r in runs if (wd / r.run_dir / "metrics.json").exists()]
        new = [r.key for r in finished if r.key not in before and done(r)]
        self.collect_validation(wd, grid, finished)
        visit = {
            "stamp_utc": self.stamp, "command": shlex.join([sys.executable, *sys.argv]), "commit": self.commit(),
            "config": self.args.config, "budget_min": self.args.budget_min, "status": status,
            "hardware": {k: self.env.get(k) for k in ("gpus", "nvidia_smi", "torch", "torch_cuda", "cudnn",
                                                       "host", "cpu_count")},
            "runs_in_grid": len(runs), "finished": len(finished), "restored": restored,
            "new_runs": new, "failed_runs": sorted(failed), "snakemake_calls": calls,
        }
        (self.val / "visits").mkdir(parents=True, exist_ok=True)
        (self.val / "visits" / f"{self.stamp}.json").write_text(json.dumps(visit, indent=2, default=str) + "\n")
        return status, f"{len(finished)}/{len(runs)} runs done ({len(new)} this visit, {restored} from earlier visits)"

    def restore(self, wd: Path) -> int:
        prev = self.args.previous
        if prev is None:
            prev = None if self.args.smoke else str(REPO / "results" / "validation" / self.val_name)
        if not prev or not Path(prev).is_dir():
            return 0
        count = restore_runs(Path(prev), wd)
        self.log(f"validation: restored {count} finished runs from {prev}")
        return count

    def collect_validation(self, wd: Path, grid, finished: list) -> None:
        """Runs (no weights), mask statistics, and tables/figures rebuilt from every finished run."""
        for r in finished:
            for name in ("metrics.json", "eval.json", "epochs.csv"):
                src = wd / r.run_dir / name
                if src.exists():
                    dst = self.val / "runs" / Path(r.run_dir).relative_to("results/runs") / name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
            stats = (wd / r.mask).with_suffix(".json")
            if stats.exists():
                dst = self.val / "masks" / stats.relative_to(wd / "results" / "masks")
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(stats, dst)
        for log in sorted((wd / "logs").rglob("*.log")) if (wd / "logs").is_dir() else []:
            if log.stat().st_size < 2**20:  # the jobs' own logs (prepare, mask, train, evaluate), for failed runs
                dst = self.bench / "validation_logs" / log.relative_to(wd / "logs")
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(log, dst)
        if not finished:
            return
        listing = wd / "finished-metrics.txt"
        listing.write_text("".join(f"{r.run_dir}/metrics.json\n" for r in finished))
        papers: dict[str, list[str]] = {}
        for exp, names in grid.papers.items():
            for p in names:
                papers.setdefault(p, []).append(exp)
        definition = grid.config.get("figures", {}).get("effective_definition", "paths")
        spec = {"listing": str(listing), "out": str(self.val), "papers": papers, "definition": definition,
                "experiments": sorted({r.experiment for r in finished}), "figures": not self.args.smoke}
        self.run([sys.executable, __file__, "--tables-step", json.dumps(spec)], "validation_tables",
                 max(30.0, min(300.0, self.remaining() - 10)), cwd=wd)

    # ------------------------------------------------------------------------------------ the end
    def finish(self) -> Path:
        head = ["step", "status", "seconds", "key figure"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += [f"| {r['step']} | {r['status']} | {r['seconds']} | {r['key']} |" for r in self.rows]
        table = "\n".join(lines)
        meta = {"stamp_utc": self.stamp, "smoke": self.args.smoke, "budget_min": self.args.budget_min,
                "total_s": round(self.elapsed(), 1), "steps": self.rows}
        (self.bench / "steps.json").write_text(json.dumps(meta, indent=2) + "\n")
        (self.bench / "steps.md").write_text(f"# GPU visit {self.stamp}\n\n{table}\n\nTotal {meta['total_s']} s of a "
                                             f"{self.args.budget_min:g}-minute budget.\n")
        self.log("summary:\n" + table)
        shutil.copy2(self.out / LOG, self.bench / LOG)
        tmp = self.out / f".{ARCHIVE}.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for f in sorted(self.stage.rglob("*")):
                if f.is_file() and not f.name.endswith(SKIP_FILES):
                    tar.add(f, arcname=str(f.relative_to(self.stage)))
        tmp.replace(self.out / ARCHIVE)  # appears whole: --collect waits for it
        size = (self.out / ARCHIVE).stat().st_size
        self.log(f"archive: {self.out / ARCHIVE} ({size / 2**20:.2f} MiB); unpack in the repository root with "
                 f"`tar xzf {ARCHIVE}`; total {self.elapsed():.1f}s")
        if size > 15 * 2**20:
            self.log("warning: the archive is over 15 MiB; a lent machine returns files of at most 16 MiB")
        self.logf.close()
        return self.out / ARCHIVE


def restore_runs(prev: Path, wd: Path) -> int:
    """Copy the runs and mask statistics of earlier visits (``prev``: a results/validation/<name> folder)
    into the Snakemake work folder ``wd``, never over an existing file and never weights or masks; returns the
    number of finished runs (metrics.json files) copied. A run whose metrics exist while its mask does not is
    a cached result for the workflow (workflow/rules/common.smk: cached_result), so it is not trained again.
    """
    count = 0
    for sub in ("runs", "masks"):
        src = prev / sub
        if not src.is_dir():
            continue
        for f in sorted(src.rglob("*")):
            if not f.is_file() or f.name.endswith(SKIP_FILES):
                continue
            dst = wd / "results" / sub / f.relative_to(src)
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst)
                count += sub == "runs" and f.name == "metrics.json"
    return count


def priority_key(config: dict):
    names = list(config.get("experiments", {}))
    order = [e for e in PRIORITY if e in names] + [e for e in names if e not in PRIORITY]

    def key(run):
        dense = run.method == "dense" or run.compression == "1"
        return (order.index(run.experiment), run.seed, not dense, -float(run.compression), run.method, run.arch)

    return key


def smoke_config(config: dict) -> dict:
    """The validation config at toy size: its first experiment by priority, one method, one ratio, 1 epoch."""
    names = list(config["experiments"])
    name = next((e for e in PRIORITY if e in names), names[0])
    exp = dict(config["experiments"][name])
    arch = exp["archs"][0]
    arch = {"name": arch if isinstance(arch, str) else arch["name"], "width": 0.125}
    method = next(m for m in exp["methods"] if (m if isinstance(m, str) else m.get("name")) != "dense")
    exp.update(archs=[arch], methods=[method], compressions=[10], seeds=[0])
    exp.pop("pack", None)
    return {**config, "experiments": {name: exp},
            "train": {**config.get("train", {}), "epochs": 1, "batch_size": 32, "device": "auto"},
            "resources": {**config.get("resources", {}), "train_threads": 1, "mask_threads": 1}}


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001
        return None


def _nvidia_smi() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm",
                               "--format=csv"], capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:  # noqa: BLE001
        return f"nvidia-smi failed: {exc}"


def _junit_counts(xml: Path) -> dict:
    if not xml.exists():
        return {}
    import xml.etree.ElementTree as ET

    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return {}
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    return {"passed": passed, "failed": n["failures"], "errors": n["errors"], "skipped": n["skipped"]}


def synthetic_cifar(root: Path, train_per_class: int = 6, test_per_class: int = 2) -> Path:
    """A CIFAR-10-shaped JPEG set (10 classes, 32x32 RGB) as train.tar.xz/test.tar.xz, for --smoke."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    staging = root / "unpacked"
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c, cls in enumerate(CIFAR_CLASSES):
            folder = staging / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.zeros((32, 32, 3), dtype=np.uint8)
                base[..., c % 3] = 40 + 20 * c  # a class-dependent colour, plus noise
                img = np.clip(base + rng.integers(0, 60, size=(32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i:04d}.jpg", quality=90)
        with tarfile.open(root / f"{split}.tar.xz", "w:xz") as tar:
            tar.add(staging / split, arcname=split)
    shutil.rmtree(staging)
    return root


# ------------------------------------------------------------------------------- subprocess helpers
def probe_env(out: Path) -> None:
    import torch

    info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "gpus": []}
    try:
        info["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001
        info["cudnn"] = None
    if info["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                                 "memory_gib": round(p.total_memory / 2**30, 1),
                                 "multiprocessors": p.multi_processor_count, "uuid": str(getattr(p, "uuid", ""))})
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        info["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    for name in ("torchvision", "torch_geometric", "numpy", "pandas", "triton"):
        info[name] = _version(name.replace("_", "-"))
    out.write_text(json.dumps(info, indent=2))


def count_flops(out: Path) -> None:
    """FLOPs of one training step (forward + backward) of dense VGG-16 per 32x32 CIFAR image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from paibench.data.base import DatasetInfo
    from paibench.models import build_model

    info = DatasetInfo("cifar10", "image", 10, 3, (32, 32))
    model = build_model("vgg16", info, 1.0, {})
    x = torch.randn(4, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    total = counter.get_total_flops() / 4
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            model(x)
    out.write_text(json.dumps({"arch": "vgg16", "train_flops_per_image": total,
                               "forward_flops_per_image": fwd.get_total_flops() / 4}))


def force_step(args) -> None:
    import torch

    from paibench.data import DATASETS, load_prepared, save_prepared
    from paibench.pruning import make_mask

    tmp = Path(tempfile.mkdtemp(prefix="gpu_visit-force-"))
    t0 = time.perf_counter()
    spec = DATASETS.get("imagefolder")
    save_prepared(spec.prepare(spec.parse_options({"path": str(args.cifar_dir)}), tmp), tmp / "data.pt")
    payload = load_prepared(tmp / "data.pt")
    prepare_s = time.perf_counter() - t0
    device = args.device
    if device == "cuda":  # context and cuDNN start-up are not FORCE's time
        x = torch.randn(8, 3, 32, 32, device="cuda")
        torch.nn.functional.conv2d(x, torch.randn(8, 3, 3, 3, device="cuda")).sum().item()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    stats = make_mask("imagefolder", "vgg19_force", "force", 100, 0, str(tmp / "force.safetensors"),
                      options={"T": args.T}, width=args.force_width, payload=payload, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    result = {"method": "force", "arch": "vgg19_force", "width": args.force_width, "T": args.T, "compression": 100,
              "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "seconds": seconds,
              "make_mask_reported_s": stats.get("seconds"), "prepare_data_s": prepare_s,
              "train_images": len(payload["y_train"]), "kept": stats.get("kept"),
              "effective_compression": stats.get("effective_compression"), "collapsed": stats.get("collapsed"),
              "torch": torch.__version__,
              "note": "wall time of paibench.pruning.make_mask (model build, FORCE, mask statistics, save), "
                      "CUDA context warmed up before timing"}
    Path(args.force_step).write_text(json.dumps(result, indent=2, default=str) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


def tables_step(spec_json: str) -> None:
    """Tables and figures of the finished validation runs (run in the Snakemake work folder)."""
    from paibench.cli import main

    spec = json.loads(spec_json)
    out = Path(spec["out"])
    listing, definition = spec["listing"], spec["definition"]
    calls = [["aggregate", "--metrics-list", listing, "--out-dir", out / "tables"]]
    if spec["papers"]:
        calls.append(["tables", "--metrics-list", listing, "--effective-definition", definition,
                      "--out-dir", out / "tables", *[x for p, exps in sorted(spec["papers"].items())
                                                      for x in ("--paper", f"{p}={','.join(exps)}")]])
    for exp in spec["experiments"] if spec["figures"] else []:  # not in --smoke (the slowest part, pure CPU)
        calls.append(["figures", "--metrics-list", listing, "--experiment", exp, "--masks-root", "results/masks",
                      "--effective-definition", definition, "--out-dir", out / "figures" / exp])
    if spec["figures"]:
        calls.append(["plot", "--runs", out / "tables" / "runs.csv",
                      "--out", out / "figures" / "accuracy_vs_compression.png"])
    failed = 0
    for argv in calls:
        argv = [str(a) for a in argv]
        try:
            rc = main(argv)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 (one table's failure must not stop the others)
            rc = f"{type(exc).__name__}: {exc}"
        print(f"paibench {argv[0]}: {'ok' if rc in (0, None) else rc}", flush=True)
        failed += rc not in (0, None)
    sys.exit(1 if failed else 0)


def collect(src: Path, into: Path, wait_s: float) -> int:
    """Wait (up to wait_s) for a detached visit in ``src`` to finish; copy its log, and archive once there."""
    deadline = time.monotonic() + wait_s
    while not (src / ARCHIVE).exists() and time.monotonic() < deadline:
        time.sleep(5)
    into.mkdir(parents=True, exist_ok=True)
    if (src / LOG).exists():
        shutil.copy2(src / LOG, into / LOG)
        print("\n".join((src / LOG).read_text(errors="replace").splitlines()[-60:]))
    if (src / ARCHIVE).exists():
        shutil.copy2(src / ARCHIVE, into / ARCHIVE)
        print(f"collected {into / ARCHIVE} ({(into / ARCHIVE).stat().st_size / 2**20:.2f} MiB)")
        return 0
    print(f"the visit in {src} is still running (no {ARCHIVE} yet); collect again")
    return 0


# --------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for gpu_visit.tar.gz and gpu_visit.log")
    p.add_argument("--cifar-dir", help="CIFAR-10 JPEG folder (train.tar.xz/test.tar.xz or train/ test/); default "
                                       "resources/cifar10-jpeg if present, else ../shared/data/cifar10-jpeg")
    p.add_argument("--budget-min", type=float, default=9.0,
                   help="minutes for the whole visit, archive included (default 9: one 10-minute command)")
    p.add_argument("--smoke", action="store_true", help="toy sizes, synthetic data, CPU if no CUDA (< 1 min)")
    p.add_argument("--commit", help="the commit being measured (default: git rev-parse HEAD, if git is here)")
    p.add_argument("--config", default="config/validation/cifar10.yaml", help="validation config (repo-relative)")
    p.add_argument("--previous", help="results of earlier visits to continue (default results/validation/cifar10; "
                                      "none in --smoke)")
    p.add_argument("--work", help="scratch folder (default: a new temporary folder)")
    p.add_argument("--bench-epochs", type=int, default=3, help="epochs of the training benchmark (default 3)")
    p.add_argument("--force-T", dest="force_T", type=int, default=300)
    p.add_argument("--chunk", type=int, default=3, help="validation runs per Snakemake call (priority order)")
    p.add_argument("--cores", help="Snakemake --cores (default all; 1 in --smoke)")
    p.add_argument("--skip", action="append", choices=STEPS, help="leave a step out (repeatable)")
    p.add_argument("--collect", metavar="SRC", help="wait for a detached visit writing to SRC and copy its log and "
                                                    "archive to --into")
    p.add_argument("--into", help="with --collect: where to copy (e.g. $OUT)")
    p.add_argument("--wait-s", type=float, default=0.0, help="with --collect: seconds to wait for the archive")
    # internal: the steps that import torch run in subprocesses of this script
    p.add_argument("--probe-env", help=argparse.SUPPRESS)
    p.add_argument("--count-flops", help=argparse.SUPPRESS)
    p.add_argument("--force-step", help=argparse.SUPPRESS)
    p.add_argument("--tables-step", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--T", type=int, default=300, help=argparse.SUPPRESS)
    p.add_argument("--force-width", type=float, default=1.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.probe_env:
        probe_env(Path(args.probe_env))
        return 0
    if args.count_flops:
        count_flops(Path(args.count_flops))
        return 0
    if args.force_step:
        force_step(args)
        return 0
    if args.tables_step:
        tables_step(args.tables_step)
        return 0
    if args.collect:
        if not args.into:
            raise SystemExit("--collect needs --into")
        return collect(Path(args.collect), Path(args.into), args.wait_s)
    if not args.out:
        raise SystemExit("--out is required")
    visit = Visit(args)
    try:
        if args.smoke and not args.cifar_dir:
            visit.cifar = synthetic_cifar(visit.work / "synthetic-cifar10")
        else:
            candidates = [args.cifar_dir] if args.cifar_dir else [REPO / "resources" / "cifar10-jpeg",
                                                                   REPO.parent / "shared" / "data" / "cifar10-jpeg"]
            visit.cifar = next((Path(c).resolve() for c in candidates if Path(c).is_dir()), None)
        visit.log(f"gpu_visit {visit.stamp}: budget {args.budget_min:g} min, out {visit.out}, work {visit.work}, "
                  f"data {visit.cifar}")
        visit.step("environment", visit.step_environment)
        if visit.cifar is None:
            for name in STEPS[1:]:
                if name == "pytest_cuda":
                    visit.step(name, visit.step_pytest, needs_cuda=True)
                else:
                    visit.rows.append({"step": name, "status": "skipped (no cifar-dir)", "seconds": 0.0,
                                       "key": "pass --cifar-dir (see the docstring)"})
        else:
            visit.step("pytest_cuda", visit.step_pytest, needs_cuda=True)
            visit.step("bench_train", visit.step_bench, needs_cuda=True)
            visit.step("force_vgg19", visit.step_force, needs_cuda=True)
            visit.step("validation", visit.step_validation, needs_cuda=True)
    except KeyboardInterrupt:
        visit.log("interrupted; writing the archive with what was measured")
    finally:
        visit.finish()
        if not args.work:
            shutil.rmtree(visit.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
