"""Standalone `wharf agent` processes against `wharf up --no-agent`: two instances in one
cluster with true remaining resources and distinctInstance placement, re-adoption after
`kill -9`, no orphaned containers after StopTask / forced deregistration / cluster deletion,
instances whose agent dies, and the ecs.config file."""

import json
import time

from agentutil import (container, describe, echo, free_port, host_port, instance, register, remaining, run,
                       wait_http, wait_instances, wait_task, wait_until)
from conftest import CLUSTER_LABEL, TASK_LABEL, docker, docker_containers


def cluster_with_agents(fleet, n=1, server_args=(), prefix="two"):
    w = fleet(*server_args, agent=False)
    ecs = w.client("ecs")
    cluster = fleet.cluster_name(prefix)
    ecs.create_cluster(clusterName=cluster)
    agents = [fleet.agent(w, cluster) for _ in range(n)]
    arns = [a.instance_arn() for a in agents]
    assert len(set(arns)) == n
    wait_instances(ecs, cluster, n)
    return w, ecs, cluster, agents, arns


def test_two_agents_in_one_cluster_report_true_remaining_resources(wharf_factory):
    w, ecs, cluster, agents, arns = cluster_with_agents(wharf_factory, 2)
    listed = w.aws("ecs", "list-container-instances", "--cluster", cluster)["containerInstanceArns"]
    assert sorted(listed) == sorted(arns)
    before = {a: instance(ecs, cluster, a) for a in arns}
    for inst in before.values():
        assert inst["status"] == "ACTIVE" and inst["agentConnected"] is True
        assert remaining(inst, "CPU") == next(r["integerValue"] for r in inst["registeredResources"]
                                              if r["name"] == "CPU") > 0
        assert inst["versionInfo"]["dockerVersion"].startswith("DockerVersion:")

    fixed = free_port()
    td = register(ecs, "echo-fixed", echo(cpu=256, memory=128,
                                          portMappings=[{"containerPort": 8080, "hostPort": fixed}]))
    (arn,) = run(ecs, cluster, td)
    task = wait_task(ecs, cluster, arn)
    on, other = task["containerInstanceArn"], next(a for a in arns if a != task["containerInstanceArn"])
    assert host_port(task) == fixed
    assert wait_http(f"http://127.0.0.1:{fixed}/")["container"] == "web"
    out = w.aws("ecs", "describe-container-instances", "--cluster", cluster, "--container-instances", on, other)
    now = {i["containerInstanceArn"]: i for i in out["containerInstances"]}
    assert remaining(now[on], "CPU") == remaining(before[on], "CPU") - 256
    assert remaining(now[on], "MEMORY") == remaining(before[on], "MEMORY") - 128
    assert str(fixed) in remaining(now[on], "PORTS")
    assert now[on]["runningTasksCount"] == 1
    assert remaining(now[other], "CPU") == remaining(before[other], "CPU")
    assert str(fixed) not in remaining(now[other], "PORTS") and now[other]["runningTasksCount"] == 0

    # distinctInstance: two tasks, one on each instance (dynamic ports: both agents share a host).
    dyn = register(ecs, "echo-dyn", echo(cpu=128, memory=64, portMappings=[{"containerPort": 8080, "hostPort": 0}]))
    pair = run(ecs, cluster, dyn, count=2, placementConstraints=[{"type": "distinctInstance"}])
    tasks = [wait_task(ecs, cluster, t) for t in pair]
    assert {t["containerInstanceArn"] for t in tasks} == set(arns)
    for t in tasks:
        assert wait_http(f"http://127.0.0.1:{host_port(t)}/")["hostname"] == container(t, "web")["runtimeId"][:12]
        owner = [c["owner"] for c in docker_containers(f"{TASK_LABEL}={t['taskArn']}")]
        assert owner == [t["containerInstanceArn"]], owner
    # The spread strategy over instanceId, too.
    spread = run(ecs, cluster, dyn, count=2, placementStrategy=[{"type": "spread", "field": "instanceId"}])
    assert {wait_task(ecs, cluster, t)["containerInstanceArn"] for t in spread} == set(arns)

    for t in [arn, *pair, *spread]:
        ecs.stop_task(cluster=cluster, task=t)
    for t in [arn, *pair, *spread]:
        wait_task(ecs, cluster, t, "STOPPED", timeout=20)
    for a in arns:
        inst = instance(ecs, cluster, a)
        assert remaining(inst, "CPU") == remaining(before[a], "CPU")
        assert remaining(inst, "MEMORY") == remaining(before[a], "MEMORY")
        assert sorted(remaining(inst, "PORTS")) == sorted(remaining(before[a], "PORTS"))
        assert inst["runningTasksCount"] == 0 and inst["pendingTasksCount"] == 0


