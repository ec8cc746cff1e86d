"""Services: create/describe/list/update/delete with the defaults and deployments ECS
reports, the rules it enforces, and DRAINING → INACTIVE through the service reaper."""

import re

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION
from util import simple_taskdef

DEPLOYMENT_ID = re.compile(r"ecs-svc/\d{19}")
AWSVPC = {"awsvpcConfiguration": {"subnets": ["subnet-0123"], "securityGroups": ["sg-0123"],
                                  "assignPublicIp": "DISABLED"}}


@pytest.fixture
def setup(ecs):
    ecs.create_cluster(clusterName="c1")
    ecs.register_task_definition(**simple_taskdef("web"))
    ecs.register_task_definition(**simple_taskdef("web"))
    return ecs


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def test_create_service_reports_ecs_defaults(setup):
    ecs = setup
    svc = ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="web:1", desiredCount=3)["service"]
    assert svc["serviceArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/c1/s1"
    assert svc["clusterArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/c1"
    dc = svc["deploymentConfiguration"]
    assert dc["maximumPercent"] == 200 and dc["minimumHealthyPercent"] == 100
    assert dc["deploymentCircuitBreaker"] == {"enable": False, "rollback": False}
    assert svc["launchType"] == "EC2" and svc["schedulingStrategy"] == "REPLICA"
    assert svc["deploymentController"] == {"type": "ECS"}
    assert svc["runningCount"] == 0 and svc["pendingCount"] == 0
    (dep,) = svc["deployments"]
    assert DEPLOYMENT_ID.fullmatch(dep["id"])
    assert dep["status"] == "PRIMARY"
    assert dep["taskDefinition"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:1"
    assert dep["desiredCount"] == 3 and dep["rolloutState"] == "IN_PROGRESS"
    assert svc["createdBy"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert svc["enableECSManagedTags"] is False and svc["enableExecuteCommand"] is False
    assert svc["propagateTags"] == "NONE"

    described = ecs.describe_services(cluster="c1", services=["s1"])["services"][0]
    assert described["deployments"][0]["id"] == dep["id"]
    assert described["deploymentConfiguration"] == dc


def test_describe_services_reports_missing_ones(setup):
    ecs = setup
    s1 = ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="web")["service"]
    out = ecs.describe_services(cluster="c1", services=["s1", "ghost", s1["serviceArn"]])
    assert [s["serviceName"] for s in out["services"]] == ["s1", "s1"]
    assert out["failures"] == [{"arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/c1/ghost", "reason": "MISSING"}]
    with pytest.raises(ClientError) as e:
        ecs.describe_services(cluster="nope", services=["s1"])
    assert code_of(e)[0] == "ClusterNotFoundException"
    # The default cluster is used when none is named.
    with pytest.raises(ClientError) as e:
        ecs.describe_services(services=["s1"])
    assert code_of(e)[0] == "ClusterNotFoundException"


def test_custom_deployment_configuration_and_its_limits(setup):
    ecs = setup
    svc = ecs.create_service(
        cluster="c1", serviceName="s1", taskDefinition="web", desiredCount=1,
        deploymentConfiguration={"maximumPercent": 150, "minimumHealthyPercent": 50,
                                 "deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    )["service"]
    dc = svc["deploymentConfiguration"]
    assert (dc["maximumPercent"], dc["minimumHealthyPercent"]) == (150, 50)
    assert dc["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    for bad, field in [({"maximumPercent": 50}, "maximumPercent"), ({"minimumHealthyPercent": 101},
                                                                      "minimumHealthyPercent")]:
        with pytest.raises(ClientError) as e:
            ecs.create_service(cluster="c1", serviceName="s2", taskDefinition="web", deploymentConfiguration=bad)
        code, msg = code_of(e)
        assert code == "InvalidParameterException" and field in msg
        with pytest.raises(ClientError) as e:
            ecs.update_service(cluster="c1", service="s1", deploymentConfiguration=bad)
        assert code_of(e)[0] == "InvalidParameterException"
    assert ecs.list_services(cluster="c1")["serviceArns"] == [svc["serviceArn"]]
    # Updating one field keeps the others.
    dc2 = ecs.update_service(cluster="c1", service="s1",
                             deploymentConfiguration={"maximumPercent": 300})["service"]["deploymentConfiguration"]
    assert (dc2["maximumPercent"], dc2["minimumHealthyPercent"]) == (300, 50)


def test_service_options_round_trip_and_update(setup):
    ecs = setup
    registries = [{"registryArn": "arn:aws:servicediscovery:us-east-1:123456789012:service/srv-1",
                   "containerName": "web", "containerPort": 80}]
    svc = ecs.create_service(
        cluster="c1", serviceName="s1", taskDefinition="web", enableECSManagedTags=True, propagateTags="SERVICE",
        enableExecuteCommand=True, serviceRegistries=registries, platformVersion="1.4.0",
        placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"},
                           {"type": "binpack", "field": "memory"}],
        placementConstraints=[{"type": "distinctInstance"}],
        availabilityZoneRebalancing="DISABLED",
    )["service"]
    assert svc["enableECSManagedTags"] is True and svc["propagateTags"] == "SERVICE"
    assert svc["enableExecuteCommand"] is True and svc["serviceRegistries"] == registries
    assert svc["placementStrategy"][1] == {"type": "binpack", "field": "memory"}
    assert svc["availabilityZoneRebalancing"] == "DISABLED"
    upd = ecs.update_service(cluster="c1", service="s1", enableECSManagedTags=False, propagateTags="NONE",
                             enableExecuteCommand=False, placementStrategy=[])["service"]
    assert upd["enableECSManagedTags"] is False and upd["propagateTags"] == "NONE"
    assert upd["enableExecuteCommand"] is False and upd["placementStrategy"] == []
    described = ecs.describe_services(cluster="c1", services=["s1"])["services"][0]
    assert described["enableECSManagedTags"] is False
    assert described["serviceRegistries"] == registries and described["availabilityZoneRebalancing"] == "DISABLED"


def test_update_with_new_task_definition_starts_a_new_primary(setup):
    ecs = setup
    first = ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="web:1", desiredCount=2)["service"]
    old_id = first["deployments"][0]["id"]
    svc = ecs.update_service(cluster="c1", service="s1", taskDefinition="web:2")["service"]
    assert svc["taskDefinition"].endswith("task-definition/web:2")
    deps = svc["deployments"]
    assert [d["status"] for d in deps] == ["PRIMARY", "ACTIVE"]
    assert deps[0]["taskDefinition"].endswith("web:2") and deps[1]["taskDefinition"].endswith("web:1")
    assert deps[1]["id"] == old_id and deps[0]["id"] != old_id and DEPLOYMENT_ID.fullmatch(deps[0]["id"])
    # Scaling changes the PRIMARY's desired count, not the deployments. (The scheduler may
    # already have dropped the drained old deployment: it has no tasks.)
    svc = ecs.update_service(cluster="c1", service="s1", desiredCount=5)["service"]
    assert svc["deployments"][0]["id"] == deps[0]["id"] and svc["deployments"][0]["status"] == "PRIMARY"
    assert {d["id"] for d in svc["deployments"]} <= {d["id"] for d in deps}
    assert svc["deployments"][0]["desiredCount"] == 5 and svc["desiredCount"] == 5
    # forceNewDeployment makes another PRIMARY with the same task definition.
    svc = ecs.update_service(cluster="c1", service="s1", forceNewDeployment=True)["service"]
    forced = svc["deployments"][0]
    assert forced["id"] not in {d["id"] for d in deps} and forced["taskDefinition"].endswith("web:2")
    assert [d["status"] for d in svc["deployments"]].count("PRIMARY") == 1
    assert deps[0]["id"] in {d["id"] for d in svc["deployments"]}
    # Same revision again is not a new deployment.
    svc = ecs.update_service(cluster="c1", service="s1", taskDefinition="web:2")["service"]
    assert svc["deployments"][0]["id"] == forced["id"]

    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster="c1", service="s1", taskDefinition="web:9")
    assert code_of(e) == ("ClientException", "Unable to describe task definition.")
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster="c1", service="ghost", desiredCount=1)
    assert code_of(e)[0] == "ServiceNotFoundException"
    ecs.deregister_task_definition(taskDefinition="web:1")
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster="c1", service="s1", taskDefinition="web:1")
    assert code_of(e)[0] == "InvalidParameterException"
    assert ecs.describe_services(cluster="c1", services=["s1"])["services"][0]["taskDefinition"].endswith("web:2")


