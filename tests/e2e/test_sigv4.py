"""SigV4 over real HTTP: what botocore signs is accepted; every way a signature can be wrong
is refused with the code AWS uses, in the JSON envelope for ECS and in the Query
`<ErrorResponse>` XML envelope for STS."""

import datetime
import json

import botocore.auth
import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, ACCOUNT, REGION, SECRET_KEY
from util import ECS_TARGET, JSON_CT, assert_aws_error, query, raw, send, sign, xml_error

STS_CALL = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}


def shifted_clock(monkeypatch, **delta):
    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: real() + datetime.timedelta(**delta))


def test_botocore_signed_requests_are_accepted(wharf):
    status, body = raw(wharf, "ListClusters", {})
    assert status == 200 and body == {"clusterArns": []}
    ecs = wharf.client("ecs")
    arn = ecs.create_cluster(clusterName="signed")["cluster"]["clusterArn"]
    assert ecs.list_clusters()["clusterArns"] == [arn]
    assert raw(wharf, "ListClusters", {})[1] == {"clusterArns": [arn]}


def test_unsigned_request_is_missing_authentication_token(wharf):
    status, body = raw(wharf, "ListClusters", {}, signed=False)
    assert_aws_error(status, body, "MissingAuthenticationTokenException", contains="Missing Authentication Token")


def test_malformed_authorization_is_incomplete_signature(wharf):
    headers = {"Content-Type": JSON_CT, "X-Amz-Target": f"{ECS_TARGET}.ListClusters"}
    h, data = sign("POST", wharf.endpoint + "/", b"{}", headers, "ecs")
    cases = {
        "no signature": h["Authorization"].split(", Signature=")[0],
        "garbage": "AWS4-HMAC-SHA256 garbage",
        "wrong algorithm": h["Authorization"].replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
        "no terminator": h["Authorization"].replace("/aws4_request", "/aws5_request"),
    }
    for name, auth in cases.items():
        status, _, out = send("POST", wharf.endpoint + "/", data, dict(h, Authorization=auth))
        body = json.loads(out)
        assert "IncompleteSignature" in body.get("__type", ""), (name, body)
        assert_aws_error(status, body, "IncompleteSignatureException")
    # A date header that does not parse.
    status, _, out = send("POST", wharf.endpoint + "/", data, dict(h, **{"X-Amz-Date": "yesterday"}))
    assert_aws_error(status, json.loads(out), "IncompleteSignatureException")


def test_wrong_secret_is_invalid_signature(wharf):
    status, body = raw(wharf, "ListClusters", {}, secret_key="not-the-secret")
    assert_aws_error(status, body, "InvalidSignatureException", contains="signature")
    with pytest.raises(ClientError) as e:
        wharf.client("ecs", aws_secret_access_key="not-the-secret").list_clusters()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_tampered_body_or_target_is_invalid_signature(wharf):
    headers = {"Content-Type": JSON_CT, "X-Amz-Target": f"{ECS_TARGET}.CreateCluster"}
    h, _ = sign("POST", wharf.endpoint + "/", b'{"clusterName": "a"}', headers, "ecs")
    status, _, out = send("POST", wharf.endpoint + "/", b'{"clusterName": "b"}', h)
    assert_aws_error(status, json.loads(out), "InvalidSignatureException")
    h2 = dict(h, **{"X-Amz-Target": f"{ECS_TARGET}.DeleteCluster"})
    status, _, out = send("POST", wharf.endpoint + "/", b'{"clusterName": "a"}', h2)
    assert_aws_error(status, json.loads(out), "InvalidSignatureException")
    assert wharf.client("ecs").list_clusters()["clusterArns"] == []


def test_unknown_access_key_is_unrecognized_client(wharf):
    status, body = raw(wharf, "ListClusters", {}, access_key="AKIANOBODYKNOWSTHIS0")
    assert_aws_error(status, body, "UnrecognizedClientException", contains="security token")
    with pytest.raises(ClientError) as e:
        wharf.client("ecs", aws_access_key_id="AKIANOBODYKNOWSTHIS0").list_clusters()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_clock_skew_over_fifteen_minutes_is_refused(wharf, monkeypatch):
    shifted_clock(monkeypatch, minutes=-16)
    status, body = raw(wharf, "ListClusters", {})
    assert_aws_error(status, body, "InvalidSignatureException", contains="Signature expired")
    shifted_clock(monkeypatch, minutes=16 + 16)  # undo -16, then +16: the future is refused too
    status, body = raw(wharf, "ListClusters", {})
    assert_aws_error(status, body, "InvalidSignatureException", contains="Signature not yet current")


def test_clock_skew_within_fifteen_minutes_is_accepted(wharf, monkeypatch):
    shifted_clock(monkeypatch, minutes=-14)
    assert raw(wharf, "ListClusters", {})[0] == 200
    shifted_clock(monkeypatch, minutes=14 + 14)
    assert raw(wharf, "ListClusters", {})[0] == 200


