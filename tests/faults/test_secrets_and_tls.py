"""Secrets and TLS on the wire, with recording proxies in front of the real servers.

* A bearer token read from a file (Prometheus) and a password read from the environment
  (Pushgateway) reach the servers on every request and never the logs, even at DEBUG, nor the
  error line when a server refuses them.
* TLS verification is on by default: against a self-signed HTTPS endpoint the run fails with
  one line naming the URL, unless ``tls.ca_file`` names the certificate.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.faults.conftest import Result, samples, snapshot
from tests.faults.proxy import Fault, FaultProxy
from tests.faults.world import TENANT, World, config_for

pytestmark = pytest.mark.e2e

TOKEN = "tok-5ecret-9f2c1a"  # noqa: S105 - a test value
PASSWORD = "pw-5ecret-77d0"  # noqa: S105


def _assert_no_secret(text: str) -> None:
    basic = base64.b64encode(f"anomaly:{PASSWORD}".encode()).decode()
    for secret in (TOKEN, PASSWORD, basic):
        assert secret not in text, f"secret {secret[:6]}... leaked"


def test_tokens_and_passwords_reach_the_servers_but_never_the_logs(
    world: World,
    tmp_path: Path,
    anomaly: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    monkeypatch.setenv("ANOMALY_TEST_PG_PASSWORD", PASSWORD)
    job = "faults_secrets"
    with (
        FaultProxy(world.stack.prometheus_url) as prom,
        FaultProxy(world.stack.pushgateway_url) as pg,
    ):
        config = config_for(
            tmp_path / "c.yaml",
            world,
            job=job,
            prometheus={"url": prom.url, "auth": {"bearer_token_file": str(tmp_path / "token")}},
            pushgateway={
                "url": pg.url,
                "auth": {"username": "anomaly", "password_env": "ANOMALY_TEST_PG_PASSWORD"},
            },
        )
        args = ("run", "--once", "--config", str(config), "--at", str(world.end))
        result = anomaly(*args, "--log-level", "DEBUG")
        assert result.code == 0, result.err[-3000:]
        assert "DEBUG" in result.err  # the most talkative level really was on
        _assert_no_secret(result.out + result.err)
        assert prom.seen and all(
            s.headers.get("Authorization") == f"Bearer {TOKEN}" for s in prom.seen
        )
        basic = "Basic " + base64.b64encode(f"anomaly:{PASSWORD}".encode()).decode()
        assert pg.seen and all(s.headers.get("Authorization") == basic for s in pg.seen)
        scored = samples(snapshot(world.stack.pushgateway_url, job), "anomaly_score")
        assert {lab[TENANT] for lab, _ in scored} == set(world.normal.tenants)

        # Refused credentials: one line naming the URL, still without the secret.
        prom.fault = lambda seen, n: Fault.status(401, b'{"status":"error","error":"bad token"}')
        refused = anomaly(*args, "--log-level", "DEBUG")
        refused.assert_fails_in_one_line(f"Prometheus at {prom.url} refused the credentials")
        prom.fault = lambda seen, n: None
        pg.fault = lambda seen, n: Fault.status(403, b"forbidden")
        refused_pg = anomaly(*args, "--log-level", "DEBUG")
        refused_pg.assert_fails_in_one_line(f"Pushgateway at {pg.url}", "(HTTP 403)")
    _assert_no_secret(refused.out + refused.err + refused_pg.out + refused_pg.err)


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI) and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def https_world(
    world: World, certificate: tuple[Path, Path]
) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    """HTTPS endpoints (self-signed) in front of the real Prometheus and Pushgateway."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with (
        FaultProxy(world.stack.prometheus_url, tls=context) as prom,
        FaultProxy(world.stack.pushgateway_url, tls=context) as pg,
    ):
        yield prom, pg


def test_tls_verification_is_on_by_default(
    world: World,
    tmp_path: Path,
    anomaly: Callable[..., Result],
    https_world: tuple[FaultProxy, FaultProxy],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A CA bundle in the environment (common in containers) must neither make the self-signed
    # endpoint trusted nor override `tls.ca_file` / `tls.verify: false`.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    prom, pg = https_world
    job = "faults_tls"
    fast = {"retries": 0}
    trusted = {"tls": {"ca_file": str(certificate[0])}}

    def run(prometheus: dict, pushgateway: dict) -> Result:
        config = config_for(
            tmp_path / "c.yaml",
            world,
            job=job,
            prometheus={"url": prom.url, **fast, **prometheus},
            pushgateway={"url": pg.url, **fast, **pushgateway},
        )
        return anomaly("run", "--once", "--config", str(config), "--at", str(world.end))

    reason = "TLS handshake or certificate verification failed"
    run({}, {}).assert_fails_in_one_line(f"cannot reach Prometheus at {prom.url}: {reason}")
    run(trusted, {}).assert_fails_in_one_line(f"cannot reach Pushgateway at {pg.url}: {reason}")
    assert snapshot(world.stack.pushgateway_url, job) == {}
    ok = run(trusted, trusted)
    assert ok.code == 0, ok.err[-3000:]
    scored = samples(snapshot(world.stack.pushgateway_url, job), "anomaly_score")
    assert {lab[TENANT] for lab, _ in scored} == set(world.normal.tenants)
    unverified = {"tls": {"verify": False}}  # an explicit opt-out works too
    assert run(unverified, unverified).code == 0
