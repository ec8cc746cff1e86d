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
            m = re.search(r"endpoint:\s+(http://\S+)", line)
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
