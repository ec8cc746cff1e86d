"""Amazon ECR on Wharf, driven with the AWS CLI, boto3 and the docker CLI: repositories, tag
mutability, repository and lifecycle policies, tags, authorization tokens, and (with the
registry's `/v2/` endpoint) `docker login`/`push`/`pull`, the image and layer operations,
lifecycle enforcement, and the embedded agent running a pushed image as a task."""

import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from agentutil import wait_instances, wait_task
from conftest import ACCOUNT, REGION, ROOT, CliError, docker
from util import send, wait_for, write_json


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def keep_newest(n, prefix="v"):
    return json.dumps({"rules": [{
        "rulePriority": 1, "description": f"keep the {n} newest",
        "selection": {"tagStatus": "tagged", "tagPrefixList": [prefix], "countType": "imageCountMoreThan",
                      "countNumber": n},
        "action": {"type": "expire"}}]})


# ---------------------------------------------------------------------------------------------
# The API alone


@pytest.fixture
def ecr(wharf):
    return wharf.client("ecr")


def test_create_describe_delete_repository(wharf, ecr):
    host = wharf.endpoint.removeprefix("http://")
    repo = wharf.aws("ecr", "create-repository", "--repository-name", "team/app",
                     "--image-scanning-configuration", "scanOnPush=true",
                     "--tags", "Key=env,Value=prod")["repository"]
    assert repo["repositoryUri"] == f"{host}/team/app"
    assert repo["repositoryArn"] == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/app"
    assert repo["registryId"] == ACCOUNT
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert "tags" not in repo and "policy" not in repo

    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName="team/app")
    assert code(e) == "RepositoryAlreadyExistsException"
    for bad in ["Team/App", "app/", "-app", "a..b", "a b"]:
        with pytest.raises(ClientError) as e:
            ecr.create_repository(repositoryName=bad)
        assert code(e) == "InvalidParameterException", bad
        assert "repositoryName" in e.value.response["Error"]["Message"]

    got = ecr.describe_repositories(repositoryNames=["team/app"])["repositories"]
    assert [r["repositoryName"] for r in got] == ["team/app"]
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=["team/app", "nope"])
    assert code(e) == "RepositoryNotFoundException"
    assert "nope" in e.value.response["Error"]["Message"]
    err = wharf.aws("ecr", "describe-repositories", "--repository-names", "missing", check=False)
    assert isinstance(err, CliError) and "RepositoryNotFoundException" in err.stderr

    assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [{"Key": "env", "Value": "prod"}]
    deleted = ecr.delete_repository(repositoryName="team/app")["repository"]
    assert deleted["repositoryName"] == "team/app"
    with pytest.raises(ClientError) as e:
        ecr.delete_repository(repositoryName="team/app")
    assert code(e) == "RepositoryNotFoundException"


def test_describe_repositories_pages(wharf, ecr):
    names = [f"repo-{i:02d}" for i in range(7)]
    for n in names:
        ecr.create_repository(repositoryName=n)
    seen, token, pages = [], None, 0
    while True:
        kw = {"maxResults": 3, **({"nextToken": token} if token else {})}
        out = ecr.describe_repositories(**kw)
        seen += [r["repositoryName"] for r in out["repositories"]]
        pages += 1
        token = out.get("nextToken")
        if not token:
            break
    assert sorted(seen) == names and pages == 3
    # The CLI's paginator walks the same pages.
    out = wharf.aws("ecr", "describe-repositories", "--page-size", "2")
    assert sorted(r["repositoryName"] for r in out["repositories"]) == names
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(nextToken="not-a-token")
    assert code(e) == "InvalidParameterException"


