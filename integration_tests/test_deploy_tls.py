"""Deployment surface: HTTPS with --ssl-certfile/--ssl-keyfile(-password), HTTP/2 by ALPN, WebSocket
over TLS, client certificates (--ssl-ca-certs, --ssl-cert-reqs), the ASGI TLS extension
(scope["extensions"]["tls"], asgiref specs/tls.rst); and the other options over HTTP/2.

The certificates are made with the openssl command line (a test CA, a server certificate for
127.0.0.1/localhost and client certificates signed by the CA, plus one signed by another CA).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from websockets.sync.client import connect

from gateway_harness import APPS_DIR, TESTAPP_HEADERS, RawConnection
from test_deploy_options import Launched, Launcher, launcher  # noqa: F401 (fixture)
from test_ws_protocol import OP_PING, read_close, read_data_frame, read_frame, upgrade_request

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")

PASSWORD = "correct horse battery staple"


def openssl(directory: Path, *args: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(args)}:\n{result.stderr}"


def make_ca(directory: Path, name: str) -> None:
    openssl(
        directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
        "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )


def make_leaf(directory: Path, name: str, ca: str, extensions: str, subject: str | None = None) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject or f"/CN={name}")
    openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_leaf(d, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    make_leaf(d, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n")
    # For the TLS extension's client_cert_name: several RDNs, and a value that RFC 4514 escapes.
    make_leaf(d, "client-dn", "ca", "extendedKeyUsage=clientAuth\n", subject="/C=US/O=Example, Inc./OU=Ops/CN=client dn")
    openssl(d, "rsa", "-in", "server.key", "-aes256", "-traditional", "-passout", f"pass:{PASSWORD}",
            "-out", "server-legacy-encrypted.key")
    openssl(d, "pkcs8", "-topk8", "-in", "server.key", "-v2", "aes256", "-passout", f"pass:{PASSWORD}",
            "-out", "server-pkcs8-encrypted.key")
    openssl(d, "pkcs8", "-topk8", "-in", "server.key", "-scrypt", "-passout", f"pass:{PASSWORD}",
            "-out", "server-pkcs8-scrypt.key")
    (d / "combined.pem").write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    assert "Proc-Type: 4,ENCRYPTED" in (d / "server-legacy-encrypted.key").read_text()
    assert "ENCRYPTED PRIVATE KEY" in (d / "server-pkcs8-encrypted.key").read_text()
    return d


def context(pki: Path, client_cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client_cert:
        ctx.load_cert_chain(str(pki / f"{client_cert}.pem"), str(pki / f"{client_cert}.key"))
    return ctx


def https_client(pki: Path, http2: bool = True, client_cert: str | None = None) -> httpx.Client:
    return httpx.Client(http2=http2, verify=context(pki, client_cert), trust_env=False, timeout=10)


def tls_args(pki: Path) -> list[str]:
    return ["--ssl-certfile", str(pki / "server.pem"), "--ssl-keyfile", str(pki / "server.key")]


@pytest.fixture(scope="module")
def module_launcher(gateway_binary: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    pool = Launcher(tmp_path_factory.mktemp("tls-gateway"))
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls-static")
    (directory / "file.txt").write_bytes(b"static over TLS\n")
    return directory


@pytest.fixture(scope="module")
def tls_server(module_launcher: Launcher, pki: Path, static_dir: Path) -> Launched:
    return module_launcher.start(
        "deploy_app:app", "--app-dir", str(APPS_DIR), "--port", "0", *tls_args(pki),
        "--header", "X-A:1", "--static", f"/static={static_dir}", "--limit-request-body", "50",
    )


def https_url(server: Launched, path: str) -> str:
    # The certificate is for 127.0.0.1 and localhost.
    assert server.url.startswith("https://127.0.0.1:"), server.where
    return f"{server.url}{path}"


# --- HTTPS, HTTP/2 and HTTP/1.1 ---------------------------------------------------------------


def test_http2_over_tls(tls_server: Launched, pki: Path) -> None:
    with https_client(pki) as c:
        response = c.get(https_url(tls_server, "/h2?x=1"))
        assert response.http_version == "HTTP/2"
        scope = response.json()["scope"]
        assert scope["http_version"] == "2"
        assert scope["scheme"] == "https"
        assert scope["path"] == "/h2" and scope["query_string"] == "x=1"
        assert scope["server"] == ["127.0.0.1", tls_server.port]
        assert scope["client"][0] == "127.0.0.1"
        # A request body over HTTP/2 (streams, flow control) comes back whole.
        body = b"0123456789" * 5  # at the --limit-request-body of this server
        echoed = c.post(https_url(tls_server, "/_/echo"), content=body)
        assert echoed.http_version == "HTTP/2"
        assert echoed.content == body


def test_http2_over_tls_keeps_the_apps_field_order(tls_server: Launched, pki: Path) -> None:
    """www.rst: "Order must be preserved in the HTTP response", over HTTP/2 and TLS as over HTTP/1.1
    (testapp's /_/headers: names out of order, set-cookie and x-dup twice, apart), five responses
    on one connection (the client's HPACK decoder follows the gateway's re-encoded blocks)."""
    expected = TESTAPP_HEADERS
    names = {name for name, _ in expected}
    with https_client(pki) as c:
        for _ in range(5):
            response = c.get(https_url(tls_server, "/_/headers"))
            assert response.http_version == "HTTP/2" and response.content == b"headers"
            assert [(n, v) for n, v in response.headers.raw if n in names] == expected
            assert not any(n.startswith(b"asgi-gateway") for n, _ in response.headers.raw)
            h2_names = [n for n, _ in response.headers.raw]
    # The whole head in HTTP/1.1's order too: the gateway's server and date, --header's X-A, then
    # the app's fields.
    with https_client(pki, http2=False) as c:
        response = c.get(https_url(tls_server, "/_/headers"))
        assert response.http_version == "HTTP/1.1"
        h1_names = [n for n, _ in response.headers.raw]
    assert h2_names == h1_names == [b"server", b"date", b"x-a"] + [n for n, _ in expected]


def test_http2_many_streams_on_one_connection(tls_server: Launched, pki: Path) -> None:
    # Concurrent streams from one event loop: httpcore's sync HTTP/2 connection shared by threads
    # can send a later stream's HEADERS before an earlier one's (its stream ids are taken and sent
    # under different locks), which RFC 9113 §5.1.1 makes a connection error: the server's GOAWAY
    # PROTOCOL_ERROR failed this test once in CI.
    paths = [f"/stream-{i}" for i in range(24)]

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(http2=True, verify=context(pki, None), trust_env=False, timeout=10) as c:
            await c.get(https_url(tls_server, "/warm-up"))
            return list(await asyncio.gather(*(c.get(https_url(tls_server, p)) for p in paths)))

    results = asyncio.run(main())
    assert [r.json()["scope"]["path"] for r in results] == paths
    assert {r.http_version for r in results} == {"HTTP/2"}


def test_http11_over_tls(tls_server: Launched, pki: Path) -> None:
    with https_client(pki, http2=False) as c:
        response = c.get(https_url(tls_server, "/h1"))
    assert response.http_version == "HTTP/1.1"
    scope = response.json()["scope"]
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "https"


def test_the_listening_line_says_https(tls_server: Launched) -> None:
    assert tls_server.where.startswith("https://"), tls_server.where


# --- the other options, over HTTP/2 as over HTTP/1.1 ---------------------------------------------


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "h1-tls"])
def test_default_server_date_and_extra_headers(tls_server: Launched, pki: Path, http2: bool) -> None:
    with https_client(pki, http2=http2) as c:
        response = c.get(https_url(tls_server, "/headers"))
    assert response.headers.get("x-a") == "1"
    assert response.headers.get("server") == "asgi-gateway"
    assert "date" in response.headers


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "h1-tls"])
def test_static_files(tls_server: Launched, pki: Path, static_dir: Path, http2: bool) -> None:
    with https_client(pki, http2=http2) as c:
        response = c.get(https_url(tls_server, "/static/file.txt"))
        ranged = c.get(https_url(tls_server, "/static/file.txt"), headers={"Range": "bytes=0-5"})
    assert response.status_code == 200
    assert response.content == (static_dir / "file.txt").read_bytes()
    assert response.headers.get("etag")
    assert ranged.status_code == 206 and ranged.content == b"static"


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "h1-tls"])
def test_limit_request_body(tls_server: Launched, pki: Path, http2: bool) -> None:
    path = f"/too-big-{uuid.uuid4().hex[:8]}"
    with https_client(pki, http2=http2) as c:
        response = c.post(https_url(tls_server, path), content=b"x" * 51)
        seen = c.get(https_url(tls_server, "/_/seen")).json()
    assert response.status_code == 413
    assert path not in seen


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "h1-tls"])
def test_proxy_headers(tls_server: Launched, pki: Path, http2: bool) -> None:
    # The client (127.0.0.1) is a trusted proxy by default.
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"}
    with https_client(pki, http2=http2) as c:
        scope = c.get(https_url(tls_server, "/proxied"), headers=headers).json()["scope"]
    assert scope["client"] == ["203.0.113.9", 0]
    assert scope["scheme"] == "http"


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "h1-tls"])
def test_access_log(tls_server: Launched, pki: Path, http2: bool) -> None:
    path = f"/logged-{uuid.uuid4().hex}"
    with https_client(pki, http2=http2) as c:
        assert c.get(https_url(tls_server, path)).status_code == 200
    deadline = time.monotonic() + 3
    while path not in tls_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path in tls_server.log()


def test_root_path_over_http2(module_launcher: Launcher, pki: Path) -> None:
    server = module_launcher.start(*("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0"), *tls_args(pki),
                                   "--root-path", "/api")
    with https_client(pki) as c:
        scope = c.get(https_url(server, "/items")).json()["scope"]
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items"


# --- WebSocket over TLS -----------------------------------------------------------------------


def test_websocket_over_tls(module_launcher: Launcher, pki: Path) -> None:
    server = module_launcher.start("ws_app:app", "--app-dir", str(APPS_DIR), "--port", "0", *tls_args(pki))
    with connect(f"wss://127.0.0.1:{server.port}/scope", ssl=context(pki), open_timeout=10, proxy=None) as ws:
        scope = json.loads(ws.recv(timeout=10))["scope"]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "wss"
    assert scope["http_version"] == "1.1"


# --- certificate and key files ----------------------------------------------------------------


def test_key_in_the_certificate_file(launcher: Launcher, pki: Path) -> None:
    server = launcher.start(*("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0"),
                            "--ssl-certfile", str(pki / "combined.pem"))
    with https_client(pki) as c:
        assert c.get(https_url(server, "/combined")).json()["scope"]["scheme"] == "https"


@pytest.mark.parametrize("key", ["server-legacy-encrypted.key", "server-pkcs8-encrypted.key"], ids=["legacy", "pkcs8"])
def test_ssl_keyfile_password(launcher: Launcher, pki: Path, key: str) -> None:
    """A legacy encrypted PEM key, and an encrypted PKCS#8 one (PBES2: what OpenSSL 3 writes by
    default, and uvicorn reads through OpenSSL)."""
    server = launcher.start(
        *("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0"),
        "--ssl-certfile", str(pki / "server.pem"), "--ssl-keyfile", str(pki / key),
        "--ssl-keyfile-password", PASSWORD,
    )
    with https_client(pki) as c:
        assert c.get(https_url(server, "/encrypted-key")).status_code == 200
    assert PASSWORD not in server.log()


@pytest.mark.parametrize(
    "key, password, expected",
    [
        ("server-legacy-encrypted.key", "wrong password", "wrong --ssl-keyfile-password"),
        ("server-legacy-encrypted.key", None, "--ssl-keyfile-password"),
        ("server-pkcs8-encrypted.key", "wrong password", "wrong --ssl-keyfile-password"),
        ("server-pkcs8-encrypted.key", None, "--ssl-keyfile-password"),
        ("server-pkcs8-scrypt.key", PASSWORD, "scrypt, which is not supported"),
    ],
    ids=["wrong-password", "no-password", "pkcs8-wrong-password", "pkcs8-no-password", "pkcs8-scrypt"],
)
def test_ssl_keyfile_that_cannot_be_used(launcher: Launcher, pki: Path, key: str, password: str | None, expected: str) -> None:
    args = ["testapp:app", "--app-dir", str(APPS_DIR), "--port", "0", "--ssl-certfile", str(pki / "server.pem"),
            "--ssl-keyfile", str(pki / key)]
    if password:
        args += ["--ssl-keyfile-password", password]
    result = launcher.run(*args)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert "listening on" not in result.stderr
    if password:
        assert password not in result.stderr


# --- client certificates ----------------------------------------------------------------------


def start_mtls(launcher: Launcher, pki: Path, reqs: str) -> Launched:
    return launcher.start(*("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0"), *tls_args(pki),
                          "--ssl-ca-certs", str(pki / "ca.pem"), "--ssl-cert-reqs", reqs)


def request_with(server: Launched, pki: Path, client_cert: str | None, http2: bool = True) -> Any:
    """The response's status, or the exception the request raised."""
    try:
        with https_client(pki, http2=http2, client_cert=client_cert) as c:
            return c.get(https_url(server, "/mtls")).status_code
    except (httpx.TransportError, ssl.SSLError) as exc:
        return exc


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "h1-tls"])
def test_ssl_cert_reqs_2_requires_a_client_certificate(launcher: Launcher, pki: Path, http2: bool) -> None:
    server = start_mtls(launcher, pki, "2")
    assert isinstance(request_with(server, pki, None, http2), Exception), "served a client without a certificate"
    assert isinstance(request_with(server, pki, "stranger", http2), Exception), "served a certificate of another CA"
    assert request_with(server, pki, "client", http2) == 200


