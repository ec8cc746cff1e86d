"""End-to-end harness: start the real `wharf` binary on a free port and drive it with the
real AWS CLI and boto3, exactly as users do (only the endpoint changed)."""

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("WHARF_BIN", str(ROOT / "target" / "debug" / "wharf"))
ACCESS_KEY = "AKIAWHARFTESTKEY0001"
SECRET_KEY = "wharf-test-secret-key-0000000000000000000"
REGION = "us-east-1"
ACCOUNT = "123456789012"


class CliError(Exception):
    def __init__(self, code, stderr):
        super().__init__(stderr)
        self.code = code
        self.stderr = stderr


class Wharf:
    """A running `wharf up` process with its data dir, endpoint and client helpers."""

    def __init__(self, data_dir, extra_args=(), agent=False):
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.agent = agent
        self.proc = None
        self.endpoint = None
        self.log = self.data_dir / "wharf.log"
        self.start()

    def env(self):
        env = dict(os.environ)
        env.update(
            WHARF_ACCESS_KEY_ID=ACCESS_KEY,
            WHARF_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=str(self.data_dir / "aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.data_dir / "aws-credentials"),
            AWS_MAX_ATTEMPTS="1",
        )
        env.pop("AWS_PROFILE", None)
        return env

    def start(self, listen="127.0.0.1:0"):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [BIN, "up", "--listen", listen, "--data-dir", str(self.data_dir / "data"), "--no-profile",
                *([] if self.agent else ["--no-agent"]), "--account-id", ACCOUNT, *self.extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(self.log, "ab"), env=self.env(), text=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"endpoint:\s+(https?://\S+)", line)
            if m:
                self.endpoint = m.group(1)
                return
        raise RuntimeError(f"wharf did not start; log:\n{self.log.read_text()}")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def kill9_and_restart(self):
        port = self.endpoint.rsplit(":", 1)[1]
        self.stop(signal.SIGKILL)
        self.start(listen=f"127.0.0.1:{port}")

    def aws(self, *args, check=True):
        """Runs the real AWS CLI against Wharf; returns parsed JSON output (or None)."""
        cmd = [str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "aws"),
               "--endpoint-url", self.endpoint, "--output", "json", *args]
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env(), timeout=120)
        if r.returncode != 0:
            if check:
                raise CliError(r.returncode, r.stderr)
            return CliError(r.returncode, r.stderr)
        return json.loads(r.stdout) if r.stdout.strip() else None

    def client(self, service, **kw):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=kw.pop("region_name", REGION),
            aws_access_key_id=kw.pop("aws_access_key_id", ACCESS_KEY),
            aws_secret_access_key=kw.pop("aws_secret_access_key", SECRET_KEY),
            config=Config(retries={"max_attempts": 1}, **kw),
        )


@pytest.fixture
def wharf():
    with tempfile.TemporaryDirectory(prefix="wharf-e2e-") as d:
        w = Wharf(d)
        try:
            yield w
        finally:
            code = w.stop()
            assert code in (0, None, -9), f"wharf exited with {code}; log:\n{w.log.read_text()}"


@pytest.fixture
def ecs(wharf):
    return wharf.client("ecs")


# ---------------------------------------------------------------------------------------------
# Agents and real containers (tests/e2e/test_agent*.py): `wharf up` with its embedded agent,
# standalone `wharf agent` processes, the wharf-echo test image, and cleanup of every container
# a test's agents made, even when the test fails.

ECHO_IMAGE = "wharf-echo:latest"
CLUSTER_LABEL = "com.amazonaws.ecs.cluster"
INSTANCE_LABEL = "dev.wharf.container-instance"
TASK_LABEL = "com.amazonaws.ecs.task-arn"
NAME_LABEL = "com.amazonaws.ecs.container-name"


def docker(*args, check=True, timeout=60):
    """Runs the docker CLI; returns the CompletedProcess (raises on failure when `check`)."""
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def docker_containers(label, running_only=False):
    """Containers carrying `label` (`key` or `key=value`), as dicts of id, name, state and the
    ECS labels, from `docker ps`."""
    fmt = "\t".join(["{{.ID}}", "{{.Names}}", "{{.State}}", f'{{{{.Label "{TASK_LABEL}"}}}}',
                     f'{{{{.Label "{NAME_LABEL}"}}}}', f'{{{{.Label "{CLUSTER_LABEL}"}}}}',
                     f'{{{{.Label "{INSTANCE_LABEL}"}}}}'])
    args = ["ps", "--no-trunc", "--filter", f"label={label}", "--format", fmt]
    if not running_only:
        args.insert(1, "-a")
    out = []
    for line in docker(*args).stdout.splitlines():
        cid, name, state, task, cname, cluster, owner = (line.split("\t") + [""] * 7)[:7]
        out.append(dict(id=cid, name=name, state=state, task=task, container=cname, cluster=cluster, owner=owner))
    return out


@pytest.fixture(scope="session")
def echo_image():
    """Makes sure Docker answers and `wharf-echo:latest` is built (once per session)."""
    try:
        r = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True,
                           timeout=30)
    except FileNotFoundError:
        pytest.fail("the agent tests need Docker: the `docker` CLI is not installed", pytrace=False)
    if r.returncode != 0:
        pytest.fail(f"the agent tests need a running Docker engine; `docker version` said: {r.stderr.strip()}",
                    pytrace=False)
    b = subprocess.run([str(ROOT / "scripts" / "build-test-images"), ECHO_IMAGE], capture_output=True, text=True,
                       timeout=900)
    if b.returncode != 0:
        pytest.fail(f"scripts/build-test-images failed:\n{b.stdout}\n{b.stderr}", pytrace=False)
    return ECHO_IMAGE


