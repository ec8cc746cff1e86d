"""Two accounts on one Wharf (`--accounts-file`, and `wharf accounts create`): each key sees
and changes only its own account's resources, in every service — ECS, ECR and its registry,
CloudWatch Logs, ELBv2, SSM, Secrets Manager and STS."""

import base64
import json
import subprocess
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, BIN, REGION, Wharf

OTHER = "210987654321"
OTHER_KEY = "AKIAWHARFOTHERKEY001"
OTHER_SECRET = "other-account-secret-000000000000000000000"


@pytest.fixture
def two(tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"accountId": OTHER, "accessKeyId": OTHER_KEY, "secretAccessKey": OTHER_SECRET}]))
    w = Wharf(tmp_path / "w", ["--accounts-file", str(accounts)])
    try:
        yield w
    finally:
        w.stop()


def other(w, service):
    return w.client(service, aws_access_key_id=OTHER_KEY, aws_secret_access_key=OTHER_SECRET)


def refused_or_empty(call):
    """Runs `call`; returns True when it raised an AWS error (not found, invalid ARN…)."""
    try:
        call()
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] < 500, e.response
        return True
    return False


def test_each_account_sees_and_changes_only_its_own(two):
    w = two
    a_ecs, b_ecs = w.client("ecs"), other(w, "ecs")
    assert other(w, "sts").get_caller_identity()["Account"] == OTHER
    assert w.client("sts").get_caller_identity()["Account"] == ACCOUNT

    # ECS
    cluster = a_ecs.create_cluster(clusterName="shared-name")["cluster"]["clusterArn"]
    td = a_ecs.register_task_definition(family="web", containerDefinitions=[
        {"name": "web", "image": "x", "memory": 64}])["taskDefinition"]["taskDefinitionArn"]
    assert b_ecs.list_clusters()["clusterArns"] == []
    assert b_ecs.list_task_definitions()["taskDefinitionArns"] == []
    assert refused_or_empty(lambda: b_ecs.describe_clusters(clusters=[cluster])) or \
        b_ecs.describe_clusters(clusters=[cluster])["clusters"] == []
    assert refused_or_empty(lambda: b_ecs.delete_cluster(cluster=cluster))
    assert refused_or_empty(lambda: b_ecs.deregister_task_definition(taskDefinition=td))
    b_cluster = b_ecs.create_cluster(clusterName="shared-name")["cluster"]["clusterArn"]
    assert b_cluster == f"arn:aws:ecs:{REGION}:{OTHER}:cluster/shared-name" and b_cluster != cluster
    assert a_ecs.describe_clusters(clusters=["shared-name"])["clusters"][0]["clusterArn"] == cluster
    assert a_ecs.describe_task_definition(taskDefinition=td)["taskDefinition"]["status"] == "ACTIVE"

    # ECR, and its registry with each account's own token
    repo = w.client("ecr").create_repository(repositoryName="app")["repository"]
    assert other(w, "ecr").describe_repositories()["repositories"] == []
    assert refused_or_empty(lambda: other(w, "ecr").delete_repository(repositoryName="app"))
    token = other(w, "ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    req = urllib.request.Request(f"{w.endpoint}/v2/app/tags/list", headers={"Authorization": f"Basic {token}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5)
    assert e.value.code == 404
    assert w.client("ecr").describe_repositories()["repositories"][0]["repositoryArn"] == repo["repositoryArn"]

    # CloudWatch Logs
    w.client("logs").create_log_group(logGroupName="/ecs/web")
    assert other(w, "logs").describe_log_groups()["logGroups"] == []
    assert refused_or_empty(lambda: other(w, "logs").delete_log_group(logGroupName="/ecs/web"))
    assert len(w.client("logs").describe_log_groups()["logGroups"]) == 1

    # ELBv2
    tg = w.client("elbv2").create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId="vpc-1",
                                               TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    assert other(w, "elbv2").describe_target_groups()["TargetGroups"] == []
    # ELBv2 deletes are idempotent (an unknown ARN succeeds): what counts is that A's stays.
    refused_or_empty(lambda: other(w, "elbv2").delete_target_group(TargetGroupArn=tg))
    assert w.client("elbv2").describe_target_groups(TargetGroupArns=[tg])["TargetGroups"]

    # SSM and Secrets Manager
    w.client("ssm").put_parameter(Name="/db/password", Value="a-secret", Type="SecureString")
    assert other(w, "ssm").describe_parameters()["Parameters"] == []
    assert refused_or_empty(lambda: other(w, "ssm").get_parameter(Name="/db/password"))
    assert refused_or_empty(lambda: other(w, "ssm").get_parameter(
        Name=f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/db/password", WithDecryption=True))
    assert refused_or_empty(lambda: other(w, "ssm").delete_parameter(Name="/db/password"))
    secret = w.client("secretsmanager").create_secret(Name="api", SecretString="k")["ARN"]
    assert other(w, "secretsmanager").list_secrets()["SecretList"] == []
    assert refused_or_empty(lambda: other(w, "secretsmanager").get_secret_value(SecretId=secret))
    assert refused_or_empty(lambda: other(w, "secretsmanager").delete_secret(SecretId=secret,
                                                                             ForceDeleteWithoutRecovery=True))
    assert w.client("ssm").get_parameter(Name="/db/password", WithDecryption=True)["Parameter"]["Value"] == "a-secret"
    assert w.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"] == "k"


def test_accounts_create_adds_a_key_the_server_accepts(tmp_path):
    data = tmp_path / "w" / "data"
    out = subprocess.run([BIN, "accounts", "create", "--account-id", OTHER, "--data-dir", str(data)],
                         capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith("("))
    key, secret = fields["access key id"].strip(), fields["secret access key"].strip()
    assert (data / "accounts.json").stat().st_mode & 0o777 == 0o600
    again = subprocess.run([BIN, "accounts", "create", "--account-id", OTHER, "--data-dir", str(data)],
                           capture_output=True, text=True)
    assert again.returncode != 0 and "already" in again.stderr
    w = Wharf(tmp_path / "w")
    try:
        sts = w.client("sts", aws_access_key_id=key, aws_secret_access_key=secret)
        assert sts.get_caller_identity()["Account"] == OTHER
    finally:
        w.stop()
