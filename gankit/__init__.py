"""gankit: train GANs on PyTorch, TensorFlow or JAX from one config.

The public API. Importing gankit imports no deep-learning framework.
"""

from gankit.config import (
    ExperimentConfig,
    PluginChoice,
    load_config,
)
from gankit.data import ArrayDataset, Dataset, SamplerDataset, StreamingDataset, gaussian_mixture
from gankit.errors import (
    BackendUnavailable,
    CheckpointError,
    ConfigError,
    DataError,
    GankitError,
    PluginError,
    TrainingError,
    TrainingInterrupted,
)
from gankit.hookspecs import hookimpl
from gankit.initializers import initial_weights
from gankit.metrics import (
    EvalContext,
    FeatureExtractor,
    Metric,
    MetricMeta,
    feature_statistics,
    frechet_distance,
    frechet_distance_features,
    inception_score,
    kernel_distance,
    kl_to_uniform,
    mode_statistics,
    precision_recall,
)
from gankit.nets import (
    Activation,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalPool,
    LayerNorm,
    NetSpec,
    OneHot,
    Projection,
    Reshape,
    Residual,
    SpectralNorm,
    Upsample,
)
from gankit.native import NativeNet
from gankit.ops import NumpyOps, Ops
from gankit.monitor import progress_bars
from gankit.plugins import PluginWarning, Registry, get_backend, get_registry
from gankit.protocol import (
    LOSS_PROPERTIES,
    Backend,
    Loss,
    LossMeta,
    NoParams,
    OptimizerSettings,
    ProcessGroup,
    Regularizer,
    RegularizerMeta,
    StepResult,
    StrictModel,
    Trainer,
    TrainSetup,
    WeightSchedule,
)
from gankit.records import (
    ArchitectureRecord,
    BackendRecord,
    DatasetRecord,
    FeatureExtractorRecord,
    LossRecord,
    MetricRecord,
    RegularizerRecord,
)

__version__ = "0.1.0"


def list_plugins(kind: str | None = None):
    """Every registered plugin (optionally of one kind), with its distribution."""
    return get_registry().entries(kind)


def load_checkpoint(path, backend=None, **kwargs):
    """Rebuild a checkpoint's GAN on any backend (default: the one that wrote it); returns
    a :class:`gankit.restore.LoadedGAN` with ``sample``, ``generate`` and the trainer."""
    from gankit.restore import load_checkpoint as _load

    return _load(path, backend, **kwargs)


def export_onnx(checkpoint, out, **kwargs):
    """Export a checkpoint's generator to ONNX (see :mod:`gankit.export`)."""
    from gankit.export import export_onnx as _export

    return _export(checkpoint, out, **kwargs)


def generator(source, **kwargs):
    """The trained generator as the framework's own object: ``gankit.generator(run)`` (see
    :func:`gankit.export.generator`)."""
    from gankit.export import generator as _generator

    return _generator(source, **kwargs)


def train(config=None, **kwargs):
    """Train from a config (path, dict, :class:`ExperimentConfig` or ``None`` for the
    default preset); returns the :class:`gankit.training.Run`."""
    from gankit.training import train as _train

    return _train(config, **kwargs)


import types as _types

__all__ = sorted(
    name for name, value in globals().items()
    if not name.startswith("_") and not isinstance(value, _types.ModuleType)
)
