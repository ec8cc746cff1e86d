"""The ELBv2 API (Query protocol) with the AWS CLI and boto3: seed 003's commands, target
groups, load balancers, listeners, rules, targets, health states, attributes, tags, paging,
and every error case with AWS's code, checking that a refused request changed nothing."""

import json
import socket
import subprocess
import tempfile
import threading

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, BIN, REGION, Wharf, docker
from util import container_instance_resources, query, xml_error

ELB = "elasticloadbalancing"
INSTANCE_ID = "i-0abc1234def567890"


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory(prefix="wharf-e2e-elb-") as d:
        w = Wharf(d)
        try:
            yield w
        finally:
            code = w.stop()
            assert code in (0, None, -9), f"wharf exited with {code}; log:\n{w.log.read_text()}"


@pytest.fixture(scope="module")
def elb(server):
    return server.client("elbv2")


_n = [0]


def name(prefix):
    _n[0] += 1
    return f"{prefix}-{_n[0]}"


def port():
    """A distinct listener port per call: listeners claim host ports."""
    _n[0] += 1
    return 20000 + _n[0]


def code_of(fn, **kw):
    with pytest.raises(ClientError) as e:
        fn(**kw)
    err = e.value.response["Error"]
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.value.response
    return err["Code"], err["Message"]


def raw_error(server, params):
    """Sends a Query request botocore would refuse to send; returns (status, type, code, message)."""
    status, root = query(server, {"Version": "2015-12-01", **params}, service=ELB)
    return (status, *xml_error(root))


def snapshot(elb):
    """Everything the API shows, to assert a refused request changed nothing."""
    out = {"lbs": elb.describe_load_balancers()["LoadBalancers"], "tgs": elb.describe_target_groups()["TargetGroups"]}
    for lb in out["lbs"]:
        arn = lb["LoadBalancerArn"]
        out[arn] = elb.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
        for listener in elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]:
            larn = listener["ListenerArn"]
            out[larn] = (listener, elb.describe_rules(ListenerArn=larn)["Rules"])
    for tg in out["tgs"]:
        arn = tg["TargetGroupArn"]
        out[arn] = (
            elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"],
            elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"],
            elb.describe_tags(ResourceArns=[arn])["TagDescriptions"],
        )
    return out


def make_tg(elb, target_type="ip", **kw):
    args = dict(Name=name("tg"), Protocol="HTTP", Port=8080, TargetType=target_type)
    args.update(kw)
    return elb.create_target_group(**args)["TargetGroups"][0]


def make_lb(elb, **kw):
    return elb.create_load_balancer(Name=name("lb"), Subnets=["subnet-a", "subnet-b"], **kw)["LoadBalancers"][0]


def forward(tg_arn):
    return [{"Type": "forward", "TargetGroupArn": tg_arn}]


def make_listener(elb, lb_arn, tg_arn, **kw):
    args = dict(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port(), DefaultActions=forward(tg_arn))
    args.update(kw)
    return elb.create_listener(**args)["Listeners"][0]


