"""OCI Distribution Specification v1.1 conformance, driven over HTTP against the real binary.

Each test is named after the spec section it checks (spec.md of opencontainers/distribution-spec:
"Pull", "Push", "Content Discovery", "Content Management", plus the error codes and Docker's
token authentication that registries in front of Docker clients need). Repositories are created
with the ECR API first: ECR (and Wharf) never create a repository on push.
"""

import base64
import hashlib
import json
import os

import pytest
import requests

from conftest import ACCOUNT  # noqa: F401  (documents whose registry this is)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """A minimal distribution-spec client: Basic `AWS:<ECR token password>` on every request."""

    def __init__(self, wharf, token=None):
        self.base = wharf.endpoint
        ecr = wharf.client("ecr")
        if token is None:
            token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        self.token = token
        self.s = requests.Session()
        self.s.headers["Authorization"] = "Basic " + token

    def req(self, method, path, **kw):
        url = path if path.startswith("http") else self.base + path
        return self.s.request(method, url, allow_redirects=False, timeout=60, **kw)

    def push_blob(self, repo, data):
        digest = sha256(data)
        r = self.req("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return {"mediaType": OCI_LAYER, "digest": digest, "size": len(data)}

    def image_manifest(self, repo, layers=(b"layer-one", b"layer-two"), config=b"{}", extra=None):
        cfg = self.push_blob(repo, config)
        cfg["mediaType"] = OCI_CONFIG
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                    "layers": [self.push_blob(repo, layer) for layer in layers]}
        manifest.update(extra or {})
        return json.dumps(manifest, sort_keys=True).encode()

    def put_manifest(self, repo, ref, body, media_type=OCI_MANIFEST):
        return self.req("PUT", f"/v2/{repo}/manifests/{ref}", data=body, headers={"Content-Type": media_type})


def error_codes(r):
    return [e["code"] for e in r.json()["errors"]]


@pytest.fixture
def reg(wharf):
    ecr = wharf.client("ecr")
    for name in ("conf/repo", "conf/other"):
        ecr.create_repository(repositoryName=name)
    return Registry(wharf)


# --------------------------------------------------------------------------------------------
# Authentication (Docker token authentication, as ECR in front of docker/podman/skopeo)


def test_auth_anonymous_requests_get_401_with_a_challenge(wharf):
    for path in ("/v2/", "/v2/conf/repo/tags/list", "/v2/_catalog"):
        r = requests.get(wharf.endpoint + path, timeout=10)
        assert r.status_code == 401
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer realm=\"http://") and "/v2/token\"" in challenge
        assert error_codes(r) == ["UNAUTHORIZED"]


def test_auth_forged_or_foreign_credentials_are_refused(wharf, reg):
    forged = base64.b64encode(b"AWS:123456789012.us-east-1.9999999999.deadbeef").decode()
    for header in ("Basic " + forged, "Bearer 123456789012.us-east-1.9999999999.deadbeef",
                   "Basic " + base64.b64encode(b"someone:" + base64.b64decode(reg.token).split(b":", 1)[1]).decode()):
        r = requests.get(wharf.endpoint + "/v2/", headers={"Authorization": header}, timeout=10)
        assert r.status_code == 401, header


def test_auth_basic_and_bearer_token_flow(wharf, reg):
    assert reg.req("GET", "/v2/").status_code == 200
    challenge = requests.get(wharf.endpoint + "/v2/conf/repo/tags/list", timeout=10).headers["WWW-Authenticate"]
    realm = challenge.split('realm="', 1)[1].split('"', 1)[0]
    # The realm refuses anonymous callers and hands a bearer token to Basic ones.
    assert requests.get(realm, timeout=10).status_code == 401
    r = requests.get(realm, params={"service": "x", "scope": "repository:conf/repo:pull"},
                     headers={"Authorization": "Basic " + reg.token}, timeout=10)
    assert r.status_code == 200
    token = r.json()["token"]
    assert r.json()["access_token"] == token and r.json()["expires_in"] > 11 * 3600
    r = requests.get(wharf.endpoint + "/v2/conf/repo/tags/list", headers={"Authorization": "Bearer " + token},
                     timeout=10)
    assert r.status_code == 200 and r.json() == {"name": "conf/repo", "tags": []}
    # The OAuth2 password grant (what some clients POST) works too.
    password = base64.b64decode(reg.token).decode().split(":", 1)[1]
    r = requests.post(realm, data={"grant_type": "password", "username": "AWS", "password": password,
                                   "service": "x"}, timeout=10)
    assert r.status_code == 200 and r.json()["token"] == token


