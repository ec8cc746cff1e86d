"""The service scheduler end to end (issue 4): services run as real Docker containers through
the embedded agent of `wharf up` or standalone `wharf agent`s, driven with the real AWS CLI and
boto3. Rolling deployments are sampled every 200 ms against minimumHealthyPercent and
maximumPercent; the circuit breaker rolls back; killed containers, killed agents and draining
instances are replaced; a server killed mid-deployment finishes it; DAEMON services follow
instances."""

import json
import threading
import time

import pytest

from agentutil import host_port, http, wait_instances, wait_until
from conftest import CLUSTER_LABEL, docker
from scheduler_support import (Sampler, cluster_containers, event_messages, healthy, live, owner_containers,
                               register, running_on, seed_task_definition, service, service_tasks, wait_service,
                               wait_stable, waiter_stable)
from util import write_json

DEFAULT = "default"


def embedded(fleet):
    """`wharf up` with its embedded agent; returns (wharf, ecs, instance ARN)."""
    w = fleet()
    ecs = w.client("ecs")
    (inst,) = wait_instances(ecs, DEFAULT, 1)
    return w, ecs, inst


def standalone(fleet, n, *server_args, prefix="sched"):
    """`wharf up --no-agent` and `n` standalone agents in a new cluster."""
    w = fleet(*server_args, agent=False)
    ecs = w.client("ecs")
    cluster = fleet.cluster_name(prefix)
    ecs.create_cluster(clusterName=cluster)
    agents = [fleet.agent(w, cluster) for _ in range(n)]
    arns = [a.instance_arn() for a in agents]
    wait_instances(ecs, cluster, n)
    return w, ecs, cluster, agents, arns


def create(ecs, cluster, name, td, desired, **kw):
    return ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td, desiredCount=desired,
                              **kw)["service"]


def version_of(task):
    """What the task's container answers on `/` (its VERSION), over its dynamic host port."""
    status, body = http(f"http://127.0.0.1:{host_port(task, 'testunit-web')}/")
    assert status == 200, body
    return json.loads(body)["version"]


def test_seed003_service_of_ten_runs_ten_containers(wharf_factory, tmp_path):
    w, ecs, inst = embedded(wharf_factory)
    td = w.aws("ecs", "register-task-definition", "--cli-input-json",
               write_json(tmp_path / "td.json", seed_task_definition("td-testunit")))["taskDefinition"]
    assert td["taskDefinitionArn"].endswith(":task-definition/td-testunit:1")
    spec = {"serviceName": "testunit-service", "taskDefinition": "td-testunit:1", "desiredCount": 10}
    svc = w.aws("ecs", "create-service", "--cli-input-json", write_json(tmp_path / "svc.json", spec))["service"]
    assert svc["desiredCount"] == 10 and svc["clusterArn"].endswith(":cluster/default")

    wait_until("10 running containers labelled with cluster default",
               lambda: (len(c := cluster_containers(DEFAULT, {inst})) == 10, c), 60, interval=0.5)
    svc = wait_stable(ecs, DEFAULT, "testunit-service")
    # The AWS CLI's own waiter (first poll at once) agrees.
    assert w.aws("ecs", "wait", "services-stable", "--services", "testunit-service") is None
    assert svc["runningCount"] == 10 and svc["pendingCount"] == 0
    (dep,) = svc["deployments"]
    assert dep["rolloutState"] == "COMPLETED" and dep["runningCount"] == 10
    (cluster,) = w.aws("ecs", "describe-clusters")["clusters"]
    assert cluster["clusterName"] == DEFAULT
    assert cluster["runningTasksCount"] == 10 and cluster["pendingTasksCount"] == 0
    assert cluster["activeServicesCount"] == 1

    tasks = healthy(service_tasks(ecs, DEFAULT, "testunit-service"))
    assert len(tasks) == 10
    containers = cluster_containers(DEFAULT, {inst})
    assert sorted(c["task"] for c in containers) == sorted(t["taskArn"] for t in tasks)
    assert all(t["group"] == "service:testunit-service" and t["startedBy"] == dep["id"] for t in tasks)
    # Ten dynamic host ports, each answering.
    assert len({host_port(t, "testunit-web") for t in tasks}) == 10
    assert version_of(tasks[0]) == "v1"


