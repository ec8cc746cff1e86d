"""Bad input for every operation, sent as raw signed JSON (botocore would refuse most of it
client-side): always a 4xx with an AWS error type and a message naming the field, never a
500, and nothing half-written."""

import json
import os

import botocore.session
import time

import pytest
from botocore.exceptions import ClientError

from util import ECS_TARGET, assert_aws_error, container_instance_resources, raw, simple_taskdef, ecs_operations

OPERATIONS = ecs_operations()
MODEL = botocore.session.get_session().get_service_model("ecs")


def dummy(shape):
    """A minimal value of the right type for `shape` (required members only)."""
    t = shape.type_name
    if t == "structure":
        return {n: dummy(shape.members[n]) for n in shape.required_members}
    return {"list": [], "map": {}, "integer": 1, "long": 1, "boolean": True, "double": 1.0, "float": 1.0,
            "timestamp": 0}.get(t, (shape.enum[0] if getattr(shape, "enum", None) else "x"))


def wrong_type(shape):
    return {"string": 5, "integer": "five", "long": "five", "boolean": "yes", "list": "x", "structure": "x",
            "map": [1], "double": "x", "float": "x", "timestamp": [1], "blob": 5}[shape.type_name]


def test_operation_list_matches_the_model():
    assert set(OPERATIONS) <= set(MODEL.operation_names)
    for must in ("CreateCluster", "RegisterTaskDefinition", "CreateService", "RunTask", "TagResource"):
        assert must in OPERATIONS


@pytest.mark.parametrize("op", OPERATIONS)
def test_empty_and_mistyped_bodies_never_fail_the_server(wharf, op):
    shape = MODEL.operation_model(op).input_shape
    status, body = raw(wharf, op, {})
    assert status < 500, body
    if shape.required_members:
        msg = assert_aws_error(status, body, "InvalidParameterException")
        assert any(m in msg for m in shape.required_members), msg
    else:
        assert status == 200 or body.get("__type") == "ClusterNotFoundException", body

    status, body = raw(wharf, op, {"cluster": 5})
    assert status < 500, body
    if "cluster" in shape.members:
        # The wrong type is reported unless a missing required member is reported first.
        if body.get("__type") == "InvalidParameterException":
            assert any(m in body["message"] for m in shape.required_members), body
        else:
            assert_aws_error(status, body, "SerializationException", fields=["cluster"])
    elif status >= 400:
        assert body.get("__type"), body


@pytest.mark.parametrize("op", OPERATIONS)
def test_every_member_with_a_wrong_type_or_enum_is_refused(wharf, op):
    raw(wharf, "CreateCluster", {})  # a default cluster so cluster-scoped calls get past lookup
    shape = MODEL.operation_model(op).input_shape
    base = dummy(shape)
    checked = 0
    for name, member in shape.members.items():
        status, body = raw(wharf, op, dict(base, **{name: wrong_type(member)}))
        assert_aws_error(status, body, "SerializationException", fields=[name])
        checked += 1
        if member.type_name == "string" and member.enum:
            status, body = raw(wharf, op, dict(base, **{name: "NOT_A_VALUE"}))
            assert_aws_error(status, body, "InvalidParameterException", fields=[name, "NOT_A_VALUE"])
    assert checked == len(shape.members)


def test_nested_members_are_checked_too(wharf):
    td = simple_taskdef("nested")
    cases = [
        (["containerDefinitions", 0, "portMappings", 0, "containerPort"], "80",
         "SerializationException", "containerDefinitions.1.portMappings.1.containerPort"),
        (["containerDefinitions", 0, "portMappings", 0, "protocol"], "sctp",
         "InvalidParameterException", "containerDefinitions.1.portMappings.1.protocol"),
        (["containerDefinitions", 0, "essential"], "true", "SerializationException", "essential"),
        (["containerDefinitions", 0, "dockerLabels"], {"k": 1}, "SerializationException", "dockerLabels"),
        (["containerDefinitions", 0, "ulimits"], [{"name": "nofile", "softLimit": 1}], "InvalidParameterException",
         "hardLimit"),
    ]
    for path, value, code, field in cases:
        body = json.loads(json.dumps(td))
        target = body
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
        status, out = raw(wharf, "RegisterTaskDefinition", body)
        assert_aws_error(status, out, code, fields=[field])
    assert raw(wharf, "ListTaskDefinitionFamilies", {"status": "ALL"})[1]["families"] == []


