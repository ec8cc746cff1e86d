"""CloudWatch metrics from real load, end to end: `wharf up --metrics-period 3` (so agents
sample every second), a service of one wharf-echo task (task cpu 256) behind a listener,
CPU burnt in the task through the listener (`/work`) while a counting client sends requests
through it too. The AWS CLI and boto3 then read what ECS and ALB publish: the service's
CPUUtilization rises far above 100 % of its 256 units and its memory is above 0, and the
target group's RequestCountPerTarget adds up to the requests the client counted. A standalone
`wharf agent` takes its sampling interval from the server's answer to its first report."""

import http.client
import threading
import time
from datetime import datetime, timezone
from urllib.parse import urlparse

import pytest

from agentutil import echo, register, wait_until
from conftest import ECHO_IMAGE
from test_lb_service import healthy_targets, load_balanced, wait_completed
from util import write_json

CONTAINER = "web"
SERVICE = "burner"


class Counter:
    """Requests through the listener on one keep-alive connection, counted when answered."""

    def __init__(self, url):
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.answered = 0

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        r.read()
        assert r.status == 200, (path, r.status)
        self.answered += 1


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def metrics_wharf(wharf_factory):
    w = wharf_factory("--metrics-period", "3")
    w.aws("ecs", "create-cluster", "--cluster-name", w.cluster)
    return w


def test_service_utilization_and_requests_per_target(metrics_wharf, tmp_path):
    w = metrics_wharf
    began = time.time()
    tg_arn, url = load_balanced(w, tmp_path, "metrics")
    td = {
        "family": SERVICE, "networkMode": "bridge", "cpu": "256", "memory": "128",
        "containerDefinitions": [{
            "name": CONTAINER, "essential": True, "image": ECHO_IMAGE,
            "portMappings": [{"hostPort": 0, "containerPort": 8080, "protocol": "tcp"}],
        }],
    }
    w.aws("ecs", "register-task-definition", "--cli-input-json", write_json(tmp_path / "td.json", td))
    svc = dict(serviceName=SERVICE, taskDefinition=SERVICE, desiredCount=1,
               loadBalancers=[{"targetGroupArn": tg_arn, "containerName": CONTAINER, "containerPort": 8080}])
    w.aws("ecs", "create-service", f"--cluster={w.cluster}", "--cli-input-json",
          write_json(tmp_path / "svc.json", svc))
    wait_completed(w, w.cluster, SERVICE)
    wait_until("the task's target to be healthy", lambda: len(healthy_targets(w, tg_arn)) == 1, 30)
    healthy_at = time.time()

    # One client burns a core in the task for about 6 s, 1.5 s a request; another sends as
    # many plain requests as it can meanwhile. Both count what was answered.
    burner, plain = Counter(url), Counter(url)
    burning = threading.Thread(target=lambda: [burner.get("/work?ms=1500") for _ in range(4)])
    burning.start()
    while burning.is_alive():
        plain.get("/")
    burning.join()
    sent = burner.answered + plain.answered
    assert plain.answered > 100, plain.answered

    cw = w.client("cloudwatch")
    tg_dim = "targetgroup/" + tg_arn.split(":targetgroup/", 1)[1]

    def per_target_sum():
        out = cw.get_metric_statistics(
            Namespace="AWS/ApplicationELB", MetricName="RequestCountPerTarget",
            Dimensions=[{"Name": "TargetGroup", "Value": tg_dim}],
            StartTime=began - 60, EndTime=time.time() + 60, Period=60, Statistics=["Sum"])
        return sum(d["Sum"] for d in out["Datapoints"])

    # Every interval is published within a second (the sampling interval) of its end.
    wait_until("RequestCountPerTarget to add up", lambda: per_target_sum() >= sent, 10)
    total = per_target_sum()
    assert abs(total - sent) <= 0.02 * sent, (total, sent)

    dims = ["--dimensions", f"Name=ClusterName,Value={w.cluster}", f"Name=ServiceName,Value={SERVICE}"]
    window = ["--start-time", iso(began - 60), "--end-time", iso(time.time() + 60), "--period", "60"]
    cpu = w.aws("cloudwatch", "get-metric-statistics", "--namespace", "AWS/ECS", "--metric-name", "CPUUtilization",
                *dims, *window, "--statistics", "Maximum", "Average", "SampleCount")["Datapoints"]
    assert cpu, "no CPUUtilization datapoints"
    assert {d["Unit"] for d in cpu} == {"Percent"}
    # A core's worth of burning is 400 % of 256 units; another engineer's load on this
    # machine may take some of it, never three quarters.
    assert max(d["Maximum"] for d in cpu) > 100, cpu
    # One datapoint a second (a 1 s sampling interval) from the first sample on.
    assert sum(d["SampleCount"] for d in cpu) >= 5, cpu
    memory = w.aws("cloudwatch", "get-metric-statistics", "--namespace", "AWS/ECS", "--metric-name",
                   "MemoryUtilization", *dims, *window, "--statistics", "Maximum")["Datapoints"]
    assert memory and max(d["Maximum"] for d in memory) > 0, memory

    # The cluster's reservation: the task's 256 units of what the local instance registered.
    reservation = cw.get_metric_statistics(
        Namespace="AWS/ECS", MetricName="CPUReservation", Dimensions=[{"Name": "ClusterName", "Value": w.cluster}],
        StartTime=began - 60, EndTime=time.time() + 60, Period=60, Statistics=["Maximum"])["Datapoints"]
    instance_cpu = w.aws("ecs", "describe-container-instances", "--cluster", w.cluster, "--container-instances",
                         *w.aws("ecs", "list-container-instances", "--cluster", w.cluster)["containerInstanceArns"])
    registered = next(r["integerValue"] for r in instance_cpu["containerInstances"][0]["registeredResources"]
                      if r["name"] == "CPU")
    assert reservation and max(d["Maximum"] for d in reservation) == pytest.approx(256 * 100 / registered), reservation

    # One healthy target in every second since it became healthy.
    healthy = cw.get_metric_statistics(
        Namespace="AWS/ApplicationELB", MetricName="HealthyHostCount",
        Dimensions=[{"Name": "TargetGroup", "Value": tg_dim},
                    {"Name": "LoadBalancer", "Value": load_balancer_dimension(w, tg_arn)}],
        StartTime=healthy_at + 2, EndTime=time.time(), Period=1, Statistics=["Minimum", "Maximum"])["Datapoints"]
    assert len(healthy) >= 5 and {(d["Minimum"], d["Maximum"], d["Unit"]) for d in healthy} == {(1.0, 1.0, "Count")}


