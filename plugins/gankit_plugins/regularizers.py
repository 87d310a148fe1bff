"""Built-in discriminator regularizers (gradient penalties), written against :class:`gankit.Ops`.

Each regularizer evaluates the discriminator's input gradient at some samples —
``ops.input_grad(discriminator, x)`` is the gradient of ``sum(D(x))``, which is the
per-sample gradient because sample i's logit depends only on sample i — and returns
the *weighted* scalar penalty the discriminator minimises alongside its loss.

The samples are wrapped in ``ops.stop_gradient``: a penalty trains the discriminator
only, never the generator that produced the fakes.
"""

from __future__ import annotations

from pydantic import Field

import gankit

#: Added under the square root of a gradient norm. d/dx sqrt(x) = 1 / (2 sqrt(x)) is
#: infinite at x = 0, so a sample whose input gradient vanishes (a dead ReLU region,
#: a saturated logit) would make the penalty's own gradient inf/NaN. With the epsilon
#: the norm is off by at most 1e-6 and its gradient stays finite.
NORM_EPS = 1e-12


def _gradient_norm(ops: gankit.Ops, discriminator, x):
    """Per-sample L2 norm of the discriminator's input gradient at ``x``: shape (batch,)."""
    grad = ops.input_grad(discriminator, x)
    return ops.sqrt(ops.batch_sum_squares(grad) + NORM_EPS)


def _per_sample_shape(ops: gankit.Ops, x) -> tuple[int, ...]:
    """(batch, 1, ..., 1): one draw per sample, broadcast over the sample's axes."""
    shape = ops.shape(x)
    return (shape[0],) + (1,) * (len(shape) - 1)


# -- parameter models -----------------------------------------------------------
class GradientPenaltyParams(gankit.StrictModel):
    """Parameters of the WGAN-GP gradient penalty."""

    weight: float = Field(10.0, ge=0.0, le=1e6, allow_inf_nan=False)
    """Penalty weight lambda."""
    target: float = Field(1.0, ge=0.0, le=1e6, allow_inf_nan=False)
    """Gradient norm the penalty pulls towards (1 for a 1-Lipschitz critic; 0 gives a
    zero-centred penalty)."""
    one_sided: bool = False
    """Penalise only norms above the target: lambda E[relu(||g|| - target)^2]."""


class R1Params(gankit.StrictModel):
    """Parameters of the R1 / R2 penalties."""

    gamma: float = Field(10.0, ge=0.0, le=1e6, allow_inf_nan=False)
    """Penalty weight gamma; the penalty is gamma / 2 * E[||grad D||^2]."""


class DraganParams(gankit.StrictModel):
    """Parameters of the DRAGAN penalty."""

    weight: float = Field(10.0, ge=0.0, le=1e6, allow_inf_nan=False)
    """Penalty weight lambda."""
    target: float = Field(1.0, ge=0.0, le=1e6, allow_inf_nan=False)
    """Gradient norm k the penalty pulls towards."""
    noise: float = Field(0.5, ge=0.0, le=1e3, allow_inf_nan=False)
    """Perturbation scale c, in units of the real batch's standard deviation."""


# -- regularizers ---------------------------------------------------------------
class GradientPenalty(gankit.Regularizer):
    """The WGAN-GP gradient penalty at random interpolates of real and fake samples.

    ``x = eps * real + (1 - eps) * fake`` with ``eps ~ U[0, 1)`` drawn once per sample;
    ``lambda * E[(||grad D(x)|| - target)^2]``, or with ``one_sided``
    ``lambda * E[relu(||grad D(x)|| - target)^2]``.

    Source: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs" (NeurIPS).
    """

    params_model = GradientPenaltyParams
    meta = gankit.RegularizerMeta(
        evaluated_at="interpolates",
        formula=(
            "x = eps real + (1 - eps) fake, eps ~ U[0,1) per sample;  "
            "lambda E[(||grad D(x)|| - target)^2]  (one-sided: relu(||grad D(x)|| - target)^2)"
        ),
        paper="Gulrajani et al. 2017, Improved Training of Wasserstein GANs (NeurIPS)",
    )

    def __init__(self, params: GradientPenaltyParams | None = None):
        super().__init__(params if params is not None else GradientPenaltyParams())

    def __call__(self, ops, discriminator, real, fake):
        p = self.params
        real, fake = ops.stop_gradient(real), ops.stop_gradient(fake)
        eps = ops.random_uniform(_per_sample_shape(ops, real), like=real)
        interpolates = eps * real + (1.0 - eps) * fake
        gap = _gradient_norm(ops, discriminator, interpolates) - p.target
        if p.one_sided:
            gap = ops.relu(gap)
        return p.weight * ops.mean(ops.square(gap))