def test_invalid_json_and_non_object_bodies(wharf):
    for body in (b"{", b'{"clusterName": }', b"\xff\xfe", b"[1, 2]", b'"cluster"', b"12"):
        status, out = raw(wharf, "CreateCluster", body)
        assert_aws_error(status, out, "SerializationException")
    assert raw(wharf, "ListClusters", {})[1]["clusterArns"] == []


def test_unknown_operations(wharf):
    status, out = raw(wharf, "Bogus", {}, target=f"{ECS_TARGET}.DoesNotExist")
    assert_aws_error(status, out, "UnknownOperationException")
    status, out = raw(wharf, "Bogus", {}, target="NotAService_20990101.ListClusters")
    assert_aws_error(status, out, "UnknownOperationException")
    status, out = raw(wharf, "Bogus", {}, target="nodot")
    assert_aws_error(status, out, "UnknownOperationException")
    # A real ECS operation Wharf does not implement says so.
    missing = sorted(set(MODEL.operation_names) - set(OPERATIONS))
    assert missing, "every ECS operation is implemented: pick another"
    status, out = raw(wharf, missing[0], {})
    assert_aws_error(status, out, "UnknownOperationException", contains=missing[0])


def test_bodies_over_the_operations_limit_are_413(wharf):
    # Settings-only operations take 256 KiB (a task definition is at most 64 KiB).
    big = json.dumps({"clusterName": "x", "pad": "y" * (300 << 10)}).encode()
    # Every time: the client, still sending, must get to read the 413 (not a reset).
    for _ in range(10):
        status, out = raw(wharf, "CreateCluster", big)
        assert_aws_error(status, out, "RequestEntityTooLargeException", http=413)
    with pytest.raises(ClientError) as e:
        wharf.client("ecs").register_task_definition(family="big", containerDefinitions=[
            {"name": "c", "image": "busybox", "memory": 32, "environment": [{"name": "A", "value": "x" * (2 << 20)}]}])
    assert e.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    # A Query service's limit holds before its body (which names the operation) is read.
    with pytest.raises(ClientError) as e:
        wharf.client("elbv2").describe_load_balancers(Names=["n" * 32] * 10_000)
    assert e.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    # Operations that carry data take more: a 3 MiB layer part is uploaded through the API.
    ecr = wharf.client("ecr")
    ecr.create_repository(repositoryName="parts")
    uid = ecr.initiate_layer_upload(repositoryName="parts")["uploadId"]
    part = os.urandom(3 << 20)
    out = ecr.upload_layer_part(repositoryName="parts", uploadId=uid, partFirstByte=0,
                                partLastByte=len(part) - 1, layerPartBlob=part)
    assert out["lastByteReceived"] == len(part) - 1
    # Nothing was created and the server stays healthy.
    assert raw(wharf, "ListClusters", {}) == (200, {"clusterArns": []})
    assert raw(wharf, "ListTaskDefinitions", {}) == (200, {"taskDefinitionArns": []})


def test_task_definition_over_64_kib_is_a_client_exception(wharf):
    td = simple_taskdef("big")
    td["containerDefinitions"][0]["environment"] = [{"name": f"V{i}", "value": "z" * 200} for i in range(400)]
    status, out = raw(wharf, "RegisterTaskDefinition", td)
    assert_aws_error(status, out, "ClientException", contains="65536")
    assert raw(wharf, "ListTaskDefinitions", {})[1]["taskDefinitionArns"] == []


