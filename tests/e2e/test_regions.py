"""`wharf up` gives capacity in every region a client uses: the seeds' users work in
ap-northeast-2 while `wharf up` defaults to us-east-1. With no flags, a client in Seoul runs a
task on `default` and a FARGATE service with `capacityProviderStrategy` FARGATE_SPOT, as it
would on ECS; DescribeCapacityProviders shows the built-in providers and CreateCapacityProvider
is refused with a clear error rather than stored and ignored."""

import pytest
from botocore.exceptions import ClientError

from agentutil import echo, register, wait_task, wait_until
from scheduler_support import wait_stable

SEOUL = "ap-northeast-2"
AWSVPC = {"awsvpcConfiguration": {"subnets": ["subnet-12345678"], "assignPublicIp": "DISABLED"}}


def test_a_client_in_another_region_runs_tasks_and_fargate_spot_services(wharf_agent):
    w = wharf_agent
    ecs = w.client("ecs", region_name=SEOUL)
    try:
        td = register(ecs, "seoul-web", echo())
        # The first request from Seoul brought the local agent there: RunTask finds it.
        out = ecs.run_task(cluster="default", taskDefinition=td)
        assert out["failures"] == [], out["failures"]
        task = wait_task(ecs, "default", out["tasks"][0]["taskArn"], timeout=60)
        assert task["clusterArn"] == f"arn:aws:ecs:{SEOUL}:123456789012:cluster/default"
        (instance,) = ecs.list_container_instances(cluster="default")["containerInstanceArns"]
        assert instance.startswith(f"arn:aws:ecs:{SEOUL}:") and task["containerInstanceArn"] == instance

        fargate = register(ecs, "seoul-fargate", echo(), networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
                           cpu="256", memory="512")
        ecs.create_service(cluster="default", serviceName="spot", taskDefinition=fargate, desiredCount=1,
                           capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
                           networkConfiguration=AWSVPC)
        svc = wait_stable(ecs, "default", "spot", timeout=90)
        assert svc["runningCount"] == 1
        (spot_arn,) = ecs.list_tasks(cluster="default", serviceName="spot")["taskArns"]
        spot = ecs.describe_tasks(cluster="default", tasks=[spot_arn])["tasks"][0]
        assert spot["capacityProviderName"] == "FARGATE_SPOT" and spot["lastStatus"] == "RUNNING"

        # The server's own region still has its own instance, separate from Seoul's.
        home = w.client("ecs").list_container_instances(cluster="default")["containerInstanceArns"]
        assert len(home) == 1 and home[0] != instance
    finally:
        for arn in ecs.list_services(cluster="default")["serviceArns"]:
            ecs.delete_service(cluster="default", service=arn, force=True)
        for arn in ecs.list_tasks(cluster="default")["taskArns"]:
            ecs.stop_task(cluster="default", task=arn)
        wait_until("Seoul's tasks stopped", lambda: not ecs.list_tasks(cluster="default")["taskArns"], 60)


def test_capacity_providers_are_fargates_own(wharf):
    ecs = wharf.client("ecs", region_name=SEOUL)
    got = ecs.describe_capacity_providers()["capacityProviders"]
    assert [(p["name"], p["status"]) for p in got] == [("FARGATE", "ACTIVE"), ("FARGATE_SPOT", "ACTIVE")]
    assert got[0]["capacityProviderArn"] == f"arn:aws:ecs:{SEOUL}:123456789012:capacity-provider/FARGATE"
    out = ecs.describe_capacity_providers(capacityProviders=["FARGATE_SPOT", "my-asg"])
    assert [p["name"] for p in out["capacityProviders"]] == ["FARGATE_SPOT"]
    assert out["failures"] == [{"arn": "my-asg", "reason": "MISSING"}]
    with pytest.raises(ClientError) as e:
        ecs.create_capacity_provider(name="my-asg", autoScalingGroupProvider={
            "autoScalingGroupArn": "arn:aws:autoscaling:ap-northeast-2:123456789012:autoScalingGroup:x:autoScalingGroupName/asg"})
    assert e.value.response["Error"]["Code"] == "UnsupportedFeatureException"
    assert "Auto Scaling" in e.value.response["Error"]["Message"]
