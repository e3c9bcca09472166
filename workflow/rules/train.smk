# Experiments with `pack: N` (N > 1) train through the generated train_pack_* rules below instead.
_PACKED = sorted(e for e, n in GRID.pack.items() if n > 1)
_SOLO = sorted(e for e in GRID.pack if e not in _PACKED)


rule train:
    wildcard_constraints:
        experiment="|".join(re.escape(e) for e in _SOLO) or "(?!)",
    input:
        data=paths.DATA,
        mask=paths.MASK,
    output:
        metrics=paths.in_run(paths.RUN_DIR, paths.METRICS),
        epochs=paths.in_run(paths.RUN_DIR, paths.EPOCHS),
        model=paths.in_run(paths.RUN_DIR, paths.MODEL),
        # made in the same process from the saved files (paibench train --evaluate), as `paibench evaluate` does
        eval=paths.in_run(paths.RUN_DIR, paths.EVAL),
    log:
        f"{paths.LOGS}/train/{paths.RUN_KEY}.log",
    params:
        args=train_args,  # Grid.train_args: one function per job keeps the parse of large grids fast
    threads: RES["train_threads"]
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=RES["train_runtime"],
        gpu=train_gpus if LOCAL_GPUS else 0,
    conda:
        "../envs/paibench.yaml"
    shell:
        "OMP_NUM_THREADS={threads} paibench train {params.args} --threads {threads} > {log} 2>&1"



# One rule per pack of unfinished runs (plan: common.smk). A finished run of a packed experiment has no rule, so
# Snakemake keeps its files (a pack rule's params list its members, so any rule for it now would differ from the
# one that made it and trigger a rerun); delete a run's folder to retrain it.
for _pack in PACKS:
    _id = pack_id(_pack)

    rule:
        name:
            f"train_pack_{_id}"
        input:
            data=sorted({r.data for r in _pack}),
            masks=[r.mask for r in _pack],
        output:
            metrics=[r.file(paths.METRICS) for r in _pack],
            epochs=[r.file(paths.EPOCHS) for r in _pack],
            model=[r.file(paths.MODEL) for r in _pack],
            eval=[r.file(paths.EVAL) for r in _pack],
        log:
            f"{paths.LOGS}/train_pack/{_pack[0].experiment}/{_id}.log",
        params:
            manifest=pack_manifest(_pack),
            train=json.dumps(GRID.train[_pack[0].experiment], sort_keys=True),
            mode=GRID.pack_mode[_pack[0].experiment],
        threads: RES["train_threads"]
        resources:
            mem_mb=RES["train_mem_mb"],
            runtime=RES["train_runtime"] * len(_pack),
        conda:
            "../envs/paibench.yaml"
        shell:
            "OMP_NUM_THREADS={threads} paibench train-pack --manifest {params.manifest} --threads {threads} --mode {params.mode}"
            " --train-config {params.train:q} --evaluate > {log} 2>&1"
