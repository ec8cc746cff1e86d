"""The users' GitHub Actions pipelines end to end with the real action code (issue 16): seed
002's `configure-aws-credentials` → `amazon-ecr-login` → `docker build` + `docker push` →
`amazon-ecs-render-task-definition` → `amazon-ecs-deploy-task-definition`, run the way a
GitHub runner runs them (`node dist/index.js`, inputs as `INPUT_*` with action.yml's
defaults, `GITHUB_ENV` carried to later steps, outputs read from `GITHUB_OUTPUT`), against a
FARGATE service in ap-northeast-2 behind an ALB under 100 connections of load: once with the
ECS deployment controller (seed 001, the starter workflow), and with seed 002's CodeDeploy
setup (appspec.yaml, `DgpECS-<cluster>-<service>`, all at once and a 10 % canary). Then the
deploy action's failure paths, which must print the action's own error text.

`wharf up --aws-minute-secs 6`: a 5-minute canary lasts 30 s."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from agentutil import wait_until
from conftest import ROOT
from test_blue_green import versions
from test_zero_downtime import Load, check, free_port
from util import write_json

ACTIONS = ROOT.parent / "shared" / "clients" / "aws-actions"
REGION = "ap-northeast-2"
CLUSTER, SERVICE, CONTAINER = "DemoCluster", "DemoService", "DemoContainer"
APP, GROUP = f"AppECS-{CLUSTER}-{SERVICE}", f"DgpECS-{CLUSTER}-{SERVICE}"

pytestmark = pytest.mark.skipif(not ACTIONS.exists(), reason="../shared/clients/aws-actions is not beside the checkout")

# Seed 002's task-definition.json (the image is filled in by the render action).
TASK_DEFINITION = {
    "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
    "containerDefinitions": [{"name": CONTAINER, "image": "filled-in-by-the-pipeline", "essential": True,
                              "portMappings": [{"hostPort": 8080, "protocol": "tcp", "containerPort": 8080}]}],
    "requiresCompatibilities": ["FARGATE"],
    "networkMode": "awsvpc",
    "cpu": "512",
    "memory": "1024",
    "family": "demo",
}

# Seed 002's appspec.yaml (the task definition is filled in by the deploy action).
APPSPEC = f"""version: 0.0
Resources:
  - TargetService:
      Type: AWS::ECS::Service
      Properties:
        TaskDefinition: "filled-in-by-the-pipeline"
        LoadBalancerInfo:
          ContainerName: "{CONTAINER}"
          ContainerPort: 8080
        PlatformVersion: "LATEST"
