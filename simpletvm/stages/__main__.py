"""python -m simpletvm.stages STAGE JOB_DIR [--round N] [--cores 0-3] [--gpus 0] [--out FILE]

Runs one stage in this (fresh) process, pinned to the given cores and GPUs, and prints its
outcome as JSON (or writes it to --out). Exit code 0 when the stage succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys

from simpletvm.cores import parse_ids
from simpletvm.executor import StageRequest, execute, pin
from simpletvm.stages import STAGES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simpletvm.stages", description=__doc__)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("job_dir")
    parser.add_argument("--round", type=int, default=0)
    parser.add_argument("--cores", type=parse_ids, default=None, help="e.g. 0-3 or 0,2")
    parser.add_argument("--gpus", type=parse_ids, default=None, help="e.g. 0 or 0,1")
    parser.add_argument("--out", help="write the outcome JSON here instead of stdout")
    args = parser.parse_args(argv)
    request = StageRequest(args.stage, args.job_dir, args.round, args.cores, args.gpus)
    pin(request.cores, request.gpus)
    outcome = execute(request)
    text = json.dumps(outcome.to_dict(), indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)
    if not outcome.ok:
        print(outcome.error, file=sys.stderr)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
