"""CloudWatch alarms and Application Auto Scaling (issue 17), with the AWS CLI and boto3:
alarms evaluated every period on datapoints from `put-metric-data`, step scaling on a user's
alarm, target tracking's alarm pair, scheduled actions, the errors AWS gives, and a rolling
deployment failed and rolled back by its deployment alarm on real Docker tasks.

`wharf up --metrics-period 3` makes CloudWatch's minute last 3 s: a 60-second alarm period
lasts 3 s, a 10-second one half a second, and scaling cooldowns shrink alike."""

import threading
import time

import pytest
from botocore.exceptions import ClientError

from agentutil import wait_until
from conftest import ECHO_IMAGE, Wharf
from util import write_json

SVC = "service/default/web"
DIM = "ecs:service:DesiredCount"


@pytest.fixture
def fast(tmp_path):
    w = Wharf(tmp_path, extra_args=["--metrics-period", "3"])
    try:
        yield w
    finally:
        w.stop()


def service_of(w, desired=1):
    ecs = w.client("ecs")
    ecs.create_cluster(clusterName="default")
    ecs.register_task_definition(family="web", cpu="256", memory="512", containerDefinitions=[
        {"name": "web", "image": ECHO_IMAGE, "essential": True, "memory": 64}])
    ecs.create_service(cluster="default", serviceName="web", taskDefinition="web", desiredCount=desired)
    return ecs


def desired(ecs):
    return ecs.describe_services(cluster="default", services=["web"])["services"][0]["desiredCount"]


