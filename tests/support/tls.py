"""A test certificate authority and a server certificate for 127.0.0.1/localhost, made with the ``openssl`` CLI,
and a throwaway PostgreSQL server that accepts only TLS connections (``hostssl``) over TCP.

    ca = make_ca(folder)                       # {"cert": ..., "key": ...}
    server_cert = make_server_cert(ca, folder) # {"cert": ..., "key": ...}, SAN = IP:127.0.0.1, DNS:localhost
    server = tls_server(folder)                # started, ssl=on, hostssl only; server.tls = {"ca": ..., ...}
"""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.support.pgserver import PostgresServer


def openssl():
    """Path of the openssl program, or None."""
    return shutil.which("openssl")


def _run(args):
    result = subprocess.run(
        [openssl()] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), result.stdout))


def make_ca(folder, name="sigeti-test-ca"):
    """A self-signed CA (RSA 2048, 1 day)."""
    os.makedirs(folder, exist_ok=True)
    key, cert = os.path.join(folder, name + ".key"), os.path.join(folder, name + ".crt")
    _run(
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=%s" % name,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )
    return {"cert": cert, "key": key}


def make_server_cert(ca, folder, names=("127.0.0.1", "localhost"), name="server"):
    """A server certificate signed by ``ca`` with every name in subjectAltName (IP or DNS)."""
    key, csr, cert = (os.path.join(folder, name + ext) for ext in (".key", ".csr", ".crt"))
    san = ",".join(("IP:%s" % n) if n.replace(".", "").isdigit() else ("DNS:%s" % n) for n in names)
    ext = os.path.join(folder, name + ".ext")
    with open(ext, "w") as handle:
        handle.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n" % san)
    _run(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=%s" % names[0]])
    _run(
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca["cert"],
            "-CAkey",
            ca["key"],
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "1",
            "-extfile",
            ext,
        ]
    )
    return {"cert": cert, "key": key}


def tls_server(folder):
    """Start a throwaway server with ssl=on that refuses non-TLS TCP connections; ``server.tls`` holds the files.

    ``folder`` receives the CA; the server certificate and key live in the server's own folder.

    The key is owned by the server's user with mode 0600 (PostgreSQL refuses a key others can read).
    """
    folder = os.path.abspath(folder)
    ca = make_ca(os.path.join(folder, "ca"))
    server = PostgresServer()  # its own temp folder, readable by the server's user (a pytest tmp_path is not)
    server.init()
    certs = os.path.join(server.base_dir, "certs")
    os.makedirs(certs, exist_ok=True)
    cert = make_server_cert(ca, certs)
    for path in (certs, cert["cert"], cert["key"]):
        if server.user:
            os.chown(path, *server.user)
    os.chmod(certs, 0o700)
    os.chmod(cert["key"], 0o600)
    with open(os.path.join(server.data_dir, "postgresql.auto.conf"), "a") as handle:
        handle.write("ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" % (cert["cert"], cert["key"]))
    hba = os.path.join(server.data_dir, "pg_hba.conf")
    with open(hba) as handle:
        lines = handle.readlines()
    with open(hba, "w") as handle:
        for line in lines:
            # TCP only with TLS: every "host" line becomes "hostssl" (local socket lines stay)
            handle.write("hostssl" + line[4:] if line.startswith("host ") else line)
    server.start()
    server.wait_ready()
    server.tls = {"ca": ca["cert"], "server_cert": cert["cert"]}
    return server