def test_credential_scoped_to_another_service_is_refused(wharf):
    status, body = raw(wharf, "ListClusters", {}, service="sts")
    assert_aws_error(status, body, "InvalidSignatureException", contains="ecs")


def test_sts_get_caller_identity_with_the_cli(wharf):
    out = wharf.aws("sts", "get-caller-identity")
    assert out["Account"] == ACCOUNT
    assert out["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert out["UserId"]
    me = wharf.client("sts").get_caller_identity()
    assert (me["Account"], me["Arn"]) == (out["Account"], out["Arn"])


def test_sts_signed_query_request_answers_in_xml(wharf):
    status, root = query(wharf, STS_CALL)
    assert status == 200
    assert root.tag.split("}")[-1] == "GetCallerIdentityResponse"
    text = {el.tag.split("}")[-1]: el.text for el in root.iter()}
    assert text["Account"] == ACCOUNT and text["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert text.get("RequestId")


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"signed": False}, "MissingAuthenticationToken"),
        ({"secret_key": "not-the-secret"}, "SignatureDoesNotMatch"),
        ({"access_key": "AKIANOBODYKNOWSTHIS0"}, "InvalidClientTokenId"),
    ],
)
def test_sts_auth_failures_use_query_codes_in_an_error_response(wharf, kwargs, code):
    status, root = query(wharf, STS_CALL, **kwargs)
    assert status == 403, status
    kind, got, message = xml_error(root)
    assert got == code
    assert kind == "Sender"
    assert message


def test_sts_clock_skew_is_signature_does_not_match(wharf, monkeypatch):
    shifted_clock(monkeypatch, minutes=-20)
    status, root = query(wharf, STS_CALL)
    assert status == 403
    _, code, message = xml_error(root)
    assert code == "SignatureDoesNotMatch" and "Signature expired" in message
    with pytest.raises(ClientError) as e:
        wharf.client("sts").get_caller_identity()
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_sts_via_boto3_with_wrong_keys(wharf):
    with pytest.raises(ClientError) as e:
        wharf.client("sts", aws_access_key_id="AKIANOBODYKNOWSTHIS0").get_caller_identity()
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"
    with pytest.raises(ClientError) as e:
        wharf.client("sts", aws_secret_access_key=SECRET_KEY + "x").get_caller_identity()
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert wharf.client("sts", aws_access_key_id=ACCESS_KEY).get_caller_identity()["Account"] == ACCOUNT


def test_region_comes_from_the_credential_scope(wharf):
    east = wharf.client("ecs")
    west = wharf.client("ecs", region_name="eu-west-1")
    c = east.create_cluster(clusterName="regional")["cluster"]
    assert c["clusterArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/regional"
    td = east.register_task_definition(
        family="regional", containerDefinitions=[{"name": "a", "image": "busybox", "memory": 32}]
    )["taskDefinition"]
    assert td["taskDefinitionArn"].startswith(f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/")

    assert west.list_clusters()["clusterArns"] == []
    assert west.list_task_definitions()["taskDefinitionArns"] == []
    assert west.describe_clusters(clusters=["regional"])["failures"][0]["reason"] == "MISSING"
    with pytest.raises(ClientError) as e:
        west.describe_task_definition(taskDefinition="regional:1")
    assert e.value.response["Error"]["Code"] == "ClientException"
    # An ARN of another region is not a name this region resolves.
    with pytest.raises(ClientError) as e:
        west.list_services(cluster=c["clusterArn"])
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "cluster" in e.value.response["Error"]["Message"]

    w = west.create_cluster(clusterName="regional")["cluster"]
    assert w["clusterArn"] == f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/regional"
    assert east.list_clusters()["clusterArns"] == [c["clusterArn"]]
    assert west.list_clusters()["clusterArns"] == [w["clusterArn"]]
    assert west.register_task_definition(
        family="regional", containerDefinitions=[{"name": "a", "image": "busybox", "memory": 32}]
    )["taskDefinition"]["revision"] == 1


def test_sts_query_errors_and_get_requests(wharf):
    status, root = query(wharf, {"Action": "NoSuchAction", "Version": "2011-06-15"})
    assert status == 400 and xml_error(root)[1] == "InvalidAction"
    assert "NoSuchAction" in xml_error(root)[2]
    status, root = query(wharf, {"Version": "2011-06-15"})
    assert status == 400 and xml_error(root)[1] == "MissingAction"
    # The Query protocol over GET, signed like botocore signs any request.
    url = wharf.endpoint + "/?Action=GetCallerIdentity&Version=2011-06-15"
    h, _ = sign("GET", url, b"", {}, "sts")
    status, _, out = send("GET", url, b"", h)
    assert status == 200 and f"<Account>{ACCOUNT}</Account>".encode() in out
    # Neither a JSON target nor a Query action: not an AWS call at all.
    status, _, out = send("GET", wharf.endpoint + "/", b"", {})
    assert status == 404 and json.loads(out)["__type"] == "UnknownOperationException"
