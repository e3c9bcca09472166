"""End to end on a real single-node SLURM cluster (.ci/slurm/start.sh) through workflow/profiles/slurm.

The cluster comes from, in order: PAIBENCH_SLURM_STATE (started by .ci/run), or this module starting one
with .ci/slurm/start.sh (root with slurm-wlm installed) and stopping it afterwards, even on failure.
Otherwise the tests skip with the reason, unless PAIBENCH_REQUIRE_SLURM=1 (CI), where they fail.

One SLURM run of a tiny grid, made once per pytest session even under xdist, covers everything:
mask-batch and train jobs are sbatch jobs, training asks for the fake GPU (gpu: 1 -> --gpus=1), the first
training job is cancelled with scancel while it runs and the profile's `retries` resubmit it; masks must
equal a local run's byte for byte and the tables be full. A second run makes the 200 masks of a wider grid
and must submit them as at most 10 sbatch jobs (mask batches).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEADLINE_S = 270  # the whole SLURM run; the module stays under 5 minutes

CONFIG = {
    "datasets": {"digits": {}},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "device": "auto"},
    "resources": {"train_threads": 1, "mask_threads": 1, "train_mem_mb": 1000, "train_runtime": 10,
                  "mask_mem_mb": 1000, "mask_runtime": 10},
    "experiments": {
        "tiny": {
            "datasets": ["digits"],
            "archs": [{"name": "vgg16", "width": 0.125}],
            "methods": ["dense", "random"],
            "compressions": [10],
            "seeds": [0],
        }
    },
}


def _unavailable(reason: str):
    if os.environ.get("PAIBENCH_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM cluster required (PAIBENCH_REQUIRE_SLURM=1) but unavailable: {reason}")
    pytest.skip(reason)


class _Unavailable(Exception):
    """The SLURM test cluster cannot run here; the tests skip with this reason (or fail under CI)."""


@contextlib.contextmanager
def _cluster():
    """SLURM_CONF of a running test cluster; starts (and afterwards stops) one if none was given."""
    state = os.environ.get("PAIBENCH_SLURM_STATE")
    started = False
    if not state:
        if os.geteuid() != 0:
            raise _Unavailable("SLURM test cluster not running (PAIBENCH_SLURM_STATE unset) and starting one needs root")
        if not (shutil.which("slurmctld") and shutil.which("munged")):
            raise _Unavailable("SLURM test cluster not running and slurm-wlm/munge are not installed "
                               "(.ci/slurm/start.sh installs them; CI runs it)")
        proc = subprocess.run([str(REPO / ".ci/slurm/start.sh")], capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise _Unavailable(f".ci/slurm/start.sh failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
        state = proc.stdout.strip().splitlines()[-1]
        started = True
    try:
        conf = Path(state) / "etc" / "slurm.conf"
        if not conf.is_file():
            raise _Unavailable(f"no SLURM config at {conf}")
        yield {"SLURM_CONF": str(conf)}
    finally:
        if started:
            subprocess.run([str(REPO / ".ci/slurm/stop.sh"), state], timeout=120)


def _env(extra: dict) -> dict:
    env = {**os.environ, **extra, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _slurm_jobs(env: dict, log: Path) -> list[dict]:
    """The jobs the Snakemake run logging to `log` submitted, as far as the cluster still remembers them
    (MinJobAge keeps finished ones); the ids come from the log, since the cluster may hold other runs' jobs."""
    ids = set(re.findall(r"submitted with SLURM jobid (\d+)", log.read_text()))
    out = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i|%T|%k"], env=env, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    jobs = [dict(zip(("id", "state", "comment"), line.split("|", 2))) for line in out.splitlines() if line]
    return [j for j in jobs if j["id"] in ids]


