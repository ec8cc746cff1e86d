"""Container instances and tasks: registration with resources, placement with CPU, memory
and port accounting, stopping tasks the agent never started, filters, attributes."""

import json

import time

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION
from util import container_instance_resources, resource, simple_taskdef, write_json

IDENTITY = {"instanceId": "i-0abc1234def567890", "instanceType": "t2.small", "availabilityZone": "us-east-1b",
            "region": "us-east-1", "accountId": ACCOUNT}


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def register_instance(ecs, cluster="c1", identity=None, **kw):
    return ecs.register_container_instance(
        cluster=cluster, instanceIdentityDocument=json.dumps(identity or IDENTITY),
        totalResources=container_instance_resources(), **kw)["containerInstance"]


def describe_instance(ecs, arn, cluster="c1"):
    return ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])["containerInstances"][0]


@pytest.fixture
def cluster(ecs):
    ecs.create_cluster(clusterName="c1")
    ecs.register_task_definition(**simple_taskdef("web"))  # 128 MiB, dynamic host port
    fixed = simple_taskdef("fixed")
    fixed["containerDefinitions"][0].update(cpu=512, memory=256,
                                            portMappings=[{"containerPort": 80, "hostPort": 8080}])
    ecs.register_task_definition(**fixed)
    return ecs


def test_run_task_without_container_instances(cluster):
    with pytest.raises(ClientError) as e:
        cluster.run_task(cluster="c1", taskDefinition="web")
    assert code_of(e) == ("InvalidParameterException", "No Container Instances were found in your cluster.")
    assert cluster.list_tasks(cluster="c1")["taskArns"] == []
    with pytest.raises(ClientError) as e:
        cluster.run_task(cluster="ghost", taskDefinition="web")
    assert code_of(e)[0] == "ClusterNotFoundException"
    with pytest.raises(ClientError) as e:
        cluster.run_task(cluster="c1", taskDefinition="web", count=11)
    assert code_of(e)[0] == "InvalidParameterException" and "count" in code_of(e)[1]


