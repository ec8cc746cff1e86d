"""Helpers for the agent tests: task definitions of the wharf-echo image, polling tasks and
instances with deadlines, and plain HTTP to what the containers serve."""

import json
import socket
import time
import urllib.error
import urllib.request

from conftest import ECHO_IMAGE

# No proxy from the environment: the containers are on this host.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def echo(name="web", **kw):
    """A container definition running wharf-echo (HTTP on 8080 unless PORT says otherwise)."""
    env = kw.pop("env", {})
    c = {"name": name, "image": ECHO_IMAGE, "essential": True, "memory": 64,
         "environment": [{"name": "CONTAINER_NAME", "value": name}]
         + [{"name": k, "value": str(v)} for k, v in env.items()]}
    c.update(kw)
    return c


def register(ecs, family, *containers, **kw):
    return ecs.register_task_definition(family=family, containerDefinitions=list(containers), **kw)[
        "taskDefinition"]["taskDefinitionArn"]


def wait_until(what, predicate, timeout, interval=0.2):
    """Polls `predicate` until it returns something truthy; fails naming `what` (and the last
    value seen, when `predicate` returns a (ok, value) pair) at the deadline."""
    deadline = time.time() + timeout
    last = None
    while True:
        v = predicate()
        if isinstance(v, tuple):
            ok, last = v
            if ok:
                return last
        elif v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s; last seen: {json.dumps(last, default=str)[:3000]}")
        time.sleep(interval)


def wait_instances(ecs, cluster, n=1, timeout=20):
    """Waits for `n` ACTIVE container instances in `cluster`; returns their ARNs."""
    def seen():
        try:
            arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
        except ecs.exceptions.ClusterNotFoundException:
            return False, "cluster not found (yet)"
        return len(arns) >= n, arns
    return wait_until(f"{n} container instance(s) in {cluster}", seen, timeout)


def describe(ecs, cluster, arn):
    return ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]


def instance(ecs, cluster, arn):
    return ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])["containerInstances"][0]


def remaining(inst, name):
    for r in inst["remainingResources"]:
        if r["name"] == name:
            return r.get("stringSetValue", []) if r["type"] == "STRINGSET" else r["integerValue"]
    raise KeyError(name)


def wait_task(ecs, cluster, arn, status="RUNNING", timeout=30, predicate=None):
    """Waits for the task to reach `status` (and `predicate(task)`); waiting for RUNNING fails
    at once when the task stops instead, with its reasons."""
    def check():
        t = describe(ecs, cluster, arn)
        if status != "STOPPED" and t["lastStatus"] == "STOPPED":
            raise AssertionError(f"task stopped while waiting for {status}: {t.get('stoppedReason')} "
                                 f"{[(c['name'], c.get('exitCode'), c.get('reason')) for c in t['containers']]}")
        return t["lastStatus"] == status and (predicate is None or predicate(t)), t
    return wait_until(f"task {arn.rsplit('/', 1)[1]} {status}", check, timeout)


def run(ecs, cluster, td, **kw):
    out = ecs.run_task(cluster=cluster, taskDefinition=td, **kw)
    assert out["failures"] == [], out["failures"]
    return [t["taskArn"] for t in out["tasks"]]


def container(task, name):
    return next(c for c in task["containers"] if c["name"] == name)


def host_port(task, name="web", container_port=8080):
    b = [b for b in container(task, name)["networkBindings"] if b["containerPort"] == container_port]
    assert b, container(task, name)
    return b[0]["hostPort"]


def task_ip(task):
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    return details["privateIPv4Address"]


def http(url, timeout=3):
    """(status, body bytes) of a GET; (None, error text) when nothing answers."""
    try:
        with _opener.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return None, str(e)


def wait_http(url, timeout=10):
    """Waits until `url` answers 200; returns its JSON body."""
    def ok():
        status, body = http(url)
        return status == 200, (status, body.decode(errors="replace") if isinstance(body, bytes) else body)
    _, body = wait_until(f"GET {url}", ok, timeout)
    return json.loads(body)


def free_port():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]
