"""Correct losses with large values never fail: the f-GAN KL loss (near 1e5 at a fake logit
of 12.5), least squares with targets at +-1000 and a loss offset by 1e6, on both
backends at every dtype. (A value beyond a dtype's range, 1e6 in float16, is skipped.)"""

import pytest

import gankit
from gankit.conformance import Suite
from gankit_plugins.losses import NonSaturating


class OffsetMillion(NonSaturating):
    """The non-saturating loss plus 1e6: a correct loss whose values are near 1e6."""

    def discriminator(self, ops, real_logits, fake_logits):
        return super().discriminator(ops, real_logits, fake_logits) + 1e6

    def generator(self, ops, fake_logits, real_logits=None):
        return super().generator(ops, fake_logits, real_logits) + 1e6


@gankit.hookimpl
def gankit_register_losses():
    return [gankit.LossRecord(name="offset_million", factory=OffsetMillion, params=OffsetMillion.params_model)]


def test_large_valued_losses_pass_every_check_on_both_backends_at_every_dtype(both_backends):
    import sys

    import gankit_plugins.losses
    import gankit_tensorflow.plugin
    import gankit_torch.plugin

    registry = gankit.Registry.from_plugins([gankit_torch.plugin, gankit_tensorflow.plugin, gankit_plugins.losses,
                                             sys.modules[__name__]])
    losses = ["f_gan_kl", "f_gan_reverse_kl", 'least_squares:{"a": -1000, "b": 1000, "c": 1000}', "offset_million"]
    report = Suite(registry=registry, backends=both_backends, losses=losses,
                   checks=["loss.[!d]*"]).run()
    assert report.ok, "\n".join(f"{r.check} [{r.subject} {r.backend} {r.dtype}]: {r.detail}" for r in report.failures)
    kl = report.find(check="loss.reference", subject="f_gan_kl", dtype="float64")
    assert {r.status for r in kl} == {"pass"}
    # In float16 the values near 1e6 are out of range: not applicable, and it says why.
    half = report.find(check="loss.reference", subject="offset_million", dtype="float16")
    assert half and all(r.status == "n/a" and "range" in r.detail for r in half)