def test_restarted_agent_adopts_its_running_containers(wharf_factory):
    w, ecs, cluster, (agent,), (arn_inst,) = cluster_with_agents(wharf_factory)
    td = register(ecs, "echo-adopt", echo(portMappings=[{"containerPort": 8080, "hostPort": 0}]),
                  echo("side", essential=False, env={"PORT": 9090}))
    (arn,) = run(ecs, cluster, td)
    task = wait_task(ecs, cluster, arn)
    ids = {c["name"]: c["runtimeId"] for c in task["containers"]}
    port = host_port(task)
    body = wait_http(f"http://127.0.0.1:{port}/")
    ec2_id = instance(ecs, cluster, arn_inst)["ec2InstanceId"]

    agent.kill9()
    assert {c["id"] for c in docker_containers(f"{TASK_LABEL}={arn}", running_only=True)} == set(ids.values())
    agent.start()
    assert agent.instance_arn() == arn_inst
    wait_until("the agent re-adopts the task", lambda: "re-adopting running containers" in agent.log.read_text(), 20)
    # A new task proves the restarted agent is serving; the old one was left as it was.
    (fresh,) = run(ecs, cluster, td)
    wait_task(ecs, cluster, fresh)
    task = describe(ecs, cluster, arn)
    assert task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING"
    assert {c["name"]: c["runtimeId"] for c in task["containers"]} == ids
    assert host_port(task) == port
    seen = docker_containers(f"{TASK_LABEL}={arn}")
    assert sorted(c["id"] for c in seen) == sorted(ids.values()), seen
    assert all(c["state"] == "running" for c in seen), seen
    again = wait_http(f"http://127.0.0.1:{port}/")
    assert again["hostname"] == body["hostname"] and again["requests"] > body["requests"]
    inst = instance(ecs, cluster, arn_inst)
    assert inst["agentConnected"] is True and inst["runningTasksCount"] == 2
    assert inst["ec2InstanceId"] == ec2_id  # the same host registered again

    # What changed while the agent was down is finished when it is back: a task stopped by
    # the user, and a task whose essential container exited.
    agent.kill9()
    ecs.stop_task(cluster=cluster, task=arn, reason="stopped while the agent was down")
    docker("stop", "-t", "5", container(describe(ecs, cluster, fresh), "web")["runtimeId"])
    agent.start()
    task = wait_task(ecs, cluster, arn, "STOPPED", timeout=20)
    assert task["stoppedReason"] == "stopped while the agent was down" and task["stopCode"] == "UserInitiated"
    assert container(task, "web")["exitCode"] == 0
    task = wait_task(ecs, cluster, fresh, "STOPPED", timeout=20)
    assert task["stopCode"] == "EssentialContainerExited" and container(task, "web")["exitCode"] == 0
    for t in (arn, fresh):
        wait_until("containers removed", lambda: not docker_containers(f"{TASK_LABEL}={t}"), 15)