def test_tag_mutability_modes_and_filters(ecr):
    r = ecr.create_repository(repositoryName="imm", imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                              imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}])
    assert r["repository"]["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert r["repository"]["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "latest"}]
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName="x1", imageTagMutability="MUTABLE_WITH_EXCLUSION")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName="x2", imageTagMutability="IMMUTABLE",
                              imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "a*"}])
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName="x3", imageTagMutability="MUTABLE_WITH_EXCLUSION",
                              imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "a/b"}])
    assert code(e) == "InvalidParameterException"

    out = ecr.put_image_tag_mutability(repositoryName="imm", imageTagMutability="IMMUTABLE")
    assert out["imageTagMutability"] == "IMMUTABLE" and "imageTagMutabilityExclusionFilters" not in out
    repo = ecr.describe_repositories(repositoryNames=["imm"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and "imageTagMutabilityExclusionFilters" not in repo
    with pytest.raises(ClientError) as e:
        ecr.put_image_tag_mutability(repositoryName="gone", imageTagMutability="MUTABLE")
    assert code(e) == "RepositoryNotFoundException"


def test_repository_policy(wharf, ecr, tmp_path):
    ecr.create_repository(repositoryName="pol")
    with pytest.raises(ClientError) as e:
        ecr.get_repository_policy(repositoryName="pol")
    assert code(e) == "RepositoryPolicyNotFoundException"
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "pull", "Effect": "Allow",
                                                      "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                                                      "Action": ["ecr:BatchGetImage"]}]}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    out = wharf.aws("ecr", "set-repository-policy", "--repository-name", "pol", "--policy-text", f"file://{path}")
    assert json.loads(out["policyText"]) == policy
    assert json.loads(ecr.get_repository_policy(repositoryName="pol")["policyText"]) == policy
    for bad in ["{not json", "[]", json.dumps({"Version": "2012-10-17"}),
                json.dumps({"Statement": [{"Effect": "Maybe", "Action": "*"}]})]:
        with pytest.raises(ClientError) as e:
            ecr.set_repository_policy(repositoryName="pol", policyText=bad)
        assert code(e) == "InvalidParameterException", bad
    assert json.loads(ecr.delete_repository_policy(repositoryName="pol")["policyText"]) == policy
    with pytest.raises(ClientError) as e:
        ecr.delete_repository_policy(repositoryName="pol")
    assert code(e) == "RepositoryPolicyNotFoundException"


def test_resource_tags(ecr):
    arn = ecr.create_repository(repositoryName="tagged")["repository"]["repositoryArn"]
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "a", "Value": "3"}])
    assert sorted(ecr.list_tags_for_resource(resourceArn=arn)["tags"], key=lambda t: t["Key"]) == [
        {"Key": "a", "Value": "3"}, {"Key": "b", "Value": "2"}]
    ecr.untag_resource(resourceArn=arn, tagKeys=["a"])
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ClientError) as e:
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    assert code(e) == "TooManyTagsException"
    with pytest.raises(ClientError) as e:
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "aws:owner", "Value": "v"}])
    assert code(e) == "InvalidTagParameterException"
    with pytest.raises(ClientError) as e:
        ecr.tag_resource(resourceArn=arn.replace("tagged", "missing"), tags=[{"Key": "a", "Value": "1"}])
    assert code(e) == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.list_tags_for_resource(resourceArn="arn:aws:ecs:us-east-1:123456789012:cluster/x")
    assert code(e) == "InvalidParameterException"


