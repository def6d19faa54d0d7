"""The command stopped from outside: Ctrl-C and SIGTERM end with one line, their status and nothing left behind;
output that cannot be written is exit 5 even with stderr closed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gpunuma.tools.cli import ExitCode, main

DATA = Path(__file__).parent / "data"
#: Runs ``gpunuma ARGS`` as a program embedding the command would, whose stdout sends ``SIGNAL`` to the process
#: when the command first writes to it: the signal comes while the command runs, at the same point every time.
STOPPED_AT_FIRST_OUTPUT = """
import os, sys
from gpunuma.tools.cli import main

class Stopping:
    def __init__(self, stream, signum):
        self.stream, self.signum = stream, signum

    def write(self, text):
        if self.signum:
            signum, self.signum = self.signum, 0
            os.kill(os.getpid(), signum)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()

sys.stdout = Stopping(sys.stdout, int(sys.argv[1]))
sys.exit(main(sys.argv[2:]))
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUNUMA_", "CUDA_", "LOCAL_RANK"))}
    return {**env, **extra}


def stopped(signum: int, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", STOPPED_AT_FIRST_OUTPUT, str(int(signum)), *argv],
                          capture_output=True, text=True, env=clean_env(**env), timeout=120)


STOPS = [(signal.SIGINT, ExitCode.INTERRUPTED, "gpunuma: interrupted (Ctrl-C)\n", "KeyboardInterrupt"),
         (signal.SIGTERM, ExitCode.TERMINATED, "gpunuma: terminated (SIGTERM)\n", "Terminated")]


@pytest.mark.parametrize(("signum", "code", "line", "kind"), STOPS, ids=["Ctrl-C", "SIGTERM"])
def test_a_stopped_command_says_so_in_one_line_with_the_shell_s_status(signum, code, line, kind):
    done = stopped(signum, "topo", "--simulate", "gb200")

    assert (done.returncode, done.stderr) == (code, line)
    assert (code, signum) in ((130, signal.SIGINT), (143, signal.SIGTERM))  # 128 + the signal, as a shell says


@pytest.mark.parametrize(("signum", "code", "line", "kind"), STOPS, ids=["Ctrl-C", "SIGTERM"])
def test_a_stopped_command_under_json_prints_a_json_error(signum, code, line, kind):
    done = stopped(signum, "plan", "--simulate", "dgx-h100", "--gpu", "5", "--json")

    assert done.returncode == code and done.stderr == line
    assert json.loads(done.stdout) == {"error": {"type": kind, "message": line[len("gpunuma: "):-1],
                                                 "exit_code": int(code)}}


@pytest.mark.parametrize(("signum", "code", "line", "kind"), STOPS, ids=["Ctrl-C", "SIGTERM"])
def test_a_stopped_command_leaves_no_temporary_work(tmp_path, signum, code, line, kind):
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    done = stopped(signum, "topo", "--root", str(DATA / "h200x2.tar.gz"), TMPDIR=str(scratch))

    assert done.returncode == code and done.stderr == line
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("argv", [["machines"], ["topo", "--simulate", "gb200"], ["plan", "--simulate", "gb200"]])
def test_a_full_disk_with_stderr_closed_is_exit_5(argv):
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "gpunuma", *argv], stdout=full, stderr=subprocess.DEVNULL,
                              env=clean_env(), timeout=120, close_fds=True, preexec_fn=lambda: os.close(2))

    assert done.returncode == ExitCode.ERROR


def test_the_command_puts_back_the_sigterm_handling_it_found(capsys):
    default = signal.getsignal(signal.SIGTERM)

    def own(signum: int, frame: object) -> None:
        """A program's own handler: the command leaves it in place."""

    main(["machines"])
    assert signal.getsignal(signal.SIGTERM) == default
    signal.signal(signal.SIGTERM, own)
    try:
        main(["machines"])
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, default)
    capsys.readouterr()
