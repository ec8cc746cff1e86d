"""The registry with real clients: docker login/build/push/pull, skopeo copy in and out of a
multi-arch index, podman push and pull; uploads that break half-way; `kill -9` mid-push.

Images are built locally from files the tests write (nothing can be pulled from the internet).
Each test gets its own DOCKER_CONFIG so `docker login` touches nothing else on the machine.
"""

import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run(*cmd, env=None, input=None, check=True, timeout=300):
    r = subprocess.run(list(cmd), capture_output=True, text=True, env=env, input=input, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class Clients:
    """docker/skopeo/podman pointed at one Wharf, logged in with an ECR token."""

    def __init__(self, wharf, tmp):
        self.wharf = wharf
        self.host = wharf.endpoint.removeprefix("http://")
        self.tmp = tmp
        self.env = dict(os.environ, DOCKER_CONFIG=str(tmp / "docker-config"), DOCKER_BUILDKIT="0",
                        REGISTRY_AUTH_FILE=str(tmp / "containers-auth.json"))
        self.refs = []
        ecr = wharf.client("ecr")
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        import base64
        self.password = base64.b64decode(token).decode().split(":", 1)[1]
        self.creds = f"AWS:{self.password}"

    def docker(self, *args, check=True, timeout=300):
        return run("docker", *args, env=self.env, check=check, timeout=timeout)

    def login(self):
        aws = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[2] / ".venv")) / "bin" / "aws"
        cmd = (f"'{aws}' --endpoint-url {self.wharf.endpoint} ecr get-login-password | "
               f"docker login --username AWS --password-stdin {self.host}")
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env={**self.wharf.env(), **self.env},
                           timeout=120)
        assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr

    def build(self, ref, files):
        """`docker build` of FROM scratch + one COPY (one layer) per file."""
        ctx = self.tmp / ("ctx-" + hashlib.sha256(ref.encode()).hexdigest()[:8])
        ctx.mkdir(parents=True, exist_ok=True)
        lines = ["FROM scratch"]
        for name, data in files.items():
            (ctx / name).write_bytes(data)
            lines.append(f"COPY {name} /{name}")
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        self.docker("build", "-q", "-t", ref, str(ctx))
        self.refs.append(ref)
        return self.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()

    def push(self, ref, check=True, timeout=300):
        r = self.docker("push", ref, check=check, timeout=timeout)
        for line in r.stdout.splitlines():
            if "digest: sha256:" in line:
                return line.split("digest: ", 1)[1].split()[0]
        assert not check, r.stdout
        return None

    def cleanup(self):
        for ref in self.refs:
            self.docker("rmi", "-f", ref, check=False)


