"""Run several short editing streams one after another (one model load each), appending JSON lines.

    python bench/moe_sweep.py specs.jsonl --out runs/moe/sweep.jsonl

Each spec line: {"editor": "lemoe", "config": {...}, "turns": 2, "edits": 10, "offset": 0, "label": "...",
"save_state": "path.safetensors" (optional)}.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from bench.moe_stream import parse, run


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("specs", help="JSON-lines file of runs")
    cli.add_argument("--out", required=True)
    cli.add_argument("--threads", type=int, default=1)
    args = cli.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    for line in Path(args.specs).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        spec = json.loads(line)
        argv = [
            "--editor",
            spec["editor"],
            "--config",
            json.dumps(spec.get("config", {})),
            "--turns",
            str(spec.get("turns", 2)),
            "--edits",
            str(spec.get("edits", 10)),
            "--offset",
            str(spec.get("offset", 0)),
            "--label",
            spec.get("label", ""),
        ]
        if "data" in spec:
            argv += ["--data", spec["data"]]
        if "save_state" in spec:
            argv += ["--save-state", spec["save_state"]]
        torch.manual_seed(0)
        result = run(parse(argv))
        logging.info("RESULT %s", json.dumps(result))
        with Path(args.out).open("a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