def health(elb, tg_arn, **kw):
    return {
        (d["Target"]["Id"], d["Target"]["Port"]): (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"))
        for d in elb.describe_target_health(TargetGroupArn=tg_arn, **kw)["TargetHealthDescriptions"]
    }


# ---- seed 003, command for command ----


def test_seed003_with_the_cli(server):
    tg = server.aws("elbv2", "create-target-group", "--name", "testunit-tg", "--protocol", "HTTP", "--port", "8080",
                    "--vpc-id", "vpc-0a1b2c3d")["TargetGroups"][0]
    assert tg["TargetGroupArn"].startswith(f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/testunit-tg/")
    assert len(tg["TargetGroupArn"].rsplit("/", 1)[1]) == 16
    assert (tg["HealthCheckIntervalSeconds"], tg["HealthCheckTimeoutSeconds"], tg["HealthyThresholdCount"],
            tg["UnhealthyThresholdCount"], tg["HealthCheckPath"], tg["Matcher"], tg["HealthCheckPort"],
            tg["TargetType"], tg["VpcId"]) == (30, 5, 5, 2, "/", {"HttpCode": "200"}, "traffic-port", "instance",
                                               "vpc-0a1b2c3d")
    lb = server.aws("elbv2", "create-load-balancer", "--name", "testunit-lb", "--subnets", "subnet-1", "subnet-2",
                    "subnet-3", "--security-groups", "sg-1", "sg-default")["LoadBalancers"][0]
    lb_arn = lb["LoadBalancerArn"]
    assert lb_arn.startswith(f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/testunit-lb/")
    assert lb["State"] == {"Code": "active"} and lb["Type"] == "application" and lb["Scheme"] == "internet-facing"
    assert lb["SecurityGroups"] == ["sg-1", "sg-default"]
    assert [z["SubnetId"] for z in lb["AvailabilityZones"]] == ["subnet-1", "subnet-2", "subnet-3"]
    assert lb["DNSName"].startswith("testunit-lb-") and lb["DNSName"].endswith(f".{REGION}.elb.localhost")
    listener = server.aws("elbv2", "create-listener", "--protocol", "HTTP", "--port", "80",
                          f"--load-balancer-arn={lb_arn}",
                          "--default-actions", f"Type=forward,TargetGroupArn={tg['TargetGroupArn']}")["Listeners"][0]
    assert listener["ListenerArn"].startswith(lb_arn.replace(":loadbalancer/", ":listener/") + "/")
    action = listener["DefaultActions"][0]
    assert action["TargetGroupArn"] == tg["TargetGroupArn"]
    assert action["ForwardConfig"]["TargetGroups"] == [{"TargetGroupArn": tg["TargetGroupArn"], "Weight": 1}]
    described = server.aws("elbv2", "describe-load-balancers")["LoadBalancers"]
    assert [x["LoadBalancerArn"] for x in described if x["LoadBalancerName"] == "testunit-lb"] == [lb_arn]
    tgs = server.aws("elbv2", "describe-target-groups")["TargetGroups"]
    mine = [t for t in tgs if t["TargetGroupName"] == "testunit-tg"]
    assert mine[0]["LoadBalancerArns"] == [lb_arn]
    assert server.aws("elbv2", "wait", "load-balancer-available", "--load-balancer-arns", lb_arn) is None
    assert server.aws("elbv2", "describe-target-health", "--target-group-arn",
                      tg["TargetGroupArn"])["TargetHealthDescriptions"] == []
    # Creating it again with the same settings answers the same listener, as on AWS; with
    # other settings on the same port it is a duplicate.
    again = server.aws("elbv2", "create-listener", "--protocol", "HTTP", "--port", "80", f"--load-balancer-arn={lb_arn}",
                       "--default-actions", f"Type=forward,TargetGroupArn={tg['TargetGroupArn']}")["Listeners"][0]
    assert again["ListenerArn"] == listener["ListenerArn"]
    err = server.aws("elbv2", "create-listener", "--protocol", "HTTP", "--port", "80", f"--load-balancer-arn={lb_arn}",
                     "--default-actions", "Type=fixed-response,FixedResponseConfig={StatusCode=404}", check=False)
    assert "DuplicateListener" in err.stderr
    server.aws("elbv2", "delete-listener", "--listener-arn", listener["ListenerArn"])
    server.aws("elbv2", "delete-load-balancer", "--load-balancer-arn", lb_arn)
    assert server.aws("elbv2", "wait", "load-balancers-deleted", "--load-balancer-arns", lb_arn) is None
    server.aws("elbv2", "delete-target-group", "--target-group-arn", tg["TargetGroupArn"])


# ---- wire shape ----


def test_query_errors_are_xml_sender_faults(server):
    status, kind, code, message = raw_error(server, {"Action": "DescribeTargetGroups", "Names.member.1": "nope"})
    assert (status, kind, code) == (400, "Sender", "TargetGroupNotFound"), message
    status, kind, code, message = raw_error(server, {"Action": "CreateTargetGroup", "Name": "x", "Protocol": "HTTP",
                                                      "Port": "80", "HealthCheckIntervalSeconds": "4"})
    assert (status, kind, code) == (400, "Sender", "ValidationError") and "HealthCheckIntervalSeconds" in message


# ---- load balancers ----


def test_load_balancer_validation_and_idempotent_create(elb, server):
    before = snapshot(elb)
    assert code_of(elb.create_load_balancer, Name=name("nlb"), Type="network")[0] == "UnsupportedProtocol"
    for bad in ["-bad", "bad-", "under_score", "x" * 33, "internal-web"]:
        assert code_of(elb.create_load_balancer, Name=bad)[0] == "ValidationError", bad
    assert code_of(elb.create_load_balancer, Name=name("lb"), IpAddressType="dualstack")[0] == "ValidationError"
    assert snapshot(elb) == before
    lb = make_lb(elb, SecurityGroups=["sg-1"], Scheme="internal")
    assert lb["Scheme"] == "internal"
    again = elb.create_load_balancer(Name=lb["LoadBalancerName"], Subnets=["subnet-a", "subnet-b"],
                                     SecurityGroups=["sg-1"], Scheme="internal")["LoadBalancers"][0]
    assert again["LoadBalancerArn"] == lb["LoadBalancerArn"]
    before = snapshot(elb)
    assert code_of(elb.create_load_balancer, Name=lb["LoadBalancerName"],
                   Subnets=["subnet-z"])[0] == "DuplicateLoadBalancerName"
    assert code_of(elb.describe_load_balancers, Names=["no-such-lb"])[0] == "LoadBalancerNotFound"
    missing = lb["LoadBalancerArn"].rsplit("/", 1)[0] + "/0000000000000000"
    assert code_of(elb.describe_load_balancers, LoadBalancerArns=[missing])[0] == "LoadBalancerNotFound"
    assert code_of(elb.describe_load_balancers, LoadBalancerArns=["arn:aws:s3:::bucket"])[0] == "ValidationError"
    assert snapshot(elb) == before
    elb.delete_load_balancer(LoadBalancerArn=missing)  # deleting what is gone succeeds, as on AWS
    arn = lb["LoadBalancerArn"]
    assert elb.set_security_groups(LoadBalancerArn=arn, SecurityGroups=["sg-9"])["SecurityGroupIds"] == ["sg-9"]
    zones = elb.set_subnets(LoadBalancerArn=arn, Subnets=["subnet-x", "subnet-y", "subnet-z"])["AvailabilityZones"]
    assert [z["SubnetId"] for z in zones] == ["subnet-x", "subnet-y", "subnet-z"]
    got = elb.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    assert got["SecurityGroups"] == ["sg-9"] and got["AvailabilityZones"] == zones
    assert code_of(elb.set_subnets, LoadBalancerArn=missing, Subnets=["subnet-x"])[0] == "LoadBalancerNotFound"
    assert elb.set_ip_address_type(LoadBalancerArn=arn, IpAddressType="ipv4")["IpAddressType"] == "ipv4"
    assert code_of(elb.set_ip_address_type, LoadBalancerArn=arn, IpAddressType="dualstack")[0] == "ValidationError"
    limits = {x["Name"]: x["Max"] for x in elb.describe_account_limits()["Limits"]}
    assert limits["listeners-per-application-load-balancer"] == "50"


def test_load_balancer_paging(elb):
    names = {make_lb(elb)["LoadBalancerName"] for _ in range(5)}
    seen, marker, pages = [], None, 0
    while True:
        kw = {"Marker": marker} if marker else {}
        page = elb.describe_load_balancers(PageSize=2, **kw)
        assert len(page["LoadBalancers"]) <= 2
        seen += [x["LoadBalancerName"] for x in page["LoadBalancers"]]
        pages += 1
        marker = page.get("NextMarker")
        if not marker:
            break
    assert names <= set(seen) and len(seen) == len(set(seen)) and pages >= 3
    paginated = [x["LoadBalancerName"] for p in elb.get_paginator("describe_load_balancers").paginate(
        PaginationConfig={"PageSize": 2}) for x in p["LoadBalancers"]]
    assert paginated == seen
    assert code_of(elb.describe_load_balancers, Marker="zz")[0] == "ValidationError"


def test_load_balancer_attributes_and_deletion_protection(elb):
    lb = make_lb(elb)
    arn = lb["LoadBalancerArn"]
    attrs = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]}
    assert attrs["idle_timeout.timeout_seconds"] == "60" and attrs["deletion_protection.enabled"] == "false"
    assert attrs["routing.http2.enabled"] == "true"
    out = elb.modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=[
        {"Key": "idle_timeout.timeout_seconds", "Value": "120"}, {"Key": "deletion_protection.enabled", "Value": "true"},
        {"Key": "access_logs.s3.enabled", "Value": "false"}])
    assert {a["Key"]: a["Value"] for a in out["Attributes"]}["idle_timeout.timeout_seconds"] == "120"
    before = snapshot(elb)
    for bad in [("idle_timeout.timeout_seconds", "0"), ("idle_timeout.timeout_seconds", "4001"),
                ("deletion_protection.enabled", "yes"), ("no.such.key", "1"),
                # attributes of features Wharf does not have are accepted only at their defaults
                ("access_logs.s3.enabled", "true"), ("routing.http2.enabled", "false")]:
        assert code_of(elb.modify_load_balancer_attributes, LoadBalancerArn=arn,
                       Attributes=[{"Key": bad[0], "Value": bad[1]}])[0] == "ValidationError", bad
    assert code_of(elb.delete_load_balancer, LoadBalancerArn=arn)[0] == "OperationNotPermitted"
    assert snapshot(elb) == before
    elb.modify_load_balancer_attributes(LoadBalancerArn=arn,
                                        Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}])
    elb.delete_load_balancer(LoadBalancerArn=arn)
    assert code_of(elb.describe_load_balancer_attributes, LoadBalancerArn=arn)[0] == "LoadBalancerNotFound"