class R1(gankit.Regularizer):
    """The R1 penalty: the squared input-gradient norm at real samples.

    ``gamma / 2 * E[||grad D(real)||^2]`` (zero-centred; no square root needed).

    Source: Mescheder, Geiger & Nowozin 2018, "Which Training Methods for GANs do
    actually Converge?" (ICML).
    """

    params_model = R1Params
    meta = gankit.RegularizerMeta(
        evaluated_at="real",
        formula="gamma / 2 * E[||grad D(real)||^2]",
        paper="Mescheder, Geiger & Nowozin 2018, Which Training Methods for GANs do actually Converge? (ICML)",
    )

    def __init__(self, params: R1Params | None = None):
        super().__init__(params if params is not None else R1Params())

    def __call__(self, ops, discriminator, real, fake):
        x = ops.stop_gradient(real if self.meta.evaluated_at == "real" else fake)
        grad = ops.input_grad(discriminator, x)
        return 0.5 * self.params.gamma * ops.mean(ops.batch_sum_squares(grad))


class R2(R1):
    """The R2 penalty: R1 evaluated at fake samples.

    ``gamma / 2 * E[||grad D(fake)||^2]``.

    Source: Mescheder, Geiger & Nowozin 2018, "Which Training Methods for GANs do
    actually Converge?" (ICML).
    """

    meta = gankit.RegularizerMeta(
        evaluated_at="fake",
        formula="gamma / 2 * E[||grad D(fake)||^2]",
        paper="Mescheder, Geiger & Nowozin 2018, Which Training Methods for GANs do actually Converge? (ICML)",
    )


class Dragan(gankit.Regularizer):
    """The DRAGAN penalty at perturbed real samples.

    ``x = real + c * std(real) * u`` with ``u ~ U[0, 1)`` of the batch's shape and
    ``std`` the population standard deviation of the whole real batch;
    ``lambda * E[(||grad D(x)|| - k)^2]``.

    Source: Kodali, Abernethy, Hays & Kira 2017, "On Convergence and Stability of
    GANs" (arXiv:1705.07215).
    """

    params_model = DraganParams
    meta = gankit.RegularizerMeta(
        evaluated_at="perturbed_real",
        formula="x = real + c std(real) u, u ~ U[0,1);  lambda E[(||grad D(x)|| - k)^2]",
        paper="Kodali et al. 2017, On Convergence and Stability of GANs (arXiv:1705.07215)",
    )

    def __init__(self, params: DraganParams | None = None):
        super().__init__(params if params is not None else DraganParams())

    def __call__(self, ops, discriminator, real, fake):
        p = self.params
        real = ops.stop_gradient(real)
        u = ops.random_uniform(ops.shape(real), like=real)
        perturbed = real + (p.noise * ops.std(real)) * u
        gap = _gradient_norm(ops, discriminator, perturbed) - p.target
        return p.weight * ops.mean(ops.square(gap))


# -- registration ---------------------------------------------------------------
REGULARIZERS: dict[str, tuple[type[gankit.Regularizer], str]] = {
    "gradient_penalty": (GradientPenalty, "WGAN-GP: (||grad D|| - target)^2 at real/fake interpolates."),
    "r1": (R1, "R1: gamma/2 ||grad D||^2 at real samples."),
    "r2": (R2, "R2: gamma/2 ||grad D||^2 at fake samples."),
    "dragan": (Dragan, "DRAGAN: (||grad D|| - k)^2 at noise-perturbed real samples."),
}
"""Every built-in regularizer: registered name -> (class, one-line description)."""


@gankit.hookimpl
def gankit_register_regularizers():
    return [
        gankit.RegularizerRecord(
            name=name,
            params=cls.params_model,
            factory=cls,
            description=description,
            metadata={"evaluated_at": cls.meta.evaluated_at, "paper": cls.meta.paper},
        )
        for name, (cls, description) in REGULARIZERS.items()
    ]