def test_lifecycle_policy_api_and_validation(wharf, ecr):
    ecr.create_repository(repositoryName="lc")
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy(repositoryName="lc")
    assert code(e) == "LifecyclePolicyNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.delete_lifecycle_policy(repositoryName="lc")
    assert code(e) == "LifecyclePolicyNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy_preview(repositoryName="lc")
    assert code(e) == "LifecyclePolicyPreviewNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.start_lifecycle_policy_preview(repositoryName="lc")
    assert code(e) == "LifecyclePolicyNotFoundException"

    rule = {"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"}}
    bad = [
        {"rules": []},
        {"rules": [dict(rule, selection={"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1})]},
        {"rules": [dict(rule, selection={"tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 3})]},
        {"rules": [dict(rule, selection={"tagStatus": "untagged", "tagPrefixList": ["v"],
                                         "countType": "imageCountMoreThan", "countNumber": 1})]},
        {"rules": [rule, dict(rule, rulePriority=2, selection={"tagStatus": "untagged",
                                                               "countType": "imageCountMoreThan", "countNumber": 1})]},
        {"rules": [rule, dict(rule, description="same priority")]},
        {"rules": [dict(rule, action={"type": "delete"})]},
        {"rules": [dict(rule, selection={"tagStatus": "tagged", "tagPatternList": ["a*b*c*d*e*f"],
                                         "countType": "imageCountMoreThan", "countNumber": 1})]},
    ]
    for doc in bad:
        text = json.dumps(doc).ljust(100)
        with pytest.raises(ClientError) as e:
            ecr.put_lifecycle_policy(repositoryName="lc", lifecyclePolicyText=text)
        assert code(e) == "InvalidParameterException", doc
        assert "LifecyclePolicyText" in e.value.response["Error"]["Message"]

    text = keep_newest(2)
    out = wharf.aws("ecr", "put-lifecycle-policy", "--repository-name", "lc", "--lifecycle-policy-text", text)
    assert out["lifecyclePolicyText"] == text and out["registryId"] == ACCOUNT
    assert ecr.get_lifecycle_policy(repositoryName="lc")["lifecyclePolicyText"] == text
    started = ecr.start_lifecycle_policy_preview(repositoryName="lc")
    assert started["status"] == "IN_PROGRESS" and started["lifecyclePolicyText"] == text
    preview = ecr.get_lifecycle_policy_preview(repositoryName="lc")
    assert preview["status"] == "COMPLETE" and preview["previewResults"] == []
    assert preview["summary"] == {"expiringImageTotalCount": 0}
    assert ecr.delete_lifecycle_policy(repositoryName="lc")["lifecyclePolicyText"] == text
    with pytest.raises(ClientError) as e:
        ecr.put_lifecycle_policy(repositoryName="missing", lifecyclePolicyText=text)
    assert code(e) == "RepositoryNotFoundException"


def test_authorization_token(wharf, ecr):
    data = ecr.get_authorization_token()["authorizationData"]
    assert len(data) == 1
    user, password = base64.b64decode(data[0]["authorizationToken"]).decode().split(":", 1)
    assert user == "AWS" and password and ":" not in password
    assert data[0]["proxyEndpoint"] == wharf.endpoint
    hours = (data[0]["expiresAt"].timestamp() - time.time()) / 3600
    assert 11.9 < hours <= 12.0
    # The seed's command line.
    r = subprocess.run([str(wharf_aws_bin()), "--endpoint-url", wharf.endpoint, "ecr", "get-login-password"],
                       capture_output=True, text=True, env=wharf.env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and ":" not in r.stdout.strip()
    with pytest.raises(ClientError) as e:
        ecr.get_authorization_token(registryIds=["999999999999"])
    assert code(e) == "InvalidParameterException"
    assert ecr.get_authorization_token(registryIds=[ACCOUNT])["authorizationData"][0]["proxyEndpoint"] == wharf.endpoint


def wharf_aws_bin():
    return Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "aws"


def test_image_operations_on_a_missing_repository(ecr):
    digest = "sha256:" + "0" * 64
    calls = [
        lambda: ecr.list_images(repositoryName="nope"),
        lambda: ecr.describe_images(repositoryName="nope"),
        lambda: ecr.batch_get_image(repositoryName="nope", imageIds=[{"imageTag": "v1"}]),
        lambda: ecr.batch_delete_image(repositoryName="nope", imageIds=[{"imageTag": "v1"}]),
        lambda: ecr.put_image(repositoryName="nope", imageManifest="{}", imageTag="v1"),
        lambda: ecr.batch_check_layer_availability(repositoryName="nope", layerDigests=[digest]),
        lambda: ecr.initiate_layer_upload(repositoryName="nope"),
        lambda: ecr.get_download_url_for_layer(repositoryName="nope", layerDigest=digest),
        lambda: ecr.delete_repository(repositoryName="nope", force=True),
    ]
    for call in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "RepositoryNotFoundException"
    ecr.create_repository(repositoryName="empty")
    assert ecr.list_images(repositoryName="empty")["imageIds"] == []
    assert ecr.describe_images(repositoryName="empty")["imageDetails"] == []
    out = ecr.batch_get_image(repositoryName="empty", imageIds=[{"imageTag": "v1"}, {"imageDigest": "bad"}])
    assert out["images"] == []
    assert sorted(f["failureCode"] for f in out["failures"]) == ["ImageNotFound", "InvalidImageDigest"]
    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName="empty", imageIds=[{"imageTag": "v1"}])
    assert code(e) == "ImageNotFoundException"
    out = ecr.batch_delete_image(repositoryName="empty", imageIds=[{"imageTag": "v1"}])
    assert out["imageIds"] == [] and out["failures"][0]["failureCode"] == "ImageNotFound"


def upload_blob(ecr, repo, blob):
    """Uploads `blob` with the layer API (two parts when it is big enough); returns its digest."""
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    half = len(blob) // 2 or len(blob)
    first = 0
    for part in (blob[:half], blob[half:]):
        if not part:
            continue
        out = ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=first,
                                    partLastByte=first + len(part) - 1, layerPartBlob=part)
        first += len(part)
        assert out["lastByteReceived"] == first - 1
    assert ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[digest])["layerDigest"] == digest
    return digest


def api_push(ecr, repo, tag, content):
    """Pushes a one-layer OCI image with the API alone (as ECR's API-only clients do);
    returns (manifest text, digest)."""
    layer = content.encode()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "content": content}).encode()
    layer_digest, config_digest = upload_blob(ecr, repo, layer), upload_blob(ecr, repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                    "size": len(layer)}]})
    kw = {"imageTag": tag} if tag else {}
    out = ecr.put_image(repositoryName=repo, imageManifest=manifest, **kw)["image"]
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    assert out["imageId"]["imageDigest"] == digest
    return manifest, digest


def test_layer_upload_errors(ecr):
    ecr.create_repository(repositoryName="uploads")
    blob = os.urandom(3000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    up = ecr.initiate_layer_upload(repositoryName="uploads")
    uid = up["uploadId"]
    assert up["partSize"] > 0
    assert ecr.upload_layer_part(repositoryName="uploads", uploadId=uid, partFirstByte=0, partLastByte=999,
                                 layerPartBlob=blob[:1000])["lastByteReceived"] == 999
    # Parts must follow each other, and say how many bytes they carry.
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName="uploads", uploadId=uid, partFirstByte=500, partLastByte=1499,
                              layerPartBlob=blob[500:1500])
    assert code(e) == "InvalidLayerPartException"
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName="uploads", uploadId=uid, partFirstByte=1000, partLastByte=1999,
                              layerPartBlob=blob[1000:1500])
    assert code(e) == "InvalidLayerPartException"
    ecr.upload_layer_part(repositoryName="uploads", uploadId=uid, partFirstByte=1000, partLastByte=2999,
                          layerPartBlob=blob[1000:])
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName="uploads", uploadId="00000000-0000-0000-0000-000000000000",
                              partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
    assert code(e) == "UploadNotFoundException"
    # A wrong digest discards the upload: nothing partial becomes a layer.
    wrong = "sha256:" + "6" * 64
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName="uploads", uploadId=uid, layerDigests=[wrong])
    assert code(e) == "InvalidLayerException"
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName="uploads", uploadId=uid, layerDigests=[digest])
    assert code(e) == "UploadNotFoundException"
    avail = ecr.batch_check_layer_availability(repositoryName="uploads", layerDigests=[digest, wrong, "bogus"])
    assert [l["layerAvailability"] for l in avail["layers"]] == ["UNAVAILABLE", "UNAVAILABLE"]
    assert [f["failureCode"] for f in avail["failures"]] == ["InvalidLayerDigest"]

    assert upload_blob(ecr, "uploads", blob) == digest
    (layer,) = ecr.batch_check_layer_availability(repositoryName="uploads", layerDigests=[digest])["layers"]
    assert layer == {"layerDigest": digest, "layerAvailability": "AVAILABLE", "layerSize": 3000}
    assert ecr.get_download_url_for_layer(repositoryName="uploads", layerDigest=digest)["downloadUrl"].startswith(
        "http://")
    with pytest.raises(ClientError) as e:
        ecr.get_download_url_for_layer(repositoryName="uploads", layerDigest=wrong)
    assert code(e) == "LayersNotFoundException"


