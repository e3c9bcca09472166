"""A catalogue of bad inputs a real user produces (wrong files, typos, odd numbers, outputs pointed at
inputs), against every command and the config: each must end with a non-zero exit, no traceback, exactly
one message line naming the flag, key or file, and no existing file changed.

Classes covered (README, Reliability): missing / folder / wrong-kind / truncated / empty / non-UTF-8 /
wrong-shape files; outputs that are folders, under regular files or equal to inputs; finished results of
other inputs; malformed JSON arguments and wrong types; NaN and infinity; unknown names and options;
label collisions, duplicate YAML keys, control characters in labels; dataset folders without the expected
structure; expander degrees that would make a dense run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from paibench.cli import main


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory, digits_payload):
    """A workspace of good and bad files; the catalogue checks that none of them changes."""
    import torch
    from safetensors.torch import save_file

    from paibench.data import save_prepared
    from paibench.data.base import DatasetInfo
    from paibench.models import build_model
    from paibench.pruning import make_mask

    root = tmp_path_factory.mktemp("ws")
    save_prepared(digits_payload, root / "digits.pt")
    make_mask("digits", "vgg16", "random", 10, 0, str(root / "m.safetensors"), width=0.125)
    model = build_model("vgg16", DatasetInfo("digits", "image", 10, 1, (8, 8)), 0.125, {})
    (root / "run").mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "run" / "model.safetensors"))
    _write(root / "run" / "metrics.json", json.dumps({"run_key": "x", "accuracy": 0.5, "mask_sha256": "0" * 64}))
    _write(root / "run" / "epochs.csv", "epoch,test_acc\n1,0.5\n")
    _write(root / "picture.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    _write(root / "empty.safetensors", b"")
    _write(root / "empty.json", b"")
    _write(root / "latin1.json", "{\"a\": \"caf\xe9\"}".encode("latin-1"))
    _write(root / "latin1.yaml", "experiments: {caf\xe9: 1}".encode("latin-1"))
    _write(root / "list.json", "[1, 2, 3]")
    _write(root / "truncated.safetensors", (root / "m.safetensors").read_bytes()[:200])
    _write(root / "notes.txt", "not a list of metrics files\n")
    _write(root / "empty.txt", "")
    _write(root / "columns.csv", "a,b\n1,2\n")
    _write(root / "afile", "a regular file\n")
    (root / "adir").mkdir()
    (root / "adir" / "inner").mkdir()
    (root / "imgs_no_train" / "test").mkdir(parents=True)
    (root / "planetoid_empty").mkdir()
    torch.manual_seed(0)
    return root


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _config(root: Path, name: str, text: str) -> str:
    return str(_write(root / "configs" / f"{name}.yaml", text))


def _tiny(**changes) -> str:
    cfg = tiny_config()
    for path, value in changes.items():
        node = cfg
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return yaml.safe_dump(cfg, sort_keys=False)


MASK = ["mask", "--dataset", "digits", "--arch", "vgg16", "--width", "0.125", "--method", "random",
        "--compression", "10", "--seed", "0", "--out", "{ws}/new.safetensors"]
TRAIN = ["train", "--data", "{ws}/digits.pt", "--mask", "{ws}/m.safetensors", "--out-dir", "{ws}/newrun",
         "--dataset", "digits", "--arch", "vgg16", "--width", "0.125"]
EVAL = ["evaluate", "--data", "{ws}/digits.pt", "--mask", "{ws}/m.safetensors", "--model", "{ws}/run/model.safetensors",
        "--metrics", "{ws}/run/metrics.json", "--out", "{ws}/eval_new.json"]


def _set(argv: list[str], flag: str, value: str | None) -> list[str]:
    """argv with `flag`'s value replaced (appended when absent); None drops the flag and its value."""
    out = list(argv)
    if flag in out:
        i = out.index(flag)
        if value is None:
            del out[i:i + 2]
        else:
            out[i + 1] = value
    elif value is not None:
        out += [flag, value]
    return out


def _with(base: list[str]):
    """argv builder: `base` with flags replaced (keyword names use _ for -)."""
    def build(**kw):
        argv = base
        for flag, value in kw.items():
            argv = _set(argv, "--" + flag.replace("_", "-"), value)
        return argv
    return build


_mask, _train, _eval = _with(MASK), _with(TRAIN), _with(EVAL)


