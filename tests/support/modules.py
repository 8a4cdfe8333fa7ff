"""Run a collection module in-process, as Ansible would, and return its result dict.

Fast (no ansible-playbook start-up), real (the module connects to a real server). Playbook-level tests
use ``run_playbook`` instead.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys

from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_module(name, args, check_mode=False, diff=False):
    """Run ``sigeti.dwh.<name>`` with ``args``; return its JSON result (``failed`` is set on fail_json)."""
    module = importlib.import_module("ansible_collections.sigeti.dwh.plugins.modules.%s" % name)
    full_args = dict(args)
    full_args["_ansible_check_mode"] = check_mode
    full_args["_ansible_diff"] = diff
    # Ansible keeps module warnings in a process-wide registry: without this, one in-process run would report the
    # warnings of every earlier run too.
    for registry in ("_global_warnings", "_global_deprecations"):
        getattr(ansible_warnings, registry, {}).clear()
    # Once a test in this process has loaded controller code (a filter or lookup plugin), module warnings would be
    # displayed instead of returned: run the module as on a target host.
    was_controller = getattr(ansible_internal, "is_controller", False)
    ansible_internal.is_controller = False
    out = io.StringIO()
    try:
        with patch_module_args(full_args), contextlib.redirect_stdout(out):
            try:
                module.main()
            except SystemExit:
                pass
    finally:
        ansible_internal.is_controller = was_controller
    text = out.getvalue()
    try:
        return json.loads(text)
    except ValueError:
        raise AssertionError("module %s printed no JSON result:\n%s" % (name, text))


def run_playbook(
    playbook, inventory=None, extra_vars=None, check=False, env=None, cwd=None, timeout=600, extra_args=()
):
    """Run ``ansible-playbook`` with this collection on ANSIBLE_COLLECTIONS_PATH; return CompletedProcess."""
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook]
    if inventory:
        command += ["-i", inventory]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    if check:
        command.append("--check")
    command += list(extra_args)
    full_env = dict(os.environ)
    full_env.setdefault("ANSIBLE_STDOUT_CALLBACK", "default")
    full_env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    full_env["ANSIBLE_HOST_KEY_CHECKING"] = "False"
    full_env["ANSIBLE_NOCOLOR"] = "1"
    full_env.update(env or {})
    return subprocess.run(
        command,
        cwd=cwd or ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
