"""A process that has imported gankit and a backend once, and forks a child per training run,
so that a test can kill -9 many runs without paying each one's start-up.

    python zygote.py BACKEND          then, on stdin, one JSON command per line:
    {"run_dir": ..., "overrides": [...], "kill": {"on": "fsync" | "replace" | "unlink", "at": k} | null}

For each command it prints ``{"pid": PID}`` as soon as the child runs (the test may kill it
at a random moment), then ``{"exit": CODE, "signal": SIGNAL, "cpu_seconds": S}`` when it ends. The child
resumes the run directory when it holds a checkpoint, and starts it afresh otherwise.

``kill`` makes the child kill -9 itself inside the k-th call of a file operation of a
checkpoint write, where a timer rarely lands: ``fsync`` (a temporary file written but not
renamed), ``replace`` (just after a rename: some files of a checkpoint in place, its manifest
perhaps not), ``unlink`` (just after a deletion: a checkpoint half pruned).
"""

import json
import os
import signal
import sys

# Frameworks that are safe to fork after import (their thread pools start with the first op).
PRELOAD = {"torch": ("gankit_torch.step",), "tensorflow": ("gankit_tensorflow.step",), "jax": ("gankit_jax.step",)}
# ... and after a training run on one thread (TensorFlow's runtime, once started, is not).
WARM_RUN = {"torch"}


def _kill_self_on(what: str, at: int) -> None:
    import pathlib

    from gankit import checkpoint

    calls = {"n": 0}

    def counted(real, after: bool):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == at and not after:
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(*args, **kwargs)
            if calls["n"] == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapper

    if what == "fsync":
        checkpoint.os.fsync = counted(os.fsync, after=True)
    elif what == "replace":
        checkpoint.os.replace = counted(os.replace, after=True)
    elif what == "unlink":
        pathlib.Path.unlink = counted(pathlib.Path.unlink, after=True)
    else:
        raise ValueError(f"unknown kill point {what!r}")


def _child(command: dict) -> int:
    import gankit
    from gankit import checkpoint

    if command.get("kill"):
        _kill_self_on(command["kill"]["on"], int(command["kill"]["at"]))
    run_dir = command["run_dir"]
    try:
        if os.path.isfile(os.path.join(run_dir, "summary.json")):
            return 0  # killed after its last file: complete
        if os.path.isdir(run_dir) and checkpoint.latest(run_dir) is not None:
            gankit.train(resume=run_dir)
        else:
            parent, name = os.path.split(run_dir)
            gankit.train(preset="ring8", overrides=[*command["overrides"], f"output.dir={parent}",
                                                    f"output.name={name}", "output.overwrite=true"])
    except BaseException as exc:  # the test shows it
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 3
    return 0


def main() -> None:
    backend = sys.argv[1]
    import importlib

    import gankit
    from gankit import plotting, training  # noqa: F401  (imported once, here)

    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:  # matplotlib's first figure is slow: not in every child
        plotting.scatter(os.path.join(tmp, "s.png"), np.zeros((4, 2)), np.ones((4, 2)), title="warm")
        plotting.loss_curves(os.path.join(tmp, "l.png"), [{"step": 1, "d_loss": 1.0, "g_loss": 1.0}])
        for module in PRELOAD.get(backend, ()):
            importlib.import_module(module)
        if backend in PRELOAD:
            gankit.get_registry().backend(backend)
        if backend in WARM_RUN:
            gankit.train(preset="ring8", overrides=[f"backend={backend}", "device=cpu", "training.threads=1",
                                                    "training.steps=2", "training.batch_size=8",
                                                    "training.num_samples=8", "training.tensorboard=false",
                                                    f"output.dir={tmp}", "output.name=warm"])
    print(json.dumps({"ready": backend}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            sys.stdout.flush()
            os._exit(_child(command))
        print(json.dumps({"pid": pid}), flush=True)
        _, status, usage = os.wait4(pid, 0)
        print(json.dumps({"exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                          "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                          "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)}), flush=True)


if __name__ == "__main__":
    main()
