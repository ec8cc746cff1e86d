"""Secrets: SSM Parameter Store and Secrets Manager driven with the real AWS CLI and boto3
(in the seeds' region, ap-northeast-2, as well as the default one), SecureString and secret
values sealed at rest, and a service whose container takes `DB_PASSWORD` from SSM and
`API_KEY` from a JSON key of a Secrets Manager secret, read back through the container's own
HTTP answer; rotating the secret and forcing a new deployment delivers the new value."""

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from agentutil import echo, host_port, register, run, wait_http, wait_instances, wait_task, wait_until
from conftest import CliError
from scheduler_support import service_tasks, wait_stable

SEOUL = "ap-northeast-2"


def code(e):
    return e.response["Error"]["Code"]


def stored_anywhere(data_dir, needle):
    """Files under the data dir whose bytes contain `needle` (the store, its WAL, logs…)."""
    hits = []
    for p in Path(data_dir).rglob("*"):
        if p.is_file():
            try:
                if needle.encode() in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                pass
    return hits


def test_parameter_store_with_the_aws_cli_in_seoul(wharf):
    w = wharf
    cli = lambda *a, **kw: w.aws("--region", SEOUL, "ssm", *a, **kw)  # noqa: E731
    assert cli("put-parameter", "--name", "/demo/db/host", "--value", "db.internal", "--type", "String") == {
        "Version": 1, "Tier": "Standard"}
    cli("put-parameter", "--name", "/demo/db/password", "--value", "s3cr3t-v1", "--type", "SecureString")
    cli("put-parameter", "--name", "/demo/flags", "--value", "a,b,c", "--type", "StringList")

    p = cli("get-parameter", "--name", "/demo/db/host")["Parameter"]
    assert p["Value"] == "db.internal" and p["Version"] == 1 and p["Type"] == "String"
    assert p["ARN"] == f"arn:aws:ssm:{SEOUL}:123456789012:parameter/demo/db/host"
    sealed = cli("get-parameter", "--name", "/demo/db/password")["Parameter"]["Value"]
    assert sealed != "s3cr3t-v1", "a SecureString read without decryption stays encrypted"
    assert cli("get-parameter", "--name", "/demo/db/password", "--with-decryption")["Parameter"]["Value"] == "s3cr3t-v1"

    # Overwrite makes version 2; labels and selectors read older versions.
    err = cli("put-parameter", "--name", "/demo/db/password", "--value", "x", "--type", "SecureString", check=False)
    assert isinstance(err, CliError) and "ParameterAlreadyExists" in err.stderr
    assert cli("put-parameter", "--name", "/demo/db/password", "--value", "s3cr3t-v2", "--type", "SecureString",
               "--overwrite")["Version"] == 2
    assert cli("label-parameter-version", "--name", "/demo/db/password", "--parameter-version", "1",
               "--labels", "stable", "9bad")["InvalidLabels"] == ["9bad"]
    by_label = cli("get-parameter", "--name", "/demo/db/password:stable", "--with-decryption")["Parameter"]
    assert (by_label["Value"], by_label["Version"], by_label["Selector"]) == ("s3cr3t-v1", 1, ":stable")
    assert cli("get-parameter", "--name", "/demo/db/password:2", "--with-decryption")["Parameter"]["Value"] == "s3cr3t-v2"
    err = cli("get-parameter", "--name", "/demo/db/password:7", check=False)
    assert isinstance(err, CliError) and "ParameterVersionNotFound" in err.stderr
    history = cli("get-parameter-history", "--name", "/demo/db/password", "--with-decryption")["Parameters"]
    assert [(h["Version"], h["Value"], h["Labels"]) for h in history] == [(1, "s3cr3t-v1", ["stable"]),
                                                                         (2, "s3cr3t-v2", [])]

    # Paths: one level, or recursive; the CLI pages through them itself.
    names = lambda out: sorted(p["Name"] for p in out["Parameters"])  # noqa: E731
    assert names(cli("get-parameters-by-path", "--path", "/demo")) == ["/demo/flags"]
    assert names(cli("get-parameters-by-path", "--path", "/demo", "--recursive", "--page-size", "1")) == [
        "/demo/db/host", "/demo/db/password", "/demo/flags"]
    described = cli("describe-parameters", "--parameter-filters", "Key=Type,Values=SecureString")["Parameters"]
    assert [d["Name"] for d in described] == ["/demo/db/password"] and described[0]["KeyId"] == "alias/aws/ssm"
    got = cli("get-parameters", "--names", "/demo/db/host", "/demo/nope")
    assert [p["Name"] for p in got["Parameters"]] == ["/demo/db/host"] and got["InvalidParameters"] == ["/demo/nope"]

    # Regions are separate, and errors name what is wrong.
    err = w.aws("ssm", "get-parameter", "--name", "/demo/db/host", check=False)
    assert isinstance(err, CliError) and "ParameterNotFound" in err.stderr
    err = cli("put-parameter", "--name", "demo/bad", "--value", "x", "--type", "String", check=False)
    assert isinstance(err, CliError) and "ValidationException" in err.stderr and "begin with /" in err.stderr
    err = cli("put-parameter", "--name", "/demo/t", "--value", "x", "--type", "Strange", check=False)
    assert isinstance(err, CliError) and "Type" in err.stderr

    assert cli("delete-parameters", "--names", "/demo/flags", "/demo/none") == {
        "DeletedParameters": ["/demo/flags"], "InvalidParameters": ["/demo/none"]}
    cli("delete-parameter", "--name", "/demo/db/host")
    err = cli("delete-parameter", "--name", "/demo/db/host", check=False)
    assert isinstance(err, CliError) and "ParameterNotFound" in err.stderr


