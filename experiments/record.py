"""What every one-result experiment script writes: its result as JSON, stamped with the command
that made it, the date and the commit, printed and (with ``--out``) saved."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The short hash of the code the script ran (rows of one table may span commits)."""
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def save(script: str, argv, result: dict, out: Path | None) -> None:
    """Print ``result`` after its command, date and commit, and write it to ``out`` when given."""
    stamped = {"command": " ".join(["python", f"experiments/{script}", *(argv or sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit(), **result}
    text = json.dumps(stamped, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