# (argv with {ws} for the workspace, text the one message line must contain)
CLI_CASES = {
    # mask: numbers, names, options
    "mask-compression-nan": (_mask(compression="nan"), "--compression"),
    "mask-compression-inf": (_mask(compression="inf"), "--compression"),
    "mask-compression-one": (_mask(compression="1"), "--compression"),
    "mask-compression-negative": (_mask(compression="-5"), "--compression"),
    "mask-compression-text": (_mask(compression="lots"), "--compression"),
    "mask-seed-negative": (_mask(seed="-1"), "--seed"),
    "mask-width-zero": (_mask(width="0"), "--width"),
    "mask-width-nan": (_mask(width="nan"), "--width"),
    "mask-method-unknown": (_mask(method="prune_it"), "--method"),
    "mask-dataset-unknown": (_mask(dataset="mnist"), "--dataset"),
    "mask-arch-unknown": (_mask(arch="vgg99"), "--arch"),
    "mask-arch-option-bad": (_mask(arch="resnet20", arch_opt="skip=maybe"), "--arch-opt.skip"),
    "mask-device-tpu": (_mask(device="tpu"), "--device"),
    "mask-opt-unknown": (_mask(opt="colour=red"), "--opt.colour"),
    "mask-opt-no-equals": (_mask(opt="scope"), "--opt"),
    "mask-opt-nan": (_mask(method="erk", opt="power=nan"), "--opt.power"),
    "mask-opt-inf": (_mask(method="erk", opt="power=inf"), "--opt.power"),
    "mask-opt-choice": (_mask(method="snip", opt="score_mode=test"), "--opt.score_mode"),
    "mask-opt-num-batches-zero": (_mask(method="snip", opt="num_batches=0"), "--opt.num_batches"),
    "mask-rreg-samples-zero": (_mask(method="rreg", opt="samples=0"), "--opt.samples"),
    "mask-rreg-degree-dense": (_mask(method="rreg", opt="degree=1000000"), "--opt degree"),
    "mask-degree-with-effective": (_mask(method="xnet") + ["--opt", "degree=3", "--opt", "compression_mode=effective"],
                                   "degree"),
    "mask-mica-without-budget": (_mask(method="mica"), "--opt.budget"),
    "mask-mica-budget-unknown": (_mask(method="mica", opt="budget=nope"), "--opt.budget"),
    "mask-budget-mask-missing": (_mask(method="mica") + ["--opt", "budget=erk", "--opt", "budget_mask={ws}/none.safetensors"],
                                 "--opt budget_mask"),
    "mask-budget-mask-picture": (_mask(method="rpi") + ["--opt", "budget=erk", "--opt", "budget_mask={ws}/picture.png"],
                                 "--opt budget_mask"),
    "mask-dense-layers-nomatch": (_mask(opt="dense_layers=classifier.*"), "--opt dense_layers"),
    "mask-needs-data": (_mask(method="snip"), "--data"),
    # mask: files
    "mask-out-json": (_mask(out="{ws}/m2.json"), "--out"),
    "mask-out-folder": (_mask(out="{ws}/adir"), "--out"),
    "mask-out-under-file": (_mask(out="{ws}/afile/x.safetensors"), "--out"),
    "mask-out-other-mask": (_mask(method="erk", out="{ws}/m.safetensors"), "--out"),
    "mask-data-missing": (_mask(data="{ws}/none.pt"), "--data"),
    "mask-data-folder": (_mask(data="{ws}/adir"), "--data"),
    "mask-data-picture": (_mask(data="{ws}/picture.png"), "--data"),
    "mask-data-empty": (_mask(data="{ws}/empty.json"), "--data"),
    "mask-data-is-mask": (_mask(data="{ws}/m.safetensors"), "--data"),
    # inspect
    "inspect-missing": (["inspect", "{ws}/none.safetensors"], "PATH"),
    "inspect-folder": (["inspect", "{ws}/adir"], "PATH"),
    "inspect-picture": (["inspect", "{ws}/picture.png"], "PATH"),
    "inspect-empty-mask": (["inspect", "{ws}/empty.safetensors"], "PATH"),
    "inspect-truncated-mask": (["inspect", "{ws}/truncated.safetensors"], "PATH"),
    "inspect-metrics": (["inspect", "{ws}/run/metrics.json"], "PATH"),
    "inspect-latin1-json": (["inspect", "{ws}/latin1.json"], "PATH"),
    "inspect-json-list": (["inspect", "{ws}/list.json"], "PATH"),
    "inspect-model-as-mask": (["inspect", "{ws}/run/model.safetensors"], "PATH"),
    "inspect-empty-json": (["inspect", "{ws}/empty.json"], "PATH"),
    # prepare-data
    "prepare-dataset-unknown": (["prepare-data", "--dataset", "mnist", "--out", "{ws}/x.pt"], "--dataset"),
    "prepare-option-nan": (["prepare-data", "--dataset", "digits", "--opt", "test_fraction=nan", "--out", "{ws}/x.pt"],
                           "--opt.test_fraction"),
    "prepare-option-unknown": (["prepare-data", "--dataset", "digits", "--opt", "size=9", "--out", "{ws}/x.pt"], "--opt.size"),
    "prepare-out-folder": (["prepare-data", "--dataset", "digits", "--out", "{ws}/adir"], "--out"),
    "prepare-out-under-file": (["prepare-data", "--dataset", "digits", "--out", "{ws}/afile/x.pt"], "--out"),
    "prepare-raw-under-file": (["prepare-data", "--dataset", "digits", "--out", "{ws}/x.pt", "--raw-dir", "{ws}/afile/raw"],
                               "--raw-dir"),
    "prepare-imagefolder-missing": (["prepare-data", "--dataset", "imagefolder", "--opt", "path={ws}/none", "--out",
                                     "{ws}/x.pt"], "--opt.path"),
    "prepare-imagefolder-file": (["prepare-data", "--dataset", "imagefolder", "--opt", "path={ws}/afile", "--out",
                                  "{ws}/x.pt"], "--opt.path"),
    "prepare-imagefolder-no-train": (["prepare-data", "--dataset", "imagefolder", "--opt", "path={ws}/imgs_no_train",
                                      "--out", "{ws}/x.pt"], "--opt.path"),
    "prepare-planetoid-no-raw": (["prepare-data", "--dataset", "cora", "--opt", "root={ws}/planetoid_empty", "--out",
                                  "{ws}/x.pt"], "--opt.root"),
    "prepare-tinyimagenet-picture": (["prepare-data", "--dataset", "tinyimagenet", "--opt", "archive={ws}/picture.png",
                                      "--out", "{ws}/x.pt"], "--opt.archive"),
    "prepare-tinyimagenet-crop-range": (["prepare-data", "--dataset", "tinyimagenet", "--opt", "crop=100", "--out",
                                         "{ws}/x.pt"], "--opt.crop"),
    # train
    "train-data-missing": (_train(data="{ws}/none.pt"), "--data"),
    "train-data-is-mask": (_train(data="{ws}/m.safetensors"), "--data"),
    "train-mask-missing": (_train(mask="{ws}/none.safetensors"), "--mask"),
    "train-mask-picture": (_train(mask="{ws}/picture.png"), "--mask"),
    "train-mask-is-data": (_train(mask="{ws}/digits.pt"), "--mask"),
    "train-mask-truncated": (_train(mask="{ws}/truncated.safetensors"), "--mask"),
    "train-mask-is-model": (_train(mask="{ws}/run/model.safetensors"), "--mask"),
    "train-mask-empty": (_train(mask="{ws}/empty.safetensors"), "--mask"),
    "train-config-not-json": (_train(train_config="{lr: 0.1}"), "--train-config"),
    "train-config-list": (_train(train_config="[1]"), "--train-config"),
    "train-config-type": (_train(train_config='{"lr": "fast"}'), "--train-config.lr"),
    "train-config-nan": (_train(train_config='{"lr": NaN}'), "--train-config.lr"),
    "train-config-infinity": (_train(train_config='{"momentum": Infinity}'), "--train-config.momentum"),
    "train-config-epochs-zero": (_train(train_config='{"epochs": 0}'), "--train-config.epochs"),
    "train-config-device": (_train(train_config='{"device": "tpu"}'), "--train-config.device"),
    "train-config-unknown": (_train(train_config='{"learning_rate": 0.1}'), "--train-config.learning_rate"),
    "train-config-milestone-nan": (_train(train_config='{"milestones": [NaN]}'), "--train-config.milestones"),
    "train-config-val-fraction": (_train(train_config='{"val_fraction": 0.9}'), "--train-config.val_fraction"),
    "train-out-is-file": (_train(out_dir="{ws}/afile"), "--out-dir"),
    "train-out-under-file": (_train(out_dir="{ws}/afile/run"), "--out-dir"),
    "train-out-finished-other-mask": (_train(out_dir="{ws}/run"), "--out-dir"),
    "train-checkpoint-folder": (_train(checkpoint="{ws}/adir"), "--checkpoint"),
    "train-checkpoint-is-mask": (_train(checkpoint="{ws}/m.safetensors"), "--checkpoint"),
    "train-width-negative": (_train(width="-1"), "--width"),
    "train-seed-text": (_train(seed="x"), "--seed"),
    "train-arch-option-bad": (_train(arch_opt="depth"), "--arch-opt"),
    # mask-batch (each job: the arguments of `paibench mask`; all are checked before the first mask is made)
    "mask-batch-no-jobs": (["mask-batch"], "no jobs"),
    "mask-batch-bad-compression": (["mask-batch", "--job", " ".join(_set(MASK, "--compression", "0.5")[1:])],
                                   "--job 0: argument --compression"),
    "mask-batch-second-job-unknown-method": (["mask-batch", "--job", " ".join(MASK[1:]),
                                              "--job", " ".join(_set(_set(MASK, "--method", "lottery"), "--out",
                                                                     "{ws}/new2.safetensors")[1:])], "--job 1: --method"),
    "mask-batch-second-job-bad-option": (["mask-batch", "--job", " ".join(MASK[1:]),
                                          "--job", " ".join(_set(MASK, "--out", "{ws}/new2.safetensors")[1:])
                                          + " --opt colour=red"], "--job 1: --opt"),
    "mask-batch-same-out-twice": (["mask-batch", "--job", " ".join(MASK[1:]), "--job", " ".join(MASK[1:])],
                                  "two jobs write"),
    "mask-batch-unclosed-quote": (["mask-batch", "--job", "--dataset 'digits"], "--job 0"),
    "mask-batch-jobs-file-missing": (["mask-batch", "--jobs-file", "{ws}/none.txt"], "--jobs-file"),
    # train-pack
    "pack-no-members": (["train-pack"], "no members"),
    "pack-member-not-json": (["train-pack", "--member", "{data: 1}"], "--member"),
    "pack-member-wrong-type": (["train-pack", "--member", '{"data": 1, "mask": "m", "out_dir": "o"}'], "--member 0.data"),
    "pack-member-missing-keys": (["train-pack", "--member", '{"data": "d.pt"}'], "--member 0"),
    "pack-member-unknown-key": (["train-pack", "--member", '{"data": "{ws}/digits.pt", "mask": "{ws}/m.safetensors", '
                                                           '"out_dir": "{ws}/o", "colour": 1}'], "--member 0"),
    "pack-member-seed-float": (["train-pack", "--member", '{"data": "{ws}/digits.pt", "mask": "{ws}/m.safetensors", '
                                                          '"out_dir": "{ws}/o", "seed": 1.5}'], "--member 0.seed"),
    "pack-member-bad-mask": (["train-pack", "--member", '{"data": "{ws}/digits.pt", "mask": "{ws}/picture.png", '
                                                        '"out_dir": "{ws}/o"}'], "--member 0 --mask"),
    "pack-manifest-missing": (["train-pack", "--manifest", "{ws}/none.json"], "--manifest"),
    "pack-manifest-object": (["train-pack", "--manifest", "{ws}/run/metrics.json"], "--manifest"),
    # evaluate
    "eval-out-is-metrics": (_eval(out="{ws}/run/metrics.json"), "--out"),
    "eval-out-is-folder": (_eval(out="{ws}/adir"), "--out"),
    "eval-model-is-mask": (_eval(model="{ws}/m.safetensors"), "--model"),
    "eval-metrics-is-stats": (_eval(metrics="{ws}/m.json"), "--metrics"),
    "eval-metrics-missing": (_eval(metrics="{ws}/none.json"), "--metrics"),
    "eval-device": (_eval(device="tpu"), "--device"),
    # aggregate / tables / figures / plot
    "aggregate-nothing": (["aggregate", "--out-dir", "{ws}/tables"], "METRICS"),
    "aggregate-list-missing": (["aggregate", "--metrics-list", "{ws}/none.txt", "--out-dir", "{ws}/tables"], "--metrics-list"),
    "aggregate-list-empty": (["aggregate", "--metrics-list", "{ws}/empty.txt", "--out-dir", "{ws}/tables"], "--metrics-list"),
    "aggregate-list-of-junk": (["aggregate", "--metrics-list", "{ws}/notes.txt", "--out-dir", "{ws}/tables"], "METRICS"),
    "aggregate-stats-as-metrics": (["aggregate", "{ws}/m.json", "--out-dir", "{ws}/tables"], "METRICS"),
    "aggregate-out-is-file": (["aggregate", "{ws}/run/metrics.json", "--out-dir", "{ws}/afile"], "--out-dir"),
    "tables-nothing": (["tables", "--out-dir", "{ws}/tables"], "METRICS"),
    "tables-paper-unknown": (["tables", "{ws}/run/metrics.json", "--paper", "lottery=x", "--out-dir", "{ws}/t"], "--paper"),
    "tables-paper-without-experiments": (["tables", "{ws}/run/metrics.json", "--paper", "mica", "--out-dir", "{ws}/t"],
                                         "--paper"),
    "tables-out-is-file": (["tables", "{ws}/run/metrics.json", "--out-dir", "{ws}/afile"], "--out-dir"),
    "figures-masks-root-missing": (["figures", "{ws}/run/metrics.json", "--masks-root", "{ws}/nomasks", "--out-dir",
                                    "{ws}/f"], "--masks-root"),
    "figures-nothing": (["figures", "--out-dir", "{ws}/f"], "METRICS"),
    "figures-profile-nan": (["figures", "{ws}/run/metrics.json", "--profile-compression", "nan", "--out-dir", "{ws}/f"],
                            "--profile-compression"),
    "figures-definition": (["figures", "{ws}/run/metrics.json", "--effective-definition", "loose", "--out-dir", "{ws}/f"],
                           "--effective-definition"),
    "plot-runs-missing": (["plot", "--runs", "{ws}/none.csv", "--out", "{ws}/p.png"], "--runs"),
    "plot-runs-picture": (["plot", "--runs", "{ws}/picture.png", "--out", "{ws}/p.png"], "--runs"),
    "plot-runs-columns": (["plot", "--runs", "{ws}/columns.csv", "--out", "{ws}/p.png"], "--runs"),
    "plot-out-suffix": (["plot", "--runs", "{ws}/columns.csv", "--out", "{ws}/p.txt"], "--out"),
    # check-config: files
    "config-missing": (["check-config", "{ws}/none.yaml"], "CONFIG"),
    "config-folder": (["check-config", "{ws}/adir"], "CONFIG"),
    "config-latin1": (["check-config", "{ws}/latin1.yaml"], "CONFIG"),
    "config-picture": (["check-config", "{ws}/picture.png"], "CONFIG"),
    "command-unknown": (["prune"], "invalid choice"),
}

