"""One subprocess convention: argv as a list, the exit status checked, and a
failure that shows argv, stdout and stderr."""

import subprocess


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
