"""The API port's edge: a client that dribbles its headers, one that never sends its body, a
thousand idle connections beside a signed request, and the connection cap. The timeouts are
set short here with the documented flags (`--http-header-timeout-secs`,
`--http-body-timeout-secs`); their defaults are 60 s."""

import socket
import time

import pytest

from conftest import Wharf
from util import sign


def addr(w):
    host, port = w.endpoint.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


@pytest.fixture
def edge(tmp_path):
    w = Wharf(tmp_path, ["--http-header-timeout-secs", "2", "--http-body-timeout-secs", "2"])
    try:
        yield w
    finally:
        w.stop()


def closed_within(sock, seconds, dribble=None):
    """Seconds until the server closes `sock` (reading whatever it says), sending one byte of
    `dribble` a second meanwhile; None if it is still open after `seconds`."""
    start = time.time()
    sock.settimeout(1.0)
    received = b""
    sent = 0
    while time.time() - start < seconds:
        if dribble is not None and sent < len(dribble):
            try:
                sock.sendall(dribble[sent:sent + 1])
            except OSError:
                return time.time() - start, received
            sent += 1
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            return time.time() - start, received
        if not chunk:
            return time.time() - start, received
        received += chunk
    return None, received


def test_a_client_dribbling_its_headers_is_dropped(edge):
    s = socket.create_connection(addr(edge))
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    took, _ = closed_within(s, 20, dribble=b"X-Slow: " + b"a" * 60)
    assert took is not None, "the slow client was never dropped"
    # Meanwhile and afterwards the server answers others.
    assert edge.client("ecs").list_clusters()["clusterArns"] == []


def test_an_idle_keep_alive_connection_is_closed(edge):
    s = socket.create_connection(addr(edge))
    took, _ = closed_within(s, 20)
    assert took is not None, "an idle connection stayed open"


def test_a_body_that_never_comes_gets_a_timeout_answer(edge):
    # A properly signed request whose body stops after its first byte.
    body = b"{" + b" " * 98 + b"}"
    headers, _ = sign("POST", edge.endpoint + "/", body, {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters"}, "ecs")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "content-length")
    s = socket.create_connection(addr(edge))
    s.sendall(f"POST / HTTP/1.1\r\nHost: {edge.endpoint.removeprefix('http://')}\r\n{head}"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:1])
    took, said = closed_within(s, 20)
    assert took is not None, "the connection waiting for a body was never closed"
    assert said.startswith(b"HTTP/1.1 408"), said[:200]
    assert b"RequestTimeoutException" in said


def test_a_thousand_idle_connections_do_not_stop_a_signed_request(edge):
    idle = [socket.create_connection(addr(edge)) for _ in range(1000)]
    try:
        ecs = edge.client("ecs")
        start = time.time()
        assert ecs.list_clusters()["clusterArns"] == []
        print(f"signed ListClusters beside 1,000 idle connections: {(time.time() - start) * 1000:.1f} ms")
    finally:
        for s in idle:
            s.close()


def test_the_connection_cap_holds_new_connections_until_one_closes(tmp_path):
    w = Wharf(tmp_path, ["--max-connections", "5"])
    try:
        held = [socket.create_connection(addr(w)) for _ in range(5)]
        time.sleep(0.5)
        waiting = socket.create_connection(addr(w))  # accepted by the kernel, not yet served
        waiting.settimeout(1.0)
        waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(socket.timeout):
            waiting.recv(100)
        held[0].close()
        waiting.settimeout(10.0)
        assert waiting.recv(100).startswith(b"HTTP/1.1 200")
        assert "connection limit reached" in w.log.read_text()
        for s in held[1:] + [waiting]:
            s.close()
    finally:
        w.stop()


def test_an_unsigned_request_is_refused_before_its_body_is_read(edge):
    """A large unauthenticated body is not read: the answer comes while it is still unsent."""
    s = socket.create_connection(addr(edge))
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n"
              b"X-Amz-Target: AmazonEC2ContainerServiceV20141113.ListClusters\r\n"
              b"Content-Length: 8000000\r\n\r\n{")
    s.settimeout(1.5)  # well under the 2 s body timeout: the answer must not wait for the body
    answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:200]
    assert b"MissingAuthenticationToken" in answer or b"Missing Authentication Token" in answer, answer
    s.close()


JSON_TARGETS = [("ecs", "AmazonEC2ContainerServiceV20141113.ListClusters"), ("logs", "Logs_20140328.DescribeLogGroups"),
                ("ecr", "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"),
                ("ssm", "AmazonSSM.DescribeParameters"), ("secretsmanager", "secretsmanager.ListSecrets")]


@pytest.mark.parametrize("service,target", JSON_TARGETS, ids=[t[0] for t in JSON_TARGETS])
def test_garbage_bodies_and_bad_signatures_get_aws_errors_in_every_json_service(wharf, service, target):
    from util import raw
    for body in (b"\xff\xfe\xfd", b'{"Name": "\xc3\x28"}', b'{"a":', b"[]", b'"text"', b'{"a": ' + b"[" * 5000):
        status, out = raw(wharf, None, body, target=target, service=service)
        assert 400 <= status < 500 and isinstance(out, dict) and out.get("__type"), (body[:20], status, out)
    status, out = raw(wharf, None, {}, target=target, service=service, secret_key="wrong")
    assert status == 403 and out["__type"] == "InvalidSignatureException", out
    status, out = raw(wharf, None, {}, target=target, service=service)
    assert status == 200, out


@pytest.mark.parametrize("service", ["sts", "elasticloadbalancing"])
def test_garbage_query_requests_get_aws_errors(wharf, service):
    from util import query, xml_error
    for params in ({"Action": "NoSuchAction", "Version": "2015-12-01"},
                   {"Action": "DescribeTargetGroups", "Version": "2015-12-01", "PageSize": "not-a-number"},
                   {"Version": "2011-06-15"}):
        status, root = query(wharf, params, service=service)
        assert 400 <= status < 500, (params, status)
        assert xml_error(root)[1], params
