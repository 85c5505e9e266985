"""The record every stop writer leaves: one JSON file per rank in $STOP_RECORD_DIR.

`asked`: the step of the stop request as training saw it (None: no stop);
`stopped`: the step training stopped at (its own count), or None;
`final`: the framework's step when training ended; plus what the writer adds.
"""
import json
import os


def record(rank=0, **fields):
    folder = os.environ.get("STOP_RECORD_DIR")
    if not folder:
        return
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"rank{rank}.json"), "w") as out:
        json.dump({"rank": rank, **fields}, out)