# (YAML text, key the one message line must name)
CONFIG_CASES = {
    "yaml-invalid": ("experiments: [unclosed", "not valid YAML"),
    "yaml-top-list": ("- 1\n- 2\n", "top level"),
    "duplicate-experiment": ("experiments:\n  a: {}\n  a: {}\n", "'a' is given twice"),
    "duplicate-lr": ("train:\n  lr: 0.1\n  lr: 0.2\nexperiments: {}\n", "'lr' is given twice"),
    "compression-rounds-to-one": (_tiny(**{"experiments.tiny.compressions": [1.0000001]}), "compressions"),
    "compression-inf": (_tiny(**{"experiments.tiny.compressions": [float("inf")]}), "compressions[0]"),
    "compression-nan": (_tiny(**{"experiments.tiny.compressions": [float("nan")]}), "compressions[0]"),
    "compressions-same-label": (_tiny(**{"experiments.tiny.compressions": [10, 10.0000001]}), "compressions"),
    "lr-nan": (_tiny(**{"train.lr": float("nan")}), "train.lr"),
    "momentum-inf": (_tiny(**{"train.momentum": float("inf")}), "train.momentum"),
    "val-fraction-nan": (_tiny(**{"train.val_fraction": float("nan")}), "train.val_fraction"),
    "width-inf": (_tiny(**{"experiments.tiny.archs": [{"name": "vgg16", "width": float("inf")}]}), "archs[0].width"),
    "arch-option-nan": (_tiny(**{"experiments.tiny.archs": [{"name": "gcn", "dropout": float("nan")}],
                                 "experiments.tiny.datasets": ["sbm"]}), "dropout"),
    "experiment-name-newline": (_tiny().replace("  tiny:", '  "tiny\\n":'), "tiny"),
    "method-label-newline": (_tiny(**{"experiments.tiny.methods": [{"name": "random", "label": "r\n"}]}), "label"),
    "amp-off-unquoted": (_tiny(**{"train.amp": False}), "train.amp"),
    "unknown-top-key": (_tiny(**{"epochs": 3}), "epochs"),
    "seeds-missing": (_tiny().replace("    seeds:\n    - 0\n", ""), "seeds"),
    "rreg-degree-dense": (_tiny(**{"experiments.tiny.methods": [{"name": "rreg", "degree": 1000000}]}), "degree"),
    "degree-with-effective": (_tiny(**{"experiments.tiny.methods": [{"name": "xnet", "degree": 3}],
                                       "experiments.tiny.compression_mode": "effective"}), "degree"),
    "budget-from-unknown": (_tiny(**{"experiments.tiny.methods": [{"name": "mica", "budget": "erk", "budget_from": "x"}]}),
                            "budget_from"),
    "budget-from-on-random": (_tiny(**{"experiments.tiny.methods": ["erk", {"name": "random", "budget_from": "erk"}]}),
                              "budget_from"),
}


