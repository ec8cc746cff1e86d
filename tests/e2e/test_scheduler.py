"""The service scheduler end to end (issue 4): services run as real Docker containers through
the embedded agent of `wharf up` or standalone `wharf agent`s, driven with the real AWS CLI and
boto3. Rolling deployments are sampled every 200 ms against minimumHealthyPercent and
maximumPercent; the circuit breaker rolls back; killed containers, killed agents and draining
instances are replaced; a server killed mid-deployment finishes it; DAEMON services follow
instances."""

import json
import time

import pytest

from agentutil import host_port, http, wait_instances, wait_until
from conftest import docker
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
    messages = [e["message"] for e in svc["events"]]
    assert "(service testunit-service) has reached a steady state." in messages, messages
    assert sum(int(m.split(" has started ")[1].split()[0]) for m in messages if " has started " in m) == 10, messages

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
        updated = time.time()
        assert len(svc["deployments"]) == 2
        svc = wait_stable(ecs, DEFAULT, "roll")
        # The waiter returned only once the old deployment was gone and v2 runs everywhere.
        (dep,) = svc["deployments"]
        assert dep["taskDefinition"] == td2 and dep["rolloutState"] == "COMPLETED"
        time.sleep(0.5)  # a couple more samples after the end
    sampler.check_bounds(floor, ceiling)
    # deployments[] had two entries until v1's tasks were gone, then one; whenever the waiter
    # would have succeeded, only v2 was left.
    after = [x for x in sampler.samples if x[0] > updated]
    lengths = [len(s["deployments"]) for _, s, _ in after]
    assert lengths[0] == 2 and lengths[-1] == 1 and lengths.count(2) >= 2, lengths  # sampled mid-way
    assert lengths == sorted(lengths, reverse=True), lengths
    for t, s, ts in after:
        if waiter_stable(s):
            assert s["taskDefinition"] == td2 and all(x["taskDefinitionArn"] == td2 for x in live(ts)), (t, s)
    tasks = healthy(service_tasks(ecs, DEFAULT, "roll"))
    assert len(tasks) == desired and all(t["taskDefinitionArn"] == td2 for t in tasks)
    assert {version_of(t) for t in tasks} == {"v2"}
    wait_until("only v2's containers run", lambda: sorted(c["task"] for c in cluster_containers(DEFAULT, {inst}))
               == sorted(t["taskArn"] for t in tasks), 15)