def test_delete_load_balancer_deletes_listeners_and_rules(elb):
    tg = make_tg(elb)
    lb = make_lb(elb)
    listener = make_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"])
    p = listener["Port"]
    rule = elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=1, Actions=forward(tg["TargetGroupArn"]),
                           Conditions=[{"Field": "path-pattern", "Values": ["/a"]}])["Rules"][0]
    assert code_of(elb.delete_target_group, TargetGroupArn=tg["TargetGroupArn"])[0] == "ResourceInUse"
    elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    assert code_of(elb.describe_listeners, ListenerArns=[listener["ListenerArn"]])[0] == "ListenerNotFound"
    assert code_of(elb.describe_rules, RuleArns=[rule["RuleArn"]])[0] == "RuleNotFound"
    assert elb.describe_target_groups(TargetGroupArns=[tg["TargetGroupArn"]])["TargetGroups"][0]["LoadBalancerArns"] == []
    # The port is free again: another load balancer can listen on it.
    other = make_lb(elb)
    make_listener(elb, other["LoadBalancerArn"], tg["TargetGroupArn"], Port=p)


# ---- target groups ----


def test_target_group_health_check_validation(elb, server):
    before = snapshot(elb)
    cases = [
        (dict(HealthCheckIntervalSeconds=10, HealthCheckTimeoutSeconds=10), "ValidationError"),
        (dict(Matcher={"HttpCode": "600"}), "ValidationError"),
        (dict(Matcher={"HttpCode": "199"}), "ValidationError"),
        (dict(Matcher={"HttpCode": "200-abc"}), "ValidationError"),
        (dict(Matcher={"GrpcCode": "12"}), "ValidationError"),
        (dict(HealthCheckPath="health"), "ValidationError"),
        (dict(HealthCheckPort="70000"), "ValidationError"),
        (dict(HealthCheckProtocol="TCP"), "ValidationError"),
        (dict(Protocol="TCP"), "UnsupportedProtocol"),
        (dict(TargetType="lambda"), "ValidationError"),
        (dict(ProtocolVersion="HTTP3"), "ValidationError"),
        (dict(Name="bad_name"), "ValidationError"),
    ]
    for extra, code in cases:
        args = dict(Name=name("tg"), Protocol="HTTP", Port=80)
        args.update(extra)
        assert code_of(elb.create_target_group, **args)[0] == code, extra
    assert code_of(elb.create_target_group, Name=name("tg"), TargetType="ip")[0] == "ValidationError"
    # Model ranges, sent raw since botocore checks them client side.
    for param, value in [("HealthCheckIntervalSeconds", "4"), ("HealthCheckIntervalSeconds", "301"),
                         ("HealthCheckTimeoutSeconds", "1"), ("HealthCheckTimeoutSeconds", "121"),
                         ("HealthyThresholdCount", "1"), ("UnhealthyThresholdCount", "11"), ("Port", "0")]:
        status, _, code, message = raw_error(server, {"Action": "CreateTargetGroup", "Name": name("tg"),
                                                      "Protocol": "HTTP", "Port": "80", param: value})
        assert (status, code) == (400, "ValidationError") and param in message, (param, value, message)
    assert snapshot(elb) == before
    ok = make_tg(elb, HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2,
                 UnhealthyThresholdCount=10, Matcher={"HttpCode": "200-399"}, HealthCheckPath="/health",
                 HealthCheckPort="8081", ProtocolVersion="HTTP2")
    assert (ok["HealthCheckIntervalSeconds"], ok["HealthCheckTimeoutSeconds"], ok["Matcher"], ok["HealthCheckPort"],
            ok["ProtocolVersion"], ok["TargetType"]) == (5, 2, {"HttpCode": "200-399"}, "8081", "HTTP2", "ip")
    grpc = make_tg(elb, ProtocolVersion="GRPC")
    assert grpc["Matcher"] == {"GrpcCode": "12"}


