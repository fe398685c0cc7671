"""Lambda-style container images for the tests, built locally (no registry is reachable).

Both start from ``warmstart/test-python:local`` (the host's interpreter, bind-mounted; see
``scripts/docker-up``) and are laid out as AWS's base images are: the code at /var/task, the
runtime at /var/runtime, an ENTRYPOINT that is the runtime and a CMD that names the handler.

- ``RIC_IMAGE``: ENTRYPOINT ``/lambda-entrypoint.sh`` (the handler as its one argument, then
  ``python -m awslambdaric``), awslambdaric and its dependencies copied from the test venv
  into /var/runtime, CMD ``app.handler``.
- ``BOOTSTRAP_IMAGE``: the same ENTRYPOINT running ``/var/runtime/bootstrap``, the
  shell-and-curl runtime of AWS's custom-runtime tutorial, CMD ``function.handler``.

An image is built once per test session and removed at its end; a label holds a hash of what
went in, so a stale image of the same tag is rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

import aiodocker
from docker_support import IMAGE
from runtimeapi_support import PROVIDED

RIC_IMAGE = "warmstart/test-ric:local"
BOOTSTRAP_IMAGE = "warmstart/test-bootstrap:local"
HASH_LABEL = "warmstart.test-hash"

#: the handlers of RIC_IMAGE's /var/task/app.py
RIC_APP = """\
import os
import time

STARTED = time.time()
CALLS = 0


def handler(event, context):
    global CALLS
    CALLS += 1
    if event.get("do") == "raise":
        raise KeyError("nope")
    if event.get("do") == "sleep":
        time.sleep(event["seconds"])
    if event.get("do") == "exit":
        os._exit(3)
    if event.get("do") == "kill-agent":  # the agent that serves this runtime dies mid-call
        os.kill(os.getppid(), 9)
        time.sleep(30)
    if event.get("do") == "ps":  # the container's processes (its own pid namespace)
        found = []
        for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    found.append(f.read().replace(b"\\0", b" ").decode().strip())
            except OSError:
                pass
        return {"ps": found}
    return {
        "calls": CALLS,
        "started": STARTED,
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "event": event,
        "handler": os.environ.get("_HANDLER"),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "runtime_dir": os.environ.get("LAMBDA_RUNTIME_DIR"),
        "execution_env": os.environ.get("AWS_EXECUTION_ENV"),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "image_env": os.environ.get("FROM_IMAGE"),
    }


def other(event, context):
    print("the other handler ran")
    return {"other": True, "cwd": os.getcwd()}
"""


def entrypoint(runtime: str) -> str:
    """An image's entrypoint in the shape of AWS's: one argument, the handler, exported as
    _HANDLER before the runtime starts."""
    return f"""\
#!/bin/sh
if [ $# -ne 1 ]; then
  echo "the entrypoint takes one argument, the handler" 1>&2
  exit 142
fi
export _HANDLER="$1"
exec {runtime}
"""


RIC_DOCKERFILE = f"""\
FROM {IMAGE}
ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime PYTHONPATH=/var/runtime
ENV FROM_IMAGE=yes
COPY var /var
COPY lambda-entrypoint.sh /lambda-entrypoint.sh
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
CMD ["app.handler"]
"""

BOOTSTRAP_DOCKERFILE = f"""\
FROM {IMAGE}
ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
COPY var /var
COPY lambda-entrypoint.sh /lambda-entrypoint.sh
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
CMD ["function.handler"]
"""

_RIC_PACKAGES = ("awslambdaric", "simplejson", "snapshot_restore_py.py", "runtime_client")


def _site_packages() -> Path:
    spec = importlib.util.find_spec("awslambdaric")
    if spec is None or spec.origin is None:
        raise RuntimeError("awslambdaric is not installed (it is in the dev extras)")
    return Path(spec.origin).resolve().parent.parent


def _ric_files() -> Iterable[tuple[str, bytes, int]]:
    site = _site_packages()
    for entry in sorted(site.iterdir()):
        if not any(entry.name.startswith(name) for name in _RIC_PACKAGES):
            continue
        if entry.name.endswith(".dist-info"):
            continue
        paths = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
        for path in paths:
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(site)
            yield f"var/runtime/{rel}", path.read_bytes(), 0o644
    yield "var/task/app.py", RIC_APP.encode(), 0o644
    yield "lambda-entrypoint.sh", entrypoint('python3 -m awslambdaric "$_HANDLER"').encode(), 0o755


def _bootstrap_files() -> Iterable[tuple[str, bytes, int]]:
    yield "var/runtime/bootstrap", (PROVIDED / "curl_bootstrap.sh").read_bytes(), 0o755
    yield "lambda-entrypoint.sh", entrypoint("/var/runtime/bootstrap").encode(), 0o755
    yield "var/task/README", b"the code of an image function lives in its image\n", 0o644


def _recipe(tag: str) -> tuple[str, list[tuple[str, bytes, int]]]:
    if tag == RIC_IMAGE:
        return RIC_DOCKERFILE, list(_ric_files())
    if tag == BOOTSTRAP_IMAGE:
        return BOOTSTRAP_DOCKERFILE, list(_bootstrap_files())
    raise ValueError(f"no recipe for {tag}")


def _digest(dockerfile: str, files: list[tuple[str, bytes, int]]) -> str:
    digest = hashlib.sha256(dockerfile.encode())
    for name, data, mode in files:
        digest.update(name.encode() + b"\0" + data + str(mode).encode())
    return digest.hexdigest()[:16]


def _context(dockerfile: str, files: list[tuple[str, bytes, int]]) -> bytes:
    """A build context: the Dockerfile and the files, as a tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode in [("Dockerfile", dockerfile.encode(), 0o644), *files]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def build(docker: aiodocker.Docker, tag: str) -> None:
    """Build ``tag`` unless an image of the same recipe is there already."""
    dockerfile, files = _recipe(tag)
    digest = _digest(dockerfile, files)
    try:
        info = await docker.images.inspect(tag)
        if ((info.get("Config") or {}).get("Labels") or {}).get(HASH_LABEL) == digest:
            return
    except aiodocker.DockerError:
        pass
    context = _context(f"{dockerfile}LABEL {HASH_LABEL}={digest}\n", files)
    output = await docker.images.build(
        fileobj=io.BytesIO(context), encoding="identity", tag=tag, rm=True, forcerm=True
    )
    errors = [line["error"] for line in output if isinstance(line, dict) and "error" in line]
    if errors:
        raise RuntimeError(f"building {tag}: {' '.join(errors)}")


async def remove(docker: aiodocker.Docker, tag: str) -> None:
    """Remove the image ``tag`` (gone already is fine)."""
    try:
        await docker.images.delete(tag, force=True)
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            raise
