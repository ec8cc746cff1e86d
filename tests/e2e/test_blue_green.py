"""Blue/green, linear and canary deployments with the ECS deployment controller (issue 15):
green starts beside blue in the target group that does not serve production, the test and
production listener rules are re-weighted (read back with `describe-rules`), PAUSE hooks hold
a stage until ContinueServiceDeployment, and a rollback returns traffic to blue at once.
Real Docker tasks, the real load balancer, the AWS CLI and boto3; load from wharf-echo.

`wharf up --aws-minute-secs 1` makes AWS's minutes (bake times, step bakes, hook timeouts)
last a second."""

import time
import urllib.request
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from agentutil import wait_until
from test_zero_downtime import AWSVPC, Load, check, free_port, healthy, task_definition

CONTAINER = "web"
ROLE = "arn:aws:iam::000000000000:role/ecsInfrastructureRoleForLoadBalancers"


@pytest.fixture
def bg(wharf_factory, monkeypatch):
    monkeypatch.setenv("WHARF_LOG", "info,wharf_lb::proxy=debug")
    return wharf_factory("--aws-minute-secs", "1")


class Stack:
    """Two target groups, a production listener whose rule forwards to the first, and a test
    listener whose default rule does too."""

    def __init__(self, w, name, network="bridge", launch="EC2"):
        self.w, self.name, self.network, self.launch = w, name, network, launch
        self.elb, self.ecs = w.client("elbv2"), w.client("ecs")
        self.tgs = [self._target_group(f"{name}-{c}") for c in ("a", "b")]
        lb = self.elb.create_load_balancer(Name=f"{name}-lb", Subnets=["subnet-0a", "subnet-0b"])["LoadBalancers"][0]
        self.prod_port, self.test_port = free_port(), free_port()
        forward = [{"Type": "forward", "TargetGroupArn": self.tgs[0]}]
        prod = self.elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=self.prod_port,
                                        DefaultActions=[{"Type": "fixed-response",
                                                         "FixedResponseConfig": {"StatusCode": "404"}}])
        self.prod_rule = self.elb.create_rule(
            ListenerArn=prod["Listeners"][0]["ListenerArn"], Priority=1, Actions=forward,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}])["Rules"][0]["RuleArn"]
        test = self.elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=self.test_port,
                                        DefaultActions=forward)["Listeners"][0]
        rules = self.elb.describe_rules(ListenerArn=test["ListenerArn"])["Rules"]
        self.test_rule = next(r["RuleArn"] for r in rules if r["IsDefault"])
        self.prod_url = f"http://127.0.0.1:{self.prod_port}/"
        self.test_url = f"http://127.0.0.1:{self.test_port}/"

    def _target_group(self, name):
        tg = self.elb.create_target_group(
            Name=name, Protocol="HTTP", Port=8080, VpcId="vpc-0123456789abcdef0",
            TargetType="instance" if self.network == "bridge" else "ip",
            HealthCheckPath="/health", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
            HealthyThresholdCount=2, UnhealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
        self.elb.modify_target_group_attributes(
            TargetGroupArn=tg, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "2"}])
        return tg

    def register(self, version, **env):
        td = task_definition(self.name, self.network, self.launch, version)
        td["containerDefinitions"][0]["environment"] += [{"name": k, "value": v} for k, v in env.items()]
        return self.ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]

    def load_balancers(self, test_rule=True):
        advanced = {"alternateTargetGroupArn": self.tgs[1], "productionListenerRule": self.prod_rule,
                    "roleArn": ROLE}
        if test_rule:
            advanced["testListenerRule"] = self.test_rule
        return [{"targetGroupArn": self.tgs[0], "containerName": CONTAINER, "containerPort": 8080,
                 "advancedConfiguration": advanced}]

    def create_service(self, count, config, **kw):
        if self.network == "awsvpc":
            kw["networkConfiguration"] = AWSVPC
        self.ecs.create_service(cluster=self.w.cluster, serviceName=self.name, taskDefinition=self.register("v1"),
                                desiredCount=count, loadBalancers=self.load_balancers(), deploymentConfiguration=config,
                                launchType=self.launch, **kw)
        self.wait_done(1, count)

    def service(self):
        return self.ecs.describe_services(cluster=self.w.cluster, services=[self.name])["services"][0]

    def current(self):
        arn = self.service()["currentServiceDeployment"]
        return self.ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]

    def wait_done(self, revision, count, timeout=180):
        def done():
            svc = self.service()
            deps = svc["deployments"]
            return (len(deps) == 1 and deps[0]["taskDefinition"].endswith(f":{revision}")
                    and deps[0].get("rolloutState") == "COMPLETED" and svc["runningCount"] == count), \
                [(d["taskDefinition"], d.get("rolloutState"), d["runningCount"]) for d in deps]
        wait_until(f"revision {revision} to complete", done, timeout)

    def wait_stage(self, stage, timeout=120):
        wait_until(f"stage {stage}", lambda: (self.current().get("lifecycleStage") == stage, self.current()), timeout)
        return self.current()

    def weights(self, rule):
        r = self.elb.describe_rules(RuleArns=[rule])["Rules"][0]
        groups = r["Actions"][0]["ForwardConfig"]["TargetGroups"]
        return {self.tgs.index(g["TargetGroupArn"]): g["Weight"] for g in groups}

    def deploy(self, version):
        arn = self.register(version)
        self.ecs.update_service(cluster=self.w.cluster, service=self.name, taskDefinition=arn)
        return int(arn.rsplit(":", 1)[1])


