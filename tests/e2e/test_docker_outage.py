"""The agent and a Docker engine that goes away: an agent pointed at a Docker API proxy that
the test cuts and restores (the engine itself stays up). An agent that starts before the
engine answers waits for it; during an outage running containers are kept as they were; on
its return they are re-adopted, one removed meanwhile is reported STOPPED with a reason, and
the service replaces it."""

import os
import socket
import threading
import time

from agentutil import echo, register, wait_instances, wait_until
from conftest import docker
from scheduler_support import service_tasks, wait_stable

ENGINE = "/var/run/docker.sock"


class DockerProxy:
    """A unix-socket proxy in front of the engine's socket that can be cut (every connection
    closed, the socket removed) and restored."""

    def __init__(self, path):
        self.path = str(path)
        self.listener = None
        self.conns = set()
        self.lock = threading.Lock()

    def up(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self):
        listener, self.listener = self.listener, None
        if listener:
            listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            try:
                engine.connect(ENGINE)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns.update((client, engine))
            for a, b in ((client, engine), (engine, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_an_agent_rides_out_a_docker_outage(wharf_factory, tmp_path):
    proxy = DockerProxy(tmp_path / "docker.sock")
    w = wharf_factory(agent=False)
    ecs = w.client("ecs")
    cluster = wharf_factory.cluster_name()
    ecs.create_cluster(clusterName=cluster)
    try:
        # The agent starts while the engine is unreachable: it waits, then joins.
        agent = wharf_factory.agent(w, cluster, env={"DOCKER_HOST": f"unix://{proxy.path}"})
        time.sleep(2)
        assert agent.proc.poll() is None, agent.log.read_text()
        assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == []
        proxy.up()
        agent.instance_arn(timeout=30)
        wait_instances(ecs, cluster)

        td = register(ecs, "outage", echo(portMappings=[{"containerPort": 8080, "hostPort": 0}]))
        ecs.create_service(cluster=cluster, serviceName="outage", taskDefinition=td, desiredCount=2)
        wait_stable(ecs, cluster, "outage", timeout=90)
        running = [t for t in service_tasks(ecs, cluster, "outage") if t["lastStatus"] == "RUNNING"]
        assert len(running) == 2
        doomed, kept = running
        doomed_id = doomed["containers"][0]["runtimeId"]

        # Cut the engine off, remove one container behind the agent's back, restore.
        proxy.cut()
        docker("rm", "-f", doomed_id)
        time.sleep(3)
        assert agent.proc.poll() is None, agent.log.read_text()
        alive = ecs.describe_tasks(cluster=cluster, tasks=[kept["taskArn"]])["tasks"][0]
        assert alive["lastStatus"] == "RUNNING", "a running task was given up during the outage"
        proxy.up()

        def doomed_stopped():
            t = ecs.describe_tasks(cluster=cluster, tasks=[doomed["taskArn"]])["tasks"][0]
            return t["lastStatus"] == "STOPPED", t
        stopped = wait_until("the removed container's task is reported STOPPED", doomed_stopped, 60)
        reasons = [c.get("reason", "") for c in stopped["containers"]]
        assert any("removed outside of Wharf" in r for r in reasons), (stopped.get("stoppedReason"), reasons)

        def recovered():
            tasks = [t for t in service_tasks(ecs, cluster, "outage") if t["lastStatus"] == "RUNNING"]
            return len(tasks) == 2 and kept["taskArn"] in {t["taskArn"] for t in tasks}, tasks
        wait_until("the service recovers with the kept task re-adopted", recovered, 90)
        log = agent.log.read_text()
        assert "does not answer" in log and "answers again" in log, log[-3000:]
    finally:
        if proxy.listener is None:
            proxy.up()
        for arn in ecs.list_services(cluster=cluster)["serviceArns"]:
            ecs.delete_service(cluster=cluster, service=arn, force=True)
