"""Services behind the load balancer, end to end: seed 003 replayed with the AWS CLI (target
group, load balancer, listener, a service of 10 tasks on dynamic host ports, requests through
the listener reach every task), and zero-downtime deployments under constant load with wrk
(three rolling deployments, then `aws ecs stop-task` on a serving task: no request may fail).

Needs the ELBv2 API and the data plane (`wharf up` serves listeners on the host's ports)."""

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from agentutil import wait_until
from conftest import ECHO_IMAGE, CliError
from util import write_json

CONTAINER = "testunit-web"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def task_definition(family, version="v1"):
    """Seed 003's bridge task definition (hostPort 0) running wharf-echo."""
    return {
        "family": family,
        "networkMode": "bridge",
        "containerDefinitions": [{
            "name": CONTAINER, "essential": True, "image": ECHO_IMAGE, "cpu": 0, "memory": 64,
            "environment": [{"name": "VERSION", "value": version}],
            "portMappings": [{"hostPort": 0, "containerPort": 8080, "protocol": "tcp"}],
        }],
    }


def load_balanced(w, tmp_path, name, delay=5):
    """Seed 003's ELB part with the CLI: target group (health checks on /health every 5 s,
    2 to become healthy), load balancer, HTTP listener on a free port forwarding to the group.
    Returns (target group ARN, listener URL)."""
    tg = w.aws("elbv2", "create-target-group", "--name", f"{name}-tg", "--protocol", "HTTP", "--port", "8080",
               "--vpc-id", "vpc-0123456789abcdef0", "--health-check-path", "/health",
               "--health-check-interval-seconds", "5", "--health-check-timeout-seconds", "2",
               "--healthy-threshold-count", "2", "--unhealthy-threshold-count", "2")["TargetGroups"][0]
    tg_arn = tg["TargetGroupArn"]
    assert tg["TargetType"] == "instance"
    w.aws("elbv2", "modify-target-group-attributes", "--target-group-arn", tg_arn, "--attributes",
          f"Key=deregistration_delay.timeout_seconds,Value={delay}")
    lb = w.aws("elbv2", "create-load-balancer", "--name", f"{name}-lb", "--subnets", "subnet-0a", "subnet-0b",
               "--security-groups", "sg-0123")["LoadBalancers"][0]
    port = free_port()
    w.aws("elbv2", "create-listener", "--protocol", "HTTP", "--port", str(port),
          f"--load-balancer-arn={lb['LoadBalancerArn']}", "--default-actions", f"Type=forward,TargetGroupArn={tg_arn}")
    return tg_arn, f"http://127.0.0.1:{port}/"


def create_service(w, tmp_path, cluster, family, tg_arn, count, **extra):
    w.aws("ecs", "register-task-definition", "--cli-input-json",
          write_json(tmp_path / f"{family}.json", task_definition(family)))
    svc = dict(serviceName=family, taskDefinition=f"{family}:1", desiredCount=count,
               loadBalancers=[{"targetGroupArn": tg_arn, "containerName": CONTAINER, "containerPort": 8080}],
               **extra)
    return w.aws("ecs", "create-service", f"--cluster={cluster}", "--cli-input-json",
                 write_json(tmp_path / f"{family}-svc.json", svc))["service"]


def service(w, cluster, name):
    return w.aws("ecs", "describe-services", "--cluster", cluster, "--services", name)["services"][0]


def healthy_targets(w, tg_arn):
    out = w.aws("elbv2", "describe-target-health", "--target-group-arn", tg_arn)["TargetHealthDescriptions"]
    return [d for d in out if d["TargetHealth"]["State"] == "healthy"]


def wait_completed(w, cluster, name, timeout=120):
    """The waiter users run (boto3's, polling every second), then the rollout itself: every
    new task healthy in the target group."""
    w.client("ecs").get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                                       WaiterConfig={"Delay": 1, "MaxAttempts": timeout})
    wait_until(f"{name}'s deployment to complete",
               lambda: service(w, cluster, name)["deployments"][0].get("rolloutState") == "COMPLETED", timeout)
    return service(w, cluster, name)


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, json.loads(r.read())