def setup_world(wharf):
    raw(wharf, "CreateCluster", {"clusterName": "c1"})
    raw(wharf, "RegisterTaskDefinition", simple_taskdef("web"))
    raw(wharf, "CreateService", {"cluster": "c1", "serviceName": "s1", "taskDefinition": "web", "desiredCount": 1})
    status, out = raw(wharf, "RegisterContainerInstance",
                      {"cluster": "c1", "totalResources": container_instance_resources()})
    assert status == 200, out
    # The service scheduler places s1's task on the new instance; let it settle so the
    # snapshots below see only what the request under test did.
    deadline = time.time() + 15
    while time.time() < deadline:
        svc = raw(wharf, "DescribeServices", {"cluster": "c1", "services": ["s1"]})[1]["services"][0]
        if svc["runningCount"] + svc["pendingCount"] == 1 and raw(wharf, "ListTasks", {"cluster": "c1"})[1]["taskArns"]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the scheduler did not place s1's task: {svc}")
    return out["containerInstance"]["containerInstanceArn"]


OTHER_REGION_CLUSTER = "arn:aws:ecs:eu-west-1:123456789012:cluster/c1"
OTHER_ACCOUNT_CLUSTER = "arn:aws:ecs:us-east-1:999999999999:cluster/c1"

TARGETED = [
    # (operation, body, AWS error, text the message must contain)
    ("CreateCluster", {"clusterName": "has space"}, "InvalidParameterException", "has space"),
    ("CreateCluster", {"clusterName": "x" * 256}, "InvalidParameterException", "up to 255 letters"),
    ("CreateCluster", {"clusterName": "c2", "settings": [{"name": "containerInsights", "value": "maybe"}]},
     "InvalidParameterException", "maybe"),
    ("CreateCluster", {"clusterName": "c2", "capacityProviders": ["NOPE"]}, "InvalidParameterException", "NOPE"),
    ("CreateCluster", {"clusterName": "c2", "tags": [{"key": "k" * 129, "value": "v"}]},
     "InvalidParameterException", "tags.1.key"),
    ("DescribeClusters", {"clusters": [OTHER_REGION_CLUSTER]}, "InvalidParameterException", "cluster"),
    ("DescribeClusters", {"clusters": [f"c{i}" for i in range(101)]}, "InvalidParameterException", "clusters"),
    ("DeleteCluster", {"cluster": "ghost"}, "ClusterNotFoundException", "Cluster not found"),
    ("DeleteCluster", {"cluster": "c1"}, "ClusterContainsServicesException", "Services"),
    ("DeleteCluster", {"cluster": OTHER_ACCOUNT_CLUSTER}, "InvalidParameterException", "cluster"),
    ("UpdateCluster", {"cluster": "ghost", "settings": []}, "ClusterNotFoundException", "Cluster not found"),
    ("UpdateClusterSettings", {"cluster": "c1", "settings": [{"name": "containerInsights", "value": "x"}]},
     "InvalidParameterException", "containerInsights"),
    ("PutClusterCapacityProviders", {"cluster": "c1", "capacityProviders": ["FARGATE"],
                                     "defaultCapacityProviderStrategy": [{"capacityProvider": "OTHER"}]},
     "InvalidParameterException", "OTHER"),
    ("RegisterTaskDefinition", {"family": "bad/family", "containerDefinitions": []}, "InvalidParameterException",
     "bad/family"),
    ("RegisterTaskDefinition", dict(simple_taskdef("web"), networkMode="overlay"), "InvalidParameterException",
     "networkMode"),
    ("RegisterTaskDefinition", dict(simple_taskdef("web"), cpu="lots"), "InvalidParameterException", "cpu"),
    ("RegisterTaskDefinition", dict(simple_taskdef("web"), requiresCompatibilities=["FARGATE"]), "ClientException",
     "Fargate"),
    ("DescribeTaskDefinition", {"taskDefinition": "ghost"}, "ClientException", "Unable to describe task definition."),
    ("DescribeTaskDefinition", {"taskDefinition": "web:0"}, "ClientException", "Unable to describe task definition."),
    ("DescribeTaskDefinition", {"taskDefinition": "web:one"}, "InvalidParameterException", "taskDefinition"),
    ("ListTaskDefinitions", {"maxResults": 0}, "InvalidParameterException", "maxResults"),
    ("ListTaskDefinitions", {"nextToken": "zz"}, "InvalidParameterException", "nextToken"),
    ("ListTaskDefinitionFamilies", {"status": "GONE"}, "InvalidParameterException", "status"),
    ("DeregisterTaskDefinition", {"taskDefinition": "web"}, "InvalidParameterException", "revision"),
    ("DeregisterTaskDefinition", {"taskDefinition": "ghost:1"}, "ClientException", "Unable to describe"),
    ("DeleteTaskDefinitions", {"taskDefinitions": [f"web:{i}" for i in range(1, 12)]},
     "InvalidParameterException", "task definitions"),
    ("CreateService", {"cluster": "ghost", "serviceName": "s", "taskDefinition": "web"},
     "ClusterNotFoundException", "Cluster not found"),
    ("CreateService", {"cluster": "c1", "serviceName": "s2", "taskDefinition": "ghost:3"}, "ClientException",
     "Unable to describe task definition."),
    ("CreateService", {"cluster": "c1", "serviceName": "s2", "taskDefinition": "web", "launchType": "MOON"},
     "InvalidParameterException", "launchType"),
    ("CreateService", {"cluster": "c1", "serviceName": "s2", "taskDefinition": "web",
                       "loadBalancers": [{"containerName": "web", "containerPort": 80}]},
     "InvalidParameterException", "targetGroupArn"),
    ("CreateService", {"cluster": "c1", "serviceName": "s2", "taskDefinition": "web",
                       "deploymentConfiguration": {"maximumPercent": "lots"}},
     "SerializationException", "deploymentConfiguration.maximumPercent"),
    ("DescribeServices", {"cluster": "c1", "services": []}, "InvalidParameterException", "services"),
    ("DescribeServices", {"cluster": "c1", "services": [f"s{i}" for i in range(11)]}, "InvalidParameterException",
     "services"),
    ("ListServices", {"cluster": "ghost"}, "ClusterNotFoundException", "Cluster not found"),
    ("UpdateService", {"cluster": "c1", "service": "ghost"}, "ServiceNotFoundException", "Service not found"),
    ("UpdateService", {"cluster": "c1", "service": "s1", "desiredCount": -2}, "InvalidParameterException",
     "desiredCount"),
    ("UpdateService", {"cluster": "c1", "service": "s1", "healthCheckGracePeriodSeconds": 10},
     "InvalidParameterException", "Health check grace period"),
    ("DeleteService", {"cluster": "c1", "service": "s1"}, "InvalidParameterException", "scaled"),
    ("DeleteService", {"cluster": "c1", "service": "ghost"}, "ServiceNotFoundException", "Service not found"),
    ("RunTask", {"cluster": "c1", "taskDefinition": "web", "count": 0}, "InvalidParameterException", "count"),
    ("RunTask", {"cluster": "c1", "taskDefinition": "web", "startedBy": "x" * 129}, "InvalidParameterException",
     "startedBy"),
    ("RunTask", {"cluster": "c1", "taskDefinition": "ghost"}, "ClientException", "Unable to describe"),
    ("RunTask", {"cluster": "c1", "taskDefinition": "web", "launchType": "EXTERNAL"},
     "UnsupportedFeatureException", "EXTERNAL"),
    # CodeDeploy moves a CODE_DEPLOY service's listeners, so it needs a load balancer; an
    # EXTERNAL service's task sets carry its task definition.
    ("CreateService", {"cluster": "c1", "serviceName": "cd", "taskDefinition": "web",
                       "deploymentController": {"type": "CODE_DEPLOY"}}, "InvalidParameterException", "load balancer"),
    ("CreateService", {"cluster": "c1", "serviceName": "ext", "taskDefinition": "web",
                       "deploymentController": {"type": "EXTERNAL"}}, "InvalidParameterException", "EXTERNAL"),
    ("UpdateService", {"cluster": "c1", "service": "s1", "deploymentController": {"type": "CODE_DEPLOY"}},
     "InvalidParameterException", "load balancer"),
    ("DescribeTaskSets", {"cluster": "c1", "service": "s1"}, "InvalidParameterException", "external deployment"),
    ("CreateTaskSet", {"cluster": "c1", "service": "s1", "taskDefinition": "web"}, "InvalidParameterException",
     "external deployment"),
    ("DeleteTaskSet", {"cluster": "c1", "service": "ghost", "taskSet": "ts"}, "ServiceNotFoundException",
     "not found"),
    ("UpdateTaskSet", {"cluster": "c1", "service": "s1", "taskSet": "ts", "scale": {"value": 50, "unit": "PERCENT"}},
     "InvalidParameterException", "external deployment"),
    ("UpdateServicePrimaryTaskSet", {"cluster": "c1", "service": "s1", "primaryTaskSet": "ts"},
     "InvalidParameterException", "external deployment"),
    # Blue/green settings belong to their strategies (test_blue_green.py has the rest);
    # enabled deployment alarms need alarms to watch (test_autoscaling.py runs one).
    ("UpdateService", {"cluster": "c1", "service": "s1", "deploymentConfiguration": {"bakeTimeInMinutes": 5}},
     "InvalidParameterException", "bakeTimeInMinutes"),
    ("UpdateService", {"cluster": "c1", "service": "s1", "deploymentConfiguration": {
        "strategy": "BLUE_GREEN", "deploymentCircuitBreaker": {"enable": True, "rollback": True}}},
     "InvalidParameterException", "deploymentCircuitBreaker"),
    ("UpdateService", {"cluster": "c1", "service": "s1", "deploymentConfiguration": {
        "alarms": {"alarmNames": [], "enable": True, "rollback": True}}}, "InvalidParameterException", "alarm name"),
    # Task protection (test_task_protection.py has the rest).
    ("UpdateTaskProtection", {"cluster": "c1", "tasks": ["t1"], "protectionEnabled": True, "expiresInMinutes": 0},
     "InvalidParameterException", "expiresInMinutes"),
    ("UpdateTaskProtection", {"cluster": "c1", "tasks": [f"t{i}" for i in range(11)], "protectionEnabled": True},
     "InvalidParameterException", "tasks"),
    ("GetTaskProtection", {"cluster": "nope", "tasks": ["t1"]}, "ClusterNotFoundException", "not found"),
    ("StartTask", {"cluster": "c1", "taskDefinition": "web", "containerInstances": []},
     "InvalidParameterException", "container instances"),
    ("StopTask", {"cluster": "c1", "task": "0" * 32}, "InvalidParameterException", "task"),
    ("ListServiceDeployments", {"cluster": "c1", "service": "nope"}, "ServiceNotFoundException", "not found"),
    ("ListServiceDeployments", {"cluster": "c1", "service": "s1", "maxResults": 500}, "InvalidParameterException",
     "maxResults"),
    ("DescribeServiceDeployments", {"serviceDeploymentArns": ["arn:aws:ecs:us-east-1:123456789012:cluster/c1"]},
     "InvalidParameterException", "service-deployment"),
    ("DescribeServiceRevisions", {"serviceRevisionArns": []}, "InvalidParameterException", "serviceRevisionArns"),
    ("StopServiceDeployment",
     {"serviceDeploymentArn": "arn:aws:ecs:us-east-1:123456789012:service-deployment/c1/s1/123"},
     "ServiceDeploymentNotFoundException", "not found"),
    ("ContinueServiceDeployment",
     {"serviceDeploymentArn": "arn:aws:ecs:us-east-1:123456789012:service-deployment/c1/s1/123", "hookId": "h"},
     "ServiceDeploymentNotFoundException", "not found"),
    ("StopTask", {"cluster": "c1", "task": "arn:aws:ecs:us-east-1:123456789012:service/c1/s1"},
     "InvalidParameterException", "task"),
    ("DescribeTasks", {"cluster": "c1", "tasks": []}, "InvalidParameterException", "tasks"),
    ("ListTasks", {"cluster": "c1", "desiredStatus": "DEAD"}, "InvalidParameterException", "desiredStatus"),
    ("RegisterContainerInstance", {"cluster": "c1", "instanceIdentityDocument": "not json"},
     "InvalidParameterException", "instanceIdentityDocument"),
    ("RegisterContainerInstance", {"cluster": "c1", "totalResources": [{"name": "CPU", "type": "INTEGER",
                                                                        "integerValue": -1}]},
     "InvalidParameterException", "CPU cannot be negative"),
    ("RegisterContainerInstance", {"cluster": "c1", "containerInstanceArn": "0" * 32},
     "InvalidParameterException", "container instance was not found"),
    ("DeregisterContainerInstance", {"cluster": "c1", "containerInstance": "0" * 32},
     "InvalidParameterException", "container instance"),
    ("DescribeContainerInstances", {"cluster": "c1", "containerInstances": []}, "InvalidParameterException",
     "container instances"),
    ("ListContainerInstances", {"cluster": "c1", "filter": "attribute:x =="}, "InvalidParameterException",
     "filter"),
    ("UpdateContainerInstancesState", {"cluster": "c1", "containerInstances": ["x"], "status": "REGISTERING"},
     "InvalidParameterException", "status"),
    ("PutAttributes", {"cluster": "c1", "attributes": [{"name": "a", "targetId": "0" * 32}]},
     "TargetNotFoundException", "0" * 32),
    ("PutAttributes", {"cluster": "c1", "attributes": [{"name": "a", "targetType": "task", "targetId": "x"}]},
     "InvalidParameterException", "targetType"),
    ("DeleteAttributes", {"cluster": "c1", "attributes": [{"name": "a"}]}, "InvalidParameterException", "targetId"),
    ("ListAttributes", {"cluster": "c1", "targetType": "container-instance", "attributeValue": "x"},
     "InvalidParameterException", "attributeName"),
    ("TagResource", {"resourceArn": "arn:aws:ecs:us-east-1:123456789012:cluster/ghost",
                     "tags": [{"key": "a", "value": "b"}]}, "ResourceNotFoundException", "resource"),
    ("TagResource", {"resourceArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c1",
                     "tags": [{"key": "aws:x", "value": "b"}]}, "InvalidParameterException", "aws:"),
    ("TagResource", {"resourceArn": "not-an-arn", "tags": []}, "InvalidParameterException", "resourceArn"),
    ("UntagResource", {"resourceArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:9", "tagKeys": ["a"]},
     "ResourceNotFoundException", "resource"),
    ("ListTagsForResource", {"resourceArn": "arn:aws:ecs:us-east-1:123456789012:service/c1/ghost"},
     "ResourceNotFoundException", "resource"),
    ("PutAccountSetting", {"name": "serviceLongArnFormat", "value": "sometimes"}, "InvalidParameterException",
     "sometimes"),
    ("PutAccountSetting", {"name": "noSuchSetting", "value": "enabled"}, "InvalidParameterException", "name"),
    ("PutAccountSetting", {"name": "serviceLongArnFormat", "value": "enabled",
                           "principalArn": "arn:aws:iam::999999999999:root"}, "InvalidParameterException",
     "principalArn"),
    ("PutAccountSettingDefault", {"name": "containerInsights", "value": "on"}, "InvalidParameterException", "on"),
    ("ListAccountSettings", {"value": "enabled"}, "InvalidParameterException", "name"),
    ("ListAccountSettings", {"maxResults": 11}, "InvalidParameterException", "maxResults"),
    ("DeleteAccountSetting", {"name": "nope"}, "InvalidParameterException", "nope"),
    ("DescribeCapacityProviders", {"maxResults": 11}, "InvalidParameterException", "maxResults"),
    ("CreateCapacityProvider", {"name": "asg", "autoScalingGroupProvider": {
        "autoScalingGroupArn": "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/a"}},
     "UnsupportedFeatureException", "Auto Scaling"),
]


