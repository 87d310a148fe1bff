"""gankit's TensorFlow backend: ops, networks, optimizers and a tf.function training step.

Importing this package does not import TensorFlow; the modules below do
(``plugin`` excepted, which registers the backend lazily).

TensorFlow's C++ start-up messages are silenced, unless ``gankit --debug`` or
``GANKIT_DEBUG=1`` asks for them or ``TF_CPP_MIN_LOG_LEVEL`` is already set:

* ``TF_CPP_MIN_LOG_LEVEL=3`` is set before TensorFlow is imported, which silences what
  TensorFlow logs through its own logging (CPU feature notes, the cuInit error of a CUDA
  build on a machine without a GPU);
* what its extension modules log through absl while they load, before absl's logging is
  initialised, ignores that setting (TF 2.21: ``WARNING: All log messages before
  absl::InitializeLog() is called are written to STDERR`` and ``I0000 ... port.cc:153]
  oneDNN custom operations are on ...``). So while a ``tensorflow.*`` extension module
  loads, file descriptor 2 goes to a temporary file; once it has loaded (or failed to),
  stderr is restored and everything written meanwhile is written to it again, except that
  banner and absl's informational (``I``) lines. Warnings, errors and Python exceptions
  of the import still surface. ``TF_ENABLE_ONEDNN_OPTS`` is left alone (it changes
  numerics).
"""

import contextlib as _contextlib
import importlib.machinery as _machinery
import os as _os
import re as _re
import sys as _sys

#: The absl banner, and absl's informational lines (``I0000 00:00:1796411586.621130  7451 port.cc:153] ...``).
_NOISE = _re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                     rb"|I\d{4} \d+:\d+:\d+\.\d+ +\d+ [^ \]]+:\d+\] )")


def _noise(line: bytes) -> bool:
    return _NOISE.match(line) is not None


@_contextlib.contextmanager
def filtered_stderr():
    """Send file descriptor 2 to a temporary file for the block, then write what it got
    back to stderr, less the start-up noise (see the module docstring)."""
    import tempfile

    with _contextlib.suppress(Exception):
        _sys.stderr.flush()
    try:
        saved = _os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    try:
        with tempfile.TemporaryFile() as tmp:
            _os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                with _contextlib.suppress(Exception):
                    _sys.stderr.flush()
                _os.dup2(saved, 2)
                tmp.seek(0)
                kept = b"".join(line for line in tmp.read().splitlines(keepends=True) if not _noise(line))
                if kept:
                    _os.write(2, kept)
    finally:
        _os.close(saved)


class _QuietLoader:
    """An extension module's loader, loading it with :func:`filtered_stderr`."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        with filtered_stderr():
            return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            with filtered_stderr():
                self.loader.exec_module(module)
        finally:  # the module keeps the real loader
            module.__loader__ = self.loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self.loader

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _QuietTensorFlowStartup:
    """A meta path finder: TensorFlow's extension modules load with :func:`filtered_stderr`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] != "tensorflow":
            return None
        for finder in _sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if isinstance(spec.loader, _machinery.ExtensionFileLoader):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


if _os.environ.get("GANKIT_DEBUG", "") in ("", "0"):
    if "TF_CPP_MIN_LOG_LEVEL" not in _os.environ and not any(
            isinstance(f, _QuietTensorFlowStartup) for f in _sys.meta_path):
        _sys.meta_path.insert(0, _QuietTensorFlowStartup())
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