def test_put_image_batch_get_and_delete(wharf, ecr):
    ecr.create_repository(repositoryName="api")
    manifest, digest = api_push(ecr, "api", "v1", "hello")
    (detail,) = ecr.describe_images(repositoryName="api")["imageDetails"]
    assert detail["imageDigest"] == digest and detail["imageTags"] == ["v1"]
    assert detail["imageSizeInBytes"] == len("hello") and detail["registryId"] == ACCOUNT
    assert detail["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert "imagePushedAt" in detail
    cli = wharf.aws("ecr", "describe-images", "--repository-name", "api", "--image-ids", "imageTag=v1")
    assert cli["imageDetails"][0]["imageDigest"] == digest

    out = ecr.batch_get_image(repositoryName="api", imageIds=[{"imageTag": "v1"}, {"imageTag": "nope"}])
    (img,) = out["images"]
    assert img["imageManifest"] == manifest and img["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert [f["failureCode"] for f in out["failures"]] == ["ImageNotFound"]
    out = ecr.batch_get_image(repositoryName="api", imageIds=[{"imageTag": "v1"}],
                              acceptedMediaTypes=["application/vnd.docker.distribution.manifest.v2+json"])
    assert out["images"] == [] and len(out["failures"]) == 1
    out = ecr.batch_get_image(repositoryName="api", imageIds=[{"imageTag": "v1", "imageDigest": "sha256:" + "1" * 64}])
    assert out["failures"][0]["failureCode"] == "ImageTagDoesNotMatchDigest"

    # A second tag for the same manifest; the same again is refused.
    out = ecr.put_image(repositoryName="api", imageManifest=manifest, imageTag="stable", imageDigest=digest)
    assert out["image"]["imageId"] == {"imageDigest": digest, "imageTag": "stable"}
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName="api", imageManifest=manifest, imageTag="stable")
    assert code(e) == "ImageAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName="api", imageManifest=manifest, imageTag="x", imageDigest="sha256:" + "4" * 64)
    assert code(e) == "ImageDigestDoesNotMatchException"
    missing = manifest.replace(json.loads(manifest)["layers"][0]["digest"], "sha256:" + "5" * 64)
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName="api", imageManifest=missing, imageTag="broken")
    assert code(e) == "LayersNotFoundException"
    for bad in ["not json", "[]"]:
        with pytest.raises(ClientError) as e:
            ecr.put_image(repositoryName="api", imageManifest=bad, imageTag="bad")
        assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.delete_repository(repositoryName="api")
    assert code(e) == "RepositoryNotEmptyException"

    # BatchDeleteImage by tag removes that tag; by digest, the image and its other tags.
    out = ecr.batch_delete_image(repositoryName="api", imageIds=[{"imageTag": "stable"}])
    assert out == {"imageIds": [{"imageDigest": digest, "imageTag": "stable"}], "failures": [],
                   "ResponseMetadata": out["ResponseMetadata"]}
    out = ecr.batch_delete_image(repositoryName="api", imageIds=[{"imageDigest": digest}, {"imageTag": "gone"}])
    assert out["imageIds"] == [{"imageDigest": digest, "imageTag": "v1"}]
    assert [f["failureCode"] for f in out["failures"]] == ["ImageNotFound"]
    assert ecr.list_images(repositoryName="api")["imageIds"] == []
    # Deleting the last tag of an image deletes the image.
    _, d2 = api_push(ecr, "api", "only", "only tag")
    ecr.batch_delete_image(repositoryName="api", imageIds=[{"imageTag": "only"}])
    assert ecr.list_images(repositoryName="api")["imageIds"] == []
    api_push(ecr, "api", "v9", "forced")
    assert ecr.delete_repository(repositoryName="api", force=True)["repository"]["repositoryName"] == "api"
    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName="api")
    assert code(e) == "RepositoryNotFoundException"