def test_tasks_take_and_give_back_instance_resources(wharf, cluster):
    ecs = cluster
    inst = register_instance(ecs)
    arn = inst["containerInstanceArn"]
    assert arn.startswith(f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/c1/")
    assert inst["status"] == "ACTIVE" and inst["agentConnected"] is True
    assert inst["ec2InstanceId"] == IDENTITY["instanceId"]
    assert resource(inst, "CPU") == 2048 and resource(inst, "MEMORY") == 4096
    assert resource(inst, "CPU", "registeredResources") == 2048
    assert ecs.describe_clusters(clusters=["c1"])["clusters"][0]["registeredContainerInstancesCount"] == 1

    run = ecs.run_task(cluster="c1", taskDefinition="fixed", startedBy="tester")
    assert run["failures"] == []
    (task,) = run["tasks"]
    assert task["lastStatus"] == "PROVISIONING" and task["desiredStatus"] == "RUNNING"
    assert task["containerInstanceArn"] == arn
    assert task["taskArn"].startswith(f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/c1/")
    assert task["taskDefinitionArn"].endswith("task-definition/fixed:1")
    assert task["group"] == "family:fixed" and task["startedBy"] == "tester"
    assert task["launchType"] == "EC2"
    assert [c["name"] for c in task["containers"]] == ["web"]
    assert (task["cpu"], task["memory"]) == ("512", "256")

    now = describe_instance(ecs, arn)
    assert resource(now, "CPU") == 2048 - 512 and resource(now, "MEMORY") == 4096 - 256
    assert "8080" in resource(now, "PORTS")
    assert now["pendingTasksCount"] == 1
    assert ecs.describe_clusters(clusters=["c1"])["clusters"][0]["pendingTasksCount"] == 1

    # Same fixed host port on the only instance: refused, and nothing is taken.
    again = ecs.run_task(cluster="c1", taskDefinition="fixed")
    assert again["tasks"] == []
    assert [f["reason"] for f in again["failures"]] == ["RESOURCE:PORTS"]
    assert again["failures"][0]["arn"] == arn
    # Dynamic ports do not collide.
    dyn = ecs.run_task(cluster="c1", taskDefinition="web", count=3)
    assert len(dyn["tasks"]) == 3 and dyn["failures"] == []
    assert resource(describe_instance(ecs, arn), "MEMORY") == 4096 - 256 - 3 * 128

    stopped = ecs.stop_task(cluster="c1", task=task["taskArn"], reason="done")["task"]
    assert stopped["desiredStatus"] == "STOPPED" and stopped["lastStatus"] == "STOPPED"
    assert stopped["stoppedReason"] == "done" and stopped["stopCode"] == "UserInitiated"
    after = describe_instance(ecs, arn)
    assert resource(after, "CPU") == 2048 and resource(after, "MEMORY") == 4096 - 3 * 128
    assert "8080" not in resource(after, "PORTS")
    assert "22" in resource(after, "PORTS")  # reserved at registration, kept
    # The port is free again.
    assert len(ecs.run_task(cluster="c1", taskDefinition="fixed")["tasks"]) == 1

    # The CLI waiter sees the stopped task.
    wharf.aws("ecs", "wait", "tasks-stopped", "--cluster", "c1", "--tasks", task["taskArn"])
    assert ecs.describe_tasks(cluster="c1", tasks=[task["taskArn"]])["tasks"][0]["lastStatus"] == "STOPPED"


def test_resources_run_out(cluster):
    ecs = cluster
    register_instance(ecs)
    big = simple_taskdef("big")
    big["containerDefinitions"][0].update(memory=3000)
    ecs.register_task_definition(**big)
    assert len(ecs.run_task(cluster="c1", taskDefinition="big")["tasks"]) == 1
    out = ecs.run_task(cluster="c1", taskDefinition="big")
    assert out["tasks"] == [] and [f["reason"] for f in out["failures"]] == ["RESOURCE:MEMORY"]
    cpu = simple_taskdef("cpu")
    cpu["containerDefinitions"][0].update(cpu=4096)
    ecs.register_task_definition(**cpu)
    out = ecs.run_task(cluster="c1", taskDefinition="cpu")
    assert [f["reason"] for f in out["failures"]] == ["RESOURCE:CPU"]
    # count > what fits: the ones that fit run, the rest are failures.
    ecs.register_task_definition(**dict(simple_taskdef("half"), memory="512"))
    out = ecs.run_task(cluster="c1", taskDefinition="half", count=4)
    assert len(out["tasks"]) == 2 and [f["reason"] for f in out["failures"]] == ["RESOURCE:MEMORY"] * 2


def test_stop_task_of_never_started_task_and_waiter(cluster):
    ecs = cluster
    register_instance(ecs)
    tasks = ecs.run_task(cluster="c1", taskDefinition="web", count=2)["tasks"]
    arns = [t["taskArn"] for t in tasks]
    for a in arns:
        ecs.stop_task(cluster="c1", task=a)
    ecs.get_waiter("tasks_stopped").wait(cluster="c1", tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    described = ecs.describe_tasks(cluster="c1", tasks=arns + ["0123456789abcdef0123456789abcdef"])
    assert {t["lastStatus"] for t in described["tasks"]} == {"STOPPED"}
    assert all(t["stoppedAt"] and t["stoppingAt"] for t in described["tasks"])
    assert [f["reason"] for f in described["failures"]] == ["MISSING"]
    # Stopping twice is harmless.
    assert ecs.stop_task(cluster="c1", task=arns[0])["task"]["lastStatus"] == "STOPPED"
    with pytest.raises(ClientError) as e:
        ecs.stop_task(cluster="c1", task="0123456789abcdef0123456789abcdef")
    assert code_of(e)[0] == "InvalidParameterException"


def test_list_tasks_filters(cluster):
    ecs = cluster
    a = register_instance(ecs)["containerInstanceArn"]
    b = register_instance(ecs, identity=dict(IDENTITY, instanceId="i-0b"))["containerInstanceArn"]
    t_web = ecs.start_task(cluster="c1", taskDefinition="web", containerInstances=[a], startedBy="alice")["tasks"][0]
    t_fixed = ecs.start_task(cluster="c1", taskDefinition="fixed", containerInstances=[b],
                             group="service:api")["tasks"][0]
    assert t_web["containerInstanceArn"] == a and t_fixed["containerInstanceArn"] == b
    t_stop = ecs.run_task(cluster="c1", taskDefinition="web")["tasks"][0]
    ecs.stop_task(cluster="c1", task=t_stop["taskArn"])

    def listed(**kw):
        return sorted(ecs.list_tasks(cluster="c1", **kw)["taskArns"])

    assert listed() == sorted([t_web["taskArn"], t_fixed["taskArn"]])
    assert listed(family="web") == [t_web["taskArn"]]
    assert listed(family="we") == []
    assert listed(containerInstance=b) == [t_fixed["taskArn"]]
    assert listed(containerInstance=b.rsplit("/", 1)[1]) == [t_fixed["taskArn"]]
    assert listed(startedBy="alice") == [t_web["taskArn"]]
    assert listed(serviceName="api") == [t_fixed["taskArn"]]
    assert listed(desiredStatus="STOPPED") == [t_stop["taskArn"]]
    assert listed(launchType="FARGATE") == []
    pages = ecs.get_paginator("list_tasks").paginate(cluster="c1", PaginationConfig={"PageSize": 1})
    assert sorted(a for p in pages for a in p["taskArns"]) == listed()
    with pytest.raises(ClientError) as e:
        ecs.list_tasks(cluster="c1", family="web", serviceName="api")
    assert code_of(e)[0] == "InvalidParameterException"


def test_start_task_on_unknown_instance_and_overrides(cluster):
    ecs = cluster
    a = register_instance(ecs)["containerInstanceArn"]
    out = ecs.start_task(cluster="c1", taskDefinition="web", containerInstances=["ffffffffffffffffffffffffffffffff"])
    assert out["tasks"] == [] and out["failures"][0]["reason"] == "MISSING"
    with pytest.raises(ClientError) as e:
        ecs.run_task(cluster="c1", taskDefinition="web",
                     overrides={"containerOverrides": [{"name": "ghost", "command": ["x"]}]})
    assert code_of(e)[0] == "InvalidParameterException" and "ghost" in code_of(e)[1]
    t = ecs.run_task(cluster="c1", taskDefinition="web", overrides={
        "containerOverrides": [{"name": "web", "command": ["echo", "hi"], "memory": 300}]})["tasks"][0]
    assert t["overrides"]["containerOverrides"][0]["command"] == ["echo", "hi"]
    assert resource(describe_instance(ecs, a), "MEMORY") == 4096 - 300


def test_container_instance_lifecycle_and_filters(wharf, cluster):
    ecs = cluster
    small = register_instance(ecs)
    large = register_instance(ecs, identity=dict(IDENTITY, instanceId="i-0large", instanceType="m5.large"))
    listed = wharf.aws("ecs", "list-container-instances", "--cluster", "c1",
                       "--filter", "attribute:ecs.instance-type == t2.small")
    assert listed["containerInstanceArns"] == [small["containerInstanceArn"]]
    both = ecs.list_container_instances(cluster="c1", filter="attribute:ecs.instance-type in [t2.small, m5.large]")
    assert sorted(both["containerInstanceArns"]) == sorted([small["containerInstanceArn"],
                                                            large["containerInstanceArn"]])
    with pytest.raises(ClientError) as e:
        ecs.list_container_instances(cluster="c1", filter="instance-type = t2.small")
    assert code_of(e)[0] == "InvalidParameterException" and "filter" in code_of(e)[1]
    attrs = {a["name"]: a.get("value") for a in small["attributes"]}
    assert attrs["ecs.instance-type"] == "t2.small" and attrs["ecs.availability-zone"] == "us-east-1b"

    drained = ecs.update_container_instances_state(cluster="c1", containerInstances=[small["containerInstanceArn"]],
                                                   status="DRAINING")
    assert drained["containerInstances"][0]["status"] == "DRAINING" and drained["failures"] == []
    assert ecs.list_container_instances(cluster="c1", status="DRAINING")["containerInstanceArns"] == [
        small["containerInstanceArn"]]
    # Only ACTIVE instances take new tasks.
    t = ecs.run_task(cluster="c1", taskDefinition="web")["tasks"][0]
    assert t["containerInstanceArn"] == large["containerInstanceArn"]
    with pytest.raises(ClientError) as e:
        ecs.update_container_instances_state(cluster="c1", containerInstances=[small["containerInstanceArn"]],
                                             status="INACTIVE")
    assert code_of(e)[0] == "InvalidParameterException"

    # An instance with tasks is only deregistered with force.
    with pytest.raises(ClientError) as e:
        ecs.deregister_container_instance(cluster="c1", containerInstance=large["containerInstanceArn"])
    assert code_of(e)[0] == "InvalidParameterException"
    gone = ecs.deregister_container_instance(cluster="c1", containerInstance=small["containerInstanceArn"])
    assert gone["containerInstance"]["status"] == "INACTIVE"
    forced = ecs.deregister_container_instance(cluster="c1", containerInstance=large["containerInstanceArn"],
                                               force=True)
    assert forced["containerInstance"]["status"] == "INACTIVE"
    assert ecs.list_container_instances(cluster="c1")["containerInstanceArns"] == []
    assert ecs.list_container_instances(cluster="c1", status="DRAINING")["containerInstanceArns"] == []
    with pytest.raises(ClientError) as e:
        ecs.deregister_container_instance(cluster="c1", containerInstance=small["containerInstanceArn"])
    assert code_of(e)[0] == "InvalidParameterException"
    out = ecs.describe_container_instances(cluster="c1", containerInstances=[small["containerInstanceArn"], "nope"])
    assert out["containerInstances"][0]["status"] == "INACTIVE"
    assert [f["reason"] for f in out["failures"]] == ["MISSING"]


def test_container_instance_with_the_cli(wharf, tmp_path):
    wharf.aws("ecs", "create-cluster", "--cluster-name", "c1")
    resources = write_json(tmp_path / "res.json", container_instance_resources())
    inst = wharf.aws("ecs", "register-container-instance", "--cluster", "c1",
                     "--instance-identity-document", json.dumps(IDENTITY),
                     "--total-resources", resources,
                     "--attributes", "name=stack,value=prod")["containerInstance"]
    attrs = {a["name"]: a.get("value") for a in inst["attributes"]}
    assert attrs["stack"] == "prod"
    listed = wharf.aws("ecs", "list-container-instances", "--cluster", "c1", "--filter", "attribute:stack == prod")
    assert listed["containerInstanceArns"] == [inst["containerInstanceArn"]]
    # Re-registering with the ARN updates the same instance.
    again = wharf.client("ecs").register_container_instance(
        cluster="c1", containerInstanceArn=inst["containerInstanceArn"],
        totalResources=container_instance_resources())["containerInstance"]
    assert again["containerInstanceArn"] == inst["containerInstanceArn"] and again["version"] == inst["version"] + 1


def test_attributes(cluster):
    ecs = cluster
    inst = register_instance(ecs)
    arn = inst["containerInstanceArn"]
    out = ecs.put_attributes(cluster="c1", attributes=[
        {"name": "stack", "value": "prod", "targetType": "container-instance", "targetId": arn},
        {"name": "gpu", "targetId": arn}])
    assert len(out["attributes"]) == 2
    listed = ecs.list_attributes(cluster="c1", targetType="container-instance", attributeName="stack")["attributes"]
    assert listed == [{"name": "stack", "value": "prod", "targetType": "container-instance", "targetId": arn}]
    assert ecs.list_attributes(cluster="c1", targetType="container-instance", attributeName="stack",
                               attributeValue="dev")["attributes"] == []
    assert len(ecs.list_container_instances(cluster="c1", filter="attribute:gpu exists")["containerInstanceArns"]) == 1

    ecs.delete_attributes(cluster="c1", attributes=[{"name": "stack", "targetId": arn}])
    assert ecs.list_attributes(cluster="c1", targetType="container-instance",
                               attributeName="stack")["attributes"] == []
    names = {a["name"] for a in describe_instance(ecs, arn)["attributes"]}
    assert "gpu" in names and "stack" not in names

    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster="c1", attributes=[{"name": "x", "value": "1", "targetId": "0" * 32}])
    assert code_of(e)[0] == "TargetNotFoundException"
    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster="c1", attributes=[{"name": "x", "value": "1"}])
    assert code_of(e)[0] == "InvalidParameterException" and "targetId" in code_of(e)[1]
    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster="c1", attributes=[{"name": "bad name!", "targetId": arn}])
    assert code_of(e)[0] == "InvalidParameterException"
    # Ten custom attributes at most ("gpu" is one already).
    ecs.put_attributes(cluster="c1", attributes=[{"name": f"a{i}", "value": "v", "targetId": arn} for i in range(9)])
    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster="c1", attributes=[{"name": "one-too-many", "value": "v", "targetId": arn}])
    assert code_of(e)[0] == "AttributeLimitExceededException"
    names = {a["name"] for a in describe_instance(ecs, arn)["attributes"]}
    assert "one-too-many" not in names and "a8" in names