def test_awsvpc_services_need_a_network_configuration(ecs):
    ecs.create_cluster(clusterName="c1")
    vpc = simple_taskdef("vpc", networkMode="awsvpc")
    vpc["containerDefinitions"][0]["portMappings"] = [{"containerPort": 80}]
    ecs.register_task_definition(**vpc)
    ecs.register_task_definition(
        family="fg", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "c", "image": "busybox"}])
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="vpc", desiredCount=1)
    code, msg = code_of(e)
    assert code == "InvalidParameterException" and "Network Configuration" in msg
    assert ecs.list_services(cluster="c1")["serviceArns"] == []
    svc = ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="vpc", desiredCount=1,
                             networkConfiguration=AWSVPC)["service"]
    assert svc["networkConfiguration"] == AWSVPC
    assert svc["deployments"][0]["networkConfiguration"] == AWSVPC
    fg = ecs.create_service(cluster="c1", serviceName="s2", taskDefinition="fg", launchType="FARGATE",
                            networkConfiguration=AWSVPC)["service"]
    assert fg["launchType"] == "FARGATE" and fg["platformVersion"] == "LATEST"
    # A bridge task definition takes no network configuration, and cannot run on Fargate.
    ecs.register_task_definition(**simple_taskdef("bridge"))
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster="c1", serviceName="s3", taskDefinition="bridge", launchType="FARGATE")
    assert code_of(e) == ("InvalidParameterException", "Task definition does not support launch_type FARGATE.")
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster="c1", service="s2", taskDefinition="bridge")
    assert code_of(e) == ("InvalidParameterException", "Task definition does not support launch_type FARGATE.")
    assert ecs.describe_services(cluster="c1", services=["s2"])["services"][0]["taskDefinition"].endswith("fg:1")
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster="c1", serviceName="s3", taskDefinition="bridge", networkConfiguration=AWSVPC)
    assert code_of(e)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster="c1", serviceName="s3", taskDefinition="fg", launchType="FARGATE",
                           networkConfiguration=AWSVPC,
                           capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
    assert code_of(e)[0] == "InvalidParameterException"


