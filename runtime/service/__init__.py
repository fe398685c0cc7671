"""The HTTP front, and only that: AWS's APIs over aiohttp for boto3, the AWS CLI and curl.

::

    request ─► app.py (create_app: the routes, the SigV4-first middleware, /healthz, /metrics;
               │        Background: the stores, the batch queue, the dispatcher, the schedules,
               │        built first and passed to the APIs)
               ├─ /2015-03-31/…  lambda_api.py (+ lambda_params.py, shapes.py)  Lambda
               ├─ /v1/…          batch_api.py                                   AWS Batch
               ├─ X-Amz-Target   json_rpc.py ─► ecs_api.py, events_api.py        ECS, EventBridge
               └─ anything else  gateway.py ─► runtime.apigw                    API Gateway routes
    each operation: protocol.operation (body.py's cap, auth.py's SigV4, the API's AWS error)
    beside them: connections.py (timeouts, connection cap), logstream.py, metrics.py

The service imports nothing from the CLI or the harness (tests/core/test_layout.py).
"""
