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
from test_blue_green import versions
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
    group = w.aws("deploy", "get-deployment-group", "--application-name", s.app, "--deployment-group-name",
                  s.group)["deploymentGroupInfo"]
    assert group["lastAttemptedDeployment"]["deploymentId"] == dep, group
    assert group["lastSuccessfulDeployment"]["status"] == "Succeeded", group

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


def test_canary_share_then_stop_deployment_rolls_back_with_no_failed_request(cd):
    """A custom 10 % canary with a 300-minute interval (300 s here): during the interval ~10 % of
    production answers are green's and the test listener is all green's; `aws deploy
    stop-deployment --auto-rollback-enabled` returns all traffic to blue at once."""
    w = cd
    s = Stack(w, "cdcan", count=2)
    w.aws("deploy", "create-deployment-config", "--deployment-config-name", "Canary10Percent300Minutes",
          "--compute-platform", "ECS", "--traffic-routing-config",
          "type=TimeBasedCanary,timeBasedCanary={canaryPercentage=10,canaryInterval=300}")
    load = Load(s.prod_url, 100)
    try:
        time.sleep(1)
        dep = s.start(s.register("v2"), config="Canary10Percent300Minutes")
        wait_until("the canary step", lambda: (s.weights(s.listeners[0]) == {0: 90, 1: 10}, s.weights(s.listeners[0])),
                   120)
        info = s.target(dep)
        assert {t["taskSetLabel"]: t["trafficWeight"] for t in info["taskSetsInfo"]} == {"Blue": 90.0, "Green": 10.0}
        assert [e["status"] for e in info["lifecycleEvents"]][-2:] == ["InProgress", "Pending"], info
        # 400 answers: one standard deviation of the share is 1.5 points.
        share = versions(s.prod_url, 400)
        assert abs(share["v2"] / 4 - 10) <= 5, share
        assert versions(s.test_url, 50) == {"v2": 50}
        assert s.status(dep) == "InProgress" and s.weights(s.listeners[0]) == {0: 90, 1: 10}
        stopped = w.aws("deploy", "stop-deployment", "--deployment-id", dep, "--auto-rollback-enabled")
        assert stopped["status"] == "Pending"
        seen = s.statuses(dep, {"Succeeded", "Failed", "Stopped"})
        assert seen[-1] == "Stopped", seen
        assert s.weights(s.listeners[0]) == {0: 100} and s.weights(s.listeners[1]) == {0: 100}
        s.wait_serving(1)
        time.sleep(1)
    finally:
        result = load.stop()
    check(w, result, "CodeDeploy canary stopped and rolled back")
    info = w.aws("deploy", "get-deployment", "--deployment-id", dep)["deploymentInfo"]
    assert "rollbackInfo" in info and info["errorInformation"]["code"] == "MANUAL_STOP", info
    with pytest.raises(ClientError) as e:
        s.deploy.stop_deployment(deploymentId=dep)
    assert e.value.response["Error"]["Code"] == "DeploymentAlreadyCompletedException"
    # The next deployment goes where the stopped one went (production never left the first group).
    dep2 = s.start(s.register("v3"), config="CodeDeployDefault.ECSAllAtOnce")
    assert s.statuses(dep2, {"Succeeded", "Failed", "Stopped"})[-1] == "Succeeded"
    s.wait_serving(3)
    assert s.weights(s.listeners[0]) == {1: 100}


def test_ready_wait_and_termination_wait_hold_until_continue_deployment(cd):
    """deploymentReadyOption STOP_DEPLOYMENT: the deployment is Ready with green behind the
    test listener only, until ContinueDeployment; the termination wait keeps both task sets
    until ContinueDeployment TERMINATION_WAIT ends it early."""
    w = cd
    s = Stack(w, "cdready", count=1, termination=600,
              ready={"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": 600})
    group = w.aws("deploy", "get-deployment-group", "--application-name", s.app, "--deployment-group-name", s.group)
    bg = group["deploymentGroupInfo"]["blueGreenDeploymentConfiguration"]
    assert bg["deploymentReadyOption"]["waitTimeInMinutes"] == 600
    assert bg["terminateBlueInstancesOnDeploymentSuccess"]["terminationWaitTimeInMinutes"] == 600
    dep = s.start(s.register("v2"))
    assert s.statuses(dep, {"Ready"}, timeout=120)[-1] == "Ready"
    assert versions(s.test_url, 20) == {"v2": 20} and versions(s.prod_url, 20) == {"v1": 20}
    info = w.aws("deploy", "get-deployment", "--deployment-id", dep)["deploymentInfo"]
    assert info["deploymentOverview"]["Ready"] == 1
    with pytest.raises(ClientError) as e:
        s.deploy.continue_deployment(deploymentId=dep, deploymentWaitType="TERMINATION_WAIT")
    assert e.value.response["Error"]["Code"] == "DeploymentIsNotInReadyStateException"
    w.aws("deploy", "continue-deployment", "--deployment-id", dep)
    wait_until("the termination wait", lambda: (
        w.aws("deploy", "get-deployment", "--deployment-id", dep)["deploymentInfo"]
        .get("instanceTerminationWaitTimeStarted"), None), 120)
    assert s.status(dep) == "InProgress" and versions(s.prod_url, 20) == {"v2": 20}
    assert len(s.service()["taskSets"]) == 2
    w.aws("deploy", "continue-deployment", "--deployment-id", dep, "--deployment-wait-type", "TERMINATION_WAIT")
    assert s.statuses(dep, {"Succeeded", "Failed", "Stopped"})[-1] == "Succeeded"
    s.wait_serving(2)