def test_an_image_an_index_references_is_not_deleted(ecr):
    ecr.create_repository(repositoryName="multi")
    child, child_digest = api_push(ecr, "multi", None, "linux/amd64")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "digest": child_digest, "size": len(child),
                                       "platform": {"architecture": "amd64", "os": "linux"}}]})
    out = ecr.put_image(repositoryName="multi", imageManifest=index, imageTag="v1")
    assert out["image"]["imageManifestMediaType"] == "application/vnd.oci.image.index.v1+json"
    out = ecr.batch_delete_image(repositoryName="multi", imageIds=[{"imageDigest": child_digest}])
    assert out["imageIds"] == []
    assert [f["failureCode"] for f in out["failures"]] == ["ImageReferencedByManifestList"]
    # Index first, then the child goes.
    ecr.batch_delete_image(repositoryName="multi", imageIds=[{"imageTag": "v1"}])
    out = ecr.batch_delete_image(repositoryName="multi", imageIds=[{"imageDigest": child_digest}])
    assert out["imageIds"] == [{"imageDigest": child_digest}] and out["failures"] == []


def test_tag_immutability_on_put_image(ecr):
    ecr.create_repository(repositoryName="frozen-api", imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                          imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}])
    api_push(ecr, "frozen-api", "v1", "first")
    api_push(ecr, "frozen-api", "latest", "first")
    second, d2 = api_push(ecr, "frozen-api", "v2", "second")
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName="frozen-api", imageManifest=second, imageTag="v1")
    assert code(e) == "ImageTagAlreadyExistsException"
    # The excluded tag moves.
    ecr.put_image(repositoryName="frozen-api", imageManifest=second, imageTag="latest")
    got = ecr.describe_images(repositoryName="frozen-api", imageIds=[{"imageTag": "latest"}])["imageDetails"][0]
    assert got["imageDigest"] == d2 and sorted(got["imageTags"]) == ["latest", "v2"]
    # Once mutable, v1 moves too.
    ecr.put_image_tag_mutability(repositoryName="frozen-api", imageTagMutability="MUTABLE")
    ecr.put_image(repositoryName="frozen-api", imageManifest=second, imageTag="v1")
    assert sorted(ecr.describe_images(repositoryName="frozen-api", imageIds=[{"imageDigest": d2}])[
        "imageDetails"][0]["imageTags"]) == ["latest", "v1", "v2"]


def test_list_and_describe_images_filter_and_page(wharf, ecr):
    ecr.create_repository(repositoryName="many")
    for i in range(5):
        api_push(ecr, "many", f"t{i}", f"content {i}")
    # Moving t0 to new content leaves the old image untagged.
    api_push(ecr, "many", "t0", "content 0 again")
    tagged = ecr.list_images(repositoryName="many", filter={"tagStatus": "TAGGED"})["imageIds"]
    untagged = ecr.list_images(repositoryName="many", filter={"tagStatus": "UNTAGGED"})["imageIds"]
    assert sorted(i["imageTag"] for i in tagged) == [f"t{i}" for i in range(5)]
    assert len(untagged) == 1 and "imageTag" not in untagged[0]
    seen, token, pages = [], None, 0
    while True:
        out = ecr.list_images(repositoryName="many", maxResults=2, **({"nextToken": token} if token else {}))
        seen += out["imageIds"]
        pages += 1
        token = out.get("nextToken")
        if not token:
            break
    assert len(seen) == 6 and pages == 3
    # maxResults counts image ids: an image with three tags spans pages.
    m1 = ecr.batch_get_image(repositoryName="many", imageIds=[{"imageTag": "t1"}])["images"][0]["imageManifest"]
    for extra in ("a", "b"):
        ecr.put_image(repositoryName="many", imageManifest=m1, imageTag=extra)
    seen, token, sizes = [], None, []
    while True:
        out = ecr.list_images(repositoryName="many", maxResults=2, **({"nextToken": token} if token else {}))
        seen += out["imageIds"]
        sizes.append(len(out["imageIds"]))
        token = out.get("nextToken")
        if not token:
            break
    assert sizes == [2, 2, 2, 2], sizes
    assert len({json.dumps(i, sort_keys=True) for i in seen}) == 8
    ecr.batch_delete_image(repositoryName="many", imageIds=[{"imageTag": "a"}, {"imageTag": "b"}])
    paginator = ecr.get_paginator("describe_images")
    pages = [p["imageDetails"] for p in paginator.paginate(repositoryName="many", PaginationConfig={"PageSize": 4})]
    assert [len(p) for p in pages] == [4, 2]
    out = wharf.aws("ecr", "describe-images", "--repository-name", "many", "--filter", "tagStatus=UNTAGGED")
    assert len(out["imageDetails"]) == 1 and "imageTags" not in out["imageDetails"][0]
    out = wharf.aws("ecr", "list-images", "--repository-name", "many", "--page-size", "1")
    assert len(out["imageIds"]) == 6
    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName="many", imageIds=[{"imageTag": "t1"}], maxResults=5)
    assert code(e) == "InvalidParameterException"


