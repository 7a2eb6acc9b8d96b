"""A real OpenLDAP server for tests: Debian's slapd with its own config and data in a throwaway folder, on a free port.

It needs Debian's `slapd` package (scripts/test installs it). A system slapd the package may have started is neither
used nor touched: this one reads only its own slapd.conf, keeps its data in its own folder and listens on loopback at
a port of its own. Its entries are given as (uid, department, cost centre) rows under ou=people of SUFFIX.
"""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from dash_app.testing.servers import free_port

SLAPD, SLAPADD = "/usr/sbin/slapd", "/usr/sbin/slapadd"
SCHEMAS = Path("/etc/ldap/schema")
SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=people,{SUFFIX}"
ADMIN_DN, ADMIN_PASSWORD = f"cn=admin,{SUFFIX}", "admin-password"
# An account of the directory's own (not its rootdn), whose password a test may change while the server runs.
READER_DN, READER_PASSWORD = f"cn=reader,{SUFFIX}", "reader-password"
COST_CENTRE_ATTRIBUTE = "businessCategory"  # inetOrgPerson has no cost centre of its own; companies pick one
START_TIMEOUT = 15.0

_CONF = """\
include {schemas}/core.schema
include {schemas}/cosine.schema
include {schemas}/inetorgperson.schema
pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{admin}"
rootpw {password}
directory {folder}/data
index objectClass,uid eq
access to * by * read
"""
# With TLS: a self-signed certificate for 127.0.0.1, made for this server (its file is `cert_path`, to trust or not).
_TLS_CONF = """\
TLSCertificateFile {folder}/cert.pem
TLSCertificateKeyFile {folder}/key.pem
"""


def _ldif_value(name: str, value: str) -> str:
    """Return one LDIF attribute line, base64 when the value holds anything LDIF cannot write plainly."""
    if value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<")) and not value.endswith(" "):
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def people_ldif(people: Iterable[tuple[str, str | None, str | None]]) -> str:
    """Return the LDIF of the suffix, ou=people and one inetOrgPerson per (uid, department, cost centre) row."""
    blocks = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\n"
        + _ldif_value("userPassword", READER_PASSWORD),
    ]
    for number, (uid, department, cost_centre) in enumerate(people):
        lines = [
            f"dn: cn=person{number},{PEOPLE}",  # a plain DN: the uid may hold characters a DN would have to escape
            "objectClass: inetOrgPerson",
            f"cn: person{number}",
            f"sn: person{number}",
            _ldif_value("uid", uid),
        ]
        if department is not None:
            lines.append(_ldif_value("departmentNumber", department))
        if cost_centre is not None:
            lines.append(_ldif_value(COST_CENTRE_ATTRIBUTE, cost_centre))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


class LdapServer:
    """A real slapd on 127.0.0.1 and a free port holding `people`; stop() ends it, start() brings it back, close() removes it."""

    def __init__(self, people: Iterable[tuple[str, str | None, str | None]], port: int | None = None, tls: bool = False) -> None:
        self.port = port or free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        # ldaps:// on a second port when `tls`: its certificate is self-signed, trusted only where cert_path is.
        self.tls_port = free_port() if tls else None
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}" if tls else None
        self.folder = Path(tempfile.mkdtemp(prefix="dash-slapd-"))
        self.cert_path = self.folder / "cert.pem"
        self.conf = self.folder / "slapd.conf"
        self.log_path = self.folder / "slapd.log"
        self.process: subprocess.Popen[bytes] | None = None
        if not Path(SLAPD).exists():
            raise RuntimeError(f"no {SLAPD} (install Debian's slapd package; ./scripts/test does)")
        try:
            (self.folder / "data").mkdir()
            conf = _CONF.format(schemas=SCHEMAS, folder=self.folder, suffix=SUFFIX, admin=ADMIN_DN, password=ADMIN_PASSWORD)
            if tls:
                self._make_certificate()
                # Global TLS settings must come before the first database.
                conf = conf.replace("database mdb", _TLS_CONF.format(folder=self.folder) + "database mdb")
            self.conf.write_text(conf)
            ldif = self.folder / "people.ldif"
            ldif.write_text(people_ldif(people))
            done = subprocess.run(
                [SLAPADD, "-f", str(self.conf), "-l", str(ldif)], capture_output=True, text=True, timeout=START_TIMEOUT
            )
            if done.returncode != 0:
                raise RuntimeError(f"slapadd failed:\n{done.stdout}{done.stderr}")
            self.start()
        except BaseException:
            self.close()
            raise

    def _make_certificate(self) -> None:
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(self.folder / "key.pem"), "-out", str(self.cert_path), "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            capture_output=True, text=True, timeout=START_TIMEOUT,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"openssl could not make a certificate:\n{done.stderr}")

    def start(self) -> None:
        """Start slapd (again) on the same port and data; return once it accepts connections."""
        log = open(self.log_path, "ab")
        listen = f"ldap://127.0.0.1:{self.port}/" + (f" ldaps://127.0.0.1:{self.tls_port}/" if self.tls_port else "")
        # -d 0: in the foreground, our child, so stop() can wait for it; it reads only its own -f config.
        self.process = subprocess.Popen(
            [SLAPD, "-f", str(self.conf), "-h", listen, "-d", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                for port in (self.port, self.tls_port or self.port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"slapd did not listen on 127.0.0.1:{self.port}:\n{self.log_tail()}")

    def set_password(self, dn: str, password: str) -> None:
        """Give the entry `dn` a new userPassword, as the directory's administrator would."""
        import ldap3  # noqa: PLC0415 - only the tests that change a password need the client here

        with ldap3.Connection(self.url, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True) as connection:
            if not connection.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [password])]}):
                raise RuntimeError(f"cannot change the password of {dn}: {connection.result}")

    def add_referral(self, rdn: str, url: str) -> str:
        """Add a referral entry `rdn` under ou=people pointing to `url`; return its DN."""
        import ldap3  # noqa: PLC0415 - only the tests of referrals need the client here

        dn = f"{rdn},{PEOPLE}"
        attributes = {"ref": url, "ou": rdn.partition("=")[2]}
        with ldap3.Connection(self.url, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True) as connection:
            if not connection.add(dn, ["referral", "extensibleObject"], attributes):
                raise RuntimeError(f"cannot add the referral {dn}: {connection.result}")
        return dn

    def delete(self, dn: str) -> None:
        """Delete the entry `dn` (with the ManageDsaIT control, so a referral is deleted, not followed)."""
        import ldap3  # noqa: PLC0415 - as above

        with ldap3.Connection(self.url, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True) as connection:
            if not connection.delete(dn, controls=[("2.16.840.1.113730.3.4.2", False, None)]):
                raise RuntimeError(f"cannot delete {dn}: {connection.result}")

    def stop(self) -> None:
        """Stop slapd (SIGTERM, then SIGKILL after 10 s) and wait for it; its data stays for start()."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop slapd and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """Return the last `lines` lines slapd printed."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no slapd log)"

    def __enter__(self) -> LdapServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.close()