def load_balancer_dimension(w, tg_arn):
    """`app/<name>/<id>` of the load balancer the target group serves."""
    tg = w.aws("elbv2", "describe-target-groups", "--target-group-arns", tg_arn)["TargetGroups"][0]
    return "app/" + tg["LoadBalancerArns"][0].split(":loadbalancer/app/", 1)[1]


def test_a_standalone_agent_samples_as_often_as_the_server_says(wharf_factory):
    w = wharf_factory("--metrics-period", "3", agent=False)
    ecs = w.client("ecs")
    cluster = wharf_factory.cluster_name("metrics")
    ecs.create_cluster(clusterName=cluster)
    wharf_factory.agent(w, cluster).instance_arn()
    # One thread spinning in a task of 512 units: about 200 %.
    td = register(ecs, "spinner", echo(cpu=512, memory=64, env={"CPU_BURN": 1}))
    ecs.create_service(cluster=cluster, serviceName="spinner", taskDefinition=td, desiredCount=1)
    wait_until("the task to run", lambda: ecs.describe_services(cluster=cluster, services=["spinner"])
               ["services"][0]["runningCount"] == 1, 60)
    running_at = time.time()
    cw = w.client("cloudwatch")

    def datapoints():
        return cw.get_metric_statistics(
            Namespace="AWS/ECS", MetricName="CPUUtilization",
            Dimensions=[{"Name": "ClusterName", "Value": cluster}, {"Name": "ServiceName", "Value": "spinner"}],
            StartTime=running_at - 5, EndTime=time.time() + 1, Period=1,
            Statistics=["Maximum", "SampleCount"])["Datapoints"]

    # At the default 20 s there would be no second sample yet: the agent learnt the server's 1 s.
    points = wait_until("a CPUUtilization datapoint a second", lambda: (len(datapoints()) >= 5, datapoints()), 10)
    # One task, one sample a second (two in a second only when a report came late).
    assert max(p["SampleCount"] for p in points) <= 2, points
    assert max(p["Maximum"] for p in points) > 50, points
