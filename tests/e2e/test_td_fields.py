"""Every task-definition field is applied or refused (docs/task-definition-fields.md): the
container and Linux parameters reach Docker (read back with `docker inspect`), fields Wharf
cannot honour are refused at RegisterTaskDefinition naming the field, Fargate definitions are
checked as Fargate checks them, and an EFS volume outlives the task that wrote to it."""

import json
import urllib.request

import pytest
from botocore.exceptions import ClientError

from agentutil import (container, echo, host_port, http, register, run, wait_http, wait_instances, wait_task,
                       wait_until)
from conftest import docker
from scheduler_support import service_tasks, wait_stable

FARGATE = dict(networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512")

REFUSED = [
    ({"environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}]}, {},
     "containerDefinitions.1.environmentFiles"),
    ({"firelensConfiguration": {"type": "fluentbit"}}, {}, "firelensConfiguration"),
    ({"resourceRequirements": [{"type": "GPU", "value": "1"}]}, {}, "resourceRequirements"),
    ({"logConfiguration": {"logDriver": "splunk", "options": {}}}, {}, "splunk"),
    ({"credentialSpecs": ["credentialspec:arn:aws:s3:::b/spec.json"]}, {}, "credentialSpecs"),
    ({}, {"proxyConfiguration": {"containerName": "web", "properties": []}}, "proxyConfiguration"),
    ({}, {"pidMode": "task"}, "pidMode=task"),
    ({}, {"runtimePlatform": {"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}}, "WINDOWS_SERVER_2022_CORE"),
    ({}, {"volumes": [{"name": "v", "configuredAtLaunch": True}]}, "configuredAtLaunch"),
    ({}, {"volumes": [{"name": "v", "fsxWindowsFileServerVolumeConfiguration": {
        "fileSystemId": "fs-1", "rootDirectory": "share",
        "authorizationConfig": {"credentialsParameter": "arn:aws:ssm:us-east-1:123456789012:parameter/x",
                                "domain": "example.com"}}}]}, "fsxWindowsFileServerVolumeConfiguration"),
]


@pytest.mark.parametrize("container_extra,task_extra,named", REFUSED, ids=[r[2] for r in REFUSED])
def test_fields_wharf_cannot_honour_are_refused_by_name(wharf, container_extra, task_extra, named):
    ecs = wharf.client("ecs")
    with pytest.raises(ClientError) as e:
        ecs.register_task_definition(family="refused", containerDefinitions=[
            {"name": "web", "image": "x", "memory": 64, **container_extra}], **task_extra)
    err = e.value.response["Error"]
    assert err["Code"] == "ClientException", err
    assert named in err["Message"] and "Wharf does not support" in err["Message"], err["Message"]
    assert ecs.list_task_definitions(familyPrefix="refused")["taskDefinitionArns"] == []


FARGATE_REFUSED = [
    ({"privileged": True}, {}, "privileged"),
    ({"linuxParameters": {"devices": [{"hostPath": "/dev/fuse"}]}}, {}, "linuxParameters.devices"),
    ({"linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}}, {}, "NET_ADMIN"),
    ({}, {"volumes": [{"name": "v", "host": {"sourcePath": "/srv"}}]}, "host volumes"),
]


@pytest.mark.parametrize("container_extra,task_extra,named", FARGATE_REFUSED, ids=[r[2] for r in FARGATE_REFUSED])
def test_fargate_definitions_are_checked_as_fargate_checks_them(wharf, container_extra, task_extra, named):
    with pytest.raises(ClientError) as e:
        wharf.client("ecs").register_task_definition(family="fg", containerDefinitions=[
            {"name": "web", "image": "x", **container_extra}], **FARGATE, **task_extra)
    assert e.value.response["Error"]["Code"] == "ClientException"
    assert "Fargate does not support" in e.value.response["Error"]["Message"] and named in e.value.response[
        "Error"]["Message"]


def inspect(container_id):
    return json.loads(docker("inspect", container_id).stdout)[0]


def test_container_and_linux_parameters_reach_docker(wharf_agent):
    w = wharf_agent
    ecs = w.client("ecs")
    wait_instances(ecs, w.cluster)
    web = echo(portMappings=[{"containerPort": 8080, "hostPort": 0}], memory=64,
               readonlyRootFilesystem=True, interactive=True, pseudoTerminal=True,
               dnsServers=["127.0.0.53"], extraHosts=[{"hostname": "db.internal", "ipAddress": "10.9.8.7"}],
               ulimits=[{"name": "nofile", "softLimit": 4096, "hardLimit": 8192}],
               systemControls=[{"namespace": "net.core.somaxconn", "value": "512"}],
               logConfiguration={"logDriver": "json-file", "options": {"max-size": "1m"}},
               linuxParameters={"initProcessEnabled": True, "sharedMemorySize": 128, "maxSwap": 0,
                                "tmpfs": [{"containerPath": "/scratch", "size": 16, "mountOptions": ["noexec"]}],
                                "devices": [{"hostPath": "/dev/null", "containerPath": "/dev/wharf-null",
                                             "permissions": ["read"]}],
                                "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]}})
    quiet = echo(name="quiet", essential=False, disableNetworking=True, memory=32)
    td = register(ecs, "fields", web, quiet, networkMode="bridge")
    (arn,) = run(ecs, w.cluster, td)
    task = wait_task(ecs, w.cluster, arn, timeout=60)
    wait_http(f"http://127.0.0.1:{host_port(task)}/", timeout=20)

    c = inspect(container(task, "web")["runtimeId"])
    host, config = c["HostConfig"], c["Config"]
    assert host["ShmSize"] == 128 * 1024 * 1024
    assert host["Tmpfs"] == {"/scratch": "size=16m,noexec"}
    assert host["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/wharf-null",
                                "CgroupPermissions": "r"}]
    assert host["CapAdd"] == ["NET_ADMIN"] and host["CapDrop"] == ["MKNOD"]
    assert host["Init"] is True and host["ReadonlyRootfs"] is True
    assert host["MemorySwap"] == host["Memory"] == 64 * 1024 * 1024
    assert host["Sysctls"] == {"net.core.somaxconn": "512"}
    assert host["Dns"] == ["127.0.0.53"] and host["ExtraHosts"] == ["db.internal:10.9.8.7"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 4096, "Hard": 8192}]
    assert host["LogConfig"]["Type"] == "json-file" and host["LogConfig"]["Config"]["max-size"] == "1m"
    assert config["Tty"] is True and config["OpenStdin"] is True
    q = inspect(container(task, "quiet")["runtimeId"])
    assert q["Config"].get("NetworkDisabled") is True
    ecs.stop_task(cluster=w.cluster, task=arn)


def test_an_efs_volume_outlives_the_task_that_wrote_it(wharf_agent):
    w = wharf_agent
    ecs = w.client("ecs")
    wait_instances(ecs, w.cluster)
    volume = "wharf-efs-fs-0123abcd-app"
    docker("volume", "rm", "-f", volume, check=False)
    try:
        td = register(ecs, "efs", echo(portMappings=[{"containerPort": 8080, "hostPort": 0}],
                                       mountPoints=[{"sourceVolume": "shared", "containerPath": "/data"}]),
                      volumes=[{"name": "shared", "efsVolumeConfiguration": {
                          "fileSystemId": "fs-0123abcd", "rootDirectory": "/app", "transitEncryption": "ENABLED"}}])
        ecs.create_service(cluster=w.cluster, serviceName="efs", taskDefinition=td, desiredCount=1)
        wait_stable(ecs, w.cluster, "efs", timeout=90)
        (first,) = [t for t in service_tasks(ecs, w.cluster, "efs") if t["lastStatus"] == "RUNNING"]
        port = host_port(first)
        wait_http(f"http://127.0.0.1:{port}/")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/file?path=/data/note.txt", data=b"kept across tasks",
                                     method="POST")
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as r:
            assert r.status == 200

        ecs.stop_task(cluster=w.cluster, task=first["taskArn"], reason="replace me")

        def replacement():
            live = [t for t in service_tasks(ecs, w.cluster, "efs")
                    if t["lastStatus"] == "RUNNING" and t["taskArn"] != first["taskArn"]]
            return bool(live), live
        (second,) = wait_until("the service replaces the stopped task", replacement, 90)
        status, body = wait_until("the new task reads the file", lambda: (
            (lambda r: (r[0] == 200, r))(http(f"http://127.0.0.1:{host_port(second)}/file?path=/data/note.txt"))), 30)
        assert body == b"kept across tasks"
    finally:
        for arn in ecs.list_services(cluster=w.cluster)["serviceArns"]:
            ecs.delete_service(cluster=w.cluster, service=arn, force=True)
        for arn in ecs.list_tasks(cluster=w.cluster)["taskArns"]:
            ecs.stop_task(cluster=w.cluster, task=arn)
        wait_until("tasks stopped", lambda: not ecs.list_tasks(cluster=w.cluster)["taskArns"], 60)
        docker("volume", "rm", "-f", volume, check=False)