# --------------------------------------------------------------------------------------------
# Pull


def test_pull_manifests_by_tag_and_digest(reg):
    body = reg.image_manifest("conf/repo")
    r = reg.put_manifest("conf/repo", "v1", body)
    assert r.status_code == 201, r.text
    digest = sha256(body)
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"].endswith(f"/v2/conf/repo/manifests/{digest}")
    for ref in ("v1", digest):
        r = reg.req("GET", f"/v2/conf/repo/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest
        h = reg.req("HEAD", f"/v2/conf/repo/manifests/{ref}")
        assert h.status_code == 200 and int(h.headers["Content-Length"]) == len(body) and h.content == b""


def test_pull_manifest_unknown(reg):
    r = reg.req("GET", "/v2/conf/repo/manifests/nope")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
    r = reg.req("GET", "/v2/conf/repo/manifests/" + sha256(b"nothing"))
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
    assert reg.req("HEAD", "/v2/conf/repo/manifests/nope").status_code == 404
    r = reg.req("GET", "/v2/conf/missing/manifests/v1")
    assert r.status_code == 404 and error_codes(r) == ["NAME_UNKNOWN"]


def test_pull_blobs_whole_and_by_range(reg):
    data = os.urandom(3 * 1024 * 1024 + 17)
    desc = reg.push_blob("conf/repo", data)
    r = reg.req("GET", f"/v2/conf/repo/blobs/{desc['digest']}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Docker-Content-Digest"] == desc["digest"]
    h = reg.req("HEAD", f"/v2/conf/repo/blobs/{desc['digest']}")
    assert h.status_code == 200 and int(h.headers["Content-Length"]) == len(data)
    r = reg.req("GET", f"/v2/conf/repo/blobs/{desc['digest']}", headers={"Range": "bytes=1000-2999999"})
    assert r.status_code == 206 and r.content == data[1000:3000000]
    assert r.headers["Content-Range"] == f"bytes 1000-2999999/{len(data)}"
    r = reg.req("GET", f"/v2/conf/repo/blobs/{desc['digest']}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416


def test_pull_blob_unknown_and_other_repository(reg):
    r = reg.req("GET", "/v2/conf/repo/blobs/" + sha256(b"absent"))
    assert r.status_code == 404 and error_codes(r) == ["BLOB_UNKNOWN"]
    assert reg.req("HEAD", "/v2/conf/repo/blobs/" + sha256(b"absent")).status_code == 404
    # A blob pushed to one repository is not readable through another without a mount.
    desc = reg.push_blob("conf/repo", b"private to conf/repo")
    assert reg.req("GET", f"/v2/conf/other/blobs/{desc['digest']}").status_code == 404
    r = reg.req("GET", "/v2/conf/repo/blobs/sha256:notadigest")
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]


# --------------------------------------------------------------------------------------------
# Push


def test_push_post_then_put(reg):
    data = b"monolithic by POST then PUT"
    r = reg.req("POST", "/v2/conf/repo/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    r = reg.req("PUT", location, params={"digest": sha256(data)}, data=data,
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/v2/conf/repo/blobs/{sha256(data)}")
    assert reg.req("GET", f"/v2/conf/repo/blobs/{sha256(data)}").content == data


def test_push_single_post(reg):
    desc = reg.push_blob("conf/repo", b"single POST")
    assert reg.req("HEAD", f"/v2/conf/repo/blobs/{desc['digest']}").status_code == 200


def test_push_chunked_upload(reg):
    data = os.urandom(5 * 1024 * 1024 + 3)
    chunks = [data[:2 * 1024 * 1024], data[2 * 1024 * 1024:4 * 1024 * 1024], data[4 * 1024 * 1024:]]
    location = reg.req("POST", "/v2/conf/repo/blobs/uploads/").headers["Location"]
    offset = 0
    for chunk in chunks:
        r = reg.req("PATCH", location, data=chunk, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}", "Content-Length": str(len(chunk))})
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["Range"] == f"0-{offset - 1}"
        location = r.headers["Location"]
        status = reg.req("GET", location)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{offset - 1}"
    # Out of order: a chunk that does not start at the current offset is refused.
    r = reg.req("PATCH", location, data=b"x", headers={"Content-Range": "0-0", "Content-Length": "1"})
    assert r.status_code == 416
    assert reg.req("GET", location).headers["Range"] == f"0-{offset - 1}"
    r = reg.req("PUT", location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert reg.req("GET", f"/v2/conf/repo/blobs/{sha256(data)}").content == data
    # The finished session is gone.
    r = reg.req("GET", location)
    assert r.status_code == 404 and error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


def test_push_digest_mismatch_is_rejected_and_leaves_no_blob(reg):
    data = b"the real content"
    wrong = sha256(b"other content")
    r = reg.req("POST", "/v2/conf/repo/blobs/uploads/", params={"digest": wrong}, data=data)
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]
    for digest in (wrong, sha256(data)):
        assert reg.req("HEAD", f"/v2/conf/repo/blobs/{digest}").status_code == 404
    location = reg.req("POST", "/v2/conf/repo/blobs/uploads/").headers["Location"]
    reg.req("PATCH", location, data=data)
    r = reg.req("PUT", location, params={"digest": wrong})
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]
    assert reg.req("HEAD", f"/v2/conf/repo/blobs/{sha256(data)}").status_code == 404


def test_push_sha512_digests(reg):
    data = b"content addressed by sha512"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = reg.req("POST", "/v2/conf/repo/blobs/uploads/", params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    r = reg.req("GET", f"/v2/conf/repo/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    bad = "sha512:" + hashlib.sha512(b"nope").hexdigest()
    assert reg.req("POST", "/v2/conf/repo/blobs/uploads/", params={"digest": bad}, data=data).status_code == 400
    # A manifest addressed by a sha512 digest.
    body = reg.image_manifest("conf/repo")
    manifest_digest = "sha512:" + hashlib.sha512(body).hexdigest()
    r = reg.put_manifest("conf/repo", manifest_digest, body)
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == manifest_digest
    assert reg.req("GET", f"/v2/conf/repo/manifests/{manifest_digest}").content == body


def test_push_mounting_a_blob_from_another_repository(reg):
    desc = reg.push_blob("conf/repo", b"shared layer")
    r = reg.req("POST", "/v2/conf/other/blobs/uploads/", params={"mount": desc["digest"], "from": "conf/repo"})
    assert r.status_code == 201
    assert r.headers["Location"].endswith(f"/v2/conf/other/blobs/{desc['digest']}")
    assert reg.req("GET", f"/v2/conf/other/blobs/{desc['digest']}").content == b"shared layer"
    # Mounting what the source does not have falls back to an upload session.
    r = reg.req("POST", "/v2/conf/other/blobs/uploads/", params={"mount": sha256(b"nope"), "from": "conf/repo"})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]


def test_push_manifests(reg):
    body = reg.image_manifest("conf/repo", layers=(b"a", b"bb"))
    r = reg.put_manifest("conf/repo", "latest", body)
    assert r.status_code == 201
    # By digest, with a reference that does not match: refused.
    r = reg.put_manifest("conf/repo", sha256(b"x"), body)
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]
    # A manifest naming a blob the repository does not have.
    missing = json.loads(body)
    missing["layers"].append({"mediaType": OCI_LAYER, "digest": sha256(b"never pushed"), "size": 12})
    r = reg.put_manifest("conf/repo", "broken", json.dumps(missing).encode())
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
    assert reg.req("GET", "/v2/conf/repo/manifests/broken").status_code == 404
    for bad in (b"not json", b"{}", json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()):
        r = reg.put_manifest("conf/repo", "bad", bad)
        assert r.status_code == 400 and error_codes(r) == ["MANIFEST_INVALID"], bad
    r = reg.put_manifest("conf/repo", "bad:tag", body)
    assert r.status_code == 400
    r = reg.put_manifest("conf/missing", "v1", body)
    assert r.status_code == 404 and error_codes(r) == ["NAME_UNKNOWN"]


def test_push_docker_schema2_manifest(reg):
    cfg = reg.push_blob("conf/repo", b'{"architecture":"amd64","os":"linux"}')
    layer = reg.push_blob("conf/repo", b"docker layer")
    manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": dict(cfg, mediaType="application/vnd.docker.container.image.v1+json"),
                "layers": [dict(layer, mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")]}
    body = json.dumps(manifest).encode()
    assert reg.put_manifest("conf/repo", "docker", body, DOCKER_MANIFEST).status_code == 201
    r = reg.req("GET", "/v2/conf/repo/manifests/docker")
    assert r.headers["Content-Type"] == DOCKER_MANIFEST and r.content == body


def test_push_image_index(reg):
    children = []
    for arch in ("amd64", "arm64"):
        body = reg.image_manifest("conf/repo", layers=(arch.encode(),), config=json.dumps({"architecture": arch}).encode())
        assert reg.put_manifest("conf/repo", sha256(body), body).status_code == 201
        children.append({"mediaType": OCI_MANIFEST, "digest": sha256(body), "size": len(body),
                         "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    r = reg.put_manifest("conf/repo", "multi", index, OCI_INDEX)
    assert r.status_code == 201, r.text
    r = reg.req("GET", "/v2/conf/repo/manifests/multi")
    assert r.headers["Content-Type"] == OCI_INDEX and r.content == index
    # An index naming a manifest the repository does not hold.
    bad = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(b"absent"), "size": 6}]}).encode()
    r = reg.put_manifest("conf/repo", "bad-index", bad, OCI_INDEX)
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]


