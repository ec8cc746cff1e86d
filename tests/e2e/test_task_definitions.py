"""Task definitions: numbered revisions per family, every field Wharf applies round-trips (the
ones it refuses are in test_td_fields.py), ECS's own rules
(Fargate sizes, container references), listing with filters, sort and pagination,
deregistration and deletion."""

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, CliError
from util import simple_taskdef, write_json

APP = {
    "name": "app",
    "image": "public.ecr.aws/docker/library/nginx:1.27",
    "repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:123456789012:secret:reg"},
    "cpu": 256,
    "memory": 512,
    "memoryReservation": 256,
    "links": ["sidecar:side"],
    "portMappings": [
        {"containerPort": 80, "hostPort": 8080, "protocol": "tcp", "name": "http"},
        {"containerPort": 53, "hostPort": 0, "protocol": "udp"},
    ],
    "essential": True,
    "restartPolicy": {"enabled": True, "ignoredExitCodes": [0, 2], "restartAttemptPeriod": 120},
    "entryPoint": ["/docker-entrypoint.sh"],
    "command": ["nginx", "-g", "daemon off;"],
    "environment": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY", "value": ""}],
    "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": False}],
    "volumesFrom": [{"sourceContainer": "sidecar", "readOnly": True}],
    "linuxParameters": {
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
        "devices": [{"hostPath": "/dev/fuse", "containerPath": "/dev/fuse", "permissions": ["read", "write"]}],
        "initProcessEnabled": True,
        "sharedMemorySize": 64,
        "tmpfs": [{"containerPath": "/tmp", "size": 32, "mountOptions": ["noexec"]}],
        "maxSwap": 1024,
        "swappiness": 10,
    },
    "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/db"}],
    "dependsOn": [{"containerName": "sidecar", "condition": "START"}],
    "startTimeout": 60,
    "stopTimeout": 30,
    "versionConsistency": "disabled",
    "hostname": "app",
    "user": "1000:1000",
    "workingDirectory": "/srv",
    "disableNetworking": False,
    "privileged": False,
    "readonlyRootFilesystem": True,
    "dnsServers": ["10.0.0.2"],
    "dnsSearchDomains": ["internal"],
    "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.5"}],
    "dockerSecurityOptions": ["no-new-privileges"],
    "interactive": False,
    "pseudoTerminal": False,
    "dockerLabels": {"team": "platform", "com.example.tier": "web"},
    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
    "logConfiguration": {
        "logDriver": "awslogs",
        "options": {"awslogs-group": "/ecs/td-testunit", "awslogs-region": "ap-northeast-2",
                    "awslogs-stream-prefix": "ecs"},
    },
    "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], "interval": 10,
                    "timeout": 3, "retries": 5, "startPeriod": 20},
    "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
}
SIDECAR = {"name": "sidecar", "image": "busybox:1.36", "memory": 64, "essential": False, "command": ["sleep", "inf"]}
RICH_TASK_DEFINITION = {
    "family": "rich",
    "taskRoleArn": "arn:aws:iam::123456789012:role/app",
    "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
    "networkMode": "bridge",
    "containerDefinitions": [APP, SIDECAR],
    "volumes": [
        {"name": "data", "host": {"sourcePath": "/srv/data"}},
        {"name": "scratch", "dockerVolumeConfiguration": {"scope": "task", "driver": "local",
                                                          "labels": {"a": "b"}}},
    ],
    "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t2.*"}],
    "cpu": "1 vCPU",
    "memory": "2 GB",
    "pidMode": "host",
    "ipcMode": "host",
    "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
    "tags": [{"key": "env", "value": "test"}],
}


def register(ecs, family, **kw):
    return ecs.register_task_definition(**simple_taskdef(family, **kw))["taskDefinition"]


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def test_revisions_count_up_per_family(ecs):
    arns = [register(ecs, "web")["taskDefinitionArn"] for _ in range(3)]
    assert arns == [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:{n}" for n in (1, 2, 3)]
    assert register(ecs, "api")["revision"] == 1
    assert ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]["revision"] == 3
    assert ecs.describe_task_definition(taskDefinition="web:2")["taskDefinition"]["revision"] == 2
    by_arn = ecs.describe_task_definition(taskDefinition=arns[0])["taskDefinition"]
    assert by_arn["taskDefinitionArn"] == arns[0] and by_arn["family"] == "web"


