"""Container backend: one container per environment on a real Docker Engine (aiodocker).

    engine ── start_worker ──▶ ContainerBackend ── create/start (≤ start_cap in flight) ──▶ dockerd
      ▲                          │ listens on <sandbox dir>/agent.sock             │
      │                          │◀── connect (seqpacket) ── bootstrap (python3 -c) ┘
      │                          │        └─ runs the agent in sandbox mode: the container's
      │                          │           first process, which imports no function
      │   Sandbox (a ForkServer) ├── FORK(fd) ──▶ sandbox ── fork ──▶ worker: INIT, INVOKE…
      └── INVOKE / RESULT frames ┴──────────────────────────────────────┘  (ContainerWorker)

A container is a sandbox: its first process forks the environment's worker and reports its
exit.  A worker that is killed (a timeout) or dies is replaced by a fresh one in the same
container when the environment starts again, so /tmp survives as it does in Lambda, and the
next call is cold.  A *stem cell* is a sandbox started ahead of demand for an (image, memory,
storage, network) key with the code store mounted instead of one function's code: a cold start
takes one, and only initializes the function (OpenWhisk's prewarm); the pool refills behind it.

Mounts: the sandbox's directory read-write at /var/runtime-sock (sockets and log files), the
agent folder read-only at /opt/warmstart/agent, the function's code (or the code store, for a
stem cell) read-only at /var/task, a tmpfs /tmp of ``ephemeral_storage_mb``, and any
``host_binds`` read-only at the same path (an image that runs the host's interpreter, as the
test image does).  Limits: Memory (no swap), CPU shares in Lambda's proportion, a pid limit, no
network unless asked, a read-only root, no capabilities, no new privileges.

A task per container learns of its end from the kernel (a pidfd on the host pid, so a live
container holds no connection to the daemon), then reads ``State.OOMKilled``, removes the
container and only then resolves what still waited on it: a stopped environment leaves nothing
behind.  A worker killed by the container's OOM killer is told from the cgroup's ``oom_kill``
counter.  ``cleanup_leftovers`` removes what a node that died left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

from ..agent.protocol import EnvConfig, InitConfig
from ..docker import (
    DOCKER_ERRORS,
    LABEL,
    MB,
    NODE_LABEL,
    image_binds,
    owner_labels,
    process_gone,
    remove,
)
from ..errors import InvalidParameterValueException
from ..node import local_node_id, node_alive
from ..tasks import TaskSet
from .memory import memory_cgroup, oom_kills, open_peak, peak_mb_at, reset_peak
from .process import EXIT_WAIT_S, ForkServer, FunctionSpec, Worker, WorkerOwner

if TYPE_CHECKING:
    from ..config import FunctionConfig
    from .launcher import Function, LaunchContext, Slot

AGENT_DIR = str(Path(__file__).resolve().parent.parent / "agent")
SOCK_DIR = "/var/runtime-sock"
SOCK_PATH = f"{SOCK_DIR}/agent.sock"
LOG_NAME = "output.log"
AGENT_MOUNT = "/opt/warmstart/agent"
TASK_ROOT = "/var/task"
#: where Lambda's images keep their runtime (LAMBDA_RUNTIME_DIR of a foreign runtime)
RUNTIME_DIR = "/var/runtime"
#: the Runtime API's port inside a container (its network namespace is its own)
RUNTIME_API_PORT = 9001
#: our Node.js runtime client, as a container sees it
NODE_CLIENT = f"{AGENT_MOUNT}/nodejs/runtime.js"
#: an image label naming the Python 3.9+ inside it that runs the agent
PYTHON_LABEL = "warmstart.python"
#: what the sandbox's stdout and stderr are (a worker captures its own into the log file)
BOOT_LOG = "agent.err"
ENV_LABEL = "warmstart.env"
FUNCTION_LABEL = "warmstart.function"
STEM_LABEL = "warmstart.stem"
#: Lambda gives a function one vCPU at 1,769 MB and CPU in proportion to memory
MB_PER_VCPU = 1769
PIDS_LIMIT = 1024
_UCRED = struct.Struct("3i")

# Connects to the bind-mounted socket, then runs the agent in sandbox mode in this same
# interpreter (no second interpreter start).  Stdlib only, any Python 3.9+; argv: socket path,
# agent main, boot log.
BOOTSTRAP = (
    "import os,runpy,socket,sys\n"
    "path,agent,boot=sys.argv[1:4]\n"
    "fd=os.open(boot,os.O_WRONLY|os.O_CREAT|os.O_APPEND,0o600)\n"
    "os.dup2(fd,1);os.dup2(fd,2);os.close(fd)\n"
    "s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET);s.connect(path)\n"
    "sys.argv=[agent,'--fd',str(s.detach()),'--mode','sandbox']\n"
    "sys.path[:]=[p for p in sys.path if p]\n"
    "runpy.run_path(agent,run_name='__main__')\n"
)


class ContainerStartError(Exception):
    """The container could not be created, or exited before its agent connected."""


@dataclass(frozen=True)
class ImageFacts:
    """What an image says of itself (``docker image inspect``)."""

    labels: dict[str, str]
    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    working_dir: str = ""

    @classmethod
    def from_inspect(cls, info: dict[str, Any]) -> ImageFacts:
        config = info.get("Config") or {}
        return cls(
            labels=dict(config.get("Labels") or {}),
            entrypoint=tuple(config.get("Entrypoint") or ()),
            command=tuple(config.get("Cmd") or ()),
            working_dir=str(config.get("WorkingDir") or ""),
        )

    @property
    def python(self) -> str:
        """The interpreter that runs the agent in this image: its label's, else python3."""
        return self.labels.get(PYTHON_LABEL) or "python3"


