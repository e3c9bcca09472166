"""What one training job is given (RunSpec), and its JSON form: a pack rule's ``--member`` (written by the
workflow, read by ``paibench train-pack``). Torch-free: the workflow builds members while parsing."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from paibench import paths
from paibench.errors import PaibenchError


@dataclass
class RunSpec:
    """One run: its files and what it is. ``run_key`` seeds every random draw of training (config.Run.key in
    the workflow; from the run's content for a direct ``paibench train``)."""

    data: str  # prepared dataset file
    mask: str
    out_dir: str
    checkpoint: str
    run_key: str
    train: dict
    dataset: str = ""
    arch: str = ""
    width: float = 1.0
    arch_options: dict | None = None
    seed: int = 0
    threads: int = 0
    spec: dict | None = None  # what the workflow made this run from (Grid.run_spec), recorded in metrics.json

    # ------------------------------------------------------------------------------ pack members (JSON)
    MEMBER_KEYS = ("data", "mask", "out_dir", "checkpoint", "run_key", "dataset", "arch", "width", "arch_options",
                   "seed", "spec")  # the recipe and threads are the pack's, not a member's

    def member_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k in self.MEMBER_KEYS}, sort_keys=True)

    @classmethod
    def from_member(cls, member, train: dict, where: str, run_key=None) -> "RunSpec":
        """A member object checked field by field (one line naming the field when it is wrong).
        `run_key(member)` gives the key of a member without one."""
        if not isinstance(member, dict):
            raise PaibenchError(f"{where}: {member!r} is not allowed; expected a JSON object")
        unknown = sorted(set(member) - set(cls.MEMBER_KEYS))
        missing = sorted({"data", "mask", "out_dir"} - set(member))
        if unknown or missing:
            raise PaibenchError(f"{where}: unknown keys {unknown}, missing keys {missing}; "
                                f"allowed keys: {', '.join(sorted(cls.MEMBER_KEYS))}")
        for key in ("data", "mask", "out_dir", "checkpoint", "run_key", "dataset", "arch"):
            if key in member and not isinstance(member[key], str):
                raise PaibenchError(f"{where}.{key}: {member[key]!r} is not allowed; expected a string")
        expected = {"width": ((int, float), "a number"), "seed": (int, "an integer"),
                    "arch_options": (dict, "a JSON object")}
        for key, (kind, text) in expected.items():
            if key in member and (not isinstance(member[key], kind) or isinstance(member[key], bool)):
                raise PaibenchError(f"{where}.{key}: {member[key]!r} is not allowed; expected {text}")
        m = member
        return cls(
            data=m["data"], mask=m["mask"], out_dir=m["out_dir"],
            checkpoint=m.get("checkpoint") or str(Path(m["out_dir"]) / paths.DIRECT_CHECKPOINT),
            run_key=m.get("run_key") or (run_key(m) if run_key else ""), train=train,
            dataset=m.get("dataset", ""), arch=m.get("arch", ""), width=float(m.get("width", 1.0)),
            arch_options=m.get("arch_options") or {}, seed=int(m.get("seed", 0)), spec=m.get("spec"))