def test_push_immutable_tags_cannot_move(wharf, reg):
    wharf.client("ecr").create_repository(repositoryName="conf/frozen", imageTagMutability="IMMUTABLE")
    one = reg.image_manifest("conf/frozen", layers=(b"one",))
    two = reg.image_manifest("conf/frozen", layers=(b"two",))
    assert reg.put_manifest("conf/frozen", "v1", one).status_code == 201
    assert reg.put_manifest("conf/frozen", "v1", one).status_code == 201, "same digest again is fine"
    r = reg.put_manifest("conf/frozen", "v1", two)
    assert r.status_code == 400 and error_codes(r) == ["TAG_INVALID"]
    assert reg.req("GET", "/v2/conf/frozen/manifests/v1").content == one


def test_push_cancelled_upload(reg):
    location = reg.req("POST", "/v2/conf/repo/blobs/uploads/").headers["Location"]
    reg.req("PATCH", location, data=b"partial")
    assert reg.req("DELETE", location).status_code == 204
    assert reg.req("GET", location).status_code == 404
    assert reg.req("PUT", location, params={"digest": sha256(b"partial")}).status_code == 404
    assert reg.req("HEAD", f"/v2/conf/repo/blobs/{sha256(b'partial')}").status_code == 404


# --------------------------------------------------------------------------------------------
# Content discovery


