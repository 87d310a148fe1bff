"""One process of a distributed test run: train, then save this rank's weights.

    torchrun --nproc-per-node 2 distributed_worker.py OUT_DIR KEY=VALUE ...
    TF_CONFIG=... python distributed_worker.py OUT_DIR KEY=VALUE ...

Writes ``rank{R}.npz`` (the weights), ``rank{R}.txt`` (rank, world size, last losses) and
``rank{R}.json`` (on torch: the class of each net's data-parallel wrapper).
"""

import json
import os
import sys

import numpy as np

import gankit

if __name__ == "__main__":
    out, overrides = sys.argv[1], sys.argv[2:]
    run = gankit.train(preset="ring8", overrides=[*overrides, f"output.dir={out}", "output.name=run"])
    np.savez(os.path.join(out, f"rank{run.rank}.npz"), **run.trainer.state_dict())
    with open(os.path.join(out, f"rank{run.rank}.txt"), "w") as fh:
        fh.write(f"{run.rank} {run.world_size} {run.metrics['d_loss']} {run.metrics['g_loss']}\n")
    wrappers = {}
    if run.config.backend == "torch":
        from torch.nn.parallel import DistributedDataParallel

        wrappers = {role: {"class": type(net).__name__, "is_ddp": isinstance(net, DistributedDataParallel),
                           "wraps_the_net": net.module is run.trainer.nets[role]}
                    for role, net in run.trainer.parallel.items()}
    with open(os.path.join(out, f"rank{run.rank}.json"), "w") as fh:
        json.dump({"wrappers": wrappers, "metrics": sorted(run.metrics)}, fh)
