"""CloudWatch Logs, as the awslogs log driver writes it and as people read it back: groups and
streams (`prefix/container-name/task-id`), PutLogEvents batches under AWS's rules, reading with
`aws logs get-log-events` tokens and boto3, filter patterns, following a group while events
keep arriving (what AWS CLI v2's `aws logs tail --follow` does), enforced retention, and the
errors AWS answers with."""

import threading
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, CliError
from util import wait_for

HOUR = 3_600_000
DAY = 24 * HOUR


def now_ms():
    return int(time.time() * 1000)


@pytest.fixture
def logs(wharf):
    return wharf.client("logs")


def code(e):
    return e.value.response["Error"]["Code"]


def put(logs, group, stream, events):
    return logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def make(logs, group, *streams):
    logs.create_log_group(logGroupName=group)
    for s in streams:
        logs.create_log_stream(logGroupName=group, logStreamName=s)


def all_events(logs, group, stream, **kw):
    """Every event of a stream, following nextForwardToken until it comes back unchanged."""
    events, token = [], None
    while True:
        args = dict(logGroupName=group, logStreamName=stream, startFromHead=True, **kw)
        if token:
            args["nextToken"] = token
        page = logs.get_log_events(**args)
        events += page["events"]
        if page["nextForwardToken"] == token:
            return events
        token = page["nextForwardToken"]