def test_targeted_cases_cover_the_control_plane():
    covered = {op for op, *_ in TARGETED} | {"ListClusters"}  # ListClusters takes nothing to get wrong
    assert covered <= set(OPERATIONS)
    # Every control-plane operation has a targeted case (agent-facing ones get the generic tests).
    control_plane = {op for op in OPERATIONS if not op.startswith(("Submit", "DiscoverPoll"))}
    assert control_plane <= covered, sorted(control_plane - covered)


@pytest.mark.parametrize("op, body, code, text", TARGETED, ids=[f"{c[0]}-{i}" for i, c in enumerate(TARGETED)])
def test_targeted_errors(wharf, op, body, code, text):
    setup_world(wharf)
    before = snapshot(wharf)
    status, out = raw(wharf, op, body)
    assert_aws_error(status, out, code, contains=text)
    assert snapshot(wharf) == before, "a refused request changed state"


def snapshot(wharf):
    """Everything the List operations show, to prove a refused request wrote nothing."""
    def call(op, body):
        status, out = raw(wharf, op, body)
        assert status == 200, out
        return out

    state = {
        "clusters": call("DescribeClusters", {"clusters": call("ListClusters", {})["clusterArns"],
                                              "include": ["SETTINGS", "TAGS"]})["clusters"],
        "taskdefs": call("ListTaskDefinitions", {})["taskDefinitionArns"],
        "inactive": call("ListTaskDefinitions", {"status": "INACTIVE"})["taskDefinitionArns"],
        "services": call("ListServices", {"cluster": "c1"})["serviceArns"],
        "tasks": call("ListTasks", {"cluster": "c1"})["taskArns"],
        "instances": call("ListContainerInstances", {"cluster": "c1"})["containerInstanceArns"],
        "attributes": call("ListAttributes", {"cluster": "c1", "targetType": "container-instance"})["attributes"],
        "settings": call("ListAccountSettings", {})["settings"],
    }
    state["service_docs"] = call("DescribeServices", {"cluster": "c1", "services": ["s1"]})["services"]
    for s in state["service_docs"]:
        s.pop("events", None)
    return state