class AgentProcess:
    """A standalone `wharf agent` joining `cluster` of `wharf`, with its own data dir."""

    def __init__(self, wharf, cluster, data_dir, config=None, extra_args=(), env=None):
        self.wharf = wharf
        self.extra_env = dict(env or {})
        self.cluster = cluster
        self.data_dir = Path(data_dir)
        self.config = Path(config) if config else self.data_dir / "no-ecs.config"
        self.extra_args = list(extra_args)
        self.log = self.data_dir / "agent.log"
        self.proc = None
        self.start()

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [BIN, "agent", "--endpoint", self.wharf.endpoint, "--data-dir", str(self.data_dir),
                "--config", str(self.config), *self.extra_args]
        if self.cluster is not None:
            args += ["--cluster", self.cluster]
        env = self.wharf.env()
        env["AWS_REGION"] = REGION
        env.pop("ECS_CLUSTER", None)
        env.update(self.extra_env)
        self.proc = subprocess.Popen(args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)

    def state(self):
        """The agent's remembered state (`containerInstanceArn`, `cluster`, ...) or {}."""
        try:
            return json.loads((self.data_dir / "agent-state.json").read_text())
        except (OSError, ValueError):
            return {}

    def instance_arn(self, timeout=20):
        """Waits for the agent to register; returns its container instance ARN."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            arn = self.state().get("containerInstanceArn")
            if arn and (self.cluster is None or self.state().get("cluster") == self.cluster):
                return arn
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"agent did not register; log:\n{self.log.read_text()}")

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode if self.proc else None


def _owners_of(state):
    owners = []
    if state.get("containerInstanceArn"):
        owners.append(state["containerInstanceArn"])
    if state.get("fargateHost"):
        owners.append(f"fargate:{state['fargateHost']}")
    return owners


class Fleet:
    """What one test started: `wharf up` servers (with or without the embedded agent) and
    standalone agents. `close()` stops every task, the agents and the servers, then removes
    every container that one of them owned or that carries one of the test's cluster names."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.servers = []
        self.agents = []
        self.clusters = set()
        self.owners = set()

    def cluster_name(self, prefix="e2e"):
        name = f"{prefix}-{os.urandom(4).hex()}"
        self.clusters.add(name)
        return name

    def __call__(self, *extra_args, agent=True):
        """Starts `wharf up`; with `agent`, its embedded agent joins the server's own cluster
        `default` (`wharf.cluster`), which it creates."""
        w = Wharf(self.tmp / f"server{len(self.servers)}", extra_args, agent=agent)
        w.cluster = "default" if agent else None
        self.servers.append(w)
        return w

    def agent(self, wharf, cluster, config=None, extra_args=(), data_dir=None, env=None):
        if cluster is not None:
            self.clusters.add(cluster)
        a = AgentProcess(wharf, cluster, data_dir or self.tmp / f"agent{len(self.agents)}", config, extra_args, env)
        self.agents.append(a)
        return a

    def embedded_states(self, wharf):
        """The states of `wharf up`'s local agents: its own region's (`agent/`) and those of
        the other regions clients used (`agent-<region>/`)."""
        states = []
        for d in sorted((wharf.data_dir / "data").glob("agent*")):
            try:
                states.append(json.loads((d / "agent-state.json").read_text()))
            except (OSError, ValueError):
                pass
        return states

    def _stop_tasks(self, w):
        try:
            ecs = w.client("ecs")
            clusters = ecs.list_clusters()["clusterArns"]
        except Exception:  # noqa: BLE001 - cleanup must go on
            return
        for c in clusters:
            try:
                for status in ("ACTIVE", "DRAINING"):
                    for arn in ecs.list_container_instances(cluster=c, status=status)["containerInstanceArns"]:
                        self.owners.add(arn)
                # Services first, or the scheduler replaces the tasks stopped below while the
                # agents shut down (a container created then is nobody's).
                for arn in ecs.list_services(cluster=c, maxResults=100)["serviceArns"]:
                    ecs.delete_service(cluster=c, service=arn, force=True)
                for arn in ecs.list_tasks(cluster=c)["taskArns"]:
                    ecs.stop_task(cluster=c, task=arn, reason="e2e cleanup")
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass

    def close(self):
        codes = []
        for w in self.servers:
            if w.proc and w.proc.poll() is None:
                self._stop_tasks(w)
            for state in self.embedded_states(w):
                self.owners.update(_owners_of(state))
        for a in self.agents:
            self.owners.update(_owners_of(a.state()))
            a.stop()
        for w in self.servers:
            codes.append((w, w.stop()))
        ids = set()
        for owner in self.owners:
            ids.update(c["id"] for c in docker_containers(f"{INSTANCE_LABEL}={owner}"))
        for cluster in self.clusters:
            ids.update(c["id"] for c in docker_containers(f"{CLUSTER_LABEL}={cluster}"))
        if ids:
            docker("rm", "-f", "-v", *sorted(ids), check=False)
        for w, code in codes:
            assert code in (0, None, -9), f"wharf exited with {code}; log:\n{w.log.read_text()}"


@pytest.fixture
def wharf_factory(echo_image):
    """Starts `wharf up` servers (`wharf_factory(*extra_args, agent=True)`) and standalone
    agents (`wharf_factory.agent(wharf, cluster)`), and cleans up after them."""
    with tempfile.TemporaryDirectory(prefix="wharf-e2e-agent-") as d:
        fleet = Fleet(d)
        try:
            yield fleet
        finally:
            fleet.close()


@pytest.fixture
def wharf_agent(wharf_factory):
    """`wharf up` WITH its embedded agent (joined to cluster `default`, which is this server's own)."""
    return wharf_factory()
