"""One `paibench` command over every run's results, for the rules that read them all (aggregate, tables,
figures). Thousands of paths overflow one shell command line, so they go through a listing file: the aggregate
rule writes it from its input (output.listing) and the table and figure rules read it (input.listing). A
`script:` (not `run:`) because Snakemake runs a `run:` job by starting a second Snakemake process that parses the
whole workflow again, seconds per job. The command runs in this process: params.command and params.args name it,
as a rule's shell line would."""

import contextlib
import sys
from pathlib import Path

from paibench.cli import main

sm = snakemake  # noqa: F821 (injected by Snakemake)
if hasattr(sm.output, "listing"):
    listing = Path(sm.output.listing)
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{f}\n" for f in sm.input.metrics))
else:
    listing = Path(sm.input.listing)
argv = [sm.params.command, "--metrics-list", str(listing), *[str(a) for a in sm.params.args]]
Path(sm.log[0]).parent.mkdir(parents=True, exist_ok=True)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    print("paibench " + " ".join(argv), flush=True)
    code = main(argv)
sys.exit(code)