def test_circuit_breaker_rolls_a_crashing_revision_back(wharf_factory):
    w, ecs, inst = embedded(wharf_factory)
    td1 = register(ecs, "brk", "v1")
    bad = register(ecs, "brk", "v2", command=["--exit", "1"])
    create(ecs, DEFAULT, "brk", td1, 4,
           deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    first = wait_stable(ecs, DEFAULT, "brk")["deployments"][0]
    assert first["rolloutState"] == "COMPLETED"

    # describe-services as fast as it answers: the failed deployment is short-lived.
    with Sampler(ecs, DEFAULT, "brk", interval=0.05, tasks=False) as watch:
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


def test_a_killed_container_is_replaced(wharf_factory):
    w, ecs, inst = embedded(wharf_factory)
    # The circuit breaker watches deployments in progress only: crashes after the deployment
    # completed must not fail it (nor stop replacements).
    create(ecs, DEFAULT, "kill", register(ecs, "kill"), 3,
           deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": False}})
    assert wait_stable(ecs, DEFAULT, "kill")["deployments"][0]["rolloutState"] == "COMPLETED"
    before = {t["taskArn"] for t in healthy(service_tasks(ecs, DEFAULT, "kill"))}
    victim = cluster_containers(DEFAULT, {inst})[0]
    assert victim["task"] in before
    docker("kill", victim["id"])

    def replaced(s, ts):
        gone = [t for t in ts if t["taskArn"] == victim["task"] and t["lastStatus"] == "STOPPED"]
        fresh = [t for t in healthy(ts) if t["taskArn"] not in before]
        return gone and len(fresh) == 1 and s["runningCount"] == 3 and len(healthy(ts)) == 3
    svc, tasks = wait_service(ecs, DEFAULT, "kill", replaced, "the killed task replaced", 30)
    (dead,) = [t for t in tasks if t["taskArn"] == victim["task"]]
    assert dead["stopCode"] == "EssentialContainerExited", dead
    assert dead["containers"][0]["exitCode"] == 137, dead["containers"]
    wait_stable(ecs, DEFAULT, "kill")
    assert sorted(c["task"] for c in cluster_containers(DEFAULT, {inst})) == sorted(t["taskArn"] for t in
                                                                                    healthy(tasks))

    # Three more crashes at once (the breaker's threshold): all replaced, the deployment stays
    # COMPLETED.
    before = {t["taskArn"] for t in healthy(tasks)}
    docker("kill", *[c["id"] for c in cluster_containers(DEFAULT, {inst})])
    svc, tasks = wait_service(ecs, DEFAULT, "kill", lambda s, ts: len(healthy(ts)) == 3 and not before & {
        t["taskArn"] for t in healthy(ts)}, "three killed tasks replaced", 30)
    (dep,) = svc["deployments"]
    assert dep["rolloutState"] == "COMPLETED", dep
    assert not any("deployment failed" in m for m in event_messages(svc)), event_messages(svc)[:5]


def test_a_killed_agents_tasks_come_back_on_another_agent(wharf_factory):
    w, ecs, cluster, (a1, a2), (i1, i2) = standalone(wharf_factory, 2, "--agent-timeout-secs", "3", prefix="lost")
    create(ecs, cluster, "lost", register(ecs, "lost"), 4)
    wait_stable(ecs, cluster, "lost")
    tasks = service_tasks(ecs, cluster, "lost")
    on1 = running_on(tasks, i1)
    assert len(on1) == 2 and len(running_on(tasks, i2)) == 2  # spread over the instances

    a1.kill9()
    t0 = time.time()

    def back(s, ts):
        lost = [t for t in ts if t["taskArn"] in {x["taskArn"] for x in on1}]
        return all(t["lastStatus"] == "STOPPED" for t in lost) and len(running_on(ts, i2)) == 4 \
            and s["runningCount"] == 4
    svc, tasks = wait_service(ecs, cluster, "lost", back, "the lost agent's tasks back on the other agent", 30)
    assert time.time() - t0 < 30
    for t in tasks:
        if t["taskArn"] in {x["taskArn"] for x in on1}:
            assert "lost contact" in t["stoppedReason"], t["stoppedReason"]
    assert len(live(tasks)) == 4
    assert len(cluster_containers(cluster, {i2})) == 4
    (ci,) = ecs.describe_container_instances(cluster=cluster, containerInstances=[i1])["containerInstances"]
    assert ci["agentConnected"] is False


def test_daemon_service_follows_instances_joining_and_draining(wharf_factory):
    w, ecs, cluster, (a1,), (i1,) = standalone(wharf_factory, 1, prefix="daemon")
    ecs.create_service(cluster=cluster, serviceName="d", taskDefinition=register(ecs, "d"),
                       schedulingStrategy="DAEMON")
    wait_service(ecs, cluster, "d", lambda s, ts: len(running_on(ts, i1)) == 1 and s["runningCount"] == 1,
                 "a daemon task on the first instance", 30)

    a2 = wharf_factory.agent(w, cluster)
    i2 = a2.instance_arn()
    svc, _ = wait_service(ecs, cluster, "d", lambda s, ts: len(running_on(ts, i2)) == 1 and len(running_on(ts, i1))
                          == 1 and s["runningCount"] == 2, "a daemon task on the joining instance", 30)
    assert svc["desiredCount"] == 2
    assert len(cluster_containers(cluster, {i2})) == 1

    # A new revision replaces the task on each instance: the old one stops first (DAEMON's
    # maximumPercent is 100), one instance at a time with minimumHealthyPercent 50.
    td2 = register(ecs, "d", "v2")
    with Sampler(ecs, cluster, "d") as sampler:
        ecs.update_service(cluster=cluster, service="d", taskDefinition=td2,
                           deploymentConfiguration={"minimumHealthyPercent": 50})
        svc = wait_stable(ecs, cluster, "d", timeout=30)
    sampler.check_bounds(1, 2)
    assert svc["deployments"][0]["taskDefinition"] == td2
    tasks = healthy(service_tasks(ecs, cluster, "d"))
    assert sorted(t["containerInstanceArn"] for t in tasks) == sorted([i1, i2])
    assert {t["taskDefinitionArn"] for t in tasks} == {td2} and {version_of(t) for t in tasks} == {"v2"}

    ecs.update_container_instances_state(cluster=cluster, containerInstances=[i2], status="DRAINING")
    svc, tasks = wait_service(ecs, cluster, "d", lambda s, ts: not [t for t in live(ts) if t.get(
        "containerInstanceArn") == i2] and s["runningCount"] == 1 and s["desiredCount"] == 1,
        "the draining instance's daemon task gone", 30)
    assert len(running_on(tasks, i1)) == 1
    wait_until("the drained instance's container removed", lambda: not owner_containers(i2), 20)
    assert len(cluster_containers(cluster, {i1})) == 1
    wait_stable(ecs, cluster, "d")


def test_draining_moves_replica_tasks_within_min_healthy(wharf_factory):
    w, ecs, cluster, agents, (i1, i2) = standalone(wharf_factory, 2, prefix="drain")
    create(ecs, cluster, "dr", register(ecs, "dr"), 4)
    wait_stable(ecs, cluster, "dr")
    assert len(running_on(service_tasks(ecs, cluster, "dr"), i1)) == 2

    with Sampler(ecs, cluster, "dr") as sampler:
        ecs.update_container_instances_state(cluster=cluster, containerInstances=[i1], status="DRAINING")
        svc, tasks = wait_service(ecs, cluster, "dr", lambda s, ts: len(running_on(ts, i2)) == 4 and not [
            t for t in live(ts) if t.get("containerInstanceArn") == i1], "every task moved to the other instance", 40)
    sampler.check_bounds(4, 8)
    assert svc["runningCount"] == 4
    wait_until("the drained instance's containers removed", lambda: not owner_containers(i1), 20)
    (ci,) = ecs.describe_container_instances(cluster=cluster, containerInstances=[i1])["containerInstances"]
    assert ci["status"] == "DRAINING" and ci["runningTasksCount"] == 0 and ci["pendingTasksCount"] == 0
    wait_stable(ecs, cluster, "dr")


def _starting(td1, td2):
    """v2's tasks are placed but none runs yet."""
    return lambda ts: [t for t in ts if t["taskDefinitionArn"] == td2] and not [
        t for t in healthy(ts) if t["taskDefinitionArn"] == td2]


def _draining(td1, td2):
    """v2's tasks run and v1's have begun to stop, but not all of them have."""
    return lambda ts: [t for t in ts if t["taskDefinitionArn"] == td1 and t["desiredStatus"] == "STOPPED"] and [
        t for t in live(ts) if t["taskDefinitionArn"] == td1] and [
        t for t in healthy(ts) if t["taskDefinitionArn"] == td2]


@pytest.mark.parametrize("phase", [_starting, _draining], ids=["starting", "draining"])
def test_a_server_killed_mid_deployment_finishes_it(wharf_factory, phase):
    w, ecs, inst = embedded(wharf_factory)
    desired = 4
    td1, td2 = register(ecs, "rst", "v1"), register(ecs, "rst", "v2")
    create(ecs, DEFAULT, "rst", td1, desired)
    wait_stable(ecs, DEFAULT, "rst")

    with Sampler(ecs, DEFAULT, "rst") as sampler:
        ecs.update_service(cluster=DEFAULT, service="rst", taskDefinition=td2)
        reached = phase(td1, td2)
        wait_until(f"the deployment {phase.__name__[1:]}", lambda: reached(service_tasks(ecs, DEFAULT, "rst")), 30,
                   interval=0.02)
        w.kill9_and_restart()
        restarted = time.time()
        svc = wait_stable(ecs, DEFAULT, "rst", timeout=60)
        (dep,) = svc["deployments"]
        assert dep["taskDefinition"] == td2 and dep["rolloutState"] == "COMPLETED", dep
        time.sleep(0.4)
    assert [t for t, _, _ in sampler.samples if t > restarted], "no samples after the restart"
    # No duplicates: no deployment ever had more live tasks than desired + the surge, nor the
    # service more than maximumPercent.
    surge = desired * 200 // 100 - desired
    for t, s, ts in sampler.samples:
        per = {}
        for x in live(ts):
            per[x["startedBy"]] = per.get(x["startedBy"], 0) + 1
        assert all(n <= desired + surge for n in per.values()), (t, per)
        assert len(live(ts)) <= desired * 2, (t, len(live(ts)))
    # None forgotten: every v1 task stopped, exactly four v2 tasks run, and Docker runs
    # exactly their containers.
    tasks = service_tasks(ecs, DEFAULT, "rst")
    assert all(t["lastStatus"] == "STOPPED" for t in tasks if t["taskDefinitionArn"] == td1)
    running = healthy(tasks)
    assert len(running) == desired and len(live(tasks)) == desired
    assert all(t["taskDefinitionArn"] == td2 and t["startedBy"] == dep["id"] for t in running)
    wait_until("Docker runs exactly the service's tasks",
               lambda: (sorted(c["task"] for c in cluster_containers(DEFAULT, {inst}))
                        == sorted(t["taskArn"] for t in running), cluster_containers(DEFAULT, {inst})), 20)
    assert {version_of(t) for t in running} == {"v2"}
    (cluster,) = ecs.describe_clusters(clusters=[DEFAULT])["clusters"]
    assert cluster["runningTasksCount"] == desired and cluster["pendingTasksCount"] == 0


def test_events_scaling_and_forced_delete(wharf_factory):
    w, ecs, inst = embedded(wharf_factory)
    create(ecs, DEFAULT, "ev", register(ecs, "ev"), 4)
    svc = wait_stable(ecs, DEFAULT, "ev")
    svc, _ = wait_service(ecs, DEFAULT, "ev", lambda s, ts: any("steady state" in m for m in event_messages(s)),
                          "the steady-state event", 10)
    messages = event_messages(svc)
    assert any("(service ev) has started 4 tasks" in m for m in messages), messages
    assert any("(service ev) has reached a steady state." in m for m in messages), messages
    assert any(f"(deployment {svc['deployments'][0]['id']}) deployment completed." in m for m in messages), messages

    for n in (6, 2):
        w.aws("ecs", "update-service", "--service", "ev", "--desired-count", str(n))
        svc, tasks = wait_service(ecs, DEFAULT, "ev", lambda s, ts: s["runningCount"] == n and len(live(ts)) == n
                                  and waiter_stable(s), f"{n} running", 30)
        wait_until(f"{n} containers", lambda: len(cluster_containers(DEFAULT, {inst})) == n, 20)
    messages = event_messages(svc)
    assert any("has started 2 tasks" in m for m in messages), messages
    assert any("has stopped 4 running tasks" in m for m in messages), messages

    out = w.aws("ecs", "delete-service", "--service", "ev", "--force")["service"]
    assert out["status"] == "DRAINING"
    ecs.get_waiter("services_inactive").wait(cluster=DEFAULT, services=["ev"],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert w.aws("ecs", "wait", "services-inactive", "--services", "ev") is None
    assert service(ecs, DEFAULT, "ev")["status"] == "INACTIVE"
    assert all(t["lastStatus"] == "STOPPED" for t in service_tasks(ecs, DEFAULT, "ev"))
    wait_until("no containers left", lambda: (not (c := owner_containers(inst)), c), 20)
    assert not cluster_containers(DEFAULT, {inst}, running_only=False)
