"""The agent of `wharf up` running tasks as real Docker containers of the wharf-echo image,
driven with the real AWS CLI and boto3: dynamic host ports in bridge mode, awsvpc tasks
sharing localhost, FARGATE tasks, essential exits, dependsOn, health checks, stopTimeout,
out-of-memory kills, images that cannot be pulled, and the AWS CLI's task waiters."""

import json
import time

from agentutil import (container, describe, echo, host_port, register, run, task_ip, wait_http, wait_instances,
                       wait_task, wait_until)
from conftest import CliError, docker, docker_containers, TASK_LABEL
from util import write_json

AWSVPC = {"awsvpcConfiguration": {"subnets": ["subnet-12345678"], "assignPublicIp": "DISABLED"}}


def ready(wharf):
    ecs = wharf.client("ecs")
    wait_instances(ecs, wharf.cluster)
    return ecs


def test_bridge_task_answers_on_its_dynamic_host_port(wharf_agent, tmp_path):
    w = wharf_agent
    ecs = ready(w)
    td = {"family": "echo-bridge", "networkMode": "bridge",
          "containerDefinitions": [echo(portMappings=[{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}])]}
    w.aws("ecs", "register-task-definition", "--cli-input-json", write_json(tmp_path / "td.json", td))

    out = w.aws("ecs", "run-task", "--cluster", w.cluster, "--task-definition", "echo-bridge")
    assert out["failures"] == []
    (arn,) = [t["taskArn"] for t in out["tasks"]]
    task = wait_task(ecs, w.cluster, arn)
    port = host_port(task)
    assert 0 < port < 65536 and port != 8080
    (binding,) = container(task, "web")["networkBindings"]
    assert binding["containerPort"] == 8080 and binding["protocol"] == "tcp"
    body = wait_http(f"http://127.0.0.1:{port}/")
    runtime_id = container(task, "web")["runtimeId"]
    assert body["container"] == "web" and body["listen"] == "0.0.0.0:8080"
    assert body["hostname"] == runtime_id[:12], (body, runtime_id)
    # The CLI sees the same.
    seen = w.aws("ecs", "describe-tasks", "--cluster", w.cluster, "--tasks", arn)["tasks"][0]
    assert seen["lastStatus"] == "RUNNING" and host_port(seen) == port

    out = w.aws("ecs", "run-task", "--cluster", w.cluster, "--task-definition", "echo-bridge", "--count", "3")
    assert out["failures"] == [] and len(out["tasks"]) == 3
    tasks = [wait_task(ecs, w.cluster, t["taskArn"]) for t in out["tasks"]]
    ports = {host_port(t) for t in tasks}
    assert len(ports) == 3 and port not in ports, ports
    for t in tasks:
        body = wait_http(f"http://127.0.0.1:{host_port(t)}/")
        assert body["hostname"] == container(t, "web")["runtimeId"][:12]