def test_an_unhealthy_replacement_fails_and_rolls_back_and_a_restart_resumes(cd):
    """Green failing its health checks: the deployment Failed, traffic never left blue, no
    failed request. Then a server killed -9 in the middle of a canary: the deployment
    finishes after the restart."""
    w = cd
    s = Stack(w, "cdfail", count=2)
    load = Load(s.prod_url, 100)
    try:
        time.sleep(1)
        dep = s.start(s.register("v2", UNHEALTHY="1"))
        seen = s.statuses(dep, {"Succeeded", "Failed", "Stopped"}, timeout=240)
        s.wait_serving(1)
        time.sleep(1)
    finally:
        result = load.stop()
    check(w, result, "CodeDeploy to an unhealthy replacement")
    assert seen[-1] == "Failed" and result["versions"].keys() == {"v1"}, (seen, result["versions"])
    info = s.deploy.get_deployment(deploymentId=dep)["deploymentInfo"]
    assert info["errorInformation"]["code"] == "ECS_UPDATE_ERROR" and "rollbackInfo" in info, info
    events = {e["lifecycleEventName"]: e["status"] for e in s.target(dep)["lifecycleEvents"]}
    assert events["Install"] == "Failed" and events["AllowTraffic"] == "Skipped", events

    dep = s.start(s.register("v3"), config="CodeDeployDefault.ECSCanary10Percent5Minutes")
    wait_until("the canary step", lambda: (s.weights(s.listeners[0]) == {0: 90, 1: 10}, s.weights(s.listeners[0])),
               120)
    w.kill9_and_restart()
    assert s.statuses(dep, {"Succeeded", "Failed", "Stopped"})[-1] == "Succeeded"
    s.wait_serving(3)
    assert s.weights(s.listeners[0]) == {1: 100}