def test_content_discovery_listing_tags(reg):
    body = reg.image_manifest("conf/repo")
    tags = ["a1", "b2", "c3", "d4", "e5"]
    for t in reversed(tags):
        assert reg.put_manifest("conf/repo", t, body).status_code == 201
    r = reg.req("GET", "/v2/conf/repo/tags/list")
    assert r.json() == {"name": "conf/repo", "tags": tags}
    r = reg.req("GET", "/v2/conf/repo/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["a1", "b2"]
    link = r.headers["Link"]
    assert link.startswith("</v2/conf/repo/tags/list?n=2&last=b2>") and 'rel="next"' in link
    r = reg.req("GET", "/v2/conf/repo/tags/list", params={"n": 2, "last": "b2"})
    assert r.json()["tags"] == ["c3", "d4"]
    r = reg.req("GET", "/v2/conf/repo/tags/list", params={"n": 2, "last": "d4"})
    assert r.json()["tags"] == ["e5"] and "Link" not in r.headers
    assert reg.req("GET", "/v2/conf/repo/tags/list", params={"n": 0}).json()["tags"] == []
    assert reg.req("GET", "/v2/conf/missing/tags/list").status_code == 404


def test_content_discovery_catalog(reg):
    r = reg.req("GET", "/v2/_catalog")
    assert r.status_code == 200 and r.json()["repositories"] == ["conf/other", "conf/repo"]
    r = reg.req("GET", "/v2/_catalog", params={"n": 1})
    assert r.json()["repositories"] == ["conf/other"] and "last=conf%2Fother" in r.headers["Link"]


def test_content_discovery_referrers(reg):
    subject = reg.image_manifest("conf/repo")
    assert reg.put_manifest("conf/repo", "app", subject).status_code == 201
    subject_desc = {"mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": len(subject)}
    empty = reg.push_blob("conf/repo", b"{}")
    refs = {}
    for kind in ("application/vnd.example.sbom", "application/vnd.example.signature"):
        artifact = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
            "config": dict(empty, mediaType="application/vnd.oci.empty.v1+json"),
            "layers": [reg.push_blob("conf/repo", kind.encode())],
            "subject": subject_desc, "annotations": {"kind": kind}}).encode()
        r = reg.put_manifest("conf/repo", sha256(artifact), artifact)
        assert r.status_code == 201 and r.headers["OCI-Subject"] == sha256(subject)
        refs[kind] = sha256(artifact)
    r = reg.req("GET", f"/v2/conf/repo/referrers/{sha256(subject)}")
    assert r.status_code == 200 and r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["mediaType"] == OCI_INDEX
    got = {m["artifactType"]: m for m in index["manifests"]}
    assert {k: m["digest"] for k, m in got.items()} == refs
    assert got["application/vnd.example.sbom"]["annotations"] == {"kind": "application/vnd.example.sbom"}
    r = reg.req("GET", f"/v2/conf/repo/referrers/{sha256(subject)}",
                params={"artifactType": "application/vnd.example.sbom"})
    assert [m["digest"] for m in r.json()["manifests"]] == [refs["application/vnd.example.sbom"]]
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    r = reg.req("GET", f"/v2/conf/repo/referrers/{sha256(b'no referrers')}")
    assert r.status_code == 200 and r.json()["manifests"] == []