@dataclass(frozen=True)
class ForeignRuntime:
    """The runtime process the agent starts and serves the Runtime API to, in a container:
    ``argv`` (its first part relative to the code's folder when ``in_code``) run in ``cwd``
    (unset: the code's folder)."""

    argv: tuple[str, ...]
    cwd: str | None = None
    in_code: bool = False
    #: the function's code is its image's (nothing is mounted at /var/task)
    image: bool = False

    def init(self, task_root: str) -> dict[str, Any]:
        """INIT's fields for this runtime, the code being at ``task_root``."""
        argv = list(self.argv)
        if self.in_code:
            argv[0] = f"{task_root}/{argv[0]}"
        return {
            "bootstrap": argv,
            "runtime_api_port": RUNTIME_API_PORT,
            "runtime_cwd": self.cwd or task_root,
        }


def foreign_runtime(config: FunctionConfig, facts: ImageFacts | None) -> ForeignRuntime | None:
    """The runtime a container of ``config`` runs, if a foreign one (Lambda's Runtime API):
    the code's ``bootstrap``, our Node.js client, or the image's entrypoint and command as
    ``image_config`` overrides them."""
    if config.custom_runtime:
        return ForeignRuntime(("bootstrap",), in_code=True)
    if config.node_runtime:
        return ForeignRuntime(("node", NODE_CLIENT))
    if not config.image_package:
        return None
    facts = facts or ImageFacts({})
    overrides = config.image_config
    entrypoint = facts.entrypoint
    command = facts.command
    cwd = facts.working_dir
    if overrides is not None:
        if overrides.entry_point is not None:
            entrypoint = tuple(overrides.entry_point)
        if overrides.command is not None:
            command = tuple(overrides.command)
        cwd = overrides.working_directory or cwd
    return ForeignRuntime((*entrypoint, *command), cwd or "/", image=True)


@dataclass(frozen=True)
class SandboxKey:
    """What a container is made with, before any function: stem cells are kept per key."""

    image: str
    memory_mb: int = 128
    ephemeral_storage_mb: int = 512
    network: bool = False
    python: str = "python3"


class ContainerWorker(Worker):
    """A Worker forked in a sandbox: ``pid`` is its pid on the host."""

    def __init__(
        self, owner: WorkerOwner, loop: asyncio.AbstractEventLoop, sandbox: Sandbox
    ) -> None:
        super().__init__(owner, loop)
        self.sandbox = sandbox
        #: the host path of the log file the worker writes (in the sandbox's directory)
        self.log_path = os.path.join(sandbox.dir, LOG_NAME)
        #: the cgroup's oom_kill count when the worker started
        self.oom_base = 0

    @property
    def container_id(self) -> str:
        return self.sandbox.container_id

    def peak_mb(self, reported_kb: int) -> int:
        """The container's cgroup high-water mark (the worker's own peak if unreadable)."""
        return cgroup_peak_mb(self) or super().peak_mb(reported_kb)

    def peak_now_mb(self) -> int:
        return cgroup_peak_mb(self)

    @property
    def cgroup(self) -> str:
        return self.sandbox.cgroup

    def __repr__(self) -> str:
        state = "exited" if self.exited.done() else ("closing" if self.closing else "live")
        oom = " oom-killed" if self.oom_killed else ""
        return f"<ContainerWorker {self.container_id[:12]} pid={self.pid} {state}{oom}>"