def test_log_groups_with_the_cli_and_boto3(wharf, logs):
    wharf.aws("logs", "create-log-group", "--log-group-name", "/ecs/web")
    wharf.aws("logs", "create-log-group", "--log-group-name", "/ecs/worker", "--tags", "team=core,env=prod")
    for name in ["/ecs/api", "/other/x", "prod.app#1"]:
        logs.create_log_group(logGroupName=name)

    out = wharf.aws("logs", "describe-log-groups", "--log-group-name-prefix", "/ecs/")
    groups = out["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["/ecs/api", "/ecs/web", "/ecs/worker"]
    web = groups[1]
    assert web["arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/web:*"
    assert web["logGroupArn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/web"
    assert web["storedBytes"] == 0 and web["metricFilterCount"] == 0 and web["logGroupClass"] == "STANDARD"
    assert abs(web["creationTime"] - now_ms()) < 60_000
    assert "retentionInDays" not in web

    # Pattern: a case-sensitive substring; only name, creation time and ARN come back.
    out = logs.describe_log_groups(logGroupNamePattern="app")
    assert [g["logGroupName"] for g in out["logGroups"]] == ["prod.app#1"]
    assert set(out["logGroups"][0]) == {"logGroupName", "creationTime", "arn"}
    assert logs.describe_log_groups(logGroupNamePattern="APP")["logGroups"] == []

    # Pagination by hand and with the paginator (and the CLI, which paginates for you).
    first = logs.describe_log_groups(limit=2)
    assert [g["logGroupName"] for g in first["logGroups"]] == ["/ecs/api", "/ecs/web"]
    second = logs.describe_log_groups(limit=2, nextToken=first["nextToken"])
    assert [g["logGroupName"] for g in second["logGroups"]] == ["/ecs/worker", "/other/x"]
    pages = list(logs.get_paginator("describe_log_groups").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["logGroups"]) for p in pages] == [2, 2, 1]
    assert "nextToken" not in pages[-1]
    assert len(wharf.aws("logs", "describe-log-groups", "--page-size", "1")["logGroups"]) == 5

    # By identifier (name or ARN).
    out = logs.describe_log_groups(logGroupIdentifiers=["/ecs/web", web["logGroupArn"], "/missing"])
    assert [g["logGroupName"] for g in out["logGroups"]] == ["/ecs/web"]

    # Tags, by the ARN without ':*' as the tagging API wants.
    arn = groups[2]["logGroupArn"]
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "core", "env": "prod"}
    logs.tag_resource(resourceArn=arn, tags={"owner": "me"})
    logs.untag_resource(resourceArn=arn, tagKeys=["env"])
    assert wharf.aws("logs", "list-tags-for-resource", "--resource-arn", arn)["tags"] == {"team": "core", "owner": "me"}
    assert logs.list_tags_log_group(logGroupName="/ecs/worker")["tags"] == {"team": "core", "owner": "me"}

    with pytest.raises(ClientError) as e:
        logs.create_log_group(logGroupName="/ecs/web")
    assert code(e) == "ResourceAlreadyExistsException"
    assert "already exists" in e.value.response["Error"]["Message"]
    err = wharf.aws("logs", "create-log-group", "--log-group-name", "/ecs/web", check=False)
    assert isinstance(err, CliError) and "ResourceAlreadyExistsException" in err.stderr

    wharf.aws("logs", "delete-log-group", "--log-group-name", "/ecs/web")
    with pytest.raises(ClientError) as e:
        logs.delete_log_group(logGroupName="/ecs/web")
    assert code(e) == "ResourceNotFoundException"
    assert e.value.response["Error"]["Message"] == "The specified log group does not exist."
    assert len(logs.describe_log_groups()["logGroups"]) == 4


def test_log_streams_named_as_the_awslogs_driver_names_them(logs):
    group = "/ecs/web"
    tasks = ["0a1b2c3d4e5f", "1b2c3d4e5f6a", "2c3d4e5f6a7b"]
    make(logs, group, *[f"web/nginx/{t}" for t in tasks], "web/sidecar/0a1b2c3d4e5f")
    with pytest.raises(ClientError) as e:
        logs.create_log_stream(logGroupName=group, logStreamName="web/nginx/0a1b2c3d4e5f")
    assert code(e) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        logs.create_log_stream(logGroupName="/nope", logStreamName="s")
    assert code(e) == "ResourceNotFoundException"

    out = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix="web/nginx/")
    streams = out["logStreams"]
    assert [s["logStreamName"] for s in streams] == [f"web/nginx/{t}" for t in tasks]
    s = streams[0]
    assert s["arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:web/nginx/{tasks[0]}"
    assert s["storedBytes"] == 0 and "lastEventTimestamp" not in s

    # Events make LastEventTime ordering meaningful: the newest stream first when descending.
    t = now_ms()
    for i, task in enumerate(tasks):
        put(logs, group, f"web/nginx/{task}", [{"timestamp": t - 1000 * (3 - i), "message": f"hello from {task}"}])
    out = logs.describe_log_streams(logGroupIdentifier=group, orderBy="LastEventTime", descending=True, limit=2)
    assert [s["logStreamName"] for s in out["logStreams"]] == [f"web/nginx/{tasks[2]}", f"web/nginx/{tasks[1]}"]
    rest = logs.describe_log_streams(
        logGroupName=group, orderBy="LastEventTime", descending=True, limit=2, nextToken=out["nextToken"]
    )
    # The stream without events sorts last when descending.
    assert [s["logStreamName"] for s in rest["logStreams"]] == [f"web/nginx/{tasks[0]}", "web/sidecar/0a1b2c3d4e5f"]
    newest = out["logStreams"][0]
    assert newest["firstEventTimestamp"] == newest["lastEventTimestamp"] == t - 1000
    assert abs(newest["lastIngestionTime"] - now_ms()) < 60_000

    pages = list(logs.get_paginator("describe_log_streams").paginate(logGroupName=group, PaginationConfig={"PageSize": 3}))
    assert [len(p["logStreams"]) for p in pages] == [3, 1]

    with pytest.raises(ClientError) as e:
        logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", logStreamNamePrefix="web/")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        logs.create_log_stream(logGroupName=group, logStreamName="bad:name")
    assert code(e) == "InvalidParameterException"

    logs.delete_log_stream(logGroupName=group, logStreamName="web/sidecar/0a1b2c3d4e5f")
    with pytest.raises(ClientError) as e:
        logs.delete_log_stream(logGroupName=group, logStreamName="web/sidecar/0a1b2c3d4e5f")
    assert code(e) == "ResourceNotFoundException"
    assert e.value.response["Error"]["Message"] == "The specified log stream does not exist."


def test_put_log_events_follows_the_aws_batch_rules(logs):
    make(logs, "g", "s")
    t = now_ms()
    out = put(logs, "g", "s", [{"timestamp": t - 2000, "message": "second"}, {"timestamp": t - 1000, "message": "third"}])
    assert len(out["nextSequenceToken"]) == 56 and "rejectedLogEventsInfo" not in out
    # A later batch may carry earlier timestamps: reads are in timestamp order regardless.
    out2 = put(logs, "g", "s", [{"timestamp": t - 3000, "message": "first"}])
    assert out2["nextSequenceToken"] != out["nextSequenceToken"]
    # Sequence tokens are ignored, as AWS ignores them now.
    put(logs, "g", "s", [{"timestamp": t - 500, "message": "fourth"}])
    logs.put_log_events(logGroupName="g", logStreamName="s", sequenceToken="whatever",
                        logEvents=[{"timestamp": t, "message": "fifth"}])
    assert [e["message"] for e in all_events(logs, "g", "s")] == ["first", "second", "third", "fourth", "fifth"]

    # Within one batch, events must be in chronological order.
    with pytest.raises(ClientError) as e:
        put(logs, "g", "s", [{"timestamp": t, "message": "b"}, {"timestamp": t - 1, "message": "a"}])
    assert code(e) == "InvalidParameterException"
    assert "chronological" in e.value.response["Error"]["Message"]
    # The valid events of a batch may not span more than 24 hours.
    with pytest.raises(ClientError) as e:
        put(logs, "g", "s", [{"timestamp": t - 25 * HOUR, "message": "a"}, {"timestamp": t, "message": "b"}])
    assert code(e) == "InvalidParameterException"

    # Too old (> 14 days) and too new (> 2 hours ahead) are rejected, the rest stored.
    out = put(logs, "g", "s", [
        {"timestamp": t - 20 * DAY, "message": "ancient"},
        {"timestamp": t - 15 * DAY, "message": "old"},
        {"timestamp": t + 100, "message": "kept"},
        {"timestamp": t + 3 * HOUR, "message": "future"},
    ])
    assert out["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 2, "tooNewLogEventStartIndex": 3}
    # Events older than the group's retention are rejected as expired.
    logs.put_retention_policy(logGroupName="g", retentionInDays=1)
    out = put(logs, "g", "s", [{"timestamp": t - 2 * DAY, "message": "expired"}, {"timestamp": t + 200, "message": "kept too"}])
    assert out["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 1}
    messages = [e["message"] for e in all_events(logs, "g", "s")]
    assert messages[-2:] == ["kept", "kept too"] and "ancient" not in messages and "future" not in messages

    # A full batch (1,048,576 bytes counted AWS's way) is accepted although its JSON is over 1 MiB.
    n = 8000
    body = 1_048_576 // n - 26
    batch = [{"timestamp": t, "message": f"{i:08d}" + "x" * (body - 8)} for i in range(n)]
    logs.create_log_stream(logGroupName="g", logStreamName="big")
    put(logs, "g", "big", batch)
    assert len(all_events(logs, "g", "big")) == n
    batch.append({"timestamp": t, "message": "x" * 1000})
    with pytest.raises(ClientError) as e:
        put(logs, "g", "big", batch)
    assert code(e) == "InvalidParameterException" and "1048576" in e.value.response["Error"]["Message"]

    for group, stream, message in [("nope", "s", "The specified log group does not exist."),
                                   ("g", "nope", "The specified log stream does not exist.")]:
        with pytest.raises(ClientError) as e:
            put(logs, group, stream, [{"timestamp": t, "message": "m"}])
        assert code(e) == "ResourceNotFoundException"
        assert e.value.response["Error"]["Message"] == message


def test_get_log_events_tokens_with_the_cli_and_boto3(wharf, logs):
    make(logs, "/ecs/app", "app/web/task1")
    t = now_ms() - 60_000
    put(logs, "/ecs/app", "app/web/task1", [{"timestamp": t + i, "message": f"line {i}"} for i in range(25)])

    # `aws logs get-log-events` answers one page; the caller follows nextForwardToken until it
    # comes back unchanged.
    base = ["logs", "get-log-events", "--log-group-name", "/ecs/app", "--log-stream-name", "app/web/task1",
            "--limit", "10"]
    seen, token, calls = [], None, 0
    while True:
        args = base + (["--next-token", token] if token else ["--start-from-head"])
        page = wharf.aws(*args)
        calls += 1
        seen += [e["message"] for e in page["events"]]
        assert page["nextForwardToken"].startswith("f/") and page["nextBackwardToken"].startswith("b/")
        if page["nextForwardToken"] == token:
            assert page["events"] == []
            break
        token = page["nextForwardToken"]
    assert seen == [f"line {i}" for i in range(25)] and calls == 4

    # Without startFromHead the newest events come first (the last page, oldest first within).
    tail = logs.get_log_events(logGroupName="/ecs/app", logStreamName="app/web/task1", limit=10)
    assert [e["message"] for e in tail["events"]] == [f"line {i}" for i in range(15, 25)]
    ev = tail["events"][0]
    assert ev["timestamp"] == t + 15 and abs(ev["ingestionTime"] - now_ms()) < 60_000
    # Walk backward to the beginning: the backward token comes back unchanged at the start.
    back, token = [], tail["nextBackwardToken"]
    while True:
        page = logs.get_log_events(logGroupName="/ecs/app", logStreamName="app/web/task1", limit=10, nextToken=token)
        back = [e["message"] for e in page["events"]] + back
        if page["nextBackwardToken"] == token:
            break
        token = page["nextBackwardToken"]
    assert back == [f"line {i}" for i in range(15)]

    # A follower: nothing new returns the same token; new events appear after it.
    token = tail["nextForwardToken"]
    same = logs.get_log_events(logGroupName="/ecs/app", logStreamName="app/web/task1", nextToken=token, startFromHead=True)
    assert same["events"] == [] and same["nextForwardToken"] == token
    put(logs, "/ecs/app", "app/web/task1", [{"timestamp": t + 100, "message": "late line"}])
    more = logs.get_log_events(logGroupName="/ecs/app", logStreamName="app/web/task1", nextToken=token, startFromHead=True)
    assert [e["message"] for e in more["events"]] == ["late line"]

    # Time ranges: startTime inclusive, endTime exclusive; the group by ARN works too.
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/app"
    page = logs.get_log_events(logGroupIdentifier=arn, logStreamName="app/web/task1", startTime=t + 5, endTime=t + 8,
                               startFromHead=True)
    assert [e["message"] for e in page["events"]] == ["line 5", "line 6", "line 7"]

    with pytest.raises(ClientError) as e:
        logs.get_log_events(logGroupName="/ecs/app", logStreamName="nope")
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        logs.get_log_events(logGroupName="/ecs/app", logGroupIdentifier=arn, logStreamName="app/web/task1")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        logs.get_log_events(logGroupName="/ecs/app", logStreamName="app/web/task1", nextToken="garbage")
    assert code(e) == "InvalidParameterException"


def test_filter_log_events_patterns_streams_and_pages(wharf, logs):
    make(logs, "/ecs/api", "api/app/t1", "api/app/t2", "api/proxy/t1")
    t = now_ms() - 60_000
    put(logs, "/ecs/api", "api/app/t1", [
        {"timestamp": t + 1, "message": "INFO started in 2s"},
        {"timestamp": t + 3, "message": "ERROR 500 database timeout"},
        {"timestamp": t + 5, "message": "WARN slow query 1200ms"},
    ])
    put(logs, "/ecs/api", "api/app/t2", [
        {"timestamp": t + 2, "message": "ERROR 404 not found: /favicon.ico"},
        {"timestamp": t + 4, "message": "INFO Exiting on SIGTERM"},
        {"timestamp": t + 6, "message": "ERROR Exiting after fatal error"},
    ])
    put(logs, "/ecs/api", "api/proxy/t1", [{"timestamp": t + 7, "message": 'GET /health 200 "curl/8"'}])

    def messages(**kw):
        return [e["message"] for e in logs.filter_log_events(logGroupName="/ecs/api", **kw)["events"]]

    assert len(messages()) == 7
    assert messages(filterPattern="ERROR") == [
        "ERROR 404 not found: /favicon.ico", "ERROR 500 database timeout", "ERROR Exiting after fatal error"]
    assert messages(filterPattern="info") == []  # case-sensitive
    assert messages(filterPattern="ERROR timeout") == ["ERROR 500 database timeout"]
    assert messages(filterPattern='"not found"') == ["ERROR 404 not found: /favicon.ico"]
    assert messages(filterPattern='"database timeout" ERROR') == ["ERROR 500 database timeout"]
    assert messages(filterPattern="?WARN ?timeout") == ["ERROR 500 database timeout", "WARN slow query 1200ms"]
    assert messages(filterPattern="ERROR -Exiting") == ["ERROR 404 not found: /favicon.ico", "ERROR 500 database timeout"]
    assert messages(filterPattern='"\\"curl/8\\""') == ['GET /health 200 "curl/8"']
    # Streams by name and by prefix; time range with both ends inclusive.
    assert messages(logStreamNames=["api/app/t2"], filterPattern="ERROR") == [
        "ERROR 404 not found: /favicon.ico", "ERROR Exiting after fatal error"]
    assert len(messages(logStreamNamePrefix="api/app/")) == 6
    assert messages(startTime=t + 3, endTime=t + 5) == [
        "ERROR 500 database timeout", "INFO Exiting on SIGTERM", "WARN slow query 1200ms"]

    out = logs.filter_log_events(logGroupName="/ecs/api", filterPattern="INFO")
    assert out["searchedLogStreams"] == []
    e = out["events"][0]
    assert e["logStreamName"] == "api/app/t1" and e["timestamp"] == t + 1 and len(e["eventId"]) == 56
    assert abs(e["ingestionTime"] - now_ms()) < 60_000

    # Pages: by hand, with the paginator, and with the CLI (which follows nextToken itself).
    first = logs.filter_log_events(logGroupName="/ecs/api", limit=3)
    assert len(first["events"]) == 3 and "nextToken" in first
    rest = logs.filter_log_events(logGroupName="/ecs/api", limit=10, nextToken=first["nextToken"])
    assert len(rest["events"]) == 4 and "nextToken" not in rest
    pages = list(logs.get_paginator("filter_log_events").paginate(logGroupName="/ecs/api",
                                                                   PaginationConfig={"PageSize": 2}))
    ids = [e["eventId"] for p in pages for e in p["events"]]
    assert len(ids) == len(set(ids)) == 7
    out = wharf.aws("logs", "filter-log-events", "--log-group-name", "/ecs/api", "--filter-pattern", "?ERROR ?WARN",
                    "--page-size", "1")
    assert len(out["events"]) == 4
    # Newest first with startFromHead=false.
    desc = logs.filter_log_events(logGroupName="/ecs/api", startTime=t, startFromHead=False)["events"]
    assert [e["timestamp"] for e in desc] == sorted((e["timestamp"] for e in desc), reverse=True)

    for bad in [dict(filterPattern='{ $.level = "ERROR" }'), dict(filterPattern='"open'),
                dict(logStreamNames=["a"], logStreamNamePrefix="a")]:
        with pytest.raises(ClientError) as e:
            logs.filter_log_events(logGroupName="/ecs/api", **bad)
        assert code(e) == "InvalidParameterException", bad
    with pytest.raises(ClientError) as e:
        logs.filter_log_events(logGroupName="/nope")
    assert code(e) == "ResourceNotFoundException"


def test_following_a_group_while_events_keep_arriving(wharf, logs):
    """What `aws logs tail --follow` (AWS CLI v2) does: poll FilterLogEvents from the last
    timestamp seen, de-duplicating by eventId, while a container keeps writing."""
    make(logs, "/ecs/follow", "follow/app/t1", "follow/app/t2")
    total, per_batch = 600, 20
    start = now_ms()
    writer_client = wharf.client("logs")

    def write():
        for b in range(total // per_batch):
            stream = f"follow/app/t{b % 2 + 1}"
            ts = now_ms()
            events = [{"timestamp": ts, "message": f"event {b * per_batch + i}"} for i in range(per_batch)]
            writer_client.put_log_events(logGroupName="/ecs/follow", logStreamName=stream, logEvents=events)
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    seen_ids, received, since = set(), [], start
    deadline = time.time() + 60
    while len(received) < total and time.time() < deadline:
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName="/ecs/follow", startTime=since):
            for e in page["events"]:
                if e["eventId"] in seen_ids:
                    continue
                seen_ids.add(e["eventId"])
                received.append(e["message"])
                since = max(since, e["timestamp"])
        time.sleep(0.05)
    writer.join()
    assert len(received) == total, f"got {len(received)} of {total}"
    assert sorted(received, key=lambda m: int(m.split()[1])) == [f"event {i}" for i in range(total)]


def test_retention_is_enforced(wharf, logs):
    make(logs, "/ecs/short", "s")
    t = now_ms()
    old = [{"timestamp": t - 2 * DAY + i, "message": f"old {i}"} for i in range(5)]
    put(logs, "/ecs/short", "s", old)
    put(logs, "/ecs/short", "s", [{"timestamp": t, "message": "fresh"}])
    assert len(all_events(logs, "/ecs/short", "s")) == 6

    for bad in ["2", "0", "4000"]:
        err = wharf.aws("logs", "put-retention-policy", "--log-group-name", "/ecs/short", "--retention-in-days", bad,
                        check=False)
        assert isinstance(err, CliError) and "InvalidParameterException" in err.stderr, bad
    with pytest.raises(ClientError) as e:
        logs.put_retention_policy(logGroupName="/nope", retentionInDays=1)
    assert code(e) == "ResourceNotFoundException"

    wharf.aws("logs", "put-retention-policy", "--log-group-name", "/ecs/short", "--retention-in-days", "1")
    group = logs.describe_log_groups(logGroupNamePrefix="/ecs/short")["logGroups"][0]
    assert group["retentionInDays"] == 1
    # Expired events are gone from every read at once.
    assert [e["message"] for e in all_events(logs, "/ecs/short", "s")] == ["fresh"]
    assert [e["message"] for e in logs.filter_log_events(logGroupName="/ecs/short")["events"]] == ["fresh"]

    # And deleted from disk: the retention controller runs at start-up (then every minute).
    wharf.stop()
    wharf.start()
    logs = wharf.client("logs")
    wait_for(lambda: logs.describe_log_groups(logGroupNamePrefix="/ecs/short")["logGroups"][0]["storedBytes"] == 5)
    # Lifting the policy does not bring them back.
    wharf.aws("logs", "delete-retention-policy", "--log-group-name", "/ecs/short")
    group = logs.describe_log_groups(logGroupNamePrefix="/ecs/short")["logGroups"][0]
    assert "retentionInDays" not in group
    assert [e["message"] for e in all_events(logs, "/ecs/short", "s")] == ["fresh"]


def test_deletion_protection(logs):
    logs.create_log_group(logGroupName="/keep", deletionProtectionEnabled=True)
    assert logs.describe_log_groups(logGroupNamePrefix="/keep")["logGroups"][0]["deletionProtectionEnabled"] is True
    with pytest.raises(ClientError) as e:
        logs.delete_log_group(logGroupName="/keep")
    assert code(e) == "ValidationException"
    logs.put_log_group_deletion_protection(logGroupIdentifier="/keep", deletionProtectionEnabled=False)
    logs.delete_log_group(logGroupName="/keep")
    assert logs.describe_log_groups()["logGroups"] == []


def test_invalid_names_and_unknown_operations(logs):
    for name in ["has space", "aws/reserved", "colon:"]:
        with pytest.raises(ClientError) as e:
            logs.create_log_group(logGroupName=name)
        assert code(e) == "InvalidParameterException", name
    with pytest.raises(ClientError) as e:
        logs.describe_log_groups(logGroupNamePrefix="/a", logGroupNamePattern="a")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        logs.describe_log_groups(nextToken="not-a-token")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        logs.describe_metric_filters()
    assert code(e) == "UnknownOperationException"


def test_ten_thousand_lines_a_second_over_http(wharf, logs):
    """One container's 10,000 lines, in the batches the awslogs driver sends, over the real
    endpoint: all delivered, none lost, in order."""
    make(logs, "/ecs/load", "load/app/task")
    base = now_ms() - 10_000
    lines = [f"{i:05d} GET /api/items/{i} 200 {i % 997}ms user-agent=load-test" for i in range(10_000)]
    started = time.perf_counter()
    for b in range(10):
        batch = [{"timestamp": base + i // 10, "message": lines[i]} for i in range(b * 1000, (b + 1) * 1000)]
        out = put(logs, "/ecs/load", "load/app/task", batch)
        assert "rejectedLogEventsInfo" not in out
    wrote = time.perf_counter() - started
    started = time.perf_counter()
    events = all_events(logs, "/ecs/load", "load/app/task")
    read = time.perf_counter() - started
    assert [e["message"] for e in events] == lines
    print(f"\n10,000 lines over HTTP: written in {wrote:.3f}s ({10_000 / wrote:,.0f} lines/s), read back in {read:.3f}s")
    assert wrote < 1.0, f"writing 10,000 lines took {wrote:.2f}s"