def test_secrets_manager_versions_deletion_and_errors(wharf):
    sm = wharf.client("secretsmanager", region_name=SEOUL)
    created = sm.create_secret(Name="prod/api", SecretString=json.dumps({"API_KEY": "k1"}),
                               Tags=[{"Key": "team", "Value": "web"}])
    arn = created["ARN"]
    assert arn.startswith(f"arn:aws:secretsmanager:{SEOUL}:123456789012:secret:prod/api-") and len(arn.rsplit("-", 1)[1]) == 6
    v1 = created["VersionId"]
    with pytest.raises(ClientError) as e:
        sm.create_secret(Name="prod/api", SecretString="x")
    assert code(e.value) == "ResourceExistsException"

    v2 = sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"API_KEY": "k2"}))["VersionId"]
    cur = sm.get_secret_value(SecretId="prod/api")
    assert (cur["VersionId"], json.loads(cur["SecretString"])) == (v2, {"API_KEY": "k2"})
    prev = sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")
    assert (prev["VersionId"], prev["VersionStages"]) == (v1, ["AWSPREVIOUS"])
    # A partial ARN (without the random suffix) names the secret too.
    partial = arn.rsplit("-", 1)[0]
    assert sm.describe_secret(SecretId=partial)["VersionIdsToStages"] == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]}
    listed = sm.list_secrets(Filters=[{"Key": "tag-key", "Values": ["team"]}])["SecretList"]
    assert [s["Name"] for s in listed] == ["prod/api"]

    deleted = sm.delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    assert deleted["DeletionDate"]
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=arn)
    assert code(e.value) == "InvalidRequestException"
    assert sm.list_secrets()["SecretList"] == []
    assert [s["Name"] for s in sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]] == ["prod/api"]
    sm.restore_secret(SecretId=arn)
    assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"]) == {"API_KEY": "k2"}

    with pytest.raises(ClientError) as e:
        sm.delete_secret(SecretId=arn, RecoveryWindowInDays=3)
    assert code(e.value) == "InvalidParameterException" and "RecoveryWindowInDays" in str(e.value)
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    with pytest.raises(ClientError) as e:
        sm.describe_secret(SecretId=arn)
    assert code(e.value) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        wharf.client("secretsmanager").get_secret_value(SecretId="prod/api")
    assert code(e.value) == "ResourceNotFoundException"


def test_secret_values_are_sealed_at_rest(wharf):
    ssm, sm = wharf.client("ssm"), wharf.client("secretsmanager")
    ssm.put_parameter(Name="/rest/password", Value="clear-text-param-9f2c", Type="SecureString")
    sm.create_secret(Name="rest/secret", SecretString="clear-text-secret-41ab")
    sm.put_secret_value(SecretId="rest/secret", SecretString="clear-text-secret-77de")
    # The values are readable through the API …
    assert ssm.get_parameter(Name="/rest/password", WithDecryption=True)["Parameter"]["Value"] == "clear-text-param-9f2c"
    # … and in clear nowhere under the data dir, even after a restart from disk.
    wharf.kill9_and_restart()
    data = wharf.data_dir / "data"
    for needle in ("clear-text-param-9f2c", "clear-text-secret-41ab", "clear-text-secret-77de"):
        assert stored_anywhere(data, needle) == [], needle
    assert wharf.client("secretsmanager").get_secret_value(SecretId="rest/secret")["SecretString"] == "clear-text-secret-77de"
    # Only the owner may enter the data dir or read its databases and keys.
    assert data.stat().st_mode & 0o777 == 0o700
    for f in ("secrets.key", "wharf.db", "wharf.db-wal", "logs.db"):
        assert (data / f).stat().st_mode & 0o777 == 0o600, f