class Sandbox(ForkServer):
    """One container whose first process is the agent in sandbox mode."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: SandboxKey, root: str) -> None:
        super().__init__(loop)
        self.key = key
        #: the host directory mounted at /var/runtime-sock
        self.dir = tempfile.mkdtemp(prefix="sandbox-", dir=root)
        self.container_id = ""
        #: the host pid of the container's first process, and its memory cgroup
        self.pid = 0
        self.cgroup = ""
        #: started ahead of demand with the code store mounted (its code is not at TASK_ROOT)
        self.stem = False
        self.create: asyncio.Future[DockerContainer] | None = None
        #: resolved once the container is gone and removed
        self.gone: asyncio.Future[None] = loop.create_future()
        self.oom_killed = False
        self.peak_fd = -1

    def watch(self, pid: int) -> None:
        """The container's first process has connected: find its cgroup."""
        self.pid = pid
        self.cgroup = memory_cgroup(pid) if pid else ""
        if self.cgroup:
            self.peak_fd = open_peak(self.cgroup)

    @property
    def usable(self) -> bool:
        return self._ctrl is not None and not self.gone.done()

    def _worker_exited(self, worker: Worker, code: int) -> None:
        if self.oom_killed or (
            self.cgroup and oom_kills(self.cgroup) > getattr(worker, "oom_base", 0)
        ):
            worker.oom_killed = True
        if worker.oom_killed:
            code = -signal.SIGKILL
        worker.exited.set_result(code)

    def _workers_lost(self) -> None:
        """The sandbox process ended: its workers died with it (PDEATHSIG).  Their exits wait
        until the container's state is read (``ended``), so an OOM kill of the whole container
        is known."""
        for worker in self._workers.values():
            worker.kill()
        if self.gone.done():
            super()._workers_lost()

    def ended(self, oom_killed: bool) -> None:
        """The container is gone (and removed): every worker still waited on has ended."""
        self.oom_killed = oom_killed
        if self.peak_fd >= 0:
            os.close(self.peak_fd)
            self.peak_fd = -1
        if not self.gone.done():
            self.gone.set_result(None)
        self._lost()

    def __repr__(self) -> str:
        state = "usable" if self.usable else ("gone" if self.gone.done() else "ending")
        kind = " stem" if self.stem else ""
        return f"<Sandbox {self.container_id[:12]}{kind} pid={self.pid} {state}>"


