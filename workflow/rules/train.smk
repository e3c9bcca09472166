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
    log:
        f"{paths.LOGS}/train/{paths.RUN_KEY}.log",
    params:
        dataset=dataset_type,
        arch=arch_args,
        train=train_config,
        # Outside the job's outputs, so Snakemake does not delete it when a killed job is cleaned up.
        checkpoint=paths.CHECKPOINT,
        run_key=paths.RUN_KEY,
        spec=run_spec,
    threads: RES["train_threads"]
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=RES["train_runtime"],
        gpu=train_gpus,
    conda:
        "../envs/paibench.yaml"
    shell:
        "OMP_NUM_THREADS={threads} paibench train --data {input.data} --mask {input.mask}"
        " --dataset {params.dataset} {params.arch} --seed {wildcards.seed} --threads {threads}"
        " --train-config {params.train:q} --checkpoint {params.checkpoint} --run-key {params.run_key}"
        " --spec {params.spec:q} --force --out-dir $(dirname {output.metrics}) > {log} 2>&1"



# One rule per pack, decided when the workflow is parsed from the unfinished runs. A finished run of a packed
# experiment has no rule, so Snakemake keeps its files (a pack rule's params list its members, so any rule
# for it now would differ from the one that made it and trigger a rerun); delete a run's folder to retrain it.
for _pack in GRID.packs(run_done):
    _id = hashlib.sha256(" ".join(r.key for r in _pack).encode()).hexdigest()[:12]

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
        log:
            f"{paths.LOGS}/train_pack/{_pack[0].experiment}/{_id}.log",
        params:
            members=quoted(x for r in _pack for x in ("--member", pack_member(r))),
            train=json.dumps(GRID.train[_pack[0].experiment], sort_keys=True),
        threads: RES["train_threads"]
        resources:
            mem_mb=RES["train_mem_mb"],
            runtime=RES["train_runtime"] * len(_pack),
        conda:
            "../envs/paibench.yaml"
        shell:
            "OMP_NUM_THREADS={threads} paibench train-pack {params.members} --threads {threads}"
            " --train-config {params.train:q} > {log} 2>&1"

rule evaluate:
    input:
        data=paths.DATA,
        mask=paths.MASK,
        model=paths.in_run(paths.RUN_DIR, paths.MODEL),
        metrics=paths.in_run(paths.RUN_DIR, paths.METRICS),
    output:
        paths.in_run(paths.RUN_DIR, paths.EVAL),
    log:
        f"{paths.LOGS}/evaluate/{paths.RUN_KEY}.log",
    conda:
        "../envs/paibench.yaml"
    shell:
        "OMP_NUM_THREADS=1 paibench evaluate --data {input.data} --mask {input.mask} --model {input.model}"
        " --metrics {input.metrics} --out {output} > {log} 2>&1"