def test_stop_deregister_and_cluster_deletion_leave_no_containers(wharf_factory):
    w, ecs, cluster, (agent,), (arn_inst,) = cluster_with_agents(wharf_factory, prefix="clean")
    td = register(ecs, "echo-clean", echo(portMappings=[{"containerPort": 8080, "hostPort": 0}]),
                  echo("side", essential=False, env={"PORT": 9090}))
    vpc = register(ecs, "echo-clean-vpc", echo(portMappings=[{"containerPort": 8080}]), networkMode="awsvpc")
    mine = f"{CLUSTER_LABEL}={cluster}"

    def no_containers():
        left = docker_containers(mine)
        return not left, left

    (a,) = run(ecs, cluster, td)
    (v,) = run(ecs, cluster, vpc, networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-1"]}})
    wait_task(ecs, cluster, a)
    wait_task(ecs, cluster, v)
    assert len(docker_containers(mine)) == 4  # two + one + the awsvpc task's pause container
    w.aws("ecs", "stop-task", "--cluster", cluster, "--task", a)
    w.aws("ecs", "stop-task", "--cluster", cluster, "--task", v)
    wait_task(ecs, cluster, a, "STOPPED", timeout=20)
    wait_task(ecs, cluster, v, "STOPPED", timeout=20)
    wait_until("StopTask removes the containers", no_containers, 15)

    (b,) = run(ecs, cluster, td)
    wait_task(ecs, cluster, b)
    assert len(docker_containers(mine)) == 2
    err = w.aws("ecs", "deregister-container-instance", "--cluster", cluster, "--container-instance", arn_inst,
                check=False)
    assert "InvalidParameterException" in err.stderr
    out = w.aws("ecs", "deregister-container-instance", "--cluster", cluster, "--container-instance", arn_inst,
                "--force")
    assert out["containerInstance"]["status"] == "INACTIVE"
    wait_until("deregistering stops and removes the task's containers", no_containers, 20)
    task = wait_task(ecs, cluster, b, "STOPPED", timeout=20)
    assert task["desiredStatus"] == "STOPPED"
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == []

    out = w.aws("ecs", "delete-cluster", "--cluster", cluster)
    assert out["cluster"]["status"] == "INACTIVE"
    assert docker_containers(mine) == []
    assert agent.proc.poll() is None  # the agent outlives its instance, quietly


def test_instance_deregistered_while_its_agent_is_down_comes_back_as_a_new_one(wharf_factory):
    w, ecs, cluster, (agent,), (old,) = cluster_with_agents(wharf_factory, prefix="rejoin")
    td = register(ecs, "echo-rejoin", echo(portMappings=[{"containerPort": 8080, "hostPort": 0}]))
    (arn,) = run(ecs, cluster, td)
    wait_task(ecs, cluster, arn)
    agent.kill9()
    w.aws("ecs", "deregister-container-instance", "--cluster", cluster, "--container-instance", old, "--force")
    task = wait_task(ecs, cluster, arn, "STOPPED", timeout=10)
    assert "deregistered" in task["stoppedReason"], task["stoppedReason"]
    assert len(docker_containers(f"{TASK_LABEL}={arn}", running_only=True)) == 1  # nobody stopped it yet

    agent.start()
    new = wait_until("a new registration", lambda: (agent.state().get("containerInstanceArn") not in (None, old),
                                                    agent.state().get("containerInstanceArn")), 20)
    assert wait_instances(ecs, cluster) == [new]
    assert instance(ecs, cluster, old)["status"] == "INACTIVE"
    assert instance(ecs, cluster, new)["status"] == "ACTIVE"
    wait_until("the old instance's containers removed", lambda: not docker_containers(f"{TASK_LABEL}={arn}"), 15)
    (again,) = run(ecs, cluster, td)
    assert wait_task(ecs, cluster, again)["containerInstanceArn"] == new


def test_instance_whose_agent_dies_is_disconnected_and_its_tasks_stopped(wharf_factory):
    w, ecs, cluster, (agent,), (arn_inst,) = cluster_with_agents(
        wharf_factory, server_args=("--agent-timeout-secs", "3"), prefix="lost")
    td = register(ecs, "echo-lost", echo(cpu=512, memory=256, portMappings=[{"containerPort": 8080, "hostPort": 0}]))
    before = instance(ecs, cluster, arn_inst)
    (arn,) = run(ecs, cluster, td)
    wait_task(ecs, cluster, arn)
    # Well past the timeout, a live agent keeps its instance and tasks.
    time.sleep(3.5)
    assert instance(ecs, cluster, arn_inst)["agentConnected"] is True
    assert describe(ecs, cluster, arn)["lastStatus"] == "RUNNING"

    agent.kill9()
    t0 = time.time()
    wait_until("agentConnected false", lambda: instance(ecs, cluster, arn_inst)["agentConnected"] is False, 12)
    task = wait_task(ecs, cluster, arn, "STOPPED", timeout=12)
    assert time.time() - t0 < 3 + 2 + 4, time.time() - t0
    assert task["desiredStatus"] == "STOPPED"
    assert "lost contact" in task["stoppedReason"], task["stoppedReason"]
    inst = instance(ecs, cluster, arn_inst)
    assert inst["status"] == "ACTIVE" and inst["runningTasksCount"] == 0
    assert [c["state"] for c in docker_containers(f"{TASK_LABEL}={arn}")] == ["running"]  # nobody to stop it

    # The agent comes back: the instance is connected again with all its resources, and the
    # container of the task stopped meanwhile is gone.
    agent.start()
    assert agent.instance_arn() == arn_inst
    wait_until("agentConnected true", lambda: instance(ecs, cluster, arn_inst)["agentConnected"] is True, 10)
    wait_until("the stopped task's container removed", lambda: not docker_containers(f"{TASK_LABEL}={arn}"), 15)
    inst = instance(ecs, cluster, arn_inst)
    for r in ("CPU", "MEMORY", "PORTS"):
        assert remaining(inst, r) == remaining(before, r), (r, inst["remainingResources"])
    assert describe(ecs, cluster, arn)["lastStatus"] == "STOPPED"


def test_ecs_config_file_names_the_cluster_and_attributes(wharf_factory, tmp_path):
    w = wharf_factory(agent=False)
    ecs = w.client("ecs")
    cluster = wharf_factory.cluster_name("cfg")
    ecs.create_cluster(clusterName=cluster)
    config = tmp_path / "ecs.config"
    config.write_text(f'# as on an ECS-optimized AMI\nECS_CLUSTER={cluster}\n'
                      f'ECS_INSTANCE_ATTRIBUTES={json.dumps({"stack": "blue"})}\n')
    agent = wharf_factory.agent(w, None, config=config)
    arn = agent.instance_arn()
    assert arn.split("/")[-2] == cluster
    assert wait_instances(ecs, cluster) == [arn]
    attrs = {a["name"]: a.get("value") for a in instance(ecs, cluster, arn)["attributes"]}
    assert attrs["stack"] == "blue", attrs
    out = w.aws("ecs", "list-container-instances", "--cluster", cluster, "--filter", "attribute:stack == blue")
    assert out["containerInstanceArns"] == [arn]
    out = w.aws("ecs", "list-container-instances", "--cluster", cluster, "--filter", "attribute:stack == green")
    assert out["containerInstanceArns"] == []
    # Placement honours it.
    td = register(ecs, "echo-blue", echo())
    (t,) = run(ecs, cluster, td, placementConstraints=[{"type": "memberOf", "expression": "attribute:stack == blue"}])
    assert wait_task(ecs, cluster, t)["containerInstanceArn"] == arn
