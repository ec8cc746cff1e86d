"""The ECS part of seed 003 ("AWS ECS 를 이용한 docker 서비스"), command for command with the
AWS CLI: cluster, task definition from a JSON file, a replica service of 10, scale to 0,
delete, wait for INACTIVE, then the same service again behind a target group with a role."""

import re

import pytest

from conftest import ACCOUNT, REGION, CliError
from util import write_json

CLUSTER = "testunit-cluster"
FAMILY = "td-testunit"
CONTAINER = "testunit-web"
IMAGE = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/testunit768-ecs:v0.1"
TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/testunit-tg/0123456789abcdef"
ROLE = "arn:aws:iam::123456789012:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"

SEED_TASK_DEFINITION = {
    "family": FAMILY,
    "networkMode": "bridge",
    "containerDefinitions": [
        {
            "name": CONTAINER,
            "essential": True,
            "image": IMAGE,
            "cpu": 0,
            "memory": 128,
            "portMappings": [{"hostPort": 0, "containerPort": 8080, "protocol": "tcp"}],
        }
    ],
}
SEED_SERVICE = {"serviceName": "testunit-service", "taskDefinition": f"{FAMILY}:1", "desiredCount": 10}
SEED_SERVICE_LB = dict(
    SEED_SERVICE,
    role=ROLE,
    loadBalancers=[{"targetGroupArn": TARGET_GROUP, "containerName": CONTAINER, "containerPort": 8080}],
)


def describe_service(wharf, name):
    out = wharf.aws("ecs", "describe-services", "--cluster", CLUSTER, "--services", name)
    assert out["failures"] == []
    (svc,) = out["services"]
    return svc


