"""Helpers shared by the end-to-end tests: raw SigV4-signed requests (for what botocore's
client-side validation would never send), CLI input files and small polling helpers."""

import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ACCESS_KEY, REGION, ROOT, SECRET_KEY

ECS_TARGET = "AmazonEC2ContainerServiceV20141113"
JSON_CT = "application/x-amz-json-1.1"
_http = urllib3.PoolManager(retries=False, timeout=30)


def ecs_operations():
    """The ECS operations Wharf implements, read from the server's own list."""
    text = (ROOT / "crates" / "wharf-api" / "src" / "ecs" / "mod.rs").read_text()
    block = text.split("operations! {", 1)[1].split("}", 1)[0]
    ops = re.findall(r'"([A-Za-z]+)"\s*=>', block)
    assert len(ops) > 20, ops
    return ops


def sign(method, url, body, headers, service, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY):
    """A botocore-signed request; returns (headers dict, body bytes)."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(Credentials(access_key, secret_key), service, region).add_auth(req)
    return dict(req.headers.items()), req.body


def send(method, url, body=b"", headers=None):
    r = _http.request(method, url, body=body, headers=headers or {})
    return r.status, r.headers, r.data


def raw(wharf, op, body=None, *, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY, signed=True,
        target=None, service="ecs", headers=None):
    """POSTs an ECS JSON 1.1 request signed by botocore's SigV4Auth. `body` is a dict (sent as
    JSON) or bytes (sent as is). Returns (status, parsed JSON or raw bytes)."""
    if body is None:
        body = {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": JSON_CT, "X-Amz-Target": target or f"{ECS_TARGET}.{op}"}
    h.update(headers or {})
    if signed:
        h, data = sign("POST", wharf.endpoint + "/", data, h, service, region, access_key, secret_key)
    status, _, out = send("POST", wharf.endpoint + "/", data, h)
    try:
        return status, json.loads(out)
    except ValueError:
        return status, out


def query(wharf, params, *, signed=True, service="sts", region=REGION, access_key=ACCESS_KEY,
          secret_key=SECRET_KEY):
    """A Query-protocol (STS-style) POST. Returns (status, parsed XML root)."""
    data = urlencode(params).encode()
    h = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    if signed:
        h, data = sign("POST", wharf.endpoint + "/", data, h, service, region, access_key, secret_key)
    status, _, out = send("POST", wharf.endpoint + "/", data, h)
    return status, ET.fromstring(out)


def xml_error(root):
    """(Type, Code, Message) of an `<ErrorResponse>` envelope, namespace-agnostic."""
    assert root.tag.split("}")[-1] == "ErrorResponse", ET.tostring(root)

    def find(name):
        for el in root.iter():
            if el.tag.split("}")[-1] == name:
                return el.text
        return None

    return find("Type"), find("Code"), find("Message")


def assert_aws_error(status, body, code, *, fields=(), contains=None, http=None):
    """A 4xx carrying the AWS error `code` whose message names each of `fields`."""
    assert isinstance(body, dict), body
    assert 400 <= status < 500, (status, body)
    if http is not None:
        assert status == http, (status, body)
    assert body.get("__type", "").split("#")[-1] == code, body
    message = body.get("message") or body.get("Message") or ""
    for f in fields:
        assert f in message, (f, message)
    if contains is not None:
        assert contains in message, (contains, message)
    return message


def write_json(path, doc):
    Path(path).write_text(json.dumps(doc))
    return f"file://{path}"


def wait_for(predicate, timeout=15.0, interval=0.05):
    """Polls `predicate` until it returns something truthy or the deadline passes."""
    deadline = time.time() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def container_instance_resources(cpu=2048, memory=4096, ports=("22", "2375", "2376", "51678", "51679")):
    return [
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": list(ports)},
        {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
    ]


def resource(instance, name, kind="remainingResources"):
    for r in instance[kind]:
        if r["name"] == name:
            return r.get("stringSetValue") if r["type"] == "STRINGSET" else r["integerValue"]
    raise KeyError(name)


def simple_taskdef(family, **extra):
    td = {
        "family": family,
        "containerDefinitions": [{"name": "web", "image": "nginx:1.27", "cpu": 0, "memory": 128,
                                  "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}]}],
    }
    td.update(extra)
    return td
