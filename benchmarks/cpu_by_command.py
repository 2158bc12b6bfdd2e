"""Where a command's CPU goes, by program: the kernel's process accounting (acct(2), through `accton` of Debian's
`acct` package) records every process that ends, in containers and Docker-in-Docker nodes too, with its CPU time;
the daemons that outlive the command (dockerd, containerd) are read from /proc at the start and the end instead.
Prints the machine's busy and idle CPU-seconds (/proc/stat), then the programs that used most, so a change meant to
take work out of the suite can show where the work was.

    python3 -m benchmarks.cpu_by_command -- python3 -m benchmarks.suite_time   # the whole suite
    python3 -m benchmarks.cpu_by_command --top 40 -- nox -s e2e

Needs root (acct(2)) and `accton` (apt-get install acct); it takes the machine's accounting over while it runs and
turns it off at the end. Figures are printed, never asserted. Programs named by the
threads that ended them: a Crystal compiler or a Lucky binary often ends as `DEFAULT-0`, `GC-marker-0` or `SYSMON`,
`runc init` as `exe`, dockerd's layer extraction and archiving (its re-executions of itself) as `dockerd`.
"""

import argparse
import os
import shutil
import struct
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from harness.proc import popen, run

# struct acct_v3 (linux/acct.h): flag, version, tty, exitcode, uid, gid, pid, ppid, btime, etime (float), then
# comp_t utime, stime, mem, io, rw, minflt, majflt, swaps, and comm[16]: 64 bytes.
RECORD = struct.Struct("<BBHIIIIIIf8H16s")
DAEMONS = ("dockerd", "containerd", "containerd-shim")


def comp_t(value):
    """A comp_t (13-bit mantissa, 3-bit base-8 exponent) in clock ticks."""
    return (value & 0x1FFF) << (3 * (value >> 13))


def records(path):
    """(comm, CPU seconds) of every process the accounting file holds (version 3 records)."""
    tick = os.sysconf("SC_CLK_TCK")
    data = Path(path).read_bytes()
    for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
        fields = RECORD.unpack_from(data, offset)
        if fields[1] & 0x0F != 3:
            continue
        utime, stime = comp_t(fields[10]), comp_t(fields[11])
        yield fields[18].split(b"\0", 1)[0].decode(errors="replace"), (utime + stime) / tick


def daemons():
    """(pid, start time) -> (comm, CPU ticks) of the long-lived daemons running now."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        if comm in DAEMONS:
            fields = raw[raw.rindex(")") + 2:].split()
            found[(pid, fields[19])] = (comm, int(fields[11]) + int(fields[12]))
    return found


def machine():
    """/proc/stat's first line: (busy, idle) clock ticks since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = values[3] + values[4]
    return sum(values) - idle, idle


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=25, help="how many programs to print (25)")
    parser.add_argument("command", nargs="+", help="the command to measure (after --)")
    args = parser.parse_args(argv)
    accton = shutil.which("accton")
    if accton is None or os.geteuid() != 0:
        sys.exit("cpu_by_command: needs root and accton (apt-get install acct): process accounting is acct(2)")
    tick = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory(prefix="lhd-acct-") as tmp:
        log = Path(tmp) / "pacct"
        log.touch()
        before, (busy0, idle0), started = daemons(), machine(), time.monotonic()
        run([accton, log])
        try:
            with popen(args.command) as command:  # its output goes to this terminal as it comes
                returncode = command.wait()
        finally:
            run([accton, "off"])
        wall = time.monotonic() - started
        after, (busy1, idle1) = daemons(), machine()
        by_comm, calls = defaultdict(float), Counter()
        for comm, seconds in records(log):
            by_comm[comm] += seconds
            calls[comm] += 1
    for key, (comm, ticks) in after.items():
        if key in before:  # alive at both ends; a daemon that started or ended meanwhile is in the records
            by_comm[f"{comm} (running)"] += (ticks - before[key][1]) / tick
            calls[f"{comm} (running)"] += 1
    busy, idle = (busy1 - busy0) / tick, (idle1 - idle0) / tick
    print(f"\ncpu: {busy:.0f} CPU-seconds busy in {wall:.0f} s on {os.cpu_count()} cores, "
          f"idle {100 * idle / (busy + idle):.1f} %; exit {returncode}")
    print(f"{'CPU-s':>9} {'processes':>9}  program")
    for comm, seconds in sorted(by_comm.items(), key=lambda item: -item[1])[:args.top]:
        print(f"{seconds:9.1f} {calls[comm]:9d}  {comm}")
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
