"""One run per run directory: an exclusive lock held while a run trains or resumes.

The lock is an OS file lock (``filelock``: ``flock`` on POSIX, ``LockFileEx`` on Windows)
on ``RUN_DIR/.gankit.lock``. The operating system releases it when the process ends, however
it ends (a kill -9 included), so a stale lock never blocks ``--resume``. A second run on the
same directory is refused at once, in one line, before it writes anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from gankit.errors import ConfigError

LOCK_FILE = ".gankit.lock"


class RunLock:
    """``with RunLock(run_dir):`` — or :meth:`acquire` / :meth:`release`."""

    def __init__(self, run_dir: str | os.PathLike):
        from filelock import FileLock

        self.directory = Path(run_dir)
        self.path = self.directory / LOCK_FILE
        self._lock = FileLock(self.path, timeout=0, thread_local=False)

    def acquire(self) -> "RunLock":
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise ConfigError(f"run directory {str(self.directory)!r} is in use by another gankit run",
                              hint="wait for that run to end, or choose another output.name") from None
        except OSError as exc:  # a read-only or full file system, or a directory where the lock file goes
            raise ConfigError(f"run directory {str(self.directory)!r} cannot be locked for this run: cannot open "
                              f"{str(self.path)!r} ({exc.strerror or exc})",
                              hint="make the run directory writable (and remove anything else named "
                                   f"{LOCK_FILE}), then run the command again") from None
        return self

    def release(self) -> None:
        self._lock.release(force=True)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