def test_target_group_duplicates_modify_and_describe(elb):
    tg = make_tg(elb)
    same = elb.create_target_group(Name=tg["TargetGroupName"], Protocol="HTTP", Port=8080,
                                   TargetType="ip")["TargetGroups"][0]
    assert same["TargetGroupArn"] == tg["TargetGroupArn"]
    before = snapshot(elb)
    assert code_of(elb.create_target_group, Name=tg["TargetGroupName"], Protocol="HTTP", Port=9090,
                   TargetType="ip")[0] == "DuplicateTargetGroupName"
    arn = tg["TargetGroupArn"]
    assert code_of(elb.modify_target_group, TargetGroupArn=arn, HealthCheckTimeoutSeconds=40)[0] == "ValidationError"
    assert code_of(elb.modify_target_group, TargetGroupArn=arn, Matcher={"HttpCode": "500"})[0] == "ValidationError"
    missing = arn.rsplit("/", 1)[0] + "/0000000000000000"
    assert code_of(elb.modify_target_group, TargetGroupArn=missing, HealthCheckPath="/x")[0] == "TargetGroupNotFound"
    assert code_of(elb.describe_target_groups, Names=["nope"])[0] == "TargetGroupNotFound"
    assert code_of(elb.describe_target_groups, TargetGroupArns=[missing])[0] == "TargetGroupNotFound"
    assert snapshot(elb) == before
    out = elb.modify_target_group(TargetGroupArn=arn, HealthCheckPath="/ready", HealthCheckIntervalSeconds=10,
                                  HealthCheckTimeoutSeconds=3, Matcher={"HttpCode": "200,204"})["TargetGroups"][0]
    assert (out["HealthCheckPath"], out["HealthCheckIntervalSeconds"], out["Matcher"]) == ("/ready", 10,
                                                                                           {"HttpCode": "200,204"})
    assert elb.describe_target_groups(Names=[tg["TargetGroupName"]])["TargetGroups"][0]["HealthCheckPath"] == "/ready"
    names = {make_tg(elb)["TargetGroupName"] for _ in range(3)}
    seen, marker = [], None
    while True:
        page = elb.describe_target_groups(PageSize=1, **({"Marker": marker} if marker else {}))
        seen += [t["TargetGroupName"] for t in page["TargetGroups"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert names <= set(seen) and len(seen) == len(set(seen))


def test_target_group_attributes(elb):
    tg = make_tg(elb)
    arn = tg["TargetGroupArn"]
    attrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]}
    assert attrs == {"deregistration_delay.timeout_seconds": "300", "slow_start.duration_seconds": "0",
                     "stickiness.enabled": "false", "stickiness.type": "lb_cookie",
                     "stickiness.lb_cookie.duration_seconds": "86400", "load_balancing.algorithm.type": "round_robin"}
    out = elb.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "5"},
        {"Key": "stickiness.enabled", "Value": "true"},
        {"Key": "stickiness.lb_cookie.duration_seconds", "Value": "60"},
        {"Key": "load_balancing.algorithm.type", "Value": "least_outstanding_requests"}])
    got = {a["Key"]: a["Value"] for a in out["Attributes"]}
    assert got["deregistration_delay.timeout_seconds"] == "5" and got["stickiness.enabled"] == "true"
    before = snapshot(elb)
    bad = [("deregistration_delay.timeout_seconds", "3601", "ValidationError"),
           ("deregistration_delay.timeout_seconds", "-1", "ValidationError"),
           ("slow_start.duration_seconds", "29", "ValidationError"),
           ("slow_start.duration_seconds", "901", "ValidationError"),
           ("stickiness.type", "app_cookie", "ValidationError"),
           ("stickiness.lb_cookie.duration_seconds", "0", "ValidationError"),
           ("stickiness.lb_cookie.duration_seconds", "604801", "ValidationError"),
           ("stickiness.enabled", "maybe", "ValidationError"),
           ("load_balancing.algorithm.type", "random", "ValidationError"),
           ("unknown.key", "1", "ValidationError"),
           # slow start cannot combine with least outstanding requests (set above)
           ("slow_start.duration_seconds", "30", "InvalidConfigurationRequest")]
    for key, value, code in bad:
        assert code_of(elb.modify_target_group_attributes, TargetGroupArn=arn,
                       Attributes=[{"Key": key, "Value": value}])[0] == code, (key, value)
    assert snapshot(elb) == before


# ---- targets and their health ----


def test_targets_register_deregister_and_health_states(elb, server):
    unused = make_tg(elb, Port=8080)
    arn = unused["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.5"}, {"Id": "10.0.0.6", "Port": 9000}])
    assert health(elb, arn) == {("10.0.0.5", 8080): ("unused", "Target.NotInUse"),
                                ("10.0.0.6", 9000): ("unused", "Target.NotInUse")}
    before = snapshot(elb)
    for bad in ["not-an-ip", "0.0.0.0", "224.0.0.1", "i-0123456789abcdef0"]:
        assert code_of(elb.register_targets, TargetGroupArn=arn, Targets=[{"Id": bad}])[0] == "InvalidTarget", bad
    # One bad target refuses the whole call.
    assert code_of(elb.register_targets, TargetGroupArn=arn,
                   Targets=[{"Id": "10.0.0.7"}, {"Id": "bad"}])[0] == "InvalidTarget"
    # As on AWS, deregistering what is not registered (here: not on the group's port) is a no-op.
    elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.9"}, {"Id": "10.0.0.6"}])
    missing = arn.rsplit("/", 1)[0] + "/0000000000000000"
    assert code_of(elb.register_targets, TargetGroupArn=missing,
                   Targets=[{"Id": "10.0.0.5"}])[0] == "TargetGroupNotFound"
    assert code_of(elb.describe_target_health, TargetGroupArn=missing)[0] == "TargetGroupNotFound"
    assert snapshot(elb) == before
    # Unknown targets in a filter are reported, not refused.
    assert health(elb, arn, Targets=[{"Id": "10.0.0.8"}]) == {("10.0.0.8", 8080): ("unused", "Target.NotRegistered")}
    # Not used by a load balancer: deregistration removes at once.
    elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.6", "Port": 9000}])
    assert set(health(elb, arn)) == {("10.0.0.5", 8080)}
    assert server.aws("elbv2", "wait", "target-deregistered", "--target-group-arn", arn,
                      "--targets", "Id=10.0.0.6,Port=9000") is None

    # Used by a listener: new targets are initial until the data plane reports, and a
    # deregistered one drains.
    lb = make_lb(elb)
    make_listener(elb, lb["LoadBalancerArn"], arn)
    assert health(elb, arn) == {("10.0.0.5", 8080): ("initial", "Elb.RegistrationInProgress")}
    elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.5"}])
    assert health(elb, arn) == {("10.0.0.5", 8080): ("draining", "Target.DeregistrationInProgress")}
    # Registering a draining target again takes it back.
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.5"}])
    assert health(elb, arn) == {("10.0.0.5", 8080): ("initial", "Elb.RegistrationInProgress")}
    desc = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"][0]
    assert desc["HealthCheckPort"] == "8080"


def test_too_many_targets(elb):
    tg = make_tg(elb)
    arn = tg["TargetGroupArn"]
    first = [{"Id": f"10.1.{i // 250}.{i % 250 + 1}"} for i in range(1000)]
    for i in range(0, 1000, 500):
        elb.register_targets(TargetGroupArn=arn, Targets=first[i:i + 500])
    before = health(elb, arn)
    assert len(before) == 1000
    assert code_of(elb.register_targets, TargetGroupArn=arn, Targets=[{"Id": "10.2.0.1"}])[0] == "TooManyTargets"
    assert health(elb, arn) == before