def _fill(argv: list[str], root: Path) -> list[str]:
    return [a.replace("{ws}", str(root)) for a in argv]


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err


def _assert_one_clear_line(code, err: str, must: str, where: str) -> None:
    assert code not in (0, None), f"{where}: exit 0 (accepted silently); stderr: {err!r}"
    assert "Traceback" not in err, f"{where}: traceback:\n{err}"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"{where}: expected one message line, got {len(lines)}:\n{err}"
    assert must in lines[0], f"{where}: {must!r} not named in: {lines[0]}"


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_bad_command_line(case, ws, capsys):
    argv, must = CLI_CASES[case]
    before = _snapshot(ws)
    code, err = _run(_fill(argv, ws), capsys)
    _assert_one_clear_line(code, err, must.replace("{ws}", str(ws)), case)
    assert _snapshot(ws) == before, f"{case}: an existing file changed"


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_file(case, ws, capsys):
    text, must = CONFIG_CASES[case]
    path = _config(ws, case, text)
    before = _snapshot(ws)
    code, err = _run(["check-config", path], capsys)
    _assert_one_clear_line(code, err, must, case)
    assert _snapshot(ws) == before, f"{case}: an existing file changed"


def test_catalogue_size():
    assert len(CLI_CASES) + len(CONFIG_CASES) >= 100