def test_memberof_placement_constraint(cluster):
    ecs = cluster
    small = register_instance(ecs)["containerInstanceArn"]
    large = register_instance(ecs, identity=dict(IDENTITY, instanceId="i-0l", instanceType="m5.large"))[
        "containerInstanceArn"]
    for _ in range(3):
        t = ecs.run_task(cluster="c1", taskDefinition="web", placementConstraints=[
            {"type": "memberOf", "expression": "attribute:ecs.instance-type == m5.large"}])["tasks"][0]
        assert t["containerInstanceArn"] == large
    out = ecs.run_task(cluster="c1", taskDefinition="web", placementConstraints=[
        {"type": "memberOf", "expression": "attribute:ecs.instance-type == c5.xlarge"}])
    assert out["tasks"] == [] and out["failures"]
    two = ecs.run_task(cluster="c1", taskDefinition="web", count=2,
                       placementConstraints=[{"type": "distinctInstance"}])["tasks"]
    assert {t["containerInstanceArn"] for t in two} == {small, large}


def test_cluster_with_instances_or_tasks_cannot_be_deleted(cluster):
    ecs = cluster
    inst = register_instance(ecs)["containerInstanceArn"]
    task = ecs.run_task(cluster="c1", taskDefinition="web")["tasks"][0]["taskArn"]
    with pytest.raises(ClientError) as e:
        ecs.delete_cluster(cluster="c1")
    assert code_of(e)[0] == "ClusterContainsContainerInstancesException"
    with pytest.raises(ClientError) as e:
        ecs.deregister_container_instance(cluster="c1", containerInstance=inst)
    assert code_of(e)[0] == "InvalidParameterException"
    ecs.deregister_container_instance(cluster="c1", containerInstance=inst, force=True)
    # Tasks on a deregistered instance are stopped (its agent removes their containers), and
    # then the cluster can go.
    deadline = time.time() + 10
    while time.time() < deadline:
        described = ecs.describe_tasks(cluster="c1", tasks=[task])["tasks"][0]
        if described["lastStatus"] == "STOPPED":
            break
        time.sleep(0.1)
    assert described["lastStatus"] == "STOPPED" and "deregistered" in described["stoppedReason"]
    assert ecs.delete_cluster(cluster="c1")["cluster"]["status"] == "INACTIVE"
    assert ecs.list_clusters()["clusterArns"] == []


def test_list_container_instances_pages(cluster):
    ecs = cluster
    arns = {register_instance(ecs, identity=dict(IDENTITY, instanceId=f"i-{n}"))["containerInstanceArn"]
            for n in range(5)}
    pages = list(ecs.get_paginator("list_container_instances").paginate(cluster="c1",
                                                                         PaginationConfig={"PageSize": 2}))
    assert [len(p["containerInstanceArns"]) for p in pages] == [2, 2, 1]
    assert {a for p in pages for a in p["containerInstanceArns"]} == arns
    assert len(ecs.describe_container_instances(cluster="c1", containerInstances=list(arns))[
        "containerInstances"]) == 5