def test_lifecycle_policy_expires_all_but_the_newest(wharf, ecr):
    ecr.create_repository(repositoryName="lifecycle")
    for i in range(4):
        api_push(ecr, "lifecycle", f"v{i}", f"build {i}")
        time.sleep(0.01)  # distinct push times, as real builds have
    api_push(ecr, "lifecycle", None, "untagged build")
    ecr.start_lifecycle_policy_preview(repositoryName="lifecycle", lifecyclePolicyText=keep_newest(2))
    preview = ecr.get_lifecycle_policy_preview(repositoryName="lifecycle")
    assert preview["status"] == "COMPLETE" and preview["summary"]["expiringImageTotalCount"] == 2
    assert sorted(t for r in preview["previewResults"] for t in r["imageTags"]) == ["v0", "v1"]
    assert all(r["action"]["type"] == "EXPIRE" and r["appliedRulePriority"] == 1 for r in preview["previewResults"])
    page = ecr.get_lifecycle_policy_preview(repositoryName="lifecycle", maxResults=1)
    assert len(page["previewResults"]) == 1 and page["nextToken"]
    # The preview changed nothing.
    assert len(ecr.list_images(repositoryName="lifecycle")["imageIds"]) == 5

    wharf.aws("ecr", "put-lifecycle-policy", "--repository-name", "lifecycle",
              "--lifecycle-policy-text", keep_newest(2))

    def tags():
        return sorted(i.get("imageTag", "-") for i in ecr.list_images(repositoryName="lifecycle")["imageIds"])

    wait_for(lambda: tags() == ["-", "v2", "v3"], timeout=30)
    wait_for(lambda: "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName="lifecycle"), timeout=30)
    # A new push expires the oldest remaining tagged one.
    api_push(ecr, "lifecycle", "v4", "build 4")
    wait_for(lambda: tags() == ["-", "v3", "v4"], timeout=30)
    out = ecr.batch_get_image(repositoryName="lifecycle", imageIds=[{"imageTag": "v0"}])
    assert out["images"] == [] and out["failures"][0]["failureCode"] == "ImageNotFound"


# ---------------------------------------------------------------------------------------------
# With the registry: docker login, push, pull; images; layers; lifecycle enforcement; tasks.


def registry_ready(wharf):
    """The registry's `/v2/` endpoint answers (401 without credentials, as Docker expects)."""
    status, headers, _ = send("GET", wharf.endpoint + "/v2/")
    return status == 401 and "www-authenticate" in {k.lower() for k in headers}


class Docker:
    """The docker CLI with its own config dir (so `docker login` touches nothing else)."""

    def __init__(self, wharf, tmp):
        self.wharf = wharf
        self.env = dict(os.environ, DOCKER_CONFIG=str(tmp))
        self.host = wharf.endpoint.removeprefix("http://")
        self.made = []

    def run(self, *args, check=True, input=None, timeout=300):
        r = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env, input=input,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {r.stderr.strip()}")
        return r

    def login(self):
        aws = wharf_aws_bin()
        cmd = (f"'{aws}' --endpoint-url {self.wharf.endpoint} ecr get-login-password | "
               f"docker login --username AWS --password-stdin {self.host}")
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env={**self.wharf.env(), **self.env},
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert "Login Succeeded" in r.stdout

    def login_legacy(self):
        """Seed 003's form: `$(aws ecr get-login --no-include-email)` (AWS CLI v1)."""
        aws = wharf_aws_bin()
        cmd = f"$('{aws}' --endpoint-url {self.wharf.endpoint} ecr get-login --no-include-email)"
        r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env={**self.wharf.env(), **self.env},
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert "Login Succeeded" in r.stdout

    def image(self, ref, content):
        """A one-layer image `ref` made locally (`docker import` of a tar holding `content`)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = content.encode()
            info = tarfile.TarInfo("content.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        r = subprocess.run(["docker", "import", "-", ref], input=buf.getvalue(), capture_output=True,
                           env=self.env, timeout=120)
        assert r.returncode == 0, r.stderr
        self.made.append(ref)
        return ref

    def push(self, ref, check=True):
        return self.run("push", ref, check=check)

    def cleanup(self):
        for ref in self.made:
            self.run("rmi", "-f", ref, check=False)


@pytest.fixture
def registry(wharf, tmp_path):
    assert registry_ready(wharf), "the registry's /v2/ endpoint does not ask for credentials"
    d = Docker(wharf, tmp_path / "docker-config")
    try:
        yield d
    finally:
        d.cleanup()


def pushed_digest(push_output):
    for line in push_output.stdout.splitlines():
        if "digest: sha256:" in line:
            return line.split("digest: ", 1)[1].split()[0]
    raise AssertionError(push_output.stdout)


def test_seed_login_push_pull_and_describe(wharf, ecr, registry):
    repo = ecr.create_repository(repositoryName="seed/app")["repository"]
    uri = repo["repositoryUri"]
    # Anonymous pushes are refused.
    assert registry.push(registry.image(f"{uri}:v1", "one"), check=False).returncode != 0
    registry.login()
    digest = pushed_digest(registry.push(f"{uri}:v1"))
    registry.run("rmi", f"{uri}:v1")
    registry.run("pull", f"{uri}:v1")
    registry.run("pull", f"{uri}@{digest}")

    (detail,) = ecr.describe_images(repositoryName="seed/app")["imageDetails"]
    assert detail["imageDigest"] == digest and detail["imageTags"] == ["v1"]
    assert detail["imageSizeInBytes"] > 0 and detail["registryId"] == ACCOUNT
    assert detail["imageManifestMediaType"] in ("application/vnd.docker.distribution.manifest.v2+json",
                                                "application/vnd.oci.image.manifest.v1+json")
    assert ecr.list_images(repositoryName="seed/app")["imageIds"] == [{"imageDigest": digest, "imageTag": "v1"}]
    cli = wharf.aws("ecr", "describe-images", "--repository-name", "seed/app", "--image-ids", "imageTag=v1")
    assert cli["imageDetails"][0]["imageDigest"] == digest

    # BatchGetImage returns the manifest whose sha256 is the digest.
    out = ecr.batch_get_image(repositoryName="seed/app", imageIds=[{"imageTag": "v1"}])
    (img,) = out["images"]
    manifest = img["imageManifest"]
    assert "sha256:" + hashlib.sha256(manifest.encode()).hexdigest() == digest
    assert out["failures"] == []
    # BatchGetImage is a pull, as ECR counts them.
    assert "lastRecordedPullTime" in ecr.describe_images(repositoryName="seed/app")["imageDetails"][0]
    out = ecr.batch_get_image(repositoryName="seed/app", imageIds=[{"imageTag": "v1"}],
                              acceptedMediaTypes=["application/vnd.oci.image.index.v1+json"])
    assert out["images"] == [] and len(out["failures"]) == 1
    out = ecr.batch_get_image(repositoryName="seed/app", imageIds=[{"imageTag": "v1", "imageDigest": "sha256:" + "1" * 64}])
    assert out["failures"][0]["failureCode"] == "ImageTagDoesNotMatchDigest"

    # Layers through the API.
    layer = json.loads(manifest)["layers"][0]["digest"]
    avail = ecr.batch_check_layer_availability(repositoryName="seed/app", layerDigests=[layer, "sha256:" + "2" * 64])
    by = {l["layerDigest"]: l["layerAvailability"] for l in avail["layers"]}
    assert by == {layer: "AVAILABLE", "sha256:" + "2" * 64: "UNAVAILABLE"}
    url = ecr.get_download_url_for_layer(repositoryName="seed/app", layerDigest=layer)["downloadUrl"]
    # The URL works as is, as ECR's pre-signed URLs do.
    body = subprocess.run(["curl", "-fsS", url], capture_output=True, timeout=60, check=True).stdout
    assert "sha256:" + hashlib.sha256(body).hexdigest() == layer
    with pytest.raises(ClientError) as e:
        ecr.get_download_url_for_layer(repositoryName="seed/app", layerDigest="sha256:" + "3" * 64)
    assert code(e) == "LayersNotFoundException"

    # PutImage: a second tag for the same manifest; the same again is refused.
    out = ecr.put_image(repositoryName="seed/app", imageManifest=manifest, imageTag="stable")
    assert out["image"]["imageId"] == {"imageDigest": digest, "imageTag": "stable"}
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName="seed/app", imageManifest=manifest, imageTag="stable")
    assert code(e) == "ImageAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName="seed/app", imageManifest=manifest, imageTag="x", imageDigest="sha256:" + "4" * 64)
    assert code(e) == "ImageDigestDoesNotMatchException"
    with pytest.raises(ClientError) as e:
        ecr.delete_repository(repositoryName="seed/app")
    assert code(e) == "RepositoryNotEmptyException"

    # BatchDeleteImage by tag removes the tag; by digest, the image.
    out = ecr.batch_delete_image(repositoryName="seed/app", imageIds=[{"imageTag": "stable"}])
    assert out["imageIds"] == [{"imageDigest": digest, "imageTag": "stable"}] and out["failures"] == []
    out = ecr.batch_delete_image(repositoryName="seed/app", imageIds=[{"imageDigest": digest}])
    assert out["imageIds"] == [{"imageDigest": digest, "imageTag": "v1"}]
    assert ecr.list_images(repositoryName="seed/app")["imageIds"] == []
    registry.run("rmi", "-f", f"{uri}:v1", f"{uri}@{digest}", check=False)
    assert registry.run("pull", f"{uri}:v1", check=False).returncode != 0
    ecr.delete_repository(repositoryName="seed/app")


def test_tag_immutability_on_api_and_docker_push(ecr, registry):
    uri = ecr.create_repository(repositoryName="frozen", imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                                imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}]
                                )["repository"]["repositoryUri"]
    registry.login_legacy()
    registry.push(registry.image(f"{uri}:v1", "first"))
    registry.push(registry.image(f"{uri}:latest", "first-latest"))
    # Moving an immutable tag: docker push gets a 4xx, PutImage ImageTagAlreadyExistsException.
    r = registry.push(registry.image(f"{uri}:v1", "second"), check=False)
    assert r.returncode != 0 and "immutable" in r.stderr.lower(), r.stderr
    registry.push(registry.image(f"{uri}:v2", "second"))
    manifest = ecr.batch_get_image(repositoryName="frozen", imageIds=[{"imageTag": "v2"}])["images"][0]["imageManifest"]
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName="frozen", imageManifest=manifest, imageTag="v1")
    assert code(e) == "ImageTagAlreadyExistsException"
    # The excluded tag stays mutable.
    registry.push(registry.image(f"{uri}:latest", "second-latest"))
    tags = {i.get("imageTag") for i in ecr.list_images(repositoryName="frozen")["imageIds"]}
    assert {"v1", "v2", "latest"} <= tags


def test_lifecycle_policy_keeps_only_the_newest(wharf, ecr, registry):
    uri = ecr.create_repository(repositoryName="lifecycle")["repository"]["repositoryUri"]
    registry.login()
    for i in range(4):
        registry.push(registry.image(f"{uri}:v{i}", f"build {i}"))
    ecr.start_lifecycle_policy_preview(repositoryName="lifecycle", lifecyclePolicyText=keep_newest(2))
    preview = ecr.get_lifecycle_policy_preview(repositoryName="lifecycle")
    assert preview["summary"]["expiringImageTotalCount"] == 2
    assert sorted(t for r in preview["previewResults"] for t in r["imageTags"]) == ["v0", "v1"]
    assert all(r["action"]["type"] == "EXPIRE" and r["appliedRulePriority"] == 1 for r in preview["previewResults"])
    # The preview changed nothing.
    assert len(ecr.list_images(repositoryName="lifecycle")["imageIds"]) == 4

    wharf.aws("ecr", "put-lifecycle-policy", "--repository-name", "lifecycle",
              "--lifecycle-policy-text", keep_newest(2))

    def tags():
        return sorted(i["imageTag"] for i in ecr.list_images(repositoryName="lifecycle")["imageIds"])

    wait_for(lambda: tags() == ["v2", "v3"], timeout=30)
    # A new push expires the oldest remaining one.
    registry.push(registry.image(f"{uri}:v4", "build 4"))
    wait_for(lambda: tags() == ["v3", "v4"], timeout=30)
    registry.run("rmi", "-f", f"{uri}:v0", check=False)
    assert registry.run("pull", f"{uri}:v0", check=False).returncode != 0


def test_pushed_image_runs_as_a_task(wharf_agent, tmp_path, echo_image):
    w = wharf_agent
    assert registry_ready(w)
    ecr = w.client("ecr")
    ecs = w.client("ecs")
    uri = ecr.create_repository(repositoryName="echo")["repository"]["repositoryUri"]
    d = Docker(w, tmp_path / "docker-config")
    d.made.append(f"{uri}:v1")
    try:
        d.login()
        docker("tag", echo_image, f"{uri}:v1")
        digest = pushed_digest(d.push(f"{uri}:v1"))
        d.made.append(f"{uri}@{digest}")
        # The agent must pull it itself, with its own token.
        docker("rmi", f"{uri}:v1")
        wait_instances(ecs, w.cluster)
        for image in (f"{uri}:v1", f"{uri}@{digest}"):
            td = {"family": "from-ecr", "containerDefinitions": [{
                "name": "web", "image": image, "essential": True, "memory": 64,
                "environment": [{"name": "CONTAINER_NAME", "value": "web"}]}]}
            w.aws("ecs", "register-task-definition", "--cli-input-json", write_json(tmp_path / "td.json", td))
            out = w.aws("ecs", "run-task", "--cluster", w.cluster, "--task-definition", "from-ecr")
            assert out["failures"] == []
            task = wait_task(ecs, w.cluster, out["tasks"][0]["taskArn"])
            assert task["lastStatus"] == "RUNNING"
            (c,) = task["containers"]
            assert c["imageDigest"] == digest, c
    finally:
        d.cleanup()