def test_instance_targets_must_be_container_instances(server, elb):
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="elb-c1")
    for instance_id in (INSTANCE_ID, "host-a"):  # an identity document may carry any id
        ecs.register_container_instance(cluster="elb-c1", totalResources=container_instance_resources(),
                                        instanceIdentityDocument=json.dumps({"instanceId": instance_id,
                                                                             "region": REGION}))
    tg = make_tg(elb, target_type="instance")
    arn = tg["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": INSTANCE_ID, "Port": 32768},
                                                      {"Id": INSTANCE_ID, "Port": 32769}, {"Id": "host-a"},
                                                      {"Id": "i-0fffffffffffffff0"}])
    assert set(health(elb, arn)) == {(INSTANCE_ID, 32768), (INSTANCE_ID, 32769), ("host-a", 8080),
                                     ("i-0fffffffffffffff0", 8080)}
    before = snapshot(elb)
    for bad in ["10.0.0.1", "host-b", "i-XYZ", "i-0123"]:
        assert code_of(elb.register_targets, TargetGroupArn=arn, Targets=[{"Id": bad}])[0] == "InvalidTarget", bad
    assert snapshot(elb) == before


# ---- listeners ----


def test_listener_errors_change_nothing(elb, server, tmp_path):
    tg = make_tg(elb)
    other_tg = make_tg(elb)
    lb = make_lb(elb)
    lb_arn = lb["LoadBalancerArn"]
    listener = make_listener(elb, lb_arn, tg["TargetGroupArn"])
    other_lb = make_lb(elb)
    make_listener(elb, other_lb["LoadBalancerArn"], other_tg["TargetGroupArn"])
    missing_tg = tg["TargetGroupArn"].rsplit("/", 1)[0] + "/0000000000000000"
    before = snapshot(elb)

    def create(code, **kw):
        args = dict(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port(), DefaultActions=forward(tg["TargetGroupArn"]))
        args.update(kw)
        got, message = code_of(elb.create_listener, **args)
        assert got == code, (kw, got, message)

    create("DuplicateListener", Port=listener["Port"], DefaultActions=[
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])
    create("InvalidConfigurationRequest", Port=elb.describe_listeners(
        LoadBalancerArn=other_lb["LoadBalancerArn"])["Listeners"][0]["Port"])
    create("TargetGroupNotFound", DefaultActions=forward(missing_tg))
    create("TargetGroupAssociationLimit", DefaultActions=forward(other_tg["TargetGroupArn"]))
    create("UnsupportedProtocol", Protocol="TCP")
    create("ValidationError", Protocol="HTTPS")  # no certificate
    create("CertificateNotFound", Protocol="HTTPS", Certificates=[{"CertificateArn": "/no/such/cert.pem"}])
    create("CertificateNotFound", Protocol="HTTPS", Certificates=[{"CertificateArn": "arn:aws:iam::1:x"}])
    create("ValidationError", DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": tg["TargetGroupArn"], "Weight": 1000}]}}])
    create("ValidationError", DefaultActions=[{"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": tg["TargetGroupArn"]}],
        "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 604801}}}])
    create("ValidationError", DefaultActions=[{"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": tg["TargetGroupArn"]}],
        "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 0}}}])
    create("InvalidLoadBalancerAction", DefaultActions=[{"Type": "forward"}])
    create("InvalidLoadBalancerAction", DefaultActions=[{"Type": "redirect", "RedirectConfig": {
        "StatusCode": "HTTP_301"}}])  # would loop
    create("ValidationError", DefaultActions=[{"Type": "redirect", "RedirectConfig": {
        "Protocol": "HTTPS", "Port": "70000", "StatusCode": "HTTP_301"}}])
    create("ValidationError", DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {
        "StatusCode": "302"}}])
    create("ValidationError", DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {
        "StatusCode": "200", "ContentType": "image/png"}}])
    create("TooManyActions", DefaultActions=forward(tg["TargetGroupArn"]) + [
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}])
    create("UnsupportedProtocol", DefaultActions=[{"Type": "authenticate-oidc", "AuthenticateOidcConfig": {
        "Issuer": "i", "AuthorizationEndpoint": "a", "TokenEndpoint": "t", "UserInfoEndpoint": "u",
        "ClientId": "c"}}])
    create("LoadBalancerNotFound", LoadBalancerArn=lb_arn.rsplit("/", 1)[0] + "/0000000000000000")
    assert code_of(elb.describe_listeners, ListenerArns=[listener["ListenerArn"] + "0"])[0] == "ListenerNotFound"
    assert code_of(elb.describe_listeners)[0] == "ValidationError"
    assert code_of(elb.modify_listener, ListenerArn=listener["ListenerArn"], DefaultActions=forward(
        other_tg["TargetGroupArn"]))[0] == "TargetGroupAssociationLimit"
    assert code_of(elb.delete_listener, ListenerArn=listener["ListenerArn"][:-1] + "x")[0] == "ListenerNotFound"
    assert code_of(elb.delete_target_group, TargetGroupArn=tg["TargetGroupArn"])[0] == "ResourceInUse"
    body = "x" * 1025
    status, _, code, _ = raw_error(server, {
        "Action": "CreateListener", "LoadBalancerArn": lb_arn, "Protocol": "HTTP", "Port": str(port()),
        "DefaultActions.member.1.Type": "fixed-response",
        "DefaultActions.member.1.FixedResponseConfig.StatusCode": "200",
        "DefaultActions.member.1.FixedResponseConfig.MessageBody": body})
    assert (status, code) == (400, "ValidationError")
    assert snapshot(elb) == before

    # HTTPS with a certificate file the user supplies.
    cert = tmp_path / "site.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    https = make_listener(elb, lb_arn, tg["TargetGroupArn"], Protocol="HTTPS",
                          Certificates=[{"CertificateArn": str(cert)}])
    assert https["Certificates"] == [{"CertificateArn": str(cert)}]
    assert https["SslPolicy"] == "ELBSecurityPolicy-2016-08"
    assert elb.describe_listener_certificates(ListenerArn=https["ListenerArn"])["Certificates"] == [
        {"CertificateArn": str(cert), "IsDefault": True}]
    acm = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/site-1"
    https2 = make_listener(elb, lb_arn, tg["TargetGroupArn"], Protocol="HTTPS", Certificates=[{"CertificateArn": acm}])
    assert https2["Certificates"] == [{"CertificateArn": acm}]


