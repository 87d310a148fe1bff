"""Tiny, fast experiments for the training-engine tests."""

import gankit

TINY = ["training.batch_size=32", "training.log_every=5", "training.num_samples=64", "device=cpu",
        "generator.params.hidden=[16, 16]", "discriminator.params.hidden=[16, 16]", "training.tensorboard=false"]


def tiny(tmp_path, backend, *extra, name="run", steps=20, **kwargs):
    return gankit.train(preset="ring8", overrides=[*TINY, f"training.steps={steps}", f"backend={backend}",
                                                    f"output.dir={tmp_path}", f"output.name={name}", *extra], **kwargs)


class Interrupted(Exception):
    """Stands for a kill: raised by the loop at a chosen step."""
