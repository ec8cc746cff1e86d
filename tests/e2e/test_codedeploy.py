"""CodeDeploy for ECS (issue 16): applications, deployment groups and configs with the AWS CLI
and boto3; deployments that move a CODE_DEPLOY service's listeners from its original task set
to a replacement one — all at once, canary — under load, StopDeployment's rollback, the ready
wait, a failed deployment, a server killed mid-deployment; task sets as ECS shows them.
Real Docker tasks, the real load balancer; load from wharf-echo.

`wharf up --aws-minute-secs 1` makes AWS's minutes (canary intervals, termination and ready
waits) last a second."""

import hashlib
import json
import time

import pytest
from botocore.exceptions import ClientError

from agentutil import wait_until
from conftest import CliError
from test_zero_downtime import Load, check, free_port, task_definition

CONTAINER = "web"
ROLE = "arn:aws:iam::123456789012:role/ecsCodeDeployRole"


@pytest.fixture
def cd(wharf_factory, monkeypatch):
    monkeypatch.setenv("WHARF_LOG", "info,wharf_lb::proxy=debug")
    return wharf_factory("--aws-minute-secs", "1")


def appspec(td_arn, fmt="json"):
    spec = {"version": 0.0, "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": {
        "TaskDefinition": td_arn, "LoadBalancerInfo": {"ContainerName": CONTAINER, "ContainerPort": 8080}}}}]}
    if fmt == "json":
        return json.dumps(spec)
    return (f"version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n"
            f"        TaskDefinition: \"{td_arn}\"\n        LoadBalancerInfo:\n          ContainerName: \"{CONTAINER}\"\n"
            f"          ContainerPort: 8080\n")


class Stack:
    """Seed 002's setup: two target groups, an ALB with a production listener and a test
    listener (both forwarding to the first group), a CODE_DEPLOY service of `count` tasks, the
    application `AppECS-<cluster>-<service>` and group `DgpECS-<cluster>-<service>`."""

    def __init__(self, w, name, count=2, config="CodeDeployDefault.ECSAllAtOnce", termination=0, ready=None,
                 rollback=True):
        self.w, self.name = w, name
        self.elb, self.ecs, self.deploy = w.client("elbv2"), w.client("ecs"), w.client("codedeploy")
        self.tg_names = [f"{name}-blue", f"{name}-green"]
        self.tgs = [self._target_group(n) for n in self.tg_names]
        lb = self.elb.create_load_balancer(Name=f"{name}-alb", Subnets=["subnet-0a", "subnet-0b"])["LoadBalancers"][0]
        self.prod_port, self.test_port = free_port(), free_port()
        forward = [{"Type": "forward", "TargetGroupArn": self.tgs[0]}]
        self.listeners = [self.elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=p,
                                                   DefaultActions=forward)["Listeners"][0]["ListenerArn"]
                          for p in (self.prod_port, self.test_port)]
        self.prod_url = f"http://127.0.0.1:{self.prod_port}/"
        self.test_url = f"http://127.0.0.1:{self.test_port}/"
        self.ecs.create_service(cluster=w.cluster, serviceName=name, taskDefinition=self.register("v1"),
                                desiredCount=count, launchType="EC2", deploymentController={"type": "CODE_DEPLOY"},
                                loadBalancers=[{"targetGroupArn": self.tgs[0], "containerName": CONTAINER,
                                                "containerPort": 8080}])
        self.count = count
        self.app, self.group = f"AppECS-{w.cluster}-{name}", f"DgpECS-{w.cluster}-{name}"
        self.deploy.create_application(applicationName=self.app, computePlatform="ECS")
        bg = {"terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE",
                                                            "terminationWaitTimeInMinutes": termination},
              "deploymentReadyOption": ready or {"actionOnTimeout": "CONTINUE_DEPLOYMENT"}}
        self.deploy.create_deployment_group(
            applicationName=self.app, deploymentGroupName=self.group, deploymentConfigName=config,
            serviceRoleArn=ROLE, ecsServices=[{"serviceName": name, "clusterName": w.cluster}],
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            blueGreenDeploymentConfiguration=bg,
            autoRollbackConfiguration={"enabled": rollback, "events": ["DEPLOYMENT_FAILURE"]},
            loadBalancerInfo={"targetGroupPairInfoList": [{
                "targetGroups": [{"name": n} for n in self.tg_names],
                "prodTrafficRoute": {"listenerArns": [self.listeners[0]]},
                "testTrafficRoute": {"listenerArns": [self.listeners[1]]}}]})
        self.wait_serving(1)

    def _target_group(self, name):
        tg = self.elb.create_target_group(
            Name=name, Protocol="HTTP", Port=8080, VpcId="vpc-0123456789abcdef0", TargetType="instance",
            HealthCheckPath="/health", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
            HealthyThresholdCount=2, UnhealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
        self.elb.modify_target_group_attributes(
            TargetGroupArn=tg, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "2"}])
        return tg

    def register(self, version, **env):
        td = task_definition(self.name, "bridge", "EC2", version)
        td["containerDefinitions"][0]["environment"] += [{"name": k, "value": v} for k, v in env.items()]
        return self.ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]

    def service(self):
        return self.ecs.describe_services(cluster=self.w.cluster, services=[self.name])["services"][0]

    def wait_serving(self, revision, timeout=180):
        """One task set, of `revision`, at full size, and production forwarding to it."""
        def done():
            svc = self.service()
            sets = svc["taskSets"]
            ok = (len(sets) == 1 and sets[0]["taskDefinition"].endswith(f":{revision}")
                  and sets[0]["runningCount"] == self.count and sets[0]["stabilityStatus"] == "STEADY_STATE")
            return ok, [(s["taskDefinition"], s["status"], s["runningCount"]) for s in sets]
        wait_until(f"task set of revision {revision}", done, timeout)

    def start(self, td_arn, config=None, fmt="json"):
        content = appspec(td_arn, fmt)
        kw = {"deploymentConfigName": config} if config else {}
        return self.deploy.create_deployment(
            applicationName=self.app, deploymentGroupName=self.group, **kw,
            revision={"revisionType": "AppSpecContent",
                      "appSpecContent": {"content": content, "sha256": hashlib.sha256(content.encode()).hexdigest()}},
        )["deploymentId"]

    def status(self, dep):
        return self.deploy.get_deployment(deploymentId=dep)["deploymentInfo"]["status"]

    def statuses(self, dep, until, timeout=180):
        """Every distinct status of deployment `dep`, polled until one of `until`."""
        seen = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.status(dep)
            if not seen or seen[-1] != s:
                seen.append(s)
            if s in until:
                return seen
            time.sleep(0.3)
        raise AssertionError(f"deployment {dep} did not reach {until}: {seen}")

    def weights(self, listener):
        acts = self.elb.describe_listeners(ListenerArns=[listener])["Listeners"][0]["DefaultActions"]
        fc = acts[0].get("ForwardConfig")
        if not fc:
            return {self.tgs.index(acts[0]["TargetGroupArn"]): 1}
        return {self.tgs.index(g["TargetGroupArn"]): g["Weight"] for g in fc["TargetGroups"] if g["Weight"]}

    def target(self, dep):
        return self.deploy.get_deployment_target(deploymentId=dep, targetId=f"{self.w.cluster}:{self.name}")[
            "deploymentTarget"]["ecsTarget"]