def versions(url, n):
    """The VERSION of `n` answers through `url` (sequential, keep-alive not needed)."""
    seen = Counter()
    for _ in range(n):
        with urllib.request.urlopen(url + "env", timeout=5) as r:
            assert r.status == 200
            seen[__import__("json").loads(r.read())["VERSION"]] += 1
    return seen


def test_blue_green_under_load_bakes_then_cleans_up_and_swaps_roles(bg, tmp_path):
    w = bg
    s = Stack(w, "bg")
    s.create_service(4, {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 4})
    # The first deployment made the production rule forward to the first group.
    assert s.weights(s.prod_rule) == {0: 100, 1: 0}
    load = Load(s.prod_url, 100)
    try:
        time.sleep(1)
        revision = s.deploy("v2")
        bake = s.wait_stage("BAKE_TIME")
        # Both revisions run during the bake; production is green's, blue is still registered.
        svc = s.service()
        assert len(svc["deployments"]) == 2 and svc["deployments"][0]["status"] == "PRIMARY", svc["deployments"]
        assert [d["runningCount"] for d in svc["deployments"]] == [4, 4]
        assert s.weights(s.prod_rule) == {0: 0, 1: 100}
        assert s.weights(s.test_rule) == {0: 0, 1: 100}
        assert bake["targetServiceRevision"]["requestedProductionTrafficWeight"] == 100.0
        assert len(healthy(w, s.tgs[0])) == 4 and len(healthy(w, s.tgs[1])) == 4
        # services-stable returns after CLEAN_UP, not before.
        w.aws("ecs", "wait", "services-stable", "--cluster", w.cluster, "--services", "bg")
        done = s.ecs.describe_service_deployments(
            serviceDeploymentArns=[bake["serviceDeploymentArn"]])["serviceDeployments"][0]
        assert done["status"] == "SUCCESSFUL" and done["lifecycleStage"] == "CLEAN_UP", done
        s.wait_done(revision, 4)
        time.sleep(1)
        # The next deployment starts in the first group and swaps the roles back.
        revision = s.deploy("v3")
        s.wait_stage("SCALE_UP")
        assert s.weights(s.prod_rule) == {0: 0, 1: 100}
        w.aws("ecs", "wait", "services-stable", "--cluster", w.cluster, "--services", "bg")
        s.wait_done(revision, 4)
        assert s.weights(s.prod_rule) == {0: 100, 1: 0}
        time.sleep(1)
    finally:
        result = load.stop()
    check(w, result, "blue/green v1 → v2 → v3, 100 clients")
    assert set(result["versions"]) == {"v1", "v2", "v3"}, result["versions"]
    stages = [e["message"] for e in s.service()["events"] if "lifecycle stage" in e["message"]]
    assert any("CLEAN_UP" in m for m in stages), stages
    revisions = s.ecs.describe_service_revisions(
        serviceRevisionArns=[s.service()["currentServiceRevisions"][0]["arn"]])["serviceRevisions"][0]
    assert revisions["resolvedConfiguration"]["loadBalancers"][0]["targetGroupArn"] == s.tgs[0]


