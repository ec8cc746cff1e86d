"""Helpers for the service scheduler tests (tests/e2e/test_scheduler.py): wharf-echo task
definitions, a service's tasks as ECS reports them, a sampler that watches a service every
200 ms while a deployment runs, and the containers Docker really runs for a cluster."""

import threading
import time

from agentutil import wait_until
from conftest import CLUSTER_LABEL, ECHO_IMAGE, INSTANCE_LABEL, docker_containers

# Seed 003's container, with the image the test machine can run.
SEED_CONTAINER = {
    "name": "testunit-web",
    "essential": True,
    "image": ECHO_IMAGE,
    "cpu": 0,
    "memory": 128,
    "portMappings": [{"hostPort": 0, "containerPort": 8080, "protocol": "tcp"}],
}


def seed_task_definition(family, version="v1", command=None):
    """Seed 003's bridge task definition running wharf-echo, reporting `version` on `/`."""
    c = dict(SEED_CONTAINER, environment=[{"name": "VERSION", "value": version}])
    if command is not None:
        c["command"] = command
    return {"family": family, "networkMode": "bridge", "containerDefinitions": [c]}


def register(ecs, family, version="v1", command=None):
    return ecs.register_task_definition(**seed_task_definition(family, version, command))["taskDefinition"][
        "taskDefinitionArn"]


def service(ecs, cluster, name):
    out = ecs.describe_services(cluster=cluster, services=[name])
    assert out["failures"] == [], out["failures"]
    return out["services"][0]


def service_tasks(ecs, cluster, name):
    """Every task of the service, live and stopped, described. Lists desired RUNNING first,
    then STOPPED, so a task that moves between the two calls is seen (at least) once."""
    arns = []
    for desired in ("RUNNING", "STOPPED"):
        for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, serviceName=name,
                                                              desiredStatus=desired):
            arns += [a for a in page["taskArns"] if a not in arns]
    tasks = []
    for i in range(0, len(arns), 100):
        tasks += ecs.describe_tasks(cluster=cluster, tasks=arns[i:i + 100])["tasks"]
    return tasks


def live(tasks):
    """Tasks that are not STOPPED (including those asked to stop that have not yet)."""
    return [t for t in tasks if t["lastStatus"] != "STOPPED"]


def healthy(tasks):
    """RUNNING tasks that nobody asked to stop."""
    return [t for t in tasks if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"]


def running_on(tasks, instance_arn):
    return [t for t in healthy(tasks) if t.get("containerInstanceArn") == instance_arn]


def waiter_stable(svc):
    """What `aws ecs wait services-stable` accepts as success for one service."""
    return svc["status"] == "ACTIVE" and len(svc["deployments"]) == 1 and svc["runningCount"] == svc["desiredCount"]


def wait_stable(ecs, cluster, name, timeout=60):
    """boto3's services_stable waiter, polling every second."""
    ecs.get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                           WaiterConfig={"Delay": 1, "MaxAttempts": int(timeout)})
    return service(ecs, cluster, name)


def wait_service(ecs, cluster, name, predicate, what, timeout=60):
    """Waits until `predicate(service, tasks)`; returns (service, tasks)."""
    def check():
        s = service(ecs, cluster, name)
        tasks = service_tasks(ecs, cluster, name)
        return bool(predicate(s, tasks)), (s, tasks)
    try:
        return wait_until(what, check, timeout, interval=0.3)
    except AssertionError:
        s = service(ecs, cluster, name)
        summary = dict(running=s["runningCount"], pending=s["pendingCount"], desired=s["desiredCount"],
                       deployments=[(d["status"], d["taskDefinition"].rsplit("/", 1)[1], d["runningCount"],
                                     d["pendingCount"], d.get("rolloutState")) for d in s["deployments"]],
                       events=[e["message"] for e in s["events"][:8]])
        raise AssertionError(f"{what}: not within {timeout}s; service: {summary}") from None


class Sampler:
    """Samples a service every `interval` s in a thread: (time, service, tasks). Requests that
    fail (a server being restarted) are counted and skipped."""

    def __init__(self, ecs, cluster, name, interval=0.2, tasks=True):
        self.ecs, self.cluster, self.name, self.interval, self.tasks = ecs, cluster, name, interval, tasks
        self.samples = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self):
        while not self._stop.is_set():
            t0 = time.time()
            try:
                s = service(self.ecs, self.cluster, self.name)
                tasks = service_tasks(self.ecs, self.cluster, self.name) if self.tasks else []
                self.samples.append((t0, s, tasks))
            except Exception:  # noqa: BLE001 - a restarting server refuses connections
                self.errors += 1
            self._stop.wait(max(0.0, self.interval - (time.time() - t0)))

    def extremes(self):
        """(fewest healthy, most live) over the samples."""
        assert self.samples, f"no samples ({self.errors} failed)"
        return (min(len(healthy(ts)) for _, _, ts in self.samples),
                max(len(live(ts)) for _, _, ts in self.samples))

    def check_bounds(self, min_healthy, max_live):
        """Every sample had at least `min_healthy` RUNNING and at most `max_live` live tasks."""
        bad = []
        for t, _, ts in self.samples:
            h, n = len(healthy(ts)), len(live(ts))
            if h < min_healthy or n > max_live:
                bad.append((round(t, 2), h, n, sorted((x["taskDefinitionArn"].rsplit(":", 1)[1], x["lastStatus"],
                                                       x["desiredStatus"]) for x in live(ts))))
        assert not bad, f"{len(bad)} of {len(self.samples)} samples out of bounds " \
                        f"(healthy >= {min_healthy}, live <= {max_live}): {bad[:5]}"


def cluster_containers(cluster, owners, running_only=True):
    """Docker's containers labelled with `cluster` and owned by one of `owners` (instance ARNs)."""
    return [c for c in docker_containers(f"{CLUSTER_LABEL}={cluster}", running_only=running_only)
            if c["owner"] in owners]


def owner_containers(owner, running_only=False):
    return docker_containers(f"{INSTANCE_LABEL}={owner}", running_only=running_only)


def event_messages(svc):
    return [e["message"] for e in svc["events"]]