def test_ssl_cert_reqs_1_makes_the_certificate_optional(launcher: Launcher, pki: Path) -> None:
    server = start_mtls(launcher, pki, "1")
    assert request_with(server, pki, None) == 200
    assert request_with(server, pki, "client") == 200
    assert isinstance(request_with(server, pki, "stranger"), Exception), "accepted a certificate of another CA"


def test_ssl_cert_reqs_0_does_not_ask(launcher: Launcher, pki: Path) -> None:
    server = start_mtls(launcher, pki, "0")
    assert request_with(server, pki, None) == 200
    assert request_with(server, pki, "stranger") == 200  # not asked for, so not checked
    with https_client(pki, client_cert="client") as c:  # ... nor sent
        tls = c.get(https_url(server, "/not-asked")).json()["scope"]["extensions"]["tls"]
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None


# --- the TLS extension: scope["extensions"]["tls"] --------------------------------------------

TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
TLS_KEYS = {"server_cert", "client_cert_chain", "client_cert_name", "client_cert_error", "tls_version", "cipher_suite"}


def der(pem_text: str) -> bytes:
    """One PEM certificate as DER: compares certificates whatever their PEM line breaks."""
    return ssl.PEM_cert_to_DER_cert(pem_text)


def negotiated(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[int, int]:
    """The TLS version and cipher suite numbers the client negotiated."""
    suite_ids = {c["name"]: c["id"] & 0xFFFF for c in ssl_object.context.get_ciphers()}
    cipher = ssl_object.cipher()
    assert cipher is not None
    return TLS_VERSIONS[ssl_object.version() or ""], suite_ids[cipher[0]]


def rfc2253_subject(pki: Path, name: str) -> str:
    """openssl's RFC 2253 rendering of a certificate's subject (RFC 4514's, for these attributes)."""
    result = subprocess.run(["openssl", "x509", "-in", str(pki / f"{name}.pem"), "-noout", "-subject", "-nameopt",
                             "RFC2253"], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip().removeprefix("subject=")


def tls_extension_of(client: httpx.Client, url: str) -> tuple[dict[str, Any], dict[str, Any], tuple[int, int]]:
    """The scope's extensions["tls"] (values, and leaf type names) and what the client negotiated."""
    response = client.get(url)
    assert response.status_code == 200
    data = response.json()
    assert data["scope"]["scheme"] == "https"
    ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    return data["scope"]["extensions"]["tls"], data["types"]["extensions"]["tls"], negotiated(ssl_object)


def check_tls_extension(tls: dict[str, Any], types: dict[str, Any], client_negotiated: tuple[int, int], pki: Path) -> None:
    assert set(tls) == TLS_KEYS
    assert der(tls["server_cert"]) == der((pki / "server.pem").read_text())
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert (tls["tls_version"], tls["cipher_suite"]) == client_negotiated
    assert types["tls_version"] == types["cipher_suite"] == "int" and tls["cipher_suite"] > 0
    assert tls["client_cert_error"] is None


@pytest.mark.parametrize("http2, max_version", [(True, None), (False, None), (True, ssl.TLSVersion.TLSv1_2)],
                         ids=["h2", "h1-tls", "h2-tls1.2"])
def test_tls_extension(tls_server: Launched, pki: Path, http2: bool, max_version: ssl.TLSVersion | None) -> None:
    ctx = context(pki)
    if max_version is not None:
        ctx.maximum_version = max_version
    with httpx.Client(http2=http2, verify=ctx, trust_env=False, timeout=10) as c:
        for _ in range(2):  # two requests (streams) of one connection
            tls, types, client_negotiated = tls_extension_of(c, https_url(tls_server, "/tls"))
            check_tls_extension(tls, types, client_negotiated, pki)
            assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    if max_version is not None:
        assert tls["tls_version"] == 0x0303


@pytest.fixture(scope="module")
def mtls_server(module_launcher: Launcher, pki: Path) -> Launched:
    return start_mtls(module_launcher, pki, "2")


def client_without_trust_store(pki: Path, http2: bool) -> httpx.Client:
    """A client with the client-dn certificate that does not verify the server: with no CA in its
    store, OpenSSL sends the client's certificate alone."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(pki / "client-dn.pem"), str(pki / "client-dn.key"))
    return httpx.Client(http2=http2, verify=ctx, trust_env=False, timeout=10)


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "h1-tls"])
def test_tls_extension_with_a_client_certificate(mtls_server: Launched, pki: Path, http2: bool) -> None:
    expected_name = rfc2253_subject(pki, "client-dn")
    assert expected_name == "CN=client dn,OU=Ops,O=Example\\, Inc.,C=US"
    client_der, ca_der = der((pki / "client-dn.pem").read_text()), der((pki / "ca.pem").read_text())
    # OpenSSL completes the chain the client sends from its trust store (ca.pem): [client, CA]; a
    # client with no trust store sends its certificate alone.
    for client, chain in ((https_client(pki, http2=http2, client_cert="client-dn"), [client_der, ca_der]),
                          (client_without_trust_store(pki, http2), [client_der])):
        with client as c:
            tls, types, client_negotiated = tls_extension_of(c, https_url(mtls_server, "/mtls-scope"))
        check_tls_extension(tls, types, client_negotiated, pki)
        assert [der(p) for p in tls["client_cert_chain"]] == chain
        assert types["client_cert_chain"] == ["str"] * len(chain)
        assert tls["client_cert_name"] == expected_name


def test_tls_extension_over_wss(module_launcher: Launcher, pki: Path) -> None:
    server = module_launcher.start("ws_app:app", "--app-dir", str(APPS_DIR), "--port", "0", *tls_args(pki),
                                   "--ssl-ca-certs", str(pki / "ca.pem"), "--ssl-cert-reqs", "1")
    for client_cert in (None, "client-dn"):
        with connect(f"wss://127.0.0.1:{server.port}/scope", ssl=context(pki, client_cert), open_timeout=10,
                     proxy=None) as ws:
            data = json.loads(ws.recv(timeout=10))
            client_negotiated = negotiated(ws.socket)  # type: ignore[arg-type]
        assert data["scope"]["scheme"] == "wss"
        tls = data["scope"]["extensions"]["tls"]
        check_tls_extension(tls, data["types"]["extensions"]["tls"], client_negotiated, pki)
        if client_cert is None:
            assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
        else:
            assert der(tls["client_cert_chain"][0]) == der((pki / "client-dn.pem").read_text())
            assert tls["client_cert_name"] == rfc2253_subject(pki, "client-dn")


def test_no_tls_extension_without_tls(module_launcher: Launcher) -> None:
    server = module_launcher.start("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0", "--http2-cleartext")
    url = f"{server.url}/plain"
    assert url.startswith("http://")
    with httpx.Client(trust_env=False, timeout=10) as h1, httpx.Client(http1=False, http2=True, trust_env=False,
                                                                       timeout=10) as h2c:
        for client, headers, version in ((h1, {}, "HTTP/1.1"), (h2c, {}, "HTTP/2"),
                                         # A trusted proxy's "https" does not make the connection TLS.
                                         (h1, {"X-Forwarded-Proto": "https"}, "HTTP/1.1")):
            response = client.get(url, headers=headers)
            assert response.http_version == version
            scope = response.json()["scope"]
            assert scope["scheme"] == headers.get("X-Forwarded-Proto", "http")
            assert "tls" not in scope["extensions"]


def test_tls_options_without_a_certificate_are_said_to_do_nothing(launcher: Launcher, pki: Path) -> None:
    """--ssl-ca-certs and --ssl-cert-reqs without --ssl-certfile: plain HTTP, as uvicorn, but said
    (a deployment that forgot the certificate would otherwise lose its client-certificate check
    without a word)."""
    server = launcher.start(*("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0"),
                            "--ssl-ca-certs", str(pki / "ca.pem"), "--ssl-cert-reqs", "2")
    assert server.url.startswith("http://")
    assert "--ssl-ca-certs, --ssl-cert-reqs: no effect without --ssl-certfile; serving plain HTTP" in server.log()


def test_wss_ping_timeout_sends_its_close_frame(launcher: Launcher, pki: Path) -> None:
    """README: a pong later than --ws-ping-timeout closes with 1011. Over TLS the close frame is
    written by the connection's drain goroutine, and closing the connection at once dropped it:
    the client saw the connection end without a close frame (1006)."""
    server = launcher.start(*("ws_app:app", "--app-dir", str(APPS_DIR), "--port", "0"), *tls_args(pki),
                            "--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5")
    port = int(server.url.rsplit(":", 1)[1])
    sock = context(pki).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                    server_hostname="localhost")
    with RawConnection(sock) as conn:
        request, _ = upgrade_request("/hold")
        conn.send(request)
        assert conn.read_head().status == 101
        assert read_data_frame(conn).payload == b"ready"
        assert read_frame(conn).opcode == OP_PING  # never answered
        close = read_close(conn, reply=False)
        assert close.close_code == 1011 and close.payload[2:] == b"keepalive ping timeout"
        assert conn.peer_closed(timeout=5)


def assert_blob_over_tls(server: Launched, pki: Path, request: bytes, size: int) -> None:
    """Sends request (asking for /_/blob of size bytes) on a new TLS connection and checks that the
    blob arrives whole (length and SHA-256)."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    sock = context(pki).wrap_socket(raw, server_hostname="localhost")
    sock.sendall(request)
    conn = RawConnection(sock)
    response = conn.read_response()
    conn.close()
    assert response.status == 200
    assert len(response.body) == size, f"{len(response.body)} of {size} bytes"
    assert hashlib.sha256(response.body).hexdigest() == response.header("x-sha256")


def test_https_response_whole_when_the_app_leaves_the_body_unread(module_launcher: Launcher, pki: Path) -> None:
    """An app that answers without reading a large request body: over TLS too the connection closes
    in stages (close_notify and the TCP half-close, then the rest of the body read and dropped), so
    that the unread bytes do not make the kernel reset the connection under the response (95,025
    of 200,000 bytes arrived, then a reset, every time)."""
    server = module_launcher.start("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0", *tls_args(pki))
    for seed in range(3):
        body = b"z" * 300_000
        request = (b"POST /_/blob?size=200000&seed=%d HTTP/1.1\r\nHost: localhost\r\n"
                   b"Content-Length: %d\r\n\r\n" % (seed, len(body)) + body)
        assert_blob_over_tls(server, pki, request, 200_000)


def test_https_closing_with_pipelined_input_unread_keeps_the_response(module_launcher: Launcher, pki: Path) -> None:
    """Over TLS as over TCP: a request with Connection: close and bytes pipelined behind it, which
    the gateway does not read; the close is a lingering one (it looks for unread input in the socket
    under the TLS layer), so no reset takes the end of the 5 MB response."""
    server = module_launcher.start("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0", *tls_args(pki))
    for seed in range(3):
        request = (b"GET /_/blob?size=5000000&seed=%d HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                   b"POST /_/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 150000\r\n\r\n" % seed
                   + b"y" * 150_000)
        assert_blob_over_tls(server, pki, request, 5_000_000)