@pytest.mark.parametrize("config,network,launch", [
    ({"strategy": "BLUE_GREEN"}, "awsvpc", "FARGATE"),
    ({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 2}}, "awsvpc", "EC2"),
    ({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 2}},
     "bridge", "EC2"),
], ids=["blue-green-awsvpc-FARGATE", "linear-awsvpc-EC2", "canary-bridge-EC2"])
def test_traffic_shifting_deployments_under_load_lose_no_request(bg, config, network, launch):
    """The zero-downtime rollout test (test_zero_downtime.py) with each strategy that shifts
    traffic, across the network modes and launch types: 100 keep-alive clients, 0 failures."""
    s = Stack(bg, config["strategy"].lower().replace("_", ""), network, launch)
    s.create_service(2, config)
    load = Load(s.prod_url, 100)
    try:
        time.sleep(1)
        revision = s.deploy("v2")
        s.wait_done(revision, 2)
        time.sleep(1)
    finally:
        result = load.stop()
    check(bg, result, f"{config['strategy']} {network}/{launch}, 100 clients, v1 → v2")
    assert set(result["versions"]) == {"v1", "v2"}, result["versions"]


@pytest.mark.parametrize("config,steps", [
    ({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 8}},
     [25, 50, 75]),
    ({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 8}}, [10]),
], ids=["linear-25", "canary-10"])
def test_linear_and_canary_steps_split_traffic_by_their_weights(bg, config, steps):
    s = Stack(bg, config["strategy"].lower())
    s.create_service(2, config)
    revision = s.deploy("v2")
    measured = []
    for step in steps:
        wait_until(f"the {step} % step", lambda: s.weights(s.prod_rule).get(1) == step, 60)
        seen = versions(s.prod_url, 1000)
        # The weights held while we measured (a step lasts 8 s).
        assert s.weights(s.prod_rule).get(1) == step
        share = 100 * seen["v2"] / sum(seen.values())
        measured.append((step, round(share, 1)))
        assert abs(share - step) <= 5, measured
    print(f"{config['strategy']}: step weight vs measured v2 share {measured}")
    s.wait_done(revision, 2, timeout=120)
    assert s.weights(s.prod_rule) == {0: 0, 1: 100}


def test_a_pause_hook_holds_test_traffic_on_green_until_continued_or_rolled_back(bg):
    s = Stack(bg, "hook")
    hook = {"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 600, "action": "ROLLBACK"}}
    s.create_service(2, {"strategy": "BLUE_GREEN"})
    # Hooks added later apply to the deployments after (this update starts none).
    s.ecs.update_service(cluster=bg.cluster, service="hook",
                         deploymentConfiguration={"strategy": "BLUE_GREEN", "lifecycleHooks": [hook]})
    assert len(s.service()["deployments"]) == 1
    load = Load(s.prod_url, 16)
    try:
        time.sleep(1)
        revision = s.deploy("v2")
        d = s.wait_stage("POST_TEST_TRAFFIC_SHIFT")
        wait_until("the hook", lambda: (s.current().get("lifecycleHookDetails", [{}])[0].get("status")
                                        == "AWAITING_ACTION", s.current()), 30)
        d = s.current()
        assert versions(s.test_url, 20) == Counter({"v2": 20})
        assert versions(s.prod_url, 20) == Counter({"v1": 20})
        hook_id = d["lifecycleHookDetails"][0]["hookId"]
        with pytest.raises(ClientError) as e:
            s.ecs.continue_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"], hookId="nope")
        assert e.value.response["Error"]["Code"] == "InvalidParameterException"
        s.ecs.continue_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"], hookId=hook_id,
                                          action="CONTINUE")
        s.wait_done(revision, 2)
        # A second deployment, paused and rolled back: production never served it.
        revision = s.deploy("v3")
        s.wait_stage("POST_TEST_TRAFFIC_SHIFT")
        wait_until("the hook", lambda: (s.current().get("lifecycleHookDetails", [{}])[0].get("status")
                                        == "AWAITING_ACTION", s.current()), 30)
        d = s.current()
        assert versions(s.test_url, 10) == Counter({"v3": 10})
        s.ecs.continue_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"],
                                          hookId=d["lifecycleHookDetails"][0]["hookId"], action="ROLLBACK")
        s.wait_done(revision - 1, 2)
        time.sleep(1)
    finally:
        result = load.stop()
    check(bg, result, "hooked blue/green v1 → v2, v2 → v3 rolled back")
    assert "v3" not in result["versions"], result["versions"]
    rolled = s.ecs.describe_service_deployments(serviceDeploymentArns=[d["serviceDeploymentArn"]])
    rolled = rolled["serviceDeployments"][0]
    assert rolled["status"] == "ROLLBACK_SUCCESSFUL", rolled
    assert versions(s.test_url, 10) == Counter({"v2": 10})
    assert s.service()["taskDefinition"].endswith(f":{revision - 1}")
    # An empty list clears the hooks; leaving them out keeps them.
    s.ecs.update_service(cluster=bg.cluster, service="hook", deploymentConfiguration={"bakeTimeInMinutes": 0})
    assert s.service()["deploymentConfiguration"]["lifecycleHooks"] == [hook]
    s.ecs.update_service(cluster=bg.cluster, service="hook", deploymentConfiguration={"lifecycleHooks": []})
    assert not s.service()["deploymentConfiguration"].get("lifecycleHooks")