@pytest.fixture
def clients(wharf, tmp_path):
    c = Clients(wharf, tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


def test_docker_login_build_push_pull(wharf, clients):
    ecr = wharf.client("ecr")
    uri = ecr.create_repository(repositoryName="e2e/docker")["repository"]["repositoryUri"]
    assert uri == f"{clients.host}/e2e/docker"
    image_id = clients.build(f"{uri}:v1", {"big.bin": os.urandom(3 << 20), "hello.txt": b"hello from wharf\n"})
    # Not logged in: refused.
    assert clients.push(f"{uri}:v1", check=False) is None
    clients.login()
    digest = clients.push(f"{uri}:v1")
    # The registry serves exactly what docker pushed.
    r = requests.get(f"{wharf.endpoint}/v2/e2e/docker/manifests/v1", timeout=10,
                     auth=("AWS", clients.password),
                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.status_code == 200 and sha256(r.content) == digest
    assert len(json.loads(r.content)["layers"]) == 2
    clients.docker("rmi", "-f", f"{uri}:v1")
    clients.docker("pull", f"{uri}:v1")
    assert clients.docker("image", "inspect", "--format", "{{.Id}}", f"{uri}:v1").stdout.strip() == image_id
    repo_digests = clients.docker("image", "inspect", "--format", "{{json .RepoDigests}}", f"{uri}:v1").stdout
    assert f"{uri}@{digest}" in json.loads(repo_digests)
    clients.docker("rmi", "-f", f"{uri}:v1")
    clients.docker("pull", f"{uri}@{digest}")
    detail = ecr.describe_images(repositoryName="e2e/docker")["imageDetails"][0]
    assert detail["imageDigest"] == digest and detail["imageTags"] == ["v1"]
    assert detail["imageSizeInBytes"] > 3 << 20 and "lastRecordedPullTime" in detail
    # A second push of the same image is a no-op with the same digest (blobs already there).
    clients.docker("tag", f"{uri}@{digest}", f"{uri}:v1")
    assert clients.push(f"{uri}:v1") == digest


def oci_layout(root, arches):
    """An OCI image layout at `root` holding one index `multi` of one image per architecture."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
        return sha256(data), len(data)

    children = []
    for arch in arches:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            content = f"built for {arch}\n".encode() + os.urandom(4096)
            info = tarfile.TarInfo(f"{arch}.txt")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        layer = gzip.compress(buf.getvalue(), mtime=0)
        diff_id = sha256(buf.getvalue())
        layer_digest, layer_size = blob(layer)
        config = json.dumps({"architecture": arch, "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "config": {}}).encode()
        config_digest, config_size = blob(config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                        "size": layer_size}]}).encode()
        digest, size = blob(manifest)
        children.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                         "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    index_digest, index_size = blob(index)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": index_digest, "size": index_size,
         "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    return index_digest, [c["digest"] for c in children]


def test_skopeo_copy_multi_arch_index_in_and_out(wharf, clients, tmp_path):
    wharf.client("ecr").create_repository(repositoryName="e2e/multi")
    index_digest, child_digests = oci_layout(tmp_path / "layout", ["amd64", "arm64"])
    dest = f"docker://{clients.host}/e2e/multi:multi"
    r = run("skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds",
            clients.creds, f"oci:{tmp_path / 'layout'}:multi", dest, check=False)
    assert r.returncode == 0, r.stderr
    raw = run("skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", clients.creds, dest).stdout.encode()
    assert sha256(raw) == index_digest
    assert [m["digest"] for m in json.loads(raw)["manifests"]] == child_digests
    # One architecture resolves through the index.
    arm = run("skopeo", "inspect", "--override-arch", "arm64", "--tls-verify=false", "--creds", clients.creds,
              dest).stdout
    assert json.loads(arm)["Architecture"] == "arm64"
    child = run("skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", clients.creds,
                f"docker://{clients.host}/e2e/multi@{child_digests[1]}").stdout.encode()
    assert sha256(child) == child_digests[1]
    # And back out: the same index and children, byte for byte.
    out = tmp_path / "out"
    run("skopeo", "copy", "--all", "--src-tls-verify=false", "--src-creds", clients.creds, dest,
        f"oci:{out}:copied")
    (entry,) = json.loads((out / "index.json").read_text())["manifests"]
    assert entry["digest"] == index_digest
    for digest in [index_digest, *child_digests]:
        data = (out / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        assert sha256(data) == digest
    # The ECR API sees the index and its children.
    images = wharf.client("ecr").describe_images(repositoryName="e2e/multi")["imageDetails"]
    by_digest = {i["imageDigest"]: i for i in images}
    assert set(by_digest) == {index_digest, *child_digests}
    assert by_digest[index_digest]["imageManifestMediaType"] == OCI_INDEX
    assert by_digest[index_digest]["imageTags"] == ["multi"]


def test_podman_push_and_pull(wharf, clients, tmp_path):
    ecr = wharf.client("ecr")
    for name in ("e2e/src", "e2e/podman"):
        ecr.create_repository(repositoryName=name)
    index_digest, child_digests = oci_layout(tmp_path / "layout", ["amd64"])
    run("skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", clients.creds,
        f"oci:{tmp_path / 'layout'}:multi", f"docker://{clients.host}/e2e/src:one")
    env = dict(clients.env)
    r = run("podman", "login", "--tls-verify=false", "-u", "AWS", "--password-stdin", clients.host,
            input=clients.password, env=env)
    assert "Login Succeeded" in r.stdout
    src, dst = f"{clients.host}/e2e/src:one", f"{clients.host}/e2e/podman:pushed"
    try:
        run("podman", "pull", "--tls-verify=false", "--arch", "amd64", src, env=env)
        run("podman", "tag", src, dst, env=env)
        run("podman", "push", "--tls-verify=false", dst, env=env)
        run("podman", "rmi", "-f", src, dst, env=env, check=False)
        run("podman", "pull", "--tls-verify=false", dst, env=env)
        pulled = run("podman", "image", "inspect", "--format", "{{.Digest}}", dst, env=env).stdout.strip()
        pushed = ecr.describe_images(repositoryName="e2e/podman")["imageDetails"][0]["imageDigest"]
        assert pulled == pushed
    finally:
        run("podman", "rmi", "-f", src, dst, env=env, check=False)


def raw_request(endpoint, head, body_part):
    """Sends a request whose body stops short of its Content-Length, then hangs up."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(head.encode() + body_part)
    time.sleep(0.3)
    s.close()


def test_interrupted_upload_leaves_no_partial_blob(wharf, clients):
    wharf.client("ecr").create_repository(repositoryName="e2e/cut")
    auth = ("AWS", clients.password)
    base = wharf.endpoint
    data = os.urandom(8 << 20)
    digest = sha256(data)
    basic = requests.auth._basic_auth_str("AWS", clients.password)
    # A monolithic POST cut off half-way.
    raw_request(base, f"POST /v2/e2e/cut/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {clients.host}\r\n"
                      f"Authorization: {basic}\r\nContent-Length: {len(data)}\r\n\r\n", data[:1 << 20])
    # A chunked upload whose PATCH is cut off.
    location = requests.post(f"{base}/v2/e2e/cut/blobs/uploads/", auth=auth, timeout=10).headers["Location"]
    raw_request(base, f"PATCH {location} HTTP/1.1\r\nHost: {clients.host}\r\nAuthorization: {basic}\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n", data[:2 << 20])
    time.sleep(0.5)
    assert requests.head(f"{base}/v2/e2e/cut/blobs/{digest}", auth=auth, timeout=10).status_code == 404
    assert not (wharf.data_dir / "data" / "registry" / "blobs" / "sha256" / digest.split(":")[1]).exists()
    # The session holds what arrived; finishing it with the full digest fails, never publishes.
    status = requests.get(f"{base}{location}", auth=auth, timeout=10)
    assert status.status_code == 204
    received = int(status.headers["Range"].split("-")[1]) + 1
    assert 0 < received <= 2 << 20
    r = requests.put(f"{base}{location}", params={"digest": digest}, auth=auth, timeout=10)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert requests.head(f"{base}/v2/e2e/cut/blobs/{digest}", auth=auth, timeout=10).status_code == 404
    # Resuming from the reported offset completes it.
    location = requests.post(f"{base}/v2/e2e/cut/blobs/uploads/", auth=auth, timeout=10).headers["Location"]
    raw_request(base, f"PATCH {location} HTTP/1.1\r\nHost: {clients.host}\r\nAuthorization: {basic}\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n", data[:3 << 20])
    time.sleep(0.5)
    got = int(requests.get(f"{base}{location}", auth=auth, timeout=10).headers["Range"].split("-")[1]) + 1
    r = requests.put(f"{base}{location}", params={"digest": digest}, data=data[got:], auth=auth, timeout=30,
                     headers={"Content-Range": f"{got}-{len(data) - 1}"})
    assert r.status_code == 201, r.text
    assert requests.get(f"{base}/v2/e2e/cut/blobs/{digest}", auth=auth, timeout=30).content == data


def uploading(uploads):
    """Whether some upload file has content yet. Files come and go while docker pushes (a
    finished upload is renamed into the blob store), so one may vanish between listing and
    stat."""
    try:
        files = list(uploads.iterdir())
    except FileNotFoundError:
        return False
    for f in files:
        try:
            if f.stat().st_size > 0:
                return True
        except FileNotFoundError:
            continue
    return False


def test_kill9_mid_push_then_restart_is_consistent(wharf, clients):
    ecr = wharf.client("ecr")
    uri = ecr.create_repository(repositoryName="e2e/crash")["repository"]["repositoryUri"]
    image_id = clients.build(f"{uri}:v1", {"large.bin": os.urandom(64 << 20), "small.txt": b"small\n"})
    clients.login()
    uploads = wharf.data_dir / "data" / "registry" / "blobs" / "_uploads"
    push = subprocess.Popen(["docker", "push", f"{uri}:v1"], env=clients.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if uploading(uploads):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the push never started uploading")
        wharf.kill9_and_restart()
    finally:
        push.kill()
        push.wait()
    # Nothing half-pushed is visible: no tag, no image, and no blob that was being uploaded.
    assert ecr.list_images(repositoryName="e2e/crash")["imageIds"] == []
    r = requests.get(f"{wharf.endpoint}/v2/e2e/crash/tags/list", auth=("AWS", clients.password), timeout=10)
    assert r.json()["tags"] == []
    for f in uploads.iterdir():
        partial = hashlib.sha256(f.read_bytes()).hexdigest()
        assert not (uploads.parent / "sha256" / partial).exists()
    # The push goes through after the restart and the image pulls back intact.
    digest = clients.push(f"{uri}:v1")
    clients.docker("rmi", "-f", f"{uri}:v1")
    clients.docker("pull", f"{uri}:v1")
    assert clients.docker("image", "inspect", "--format", "{{.Id}}", f"{uri}:v1").stdout.strip() == image_id
    assert ecr.describe_images(repositoryName="e2e/crash")["imageDetails"][0]["imageDigest"] == digest