def test_exponent_numbers_are_numbers(ws, capsys):
    """`1e3` in YAML is a number, as the README writes it (PyYAML alone reads it as a string)."""
    text = _tiny().replace("- 100\n", "- 1e3\n")
    assert "1e3" in text
    code, _ = _run(["check-config", _config(ws, "exponent", text)], capsys)
    assert code == 0


def test_emptied_statistics_leave_the_mask_usable(tmp_path, digits_file, capsys):
    """`paibench inspect X.safetensors --json > X.json` truncates X.json before paibench runs: the mask's own
    content hash keeps it usable, and inspect recomputes the statistics."""
    from paibench.pruning.maskio import load_mask

    mask = tmp_path / "x.safetensors"
    assert main(["mask", "--dataset", "digits", "--arch", "vgg16", "--width", "0.125", "--method", "random",
                 "--compression", "10", "--seed", "0", "--out", str(mask)]) == 0
    (tmp_path / "x.json").write_text("")
    capsys.readouterr()
    assert main(["inspect", str(mask), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kept"] > 0 and out["layers"]
    load_mask(mask)  # no error
    code = main(["train", "--data", str(digits_file), "--mask", str(mask), "--out-dir", str(tmp_path / "run"),
                 "--dataset", "digits", "--arch", "vgg16", "--width", "0.125", "--train-config", '{"epochs": 1}'])
    assert code == 0


def test_a_flipped_byte_in_a_mask_is_refused(tmp_path, capsys):
    from paibench.errors import PaibenchError
    from paibench.pruning.maskio import load_mask

    mask = tmp_path / "x.safetensors"
    assert main(["mask", "--dataset", "digits", "--arch", "vgg16", "--width", "0.125", "--method", "random",
                 "--compression", "10", "--seed", "0", "--out", str(mask)]) == 0
    (tmp_path / "x.json").unlink()  # no statistics to compare with: the mask must check itself
    data = bytearray(mask.read_bytes())
    data[-1] ^= 1
    mask.write_bytes(bytes(data))
    with pytest.raises(PaibenchError, match="content_sha256"):
        load_mask(mask)