def test_service_containers_get_secrets_and_a_rotation_with_a_new_deployment(wharf_agent, tmp_path):
    w = wharf_agent
    ecs, ssm, sm = w.client("ecs"), w.client("ssm"), w.client("secretsmanager")
    wait_instances(ecs, w.cluster)
    ssm.put_parameter(Name="/web/db/password", Value="db-pass-one", Type="SecureString")
    secret_arn = sm.create_secret(Name="web/api", SecretString=json.dumps({"API_KEY": "api-key-one"}))["ARN"]
    param_arn = ssm.get_parameter(Name="/web/db/password")["Parameter"]["ARN"]
    td = register(ecs, "secretive", echo(
        portMappings=[{"containerPort": 8080, "hostPort": 0}],
        secrets=[{"name": "DB_PASSWORD", "valueFrom": "/web/db/password"},
                 {"name": "DB_PASSWORD_BY_ARN", "valueFrom": param_arn},
                 {"name": "API_KEY", "valueFrom": f"{secret_arn}:API_KEY::"}]))
    ecs.create_service(cluster=w.cluster, serviceName="secretive", taskDefinition=td, desiredCount=1)
    wait_stable(ecs, w.cluster, "secretive", timeout=90)

    def env_of_running_task():
        (task,) = [t for t in service_tasks(ecs, w.cluster, "secretive") if t["lastStatus"] == "RUNNING"]
        return task, wait_http(f"http://127.0.0.1:{host_port(task)}/env")

    task, env = env_of_running_task()
    assert (env["DB_PASSWORD"], env["DB_PASSWORD_BY_ARN"], env["API_KEY"]) == ("db-pass-one", "db-pass-one", "api-key-one")
    shown = json.dumps(ecs.describe_tasks(cluster=w.cluster, tasks=[task["taskArn"]]), default=str)
    assert "db-pass-one" not in shown and "api-key-one" not in shown
    assert "db-pass-one" not in json.dumps(ecs.describe_services(cluster=w.cluster, services=["secretive"]), default=str)
    # Not in the store, its log or the server's log either.
    for needle in ("db-pass-one", "api-key-one"):
        assert stored_anywhere(w.data_dir, needle) == [], needle

    # Rotate both, force a new deployment: the replacement task has the new values.
    ssm.put_parameter(Name="/web/db/password", Value="db-pass-two", Type="SecureString", Overwrite=True)
    sm.put_secret_value(SecretId=secret_arn, SecretString=json.dumps({"API_KEY": "api-key-two"}))
    ecs.update_service(cluster=w.cluster, service="secretive", forceNewDeployment=True)
    wait_until("the replacement task carries the rotated values",
               lambda: (lambda te: (te[1].get("API_KEY") == "api-key-two", te[1]))(env_of_running_task())
               if len([t for t in service_tasks(ecs, w.cluster, "secretive") if t["lastStatus"] == "RUNNING"]) == 1
               else (False, "rolling"), 90, interval=0.5)
    _, env = env_of_running_task()
    assert (env["DB_PASSWORD"], env["API_KEY"]) == ("db-pass-two", "api-key-two")


def test_a_missing_secret_stops_the_task_with_ecs_reason(wharf_agent):
    w = wharf_agent
    ecs = w.client("ecs")
    wait_instances(ecs, w.cluster)
    td = register(ecs, "no-secret", echo(secrets=[{"name": "DB_PASSWORD", "valueFrom": "/missing/password"}]))
    (arn,) = run(ecs, w.cluster, td)
    task = wait_task(ecs, w.cluster, arn, status="STOPPED", timeout=60)
    assert task["stoppedReason"].startswith(
        "ResourceInitializationError: unable to pull secrets or registry auth"), task["stoppedReason"]
    assert "/missing/password" in task["stoppedReason"]
    assert task["stopCode"] == "TaskFailedToStart"
    assert all("runtimeId" not in c for c in task["containers"]), "no container was started"

    sm = w.client("secretsmanager")
    arn_missing_key = sm.create_secret(Name="nokey", SecretString=json.dumps({"OTHER": "x"}))["ARN"]
    td = register(ecs, "no-key", echo(secrets=[{"name": "API_KEY", "valueFrom": f"{arn_missing_key}:API_KEY::"}]))
    (arn,) = run(ecs, w.cluster, td)
    task = wait_task(ecs, w.cluster, arn, status="STOPPED", timeout=60)
    assert "ResourceInitializationError" in task["stoppedReason"] and "API_KEY" in task["stoppedReason"]
    assert task["stopCode"] == "TaskFailedToStart"


def test_a_generated_secret_key_is_printed_once(tmp_path):
    """Without WHARF_* credentials `wharf up` generates the account's key and prints the
    secret that once; later starts say where it is kept instead."""
    import os
    import subprocess

    from conftest import BIN

    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}

    def first_lines():
        p = subprocess.Popen([BIN, "up", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
                              "--no-profile", "--no-agent"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=env)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "data dir:" in line:
                break
        p.terminate()
        p.wait(timeout=15)
        return "".join(lines)

    first = first_lines()
    secret = json.loads((tmp_path / "data" / "credentials.json").read_text())["secret_access_key"]
    assert secret in first and "generated now" in first
    second = first_lines()
    assert secret not in second and "kept in" in second
    assert (tmp_path / "data" / "credentials.json").stat().st_mode & 0o777 == 0o600
