"""Where environments run: one :class:`~.launcher.Launcher` per backend, chosen by the engine
from :data:`~.launcher.LAUNCHERS` (``[pool] backend``).

::

    Engine ─► launcher.py   the protocol: open, prepare, warm, start, stop, retire, close
              ├─ process.py    ProcessLauncher: a template per function generation imports the
              │                handler once and forks workers (or each worker is spawned)
              └─ container.py  ContainerLauncher: a Docker container per environment, stem cells
                               started ahead of demand, host binds, the sandbox agent
    memory.py   peak RSS and the cgroup readers both backends report from

A third backend is a new module and a registry entry; ``runtime.testing.FakeLauncher`` is one
that runs handlers in-process, for tests.
"""