def test_every_field_round_trips_through_the_cli(wharf, tmp_path):
    out = wharf.aws("ecs", "register-task-definition", "--cli-input-json",
                    write_json(tmp_path / "rich.json", RICH_TASK_DEFINITION))
    assert out["tags"] == RICH_TASK_DEFINITION["tags"]
    registered = out["taskDefinition"]
    described = wharf.aws("ecs", "describe-task-definition", "--task-definition", "rich",
                          "--include", "TAGS")
    assert described["tags"] == RICH_TASK_DEFINITION["tags"]
    td = described["taskDefinition"]
    assert td == registered
    by_name = {c["name"]: c for c in td["containerDefinitions"]}
    assert [c["name"] for c in td["containerDefinitions"]] == ["app", "sidecar"]
    for sent in (APP, SIDECAR):
        got = by_name[sent["name"]]
        for field, value in sent.items():
            assert got[field] == value, field
    for field in ("taskRoleArn", "executionRoleArn", "networkMode", "volumes", "placementConstraints",
                  "pidMode", "ipcMode", "runtimePlatform"):
        assert td[field] == RICH_TASK_DEFINITION[field], field
    # Task-level sizes are normalised to CPU units and MiB, as ECS does.
    assert (td["cpu"], td["memory"]) == ("1024", "2048")
    assert "tags" not in td
    assert td["registeredBy"] == f"arn:aws:iam::{ACCOUNT}:root"


def test_defaults_ecs_fills_in(ecs):
    td = ecs.register_task_definition(
        family="bare", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16}]
    )["taskDefinition"]
    (c,) = td["containerDefinitions"]
    assert c["cpu"] == 0
    assert c["portMappings"] == [] and c["environment"] == [] and c["mountPoints"] == [] and c["volumesFrom"] == []
    assert td["volumes"] == [] and td["placementConstraints"] == []
    assert td["compatibilities"] == ["EC2"]
    assert td["status"] == "ACTIVE"
    assert c["essential"] is True  # ECS's default, reported back


@pytest.mark.parametrize("mode, host_port", [("awsvpc", 80), ("host", 80), ("bridge", None)])
def test_port_mapping_defaults(ecs, mode, host_port):
    td = ecs.register_task_definition(
        family="ports", networkMode=mode,
        containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16, "essential": False,
                               "portMappings": [{"containerPort": 80}, {"containerPort": 53, "protocol": "udp"}]},
                              {"name": "d", "image": "busybox", "memory": 16}],
    )["taskDefinition"]
    c, d = td["containerDefinitions"]
    assert c["essential"] is False and d["essential"] is True
    tcp, udp = c["portMappings"]
    assert tcp["protocol"] == "tcp" and udp["protocol"] == "udp"
    assert tcp.get("hostPort") == host_port
    assert udp.get("hostPort") == (53 if host_port else None)
    assert ecs.describe_task_definition(taskDefinition="ports")["taskDefinition"]["containerDefinitions"] == [c, d]


def test_fargate_needs_awsvpc_and_a_valid_size(ecs):
    ok = ecs.register_task_definition(
        family="fg", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "c", "image": "busybox"}],
    )["taskDefinition"]
    assert ok["requiresCompatibilities"] == ["FARGATE"]
    assert set(ok["compatibilities"]) == {"EC2", "FARGATE"}
    assert (ok["cpu"], ok["memory"]) == ("256", "512")

    cases = [
        (dict(networkMode="awsvpc", cpu="256", memory="4096"), "No Fargate configuration exists for given values"),
        (dict(networkMode="awsvpc", cpu="300", memory="1024"), "No Fargate configuration exists for given values"),
        (dict(networkMode="bridge", cpu="256", memory="512"), "awsvpc"),
        (dict(networkMode="awsvpc"), "'cpu' be defined at the task level"),
    ]
    for kw, message in cases:
        with pytest.raises(ClientError) as e:
            ecs.register_task_definition(family="fg", requiresCompatibilities=["FARGATE"],
                                         containerDefinitions=[{"name": "c", "image": "busybox", "memory": 64}],
                                         **kw)
        code, msg = error_code(e)
        assert code == "ClientException" and message in msg, (kw, code, msg)
    # None of the refused registrations consumed a revision.
    assert ecs.list_task_definitions(familyPrefix="fg")["taskDefinitionArns"] == [ok["taskDefinitionArn"]]
    assert register(ecs, "fg")["revision"] == 2