def cpu_shares(memory_mb: int) -> int:
    """Docker CPU shares (1024 = one CPU) in Lambda's proportion to memory."""
    return max(2, memory_mb * 1024 // MB_PER_VCPU)


def container_paths(
    init_config: InitConfig,
    env_config: EnvConfig,
    task_root: str = TASK_ROOT,
    runtime: ForeignRuntime | None = None,
) -> tuple[InitConfig, EnvConfig]:
    """INIT's configuration and the environment's, with the paths seen inside the container.

    The worker's log file is the sandbox's (``ContainerWorker.log_path`` on the host); the
    agent sets no address-space limit, since the container's memory cgroup is the limit.  A
    foreign ``runtime`` is the agent's to start, on 127.0.0.1:9001.
    """
    runtime_dir = "/opt/warmstart" if runtime is None else RUNTIME_DIR
    environ = dict(
        init_config["environ"], LAMBDA_TASK_ROOT=task_root, LAMBDA_RUNTIME_DIR=runtime_dir
    )
    if runtime is not None and runtime.image:
        # an image's ENTRYPOINT and CMD say what runs: Lambda sets _HANDLER empty (a base
        # image's entrypoint exports its argument as _HANDLER), and no AWS_EXECUTION_ENV
        environ.pop("AWS_EXECUTION_ENV", None)
        environ.setdefault("_HANDLER", "")
    init = init_config.copy()
    if runtime is not None:
        init.update(runtime.init(task_root))  # type: ignore[typeddict-item]
    init["task_root"] = task_root
    init["log_path"] = f"{SOCK_DIR}/init.log"
    init["environ"] = environ
    env = env_config.copy()
    env.pop("dir", None)
    env.pop("memory_limit_bytes", None)
    env["environ"] = dict(env_config.get("environ", {}), TMPDIR="/tmp")
    env["log_path"] = f"{SOCK_DIR}/{LOG_NAME}"
    return init, env


def container_config(
    code_dir: str | None,
    sandbox_dir: str,
    *,
    image: str,
    memory_mb: int,
    ephemeral_storage_mb: int,
    network: bool,
    python: str,
    labels: dict[str, str],
    host_binds: Sequence[str] = (),
) -> dict[str, Any]:
    """The create request of one sandbox's container: ``code_dir`` is mounted at /var/task
    (None: the image's own code is there).  The image's ENTRYPOINT and CMD give way to the
    agent, which starts them itself for an image function."""
    binds = [
        f"{sandbox_dir}:{SOCK_DIR}:rw",
        f"{AGENT_DIR}:{AGENT_MOUNT}:ro",
        *([f"{code_dir}:{TASK_ROOT}:ro"] if code_dir is not None else []),
        *(f"{path}:{path}:ro" for path in host_binds),
    ]
    return {
        "Image": image,
        "Entrypoint": [python],
        "Cmd": [
            "-c",
            BOOTSTRAP,
            SOCK_PATH,
            f"{AGENT_MOUNT}/__main__.py",
            f"{SOCK_DIR}/{BOOT_LOG}",
        ],
        "Env": ["PYTHONDONTWRITEBYTECODE=1"],
        **({"WorkingDir": TASK_ROOT} if code_dir is not None else {}),
        "Labels": labels,
        "HostConfig": {
            "Binds": binds,
            "Tmpfs": {"/tmp": f"rw,nosuid,nodev,size={ephemeral_storage_mb}m,mode=1777"},
            "Memory": memory_mb * MB,
            "MemorySwap": memory_mb * MB,
            "CpuShares": cpu_shares(memory_mb),
            "PidsLimit": PIDS_LIMIT,
            "NetworkMode": "bridge" if network else "none",
            "ReadonlyRootfs": True,
            "SecurityOpt": ["no-new-privileges"],
            "CapDrop": ["ALL"],
            "LogConfig": {"Type": "none", "Config": {}},
        },
    }


def cgroup_peak_mb(worker: ContainerWorker) -> int:
    """The container's peak memory (its cgroup's high-water mark), in MB rounded up; 0 if
    unknown."""
    return peak_mb_at(worker.sandbox.peak_fd)


def host_pid(init_pid: int, inner_pid: int) -> int:
    """The host pid of the child ``inner_pid`` (as the container sees it) of ``init_pid``."""
    try:
        with open(f"/proc/{init_pid}/task/{init_pid}/children") as f:
            children = f.read().split()
    except OSError:
        return 0
    for child in children:
        try:
            with open(f"/proc/{child}/status") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        if int(line.split()[-1]) == inner_pid:
                            return int(child)
                        break
        except (OSError, ValueError):
            continue
    return 0


def _peer_pid(conn: socket.socket) -> int:
    """The pid (in our namespace) of the process at the other end of a unix socket."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(creds)[0])


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_code(code_dir: str, store: str, name: str) -> None:
    """Copy ``code_dir`` to ``store/name`` whole or not at all (a rename of a finished copy)."""
    target = os.path.join(store, name)
    if os.path.isdir(target):
        return
    os.makedirs(store, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".stage-", dir=store)
    try:
        shutil.copytree(code_dir, os.path.join(staging, "code"), copy_function=_link_or_copy)
        with contextlib.suppress(OSError):  # another copy finished first
            os.rename(os.path.join(staging, "code"), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class StemCells:
    """The ready stem cells of one key, and how many more are on their way."""

    def __init__(self, key: SandboxKey, count: int, host_binds: Sequence[str]) -> None:
        self.key = key
        self.count = count
        self.host_binds = tuple(host_binds)
        self.ready: list[Sandbox] = []
        self.filling = 0
        self.taken = 0
        self.error = ""

    def __repr__(self) -> str:
        key = self.key
        return f"<StemCells {key.image} {key.memory_mb}MB ready={len(self.ready)}/{self.count}>"

    def forget(self, sandbox: Sandbox) -> None:
        if sandbox in self.ready:
            self.ready.remove(sandbox)


class ContainerBackend:
    """Starts environments as containers; one aiodocker client, a cap on starts in flight.

    Use as ``async with ContainerBackend() as backend`` (or ``await backend.close()``), inside
    the loop that runs the workers.  ``root`` holds the sandboxes' directories and the code
    store (a fresh temporary directory by default, removed on close).
    """

    def __init__(
        self,
        *,
        start_cap: int = 8,
        connect_timeout: float = 30.0,
        url: str | None = None,
        root: str | None = None,
        node_id: str = "",
    ) -> None:
        self.start_cap = start_cap
        self.connect_timeout = connect_timeout
        self.node_id = node_id or local_node_id()
        self._url = url
        self._docker: aiodocker.Docker | None = None
        # Python >= 3.10: a Semaphore binds to the loop that first waits on it, not this one
        self._starts = asyncio.Semaphore(start_cap)
        #: exit watches and removals: they outlive a cancelled start, close() waits for them
        self._tasks = TaskSet()
        self._live: dict[str, Sandbox] = {}
        #: environment directory → the sandbox that serves it
        self._bound: dict[str, Sandbox] = {}
        self._stems: dict[SandboxKey, StemCells] = {}
        self._staged: dict[tuple[str, int], str] = {}
        self._starting = 0
        if root is None:
            self.root, self._own_root = tempfile.mkdtemp(prefix="warmstart-containers-"), True
        else:
            os.makedirs(root, exist_ok=True)
            self.root, self._own_root = root, False
        self.store = os.path.join(self.root, "code")

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self._url)
        return self._docker

    async def __aenter__(self) -> ContainerBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Kill every container this backend started, wait until they are removed."""
        for stems in self._stems.values():
            stems.count = 0
        for sandbox in list(self._live.values()):
            for worker in list(sandbox._workers.values()):
                worker.kill()
            if sandbox.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(sandbox.pid, signal.SIGKILL)
        await self._settle()
        if self._live:  # not ended by a signal to their host pid: ask the daemon
            await asyncio.gather(*(self._remove(cid) for cid in list(self._live)))
            await self._settle()
        await self._tasks.close()
        if self._docker is not None:
            await self._docker.close()
            self._docker = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    async def _settle(self) -> None:
        await self._tasks.wait(EXIT_WAIT_S)

    async def image_facts(self, image: str) -> ImageFacts:
        """What the image says of itself; raises ContainerStartError when it is not there."""
        try:
            info = await self.docker.images.inspect(image)
        except aiodocker.DockerError as exc:
            raise ContainerStartError(f"image {image!r}: {exc.message}") from None
        return ImageFacts.from_inspect(info)

    async def image_labels(self, image: str) -> dict[str, str]:
        """The image's labels; raises ContainerStartError when the image is not there."""
        return (await self.image_facts(image)).labels

    async def host_binds(self, image: str) -> tuple[str, ...]:
        """The host paths an image asks for (its ``warmstart.host-binds`` label).

        Only for images you trust: they are mounted read-only into every container.
        """
        return image_binds(await self.image_labels(image))

    # -- environments -----------------------------------------------------------------------

    async def start_worker(
        self,
        spec: FunctionSpec,
        owner: WorkerOwner,
        loop: asyncio.AbstractEventLoop,
        env_config: EnvConfig,
        *,
        image: str,
        memory_mb: int,
        ephemeral_storage_mb: int,
        network: bool = False,
        python: str = "python3",
        env_id: int = 0,
        host_binds: Sequence[str] = (),
        runtime: ForeignRuntime | None = None,
    ) -> ContainerWorker:
        """A worker initialized and ready for its first invocation.

        The environment's sandbox if it still runs (a worker restarted after a timeout or a
        crash: same container, same /tmp), else a stem cell of the key, else a new container.
        With a foreign ``runtime`` the worker starts it and serves it the Runtime API (an
        image's own code is never a stem cell's).  Raises InitFailed when the handler cannot
        initialize, ContainerStartError when the container cannot start or its agent never
        connects.
        """
        key = SandboxKey(image, memory_mb, ephemeral_storage_mb, network, python)
        env_dir = env_config["dir"]
        sandbox = self._bound.get(env_dir)
        task_root = TASK_ROOT
        image_code = runtime is not None and runtime.image
        try:
            if sandbox is None or not sandbox.usable:
                stem = None if image_code else await self._take_stem(key)
                sandbox = stem or await self._new_sandbox(
                    key,
                    None if image_code else spec.code_dir,
                    self._labels(env_id, spec.name),
                    host_binds,
                )
                self._bound[env_dir] = sandbox
            if sandbox.stem:
                task_root = f"{TASK_ROOT}/{await self._stage(spec)}"
            return await self._fork(
                sandbox, spec, owner, loop, env_config, env_id, task_root, runtime
            )
        except BaseException:
            self._bound.pop(env_dir, None)
            if sandbox is not None:
                await asyncio.shield(self._tasks.create_task(self._discard(sandbox)))
            raise

    async def _fork(
        self,
        sandbox: Sandbox,
        spec: FunctionSpec,
        owner: WorkerOwner,
        loop: asyncio.AbstractEventLoop,
        env_config: EnvConfig,
        env_id: int,
        task_root: str,
        runtime: ForeignRuntime | None = None,
    ) -> ContainerWorker:
        worker = ContainerWorker(owner, loop, sandbox)
        if sandbox.cgroup:
            worker.oom_base = oom_kills(sandbox.cgroup)
            reset_peak(sandbox.cgroup)
        with contextlib.suppress(FileNotFoundError):
            os.truncate(worker.log_path, 0)
        # a foreign runtime's worker leads a process group: a kill takes what it started
        worker.group = runtime is not None
        fork_env: EnvConfig = {"group": True} if worker.group else {}
        inner = await sandbox.fork_worker(worker, env_id, fork_env)
        worker.pid = host_pid(sandbox.pid, inner)
        init, env = container_paths(spec.init_config, env_config, task_root, runtime)
        try:
            init["env"] = env
            await worker.initialize(init)
        except BaseException:
            worker.kill()
            raise
        return worker

    def _labels(self, env_id: int, function: str) -> dict[str, str]:
        return {**owner_labels(self.node_id), ENV_LABEL: str(env_id), FUNCTION_LABEL: function}

    async def stop_worker(self, worker: ContainerWorker, grace: float = EXIT_WAIT_S) -> int:
        """The environment ends: close the worker's socket, wait, then kill; returns once its
        container is removed."""
        sandbox = worker.sandbox
        for env_dir, bound in list(self._bound.items()):
            if bound is sandbox:
                del self._bound[env_dir]
        try:
            return await worker.stop(grace)
        except asyncio.TimeoutError:
            return -signal.SIGKILL
        finally:
            await self._discard(sandbox)

    # -- stem cells -------------------------------------------------------------------------

    def keep_stem_cells(self, key: SandboxKey, count: int, host_binds: Sequence[str] = ()) -> None:
        """Keep ``count`` started sandboxes of ``key`` ready for cold starts (0 stops)."""
        stems = self._stems.get(key)
        if stems is None:
            stems = self._stems[key] = StemCells(key, count, host_binds)
        stems.count = count
        while len(stems.ready) > count:
            self._tasks.create_task(self._discard(stems.ready.pop()))
        self._fill(stems)

    def stem_cells(self, key: SandboxKey) -> StemCells | None:
        return self._stems.get(key)

    async def stem_cells_ready(self, key: SandboxKey, timeout: float = 60.0) -> None:
        """Wait until every stem cell of ``key`` is started (for tests and warm-up)."""
        stems = self._stems[key]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(stems.ready) < stems.count:
            if stems.error:
                raise ContainerStartError(stems.error)
            if loop.time() > deadline:
                raise asyncio.TimeoutError(f"{stems!r} not ready within {timeout:g} s")
            await asyncio.sleep(0.01)

    async def _take_stem(self, key: SandboxKey) -> Sandbox | None:
        stems = self._stems.get(key)
        if stems is None:
            return None
        while stems.ready:
            sandbox = stems.ready.pop()
            if sandbox.usable:
                stems.taken += 1
                self._fill(stems)
                return sandbox
        self._fill(stems)
        return None

    def _fill(self, stems: StemCells) -> None:
        while len(stems.ready) + stems.filling < stems.count:
            stems.filling += 1
            self._tasks.create_task(self._grow(stems))

    async def _grow(self, stems: StemCells) -> None:
        labels = {**owner_labels(self.node_id), STEM_LABEL: stems.key.image}
        os.makedirs(self.store, exist_ok=True)
        try:
            sandbox = await self._new_sandbox(stems.key, self.store, labels, stems.host_binds)
        except (ContainerStartError, OSError) as exc:
            stems.error = str(exc)  # not retried in a loop: the next take tries again
            return
        finally:
            stems.filling -= 1
        sandbox.stem = True
        stems.error = ""
        if len(stems.ready) < stems.count:
            stems.ready.append(sandbox)
            sandbox.gone.add_done_callback(lambda _: stems.forget(sandbox))
        else:
            await self._discard(sandbox)

    async def _stage(self, spec: FunctionSpec) -> str:
        """The function's code copied (hard-linked where it can be) into the code store that
        stem cells mount; returns its folder's name there."""
        name = self._staged.get((spec.name, spec.generation))
        if name is None:
            name = f"{spec.name}-{spec.generation}"
            await asyncio.to_thread(_copy_code, spec.code_dir, self.store, name)
            self._staged[(spec.name, spec.generation)] = name
        return name

    # -- containers -------------------------------------------------------------------------

    async def _new_sandbox(
        self,
        key: SandboxKey,
        code_dir: str | None,
        labels: dict[str, str],
        host_binds: Sequence[str],
    ) -> Sandbox:
        loop = asyncio.get_running_loop()
        sandbox = Sandbox(loop, key, self.root)
        config = container_config(
            code_dir,
            sandbox.dir,
            image=key.image,
            memory_mb=key.memory_mb,
            ephemeral_storage_mb=key.ephemeral_storage_mb,
            network=key.network,
            python=key.python,
            labels=labels,
            host_binds=host_binds,
        )
        self._starting += 1
        try:
            async with self._starts:
                await self._start(sandbox, config)
        except BaseException:
            await asyncio.shield(self._tasks.create_task(self._discard(sandbox)))
            raise
        finally:
            self._starting -= 1
        return sandbox

    async def _start(self, sandbox: Sandbox, config: dict[str, Any]) -> None:
        """Create and start the container, accept its sandbox's connection, learn its pid."""
        loop = sandbox.loop
        path = os.path.join(sandbox.dir, "agent.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            listener.bind(path)
            listener.listen(1)
            listener.setblocking(False)
            try:
                sandbox.create = asyncio.ensure_future(self.docker.containers.create(config))
                container = await asyncio.shield(sandbox.create)
                sandbox.container_id = container.id
                self._live[container.id] = sandbox
                await container.start()
            except aiodocker.DockerError as exc:
                raise ContainerStartError(
                    f"docker: {exc.message}{_no_python(exc, config)}"
                ) from None
            conn = await self._accept(loop, listener, container, sandbox.dir)
        finally:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        sandbox.watch(_peer_pid(conn))
        sandbox.attach(conn)
        self._tasks.create_task(self._wait_exit(container, sandbox))

    async def _accept(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        container: DockerContainer,
        sandbox_dir: str,
    ) -> socket.socket:
        """The sandbox's connection, unless the container exits or the timeout passes first."""
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        exited = asyncio.ensure_future(container.wait())
        try:
            done, _ = await asyncio.wait(
                (accept, exited), timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            _drop(accept)
            raise
        finally:
            if not exited.done():
                exited.cancel()
        if accept in done:
            return accept.result()[0]
        _drop(accept)
        boot = _tail(os.path.join(sandbox_dir, BOOT_LOG))
        if exited in done:
            try:
                status = f"code {int(exited.result()['StatusCode'])}"
            except (aiodocker.DockerError, aiohttp.ClientError, KeyError, ValueError) as exc:
                status = f"an unknown status ({exc})"
            raise ContainerStartError(
                f"the container exited with {status} before its agent connected{boot}"
            )
        raise ContainerStartError(
            f"the container's agent did not connect within {self.connect_timeout:g} s{boot}"
        )

    async def _wait_exit(self, container: DockerContainer, sandbox: Sandbox) -> None:
        """Await the container's end, read how it ended, remove it, then end its sandbox.

        The kernel says when the container's first process exits (a pidfd), so a live
        container holds no connection to the daemon; ``wait()`` then only syncs with the
        daemon's record.
        """
        oom = False
        try:
            await process_gone(sandbox.pid)
            await container.wait()
            state = (await container.show())["State"]
            oom = bool(state.get("OOMKilled"))
        except (*DOCKER_ERRORS, KeyError, ValueError):
            pass  # we can no longer tell: the removal below makes sure it is gone
        finally:
            await self._remove(container.id)
            self._live.pop(container.id, None)
            sandbox.ended(oom)
            shutil.rmtree(sandbox.dir, ignore_errors=True)

    async def _discard(self, sandbox: Sandbox) -> None:
        """Remove a sandbox's container (once its create request has answered) and wait
        until it is gone."""
        if not sandbox.container_id and sandbox.create is not None:
            try:
                sandbox.container_id = (await sandbox.create).id
            except DOCKER_ERRORS:
                pass
        if sandbox.container_id:  # force-removal also ends a container that never connected
            await self._remove(sandbox.container_id)
        if sandbox.container_id in self._live and sandbox.pid:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(sandbox.gone), EXIT_WAIT_S)
        else:
            self._live.pop(sandbox.container_id, None)
            sandbox.ended(False)
            shutil.rmtree(sandbox.dir, ignore_errors=True)

    async def _remove(self, container_id: str) -> None:
        await remove(self.docker.containers.container(container_id))

    async def cleanup_leftovers(self, node_id: str) -> list[str]:
        """Remove warmstart containers of nodes that no longer run (not ``node_id``'s own).

        A node is gone when it ran on this host and its process (pid and start time) is gone;
        nodes of other hosts are left alone.  Returns the removed containers' ids.
        """
        filters = json.dumps({"label": [f"{LABEL}=1"]})
        found = await self.docker.containers.list(all=True, filters=filters)
        dead = []
        for container in found:
            node = (container["Labels"] or {}).get(NODE_LABEL, "")
            if node != node_id and not node_alive(node):
                dead.append(container.id)
        await asyncio.gather(*(self._remove(cid) for cid in dead))
        return dead

    def __repr__(self) -> str:
        stems = sum(len(s.ready) for s in self._stems.values())
        return (
            f"<ContainerBackend live={len(self._live)} starting={self._starting} "
            f"stem={stems} cap={self.start_cap}>"
        )


class ContainerLauncher:
    """Environments as containers: the Docker client made on first use (the leftovers of dead
    runs are removed then), the pool's stem cells, host binds from trusted images' labels."""

    def __init__(self, context: LaunchContext) -> None:
        self._pool = context.pool
        self._root = os.path.join(context.work_dir, "containers")
        self._node_id = context.node_id
        self.backend: ContainerBackend | None = None
        #: (function, image) → the host paths its containers mount read-only
        self._binds: dict[tuple[str, str], tuple[str, ...]] = {}
        #: (function, image) → what the image says of itself
        self._facts: dict[tuple[str, str], ImageFacts] = {}

    async def open(self) -> None:
        if self._pool.stem_cells:
            await self._backend()

    async def prepare(self, config: FunctionConfig) -> None:
        """An engine that answers and the image; its host binds, if the pool trusts images."""
        backend = await self._backend()
        image = config.image or ""
        try:
            facts = await backend.image_facts(image)
        except ContainerStartError as exc:
            raise InvalidParameterValueException(f"image: {exc}") from None
        binds = image_binds(facts.labels)
        self._binds[config.name, image] = binds if self._pool.trust_image_binds else ()
        self._facts[config.name, image] = facts

    async def warm(self, fn: Function) -> None:
        pass

    async def start(self, fn: Function, env: Slot, env_config: EnvConfig) -> Worker:
        config = fn.config
        image = config.image or ""
        backend = await self._backend()
        facts = self._facts.get((config.name, image))
        runtime = foreign_runtime(config, facts)
        if runtime is not None:  # the agent's interpreter is the image's, not the function's
            python = facts.python if facts is not None else "python3"
        else:
            python = config.runtime or "python3"
        return await backend.start_worker(
            fn.spec,
            env,
            asyncio.get_running_loop(),
            env_config,
            image=image,
            memory_mb=config.memory_mb,
            ephemeral_storage_mb=config.ephemeral_storage_mb,
            network=config.network,
            python=python,
            env_id=env.id,
            host_binds=self._binds.get((config.name, image), ()),
            runtime=runtime,
        )

    async def stop(self, worker: Worker) -> None:
        if isinstance(worker, ContainerWorker) and self.backend is not None:
            await self.backend.stop_worker(worker)
        else:
            await worker.stop()

    async def retire(self, fn: Function, generation: int) -> None:
        pass

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.close()

    async def _backend(self) -> ContainerBackend:
        if self.backend is None:
            backend = ContainerBackend(
                start_cap=self._pool.cold_start_cap, root=self._root, node_id=self._node_id
            )
            try:
                await backend.cleanup_leftovers(self._node_id)
            except DOCKER_ERRORS as exc:
                await backend.close()
                raise InvalidParameterValueException(
                    f"backend: 'container' needs a Docker Engine, and none answers ({exc})"
                ) from None
            self.backend = backend
            await self._keep_stem_cells(backend)
        return self.backend

    async def _keep_stem_cells(self, backend: ContainerBackend) -> None:
        trusted = self._pool.trust_image_binds
        for stem in self._pool.stem_cells:
            try:
                binds = await backend.host_binds(stem.image)
            except ContainerStartError as exc:
                raise InvalidParameterValueException(f"stem_cells.image: {exc}") from None
            key = SandboxKey(
                stem.image, stem.memory_mb, stem.ephemeral_storage_mb, stem.network, stem.python
            )
            backend.keep_stem_cells(key, stem.count, binds if trusted else ())


def _no_python(exc: aiodocker.DockerError, config: dict[str, Any]) -> str:
    """What to say when the agent's interpreter is not in the image."""
    python = config["Entrypoint"][0]
    message = str(exc.message)
    if python in message and ("not found" in message or "no such file" in message):
        return (
            f" (the agent runs on a Python 3.9+ in the container: {python!r} is not there; "
            f"put python3 on the image's PATH, name another with its {PYTHON_LABEL!r} label, "
            "or trust its host binds)"
        )
    return ""


def _drop(accept: asyncio.Future[tuple[socket.socket, Any]]) -> None:
    """Cancel an accept nobody waits for, or close the connection it made."""
    if not accept.done():
        accept.cancel()
    elif not accept.cancelled() and accept.exception() is None:
        accept.result()[0].close()


def _tail(path: str, limit: int = 2000) -> str:
    """The end of the bootstrap's output, for an error message."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            text = f.read().decode(errors="replace").strip()
    except OSError:
        return ""
    return f": {text}" if text else ""
