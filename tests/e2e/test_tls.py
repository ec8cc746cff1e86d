"""TLS on the API port (`--tls-cert`, `--tls-key`): clients verify the server with their CA
bundle, plain HTTP is not served, ECR's `proxyEndpoint` says https, `wharf up`'s own agent
(pinning its server's certificate) runs tasks, and a standalone agent joins with
`AWS_CA_BUNDLE`."""

import subprocess
import time

import boto3
import pytest
import requests
from botocore.config import Config

from agentutil import echo, register, run, wait_instances, wait_task
from conftest import ACCESS_KEY, REGION, SECRET_KEY


def make_certs(d):
    """A private CA and a server certificate it signs for 127.0.0.1 and localhost."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=wharf-test-ca",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(d / "server.key"),
            "-out", str(d / "server.csr"))
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.pem"))
    return d / "ca.pem", d / "server.pem", d / "server.key"


def client(w, service, ca):
    return boto3.client(service, endpoint_url=w.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, verify=str(ca), config=Config(retries={"max_attempts": 1}))


def test_the_api_port_serves_tls(wharf_factory, tmp_path):
    ca, cert, key = make_certs(tmp_path)
    w = wharf_factory("--tls-cert", str(cert), "--tls-key", str(key))
    assert w.endpoint.startswith("https://127.0.0.1:")
    ecs = client(w, "ecs", ca)
    assert "clusterArns" in ecs.list_clusters()

    # Plain HTTP on the same port is not served, and an unknown CA is refused by clients.
    port = int(w.endpoint.rsplit(":", 1)[1])
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{w.endpoint}/healthz", timeout=5)
    assert requests.get(f"{w.endpoint}/healthz", timeout=5, verify=str(ca)).text == "ok\n"

    token = client(w, "ecr", ca).get_authorization_token()["authorizationData"][0]
    assert token["proxyEndpoint"] == w.endpoint

    # wharf up's own agent reaches its server over TLS and runs a task.
    wait_instances(ecs, w.cluster, timeout=30)
    (arn,) = run(ecs, w.cluster, register(ecs, "tls-web", echo()))
    wait_task(ecs, w.cluster, arn, timeout=60)
    ecs.stop_task(cluster=w.cluster, task=arn)

    # A standalone agent trusts the private CA through AWS_CA_BUNDLE.
    other = wharf_factory.cluster_name("tls")
    ecs.create_cluster(clusterName=other)
    agent = wharf_factory.agent(w, other, env={"AWS_CA_BUNDLE": str(ca)})
    agent.instance_arn(timeout=30)
    wait_instances(ecs, other, timeout=30)
    # Without the CA it cannot join: the log says why.
    lost = wharf_factory.agent(w, wharf_factory.cluster_name("tls-untrusted"))
    time.sleep(3)
    assert lost.state().get("containerInstanceArn") is None
    assert "certificate" in lost.log.read_text().lower() or "unknown" in lost.log.read_text().lower()
