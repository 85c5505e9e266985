"""loaders.py, warm: import the frameworks once, then load checkpoints on request.

    python loadserver.py SOCKET FRAMEWORK...

Binds a Unix socket at SOCKET, imports each FRAMEWORK's loader (one warm-up
call on a path that does not exist), prints `READY` on stdout, then serves one
request per connection, one at a time: the client sends a JSON line
`{"framework": ..., "path": ...}` (`{"quit": true}` ends it), the reply is a
JSON line `{"ok": bool, "error": str|null, "step": int|null, "ms": float}`
where `step` is the step the checkpoint's own content holds, when the format has one (torch dict "step", Lightning
"global_step", DCP "step", DeepSpeed "global_steps", TF/HF: checked against the name by loaders.py).

Why: a cold `python loaders.py` spends 2-10 s importing the framework before it
opens the checkpoint, so a listener would read it seconds after `after_save`
fired, when any half-written file is long complete. Warm, the read starts
within milliseconds of the event: that is what makes the interop tests able
to catch an `after_save` for a checkpoint that is not whole yet.
The same functions (loaders.LOADERS) do the loading either way.
"""
import json
import os
import socket
import sys
import time

import loaders


def content_step(framework, obj):
    try:
        if framework in ("torch", "torch_save", "dcp", "torch_dcp"):
            step = obj.get("step") if isinstance(obj, dict) else None
        elif framework in ("lightning", "lightning_ckpt"):
            step = obj.get("global_step")
        elif framework in ("deepspeed", "deepspeed_ckpt"):
            step = obj.get("global_steps")
        else:
            return None
        return None if step is None else int(step)
    except Exception:  # noqa: BLE001 - a step we cannot read is just not reported
        return None


def handle(request):
    framework, path = request["framework"], request["path"]
    if framework not in loaders.LOADERS:
        return {"ok": False, "error": f"unknown framework {framework}", "step": None, "ms": 0.0}
    start = time.monotonic()
    try:
        obj = loaders.LOADERS[framework](path)
    except Exception as e:  # noqa: BLE001 - one line, whatever went wrong (as loaders.main)
        msg = " ".join(str(e).split())[:300]
        return {"ok": False, "error": f"{type(e).__name__}: {msg}", "step": None,
                "ms": (time.monotonic() - start) * 1000}
    return {"ok": True, "error": None, "step": content_step(framework, obj), "ms": (time.monotonic() - start) * 1000}


def main():
    sock_path, frameworks = sys.argv[1], sys.argv[2:]
    unknown = [f for f in frameworks if f not in loaders.LOADERS]
    if unknown:
        print(f"unknown framework(s): {' '.join(unknown)}", file=sys.stderr)
        return 2
    missing = os.path.join(os.path.dirname(os.path.abspath(sock_path)), "no-such-ckpt-0")
    for framework in frameworks:
        try:  # imports the framework (the loaders import inside their functions)
            loaders.LOADERS[framework](missing)
        except Exception:  # noqa: BLE001 - expected: the path does not exist
            pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(16)
    print("READY", flush=True)
    while True:
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as stream:
            line = stream.readline()
            if not line:
                continue
            request = json.loads(line)
            if request.get("quit"):
                return 0
            stream.write((json.dumps(handle(request)) + "\n").encode())
            stream.flush()


if __name__ == "__main__":
    sys.exit(main())
