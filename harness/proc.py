"""One subprocess convention: argv as a list, the exit status checked, and a failure that shows argv, stdout and
stderr. `run` for a command that finishes, `popen` for one that runs beside the test (a server, a watcher) and is
stopped when the block ends. Nothing else in the harness, the kit or the tests starts a process (ruff's banned-api
in pyproject.toml holds them to it)."""

import signal
import subprocess
from contextlib import contextmanager

DEVNULL = subprocess.DEVNULL
PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
TimeoutExpired = subprocess.TimeoutExpired


class CommandFailed(RuntimeError):
    """A command exited non-zero; the message carries argv, stdout and stderr."""

    def __init__(self, argv, result):
        self.result = result
        super().__init__(f"{' '.join(argv)} failed ({result.returncode}):\n"
                         f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")


def run(argv, check=True, timeout=900, **kwargs):
    """Run argv (a list), capture text output; raise CommandFailed on a non-zero exit when check."""
    argv = [str(a) for a in argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        raise CommandFailed(argv, result)
    return result


def default_signals():
    """preexec_fn for a test that sends a command signals: SIGINT, SIGQUIT and SIGHUP at their defaults in the
    child, as a terminal's shell starts a command, whatever this run inherited. A run started in the background
    (`cmd &` in a script: SIGINT and SIGQUIT ignored) or under nohup (SIGHUP ignored) hands them down ignored, and
    POSIX keeps a signal ignored on entry ignored: a shell below can neither be ended by it nor trap it."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def stop_process(proc, timeout=10):
    """Terminate a child process, killing it if it has not exited within timeout seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@contextmanager
def popen(argv, log=None, stop_timeout=10, **kwargs):
    """Start argv beside the caller; yield the Popen; stop it when the block ends, however it ends.

    With log (a path), stdout and stderr go to that file; otherwise the caller passes stdout/stderr itself."""
    argv = [str(a) for a in argv]
    if log is not None:
        with open(log, "w") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, text=True, **kwargs)
    else:
        proc = subprocess.Popen(argv, **kwargs)
    try:
        yield proc
    finally:
        stop_process(proc, timeout=stop_timeout)


def failed(argv, returncode, stdout="", stderr=""):
    """A CommandFailed for a process started with popen that ended with returncode."""
    argv = [str(a) for a in argv]
    return CommandFailed(argv, subprocess.CompletedProcess(argv, returncode, stdout, stderr))