def test_awsvpc_task_containers_share_localhost(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    td = register(ecs, "echo-awsvpc",
                  echo("web", portMappings=[{"containerPort": 8080}]),
                  echo("sidecar", env={"PORT": 9090}, essential=False, portMappings=[{"containerPort": 9090}]),
                  networkMode="awsvpc")
    (arn,) = run(ecs, w.cluster, td, networkConfiguration=AWSVPC)
    task = wait_task(ecs, w.cluster, arn, predicate=lambda t: t["attachments"])
    (att,) = task["attachments"]
    assert att["type"] == "ElasticNetworkInterface" and att["status"] == "ATTACHED"
    ip = task_ip(task)
    for c in task["containers"]:
        assert c["networkInterfaces"][0]["privateIpv4Address"] == ip
        assert c["networkBindings"] == []
    web = wait_http(f"http://{ip}:8080/")
    assert web["container"] == "web"
    peer = wait_http(f"http://{ip}:8080/peer?addr=127.0.0.1:9090&path=/")
    assert peer["container"] == "sidecar" and peer["listen"] == "0.0.0.0:9090", peer
    # One network namespace: the sidecar answers on the task's address too.
    assert wait_http(f"http://{ip}:9090/")["container"] == "sidecar"


def test_fargate_task_runs_on_wharf_up(wharf_agent, tmp_path):
    w = wharf_agent
    ecs = ready(w)
    td = {"family": "echo-fargate", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
          "cpu": "256", "memory": "512", "containerDefinitions": [echo(portMappings=[{"containerPort": 8080}])]}
    w.aws("ecs", "register-task-definition", "--cli-input-json", write_json(tmp_path / "td.json", td))
    out = w.aws("ecs", "run-task", "--cluster", w.cluster, "--task-definition", "echo-fargate",
                "--launch-type", "FARGATE", "--network-configuration",
                "awsvpcConfiguration={subnets=[subnet-12345678],assignPublicIp=ENABLED}")
    assert out["failures"] == [], out
    (arn,) = [t["taskArn"] for t in out["tasks"]]
    task = wait_task(ecs, w.cluster, arn, predicate=lambda t: t["attachments"])
    assert task["launchType"] == "FARGATE" and "containerInstanceArn" not in task
    assert task["platformVersion"] == "1.4.0" and (task["cpu"], task["memory"]) == ("256", "512")
    assert wait_http(f"http://{task_ip(task)}:8080/")["container"] == "web"
    (c,) = [c for c in docker_containers(f"{TASK_LABEL}={arn}") if c["container"] == "web"]
    assert c["id"] == container(task, "web")["runtimeId"] and c["owner"].startswith("fargate:"), c


def test_essential_container_exit_stops_the_task(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    td = register(ecs, "echo-exit", echo())
    (arn,) = run(ecs, w.cluster, td, overrides={"containerOverrides": [{"name": "web", "command": ["--exit", "3"]}]})
    task = wait_task(ecs, w.cluster, arn, "STOPPED", timeout=30)
    assert task["stopCode"] == "EssentialContainerExited", task
    assert task["stoppedReason"] == "Essential container in task exited"
    assert task["desiredStatus"] == "STOPPED"
    web = container(task, "web")
    assert web["exitCode"] == 3 and web["lastStatus"] == "STOPPED"
    assert web["runtimeId"]
    for k in ("stoppedAt", "stoppingAt", "executionStoppedAt", "pullStartedAt", "pullStoppedAt"):
        assert k in task, k
    wait_gone(arn)


def wait_gone(task_arn, timeout=15):
    deadline = time.time() + timeout
    while docker_containers(f"{TASK_LABEL}={task_arn}"):
        assert time.time() < deadline, f"containers of {task_arn} were not removed"
        time.sleep(0.2)
    return True


def test_depends_on_success_orders_and_gates_the_start(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    app = echo("app", portMappings=[{"containerPort": 8080, "hostPort": 0}],
               dependsOn=[{"containerName": "init", "condition": "SUCCESS"}])
    ok_td = register(ecs, "echo-init-ok", echo("init", essential=False, command=["--sleep", "1", "--exit", "0"]), app)
    bad_td = register(ecs, "echo-init-bad", echo("init", essential=False, command=["--exit", "1"]), app)
    (ok,) = run(ecs, w.cluster, ok_td)
    (bad,) = run(ecs, w.cluster, bad_td)

    task = wait_task(ecs, w.cluster, ok, predicate=lambda t: container(t, "init").get("exitCode") is not None)
    assert container(task, "init")["exitCode"] == 0 and container(task, "init")["lastStatus"] == "STOPPED"
    assert container(task, "app")["lastStatus"] == "RUNNING"
    assert wait_http(f"http://127.0.0.1:{host_port(task, 'app')}/")["container"] == "app"
    init_state, app_state = (json.loads(docker("inspect", "--format", "{{json .State}}",
                                               container(task, n)["runtimeId"]).stdout) for n in ("init", "app"))
    assert init_state["ExitCode"] == 0 and app_state["Running"]
    assert init_state["FinishedAt"] <= app_state["StartedAt"], (init_state, app_state)

    task = wait_task(ecs, w.cluster, bad, "STOPPED")
    assert container(task, "init")["exitCode"] == 1
    assert "runtimeId" not in container(task, "app") and container(task, "app").get("exitCode") is None
    assert "init" in task["stoppedReason"], task["stoppedReason"]
    assert task["stopCode"] == "TaskFailedToStart"
    assert not [c for c in docker_containers(f"{TASK_LABEL}={bad}") if c["container"] == "app"]


def test_stop_task_while_a_container_waits_for_its_dependency(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    td = register(ecs, "echo-slow-init", echo("init", essential=False, command=["--sleep", "60"]),
                  echo("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]))
    (arn,) = run(ecs, w.cluster, td)
    wait_until("init running", lambda: [c for c in docker_containers(f"{TASK_LABEL}={arn}", running_only=True)
                                        if c["container"] == "init"], 15)
    time.sleep(0.5)  # the agent is now waiting for init to succeed
    t0 = time.time()
    ecs.stop_task(cluster=w.cluster, task=arn, reason="not waiting")
    task = wait_task(ecs, w.cluster, arn, "STOPPED", timeout=15)
    assert time.time() - t0 < 5, time.time() - t0
    assert task["stopCode"] == "UserInitiated" and task["stoppedReason"] == "not waiting"
    assert container(task, "init")["exitCode"] == 0  # --sleep ends with 0 on SIGTERM
    assert "runtimeId" not in container(task, "app")
    wait_gone(arn)


def test_health_checks_make_containers_and_tasks_healthy_or_unhealthy(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    check = {"command": ["CMD", "/wharf-echo", "--healthcheck", "http://127.0.0.1:8080/health"],
             "interval": 5, "timeout": 2, "retries": 1, "startPeriod": 0}
    td = register(ecs, "echo-health", echo(healthCheck=check))
    (sick,) = run(ecs, w.cluster, td, overrides={"containerOverrides": [
        {"name": "web", "environment": [{"name": "UNHEALTHY", "value": "1"}]}]})
    (fine,) = run(ecs, w.cluster, td)
    task = wait_task(ecs, w.cluster, fine, timeout=30, predicate=lambda t: t.get("healthStatus") == "HEALTHY")
    assert container(task, "web")["healthStatus"] == "HEALTHY"
    task = wait_task(ecs, w.cluster, sick, timeout=30, predicate=lambda t: t.get("healthStatus") == "UNHEALTHY")
    assert container(task, "web")["healthStatus"] == "UNHEALTHY"
    assert task["lastStatus"] == "RUNNING"


def test_stop_task_honours_stop_timeout(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    stubborn_td = register(ecs, "echo-stubborn", echo(env={"IGNORE_SIGTERM": 1}, stopTimeout=2))
    polite_td = register(ecs, "echo-polite", echo())
    (stubborn,) = run(ecs, w.cluster, stubborn_td)
    (polite,) = run(ecs, w.cluster, polite_td)
    for arn in (stubborn, polite):
        wait_task(ecs, w.cluster, arn)
    t0 = time.time()
    for arn in (stubborn, polite):
        stopped = ecs.stop_task(cluster=w.cluster, task=arn, reason="testing stopTimeout")["task"]
        assert stopped["desiredStatus"] == "STOPPED" and stopped["lastStatus"] == "RUNNING"
    took = {}
    deadline = time.time() + 20
    while len(took) < 2 and time.time() < deadline:
        for arn in (stubborn, polite):
            if arn not in took and describe(ecs, w.cluster, arn)["lastStatus"] == "STOPPED":
                took[arn] = time.time() - t0
        time.sleep(0.1)
    assert len(took) == 2, took
    polite_task, stubborn_task = describe(ecs, w.cluster, polite), describe(ecs, w.cluster, stubborn)
    assert container(polite_task, "web")["exitCode"] == 0
    assert took[polite] < 1.9, took
    assert container(stubborn_task, "web")["exitCode"] == 137
    assert 1.9 <= took[stubborn] < 6, took
    for t in (polite_task, stubborn_task):
        assert t["stopCode"] == "UserInitiated" and t["stoppedReason"] == "testing stopTimeout"


def test_memory_limit_exceeded_is_out_of_memory(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    td = register(ecs, "echo-oom", echo(memory=16, env={"MEMORY_GROW_MB_PER_SEC": 50}))
    (arn,) = run(ecs, w.cluster, td)
    task = wait_task(ecs, w.cluster, arn, "STOPPED", timeout=30)
    web = container(task, "web")
    assert web["reason"].startswith("OutOfMemoryError"), web
    assert web["exitCode"] == 137
    assert task["stopCode"] == "EssentialContainerExited"


def test_missing_image_cannot_be_pulled(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    td = register(ecs, "echo-missing", echo(image="wharf-no-such-image:never"))
    (arn,) = run(ecs, w.cluster, td)
    task = wait_task(ecs, w.cluster, arn, "STOPPED", timeout=30)
    assert task["stoppedReason"].startswith("CannotPullContainerError"), task["stoppedReason"]
    assert task["stopCode"] == "TaskFailedToStart"
    assert container(task, "web")["reason"].startswith("CannotPullContainerError")
    assert "runtimeId" not in container(task, "web")


def test_task_waiters(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    td = register(ecs, "echo-wait", echo())
    (arn,) = run(ecs, w.cluster, td)
    assert w.aws("ecs", "wait", "tasks-running", "--cluster", w.cluster, "--tasks", arn) is None
    assert describe(ecs, w.cluster, arn)["lastStatus"] == "RUNNING"
    w.aws("ecs", "stop-task", "--cluster", w.cluster, "--task", arn)
    assert w.aws("ecs", "wait", "tasks-stopped", "--cluster", w.cluster, "--tasks", arn) is None
    assert describe(ecs, w.cluster, arn)["lastStatus"] == "STOPPED"

    # A task that stops instead of running ends tasks-running at once, as a failure (an image
    # that cannot be pulled: the task never is RUNNING, even briefly).
    (dies,) = run(ecs, w.cluster, register(ecs, "echo-wait-missing", echo(image="wharf-no-such-image:never")))
    t0 = time.time()
    err = w.aws("ecs", "wait", "tasks-running", "--cluster", w.cluster, "--tasks", dies, check=False)
    assert isinstance(err, CliError) and err.code != 0
    assert "Waiter TasksRunning failed" in err.stderr and "terminal failure" in err.stderr, err.stderr
    assert time.time() - t0 < 20
    # boto3's waiter agrees.
    ecs.get_waiter("tasks_stopped").wait(cluster=w.cluster, tasks=[dies], WaiterConfig={"Delay": 1})


def test_wharf_up_killed_and_restarted_keeps_its_tasks(wharf_agent):
    w = wharf_agent
    ecs = ready(w)
    td = register(ecs, "echo-keep", echo(portMappings=[{"containerPort": 8080, "hostPort": 0}]))
    fg = register(ecs, "echo-keep-fg", echo(portMappings=[{"containerPort": 8080}]), networkMode="awsvpc",
                  requiresCompatibilities=["FARGATE"], cpu="256", memory="512")
    (ec2,) = run(ecs, w.cluster, td)
    (far,) = run(ecs, w.cluster, fg, launchType="FARGATE", networkConfiguration=AWSVPC)
    before = {arn: wait_task(ecs, w.cluster, arn, predicate=lambda t: t["launchType"] == "EC2" or t["attachments"])
              for arn in (ec2, far)}
    ids = {arn: sorted(c["id"] for c in docker_containers(f"{TASK_LABEL}={arn}")) for arn in (ec2, far)}

    w.kill9_and_restart()  # the control plane and its agent, together
    wait_until("both tasks re-adopted", lambda: w.log.read_text().count("re-adopting running containers") == 2, 20)
    ecs = w.client("ecs")
    for arn, old in before.items():
        task = describe(ecs, w.cluster, arn)
        assert task["lastStatus"] == "RUNNING" and task["containers"] == old["containers"]
        assert sorted(c["id"] for c in docker_containers(f"{TASK_LABEL}={arn}")) == ids[arn]
    assert wait_http(f"http://127.0.0.1:{host_port(before[ec2])}/")["container"] == "web"
    assert wait_http(f"http://{task_ip(before[far])}:8080/")["container"] == "web"
