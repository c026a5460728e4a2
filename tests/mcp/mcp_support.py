"""Types and a scripted ReAct model for the MCP tests."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flock.testing import FunctionModel

HERE = Path(__file__).parent
TOOL_SERVER = str(HERE / "mcp_tool_server.py")
TOKEN = "tool-server-token-5b2e91"


class Question(BaseModel):
    city: str


class Answer(BaseModel):
    text: str


class Pair(BaseModel):
    a: int
    b: int


class Total(BaseModel):
    value: int


class ReactScript:
    """A ReAct conversation: call each ``(tool, args)`` in turn, then finish; the extraction answers
    with the offline model's values. ``seen`` keeps every trajectory the model was shown."""

    def __init__(self, *steps: tuple[str, dict[str, Any]]) -> None:
        self.steps = list(steps)
        self.seen: list[str] = []

    def __call__(self, call: Any) -> Any:
        trajectory = str(call.inputs.get("trajectory") or "")
        self.seen.append(trajectory)
        if "next_tool_name" not in call.output_fields:
            return call.values()
        done = trajectory.count("[[ ## observation_")
        if done < len(self.steps):
            tool, args = self.steps[done]
            return {"next_thought": f"call {tool}", "next_tool_name": tool, "next_tool_args": args}
        return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}}

    def model(self) -> FunctionModel:
        return FunctionModel(self)

    def observations(self) -> list[str]:
        """The observations of the longest trajectory seen."""
        return observations_of(max(self.seen, key=len, default=""))

    def first_observations(self) -> set[str]:
        """The first observation of every trajectory that has one (one per activation)."""
        return {found[0] for found in map(observations_of, self.seen) if found}


def observations_of(trajectory: str) -> list[str]:
    pattern = r"\[\[ ## observation_\d+ ## \]\]\n(.*?)(?=\n\n\[\[ ## |\Z)"
    return [m.strip() for m in re.findall(pattern, trajectory, re.S)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port} after {timeout}s") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (a reaped child does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