def test_container_rules(ecs):
    c = {"name": "c", "image": "busybox", "memory": 32}
    cases = [
        ([], "ClientException", "Container list cannot be empty"),
        ([{"name": "c", "image": "busybox"}], "ClientException", "memory"),
        ([c, dict(c)], "ClientException", "Duplicate container name"),
        ([{"name": "c", "image": " ", "memory": 32}], "ClientException", "image"),
        ([{"name": "bad name!", "image": "busybox", "memory": 32}], "InvalidParameterException", "bad name!"),
        ([dict(c, memory=4)], "ClientException", "memory"),
        ([dict(c, memoryReservation=64)], "ClientException", "memoryReservation"),
        ([dict(c, mountPoints=[{"sourceVolume": "nope", "containerPath": "/x"}])], "ClientException", "nope"),
        ([dict(c, volumesFrom=[{"sourceContainer": "ghost"}])], "ClientException", "ghost"),
        ([dict(c, dependsOn=[{"containerName": "ghost", "condition": "START"}])], "ClientException", "ghost"),
        ([dict(c, portMappings=[{"containerPort": 70000}])], "InvalidParameterException", "containerPort"),
        ([dict(c, portMappings=[{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 8080}])],
         "InvalidParameterException", "8080"),
    ]
    for containers, code, message in cases:
        with pytest.raises(ClientError) as e:
            ecs.register_task_definition(family="rules", containerDefinitions=containers)
        got, msg = error_code(e)
        assert (got, message in msg) == (code, True), (containers, got, msg)
    with pytest.raises(ClientError) as e:
        ecs.register_task_definition(family="rules", networkMode="awsvpc",
                                     containerDefinitions=[dict(c, portMappings=[{"containerPort": 80,
                                                                                  "hostPort": 81}])])
    assert error_code(e)[0] == "InvalidParameterException" and "hostPort" in error_code(e)[1]
    with pytest.raises(ClientError) as e:
        ecs.register_task_definition(family="rules", memory="64", containerDefinitions=[dict(c, memory=128)])
    assert error_code(e)[0] == "ClientException"
    assert ecs.list_task_definition_families(status="ALL")["families"] == []


def test_task_definition_over_64_kib_is_refused(ecs):
    env = [{"name": f"VAR_{i}", "value": "x" * 100} for i in range(700)]
    with pytest.raises(ClientError) as e:
        ecs.register_task_definition(family="huge", containerDefinitions=[
            {"name": "c", "image": "busybox", "memory": 32, "environment": env}])
    code, msg = error_code(e)
    assert code == "ClientException" and "65536" in msg
    assert ecs.list_task_definitions()["taskDefinitionArns"] == []
    # Just under the limit is fine.
    env = env[:500]
    assert ecs.register_task_definition(family="huge", containerDefinitions=[
        {"name": "c", "image": "busybox", "memory": 32, "environment": env}])["taskDefinition"]["revision"] == 1


def test_list_task_definitions_filters_sorts_and_pages(wharf, ecs):
    for family, n in (("web", 3), ("web-api", 1), ("api", 2)):
        for _ in range(n):
            register(ecs, family)
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/"
    everything = [arn + x for x in ("api:1", "api:2", "web:1", "web:2", "web:3", "web-api:1")]
    assert ecs.list_task_definitions()["taskDefinitionArns"] == everything
    assert ecs.list_task_definitions(sort="DESC")["taskDefinitionArns"] == everything[::-1]
    # familyPrefix is a whole family name.
    assert ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"] == everything[2:5]
    assert ecs.list_task_definitions(familyPrefix="web", sort="DESC")["taskDefinitionArns"] == everything[4:1:-1]
    assert ecs.list_task_definitions(familyPrefix="we")["taskDefinitionArns"] == []

    ecs.deregister_task_definition(taskDefinition="web:2")
    assert ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"] == [arn + "web:1", arn + "web:3"]
    assert ecs.list_task_definitions(status="INACTIVE")["taskDefinitionArns"] == [arn + "web:2"]

    page = ecs.list_task_definitions(maxResults=2)
    assert page["taskDefinitionArns"] == everything[:2] and page["nextToken"]
    page2 = ecs.list_task_definitions(maxResults=2, nextToken=page["nextToken"])
    assert page2["taskDefinitionArns"] == [arn + "web:1", arn + "web:3"]
    pages = ecs.get_paginator("list_task_definitions").paginate(PaginationConfig={"PageSize": 1})
    seen = [a for p in pages for a in p["taskDefinitionArns"]]
    assert seen == [a for a in everything if not a.endswith("web:2")]

    cli = wharf.aws("ecs", "list-task-definitions", "--max-items", "3")
    assert cli["taskDefinitionArns"] == seen[:3] and cli["NextToken"]
    rest = wharf.aws("ecs", "list-task-definitions", "--starting-token", cli["NextToken"])
    assert rest["taskDefinitionArns"] == seen[3:]

    with pytest.raises(ClientError) as e:
        ecs.list_task_definitions(nextToken="not-a-token")
    assert error_code(e)[0] == "InvalidParameterException" and "nextToken" in error_code(e)[1]