def test_seed003_service_lifecycle_with_the_cli(wharf, tmp_path):
    created = wharf.aws("ecs", "create-cluster", "--cluster-name", CLUSTER)["cluster"]
    assert created["clusterArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
    assert created["status"] == "ACTIVE"
    assert wharf.aws("ecs", "list-clusters")["clusterArns"] == [created["clusterArn"]]

    td_file = write_json(tmp_path / "td.json", SEED_TASK_DEFINITION)
    td = wharf.aws("ecs", "register-task-definition", "--cli-input-json", td_file)["taskDefinition"]
    assert td["taskDefinitionArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{FAMILY}:1"
    assert td["revision"] == 1 and td["status"] == "ACTIVE"

    described = wharf.aws("ecs", "describe-task-definition", "--task-definition", FAMILY)["taskDefinition"]
    assert described == td
    assert described["networkMode"] == "bridge"
    (c,) = described["containerDefinitions"]
    seed_c = SEED_TASK_DEFINITION["containerDefinitions"][0]
    for field in ("name", "essential", "image", "cpu", "memory", "portMappings"):
        assert c[field] == seed_c[field], field
    assert "EC2" in described["compatibilities"]

    svc_file = write_json(tmp_path / "service.json", SEED_SERVICE)
    svc = wharf.aws("ecs", "create-service", f"--cluster={CLUSTER}", "--cli-input-json", svc_file)["service"]
    assert svc["serviceArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/testunit-service"
    assert svc["clusterArn"] == created["clusterArn"]
    assert svc["status"] == "ACTIVE"
    assert svc["desiredCount"] == 10
    assert svc["taskDefinition"] == td["taskDefinitionArn"]
    assert svc["schedulingStrategy"] == "REPLICA"
    (dep,) = svc["deployments"]
    assert dep["status"] == "PRIMARY" and dep["desiredCount"] == 10
    assert re.fullmatch(r"ecs-svc/\d{19}", dep["id"])

    cluster = wharf.aws("ecs", "describe-clusters", "--cluster", CLUSTER)
    assert cluster["failures"] == []
    (cl,) = cluster["clusters"]
    assert cl["activeServicesCount"] == 1
    assert cl["runningTasksCount"] == 0  # no container instances: nothing can run yet

    # The seed's way to replace a service: scale to 0, delete it, create it again.
    updated = wharf.aws("ecs", "update-service", f"--cluster={CLUSTER}", "--service=testunit-service",
                        "--desired-count=0")["service"]
    assert updated["desiredCount"] == 0
    assert updated["deployments"][0]["id"] == dep["id"]  # a count change is not a new deployment
    deleted = wharf.aws("ecs", "delete-service", f"--cluster={CLUSTER}", "--service=testunit-service")["service"]
    assert deleted["status"] == "DRAINING"
    wharf.aws("ecs", "wait", "services-inactive", "--cluster", CLUSTER, "--services", "testunit-service")
    assert describe_service(wharf, "testunit-service")["status"] == "INACTIVE"
    assert wharf.aws("ecs", "list-services", "--cluster", CLUSTER)["serviceArns"] == []
    assert wharf.aws("ecs", "describe-clusters", "--cluster", CLUSTER)["clusters"][0]["activeServicesCount"] == 0

    # The seed's target group exists only once created with the ELBv2 API (that flow, with real
    # traffic, is tests/e2e/test_lb_service.py): ECS refuses a target group it cannot find.
    lb_file = write_json(tmp_path / "service-lb.json", SEED_SERVICE_LB)
    with pytest.raises(CliError) as e:
        wharf.aws("ecs", "create-service", f"--cluster={CLUSTER}", "--cli-input-json", lb_file)
    assert "InvalidParameterException" in e.value.stderr and "targetGroupArn" in e.value.stderr
    assert describe_service(wharf, "testunit-service")["status"] == "INACTIVE"
    svc_file = write_json(tmp_path / "service.json", SEED_SERVICE)
    svc2 = wharf.aws("ecs", "create-service", f"--cluster={CLUSTER}", "--cli-input-json", svc_file)["service"]
    assert svc2["serviceArn"] == svc["serviceArn"]
    assert svc2["status"] == "ACTIVE" and svc2["desiredCount"] == 10
    assert svc2["deployments"][0]["id"] != dep["id"]
    assert wharf.aws("ecs", "list-services", "--cluster", CLUSTER)["serviceArns"] == [svc["serviceArn"]]

    wharf.aws("ecs", "update-service", f"--cluster={CLUSTER}", "--service=testunit-service", "--desired-count=0")
    wharf.aws("ecs", "delete-service", f"--cluster={CLUSTER}", "--service=testunit-service")
    wharf.aws("ecs", "wait", "services-inactive", "--cluster", CLUSTER, "--services", "testunit-service")
    deleted_cluster = wharf.aws("ecs", "delete-cluster", "--cluster", CLUSTER)["cluster"]
    assert deleted_cluster["status"] == "INACTIVE"
    assert wharf.aws("ecs", "list-clusters")["clusterArns"] == []


def test_seed003_load_balancer_must_name_a_container_port_of_the_task_definition(wharf, tmp_path):
    wharf.aws("ecs", "create-cluster", "--cluster-name", CLUSTER)
    wharf.aws("ecs", "register-task-definition", "--cli-input-json",
              write_json(tmp_path / "td.json", SEED_TASK_DEFINITION))
    for lb, field in [
        ({"targetGroupArn": TARGET_GROUP, "containerName": "nope", "containerPort": 8080}, "nope"),
        ({"targetGroupArn": TARGET_GROUP, "containerName": CONTAINER, "containerPort": 9090}, "9090"),
    ]:
        bad = dict(SEED_SERVICE_LB, loadBalancers=[lb])
        with pytest.raises(CliError) as e:
            wharf.aws("ecs", "create-service", f"--cluster={CLUSTER}", "--cli-input-json",
                      write_json(tmp_path / "bad.json", bad))
        assert "InvalidParameterException" in e.value.stderr and field in e.value.stderr
    # Nothing was half-created.
    assert wharf.aws("ecs", "list-services", "--cluster", CLUSTER)["serviceArns"] == []
    out = wharf.aws("ecs", "describe-services", "--cluster", CLUSTER, "--services", "testunit-service")
    assert out["services"] == [] and out["failures"][0]["reason"] == "MISSING"


def test_seed003_service_needs_an_existing_cluster_and_revision(wharf, tmp_path):
    svc_file = write_json(tmp_path / "service.json", SEED_SERVICE)
    with pytest.raises(CliError) as e:
        wharf.aws("ecs", "create-service", f"--cluster={CLUSTER}", "--cli-input-json", svc_file)
    assert "ClusterNotFoundException" in e.value.stderr
    wharf.aws("ecs", "create-cluster", "--cluster-name", CLUSTER)
    with pytest.raises(CliError) as e:
        wharf.aws("ecs", "create-service", f"--cluster={CLUSTER}", "--cli-input-json", svc_file)
    assert "ClientException" in e.value.stderr and "Unable to describe task definition" in e.value.stderr
    with pytest.raises(CliError) as e:
        wharf.aws("ecs", "describe-task-definition", "--task-definition", FAMILY)
    assert "ClientException" in e.value.stderr