def test_codedeploy_api_refuses_bad_input_with_its_own_errors(cd):
    w = cd
    s = Stack(w, "cdapi", count=1)
    d = s.deploy

    def error(call, **kw):
        with pytest.raises(ClientError) as e:
            call(**kw)
        return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]

    assert error(d.create_application, applicationName="srv", computePlatform="Server")[0] == \
        "InvalidComputePlatformException"
    assert error(d.create_application, applicationName=s.app, computePlatform="ECS")[0] == \
        "ApplicationAlreadyExistsException"
    assert error(d.get_application, applicationName="ghost") == (
        "ApplicationDoesNotExistException", "No application found for name: ghost")
    assert error(d.get_deployment_group, applicationName=s.app, deploymentGroupName="ghost") == (
        "DeploymentGroupDoesNotExistException", "No Deployment Group found for name: ghost")
    base = dict(applicationName=s.app, serviceRoleArn=ROLE,
                deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
                ecsServices=[{"serviceName": "cdapi", "clusterName": w.cluster}],
                loadBalancerInfo={"targetGroupPairInfoList": [{"targetGroups": [{"name": n} for n in s.tg_names],
                                                               "prodTrafficRoute": {"listenerArns": [s.listeners[0]]}}]})
    cases = [
        (dict(deploymentStyle={"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"}),
         "InvalidDeploymentStyleException"),
        (dict(ecsServices=[{"serviceName": "ghost", "clusterName": w.cluster}]), "InvalidECSServiceException"),
        (dict(loadBalancerInfo={"targetGroupPairInfoList": [{"targetGroups": [{"name": "ghost"}, {"name": "x"}],
                                                             "prodTrafficRoute": {"listenerArns": [s.listeners[0]]}}]}),
         "InvalidTargetGroupPairException"),
        (dict(deploymentConfigName="ghost"), "DeploymentConfigDoesNotExistException"),
        (dict(blueGreenDeploymentConfiguration={"deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT",
                                                                          "waitTimeInMinutes": 0}}),
         "InvalidBlueGreenDeploymentConfigurationException"),
        (dict(alarmConfiguration={"enabled": True, "alarms": [{"name": "cpu"}]}), "InvalidAlarmConfigException"),
    ]
    for change, code in cases:
        assert error(d.create_deployment_group, **dict(base, deploymentGroupName="bad", **change))[0] == code, change
    assert d.list_deployment_groups(applicationName=s.app)["deploymentGroups"] == [s.group]

    configs = d.list_deployment_configs()["deploymentConfigsList"]
    assert {"CodeDeployDefault.ECSAllAtOnce", "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
            "CodeDeployDefault.ECSLinear10PercentEvery3Minutes", "CodeDeployDefault.ECSCanary10Percent5Minutes",
            "CodeDeployDefault.ECSCanary10Percent15Minutes"} <= set(configs)
    canary = d.get_deployment_config(deploymentConfigName="CodeDeployDefault.ECSCanary10Percent15Minutes")
    assert canary["deploymentConfigInfo"]["trafficRoutingConfig"] == {
        "type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 15}}
    assert error(d.create_deployment_config, deploymentConfigName="x", computePlatform="ECS",
                 trafficRoutingConfig={"type": "TimeBasedLinear",
                                       "timeBasedLinear": {"linearPercentage": 0, "linearInterval": 1}})[0] == \
        "InvalidTrafficRoutingConfigurationException"
    assert error(d.delete_deployment_config, deploymentConfigName="CodeDeployDefault.ECSAllAtOnce")[0] == \
        "InvalidDeploymentConfigNameException"

    td = s.register("v2")
    revision = {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec(td), "sha256": "0" * 64}}
    assert error(d.create_deployment, applicationName=s.app, deploymentGroupName=s.group, revision=revision)[0] == \
        "InvalidRevisionException"
    hooks = appspec(td, "yaml") + "Hooks:\n  - BeforeAllowTraffic: \"arn:aws:lambda:us-east-1:123456789012:function:f\"\n"
    code, message = error(d.create_deployment, applicationName=s.app, deploymentGroupName=s.group,
                          revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": hooks}})
    assert code == "InvalidRevisionException" and "Lambda" in message
    no_td = json.dumps({"version": 0.0, "Resources": [{"TargetService": {"Type": "AWS::ECS::Service",
                                                                         "Properties": {}}}]})
    assert error(d.create_deployment, applicationName=s.app, deploymentGroupName=s.group,
                 revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": no_td}})[0] == \
        "InvalidRevisionException"
    assert error(d.get_deployment, deploymentId="d-ABCDEFGHI")[0] == "DeploymentDoesNotExistException"
    assert d.list_deployments(applicationName=s.app)["deployments"] == []

    # ECS refuses what only CodeDeploy may change on the service, and shows task sets.
    ecs = s.ecs
    assert error(ecs.update_service, cluster=w.cluster, service="cdapi", taskDefinition=td) == (
        "InvalidParameterException", "Unable to update task definition on services with a CODE_DEPLOY deployment "
        "controller. Use AWS CodeDeploy to trigger a new deployment.")
    svc = s.service()
    assert svc["deployments"] == [] and svc["deploymentController"] == {"type": "CODE_DEPLOY"}
    (ts,) = svc["taskSets"]
    assert ts["id"].startswith("ecs-svc/") and ts["status"] == "PRIMARY" and ts["scale"] == {
        "value": 100.0, "unit": "PERCENT"}
    assert ts["taskSetArn"].endswith(f"task-set/{w.cluster}/cdapi/{ts['id']}")
    described = ecs.describe_task_sets(cluster=w.cluster, service="cdapi", taskSets=[ts["taskSetArn"], "ghost"])
    assert described["taskSets"][0]["id"] == ts["id"] and described["failures"][0]["reason"] == "MISSING"
    assert error(ecs.create_task_set, cluster=w.cluster, service="cdapi", taskDefinition=td)[0] == \
        "InvalidParameterException"
    ecs.update_service(cluster=w.cluster, service="cdapi", desiredCount=2)
    s.count = 2
    s.wait_serving(1)


def test_external_task_sets_are_made_scaled_promoted_and_deleted(cd):
    """The EXTERNAL controller: a third party's task sets, each kept at ceil(desiredCount ×
    scale / 100) tasks, registered with its own target group; promote, scale, delete."""
    w = cd
    ecs, elb = w.client("ecs"), w.client("elbv2")
    tg = elb.create_target_group(Name="ext-tg", Protocol="HTTP", Port=8080, VpcId="vpc-0123456789abcdef0",
                                 TargetType="instance", HealthCheckPath="/health")["TargetGroups"][0]["TargetGroupArn"]
    lb = elb.create_load_balancer(Name="ext-alb", Subnets=["subnet-0a", "subnet-0b"])["LoadBalancers"][0]
    elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=free_port(),
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    svc = ecs.create_service(cluster=w.cluster, serviceName="ext", desiredCount=4,
                             deploymentController={"type": "EXTERNAL"})["service"]
    assert svc["taskSets"] == [] and svc["deployments"] == [] and "taskDefinition" not in svc

    def register(version):
        return ecs.register_task_definition(**task_definition("ext", "bridge", "EC2", version))["taskDefinition"][
            "taskDefinitionArn"]

    def sets():
        return {t["externalId"]: t for t in ecs.describe_task_sets(cluster=w.cluster, service="ext")["taskSets"]}

    def counts():
        got = {k: (t["status"], t["computedDesiredCount"], t["runningCount"]) for k, t in sets().items()}
        return got

    lbs = [{"targetGroupArn": tg, "containerName": CONTAINER, "containerPort": 8080}]
    a = ecs.create_task_set(cluster=w.cluster, service="ext", taskDefinition=register("v1"), externalId="a",
                            launchType="EC2", loadBalancers=lbs)["taskSet"]
    assert a["status"] == "ACTIVE" and a["scale"] == {"value": 100.0, "unit": "PERCENT"} and a["id"].startswith(
        "ecs-svc/")
    wait_until("task set a at 4", lambda: (counts() == {"a": ("ACTIVE", 4, 4)}, counts()), 120)
    b = ecs.create_task_set(cluster=w.cluster, service="ext", taskDefinition=register("v2"), externalId="b",
                            launchType="EC2", loadBalancers=lbs, scale={"value": 50.0, "unit": "PERCENT"})["taskSet"]
    wait_until("task set b at 2", lambda: (counts() == {"a": ("ACTIVE", 4, 4), "b": ("ACTIVE", 2, 2)}, counts()), 120)
    ecs.update_service_primary_task_set(cluster=w.cluster, service="ext", primaryTaskSet=b["taskSetArn"])
    assert ecs.describe_services(cluster=w.cluster, services=["ext"])["services"][0]["taskDefinition"].endswith(
        "ext:2")
    ecs.update_task_set(cluster=w.cluster, service="ext", taskSet=b["id"], scale={"value": 100.0, "unit": "PERCENT"})
    ecs.update_task_set(cluster=w.cluster, service="ext", taskSet=a["id"], scale={"value": 0.0, "unit": "PERCENT"})
    wait_until("b at 4, a at 0", lambda: (counts() == {"a": ("ACTIVE", 0, 0), "b": ("PRIMARY", 4, 4)}, counts()), 120)
    with pytest.raises(ClientError) as e:
        ecs.delete_task_set(cluster=w.cluster, service="ext", taskSet=b["id"])
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    gone = ecs.delete_task_set(cluster=w.cluster, service="ext", taskSet=a["id"])["taskSet"]
    assert gone["status"] == "DRAINING"
    wait_until("a gone", lambda: (set(sets()) == {"b"}, counts()), 60)
    with pytest.raises(ClientError) as e:
        ecs.update_task_set(cluster=w.cluster, service="ext", taskSet=a["id"], scale={"value": 1.0, "unit": "PERCENT"})
    assert e.value.response["Error"]["Code"] == "TaskSetNotFoundException"
    ecs.update_service(cluster=w.cluster, service="ext", desiredCount=2)
    wait_until("b at 2", lambda: (counts() == {"b": ("PRIMARY", 2, 2)}, counts()), 60)

    def registered():
        targets = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        return len([t for t in targets if t["TargetHealth"]["State"] != "draining"]) == 2, targets
    wait_until("b's two tasks registered", registered, 60)
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster=w.cluster, service="ext", taskDefinition=register("v3"))
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"


def test_a_ready_wait_that_runs_out_stops_the_deployment(cd):
    """STOP_DEPLOYMENT with a 1-minute wait (1 s here) and nobody continuing: the deployment is
    Stopped (TIMEOUT) and production never left blue."""
    w = cd
    s = Stack(w, "cdwait", count=1, ready={"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": 1})
    dep = s.start(s.register("v2"))
    seen = s.statuses(dep, {"Succeeded", "Failed", "Stopped"})
    assert seen[-1] == "Stopped" and "Ready" in seen, seen
    info = s.deploy.get_deployment(deploymentId=dep)["deploymentInfo"]
    assert info["errorInformation"]["code"] == "TIMEOUT", info
    s.wait_serving(1)
    assert s.weights(s.listeners[0]) == {0: 100} and versions(s.prod_url, 10) == {"v1": 10}