def test_failed_register_and_create_leave_nothing_behind(wharf):
    raw(wharf, "CreateCluster", {"clusterName": "c1"})
    status, out = raw(wharf, "RegisterTaskDefinition", dict(simple_taskdef("web"), cpu="256", memory="4096",
                                                            requiresCompatibilities=["FARGATE"]))
    assert_aws_error(status, out, "ClientException", contains="Fargate")
    assert raw(wharf, "ListTaskDefinitions", {})[1]["taskDefinitionArns"] == []
    assert raw(wharf, "ListTaskDefinitionFamilies", {"status": "ALL"})[1]["families"] == []
    ok = raw(wharf, "RegisterTaskDefinition", simple_taskdef("web"))[1]["taskDefinition"]
    assert ok["revision"] == 1

    status, out = raw(wharf, "CreateService", {"cluster": "c1", "serviceName": "s1", "taskDefinition": "web",
                                               "tags": [{"key": "aws:no", "value": "x"}]})
    assert_aws_error(status, out, "InvalidParameterException")
    status, out = raw(wharf, "DescribeServices", {"cluster": "c1", "services": ["s1"]})
    assert out["services"] == [] and out["failures"][0]["reason"] == "MISSING"
    assert raw(wharf, "ListServices", {"cluster": "c1"})[1]["serviceArns"] == []
    status, out = raw(wharf, "DescribeClusters", {"clusters": ["c1"]})
    assert out["clusters"][0]["activeServicesCount"] == 0