def test_list_task_definition_families(ecs):
    for family in ("web", "web-api", "api", "worker"):
        register(ecs, family)
    ecs.deregister_task_definition(taskDefinition="worker:1")
    assert ecs.list_task_definition_families()["families"] == ["api", "web", "web-api"]
    assert ecs.list_task_definition_families(familyPrefix="web")["families"] == ["web", "web-api"]
    assert ecs.list_task_definition_families(status="INACTIVE")["families"] == ["worker"]
    assert ecs.list_task_definition_families(status="ALL")["families"] == ["api", "web", "web-api", "worker"]
    pages = ecs.get_paginator("list_task_definition_families").paginate(
        status="ALL", PaginationConfig={"PageSize": 1})
    got = [p["families"] for p in pages]
    assert [f for p in got for f in p] == ["api", "web", "web-api", "worker"]
    assert all(len(p) <= 1 for p in got)


def test_deregister_keeps_the_revision_describable(ecs):
    register(ecs, "web")
    register(ecs, "web")
    gone = ecs.deregister_task_definition(taskDefinition="web:2")["taskDefinition"]
    assert gone["status"] == "INACTIVE" and gone["deregisteredAt"]
    assert ecs.describe_task_definition(taskDefinition="web:2")["taskDefinition"]["status"] == "INACTIVE"
    # A bare family means its latest ACTIVE revision.
    assert ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]["revision"] == 1
    # Deregistering twice is harmless; a new registration still counts up.
    assert ecs.deregister_task_definition(taskDefinition="web:2")["taskDefinition"]["status"] == "INACTIVE"
    assert register(ecs, "web")["revision"] == 3
    with pytest.raises(ClientError) as e:
        ecs.deregister_task_definition(taskDefinition="web")
    assert error_code(e)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecs.deregister_task_definition(taskDefinition="web:9")
    assert error_code(e) == ("ClientException", "Unable to describe task definition.")
    ecs.deregister_task_definition(taskDefinition="web:1")
    ecs.deregister_task_definition(taskDefinition="web:3")
    with pytest.raises(ClientError) as e:
        ecs.describe_task_definition(taskDefinition="web")
    assert error_code(e) == ("ClientException", "Unable to describe task definition.")


def test_delete_task_definitions_only_inactive(ecs):
    a1 = register(ecs, "del")["taskDefinitionArn"]
    a2 = register(ecs, "del")["taskDefinitionArn"]
    out = ecs.delete_task_definitions(taskDefinitions=[a1])
    assert out["taskDefinitions"] == []
    assert out["failures"][0]["arn"] == a1 and "ACTIVE" in out["failures"][0]["reason"]

    ecs.deregister_task_definition(taskDefinition=a1)
    out = ecs.delete_task_definitions(taskDefinitions=[a1, "del:7", a2])
    assert [t["taskDefinitionArn"] for t in out["taskDefinitions"]] == [a1]
    assert out["taskDefinitions"][0]["status"] == "DELETE_IN_PROGRESS"
    assert sorted(f["arn"] for f in out["failures"]) == sorted(["del:7", a2])
    assert ecs.list_task_definitions(familyPrefix="del", status="DELETE_IN_PROGRESS")["taskDefinitionArns"] == [a1]
    assert ecs.list_task_definitions(familyPrefix="del", status="INACTIVE")["taskDefinitionArns"] == []
    assert ecs.list_task_definitions(familyPrefix="del")["taskDefinitionArns"] == [a2]
    # The deleted revision number is not reused.
    assert register(ecs, "del")["revision"] == 3


def test_task_definition_reference_errors(ecs):
    register(ecs, "web")
    for ref, code, message in [
        ("nope", "ClientException", "Unable to describe task definition."),
        ("web:99", "ClientException", "Unable to describe task definition."),
        ("web:x", "InvalidParameterException", "taskDefinition"),
        (f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/web", "InvalidParameterException", "taskDefinition"),
        (f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/web:1", "InvalidParameterException", "taskDefinition"),
    ]:
        with pytest.raises(ClientError) as e:
            ecs.describe_task_definition(taskDefinition=ref)
        got, msg = error_code(e)
        assert got == code and message in msg, (ref, got, msg)


def test_cli_errors_name_the_problem(wharf, tmp_path):
    bad = dict(RICH_TASK_DEFINITION, family="bad", networkMode="weird")
    with pytest.raises(CliError) as e:
        wharf.aws("ecs", "register-task-definition", "--cli-input-json", write_json(tmp_path / "b.json", bad))
    # botocore does not check enums: the server's answer reaches the user.
    assert "InvalidParameterException" in e.value.stderr and "networkMode" in e.value.stderr
    assert wharf.aws("ecs", "list-task-definition-families", "--status", "ALL")["families"] == []