def test_delete_service_needs_zero_or_force(setup):
    ecs = setup
    ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="web", desiredCount=2)
    with pytest.raises(ClientError) as e:
        ecs.delete_service(cluster="c1", service="s1")
    code, msg = code_of(e)
    assert code == "InvalidParameterException" and "scaled" in msg
    assert ecs.describe_services(cluster="c1", services=["s1"])["services"][0]["status"] == "ACTIVE"
    gone = ecs.delete_service(cluster="c1", service="s1", force=True)["service"]
    assert gone["status"] == "DRAINING" and gone["desiredCount"] == 0
    ecs.get_waiter("services_inactive").wait(cluster="c1", services=["s1"],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    inactive = ecs.describe_services(cluster="c1", services=["s1"])["services"][0]
    assert inactive["status"] == "INACTIVE"
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster="c1", service="s1", desiredCount=1)
    assert code_of(e)[0] == "ServiceNotActiveException"
    with pytest.raises(ClientError) as e:
        ecs.delete_service(cluster="c1", service="s1")
    assert code_of(e)[0] == "ServiceNotActiveException"
    with pytest.raises(ClientError) as e:
        ecs.delete_service(cluster="c1", service="ghost")
    assert code_of(e)[0] == "ServiceNotFoundException"


def test_duplicate_and_invalid_services(setup):
    ecs = setup
    ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="web")
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="web", desiredCount=3)
    assert code_of(e)[0] == "InvalidParameterException"
    cases = [
        (dict(serviceName="bad name"), "InvalidParameterException", "bad name"),
        (dict(serviceName="s2", desiredCount=-1), "InvalidParameterException", "desiredCount"),
        (dict(serviceName="s2", schedulingStrategy="DAEMON", desiredCount=1), "InvalidParameterException",
         "desiredCount"),
        (dict(serviceName="s2", launchType="EC2", capacityProviderStrategy=[{"capacityProvider": "FARGATE"}]),
         "InvalidParameterException", "launch type"),
        (dict(serviceName="s2", healthCheckGracePeriodSeconds=30), "InvalidParameterException", "load balancer"),
        (dict(serviceName="s2", placementStrategy=[{"type": "binpack", "field": "disk"}]),
         "InvalidParameterException", "disk"),
        (dict(serviceName="s2", placementConstraints=[{"type": "memberOf"}]), "InvalidParameterException",
         "expression"),
        (dict(serviceName="s2", placementConstraints=[{"type": "memberOf", "expression": "attribute:x ~ y"}]),
         "InvalidParameterException", "attribute:x ~ y"),
        (dict(serviceName="s2", tags=[{"key": "aws:reserved", "value": "x"}]), "InvalidParameterException",
         "aws:"),
    ]
    for kw, code, message in cases:
        kw.setdefault("taskDefinition", "web")
        with pytest.raises(ClientError) as e:
            ecs.create_service(cluster="c1", **kw)
        got, msg = code_of(e)
        assert got == code and message in msg, (kw, got, msg)
    assert len(ecs.list_services(cluster="c1")["serviceArns"]) == 1


