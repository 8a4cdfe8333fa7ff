"""Interpreter wrapper for the benchmarks' ansible-playbook runs (bench/common.py copies it with a shebang and
sets it as ansible_python_interpreter): runs ``$BENCH_PYTHON`` with the same arguments, passes its output through, and appends to
``$BENCH_RSS_FILE`` one JSON line with the script name, the peak RSS of that process (the module's own memory,
not the controller's) and the module's output, so the harness reads the result without an extra task.
"""

import json
import os
import subprocess
import sys


def main():
    python = os.environ.get("BENCH_PYTHON") or sys.executable
    child = subprocess.Popen([python] + sys.argv[1:], stdout=subprocess.PIPE)
    output = child.stdout.read()
    child.stdout.close()
    _pid, status, usage = os.wait4(child.pid, 0)
    sys.stdout.buffer.write(output)
    sys.stdout.flush()
    out = os.environ.get("BENCH_RSS_FILE")
    if out:
        script = os.path.basename(sys.argv[1]) if len(sys.argv) > 1 else "-"
        line = {"script": script, "rss_kb": usage.ru_maxrss, "output": output.decode("utf-8", "replace")}
        with open(out, "a") as handle:
            handle.write(json.dumps(line) + "\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
