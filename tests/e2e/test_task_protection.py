"""Task scale-in protection end to end (issue 17): a service of real containers through the
embedded agent of `wharf up`; protection set and read with the AWS CLI, boto3 and the ECS
agent's endpoint inside the task (`$ECS_AGENT_URI/task-protection/v1/state`); scaling in stops
only unprotected tasks and says why the rest stay."""

import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from agentutil import _opener, wait_instances
from conftest import TASK_LABEL, docker, docker_containers
from scheduler_support import event_messages, healthy, register, service_tasks, wait_service, wait_stable

DEFAULT = "default"


def task_id(arn):
    return arn.rsplit("/", 1)[1]


def agent_uri(task_arn):
    """`ECS_AGENT_URI` as the agent put it in the task's container."""
    (c,) = docker_containers(f"{TASK_LABEL}={task_arn}", running_only=True)
    env = json.loads(docker("inspect", "--format", "{{json .Config.Env}}", c["id"]).stdout)
    (uri,) = [e.split("=", 1)[1] for e in env if e.startswith("ECS_AGENT_URI=")]
    return uri


def endpoint(uri, method="GET", body=None):
    """(status, JSON) of a request to the task protection endpoint under `uri`."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"{uri}/task-protection/v1/state", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with _opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_protected_tasks_outlive_scale_in_until_their_protection_is_removed(wharf_factory):
    w = wharf_factory()
    ecs = w.client("ecs")
    wait_instances(ecs, DEFAULT, 1)
    td = register(ecs, "prot")
    ecs.create_service(cluster=DEFAULT, serviceName="prot", taskDefinition=td, desiredCount=3)
    svc = wait_stable(ecs, DEFAULT, "prot")
    deployment = svc["deployments"][0]["id"]
    a, b, c = sorted(t["taskArn"] for t in healthy(service_tasks(ecs, DEFAULT, "prot")))

    # Two protected with the AWS CLI, by id and by ARN, for the default 2 hours.
    out = w.aws("ecs", "update-task-protection", "--cluster", DEFAULT, "--tasks", task_id(a), b,
                "--protection-enabled")
    assert out["failures"] == []
    assert [(p["taskArn"], p["protectionEnabled"]) for p in out["protectedTasks"]] == [(a, True), (b, True)]
    got = w.aws("ecs", "get-task-protection", "--cluster", DEFAULT, "--tasks", a, b, c)
    by_arn = {p["taskArn"]: p for p in got["protectedTasks"]}
    assert by_arn[a]["protectionEnabled"] and by_arn[b]["protectionEnabled"]
    assert by_arn[c] == {"taskArn": c, "protectionEnabled": False}
    # The AWS CLI v1 prints the epoch seconds ECS sends.
    expires = by_arn[a]["expirationDate"]
    assert 7000 < expires - time.time() <= 7200, by_arn[a]
    # boto3 sees the same, the date parsed.
    (p,) = ecs.get_task_protection(cluster=DEFAULT, tasks=[a])["protectedTasks"]
    assert p["protectionEnabled"] and abs(p["expirationDate"].timestamp() - expires) < 0.01

    # The third asks for itself, from inside its task, through the ECS agent's endpoint.
    uri = agent_uri(c)
    assert uri.endswith(f"/api/{task_id(c)}-testunit-web"), uri
    assert endpoint(uri) == (200, {"protection": {"ExpirationDate": None, "ProtectionEnabled": False,
                                                  "TaskArn": c}})
    status, body = endpoint(uri, "PUT", {"ProtectionEnabled": True, "ExpiresInMinutes": 60})
    assert status == 200 and body["protection"]["ProtectionEnabled"] is True, body
    assert ecs.get_task_protection(cluster=DEFAULT, tasks=[c])["protectedTasks"][0]["protectionEnabled"]
    # The control plane's own errors come back in the agent's envelope; so do the agent's.
    status, body = endpoint(uri, "PUT", {"ProtectionEnabled": True, "ExpiresInMinutes": 0})
    assert status == 400 and body["error"]["Code"] == "InvalidParameterException", body
    assert body["error"]["Arn"] == c
    assert endpoint(uri, "PUT", b"{")[0] == 400
    status, body = endpoint(uri, "PUT", {"ExpiresInMinutes": 5})
    assert (status, body["error"]["Message"]) == (400, "Invalid request: does not contain 'ProtectionEnabled' field")
    status, body = endpoint(uri, "PUT", {"ProtectionEnabled": False})
    assert (status, body["protection"]["ProtectionEnabled"]) == (200, False), body

    # Scale in to 1: the unprotected task stops, the two protected ones stay, and ECS's event
    # says why the service stays above its desired count.
    ecs.update_service(cluster=DEFAULT, service="prot", desiredCount=1)
    held = (f"(service prot, taskSet {deployment}) was unable to scale in due to "
            f"(reason 1 tasks under protection)")

    def scaled_in(s, tasks):
        running = sorted(t["taskArn"] for t in healthy(tasks))
        stopped = [t for t in tasks if t["taskArn"] == c and t["lastStatus"] == "STOPPED"]
        counts = (s["desiredCount"], s["runningCount"], s["pendingCount"])
        return running == [a, b] and stopped and counts == (1, 2, 0) and held in event_messages(s)
    svc, tasks = wait_service(ecs, DEFAULT, "prot", scaled_in, "the unprotected task stopped, two protected left",
                              timeout=30)
    assert event_messages(svc).count(held) == 1
    assert {x["task"] for x in docker_containers(f"{TASK_LABEL}", running_only=True)} >= {a, b}

    # Protection off for one (boto3): that one goes, and the service is steady at 1.
    out = ecs.update_task_protection(cluster=DEFAULT, tasks=[b], protectionEnabled=False)
    assert out["protectedTasks"] == [{"taskArn": b, "protectionEnabled": False}]
    svc, tasks = wait_service(ecs, DEFAULT, "prot",
                              lambda s, ts: [t["taskArn"] for t in healthy(ts)] == [a] and s["runningCount"] == 1,
                              "the task no longer protected stopped", timeout=30)
    stopped_b = [t for t in tasks if t["taskArn"] == b][0]
    assert stopped_b["stopCode"] == "ServiceSchedulerInitiated", stopped_b


def test_bad_protection_requests_get_ecs_errors_and_failures(wharf_factory):
    w = wharf_factory()
    ecs = w.client("ecs")
    wait_instances(ecs, DEFAULT, 1)
    ecs.create_service(cluster=DEFAULT, serviceName="prot", taskDefinition=register(ecs, "prot"), desiredCount=1)
    wait_stable(ecs, DEFAULT, "prot")
    (task,) = [t["taskArn"] for t in healthy(service_tasks(ecs, DEFAULT, "prot"))]

    err = w.aws("ecs", "update-task-protection", "--cluster", DEFAULT, "--tasks", task, "--protection-enabled",
                "--expires-in-minutes", "0", check=False)
    assert "(InvalidParameterException)" in err.stderr and "expiresInMinutes" in err.stderr, err.stderr
    with pytest.raises(ClientError) as e:
        ecs.update_task_protection(cluster=DEFAULT, tasks=[task], protectionEnabled=True, expiresInMinutes=2881)
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecs.update_task_protection(cluster=DEFAULT, tasks=[task] * 11, protectionEnabled=True)
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "tasks" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        ecs.update_task_protection(cluster="nope", tasks=[task], protectionEnabled=True)
    assert e.value.response["Error"]["Code"] == "ClusterNotFoundException"

    ghost = task.rsplit("/", 1)[0] + "/0123456789abcdef0123456789abcdef"
    out = ecs.update_task_protection(cluster=DEFAULT, tasks=[task, ghost], protectionEnabled=True,
                                     expiresInMinutes=2880)
    assert [p["taskArn"] for p in out["protectedTasks"]] == [task]
    assert out["failures"] == [{"arn": ghost, "reason": "MISSING"}]
    out = w.aws("ecs", "get-task-protection", "--cluster", DEFAULT, "--tasks", task_id(ghost))
    assert out == {"protectedTasks": [], "failures": [{"arn": ghost, "reason": "MISSING"}]}
