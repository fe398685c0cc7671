"""Container backend: one container per environment on a real Docker Engine (aiodocker).

    engine ── start_worker ──▶ ContainerBackend ── create/start (≤ start_cap in flight) ──▶ dockerd
      ▲                            │ listens on <env dir>/agent.sock            │
      │                            │◀── connect ── bootstrap (python3 -c) ──────┘
      │                            │             └─ execs the agent: --fd <that socket>
      └── INVOKE / RESULT frames ──┴── ContainerWorker (a Worker; pid = the container's host pid)

Mounts: the environment's directory read-write at /var/runtime-sock (the socket and the log
files), the agent folder read-only at /opt/warmstart/agent, the function's code read-only at
/var/task, a tmpfs /tmp of ``ephemeral_storage_mb``, and any ``host_binds`` read-only at the
same path (an image that runs the host's interpreter, as the test image does).  Limits: Memory
(no swap), CPU shares in Lambda's proportion, a pid limit, no network unless asked, a read-only
root, no capabilities, no new privileges.

A task per container learns of its end from the kernel (a pidfd on the host pid, so a live
container holds no connection to the daemon), then awaits ``container.wait()``, reads
``State.OOMKilled``, removes the container and only then resolves ``worker.exited``
(``-SIGKILL`` for an OOM kill, with ``worker.oom_killed`` set): a stopped environment leaves
nothing behind.  ``cleanup_leftovers`` removes what a node that died left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

from .process import EXIT_WAIT_S, FunctionSpec, Worker, WorkerOwner

AGENT_DIR = str(Path(__file__).resolve().parent.parent / "agent")
SOCK_DIR = "/var/runtime-sock"
SOCK_PATH = f"{SOCK_DIR}/agent.sock"
AGENT_MOUNT = "/opt/warmstart/agent"
TASK_ROOT = "/var/task"
#: what the agent's stdout and stderr are until it captures them into the log file
BOOT_LOG = "agent.err"
LABEL = "warmstart"
NODE_LABEL = "warmstart.node"
ENV_LABEL = "warmstart.env"
FUNCTION_LABEL = "warmstart.function"
#: image label (scripts/docker-up writes it): host paths to bind read-only, ':'-separated
BINDS_LABEL = "warmstart.host-binds"
MB = 1024 * 1024
#: Lambda gives a function one vCPU at 1,769 MB and CPU in proportion to memory
MB_PER_VCPU = 1769
PIDS_LIMIT = 1024

# Connects to the bind-mounted socket, then becomes the agent with that socket as its --fd.
# Stdlib only, any Python 3.9+; argv: socket path, agent main, boot log.
BOOTSTRAP = (
    "import os,socket,sys\n"
    "path,agent,boot=sys.argv[1:4]\n"
    "fd=os.open(boot,os.O_WRONLY|os.O_CREAT|os.O_APPEND,0o600)\n"
    "os.dup2(fd,1);os.dup2(fd,2);os.close(fd)\n"
    "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM);s.connect(path)\n"
    "fd=s.detach();os.set_inheritable(fd,True)\n"
    "os.execv(sys.executable,[sys.executable,agent,'--fd',str(fd),'--mode','worker'])\n"
)


class ContainerStartError(Exception):
    """The container could not be created, or exited before its agent connected."""


class ContainerWorker(Worker):
    """A Worker whose process is a container's init: ``pid`` is its pid on the host."""

    def __init__(self, owner: WorkerOwner, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(owner, loop)
        self.container_id = ""
        #: the container's memory cgroup directory on the host, when it could be found
        self.cgroup = ""
        #: the create request, which a cancelled start still waits for to remove what it made
        self.create: asyncio.Future[DockerContainer] | None = None

    def __repr__(self) -> str:
        state = "exited" if self.exited.done() else ("closing" if self.closing else "live")
        oom = " oom-killed" if self.oom_killed else ""
        return f"<ContainerWorker {self.container_id[:12]} pid={self.pid} {state}{oom}>"


def cpu_shares(memory_mb: int) -> int:
    """Docker CPU shares (1024 = one CPU) in Lambda's proportion to memory."""
    return max(2, memory_mb * 1024 // MB_PER_VCPU)


def exit_code(status: int, oom_killed: bool) -> int:
    """Docker's StatusCode as the process backend reports it: a signal as its negative."""
    if oom_killed:
        return -signal.SIGKILL
    if 128 < status <= 128 + 64:
        return -(status - 128)
    return status


def local_node_id() -> str:
    """This process as a node: ``host/pid/start time``, so a restarted pid is another node."""
    return f"{socket.gethostname()}/{os.getpid()}/{_start_ticks(os.getpid())}"


def node_alive(node_id: str) -> bool:
    """Whether the node that labelled a container may still run (another host: assume so)."""
    try:
        host, pid, ticks = node_id.rsplit("/", 2)
    except ValueError:
        return True
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return _start_ticks(int(pid)) == ticks


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat.rsplit(b")", 1)[1].split()[19].decode()


def container_paths(
    init_config: dict[str, Any], env_config: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """INIT's configuration and the environment's, with the paths seen inside the container.

    The environment's log file must lie in its directory (it is mounted at /var/runtime-sock);
    the agent sets no address-space limit, since the container's memory cgroup is the limit.
    """
    env_dir = env_config["dir"]
    log = os.path.relpath(env_config["log_path"], env_dir)
    if log.startswith(".."):
        raise ValueError(f"log_path {env_config['log_path']!r} is outside {env_dir!r}")
    environ = dict(
        init_config["environ"], LAMBDA_TASK_ROOT=TASK_ROOT, LAMBDA_RUNTIME_DIR="/opt/warmstart"
    )
    init = dict(init_config, task_root=TASK_ROOT, log_path=f"{SOCK_DIR}/init.log", environ=environ)
    env = {k: v for k, v in env_config.items() if k not in ("dir", "memory_limit_bytes")}
    env["environ"] = dict(env_config.get("environ", {}), TMPDIR="/tmp")
    env["log_path"] = f"{SOCK_DIR}/{log}"
    return init, env


def container_config(
    code_dir: str,
    env_dir: str,
    *,
    image: str,
    memory_mb: int,
    ephemeral_storage_mb: int,
    network: bool,
    python: str,
    labels: dict[str, str],
    host_binds: Sequence[str] = (),
) -> dict[str, Any]:
    """The create request of one environment's container."""
    binds = [
        f"{env_dir}:{SOCK_DIR}:rw",
        f"{AGENT_DIR}:{AGENT_MOUNT}:ro",
        f"{code_dir}:{TASK_ROOT}:ro",
        *(f"{path}:{path}:ro" for path in host_binds),
    ]
    return {
        "Image": image,
        "Cmd": [
            python,
            "-c",
            BOOTSTRAP,
            SOCK_PATH,
            f"{AGENT_MOUNT}/__main__.py",
            f"{SOCK_DIR}/{BOOT_LOG}",
        ],
        "Env": ["PYTHONDONTWRITEBYTECODE=1"],
        "WorkingDir": TASK_ROOT,
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


def memory_cgroup(pid: int) -> str:
    """The memory cgroup directory of a process (v1 memory controller, else the v2 unified)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    unified = ""
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return f"/sys/fs/cgroup/memory{path}"
        if controllers == "":
            unified = f"/sys/fs/cgroup{path}"
    return unified


def _read_peak(cgroup: str) -> int | None:
    for name in ("memory.max_usage_in_bytes", "memory.peak"):
        try:
            with open(os.path.join(cgroup, name), "rb") as f:
                return int(f.read())
        except (OSError, ValueError):
            continue
    return None


def cgroup_peak_mb(worker: ContainerWorker) -> int:
    """The container's peak memory (its cgroup's high-water mark), in MB rounded up; 0 if
    unknown.  A synchronous file read, for the engine's timeout path."""
    peak = _read_peak(worker.cgroup) if worker.cgroup else None
    return -(-(peak or 0) // MB)


class ContainerBackend:
    """Starts environments as containers; one aiodocker client, a cap on starts in flight.

    Use as ``async with ContainerBackend() as backend`` (or ``await backend.close()``), inside
    the loop that runs the workers.
    """

    def __init__(
        self, *, start_cap: int = 8, connect_timeout: float = 30.0, url: str | None = None
    ) -> None:
        self.start_cap = start_cap
        self.connect_timeout = connect_timeout
        self._url = url
        self._docker: aiodocker.Docker | None = None
        # Python >= 3.10: a Semaphore binds to the loop that first waits on it, not this one
        self._starts = asyncio.Semaphore(start_cap)
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: dict[str, ContainerWorker] = {}
        self._starting = 0

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
        for worker in list(self._live.values()):
            worker.kill()
        await self._settle()
        if self._live:  # not ended by a signal to their host pid: ask the daemon
            await asyncio.gather(*(self._remove(cid) for cid in list(self._live)))
            await self._settle()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    async def _settle(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=EXIT_WAIT_S)

    async def image_labels(self, image: str) -> dict[str, str]:
        """The image's labels; raises ContainerStartError when the image is not there."""
        try:
            info = await self.docker.images.inspect(image)
        except aiodocker.DockerError as exc:
            raise ContainerStartError(f"image {image!r}: {exc.message}") from None
        return dict((info.get("Config") or {}).get("Labels") or {})

    async def host_binds(self, image: str) -> tuple[str, ...]:
        """The host paths an image asks for (its ``warmstart.host-binds`` label).

        Only for images you trust: they are mounted read-only into every container.
        """
        value = (await self.image_labels(image)).get(BINDS_LABEL, "")
        return tuple(path for path in value.split(":") if path)

    async def start_worker(
        self,
        spec: FunctionSpec,
        owner: WorkerOwner,
        loop: asyncio.AbstractEventLoop,
        env_config: dict[str, Any],
        *,
        image: str,
        memory_mb: int,
        ephemeral_storage_mb: int,
        network: bool = False,
        python: str = "python3",
        node_id: str,
        env_id: int = 0,
        host_binds: Sequence[str] = (),
    ) -> ContainerWorker:
        """A container running the agent, initialized and ready for its first invocation.

        Raises InitFailed when the handler cannot initialize, ContainerStartError when the
        container cannot start or its agent never connects.
        """
        init, env = container_paths(spec.init_config, env_config)
        labels = {
            LABEL: "1",
            NODE_LABEL: node_id,
            ENV_LABEL: str(env_id),
            FUNCTION_LABEL: spec.name,
        }
        config = container_config(
            spec.code_dir,
            env_config["dir"],
            image=image,
            memory_mb=memory_mb,
            ephemeral_storage_mb=ephemeral_storage_mb,
            network=network,
            python=python,
            labels=labels,
            host_binds=host_binds,
        )
        docker = self.docker
        worker = ContainerWorker(owner, loop)
        self._starting += 1
        try:
            async with self._starts:
                await self._start(docker, worker, loop, env_config["dir"], config)
            await worker.initialize(dict(init, env=env))
        except BaseException:
            worker.kill()
            await asyncio.shield(self._spawn(self._discard(worker)))
            raise
        finally:
            self._starting -= 1
        return worker

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task close() waits for: exit watches and removals outlive a cancelled start."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start(
        self,
        docker: aiodocker.Docker,
        worker: ContainerWorker,
        loop: asyncio.AbstractEventLoop,
        env_dir: str,
        config: dict[str, Any],
    ) -> None:
        """Create and start the container, accept its agent's connection, learn its pid."""
        path = os.path.join(env_dir, "agent.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(1)
            listener.setblocking(False)
            try:
                worker.create = asyncio.ensure_future(docker.containers.create(config))
                container = await asyncio.shield(worker.create)
                worker.container_id = container.id
                await container.start()
                state = (await container.show())["State"]
            except aiodocker.DockerError as exc:
                raise ContainerStartError(f"docker: {exc.message}") from None
            worker.pid = int(state.get("Pid") or 0)
            worker.cgroup = memory_cgroup(worker.pid) if worker.pid else ""
            self._live[container.id] = worker
            self._spawn(self._wait_exit(container, worker))
            conn = await self._accept(loop, listener, worker, env_dir)
        finally:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        try:
            await loop.create_unix_connection(lambda: worker, sock=conn)
        except BaseException:
            conn.close()
            raise

    async def _accept(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        worker: ContainerWorker,
        env_dir: str,
    ) -> socket.socket:
        """The agent's connection, unless the container exits or the timeout passes first."""
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        exited = asyncio.shield(worker.exited)
        try:
            done, _ = await asyncio.wait(
                (accept, exited), timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            _drop(accept)
            raise
        if accept not in done:
            _drop(accept)
        if accept in done:
            return accept.result()[0]
        boot = _tail(os.path.join(env_dir, BOOT_LOG))
        if exited in done:
            raise ContainerStartError(
                f"the container exited with code {exited.result()} before its agent connected{boot}"
            )
        raise ContainerStartError(
            f"the container's agent did not connect within {self.connect_timeout:g} s{boot}"
        )

    async def _wait_exit(self, container: DockerContainer, worker: ContainerWorker) -> None:
        """Await the container's end, read how it ended, remove it, then resolve ``exited``.

        The kernel says when the container's init exits (a pidfd), so a live container holds
        no connection to the daemon; ``wait()`` then only syncs with the daemon's record.
        """
        status, oom = -signal.SIGKILL, False
        try:
            if worker.pid:
                await _process_gone(worker.pid)
            status = int((await container.wait())["StatusCode"])
            state = (await container.show())["State"]
            oom = bool(state.get("OOMKilled"))
        except (aiodocker.DockerError, aiohttp.ClientError, OSError, KeyError, ValueError):
            worker.kill()  # we can no longer tell: make sure it is gone
        finally:
            await self._remove(container.id)
            self._live.pop(container.id, None)
            worker.oom_killed = oom
            if not worker.exited.done():
                worker.exited.set_result(exit_code(status, oom))

    async def _discard(self, worker: ContainerWorker) -> None:
        """Remove the container of a failed start, once its create request has answered."""
        if worker.container_id in self._live:
            return  # started: its _wait_exit removes it once the kill has ended it
        if not worker.container_id and worker.create is not None:
            try:
                worker.container_id = (await worker.create).id
            except (aiodocker.DockerError, aiohttp.ClientError, OSError):
                return
        if worker.container_id:  # force-removal also ends a container that never connected
            await self._remove(worker.container_id)

    async def _remove(self, container_id: str) -> None:
        with contextlib.suppress(aiodocker.DockerError, aiohttp.ClientError, OSError):
            await self.docker.containers.container(container_id).delete(force=True)

    async def stop_worker(self, worker: ContainerWorker, grace: float = EXIT_WAIT_S) -> int:
        """Close the socket, wait, then kill; returns once the container is removed."""
        try:
            return await worker.stop(grace)
        except asyncio.TimeoutError:
            await self._remove(worker.container_id)
            return await asyncio.wait_for(asyncio.shield(worker.exited), EXIT_WAIT_S)

    async def peak_memory_mb(self, worker: ContainerWorker) -> int:
        """The container's peak memory (its cgroup's high-water mark), in MB rounded up."""
        peak = _read_peak(worker.cgroup) if worker.cgroup else None
        if peak is None and not worker.exited.done():
            with contextlib.suppress(aiodocker.DockerError, aiohttp.ClientError, OSError):
                container = self.docker.containers.container(worker.container_id)
                stats = await container.stats(stream=False)
                memory = stats[0].get("memory_stats", {}) if stats else {}
                peak = memory.get("max_usage") or memory.get("usage")
        return -(-int(peak or 0) // MB)

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
        return (
            f"<ContainerBackend live={len(self._live)} starting={self._starting} "
            f"cap={self.start_cap}>"
        )


async def _process_gone(pid: int) -> None:
    """Return once process ``pid`` has exited (at once where pidfds are not available)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # gone already, or no pidfd: wait() alone will do
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


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
