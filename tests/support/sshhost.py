"""A managed host reached over real SSH, for the tests of "the database on another host".

OpenSSH's client (``ssh``, ``sftp``: what Ansible's ssh connection runs) talks to an SSH server written with
asyncssh, listening on 127.0.0.1 only. The "host" runs every command with ``/bin/sh -c`` in an environment of its
own: its HOME (Ansible's remote temp files, ``~/.ansible_async``), a system PATH without the controller's venv and
none of the controller's variables (no ANSIBLE_*, no DWH_LOGIN_PASSWORD): what crosses is what Ansible sends over
SSH. The file transfer is SFTP, served from the local file system.

``ssh_config`` maps the inventory's host name (e.g. the README's ``db1.internal``) to this server, with the key
pair and the known host key made here, as a user's ``~/.ssh/config`` would; point Ansible at it with
``ANSIBLE_SSH_COMMON_ARGS="-F <dir>/ssh_config"``.

    host = SshHost(folder, "db1.internal").start()   # folder: short, ssh control sockets live beside it
    ...
    host.stop()

Run alone (``python -m tests.support.sshhost serve DIR``) it serves until SIGTERM; SshHost starts it so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SshHost:
    """One SSH server process on 127.0.0.1 and the client files (key, known_hosts, ssh_config) to reach it."""

    def __init__(self, folder: str, alias: str) -> None:
        self.folder = os.path.abspath(folder)
        self.alias = alias
        self.home = os.path.join(self.folder, "home")
        self.config = os.path.join(self.folder, "ssh_config")
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self, timeout: float = 60) -> SshHost:
        os.makedirs(self.home, exist_ok=True)
        state = os.path.join(self.folder, "server.json")
        if os.path.exists(state):
            os.remove(state)
        with open(os.path.join(self.folder, "server.log"), "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-W", "ignore", "-m", "tests.support.sshhost", "serve", self.folder, self.alias],
                cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.time() + timeout
        while not os.path.exists(state):
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                with open(os.path.join(self.folder, "server.log")) as handle:
                    raise RuntimeError("the SSH test host did not start:\n" + handle.read()[-3000:])
            time.sleep(0.1)
        with open(state) as handle:
            self.port = json.load(handle)["port"]
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# -- the server (its own process: asyncssh's event loop stays out of pytest's) -----------------------------------


def _write_client_files(folder: str, alias: str, port: int, host_key, client_key) -> None:
    """The key pair, known_hosts and ssh_config a user would have for this host."""
    identity = os.path.join(folder, "id_ed25519")
    client_key.write_private_key(identity)
    os.chmod(identity, 0o600)
    client_key.write_public_key(identity + ".pub")
    with open(os.path.join(folder, "known_hosts"), "w") as handle:
        handle.write("%s %s\n" % (alias, host_key.export_public_key().decode().strip()))
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.geteuid()).pw_name
    with open(os.path.join(folder, "ssh_config"), "w") as handle:
        handle.write(
            "Host %s\n"
            "  HostName 127.0.0.1\n"
            "  Port %d\n"
            "  User %s\n"
            "  IdentityFile %s\n"
            "  IdentitiesOnly yes\n"
            "  HostKeyAlias %s\n"
            "  UserKnownHostsFile %s\n"
            "  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n" % (alias, port, user, identity, alias, os.path.join(folder, "known_hosts"))
        )


def _host_environment(home: str) -> dict[str, str]:
    user = __import__("pwd").getpwuid(os.geteuid()).pw_name
    return {"HOME": home, "PATH": SYSTEM_PATH, "USER": user, "LOGNAME": user, "SHELL": "/bin/sh", "LANG": "C.UTF-8"}


def serve(folder: str, alias: str) -> None:
    import asyncio

    import asyncssh

    home = os.path.join(folder, "home")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")

    async def run_command(process) -> None:
        local = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            process.command or "exec /bin/sh",
            cwd=home,
            env=_host_environment(home),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

        async def feed() -> None:
            # A command that exits without reading all its input (sshd ignores that too) closes the pipe: no error.
            try:
                while True:
                    data = await process.stdin.read(65536)
                    if not data:
                        break
                    local.stdin.write(data)
                    await local.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                local.stdin.close()

        async def copy(source, target) -> None:
            while True:
                data = await source.read(65536)
                if not data:
                    break
                target.write(data)
                await target.drain()

        feeding = asyncio.ensure_future(feed())
        await asyncio.gather(copy(local.stdout, process.stdout), copy(local.stderr, process.stderr))
        code = await local.wait()
        feeding.cancel()
        process.exit(code)

    class Sftp(asyncssh.SFTPServer):
        def __init__(self, chan):
            super().__init__(chan)
            os.chdir(home)  # relative paths from the client start in the host's HOME, as with OpenSSH

    async def main() -> None:
        server = await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()),
            process_factory=run_command,
            sftp_factory=Sftp,
            encoding=None,
            allow_scp=True,
        )
        port = server.sockets[0].getsockname()[1]
        _write_client_files(folder, alias, port, host_key, client_key)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        with open(os.path.join(folder, "server.json.tmp"), "w") as handle:
            json.dump({"port": port, "pid": os.getpid()}, handle)
        os.rename(os.path.join(folder, "server.json.tmp"), os.path.join(folder, "server.json"))
        await stop.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "serve":
        sys.exit("usage: python -m tests.support.sshhost serve FOLDER ALIAS")
    serve(sys.argv[2], sys.argv[3])
