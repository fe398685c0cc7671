"""``make run``: serve the example functions (examples/warmstart.toml) and print what to try.

Once the service listens, ready-to-paste curl, CLI and boto3 lines are printed for its URL.
Ctrl-C (or SIGTERM) lets in-flight invocations finish, stops every environment and exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from runtime import run
from runtime.configfile import load
from runtime.service.app import serve

CONFIG = Path(__file__).with_name("warmstart.toml")

HINTS = """\
Try, from another terminal:

  curl -s -X POST {url}/2015-03-31/functions/hello/invocations -d '{{"name": "curl"}}'
  curl -s -i -X POST {url}/2015-03-31/functions/hello-fail/invocations -d '{{}}'
  curl -s '{url}/hello?name=route'                          # API Gateway route, payload 2.0
  curl -s -X POST {url}/counter/mine -d '{{"n": 1}}'             # payload 1.0 route
  curl -s -X POST {url}/2015-03-31/functions/report/invocations -d '{{"seconds": 1}}'  # 202, job
  curl -s -X POST {url}/2015-03-31/functions/hello/invocations \
      -H 'X-Amz-Invocation-Type: Event' -d '{{"name": "later"}}'      # stored, then run (202)
  curl -s {url}/healthz
  curl -s {url}/metrics | grep '^warmstart_invocations'

  {bin}/warmstart invoke hello '{{"x": 1}}' --tail --endpoint {url}
  {bin}/warmstart functions list --endpoint {url}
  {bin}/warmstart logs hello --follow --endpoint {url}
  {bin}/warmstart jobs list --queue warmstart-default --all --endpoint {url}
  {bin}/warmstart jobs describe JOB_ID --endpoint {url}

  {python} -c "import boto3; c = boto3.client('lambda', endpoint_url='{url}', \\
region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x'); \\
print(c.invoke(FunctionName='hello', Payload=b'{{\\"x\\": 1}}')['Payload'].read())"

Ctrl-C stops the service (in-flight invocations finish first).
"""


def announce(banner: str) -> None:
    print(banner)
    url = banner.splitlines()[0].rsplit(" ", 1)[-1]
    python = sys.executable
    print()
    print(HINTS.format(url=url, python=python, bin=str(Path(python).parent)), flush=True)


def main() -> int:
    return run(serve(load(CONFIG), announce=announce))


if __name__ == "__main__":
    sys.exit(main())