def test_listener_actions_describe_and_modify(elb):
    a, b = make_tg(elb), make_tg(elb)
    lb = make_lb(elb)
    weighted = [{"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": a["TargetGroupArn"], "Weight": 3},
                         {"TargetGroupArn": b["TargetGroupArn"], "Weight": 0}],
        "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 3600}}}]
    listener = make_listener(elb, lb["LoadBalancerArn"], a["TargetGroupArn"], DefaultActions=weighted)
    action = listener["DefaultActions"][0]
    assert "TargetGroupArn" not in action
    assert action["ForwardConfig"]["TargetGroups"] == weighted[0]["ForwardConfig"]["TargetGroups"]
    assert action["ForwardConfig"]["TargetGroupStickinessConfig"] == {"Enabled": True, "DurationSeconds": 3600}
    for tg in (a, b):
        described = elb.describe_target_groups(TargetGroupArns=[tg["TargetGroupArn"]])["TargetGroups"][0]
        assert described["LoadBalancerArns"] == [lb["LoadBalancerArn"]]
    assert [t["TargetGroupName"] for t in elb.describe_target_groups(
        LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]] == sorted([a["TargetGroupName"], b["TargetGroupName"]])
    larn = listener["ListenerArn"]
    redirect = [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]
    out = elb.modify_listener(ListenerArn=larn, DefaultActions=redirect)["Listeners"][0]
    assert out["DefaultActions"][0]["RedirectConfig"] == {"Protocol": "HTTPS", "Port": "443", "Host": "#{host}",
                                                          "Path": "/#{path}", "Query": "#{query}",
                                                          "StatusCode": "HTTP_301"}
    # b is no longer used: it can be deleted now.
    elb.delete_target_group(TargetGroupArn=b["TargetGroupArn"])
    fixed = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503", "ContentType": "text/plain",
                                                                 "MessageBody": "down"}}]
    new_port = port()
    out = elb.modify_listener(ListenerArn=larn, Port=new_port, DefaultActions=fixed)["Listeners"][0]
    assert out["Port"] == new_port and out["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"] == "503"
    assert elb.describe_listeners(ListenerArns=[larn])["Listeners"][0]["Port"] == new_port
    # The old port is free for another load balancer.
    other = make_lb(elb)
    make_listener(elb, other["LoadBalancerArn"], make_tg(elb)["TargetGroupArn"], Port=listener["Port"])
    listeners = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert [x["ListenerArn"] for x in listeners] == [larn]
    elb.delete_listener(ListenerArn=larn)
    assert elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"] == []
    elb.delete_target_group(TargetGroupArn=a["TargetGroupArn"])


