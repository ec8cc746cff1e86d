"""Tags, account settings, pagination, concurrency, restarts, the AWS CLI profile and how
the server process starts and stops."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, ACCOUNT, BIN, REGION, SECRET_KEY, Wharf
from util import container_instance_resources, resource, simple_taskdef

ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"
# `wharf up` also runs a local agent when it has one; these tests are about the control plane.
_HELP = subprocess.run([BIN, "up", "--help"], capture_output=True, text=True).stdout
UP = ["up", "--no-agent"] if "--no-agent" in _HELP else ["up"]


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def tags_of(ecs, arn):
    return sorted((t["key"], t["value"]) for t in ecs.list_tags_for_resource(resourceArn=arn)["tags"])


def test_tags_on_cluster_service_and_task_definition(wharf, ecs):
    cluster = ecs.create_cluster(clusterName="c1", tags=[{"key": "team", "value": "a"}])["cluster"]
    assert cluster["tags"] == [{"key": "team", "value": "a"}]
    td = ecs.register_task_definition(**simple_taskdef("web"), tags=[{"key": "app", "value": "web"}])
    td_arn = td["taskDefinition"]["taskDefinitionArn"]
    svc = ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="web",
                             tags=[{"key": "tier", "value": "front"}])["service"]
    assert svc["tags"] == [{"key": "tier", "value": "front"}]

    assert tags_of(ecs, cluster["clusterArn"]) == [("team", "a")]
    assert tags_of(ecs, td_arn) == [("app", "web")]
    assert tags_of(ecs, svc["serviceArn"]) == [("tier", "front")]

    for arn in (cluster["clusterArn"], td_arn, svc["serviceArn"]):
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "dev"}, {"key": "owner", "value": "me"}])
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "prod"}])  # overwrite
        ecs.untag_resource(resourceArn=arn, tagKeys=["owner", "not-there"])
    assert tags_of(ecs, cluster["clusterArn"]) == [("env", "prod"), ("team", "a")]
    assert tags_of(ecs, td_arn) == [("app", "web"), ("env", "prod")]
    assert tags_of(ecs, svc["serviceArn"]) == [("env", "prod"), ("tier", "front")]

    # Describe calls show tags only when asked.
    plain = ecs.describe_clusters(clusters=["c1"])["clusters"][0]
    assert "tags" not in plain or plain["tags"] == []
    with_tags = ecs.describe_clusters(clusters=["c1"], include=["TAGS"])["clusters"][0]
    assert sorted((t["key"], t["value"]) for t in with_tags["tags"]) == [("env", "prod"), ("team", "a")]
    s = ecs.describe_services(cluster="c1", services=["s1"], include=["TAGS"])["services"][0]
    assert sorted((t["key"], t["value"]) for t in s["tags"]) == [("env", "prod"), ("tier", "front")]
    assert "tags" not in ecs.describe_services(cluster="c1", services=["s1"])["services"][0]
    assert sorted((t["key"], t["value"]) for t in ecs.describe_task_definition(
        taskDefinition="web", include=["TAGS"])["tags"]) == [("app", "web"), ("env", "prod")]

    # The CLI's shorthand works too.
    wharf.aws("ecs", "tag-resource", "--resource-arn", cluster["clusterArn"], "--tags", "key=cli,value=yes")
    out = wharf.aws("ecs", "list-tags-for-resource", "--resource-arn", cluster["clusterArn"])
    assert {"key": "cli", "value": "yes"} in out["tags"]

    # At most 50 tags per resource, counted after merging.
    ecs.tag_resource(resourceArn=td_arn, tags=[{"key": f"k{i}", "value": "v"} for i in range(48)])
    with pytest.raises(ClientError) as e:
        ecs.tag_resource(resourceArn=td_arn, tags=[{"key": "one-more", "value": "v"}])
    assert code_of(e)[0] == "InvalidParameterException"
    assert len(ecs.list_tags_for_resource(resourceArn=td_arn)["tags"]) == 50


def test_tags_on_tasks_and_container_instances(ecs):
    ecs.create_cluster(clusterName="c1")
    ecs.register_task_definition(**simple_taskdef("web"))
    inst = ecs.register_container_instance(cluster="c1", totalResources=container_instance_resources(),
                                           tags=[{"key": "rack", "value": "r1"}])["containerInstance"]
    assert tags_of(ecs, inst["containerInstanceArn"]) == [("rack", "r1")]
    task = ecs.run_task(cluster="c1", taskDefinition="web", tags=[{"key": "job", "value": "x"}])["tasks"][0]
    assert tags_of(ecs, task["taskArn"]) == [("job", "x")]
    d = ecs.describe_tasks(cluster="c1", tasks=[task["taskArn"]], include=["TAGS"])["tasks"][0]
    assert d["tags"] == [{"key": "job", "value": "x"}]


def test_account_settings(wharf, ecs):
    effective = {s["name"]: s for s in ecs.list_account_settings(effectiveSettings=True, maxResults=10)["settings"]}
    assert effective["containerInsights"]["value"] == "disabled"
    assert ecs.list_account_settings()["settings"] == []

    put = ecs.put_account_setting(name="containerInsights", value="enabled")["setting"]
    assert put == {"name": "containerInsights", "value": "enabled", "principalArn": ROOT_ARN, "type": "user"}
    assert ecs.list_account_settings()["settings"] == [put]
    assert ecs.list_account_settings(name="containerInsights", value="disabled")["settings"] == []

    default = ecs.put_account_setting_default(name="awsvpcTrunking", value="enabled")["setting"]
    assert default["value"] == "enabled"
    cli = wharf.aws("ecs", "list-account-settings", "--effective-settings", "--name", "awsvpcTrunking")
    assert [s["value"] for s in cli["settings"]] == ["enabled"]
    all_effective = wharf.aws("ecs", "list-account-settings", "--effective-settings")["settings"]
    names = [s["name"] for s in all_effective]
    assert len(names) == len(set(names)) > 5
    assert {s["name"]: s["value"] for s in all_effective}["containerInsights"] == "enabled"

    deleted = ecs.delete_account_setting(name="containerInsights")["setting"]
    assert deleted["value"] == "enabled"
    assert ecs.list_account_settings()["settings"] == []
    again = ecs.list_account_settings(effectiveSettings=True, name="containerInsights")["settings"]
    assert [s["value"] for s in again] == ["disabled"]
    with pytest.raises(ClientError) as e:
        ecs.delete_account_setting(name="containerInsights")
    assert code_of(e)[0] == "InvalidParameterException"

    pages = ecs.get_paginator("list_account_settings").paginate(effectiveSettings=True,
                                                                PaginationConfig={"PageSize": 3})
    paged = [s["name"] for p in pages for s in p["settings"]]
    assert sorted(paged) == sorted(names)


def test_25_clusters_listed_10_at_a_time(wharf, ecs):
    arns = {ecs.create_cluster(clusterName=f"cluster-{i:02}")["cluster"]["clusterArn"] for i in range(25)}
    pages = list(ecs.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 10}))
    assert [len(p["clusterArns"]) for p in pages] == [10, 10, 5]
    listed = [a for p in pages for a in p["clusterArns"]]
    assert len(listed) == 25 and set(listed) == arns
    # Deleted clusters drop out of the listing; create-cluster is idempotent on the name.
    ecs.delete_cluster(cluster="cluster-00")
    again = ecs.create_cluster(clusterName="cluster-01")["cluster"]["clusterArn"]
    listed = [a for p in ecs.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 7})
              for a in p["clusterArns"]]
    assert len(listed) == 24 and again in listed
    cli = wharf.aws("ecs", "list-clusters", "--max-items", "20")
    assert len(cli["clusterArns"]) == 20 and cli["NextToken"]
    rest = wharf.aws("ecs", "list-clusters", "--starting-token", cli["NextToken"])
    assert set(cli["clusterArns"]) | set(rest["clusterArns"]) == set(listed)
    d = ecs.describe_clusters(clusters=["cluster-00", "cluster-01"])
    assert [c["clusterName"] for c in d["clusters"]] == ["cluster-00", "cluster-01"]
    assert d["clusters"][0]["status"] == "INACTIVE"


def test_concurrent_registrations_get_distinct_revisions(wharf):
    results, errors = [], []
    barrier = threading.Barrier(20)

    def work():
        ecs = wharf.client("ecs")
        barrier.wait()
        try:
            results.append(ecs.register_task_definition(**simple_taskdef("race"))["taskDefinition"]["revision"])
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == list(range(1, 21))
    listed = wharf.client("ecs").list_task_definitions(familyPrefix="race")["taskDefinitionArns"]
    assert [int(a.rsplit(":", 1)[1]) for a in listed] == list(range(1, 21))


def test_concurrent_run_task_never_overcommits_an_instance(wharf):
    ecs = wharf.client("ecs")
    ecs.create_cluster(clusterName="c1")
    fixed = simple_taskdef("fixed")
    fixed["containerDefinitions"][0]["portMappings"] = [{"containerPort": 80, "hostPort": 8080}]
    ecs.register_task_definition(**fixed)
    for _ in range(2):
        ecs.register_container_instance(cluster="c1", totalResources=container_instance_resources())
    placed, failures, errors = [], [], []
    barrier = threading.Barrier(10)

    def work():
        c = wharf.client("ecs")
        barrier.wait()
        try:
            out = c.run_task(cluster="c1", taskDefinition="fixed")
            placed.extend(out["tasks"])
            failures.extend(out["failures"])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # One fixed port 8080 per instance: exactly two tasks, on different instances.
    assert len(placed) == 2 and len({t["containerInstanceArn"] for t in placed}) == 2
    assert len(failures) == 8 and {f["reason"] for f in failures} == {"RESOURCE:PORTS"}


def test_everything_survives_kill_9(wharf):
    ecs = wharf.client("ecs")
    cluster = ecs.create_cluster(clusterName="c1", tags=[{"key": "k", "value": "v"}])["cluster"]
    ecs.create_cluster(clusterName="c2")
    tds = [ecs.register_task_definition(**simple_taskdef("web"))["taskDefinition"] for _ in range(3)]
    ecs.deregister_task_definition(taskDefinition="web:2")
    api = ecs.register_task_definition(**simple_taskdef("api", cpu="256", memory="512"))["taskDefinition"]
    svc = ecs.create_service(cluster="c1", serviceName="s1", taskDefinition="web:3", desiredCount=4)["service"]
    svc = ecs.update_service(cluster="c1", service="s1", taskDefinition="web:1")["service"]
    inst = ecs.register_container_instance(cluster="c1", totalResources=container_instance_resources(),
                                           attributes=[{"name": "stack", "value": "prod"}])["containerInstance"]
    task = ecs.run_task(cluster="c1", taskDefinition="api", startedBy="me")["tasks"][0]
    stopped = ecs.run_task(cluster="c1", taskDefinition="web:1")["tasks"][0]
    ecs.stop_task(cluster="c1", task=stopped["taskArn"])
    ecs.put_account_setting(name="containerInsights", value="enabled")

    def state():
        c = wharf.client("ecs")
        return {
            "clusters": c.describe_clusters(clusters=["c1", "c2"], include=["TAGS"])["clusters"],
            "tds": [c.describe_task_definition(taskDefinition=f"web:{n}")["taskDefinition"] for n in (1, 2, 3)]
            + [c.describe_task_definition(taskDefinition="api")["taskDefinition"]],
            "list_tds": c.list_task_definitions()["taskDefinitionArns"],
            "services": c.describe_services(cluster="c1", services=["s1"])["services"],
            "instances": c.describe_container_instances(cluster="c1",
                                                        containerInstances=[inst["containerInstanceArn"]])[
                "containerInstances"],
            "tasks": c.describe_tasks(cluster="c1", tasks=[task["taskArn"], stopped["taskArn"]])["tasks"],
            "settings": c.list_account_settings()["settings"],
        }

    # Let the service scheduler finish placing s1's tasks, so the state compared is at rest.
    deadline = time.time() + 15
    while time.time() < deadline:
        s1 = ecs.describe_services(cluster="c1", services=["s1"])["services"][0]
        if s1["runningCount"] + s1["pendingCount"] == 4 and len(s1["deployments"]) == 1:
            break
        time.sleep(0.1)
    before = state()
    assert before["tds"][2]["revision"] == 3 and before["tds"][1]["status"] == "INACTIVE"
    old_pid = wharf.proc.pid
    wharf.kill9_and_restart()
    assert wharf.proc.pid != old_pid
    after = state()
    assert after == before
    assert after["clusters"][0]["clusterArn"] == cluster["clusterArn"]
    assert [t["taskDefinitionArn"] for t in after["tds"][:3]] == [t["taskDefinitionArn"] for t in tds]
    assert after["tds"][3]["taskDefinitionArn"] == api["taskDefinitionArn"]
    # Counts move as the scheduler works; what a deployment is must survive unchanged.
    stable = lambda deps: [(d["id"], d["status"], d["taskDefinition"], d["desiredCount"], d["createdAt"]) for d in deps]
    assert stable(after["services"][0]["deployments"]) == stable(before["services"][0]["deployments"])
    assert after["services"][0]["deployments"][0]["id"] == svc["deployments"][0]["id"]
    assert resource(after["instances"][0], "CPU") == 2048 - 256
    # New writes continue where the old process left off.
    assert wharf.client("ecs").register_task_definition(**simple_taskdef("web"))["taskDefinition"]["revision"] == 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_raw(args, env_extra=None, home=None):
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    env.update(WHARF_ACCESS_KEY_ID=ACCESS_KEY, WHARF_SECRET_ACCESS_KEY=SECRET_KEY)
    if home:
        env["HOME"] = str(home)
    env.update(env_extra or {})
    return subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def read_endpoint(proc, timeout=20):
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "endpoint:" in line:
            return line.split("endpoint:", 1)[1].strip(), lines
    raise AssertionError(f"no endpoint in {lines}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}")


def test_wharf_up_writes_an_aws_cli_profile(tmp_path):
    config, creds = tmp_path / "aws" / "config", tmp_path / "aws" / "credentials"
    config.parent.mkdir()
    config.write_text("[default]\nregion = eu-central-1\n\n[profile wharf]\nregion = stale\n")
    env = {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    proc = start_raw([*UP, "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
                      "--account-id", ACCOUNT], env, home=tmp_path)
    try:
        endpoint, _ = read_endpoint(proc)
        deadline = time.time() + 10
        while "endpoint_url" not in (config.read_text() if config.exists() else "") or not creds.exists():
            assert time.time() < deadline, "profile was not written"
            time.sleep(0.05)
        text = config.read_text()
        assert "[default]\nregion = eu-central-1" in text and "stale" not in text
        assert f"endpoint_url = {endpoint}" in text
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        cli_env.update(env, HOME=str(tmp_path))
        aws = str(Path(BIN).resolve().parents[2] / ".venv" / "bin" / "aws")
        if not Path(aws).exists():
            aws = "aws"
        run = lambda *a: subprocess.run([aws, "--profile", "wharf", *a], capture_output=True, text=True,  # noqa: E731
                                        env=cli_env, timeout=60)
        r = run("ecs", "create-cluster", "--cluster-name", "via-profile")
        assert r.returncode == 0, r.stderr
        r = run("ecs", "list-clusters")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["clusterArns"] == [f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/via-profile"]
        r = run("sts", "get-caller-identity")
        assert json.loads(r.stdout)["Account"] == ACCOUNT
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert proc.returncode == 0


def test_generated_credentials_persist_in_the_data_dir(tmp_path):
    env = dict(os.environ)
    for k in ("WHARF_ACCESS_KEY_ID", "WHARF_SECRET_ACCESS_KEY"):
        env.pop(k, None)
    args = [BIN, *UP, "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"), "--no-profile"]

    def start():
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        _, lines = read_endpoint(p)
        for _ in range(3):
            lines.append(p.stdout.readline())
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=15)
        assert p.returncode == 0
        key = [ln for ln in lines if "access key id:" in ln][0].split(":", 1)[1].strip()
        return key

    first = start()
    assert first.startswith("AKIA") and len(first) == 20
    assert start() == first
    mode = (tmp_path / "data" / "credentials.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_sigterm_exits_zero_with_a_message(wharf):
    wharf.client("ecs").create_cluster(clusterName="c1")
    proc = wharf.proc
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "stopped" in out.lower()
    wharf.proc = None
    # And it starts again on the same data.
    wharf.start()
    assert len(wharf.client("ecs").list_clusters()["clusterArns"]) == 1


def test_sigterm_right_after_startup_is_a_clean_exit(tmp_path):
    # The endpoint line is what scripts wait for; a SIGTERM straight after must be handled.
    for i in range(5):
        proc = start_raw([*UP, "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"), "--no-profile"])
        read_endpoint(proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, (i, err)
        assert "Wharf stopped." in out


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = start_raw([*UP, "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "d"), "--no-profile"])
        out, err = proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert str(port) in err and ("in use" in err.lower() or "cannot listen" in err.lower()), err
    assert "panicked" not in err


def test_unusable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("I am a file")
    proc = start_raw([*UP, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(blocker), "--no-profile"])
    out, err = proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert "data dir" in err and str(blocker) in err, err
    assert "panicked" not in err
    assert blocker.read_text() == "I am a file"


def test_two_servers_on_one_data_dir(tmp_path):
    with tempfile.TemporaryDirectory() as d:
        first = Wharf(d)
        try:
            proc = start_raw([*UP, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(Path(d) / "data"),
                              "--no-profile", "--account-id", ACCOUNT])
            try:
                out, err = proc.communicate(timeout=20)
                # The second server refuses the data dir the first one holds, and says why.
                assert proc.returncode != 0 and "data dir" in err, err
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert first.client("ecs").list_clusters()["clusterArns"] == []
        finally:
            assert first.stop() == 0


def test_signed_region_wins_over_the_server_region(wharf):
    # Signed requests carry their own region, whatever the server's --region (us-east-1) says.
    seoul = wharf.client("ecs", region_name="ap-northeast-2")
    arn = seoul.create_cluster(clusterName="seoul")["cluster"]["clusterArn"]
    assert arn == f"arn:aws:ecs:ap-northeast-2:{ACCOUNT}:cluster/seoul"
    assert seoul.list_clusters()["clusterArns"] == [arn]
    assert wharf.client("ecs", region_name=REGION).list_clusters()["clusterArns"] == []


def test_cluster_settings_configuration_and_capacity_providers(wharf, ecs):
    c = ecs.create_cluster(clusterName="c1", settings=[{"name": "containerInsights", "value": "enabled"}],
                           capacityProviders=["FARGATE", "FARGATE_SPOT"],
                           defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1, "base": 1}],
                           configuration={"executeCommandConfiguration": {"logging": "DEFAULT"}})["cluster"]
    assert c["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    assert c["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert c["defaultCapacityProviderStrategy"] == [{"capacityProvider": "FARGATE", "weight": 1, "base": 1}]
    # Idempotent on the name: the same cluster back.
    assert ecs.create_cluster(clusterName="c1")["cluster"]["clusterArn"] == c["clusterArn"]

    out = wharf.aws("ecs", "update-cluster-settings", "--cluster", "c1",
                    "--settings", "name=containerInsights,value=disabled")["cluster"]
    assert out["settings"] == [{"name": "containerInsights", "value": "disabled"}]
    out = ecs.update_cluster(cluster="c1", configuration={"executeCommandConfiguration": {"logging": "NONE"}})
    assert out["cluster"]["configuration"] == {"executeCommandConfiguration": {"logging": "NONE"}}
    d = ecs.describe_clusters(clusters=["c1"], include=["CONFIGURATIONS", "SETTINGS"])["clusters"][0]
    assert d["configuration"]["executeCommandConfiguration"]["logging"] == "NONE"
    assert d["settings"] == [{"name": "containerInsights", "value": "disabled"}]

    out = ecs.put_cluster_capacity_providers(cluster="c1", capacityProviders=["FARGATE_SPOT"],
                                             defaultCapacityProviderStrategy=[
                                                 {"capacityProvider": "FARGATE_SPOT", "weight": 2}])["cluster"]
    assert out["capacityProviders"] == ["FARGATE_SPOT"]
    assert out["defaultCapacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 2}]
    with pytest.raises(ClientError) as e:
        ecs.put_cluster_capacity_providers(cluster="c1", capacityProviders=["FARGATE", "FARGATE_SPOT"],
                                           defaultCapacityProviderStrategy=[
                                               {"capacityProvider": "FARGATE", "base": 1},
                                               {"capacityProvider": "FARGATE_SPOT", "base": 2}])
    assert code_of(e)[0] == "InvalidParameterException" and "base" in code_of(e)[1]
    assert ecs.describe_clusters(clusters=["c1"])["clusters"][0]["capacityProviders"] == ["FARGATE_SPOT"]