def error_code(fn, **kw):
    with pytest.raises(ClientError) as e:
        fn(**kw)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_step_scaling_on_a_custom_metric_scales_out_and_says_why(fast):
    w = fast
    ecs = service_of(w)
    w.aws("application-autoscaling", "register-scalable-target", "--service-namespace", "ecs",
          "--resource-id", SVC, "--scalable-dimension", DIM, "--min-capacity", "1", "--max-capacity", "3")
    policy = w.aws("application-autoscaling", "put-scaling-policy", "--service-namespace", "ecs",
                   "--resource-id", SVC, "--scalable-dimension", DIM, "--policy-name", "queue-out",
                   "--policy-type", "StepScaling", "--step-scaling-policy-configuration",
                   '{"AdjustmentType":"ChangeInCapacity","Cooldown":60,"StepAdjustments":['
                   '{"MetricIntervalLowerBound":0,"MetricIntervalUpperBound":100,"ScalingAdjustment":1},'
                   '{"MetricIntervalLowerBound":100,"ScalingAdjustment":2}]}')
    w.aws("cloudwatch", "put-metric-alarm", "--alarm-name", "queue-deep", "--namespace", "Shop",
          "--metric-name", "QueueDepth", "--dimensions", "Name=Queue,Value=orders", "--statistic", "Maximum",
          "--period", "60", "--evaluation-periods", "2", "--threshold", "10",
          "--comparison-operator", "GreaterThanThreshold", "--alarm-actions", policy["PolicyARN"])
    cw = w.client("cloudwatch")
    alarm = cw.describe_alarms(AlarmNames=["queue-deep"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "INSUFFICIENT_DATA" and alarm["ActionsEnabled"]
    # Below the threshold: the alarm settles in OK and nothing scales.
    stop = threading.Event()
    depth = {"value": 4.0}

    def feed():
        while not stop.is_set():
            cw.put_metric_data(Namespace="Shop", MetricData=[{
                "MetricName": "QueueDepth", "Dimensions": [{"Name": "Queue", "Value": "orders"}],
                "Value": depth["value"], "Unit": "Count"}])
            time.sleep(0.3)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        wait_until("queue-deep OK", lambda: cw.describe_alarms(AlarmNames=["queue-deep"])["MetricAlarms"][0]
                   ["StateValue"] == "OK", 20)
        assert desired(ecs) == 1
        # 150 over the threshold of 10: the second step (+2), once; the cooldown holds it there.
        depth["value"] = 160.0
        wait_until("scaled to 3", lambda: desired(ecs) == 3, 20)
    finally:
        stop.set()
        feeder.join()
    reason = cw.describe_alarms(AlarmNames=["queue-deep"])["MetricAlarms"][0]["StateReason"]
    assert reason.startswith("Threshold Crossed: 2 datapoints [160.0 (") and "greater than the threshold (10.0)" in reason
    activities = w.aws("application-autoscaling", "describe-scaling-activities", "--service-namespace", "ecs",
                       "--resource-id", SVC, "--scalable-dimension", DIM)["ScalingActivities"]
    assert activities[0]["Description"] == "Setting desired count to 3."
    assert activities[0]["Cause"] == "monitor alarm queue-deep in state ALARM triggered policy queue-out"
    assert activities[0]["StatusCode"] == "Successful"
    history = cw.describe_alarm_history(AlarmName="queue-deep")["AlarmHistoryItems"]
    kinds = [h["HistoryItemType"] for h in history]
    assert kinds[-1] == "ConfigurationUpdate" and "StateUpdate" in kinds and "Action" in kinds
    assert any(h["HistorySummary"] == "Alarm updated from OK to ALARM" for h in history)
    # Max capacity bounds it: no further activity although the alarm stays in ALARM.
    assert desired(ecs) == 3


def test_target_tracking_owns_its_alarm_pair(fast):
    w = fast
    service_of(w)
    aas, cw = w.client("application-autoscaling"), w.client("cloudwatch")
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=SVC, ScalableDimension=DIM,
                                 MinCapacity=1, MaxCapacity=4)
    out = aas.put_scaling_policy(
        PolicyName="cpu70", ServiceNamespace="ecs", ResourceId=SVC, ScalableDimension=DIM,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0, "ScaleOutCooldown": 60, "ScaleInCooldown": 60,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})
    names = sorted(a["AlarmName"] for a in out["Alarms"])
    assert names[0].startswith("TargetTracking-service/default/web-AlarmHigh-")
    assert names[1].startswith("TargetTracking-service/default/web-AlarmLow-")
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNames=names)["MetricAlarms"]}
    high, low = alarms[names[0]], alarms[names[1]]
    assert (high["Namespace"], high["MetricName"], high["Statistic"]) == ("AWS/ECS", "CPUUtilization", "Average")
    assert sorted((d["Name"], d["Value"]) for d in high["Dimensions"]) == [("ClusterName", "default"),
                                                                           ("ServiceName", "web")]
    assert (high["Threshold"], high["EvaluationPeriods"], high["ComparisonOperator"]) == (70.0, 3, "GreaterThanThreshold")
    assert (low["Threshold"], low["EvaluationPeriods"], low["ComparisonOperator"]) == (63.0, 15, "LessThanThreshold")
    assert high["AlarmActions"] == [out["PolicyARN"]]
    policy = aas.describe_scaling_policies(ServiceNamespace="ecs", PolicyNames=["cpu70"])["ScalingPolicies"][0]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert sorted(a["AlarmName"] for a in policy["Alarms"]) == names
    # The policy's alarms go with it; deregistering the target takes its policies.
    aas.delete_scaling_policy(PolicyName="cpu70", ServiceNamespace="ecs", ResourceId=SVC, ScalableDimension=DIM)
    assert cw.describe_alarms(AlarmNames=names)["MetricAlarms"] == []
    aas.deregister_scalable_target(ServiceNamespace="ecs", ResourceId=SVC, ScalableDimension=DIM)
    assert aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"] == []


def test_registering_and_scheduled_actions_move_the_service_into_bounds(fast):
    w = fast
    ecs = service_of(w, desired=1)
    aas = w.client("application-autoscaling")
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=SVC, ScalableDimension=DIM,
                                 MinCapacity=2, MaxCapacity=5)
    assert desired(ecs) == 2
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 2))
    aas.put_scheduled_action(ServiceNamespace="ecs", ResourceId=SVC, ScalableDimension=DIM,
                             ScheduledActionName="morning", Schedule=f"at({at})",
                             ScalableTargetAction={"MinCapacity": 4, "MaxCapacity": 6})
    wait_until("scheduled scale-out", lambda: desired(ecs) == 4, 20)
    target = aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[SVC])["ScalableTargets"][0]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (4, 6)
    causes = [a["Cause"] for a in aas.describe_scaling_activities(ServiceNamespace="ecs")["ScalingActivities"]]
    assert "scheduled action name morning was triggered" in causes
    assert "minimum capacity was set to 4" in causes and "minimum capacity was set to 2" in causes
    actions = aas.describe_scheduled_actions(ServiceNamespace="ecs")["ScheduledActions"]
    assert [a["ScheduledActionName"] for a in actions] == ["morning"] and actions[0]["Schedule"] == f"at({at})"
    aas.delete_scheduled_action(ServiceNamespace="ecs", ResourceId=SVC, ScalableDimension=DIM,
                                ScheduledActionName="morning")
    assert aas.describe_scheduled_actions(ServiceNamespace="ecs")["ScheduledActions"] == []