@pytest.fixture
def lb_wharf(wharf_factory):
    w = wharf_factory()
    w.aws("ecs", "create-cluster", "--cluster-name", w.cluster)
    return w


def test_seed003_service_behind_a_load_balancer_reaches_every_task(lb_wharf, tmp_path):
    w = lb_wharf
    tg_arn, url = load_balanced(w, tmp_path, "seed003")
    created = create_service(w, tmp_path, w.cluster, "testunit", tg_arn, 10,
                             role="arn:aws:iam::123456789012:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS")
    assert created["loadBalancers"][0]["targetGroupArn"] == tg_arn
    svc = wait_completed(w, w.cluster, "testunit", timeout=180)
    assert svc["runningCount"] == 10

    # Each task is a target: the container instance's id and the host port Docker bound.
    tasks = w.aws("ecs", "describe-tasks", "--cluster", w.cluster, "--tasks",
                  *w.aws("ecs", "list-tasks", "--cluster", w.cluster, "--service-name", "testunit")["taskArns"])["tasks"]
    instance = w.aws("ecs", "describe-container-instances", "--cluster", w.cluster, "--container-instances",
                     tasks[0]["containerInstanceArn"])["containerInstances"][0]
    ports = sorted(t["containers"][0]["networkBindings"][0]["hostPort"] for t in tasks)
    targets = healthy_targets(w, tg_arn)
    assert sorted(d["Target"]["Port"] for d in targets) == ports
    assert {d["Target"]["Id"] for d in targets} == {instance["ec2InstanceId"]}

    hostnames = set()
    for _ in range(50):
        status, body = get(url)
        assert status == 200
        hostnames.add(body["hostname"])
    assert len(hostnames) >= 10, hostnames


def test_service_load_balancer_errors_as_ecs(lb_wharf, tmp_path):
    w = lb_wharf
    tg = w.aws("elbv2", "create-target-group", "--name", "lonely-tg", "--protocol", "HTTP", "--port", "8080",
               "--vpc-id", "vpc-0123456789abcdef0")["TargetGroups"][0]
    w.aws("ecs", "register-task-definition", "--cli-input-json",
          write_json(tmp_path / "td.json", task_definition("errs")))
    base = ["ecs", "create-service", "--cluster", w.cluster, "--service-name", "errs", "--task-definition", "errs",
            "--desired-count", "1"]
    lbs = f"targetGroupArn={tg['TargetGroupArn']},containerName={CONTAINER},containerPort=8080"
    with pytest.raises(CliError) as e:
        w.aws(*base, "--load-balancers", lbs)
    assert "InvalidParameterException" in e.value.stderr
    assert "does not have an associated load balancer" in e.value.stderr
    missing = tg["TargetGroupArn"].replace("lonely-tg", "nobody-tg")
    with pytest.raises(CliError) as e:
        w.aws(*base, "--load-balancers", f"targetGroupArn={missing},containerName={CONTAINER},containerPort=8080")
    assert "InvalidParameterException" in e.value.stderr and "targetGroupArn" in e.value.stderr
    with pytest.raises(CliError) as e:
        w.aws(*base, "--load-balancers", f"loadBalancerName=classic,containerName={CONTAINER},containerPort=8080")
    assert "InvalidParameterException" in e.value.stderr and "Classic" in e.value.stderr
    with pytest.raises(CliError) as e:
        w.aws(*base, "--health-check-grace-period-seconds", "30")
    assert "InvalidParameterException" in e.value.stderr and "load balancers" in e.value.stderr
    assert w.aws("ecs", "list-services", "--cluster", w.cluster)["serviceArns"] == []