def _test_profile(tmp: Path) -> Path:
    """The repo's SLURM profile, scaled down to the 2-CPU test node; GPU requests and retries kept as-is."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    profile["jobs"] = 4
    profile["latency-wait"] = 5
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    for rule, res in profile["set-resources"].items():
        res.update({"cpus_per_task": 1, "mem_mb": 1000, "runtime": 10})
    out = tmp / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return out


def _slurm_run(cluster: dict, tmp: Path) -> dict:
    """One SLURM run of the tiny grid (cancelling its first training job) and a local run of the same masks."""
    env = _env(cluster)
    repo_profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    work, local = tmp / "slurm", tmp / "local"
    for d in (work, local):
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    profile = _test_profile(tmp)
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--configfile", str(work / "config.yaml"), "--profile", str(profile),
           # the test cluster has no accounting database; poll squeue, and soon
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5"]
    log = (tmp / "snakemake.log").open("w")
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    cancelled = None
    start = time.monotonic()
    try:
        while proc.poll() is None:
            if time.monotonic() - start > DEADLINE_S:
                proc.terminate()
                proc.wait(timeout=60)
                raise AssertionError(f"SLURM run exceeded {DEADLINE_S} s; log:\n{(tmp / 'snakemake.log').read_text()[-4000:]}")
            if cancelled is None:
                running = [j for j in _slurm_jobs(env, tmp / "snakemake.log")
                           if j["state"] == "RUNNING" and j["comment"].startswith("rule_train")]
                if running:
                    # give the job step a moment to start so the cancel lands mid-run
                    time.sleep(1.0)
                    subprocess.run(["scancel", running[0]["id"]], env=env, check=True, timeout=30)
                    cancelled = running[0]
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = (tmp / "snakemake.log").read_text()
    assert proc.returncode == 0, f"SLURM run failed (exit {proc.returncode}):\n{text[-6000:]}"

    # The same masks from a local run (no executor plugin).
    targets = [f"results/masks/digits/vgg16_w0.125/{m}/c{c}/s0.safetensors" for m, c in (("dense", 1), ("random", 10))]
    local_proc = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(local),
                                 "--configfile", str(local / "config.yaml"), "--cores", "2", *targets],
                                cwd=local, env=_env({}), capture_output=True, text=True, timeout=240)
    assert local_proc.returncode == 0, local_proc.stderr[-4000:]
    jobs = _slurm_jobs(env, tmp / "snakemake.log")
    # scontrol while the cluster still runs: what each training job requested and was allocated
    train_info = {j["id"]: subprocess.run(["scontrol", "show", "job", "-d", "-o", j["id"]], env=env,
                                          capture_output=True, text=True, timeout=30, check=True).stdout.split()
                  for j in jobs if j["comment"].startswith("rule_train")}
    masks200 = _mask_grid_run(env, cmd[:3] + cmd[7:], tmp)
    slow = _mask_grid_run(env, cmd[:3] + cmd[7:], tmp, SLOW_MASK_GRID, "slow_masks")
    return {"work": str(work), "local": str(local), "log": text, "cancelled": cancelled,
            "jobs": jobs, "train_job_info": train_info, "profile": repo_profile, "masks200": masks200,
            "slow_masks": slow}


MASK_GRID = {**CONFIG, "experiments": {"sweep": {
    "datasets": ["digits"], "archs": [{"name": "vgg16", "width": 0.125}], "methods": ["random", "erk"],
    "compressions": [round(10 ** (0.2 * k), 3) for k in range(2, 22)], "seeds": [0, 1, 2, 3, 4]}}}


# Three SynFlow masks of the full-width VGG-16 (about 8 s each on one CPU thread, estimated at about as much),
# with a 1-minute mask_runtime: a batch's estimated work must stay under 15 s, so each is its own sbatch job.
SLOW_MASK_GRID = {**CONFIG, "resources": {**CONFIG["resources"], "mask_runtime": 1},
                  "experiments": {"slow": {"datasets": ["digits"], "archs": ["vgg16"], "methods": ["synflow"],
                                           "compressions": [10, 100, 1000], "seeds": [0]}}}


def _mask_grid_run(env: dict, snakemake_and_profile: list[str], tmp: Path, config: dict = MASK_GRID,
                   name: str = "masks200") -> dict:
    """The masks alone of a grid on SLURM: which sbatch jobs made them."""
    from paibench.config import Grid

    work = tmp / name
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    masks = sorted({run.mask for run in Grid(config).runs})
    log_path = tmp / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.run([*snakemake_and_profile, *masks, "-d", str(work), "--configfile", str(work / "config.yaml")],
                              cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=DEADLINE_S)
    assert proc.returncode == 0, f"{name} SLURM run failed:\n{log_path.read_text()[-4000:]}"
    return {"masks": masks, "made": [m for m in masks if (work / m).is_file() and (work / m).with_suffix(".json").is_file()],
            "jobs": _slurm_jobs(env, log_path)}


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, worker_id):
    """The SLURM run's record, made once per pytest session.

    Under pytest-xdist a module fixture runs once per worker, and two SLURM runs at once would share one
    cluster and double the time; so the first worker to take the lock runs it and writes a JSON record in
    the session's shared temp folder, and any other worker reads that record.
    """
    if worker_id == "master":
        return _resolve(_record(tmp_path_factory.mktemp("slurm")))
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / "slurm_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "slurm_run.json"
        if not done.exists():
            tmp = shared / "slurm_run"
            tmp.mkdir()
            done.write_text(json.dumps(_record(tmp)))
        return _resolve(json.loads(done.read_text()))


def _record(tmp: Path) -> dict:
    try:
        with _cluster() as cluster:
            return {"ok": _slurm_run(cluster, tmp)}
    except _Unavailable as exc:
        return {"unavailable": str(exc)}
    except AssertionError as exc:
        return {"failed": str(exc)}


def _resolve(record: dict) -> dict:
    if "unavailable" in record:
        _unavailable(record["unavailable"])
    if "failed" in record:
        pytest.fail(record["failed"], pytrace=False)
    run = record["ok"]
    return {**run, "work": Path(run["work"]), "local": Path(run["local"])}


def test_profile_requests_gpu_for_training():
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    train = profile["set-resources"]["train"]
    assert train["gpu"] == 1 and {"runtime", "mem_mb", "cpus_per_task"} <= set(train)
    # names the plugin ignores must not creep in
    assert not {"gpus", "time_min", "partition", "account"} & {k for r in profile["set-resources"].values() for k in r}


def test_masks_identical_to_local_run(slurm_run):
    work, local = slurm_run["work"], slurm_run["local"]
    masks = sorted(p.relative_to(work) for p in (work / "results/masks").rglob("*.safetensors"))
    assert len(masks) == 2
    for rel in masks:
        assert (work / rel).read_bytes() == (local / rel).read_bytes(), rel


def test_tables_complete(slurm_run):
    work = slurm_run["work"]
    rows = list(csv.DictReader((work / "results/tables/runs.csv").open()))
    assert len(rows) == 2
    assert {r["method"] for r in rows} == {"dense", "random"}
    for r in rows:
        assert 0.0 <= float(r["accuracy_pct"]) <= 100.0
    assert (work / "results/tables/summary.csv").stat().st_size > 0
    assert (work / "results/figures/accuracy_vs_compression.png").stat().st_size > 0
    for run in ("dense/c1", "random/c10"):
        assert (work / f"results/runs/tiny/digits/vgg16_w0.125/{run}/s0/eval.json").is_file()


def test_jobs_ran_on_slurm_with_the_fake_gpu(slurm_run):
    jobs = slurm_run["jobs"]
    rules = {j["comment"].split("_wildcards_")[0] for j in jobs if j["state"] == "COMPLETED"}
    assert "rule_train" in rules and any(r.startswith("rule_mask_batch_") for r in rules), rules
    # local rules never went to SLURM
    assert not any(j["comment"].startswith(("rule_prepare_data", "rule_aggregate", "rule_plot")) for j in jobs)
    train_ok = [j for j in jobs if j["comment"].startswith("rule_train") and j["state"] == "COMPLETED"]
    assert len(train_ok) == 2
    for job in train_ok:
        info = slurm_run["train_job_info"][job["id"]]
        assert "TresPerJob=gres:gpu:1" in info and "JOB_GRES=gpu:1" in info, info  # requested and allocated


def test_cancelled_job_is_retried(slurm_run):
    cancelled = slurm_run["cancelled"]
    assert cancelled is not None, "no training job was seen running to cancel"
    same = [j for j in slurm_run["jobs"] if j["comment"] == cancelled["comment"]]
    states = sorted(j["state"] for j in same)
    assert states == ["CANCELLED", "COMPLETED"], same


def test_200_masks_are_at_most_10_sbatch_jobs(slurm_run):
    run = slurm_run["masks200"]
    assert len(run["masks"]) == 200 and run["made"] == run["masks"]
    assert 1 <= len(run["jobs"]) <= 10, run["jobs"]
    assert all(j["comment"].startswith("rule_mask_batch_") for j in run["jobs"]), run["jobs"]


def test_masks_estimated_past_a_quarter_of_mask_runtime_get_jobs_of_their_own(slurm_run):
    # On a cluster a mask batch also ends before its estimated work passes mask_runtime / 4 (here 15 s), so
    # slow masks do not share one job that SLURM would stop; by count alone the three would be one job.
    run = slurm_run["slow_masks"]
    assert len(run["masks"]) == 3 and run["made"] == run["masks"]
    assert len(run["jobs"]) == 3 and all(j["comment"].startswith("rule_mask_batch_") for j in run["jobs"]), run["jobs"]