"""


def parse_github_file(path):
    """`name=value` lines and `name<<DELIM` blocks, as runners read GITHUB_OUTPUT and GITHUB_ENV."""
    out, lines = {}, Path(path).read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            j = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1:j])
            i = j + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        i += 1
    return out


class Runner:
    """One job of a GitHub runner: a workspace, the environment steps export to each other."""

    def __init__(self, w, tmp):
        self.w, self.tmp = w, tmp
        self.workspace = tmp / "workspace"
        self.workspace.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INPUT_", "GITHUB_"))}
        self.env.update(GITHUB_WORKSPACE=str(self.workspace), RUNNER_TEMP=str(tmp), GITHUB_ACTIONS="true",
                        DOCKER_CONFIG=str(tmp / "docker-config"), DOCKER_BUILDKIT="0",
                        # The one line a user changes in the workflow: where AWS is.
                        AWS_ENDPOINT_URL=w.endpoint)
        self.steps = 0

    def uses(self, action, check=True, background=False, **inputs):
        """Runs `action` with `inputs` (hyphenated names as in the workflow file)."""
        meta = yaml.safe_load((ACTIONS / action / "action.yml").read_text())
        env = dict(self.env)
        for name, spec in (meta.get("inputs") or {}).items():
            if spec.get("default") is not None:
                env[f"INPUT_{name.upper().replace(' ', '_')}"] = str(spec["default"])
        for name, value in inputs.items():
            env[f"INPUT_{name.replace('_', '-').upper()}"] = str(value)
        self.steps += 1
        output, exported = self.tmp / f"output-{self.steps}", self.tmp / f"env-{self.steps}"
        output.write_text("")
        exported.write_text("")
        env.update(GITHUB_OUTPUT=str(output), GITHUB_ENV=str(exported))
        proc = subprocess.Popen(["node", str(ACTIONS / action / "dist" / "index.js")], env=env, cwd=self.workspace,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        step = Step(proc, output, exported, self)
        return step if background else step.finish(check)

    def run(self, script):
        """A `run:` step."""
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=self.env, cwd=self.workspace,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout


class Step:
    def __init__(self, proc, output, exported, runner):
        self.proc, self.output, self.exported, self.runner = proc, output, exported, runner

    def finish(self, check=True, timeout=900):
        log, _ = self.proc.communicate(timeout=timeout)
        ok = self.proc.returncode == 0 and "::error::" not in log
        if check:
            assert ok, log
        self.runner.env.update(parse_github_file(self.exported))
        return ok, log, parse_github_file(self.output)


def setup_service(w, controller):
    """Seed 002's AWS side in ap-northeast-2: an ECR repository, two `ip` target groups, an ALB
    with a production listener (and a test listener for CodeDeploy), cluster DemoCluster and a
    FARGATE service DemoService of two tasks of the v1 image; for CodeDeploy the application
    and deployment group the ECS console would have made."""
    ecr, elb, ecs = (w.client(s, region_name=REGION) for s in ("ecr", "elbv2", "ecs"))
    ecr.create_repository(repositoryName="demo")
    tgs = []
    for name in ("demo-blue", "demo-green"):
        tg = elb.create_target_group(Name=name, Protocol="HTTP", Port=8080, VpcId="vpc-0123456789abcdef0",
                                     TargetType="ip", HealthCheckPath="/health", HealthCheckIntervalSeconds=5,
                                     HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2,
                                     UnhealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
        elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "2"}])
        tgs.append(tg)
    lb = elb.create_load_balancer(Name="demo-alb", Subnets=["subnet-0a", "subnet-0b"])["LoadBalancers"][0]
    ports = [free_port(), free_port()]
    listeners = [elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=p,
                                     DefaultActions=[{"Type": "forward", "TargetGroupArn": tgs[0]}])[
        "Listeners"][0]["ListenerArn"] for p in ports]
    ecs.create_cluster(clusterName=CLUSTER)
    return dict(ecs=ecs, elb=elb, tgs=tgs, listeners=listeners, url=f"http://127.0.0.1:{ports[0]}/")


def create_service(w, stack, image, controller):
    ecs = stack["ecs"]
    td = dict(TASK_DEFINITION)
    td["containerDefinitions"] = [dict(td["containerDefinitions"][0], image=image)]
    arn = ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=arn, desiredCount=2,
                       launchType="FARGATE", deploymentController={"type": controller},
                       networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-0a"],
                                                                     "assignPublicIp": "ENABLED"}},
                       loadBalancers=[{"targetGroupArn": stack["tgs"][0], "containerName": CONTAINER,
                                       "containerPort": 8080}])
    if controller == "CODE_DEPLOY":
        cd = w.client("codedeploy", region_name=REGION)
        cd.create_application(applicationName=APP, computePlatform="ECS")
        cd.create_deployment_group(
            applicationName=APP, deploymentGroupName=GROUP, deploymentConfigName="CodeDeployDefault.ECSAllAtOnce",
            serviceRoleArn="arn:aws:iam::123456789012:role/ecsCodeDeployRole",
            ecsServices=[{"serviceName": SERVICE, "clusterName": CLUSTER}],
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            blueGreenDeploymentConfiguration={
                "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0},
                "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT"}},
            autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
            loadBalancerInfo={"targetGroupPairInfoList": [{
                "targetGroups": [{"name": "demo-blue"}, {"name": "demo-green"}],
                "prodTrafficRoute": {"listenerArns": [stack["listeners"][0]]},
                "testTrafficRoute": {"listenerArns": [stack["listeners"][1]]}}]})

    def serving():
        svc = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
        health = stack["elb"].describe_target_health(TargetGroupArn=stack["tgs"][0])["TargetHealthDescriptions"]
        healthy = [h for h in health if h["TargetHealth"]["State"] == "healthy"]
        return svc["runningCount"] == 2 and len(healthy) == 2, (svc["runningCount"], len(healthy))
    wait_until("DemoService to serve", serving, 180)


def build_and_push(runner, registry, version, **env):
    """The workflow's `run:` step: docker build (the app's image carries its version) and push."""
    lines = ["FROM wharf-echo:latest", f"ENV VERSION={version}"] + [f"ENV {k}={v}" for k, v in env.items()]
    (runner.workspace / "Dockerfile").write_text("\n".join(lines) + "\n")
    image = f"{registry}/demo:{version}"
    runner.run(f"docker build -q -t {image} . && docker push {image}")
    return image


def pipeline(runner, w, version, background=False, check=True, **deploy_inputs):
    """Credentials → ECR login → build and push → render → deploy; returns the deploy step."""
    runner.uses("configure-aws-credentials", aws_access_key_id=w.env()["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=w.env()["AWS_SECRET_ACCESS_KEY"], aws_region=REGION)
    _, _, login = runner.uses("amazon-ecr-login")
    image = build_and_push(runner, login["registry"], version, **deploy_inputs.pop("image_env", {}))
    write_json(runner.workspace / "task-definition.json", TASK_DEFINITION)
    _, _, rendered = runner.uses("amazon-ecs-render-task-definition", task_definition="task-definition.json",
                                 container_name=CONTAINER, image=image)
    inputs = dict(task_definition=rendered["task-definition"], service=SERVICE, cluster=CLUSTER,
                  wait_for_service_stability="true", wait_max_delay_seconds="15", **deploy_inputs)
    return runner.uses("amazon-ecs-deploy-task-definition", background=background, check=check, **inputs), image


@pytest.fixture
def pipe(wharf_factory, monkeypatch, tmp_path):
    monkeypatch.setenv("WHARF_LOG", "info,wharf_lb::proxy=debug")
    w = wharf_factory("--region", REGION, "--aws-minute-secs", "6")
    runner = Runner(w, tmp_path)
    yield w, runner
    runner.run("docker image ls --format '{{.Repository}}:{{.Tag}}' | grep '/demo:' | xargs -r docker rmi -f "
               ">/dev/null 2>&1 || true")


def first_image(runner, w):
    """v1 built and pushed by the pipeline's first three steps, for the service to start from."""
    runner.uses("configure-aws-credentials", aws_access_key_id=w.env()["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=w.env()["AWS_SECRET_ACCESS_KEY"], aws_region=REGION)
    _, _, login = runner.uses("amazon-ecr-login")
    return build_and_push(runner, login["registry"], "v1")


def test_ecs_controller_pipeline_under_load(pipe):
    w, runner = pipe
    stack = setup_service(w, "ECS")
    create_service(w, stack, first_image(runner, w), "ECS")
    load = Load(stack["url"], 100)
    try:
        time.sleep(1)
        (ok, log, out), image = pipeline(runner, w, "v2")
        assert "task-definition-arn" in out, log
        time.sleep(1)
    finally:
        result = load.stop()
    check(w, result, "ECS-controller pipeline")
    assert versions(stack["url"], 20) == {"v2": 20}
    svc = stack["ecs"].describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    td = stack["ecs"].describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
    assert td["containerDefinitions"][0]["image"] == image


def test_codedeploy_pipeline_all_at_once_then_canary_under_load(pipe):
    w, runner = pipe
    stack = setup_service(w, "CODE_DEPLOY")
    create_service(w, stack, first_image(runner, w), "CODE_DEPLOY")
    (runner.workspace / "appspec.yaml").write_text(APPSPEC)
    cd = w.client("codedeploy", region_name=REGION)
    load = Load(stack["url"], 100)
    try:
        time.sleep(1)
        (ok, log, out), _ = pipeline(runner, w, "v2", codedeploy_appspec="appspec.yaml",
                                     codedeploy_deployment_group=GROUP)
        dep = out["codedeploy-deployment-id"]
        assert cd.get_deployment(deploymentId=dep)["deploymentInfo"]["status"] == "Succeeded"
        assert versions(stack["url"], 20) == {"v2": 20}

        # Again with a 10 % canary: 5 minutes, 30 s here.
        step, _ = pipeline(runner, w, "v3", background=True, codedeploy_appspec="appspec.yaml",
                           codedeploy_deployment_group=GROUP,
                           codedeploy_deployment_config="CodeDeployDefault.ECSCanary10Percent5Minutes")

        def weights():
            acts = stack["elb"].describe_listeners(ListenerArns=[stack["listeners"][0]])["Listeners"][0][
                "DefaultActions"]
            groups = (acts[0].get("ForwardConfig") or {}).get("TargetGroups", [])
            return {stack["tgs"].index(g["TargetGroupArn"]): g["Weight"] for g in groups if g["Weight"]}
        wait_until("the canary step", lambda: (weights() == {1: 90, 0: 10}, weights()), 180)
        share = versions(stack["url"], 400)
        assert abs(share["v3"] / 4 - 10) <= 5, share
        ok, log, out = step.finish()
        assert cd.get_deployment(deploymentId=out["codedeploy-deployment-id"])["deploymentInfo"]["status"] == \
            "Succeeded"
        time.sleep(1)
    finally:
        result = load.stop()
    check(w, result, "CodeDeploy pipeline, all at once then canary")
    assert versions(stack["url"], 20) == {"v3": 20}


def test_the_deploy_actions_failure_paths_print_its_own_errors(pipe):
    w, runner = pipe
    stack = setup_service(w, "CODE_DEPLOY")
    create_service(w, stack, first_image(runner, w), "CODE_DEPLOY")
    (runner.workspace / "appspec.yaml").write_text(APPSPEC)

    # A missing deployment group: CodeDeploy's message.
    (ok, log, _), _ = pipeline(runner, w, "v2", check=False, codedeploy_appspec="appspec.yaml",
                               codedeploy_deployment_group="ghost")
    assert not ok and "::error::No Deployment Group found for name: ghost" in log, log

    # An appspec without TaskDefinition: the action's own check.
    (runner.workspace / "broken.yaml").write_text(APPSPEC.replace('        TaskDefinition: "filled-in-by-the-pipeline"\n', ""))
    (ok, log, _), _ = pipeline(runner, w, "v2", check=False, codedeploy_appspec="broken.yaml",
                               codedeploy_deployment_group=GROUP)
    assert not ok and "::error::AppSpec file must include property 'taskDefinition'" in log, log

    # A deployment that fails (the new image never passes its health checks): the waiter's
    # failure, and production still on v1.
    (ok, log, out), _ = pipeline(runner, w, "v2", check=False, codedeploy_appspec="appspec.yaml",
                                 codedeploy_deployment_group=GROUP, image_env={"UNHEALTHY": "1"})
    assert not ok and '::error::{"state":"FAILURE"' in log, log
    info = w.client("codedeploy", region_name=REGION).get_deployment(
        deploymentId=out["codedeploy-deployment-id"])["deploymentInfo"]
    assert info["status"] == "Failed" and "rollbackInfo" in info, info
    assert versions(stack["url"], 20) == {"v1": 20}