def test_a_green_revision_failing_health_checks_rolls_back_without_failed_requests(bg):
    s = Stack(bg, "sick")
    s.create_service(2, {"strategy": "BLUE_GREEN"})
    load = Load(s.prod_url, 32)
    try:
        time.sleep(1)
        arn = s.register("v2", UNHEALTHY="1")
        s.ecs.update_service(cluster=bg.cluster, service="sick", taskDefinition=arn)
        d = s.wait_stage("SCALE_UP")
        wait_until("the rollback", lambda: (s.ecs.describe_service_deployments(
            serviceDeploymentArns=[d["serviceDeploymentArn"]])["serviceDeployments"][0]["status"]
            == "ROLLBACK_SUCCESSFUL", None), 90)
        s.wait_done(1, 2)
        time.sleep(1)
    finally:
        result = load.stop()
    check(bg, result, "blue/green to an unhealthy revision, rolled back")
    assert set(result["versions"]) == {"v1"}
    assert any("rolled back" in e["message"] for e in s.service()["events"])


def test_stop_service_deployment_during_the_bake_returns_production_to_blue_at_once(bg):
    s = Stack(bg, "stop")
    s.create_service(2, {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 600})
    s.deploy("v2")
    d = s.wait_stage("BAKE_TIME")
    assert s.weights(s.prod_rule) == {0: 0, 1: 100}
    s.ecs.stop_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"], stopType="ROLLBACK")
    wait_until("production back on blue", lambda: s.weights(s.prod_rule) == {0: 100, 1: 0}, 10)
    assert versions(s.prod_url, 20) == Counter({"v1": 20})
    s.wait_done(1, 2)


def test_a_server_killed_during_the_bake_and_a_linear_step_resumes(bg):
    """kill -9 at a linear step and again in the bake: the deployment completes after each
    restart. The load balancer lives in the server process, so while it is down connections
    are refused; no request is ever answered with an error."""
    s = Stack(bg, "kill")
    s.create_service(2, {"strategy": "LINEAR", "bakeTimeInMinutes": 5,
                         "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 5}})
    load = Load(s.prod_url, 16)
    outages = []
    try:
        revision = s.deploy("v2")
        wait_until("the first step", lambda: s.weights(s.prod_rule).get(1) == 50, 90)
        for stage in ("PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME"):
            d = s.wait_stage(stage)
            down = time.time()
            bg.kill9_and_restart()
            s.ecs, s.elb = bg.client("ecs"), bg.client("elbv2")
            # The listener is back with the weights it had, then the deployment goes on.
            wait_until("the listener", lambda: versions(s.prod_url, 1) is not None, 30)
            outages.append((down, time.time()))
        s.wait_done(revision, 2)
        time.sleep(1)
    finally:
        result = load.stop()
    print(f"linear deployment through two kill -9: {result['requests']} requests, {result['failed']} failed "
          f"while the server was down, versions {result['versions']}")
    answered_errors = [f for f in result["failures"] if f["status"] is not None]
    assert answered_errors == [], answered_errors[:10]
    for f in result["failures"]:
        at = f["atMs"] / 1000
        assert any(start - 0.5 <= at <= end + 1 for start, end in outages), (f, outages)
    done = s.ecs.describe_service_deployments(serviceDeploymentArns=[d["serviceDeploymentArn"]])
    assert done["serviceDeployments"][0]["status"] == "SUCCESSFUL"
    assert s.weights(s.prod_rule) == {0: 0, 1: 100}
    assert set(result["versions"]) == {"v1", "v2"}


BAD = [
    ({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1441}, "bakeTimeInMinutes"),
    ({"strategy": "ROLLING", "bakeTimeInMinutes": 5}, "bakeTimeInMinutes"),
    ({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 2.0}}, "stepPercent"),
    ({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 10.05}}, "stepPercent"),
    ({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 10.0, "stepBakeTimeInMinutes": 2000}},
     "stepBakeTimeInMinutes"),
    ({"strategy": "BLUE_GREEN", "linearConfiguration": {"stepPercent": 10.0}}, "linearConfiguration"),
    ({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 0.0}}, "canaryPercent"),
    ({"strategy": "LINEAR", "canaryConfiguration": {"canaryPercent": 5.0}}, "canaryConfiguration"),
    ({"strategy": "BLUE_GREEN", "deploymentCircuitBreaker": {"enable": True, "rollback": True}},
     "deploymentCircuitBreaker"),
    ({"strategy": "BLUE_GREEN", "lifecycleHooks": [{"targetType": "PAUSE",
                                                    "lifecycleStages": ["PRODUCTION_TRAFFIC_SHIFT"]}]},
     "lifecycleStages"),
    ({"strategy": "ROLLING", "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}]},
     "lifecycleHooks"),
]