# --------------------------------------------------------------------------------------------
# Content management


def test_content_management_deleting_tags(reg):
    body = reg.image_manifest("conf/repo")
    reg.put_manifest("conf/repo", "keep", body)
    reg.put_manifest("conf/repo", "drop", body)
    assert reg.req("DELETE", "/v2/conf/repo/manifests/drop").status_code == 202
    assert reg.req("GET", "/v2/conf/repo/manifests/drop").status_code == 404
    assert reg.req("GET", "/v2/conf/repo/manifests/keep").status_code == 200
    assert reg.req("GET", "/v2/conf/repo/tags/list").json()["tags"] == ["keep"]


def test_content_management_deleting_manifests(reg):
    body = reg.image_manifest("conf/repo")
    reg.put_manifest("conf/repo", "gone", body)
    assert reg.req("DELETE", f"/v2/conf/repo/manifests/{sha256(body)}").status_code == 202
    for ref in ("gone", sha256(body)):
        assert reg.req("GET", f"/v2/conf/repo/manifests/{ref}").status_code == 404
    assert reg.req("GET", "/v2/conf/repo/tags/list").json()["tags"] == []
    r = reg.req("DELETE", f"/v2/conf/repo/manifests/{sha256(body)}")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]


def test_content_management_deleting_blobs(reg):
    desc = reg.push_blob("conf/repo", b"to be deleted")
    assert reg.req("DELETE", f"/v2/conf/repo/blobs/{desc['digest']}").status_code == 202
    assert reg.req("GET", f"/v2/conf/repo/blobs/{desc['digest']}").status_code == 404
    r = reg.req("DELETE", f"/v2/conf/repo/blobs/{desc['digest']}")
    assert r.status_code == 404 and error_codes(r) == ["BLOB_UNKNOWN"]


def test_content_management_ecr_sees_registry_pushes(wharf, reg):
    body = reg.image_manifest("conf/repo", layers=(b"12345", b"678"))
    reg.put_manifest("conf/repo", "v9", body)
    reg.req("GET", "/v2/conf/repo/manifests/v9")
    ecr = wharf.client("ecr")
    detail = ecr.describe_images(repositoryName="conf/repo", imageIds=[{"imageTag": "v9"}])["imageDetails"][0]
    assert detail["imageDigest"] == sha256(body)
    assert detail["imageSizeInBytes"] == 8
    assert "lastRecordedPullTime" in detail


def test_auth_presigned_download_urls(wharf, reg):
    desc = reg.push_blob("conf/repo", b"fetch me without credentials")
    url = wharf.client("ecr").get_download_url_for_layer(repositoryName="conf/repo",
                                                         layerDigest=desc["digest"])["downloadUrl"]
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content == b"fetch me without credentials"
    # The signature covers the path and the expiry.
    other = reg.push_blob("conf/repo", b"another blob")
    assert requests.get(url.replace(desc["digest"], other["digest"]), timeout=10).status_code == 401
    assert requests.get(url.replace("X-Wharf-Expires=", "X-Wharf-Expires=9"), timeout=10).status_code == 401