def test_all_at_once_with_the_cli_under_load_and_roles_swap(cd):
    w = cd
    s = Stack(w, "cdall")
    load = Load(s.prod_url, 100)
    try:
        time.sleep(1)
        td2 = s.register("v2")
        dep = s.start(td2, fmt="yaml")
        seen = s.statuses(dep, {"Succeeded", "Failed", "Stopped"})
        s.wait_serving(2)
        time.sleep(1)
    finally:
        result = load.stop()
    check(w, result, "CodeDeploy all at once")
    assert seen[-1] == "Succeeded" and seen[0] in ("Created", "InProgress"), seen
    assert "v1" in result["versions"] and "v2" in result["versions"], result["versions"]
    assert s.weights(s.listeners[0]) == {1: 100} and s.weights(s.listeners[1]) == {1: 100}
    info = w.aws("deploy", "get-deployment", "--deployment-id", dep)["deploymentInfo"]
    assert info["deploymentOverview"]["Succeeded"] == 1 and info["computePlatform"] == "ECS"
    assert info["deploymentConfigName"] == "CodeDeployDefault.ECSAllAtOnce"
    events = s.target(dep)["lifecycleEvents"]
    assert [e["lifecycleEventName"] for e in events] == [
        "BeforeInstall", "Install", "AfterInstall", "AllowTestTraffic", "AfterAllowTestTraffic",
        "BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"]
    assert all(e["status"] == "Succeeded" for e in events), events
    starts = [e["startTime"] for e in events]
    assert starts == sorted(starts), events

    # The next deployment starts in the first group again (the roles swapped), with the CLI.
    td3 = s.register("v3")
    content = appspec(td3)
    dep3 = w.aws("deploy", "create-deployment", "--application-name", s.app, "--deployment-group-name", s.group,
                 "--revision", json.dumps({"revisionType": "AppSpecContent", "appSpecContent": {"content": content}}))[
        "deploymentId"]
    w.aws("deploy", "wait", "deployment-successful", "--deployment-id", dep3)
    s.wait_serving(3)
    assert s.weights(s.listeners[0]) == {0: 100}
    listed = w.aws("deploy", "list-deployments", "--application-name", s.app, "--deployment-group-name", s.group)
    assert listed["deployments"] == [dep3, dep]