@pytest.mark.parametrize("min_pct,max_pct", [(100, 200), (50, 100)])
def test_rolling_update_stays_within_min_healthy_and_max_percent(wharf_factory, min_pct, max_pct):
    w, ecs, inst = embedded(wharf_factory)
    desired = 4
    floor, ceiling = (desired * min_pct + 99) // 100, desired * max_pct // 100
    td1, td2 = register(ecs, "roll", "v1"), register(ecs, "roll", "v2")
    create(ecs, DEFAULT, "roll", td1, desired,
           deploymentConfiguration={"minimumHealthyPercent": min_pct, "maximumPercent": max_pct})
    wait_stable(ecs, DEFAULT, "roll")

    with Sampler(ecs, DEFAULT, "roll") as sampler:
        svc = ecs.update_service(cluster=DEFAULT, service="roll", taskDefinition=td2)["service"]
        assert len(svc["deployments"]) == 2
        svc = wait_stable(ecs, DEFAULT, "roll")
        # The waiter returned only once the old deployment was gone and v2 runs everywhere.
        (dep,) = svc["deployments"]
        assert dep["taskDefinition"] == td2 and dep["rolloutState"] == "COMPLETED"
        time.sleep(0.5)  # a couple more samples after the end
    sampler.check_bounds(floor, ceiling)
    fewest, most = sampler.extremes()
    assert len(sampler.samples) >= 10, len(sampler.samples)
    # deployments[] had two entries until v1's tasks were gone, then one; whenever the waiter
    # would have succeeded, only v2 was left.
    lengths = [len(s["deployments"]) for _, s, _ in sampler.samples]
    assert lengths[0] == 2 and lengths[-1] == 1, lengths
    assert lengths == sorted(lengths, reverse=True), lengths
    for t, s, ts in sampler.samples:
        if waiter_stable(s):
            assert s["taskDefinition"] == td2 and all(x["taskDefinitionArn"] == td2 for x in live(ts)), (t, s)
    tasks = healthy(service_tasks(ecs, DEFAULT, "roll"))
    assert len(tasks) == desired and all(t["taskDefinitionArn"] == td2 for t in tasks)
    assert {version_of(t) for t in tasks} == {"v2"}
    wait_until("only v2's containers run", lambda: sorted(c["task"] for c in cluster_containers(DEFAULT, {inst}))
               == sorted(t["taskArn"] for t in tasks), 15)
    print(f"rolling {min_pct}/{max_pct}: fewest healthy {fewest}, most live {most}, "
          f"{len(sampler.samples)} samples")


def test_circuit_breaker_rolls_a_crashing_revision_back(wharf_factory):
    w, ecs, inst = embedded(wharf_factory)
    td1 = register(ecs, "brk", "v1")
    bad = register(ecs, "brk", "v2", command=["--exit", "1"])
    create(ecs, DEFAULT, "brk", td1, 4,
           deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    first = wait_stable(ecs, DEFAULT, "brk")["deployments"][0]
    assert first["rolloutState"] == "COMPLETED"

    # describe-services as fast as it answers: the failed deployment is short-lived.
    with Sampler(ecs, DEFAULT, "brk", interval=0.02, tasks=False) as watch:
        svc = ecs.update_service(cluster=DEFAULT, service="brk", taskDefinition=bad)["service"]
        bad_dep = svc["deployments"][0]
        assert bad_dep["taskDefinition"] == bad and bad_dep["rolloutState"] == "IN_PROGRESS"
        # The real waiter, as a user would run it right after the update.
        svc = wait_stable(ecs, DEFAULT, "brk", timeout=90)
        assert svc["taskDefinition"] == td1, svc["taskDefinition"]
        (dep,) = svc["deployments"]
        assert dep["taskDefinition"] == td1 and dep["id"] not in (first["id"], bad_dep["id"])
        svc, tasks = wait_service(ecs, DEFAULT, "brk", lambda s, ts: s["deployments"][0]["rolloutState"] == "COMPLETED",
                                  "the rollback deployment completed", 30)
    seen = [d for _, s, _ in watch.samples for d in s["deployments"] if d["id"] == bad_dep["id"]]
    assert seen, "the bad deployment was never seen"
    failed = [d for d in seen if d.get("rolloutState") == "FAILED"]
    assert failed, f"rolloutState FAILED never observed: {[d.get('rolloutState') for d in seen]}"
    assert "circuit breaker" in failed[0]["rolloutStateReason"], failed[0]
    assert failed[-1]["failedTasks"] >= 3, failed[-1]
    print(f"FAILED seen in {len(failed)} of {len(seen)} samples of the bad deployment")
    # Whenever the waiter's condition held, the service ran v1.
    for t, s, _ in watch.samples:
        if waiter_stable(s):
            assert s["taskDefinition"] == td1 and s["deployments"][0]["taskDefinition"] == td1, s["deployments"]
    messages = event_messages(svc)
    assert any("deployment failed" in m and bad_dep["id"] in m for m in messages), messages
    assert any("rolling back" in m for m in messages), messages
    running = healthy(tasks)
    assert len(running) == 4 and {t["taskDefinitionArn"] for t in running} == {td1}
    assert {version_of(t) for t in running} == {"v1"}
    stopped = [t for t in tasks if t["taskDefinitionArn"] == bad]
    assert stopped and all(t["lastStatus"] == "STOPPED" for t in stopped)
    assert any(c.get("exitCode") == 1 for t in stopped for c in t["containers"]), stopped[0]