def test_bad_input_gets_aws_errors(fast):
    w = fast
    service_of(w)
    aas, cw = w.client("application-autoscaling"), w.client("cloudwatch")
    tt = {"TargetValue": 70.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}}
    code, msg = error_code(aas.put_scaling_policy, PolicyName="p", ServiceNamespace="ecs", ResourceId=SVC,
                           ScalableDimension=DIM, PolicyType="TargetTrackingScaling",
                           TargetTrackingScalingPolicyConfiguration=tt)
    assert code == "ObjectNotFoundException" and "No scalable target registered" in msg
    code, msg = error_code(aas.register_scalable_target, ServiceNamespace="ecs", ResourceId="service/default/ghost",
                           ScalableDimension=DIM, MinCapacity=1, MaxCapacity=2)
    assert code == "ValidationException" and "service/default/ghost" in msg
    code, msg = error_code(aas.register_scalable_target, ServiceNamespace="ecs", ResourceId=SVC,
                           ScalableDimension=DIM, MinCapacity=3, MaxCapacity=2)
    assert code == "ValidationException"
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=SVC, ScalableDimension=DIM,
                                 MinCapacity=1, MaxCapacity=2)
    other = {"TargetValue": 70.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "DynamoDBReadCapacityUtilization"}}
    code, msg = error_code(aas.put_scaling_policy, PolicyName="p", ServiceNamespace="ecs", ResourceId=SVC,
                           ScalableDimension=DIM, PolicyType="TargetTrackingScaling",
                           TargetTrackingScalingPolicyConfiguration=other)
    assert code == "ValidationException" and "DynamoDBReadCapacityUtilization" in msg
    alb = {"TargetValue": 100.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget",
                                                                    "ResourceLabel": "nonsense"}}
    code, _ = error_code(aas.put_scaling_policy, PolicyName="p", ServiceNamespace="ecs", ResourceId=SVC,
                         ScalableDimension=DIM, PolicyType="TargetTrackingScaling",
                         TargetTrackingScalingPolicyConfiguration=alb)
    assert code == "ValidationException"
    code, _ = error_code(aas.put_scheduled_action, ServiceNamespace="ecs", ResourceId=SVC, ScalableDimension=DIM,
                         ScheduledActionName="s", Schedule="cron(0 9 * * *)")
    assert code == "ValidationException"
    alarm = dict(AlarmName="a", Namespace="Shop", MetricName="m", Statistic="Average", EvaluationPeriods=1,
                 Threshold=1.0, ComparisonOperator="GreaterThanThreshold")
    code, msg = error_code(cw.put_metric_alarm, Period=45, **alarm)
    assert code == "InvalidParameterValue" and "Period" in msg
    code, _ = error_code(cw.put_metric_alarm, Period=20, **alarm)
    assert code == "InvalidParameterValue"
    code, _ = error_code(cw.put_metric_alarm, Period=60, DatapointsToAlarm=3, **alarm)
    assert code == "InvalidParameterValue"
    code, _ = error_code(cw.put_metric_alarm, Period=60, AlarmActions=["arn:aws:sns:us-east-1:123456789012:t"], **alarm)
    assert code == "InvalidParameterValue"
    code, _ = error_code(cw.set_alarm_state, AlarmName="ghost", StateValue="ALARM", StateReason="test")
    assert code == "ResourceNotFound"
    code, _ = error_code(cw.delete_alarms, AlarmNames=["ghost"])
    assert code == "ResourceNotFound"
    # Nothing half-written: no alarm exists after the refusals.
    assert cw.describe_alarms()["MetricAlarms"] == []


