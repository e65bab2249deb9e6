"""A real nginx TLS terminator for tests: certificates made here, the repo's configuration
rendered and nginx started on loopback in front of the live server."""
import datetime
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONF_TEMPLATE = Path(__file__).resolve().parent.parent / "docker" / "nginx" / "scp.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, public_key, signing_key, *, ca=False, san=None, usage=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write(path, *objects):
    data = b""
    for obj in objects:
        if isinstance(obj, x509.Certificate):
            data += obj.public_bytes(serialization.Encoding.PEM)
        else:
            data += obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(data)
    return str(path)


def make_pki(directory):
    """A CA, a server certificate for 127.0.0.1, and a partner client certificate."""
    import ipaddress

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(_name("SCP test CA"), _name("SCP test CA"), ca_key.public_key(), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert(_name("127.0.0.1"), ca.subject, server_key.public_key(), ca_key,
                   san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert(_name("acme-health partner"), ca.subject, client_key.public_key(), ca_key,
                   usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return {
        "ca": _write(directory / "ca.pem", ca),
        "server_cert": _write(directory / "server.pem", server),
        "server_key": _write(directory / "server.key", server_key),
        "client_cert": _write(directory / "client.pem", client),
        "client_key": _write(directory / "client.key", client_key),
        "client_sha256": client.fingerprint(hashes.SHA256()).hex(),
    }


def _port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Nginx:
    def __init__(self, directory, *, upstream, tls_port, plain_port):
        self.directory, self.tls_port, self.plain_port = directory, tls_port, plain_port
        self.pki = make_pki(directory)
        server_conf = CONF_TEMPLATE.read_text()
        for name, value in {
            "SCP_TLS_PORT": tls_port, "SCP_PLAIN_PORT": plain_port, "SCP_UPSTREAM": upstream,
            "SCP_TLS_CERT": self.pki["server_cert"], "SCP_TLS_KEY": self.pki["server_key"],
            "SCP_CLIENT_CA": self.pki["ca"],
        }.items():
            server_conf = server_conf.replace("${%s}" % name, str(value))
        (directory / "scp.conf").write_text(server_conf)
        # The main file is the test's own (the deployment uses the image's): runs in the
        # foreground under the test, with its temp files in the test's folder.
        (directory / "nginx.conf").write_text(f"""
worker_processes 1;
user root;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/scp.conf;
}}
""")
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [NGINX, "-c", str(self.directory / "nginx.conf"), "-p", str(self.directory), "-g", "daemon off;"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
        )
        deadline = time.monotonic() + 15
        while not (_port_open(self.tls_port) and _port_open(self.plain_port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.process.stdout.read().decode() if self.process.poll() is not None else ""
                raise RuntimeError(f"nginx did not start: {output}\n{(self.directory / 'error.log').read_text() if (self.directory / 'error.log').exists() else ''}")
            time.sleep(0.1)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.process and self.process.stdout:
            self.process.stdout.close()