def test_daemon_service(setup):
    ecs = setup
    svc = ecs.create_service(cluster="c1", serviceName="d", taskDefinition="web", schedulingStrategy="DAEMON")[
        "service"]
    assert svc["schedulingStrategy"] == "DAEMON"
    dc = svc["deploymentConfiguration"]
    assert (dc["maximumPercent"], dc["minimumHealthyPercent"]) == (100, 0)
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster="c1", service="d", desiredCount=3)
    assert code_of(e)[0] == "InvalidParameterException"
    # DAEMON services can be deleted without scaling down first.
    assert ecs.delete_service(cluster="c1", service="d")["service"]["status"] == "DRAINING"


def test_list_services_pages_and_filters(setup):
    ecs = setup
    arns = [ecs.create_service(cluster="c1", serviceName=f"s{i:02}", taskDefinition="web")["service"]["serviceArn"]
            for i in range(13)]
    ecs.create_service(cluster="c1", serviceName="dd", taskDefinition="web", schedulingStrategy="DAEMON")
    first = ecs.list_services(cluster="c1", schedulingStrategy="REPLICA")
    assert len(first["serviceArns"]) == 10 and first["nextToken"]  # ECS's default page is 10
    second = ecs.list_services(cluster="c1", schedulingStrategy="REPLICA", nextToken=first["nextToken"])
    assert first["serviceArns"] + second["serviceArns"] == arns and "nextToken" not in second
    paged = [a for p in ecs.get_paginator("list_services").paginate(cluster="c1", PaginationConfig={"PageSize": 4})
             for a in p["serviceArns"]]
    assert len(paged) == 14 and len(set(paged)) == 14
    assert ecs.list_services(cluster="c1", schedulingStrategy="DAEMON")["serviceArns"] == [
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/c1/dd"]
    assert ecs.list_services(cluster="c1", launchType="FARGATE")["serviceArns"] == []
    with pytest.raises(ClientError) as e:
        ecs.list_services(cluster="c1", maxResults=101)
    assert code_of(e)[0] == "InvalidParameterException" and "maxResults" in code_of(e)[1]


def test_cluster_with_services_cannot_be_deleted(setup):
    ecs = setup
    ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="web")
    with pytest.raises(ClientError) as e:
        ecs.delete_cluster(cluster="c1")
    assert code_of(e)[0] == "ClusterContainsServicesException"
    assert ecs.describe_clusters(clusters=["c1"])["clusters"][0]["status"] == "ACTIVE"

    def stats():
        c = ecs.describe_clusters(clusters=["c1"], include=["STATISTICS"])["clusters"][0]
        return {s["name"]: int(s["value"]) for s in c["statistics"]}

    assert stats()["activeEC2ServiceCount"] == 1 and stats()["drainingEC2ServiceCount"] == 0
    ecs.delete_service(cluster="c1", service="s1")
    ecs.get_waiter("services_inactive").wait(cluster="c1", services=["s1"],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    assert ecs.delete_cluster(cluster="c1")["cluster"]["status"] == "INACTIVE"
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster="c1", serviceName="s2", taskDefinition="web")
    assert code_of(e)[0] == "ClusterNotFoundException"


def test_service_arns_and_cluster_arns_are_accepted_as_references(setup):
    ecs = setup
    cluster_arn = ecs.describe_clusters(clusters=["c1"])["clusters"][0]["clusterArn"]
    svc = ecs.create_service(cluster=cluster_arn, serviceName="s1", taskDefinition="web")["service"]
    out = ecs.describe_services(cluster=cluster_arn, services=[svc["serviceArn"]])
    assert out["services"][0]["serviceArn"] == svc["serviceArn"]
    upd = ecs.update_service(cluster="c1", service=svc["serviceArn"], desiredCount=4)["service"]
    assert upd["desiredCount"] == 4
    with pytest.raises(ClientError) as e:
        ecs.describe_services(cluster="c1", services=[cluster_arn])
    code, msg = code_of(e)
    assert code == "InvalidParameterException" and "services" in msg
