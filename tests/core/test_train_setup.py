"""A TrainSetup checks its own consistency once, when it is made: no backend is needed to
refuse one that no backend can train, in one line with a hint."""

import dataclasses

import pytest

from gankit.conformance.training import BATCH, DISCRIMINATOR, GENERATOR, LATENT, StepLoss, StepPenalty
from gankit.errors import ConfigError
from gankit.nets import Activation, BatchNorm, Dense, Embedding, NetSpec
from gankit.protocol import OptimizerSettings, TrainSetup, WeightSchedule
from gankit.trainer import check_setup

PACKED = NetSpec(name="packed_d", input_shape=(2,), pack=4, layers=[Dense(units=8), Dense(units=1)])
BN_D = NetSpec(name="bn_d", input_shape=(2,), layers=[Dense(units=8), BatchNorm(), Activation(fn="relu"),
                                                      Dense(units=1)])


def setup(**kw) -> TrainSetup:
    base = dict(generator=GENERATOR, discriminator=DISCRIMINATOR, loss=StepLoss(), regularizers={"r1": StepPenalty()},
                g_optimizer=OptimizerSettings("sgd", 0.1), d_optimizer=OptimizerSettings("sgd", 0.1),
                latent_dim=LATENT, batch_size=BATCH, device="cpu")
    return TrainSetup(**{**base, **kw})


def test_a_consistent_setup_is_made():
    s = setup(world_size=4, rank=3, n_critic=5, ema_decay=0.999, precision="bfloat16",
              regularizer_schedules={"r1": WeightSchedule("linear", 0.5)})
    assert s.num_classes is None and check_setup(s) is None


@pytest.mark.parametrize("kw, message", [
    (dict(latent_dim=LATENT + 1), f"the generator takes input shape ({LATENT},) but latent_dim is {LATENT + 1}"),
    (dict(discriminator=NetSpec(name="d3", input_shape=(3,), layers=[Dense(units=1)])),
     "the generator outputs shape (2,) but the discriminator takes (3,)"),
    (dict(discriminator=NetSpec(name="d2", input_shape=(2,), layers=[Dense(units=2)])),
     "the discriminator must output one logit per sample, got shape (2,)"),
    (dict(n_critic=0), "n_critic must be at least 1, got 0"),
    (dict(regularizer_schedules={"gp": WeightSchedule("linear", 0.0)}),
     "weight schedules given for regularizers the setup does not have: gp"),
    (dict(ema_decay=1.0), "ema_decay must be in [0, 1), got 1.0"),
    (dict(ema_decay=-0.1), "ema_decay must be in [0, 1), got -0.1"),
    (dict(world_size=2, rank=2), "rank 2 does not fit world_size 2"),
    (dict(world_size=0, rank=0), "rank 0 does not fit world_size 0"),
    (dict(batch_size=10, world_size=3), "batch_size 10 does not divide among 3 processes"),
    (dict(discriminator=PACKED, batch_size=10), "batch_size 10 does not divide into the discriminator's packs of 4"),
    (dict(discriminator=PACKED, batch_size=8, world_size=4),
     "batch_size 8 does not divide into the discriminator's packs of 4 on each of 4 processes"),
    (dict(batch_size=1), "batch norm needs at least 2 samples per batch, each process gets 1"),  # the generator's
    (dict(discriminator=BN_D, batch_size=6, world_size=6), "batch norm needs at least 2 samples per batch, each process gets 1"),
    (dict(precision="float8"), "unknown precision 'float8'"),
])
def test_an_inconsistent_setup_is_refused_in_one_line_with_a_hint(kw, message):
    with pytest.raises(ConfigError) as err:
        setup(**kw)
    assert err.value.message == message
    assert err.value.hint and "\n" not in err.value.one_line()


def test_conditional_nets_must_agree_on_the_classes():
    def conditional(name, classes, shape, units):
        return NetSpec(name=name, input_shape=shape, layers=[Embedding(num_classes=classes, features=3),
                                                             Dense(units=units)])

    with pytest.raises(ConfigError, match=r"generator and discriminator: the nets disagree on num_classes: \[3, 5\]"):
        setup(generator=conditional("g", 3, (LATENT,), 2), discriminator=conditional("d", 5, (2,), 1))
    s = setup(generator=conditional("g", 3, (LATENT,), 2), discriminator=conditional("d", 3, (2,), 1))
    assert s.num_classes == 3 == check_setup(s)


def test_replace_checks_again():
    s = setup(batch_size=12, world_size=3)
    assert dataclasses.replace(s, world_size=4).world_size == 4
    with pytest.raises(ConfigError, match="does not divide among 5 processes"):
        dataclasses.replace(s, world_size=5)


def test_float16_on_the_cpu_is_the_trainers_to_refuse():
    """The setup cannot know where ``device='auto'`` lands; the precision against the
    resolved device is checked in one place, gankit.trainer.check_precision."""
    from gankit.trainer import check_precision

    assert setup(precision="float16", device="cpu").precision == "float16"
    check_precision("float16", "cuda:0")
    with pytest.raises(ConfigError, match="precision float16 needs a CUDA GPU, the trainer runs on cpu"):
        check_precision("float16", "cpu")