def test_set_alarm_state_and_actions_switches(fast):
    w = fast
    cw = w.client("cloudwatch")
    cw.put_metric_alarm(AlarmName="manual", Namespace="Shop", MetricName="m", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
                        TreatMissingData="ignore")
    cw.set_alarm_state(AlarmName="manual", StateValue="ALARM", StateReason="testing")
    a = cw.describe_alarms(StateValue="ALARM")["MetricAlarms"]
    assert [x["AlarmName"] for x in a] == ["manual"] and a[0]["StateReason"] == "testing"
    for_metric = cw.describe_alarms_for_metric(Namespace="Shop", MetricName="m")["MetricAlarms"]
    assert [x["AlarmName"] for x in for_metric] == ["manual"]
    cw.disable_alarm_actions(AlarmNames=["manual"])
    assert cw.describe_alarms(AlarmNames=["manual"])["MetricAlarms"][0]["ActionsEnabled"] is False
    cw.enable_alarm_actions(AlarmNames=["manual"])
    assert cw.describe_alarms(AlarmNames=["manual"])["MetricAlarms"][0]["ActionsEnabled"] is True
    updates = cw.describe_alarm_history(AlarmName="manual", HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    assert updates[0]["HistorySummary"] == "Alarm updated from INSUFFICIENT_DATA to ALARM"
    cw.delete_alarms(AlarmNames=["manual"])
    assert cw.describe_alarms()["MetricAlarms"] == []


def test_a_deployment_alarm_in_alarm_rolls_the_deployment_back(wharf_factory):
    w = wharf_factory("--metrics-period", "3")
    ecs, cw = w.client("ecs"), w.client("cloudwatch")
    check = {"command": ["CMD", "/wharf-echo", "--healthcheck", "http://127.0.0.1:8080/health"],
             "interval": 1, "timeout": 2, "retries": 1, "startPeriod": 120}

    def td(version, extra_env=()):
        env = [{"name": "VERSION", "value": version}, *extra_env]
        return ecs.register_task_definition(family="web", containerDefinitions=[{
            "name": "web", "image": ECHO_IMAGE, "essential": True, "memory": 64, "environment": env,
            "healthCheck": check}])["taskDefinition"]["taskDefinitionArn"]

    v1 = td("v1")
    cw.put_metric_alarm(AlarmName="errors", Namespace="Shop", MetricName="Errors", Statistic="Sum", Period=10,
                        EvaluationPeriods=1, Threshold=5.0, ComparisonOperator="GreaterThanThreshold")
    w.aws("ecs", "create-service", "--cluster", w.cluster, "--service-name", "web", "--task-definition", v1,
          "--desired-count", "1", "--deployment-configuration",
          "alarms={alarmNames=[errors],enable=true,rollback=true},maximumPercent=200,minimumHealthyPercent=100")

    def svc():
        return ecs.describe_services(cluster=w.cluster, services=["web"])["services"][0]

    wait_until("v1 deployed", lambda: svc()["deployments"][0]["rolloutState"] == "COMPLETED", 60)
    assert svc()["deploymentConfiguration"]["alarms"] == {"alarmNames": ["errors"], "enable": True, "rollback": True}
    # v2 starts slowly (its health check stays UNKNOWN for a while): the rollout is in progress
    # when the errors come.
    v2 = td("v2", [{"name": "START_DELAY_SECS", "value": "60"}])
    ecs.update_service(cluster=w.cluster, service="web", taskDefinition=v2)
    wait_until("v2 rolling", lambda: len(svc()["deployments"]) == 2, 20)
    stop = threading.Event()

    def errors():
        while not stop.is_set():
            cw.put_metric_data(Namespace="Shop", MetricData=[{"MetricName": "Errors", "Value": 50.0}])
            time.sleep(0.2)

    feeder = threading.Thread(target=errors, daemon=True)
    feeder.start()
    try:
        failed = wait_until("v2 failed", lambda: next(
            (d for d in svc()["deployments"] if d["taskDefinition"] == v2 and d["rolloutState"] == "FAILED"), None), 30)
    finally:
        stop.set()
        feeder.join()
    assert failed["rolloutStateReason"] == "ECS deployment alarm errors went into ALARM state."
    s = svc()
    assert s["taskDefinition"] == v1, "the service rolled back to the last completed revision"
    messages = [e["message"] for e in s["events"]]
    assert any("deployment failed: alarm detected." in m for m in messages)
    assert any("rolling back to deployment" in m and "after an alarm failure" in m for m in messages)
    wait_until("rolled back", lambda: svc()["deployments"][0]["taskDefinition"] == v1
               and svc()["deployments"][0]["rolloutState"] == "COMPLETED" and len(svc()["deployments"]) == 1, 60)


def test_seed000_cpu_target_tracking_scales_out_under_load_and_back_in(wharf_factory, tmp_path):
    """Seed 000: one task (CPU 256) behind a listener, target tracking at 70 % CPU, 1 to 4
    tasks. Load on the listener burns the task's CPU: the high alarm fires and the service
    scales out; the load stops: the low alarm brings it back to the minimum, and a protected
    task is never the one stopped."""
    from test_zero_downtime import Load, healthy, listener, task_definition
    w = wharf_factory("--metrics-period", "2")
    tg, url = listener(w, "cpu", "instance")
    td = task_definition("cpu", "bridge", "EC2", "v1") | {"cpu": "256", "memory": "512"}
    w.aws("ecs", "register-task-definition", "--cli-input-json", write_json(tmp_path / "td.json", td))
    w.aws("ecs", "create-service", "--cluster", w.cluster, "--service-name", "web", "--task-definition", "cpu",
          "--desired-count", "1", "--load-balancers",
          f"targetGroupArn={tg},containerName=web,containerPort=8080")
    wait_until("one healthy target", lambda: len(healthy(w, tg)) == 1, 60)
    resource = f"service/{w.cluster}/web"
    scaling = ["--service-namespace", "ecs", "--resource-id", resource, "--scalable-dimension", DIM]
    w.aws("application-autoscaling", "register-scalable-target", *scaling, "--min-capacity", "1",
          "--max-capacity", "4")
    w.aws("application-autoscaling", "put-scaling-policy", *scaling, "--policy-name", "cpu70",
          "--policy-type", "TargetTrackingScaling", "--target-tracking-scaling-policy-configuration",
          '{"TargetValue":70.0,"ScaleOutCooldown":60,"ScaleInCooldown":60,'
          '"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageCPUUtilization"}}')
    ecs = w.client("ecs")

    def svc():
        return ecs.describe_services(cluster=w.cluster, services=["web"])["services"][0]

    load = Load(url + "work?ms=20", connections=4)
    try:
        started = time.time()
        wait_until("scale-out", lambda: svc()["desiredCount"] > 1, 90)
        print(f"first scale-out {time.time() - started:.1f} s after the load started")
        activity = w.aws("application-autoscaling", "describe-scaling-activities",
                         *scaling)["ScalingActivities"][0]
        assert activity["Cause"].startswith("monitor alarm TargetTracking-service/")
        assert "-AlarmHigh-" in activity["Cause"] and activity["Cause"].endswith(
            "in state ALARM triggered policy cpu70")
        wait_until("the new tasks run", lambda: svc()["runningCount"] == svc()["desiredCount"] > 1, 60)
    finally:
        result = load.stop()
    print(f"load: {result['requests']} requests, {result['failed']} failed")
    stats = w.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/ECS", MetricName="CPUUtilization", Statistics=["Maximum"], Period=60,
        Dimensions=[{"Name": "ClusterName", "Value": w.cluster}, {"Name": "ServiceName", "Value": "web"}],
        StartTime=started - 60, EndTime=time.time() + 60)["Datapoints"]
    assert max(p["Maximum"] for p in stats) > 70
    # Protect a task that scale-in would be free to stop, then let the load go.
    tasks = ecs.list_tasks(cluster=w.cluster, serviceName="web")["taskArns"]
    keep = sorted(tasks)[-1]
    w.aws("ecs", "update-task-protection", "--cluster", w.cluster, "--tasks", keep, "--protection-enabled",
          "--expires-in-minutes", "10")
    wait_until("scale-in to the minimum", lambda: svc()["desiredCount"] == 1 and svc()["runningCount"] == 1, 120)
    assert ecs.list_tasks(cluster=w.cluster, serviceName="web")["taskArns"] == [keep]
    activities = w.aws("application-autoscaling", "describe-scaling-activities", *scaling)["ScalingActivities"]
    assert "-AlarmLow-" in activities[0]["Cause"] and activities[0]["Description"] == "Setting desired count to 1."
    w.aws("ecs", "update-task-protection", "--cluster", w.cluster, "--tasks", keep, "--no-protection-enabled")
