"""A custom runtime for the tests: the Runtime API loop over http.client, misbehaving on request.

The event's "case" picks what it does.  Answers it can return at once go in its response;
answers to requests made after the response was sent are kept for the next call ("report").
"""

import http.client
import json
import os
import socket
import sys
import time

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"
ENV_KEYS = (
    "AWS_LAMBDA_RUNTIME_API",
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "TZ",
)
conn = http.client.HTTPConnection(API)


def request(method, path, body=None, headers=None, chunked=False):
    conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    response = conn.getresponse()
    data = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def answer(status, _headers, data):
    return {"status": status, "body": data.decode()}


print("probe init", flush=True)
if os.environ.get("PROBE_INIT") == "error":
    request(
        "POST",
        f"{BASE}/init/error",
        b'{"errorMessage": "bad config", "errorType": "Runtime.ConfigError"}',
        {"Lambda-Runtime-Function-Error-Type": "Runtime.ConfigError"},
    )
    sys.exit(1)
if os.environ.get("PROBE_INIT") == "exit":
    sys.exit(3)


def raw_exchange(*sends, expect=1):
    """Send each piece on a new connection (one write each), read ``expect`` answers; their
    status lines, and whether the server closed the connection after them."""
    host, port = API.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as raw:
        raw.settimeout(5)
        statuses = []
        data = b""
        for piece in sends:
            raw.sendall(piece if isinstance(piece, bytes) else piece.encode("latin-1"))
            if piece == sends[0] and expect == "continue":  # read the interim answer first
                data += raw.recv(4096)
        while len(statuses) < (2 if expect == "continue" else expect):
            while b"\r\n\r\n" not in data:
                got = raw.recv(65536)
                if not got:
                    return {"statuses": statuses, "closed": True}
                data += got
            head, _, data = data.partition(b"\r\n\r\n")
            statuses.append(int(head.split(b" ", 2)[1]))
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(data) < length:
                data += raw.recv(65536)
            data = data[length:]
        # still open if it answers one more request; a closed one reads its end (or a reset)
        try:
            raw.sendall(f"GET {BASE}/nope HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            closed = not data and raw.recv(65536) == b""
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        return {"statuses": statuses, "closed": closed}


def http_cases():
    """How the Runtime API's HTTP side answers what http.client never sends."""
    nope = f"{BASE}/nope"
    get = f"GET {nope} HTTP/1.1\r\nHost: x\r\n\r\n"
    cases = {
        "garbage": raw_exchange("HELLO\r\n\r\n"),
        "huge_head": raw_exchange(f"GET {nope} HTTP/1.1\r\nX-Big: {'a' * 70000}\r\n\r\n"),
        "bad_chunk": raw_exchange(
            f"POST {nope} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        ),
        "bad_length": raw_exchange(f"POST {nope} HTTP/1.1\r\nContent-Length: -3\r\n\r\n"),
        "pipelined": raw_exchange(get + get + get, expect=3),
        "byte_at_a_time": raw_exchange(*get),
        "http10": raw_exchange(f"GET {nope} HTTP/1.0\r\n\r\n"),
        "connection_close": raw_exchange(f"GET {nope} HTTP/1.1\r\nConnection: close\r\n\r\n"),
        "expect_continue": raw_exchange(
            f"POST {nope} HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            "hello",
            expect="continue",
        ),
        "too_long_to_read": raw_exchange(
            f"POST {nope} HTTP/1.1\r\nContent-Length: {64 * 1024 * 1024 + 1}\r\n\r\n"
        ),
    }
    return cases


kept = []
count = 0
while True:
    status, headers, event = request("GET", f"{BASE}/invocation/next")
    rid = headers["lambda-runtime-aws-request-id"]
    count += 1
    doc = json.loads(event)
    case = doc.get("case", "echo")
    print(f"probe case {case} {rid}", flush=True)
    here = f"{BASE}/invocation/{rid}"
    out = None
    if case == "echo":
        out = {"event": doc, "count": count, "pid": os.getpid()}
    elif case == "headers":
        env = {k: os.environ.get(k) for k in ENV_KEYS}
        out = {"status": status, "headers": headers, "body": event.decode(), "env": env}
    elif case == "next_twice":
        again = request("GET", f"{BASE}/invocation/next")
        out = {
            "first": rid,
            "second": again[1]["lambda-runtime-aws-request-id"],
            "same_body": again[2] == event,
            "status": again[0],
        }
    elif case == "wrong_id":
        out = answer(*request("POST", f"{BASE}/invocation/XYZ/response", b"{}"))
    elif case == "init_error_late":
        out = answer(*request("POST", f"{BASE}/init/error", b"{}"))
    elif case == "routes":
        out = {
            "unknown": answer(*request("GET", f"{BASE}/nope")),
            "method": answer(*request("POST", f"{BASE}/invocation/next", b"")),
        }
    elif case == "chunked":
        request("POST", here + "/response", iter([b'{"chunked"', b": ", b"true}"]), chunked=True)
    elif case == "stream_error":
        # http.client sends no trailers: a streamed response failing midway, by hand
        host, port = API.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(
                f"POST {here}/response HTTP/1.1\r\nHost: {API}\r\n"
                "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
                "Transfer-Encoding: chunked\r\n"
                "Trailer: Lambda-Runtime-Function-Error-Type\r\n"
                "Trailer: Lambda-Runtime-Function-Error-Body\r\n\r\n"
                "1\r\na\r\n1\r\nb\r\n0\r\n"
                "Lambda-Runtime-Function-Error-Type: Runtime.StreamError\r\n"
                "Lambda-Runtime-Function-Error-Body: Ym9vbQ==\r\n\r\n".encode()
            )
            kept.append({"raw": raw.recv(4096).split(b"\r\n", 1)[0].decode()})
    elif case == "twice":
        request("POST", here + "/response", b'{"first": true}')
        kept.append(answer(*request("POST", here + "/response", b'{"second": true}')))
        kept.append(answer(*request("POST", here + "/error", b"{}")))
    elif case == "report":
        out, kept = kept, []
    elif case == "size":
        body = b'"' + b"a" * (doc["size"] - 2) + b'"'
        kept.append(answer(*request("POST", here + "/response", body)))
    elif case == "bad_mode":
        mode = {"Lambda-Runtime-Function-Response-Mode": "buffered"}
        kept.append(answer(*request("POST", here + "/response", b"{}", mode)))
    elif case == "error_type":
        headers = {"Lambda-Runtime-Function-Error-Type": doc["header"]}
        request("POST", here + "/error", doc.get("body", "").encode(), headers)
    elif case == "http":
        out = http_cases()
    elif case == "exit":
        os._exit(doc["code"])
    elif case == "sleep":
        time.sleep(doc["s"])
        out = {"slept": doc["s"]}
    if out is not None:
        request("POST", here + "/response", json.dumps(out).encode())