class Wrk:
    """`wrk` with 100 connections for as long as it takes (stopped with SIGINT, which makes it
    print its summary); counts non-2xx/3xx responses and socket errors."""

    def __init__(self, url, connections=100):
        self.started = time.time()
        self.proc = subprocess.Popen(["wrk", "-t", "2", "-c", str(connections), "-d", "3600s", "--timeout", "10s",
                                      "--latency", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        self.elapsed = time.time() - self.started
        self.output = out
        m = re.search(r"(\d+) requests in", out)
        assert m, out
        self.requests = int(m.group(1))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        self.non_2xx = int(m.group(1)) if m else 0
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        self.socket_errors = sum(int(x) for x in m.groups()) if m else 0
        return self


def test_zero_downtime_across_rolling_deployments_and_stop_task(lb_wharf, tmp_path):
    w = lb_wharf
    tg_arn, url = load_balanced(w, tmp_path, "zdt", delay=5)
    create_service(w, tmp_path, w.cluster, "zdt", tg_arn, 4,
                   deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200})
    wait_completed(w, w.cluster, "zdt")
    assert len(healthy_targets(w, tg_arn)) == 4
    assert get(url)[1]["version"] == "v1"

    load = Wrk(url)
    try:
        for version in ("v2", "v3", "v4"):
            w.aws("ecs", "register-task-definition", "--cli-input-json",
                  write_json(tmp_path / f"zdt-{version}.json", task_definition("zdt", version)))
            w.aws("ecs", "update-service", "--cluster", w.cluster, "--service", "zdt", "--task-definition", "zdt")
            wait_completed(w, w.cluster, "zdt")
            wait_until(f"{version} to serve", lambda: get(url)[1]["version"] == version, 60)

        # A user stops a serving task: it is deregistered and drained before it is stopped.
        arns = w.aws("ecs", "list-tasks", "--cluster", w.cluster, "--service-name", "zdt")["taskArns"]
        stopped = w.aws("ecs", "stop-task", "--cluster", w.cluster, "--task", arns[0])["task"]
        assert stopped["desiredStatus"] == "STOPPED" and stopped["lastStatus"] == "DEACTIVATING"
        # Its target drains (the data plane may remove it at once when it has no request in flight).
        port = stopped["containers"][0]["networkBindings"][0]["hostPort"]
        states = [d["TargetHealth"]["State"] for d in w.aws("elbv2", "describe-target-health", "--target-group-arn",
                                                              tg_arn)["TargetHealthDescriptions"]
                  if d["Target"]["Port"] == port]
        assert states in ([], ["draining"]), states
        w.aws("ecs", "wait", "tasks-stopped", "--cluster", w.cluster, "--tasks", arns[0])
        wait_until("the replacement to be healthy", lambda: len(healthy_targets(w, tg_arn)) == 4, 60)
        # At least a minute of load in all.
        while time.time() - load.started < 60:
            time.sleep(1)
    finally:
        result = load.stop()
    print(f"wrk through the listener for {result.elapsed:.0f} s: {result.requests} requests, "
          f"{result.non_2xx} non-2xx, {result.socket_errors} socket errors")
    assert result.elapsed >= 60
    assert result.requests > 1000, result.output
    assert result.non_2xx == 0, result.output
    assert result.socket_errors == 0, result.output
    # The old revisions' tasks all stopped; the service ends on v4 with one deployment.
    svc = service(w, w.cluster, "zdt")
    assert len(svc["deployments"]) == 1 and svc["runningCount"] == 4
    assert {get(url)[1]["version"] for _ in range(8)} == {"v4"}
    events = [e["message"] for e in svc["events"]]
    assert any("has reached a steady state" in m for m in events)


def test_deleting_a_service_deregisters_its_targets(lb_wharf, tmp_path):
    w = lb_wharf
    tg_arn, url = load_balanced(w, tmp_path, "gone", delay=2)
    create_service(w, tmp_path, w.cluster, "gone", tg_arn, 2)
    wait_completed(w, w.cluster, "gone")
    assert len(healthy_targets(w, tg_arn)) == 2
    w.aws("ecs", "delete-service", "--cluster", w.cluster, "--service", "gone", "--force")
    w.aws("ecs", "wait", "services-inactive", "--cluster", w.cluster, "--services", "gone")
    wait_until("the targets to be deregistered", lambda: w.aws("elbv2", "describe-target-health", "--target-group-arn", tg_arn)[
        "TargetHealthDescriptions"] == [], 60)
    stopped = w.aws("ecs", "list-tasks", "--cluster", w.cluster, "--desired-status", "STOPPED")["taskArns"]
    tasks = w.aws("ecs", "describe-tasks", "--cluster", w.cluster, "--tasks", *stopped)["tasks"]
    assert len(tasks) == 2 and all(t["lastStatus"] == "STOPPED" for t in tasks)