def test_listener_paging_and_protocol_changes(elb, tmp_path):
    tg = make_tg(elb)
    lb = make_lb(elb)
    arns = [make_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"])["ListenerArn"] for _ in range(3)]
    seen, marker = [], None
    while True:
        page = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"], PageSize=1,
                                      **({"Marker": marker} if marker else {}))
        assert len(page["Listeners"]) <= 1
        seen += [x["ListenerArn"] for x in page["Listeners"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert sorted(seen) == sorted(arns) and len(seen) == 3
    before = snapshot(elb)
    assert code_of(elb.modify_listener, ListenerArn=arns[0], Protocol="HTTPS")[0] == "ValidationError"
    assert code_of(elb.modify_listener, ListenerArn=arns[0], Protocol="TCP")[0] == "UnsupportedProtocol"
    taken = elb.describe_listeners(ListenerArns=[arns[1]])["Listeners"][0]["Port"]
    assert code_of(elb.modify_listener, ListenerArn=arns[0], Port=taken)[0] == "DuplicateListener"
    assert snapshot(elb) == before
    cert = tmp_path / "c.pem"
    cert.write_text("pem")
    out = elb.modify_listener(ListenerArn=arns[0], Protocol="HTTPS",
                              Certificates=[{"CertificateArn": str(cert)}])["Listeners"][0]
    assert (out["Protocol"], out["Certificates"], out["SslPolicy"]) == ("HTTPS", [{"CertificateArn": str(cert)}],
                                                                         "ELBSecurityPolicy-2016-08")
    out = elb.modify_listener(ListenerArn=arns[0], Protocol="HTTP")["Listeners"][0]
    assert out["Protocol"] == "HTTP" and "Certificates" not in out and "SslPolicy" not in out


def test_resources_are_partitioned_by_region_but_ports_are_the_hosts(server, elb):
    west = server.client("elbv2", region_name="us-west-2")
    tg = make_tg(elb)
    lb = make_lb(elb)
    listener = make_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"])
    assert code_of(west.describe_target_groups, Names=[tg["TargetGroupName"]])[0] == "TargetGroupNotFound"
    assert code_of(west.describe_load_balancers, LoadBalancerArns=[lb["LoadBalancerArn"]])[0] == "LoadBalancerNotFound"
    # The same names are free in another region.
    west_tg = west.create_target_group(Name=tg["TargetGroupName"], Protocol="HTTP", Port=80,
                                       TargetType="ip")["TargetGroups"][0]
    assert ":us-west-2:" in west_tg["TargetGroupArn"]
    west_lb = west.create_load_balancer(Name=lb["LoadBalancerName"])["LoadBalancers"][0]
    assert west_lb["DNSName"].endswith(".us-west-2.elb.localhost")
    # But a listener binds this host's port, whatever the region.
    assert code_of(west.create_listener, LoadBalancerArn=west_lb["LoadBalancerArn"], Protocol="HTTP",
                   Port=listener["Port"], DefaultActions=forward(west_tg["TargetGroupArn"]))[0] == \
        "InvalidConfigurationRequest"


# ---- rules ----


def test_rules_crud_priorities_and_default_rule(elb, server):
    tg = make_tg(elb)
    lb = make_lb(elb)
    listener = make_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"])
    larn = listener["ListenerArn"]
    fwd = forward(tg["TargetGroupArn"])
    conditions = {
        10: [{"Field": "path-pattern", "Values": ["/api/*"]}],
        20: [{"Field": "host-header", "HostHeaderConfig": {"Values": ["*.example.com"]}}],
        30: [{"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Env", "Values": ["blue"]}}],
        40: [{"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET", "HEAD"]}}],
        50: [{"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v", "Value": "2"}]}}],
        60: [{"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/8"]}}],
    }
    created = {}
    for prio in sorted(conditions, reverse=True):
        r = elb.create_rule(ListenerArn=larn, Priority=prio, Conditions=conditions[prio], Actions=fwd)["Rules"][0]
        assert r["Priority"] == str(prio) and not r["IsDefault"]
        assert r["RuleArn"].startswith(larn.replace(":listener/", ":listener-rule/") + "/")
        created[prio] = r["RuleArn"]
    rules = elb.describe_rules(ListenerArn=larn)["Rules"]
    assert [r["Priority"] for r in rules] == ["10", "20", "30", "40", "50", "60", "default"]
    default = rules[-1]
    assert default["IsDefault"] and default["Conditions"] == [] and default["Actions"][0]["TargetGroupArn"] == tg[
        "TargetGroupArn"]
    assert rules[0]["Conditions"][0]["Values"] == ["/api/*"]
    assert rules[0]["Conditions"][0]["PathPatternConfig"] == {"Values": ["/api/*"]}
    assert rules[2]["Conditions"][0]["HttpHeaderConfig"] == {"HttpHeaderName": "X-Env", "Values": ["blue"]}
    assert rules[4]["Conditions"][0]["QueryStringConfig"] == {"Values": [{"Key": "v", "Value": "2"}]}
    assert elb.describe_rules(RuleArns=[default["RuleArn"]])["Rules"][0]["IsDefault"]

    # Paging over rules.
    seen, marker = [], None
    while True:
        page = elb.describe_rules(ListenerArn=larn, PageSize=3, **({"Marker": marker} if marker else {}))
        seen += [r["Priority"] for r in page["Rules"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["10", "20", "30", "40", "50", "60", "default"]

    before = snapshot(elb)
    path = [{"Field": "path-pattern", "Values": ["/x"]}]

    def refused(code, fn, **kw):
        got, message = code_of(fn, **kw)
        assert got == code, (kw, got, message)

    refused("PriorityInUse", elb.create_rule, ListenerArn=larn, Priority=10, Conditions=path, Actions=fwd)
    refused("ValidationError", elb.create_rule, ListenerArn=larn, Priority=11, Conditions=[], Actions=fwd)
    refused("ValidationError", elb.create_rule, ListenerArn=larn, Priority=11,
            Conditions=[{"Field": "path-pattern", "Values": ["/1", "/2", "/3", "/4", "/5", "/6"]}], Actions=fwd)
    refused("ValidationError", elb.create_rule, ListenerArn=larn, Priority=11,
            Conditions=[{"Field": "cookie", "Values": ["x"]}], Actions=fwd)
    refused("ValidationError", elb.create_rule, ListenerArn=larn, Priority=11,
            Conditions=[{"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/40"]}}], Actions=fwd)
    refused("ValidationError", elb.create_rule, ListenerArn=larn, Priority=11,
            Conditions=[{"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["get"]}}], Actions=fwd)
    refused("ValidationError", elb.create_rule, ListenerArn=larn, Priority=11,
            Conditions=[{"Field": "path-pattern", "Values": ["/a"]}, {"Field": "path-pattern", "Values": ["/b"]}],
            Actions=fwd)
    refused("ValidationError", elb.create_rule, ListenerArn=larn, Priority=11,
            Conditions=[{"Field": "path-pattern", "Values": ["/a"], "PathPatternConfig": {"Values": ["/b"]}}],
            Actions=fwd)
    refused("TargetGroupNotFound", elb.create_rule, ListenerArn=larn, Priority=11, Conditions=path,
            Actions=forward(tg["TargetGroupArn"].rsplit("/", 1)[0] + "/0000000000000000"))
    refused("ListenerNotFound", elb.create_rule, ListenerArn=larn[:-1] + "x", Priority=11, Conditions=path, Actions=fwd)
    refused("PriorityInUse", elb.set_rule_priorities, RulePriorities=[{"RuleArn": created[10], "Priority": 20}])
    refused("OperationNotPermitted", elb.set_rule_priorities,
            RulePriorities=[{"RuleArn": default["RuleArn"], "Priority": 5}])
    refused("OperationNotPermitted", elb.delete_rule, RuleArn=default["RuleArn"])
    refused("RuleNotFound", elb.delete_rule, RuleArn=created[10][:-1] + "x")
    refused("RuleNotFound", elb.describe_rules, RuleArns=[created[10][:-1] + "x"])
    refused("ValidationError", elb.modify_rule, RuleArn=created[10], Conditions=[{"Field": "nope", "Values": ["a"]}])
    assert code_of(elb.describe_rules, RuleArns=["not-an-arn"])[0] == "ValidationError"
    for raw_priority in ["0", "50001"]:
        status, _, code, message = raw_error(server, {
            "Action": "CreateRule", "ListenerArn": larn, "Priority": raw_priority,
            "Conditions.member.1.Field": "path-pattern", "Conditions.member.1.Values.member.1": "/p",
            "Actions.member.1.Type": "forward", "Actions.member.1.TargetGroupArn": tg["TargetGroupArn"]})
        assert (status, code) == (400, "ValidationError") and "Priority" in message, message
    assert snapshot(elb) == before

    # Swapping two priorities in one call is fine.
    out = elb.set_rule_priorities(RulePriorities=[{"RuleArn": created[10], "Priority": 20},
                                                  {"RuleArn": created[20], "Priority": 10}])["Rules"]
    assert {r["RuleArn"]: r["Priority"] for r in out} == {created[10]: "20", created[20]: "10"}
    modified = elb.modify_rule(RuleArn=created[30], Conditions=path, Actions=[
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])["Rules"][0]
    assert modified["Conditions"][0]["Values"] == ["/x"]
    assert modified["Actions"][0]["Type"] == "fixed-response"
    # The default rule's actions can be modified (they are the listener's default actions).
    elb.modify_rule(RuleArn=default["RuleArn"], Actions=[{"Type": "fixed-response",
                                                          "FixedResponseConfig": {"StatusCode": "200"}}])
    assert elb.describe_listeners(ListenerArns=[larn])["Listeners"][0]["DefaultActions"][0]["Type"] == "fixed-response"
    elb.delete_rule(RuleArn=created[60])
    assert [r["Priority"] for r in elb.describe_rules(ListenerArn=larn)["Rules"]] == [
        "10", "20", "30", "40", "50", "default"]


# ---- tags ----


def test_tags_on_every_resource_type(elb):
    tg = make_tg(elb, Tags=[{"Key": "team", "Value": "web"}])
    lb = make_lb(elb, Tags=[{"Key": "env", "Value": "prod"}])
    listener = make_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"])
    rule = elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=1, Actions=forward(tg["TargetGroupArn"]),
                           Conditions=[{"Field": "path-pattern", "Values": ["/t"]}])["Rules"][0]
    default_rule = elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"][-1]["RuleArn"]
    arns = [lb["LoadBalancerArn"], tg["TargetGroupArn"], listener["ListenerArn"], rule["RuleArn"], default_rule]
    elb.add_tags(ResourceArns=arns, Tags=[{"Key": "owner", "Value": "me"}, {"Key": "env", "Value": "dev"}])
    elb.add_tags(ResourceArns=[default_rule], Tags=[{"Key": "only", "Value": "default-rule"}])
    tags = {d["ResourceArn"]: {t["Key"]: t["Value"] for t in d["Tags"]}
            for d in elb.describe_tags(ResourceArns=arns)["TagDescriptions"]}
    assert tags[lb["LoadBalancerArn"]] == {"env": "dev", "owner": "me"}
    assert tags[tg["TargetGroupArn"]] == {"team": "web", "owner": "me", "env": "dev"}
    assert tags[listener["ListenerArn"]] == tags[rule["RuleArn"]] == {"owner": "me", "env": "dev"}
    assert tags[default_rule] == {"owner": "me", "env": "dev", "only": "default-rule"}
    elb.remove_tags(ResourceArns=arns, TagKeys=["owner"])
    tags = {d["ResourceArn"]: {t["Key"] for t in d["Tags"]} for d in elb.describe_tags(ResourceArns=arns)["TagDescriptions"]}
    assert tags[tg["TargetGroupArn"]] == {"team", "env"} and tags[rule["RuleArn"]] == {"env"}
    before = snapshot(elb)
    many = [{"Key": f"k{i}", "Value": "v"} for i in range(49)]
    assert code_of(elb.add_tags, ResourceArns=[tg["TargetGroupArn"]], Tags=many)[0] == "TooManyTags"
    missing_lb = lb["LoadBalancerArn"].rsplit("/", 1)[0] + "/0000000000000000"
    # All or nothing: a missing resource refuses the whole call.
    assert code_of(elb.add_tags, ResourceArns=[tg["TargetGroupArn"], missing_lb],
                   Tags=[{"Key": "a", "Value": "b"}])[0] == "LoadBalancerNotFound"
    assert code_of(elb.describe_tags, ResourceArns=[missing_lb])[0] == "LoadBalancerNotFound"
    assert code_of(elb.add_tags, ResourceArns=[tg["TargetGroupArn"]],
                   Tags=[{"Key": "aws:reserved", "Value": "x"}])[0] == "ValidationError"
    assert code_of(elb.add_tags, ResourceArns=[tg["TargetGroupArn"]],
                   Tags=[{"Key": "d", "Value": "1"}, {"Key": "d", "Value": "2"}])[0] == "DuplicateTagKeys"
    assert code_of(elb.describe_tags, ResourceArns=["arn:aws:ecs:us-east-1:1:cluster/x"])[0] == "ValidationError"
    assert snapshot(elb) == before


# ---- concurrency ----


def test_concurrent_creates_one_wins(elb, server):
    def race(fn, n=8):
        results = [None] * n

        def run(i):
            c = server.client("elbv2")
            try:
                results[i] = ("ok", fn(c, i))
            except ClientError as e:
                results[i] = ("err", e.response["Error"]["Code"])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    tg_name = name("race")
    results = race(lambda c, i: c.create_target_group(Name=tg_name, Protocol="HTTP", Port=1000 + i,
                                                      TargetType="ip")["TargetGroups"][0]["Port"])
    assert sorted(r[0] for r in results) == ["err"] * 7 + ["ok"], results
    assert {r[1] for r in results if r[0] == "err"} == {"DuplicateTargetGroupName"}
    winner = [r[1] for r in results if r[0] == "ok"][0]
    assert elb.describe_target_groups(Names=[tg_name])["TargetGroups"][0]["Port"] == winner

    tg = make_tg(elb)
    lbs = [make_lb(elb)["LoadBalancerArn"] for _ in range(4)]
    p = port()
    results = race(lambda c, i: c.create_listener(LoadBalancerArn=lbs[i % 4], Protocol="HTTP", Port=p,
                                                  DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {
                                                      "StatusCode": "200"}}])["Listeners"][0]["ListenerArn"])
    # One load balancer gets the port (its other creates are identical, so they answer the
    # same listener); every other load balancer is refused.
    won = {r[1] for r in results if r[0] == "ok"}
    assert len(won) == 1, results
    winner = won.pop()
    winner_lb = [x for x in lbs if winner.startswith(x.replace(":loadbalancer/", ":listener/") + "/")]
    assert len(winner_lb) == 1
    assert [r[0] for i, r in enumerate(results) if lbs[i % 4] == winner_lb[0]] == ["ok", "ok"], results
    assert {r[1] for r in results if r[0] == "err"} == {"InvalidConfigurationRequest"}, results
    assert sum(len(elb.describe_listeners(LoadBalancerArn=x)["Listeners"]) for x in lbs) == 1

    larn = make_listener(elb, make_lb(elb)["LoadBalancerArn"], tg["TargetGroupArn"])["ListenerArn"]
    results = race(lambda c, i: c.create_rule(ListenerArn=larn, Priority=7, Actions=forward(tg["TargetGroupArn"]),
                                              Conditions=[{"Field": "path-pattern", "Values": [f"/{i}"]}]))
    assert sorted(r[0] for r in results) == ["err"] * 7 + ["ok"], results
    assert {r[1] for r in results if r[0] == "err"} == {"PriorityInUse"}
    assert [r["Priority"] for r in elb.describe_rules(ListenerArn=larn)["Rules"]] == ["7", "default"]


# ---- with the data plane: reaching a listener by its DNSName ----


def _has_data_plane():
    r = subprocess.run([BIN, "up", "--help"], capture_output=True, text=True, timeout=30)
    return "--lb-bind-ip" in r.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not _has_data_plane(), reason="this build has no load balancer data plane (wharf-lb)")
def test_listener_is_reached_at_its_dns_name(server, elb, echo_image):
    """The README's promise: `curl http://<DNSName>:<port>/` reaches a listener's targets, and
    the CLI's target-in-service waiter sees the data plane's health checks."""
    cid = docker("run", "-d", "--rm", "--label", "wharf-e2e=elb-api", echo_image).stdout.strip()
    try:
        ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cid).stdout.strip()
        tg = make_tg(elb, HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2)
        lb = make_lb(elb)
        p = free_port()
        make_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"], Port=p)
        elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": ip}])
        assert server.aws("elbv2", "wait", "target-in-service", "--target-group-arn", tg["TargetGroupArn"]) is None
        assert health(elb, tg["TargetGroupArn"]) == {(ip, 8080): ("healthy", None)}
        r = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://{lb['DNSName']}:{p}/"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["hostname"] == cid[:12]
    finally:
        docker("rm", "-f", cid, check=False)