def test_bad_configurations_are_refused_naming_the_field_and_change_nothing(bg):
    s = Stack(bg, "bad")
    td = s.register("v1")
    ecs = s.ecs
    for config, field in BAD:
        with pytest.raises(ClientError) as e:
            ecs.create_service(cluster=bg.cluster, serviceName="bad", taskDefinition=td, desiredCount=0,
                               loadBalancers=s.load_balancers(), deploymentConfiguration=config)
        err = e.value.response["Error"]
        assert err["Code"] == "InvalidParameterException" and field in err["Message"], (config, err)
    lambda_hook = {"strategy": "BLUE_GREEN", "lifecycleHooks": [
        {"targetType": "AWS_LAMBDA", "hookTargetArn": "arn:aws:lambda:us-east-1:000000000000:function:f",
         "roleArn": ROLE, "lifecycleStages": ["POST_SCALE_UP"]}]}
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=bg.cluster, serviceName="bad", taskDefinition=td, desiredCount=0,
                           loadBalancers=s.load_balancers(), deploymentConfiguration=lambda_hook)
    assert "Lambda" in e.value.response["Error"]["Message"]
    # Load balancer entries: the advanced configuration and its rules.
    lbs = s.load_balancers()
    del lbs[0]["advancedConfiguration"]
    bad_lbs = [(lbs, "advancedConfiguration")]
    for member, value, field in [("alternateTargetGroupArn", s.tgs[0], "alternateTargetGroupArn"),
                                 ("productionListenerRule", s.prod_rule.replace("/1", "/9") + "0",
                                  "productionListenerRule"),
                                 ("testListenerRule", s.prod_rule, "testListenerRule")]:
        lbs = s.load_balancers()
        lbs[0]["advancedConfiguration"][member] = value
        bad_lbs.append((lbs, field))
    for lbs, field in bad_lbs:
        with pytest.raises(ClientError) as e:
            ecs.create_service(cluster=bg.cluster, serviceName="bad", taskDefinition=td, desiredCount=0,
                               loadBalancers=lbs, deploymentConfiguration={"strategy": "BLUE_GREEN"})
        err = e.value.response["Error"]
        assert err["Code"] == "InvalidParameterException" and field in err["Message"], (field, err)
    # A redirect in the production rule is refused.
    s.elb.modify_rule(RuleArn=s.prod_rule, Actions=[{"Type": "redirect", "RedirectConfig": {
        "Host": "example.test", "StatusCode": "HTTP_301"}}])
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=bg.cluster, serviceName="bad", taskDefinition=td, desiredCount=0,
                           loadBalancers=s.load_balancers(), deploymentConfiguration={"strategy": "BLUE_GREEN"})
    assert "forward" in e.value.response["Error"]["Message"]
    assert ecs.list_services(cluster=bg.cluster)["serviceArns"] == []
    # An existing ROLLING service is left as it was by a bad update.
    s.elb.modify_rule(RuleArn=s.prod_rule, Actions=[{"Type": "forward", "TargetGroupArn": s.tgs[0]}])
    ecs.create_service(cluster=bg.cluster, serviceName="bad", taskDefinition=td, desiredCount=0)
    before = s.service()
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster=bg.cluster, service="bad",
                           deploymentConfiguration={"strategy": "CANARY",
                                                    "canaryConfiguration": {"canaryPercent": 200.0}})
    assert "canaryPercent" in e.value.response["Error"]["Message"]
    assert s.service()["deploymentConfiguration"] == before["deploymentConfiguration"]
