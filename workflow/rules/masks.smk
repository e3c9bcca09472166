rule mask:
    wildcard_constraints:
        dataset="(?!)" if MASK_BATCHED else "[^/]+",  # with batches on, the mask_batch_* rules make every mask
    input:
        data=paths.DATA,
        # budget_from: the other method's mask whose per-layer counts this one uses (MiCA's effective protocol)
        budget=budget_mask,
    output:
        mask=paths.MASK,
        stats=paths.MASK_STATS,
    log:
        f"{paths.LOGS}/mask/{paths.MASK_KEY}.log",
    params:
        args=mask_args,  # Grid.mask_args: the same arguments a mask batch passes per job
    threads: RES["mask_threads"]
    conda:
        "../envs/paibench.yaml"
    shell:
        "OMP_NUM_THREADS={threads} paibench mask {params.args} > {log} 2>&1"


# Masks not made yet, in batches of resources.mask_batch made in one process each (plan: common.smk).
for _batch in MASK_BATCHES:
    _id = mask_batch_id(_batch)

    rule:
        name:
            f"mask_batch_{_id}"
        input:
            data=sorted({r.data for r in _batch}),
            budget=sorted({b for r in _batch for b in GRID.budget_mask(r.method, r.dataset, r.arch, r.compression, r.seed)}),
        output:
            masks=[r.mask for r in _batch],
            stats=[str(paths.mask_stats(r.mask)) for r in _batch],
        log:
            f"{paths.LOGS}/mask_batch/{_id}.log",
        params:
            jobs_file=mask_batch_jobs(_batch),
        threads: RES["mask_threads"]
        resources:
            mem_mb=RES["mask_mem_mb"],
            runtime=RES["mask_runtime"],
        conda:
            "../envs/paibench.yaml"
        shell:
            "OMP_NUM_THREADS={threads} paibench mask-batch --jobs-file {params.jobs_file} > {log} 2>&1"
