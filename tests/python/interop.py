#!/usr/bin/env python3
"""Scopegate against a client implementation it did not write: requests-oauth2client (with
jwskate as its JOSE library) speaks to the token service and the example API.

Driven by tests/tests/python_interop.rs, usable by hand:

    python interop.py dpop-client-credentials --issuer URL --client-id ID --client-secret S \
        --api URL/me
    python interop.py dpop-refresh --issuer URL --client-id ID --redirect-uri URI \
        --username U --password P --api URL/me
    python interop.py private-key-jwt --issuer URL --client-id ID --private-jwk FILE \
        [--other-client-id ID] [--introspecting-api ID --api-private-jwk FILE]

Each subcommand runs one flow through the library's own API (discovery, DPoPKey/DPoPToken,
PrivateKeyJwt, revocation, introspection), then probes with hand-made requests what the
servers must refuse. Private JWK files hold one JSON object with `d`, `kid` and `alg`.
It prints one JSON object on stdout: what it saw, and `checks`, each expectation with the value
seen. Exit status: 0 when every check held, 1 when one did not (named on stderr), 2 for bad
arguments, 3 when the flow itself broke (an exception, with where it happened on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin

import jwskate
import requests
from binapy import BinaPy
from requests_oauth2client import (
    DPoPKey,
    DPoPToken,
    OAuth2Client,
    PrivateKeyJwt,
)
from requests_oauth2client.dpop import InvalidUseDPoPNonceResponse
from requests_oauth2client.exceptions import EndpointError

TIMEOUT = 10
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Session(requests.Session):
    """A session with a timeout on every request that records each exchange."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[requests.Response] = []
        self.trust_env = False  # loopback only: no proxy from the environment
        self.hooks["response"].append(self._record)

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(*args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return super().send(request, **kwargs)

    def _record(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self.exchanges.append(response)

    def last(self, method: str, url: str) -> requests.Response:
        """The last exchange of `method url` (query ignored)."""
        for response in reversed(self.exchanges):
            request = response.request
            if request.method == method and str(request.url).split("?")[0] == url:
                return response
        raise LookupError(f"no {method} {url} was sent")


class Report:
    """What a flow saw, and its checks."""

    def __init__(self, flow: str) -> None:
        self.data: dict[str, Any] = {"flow": flow, "library": library_versions()}
        self.checks: list[dict[str, Any]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def check(self, name: str, ok: bool, expected: Any, actual: Any) -> bool:
        self.checks.append({"name": name, "ok": bool(ok), "expected": expected, "actual": actual})
        return bool(ok)

    def failed(self) -> list[dict[str, Any]]:
        return [check for check in self.checks if not check["ok"]]

    def emit(self) -> int:
        self.data["checks"] = self.checks
        print(json.dumps(self.data, indent=2, sort_keys=True))
        failed = self.failed()
        for check in failed:
            name, expected, actual = check["name"], check["expected"], check["actual"]
            print(f"check failed: {name}: expected {expected!r}, got {actual!r}", file=sys.stderr)
        return 1 if failed else 0


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("requests-oauth2client", "jwskate", "requests")}


def answer(response: requests.Response) -> dict[str, Any]:
    """Status, challenge and body of an answer, for the report."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:500]
    seen: dict[str, Any] = {"status": response.status_code, "body": body}
    challenge = response.headers.get("WWW-Authenticate")
    if challenge is not None:
        seen["www_authenticate"] = challenge
    return seen


def error_code(response: requests.Response) -> str | None:
    """The RFC 6749 `error` of a JSON answer."""
    try:
        return response.json().get("error")
    except ValueError:
        return None


def ath(access_token: str) -> str:
    """RFC 9449 §4.2: the access token's hash, as jwskate computes it for the library."""
    return BinaPy(access_token).to("sha256").to("b64u").decode()


def oidc_configuration(issuer: str) -> str:
    return f"{issuer}/.well-known/openid-configuration"


def discover(args: argparse.Namespace, session: Session, **kwargs: Any) -> OAuth2Client:
    """The client from the issuer's discovery document (issuer compared exactly by the library;
    `testing` only lifts its https-only rule, for loopback)."""
    return OAuth2Client.from_discovery_endpoint(
        issuer=args.issuer, session=session, testing=True, **kwargs
    )


def call_api(session: Session, url: str, token: DPoPToken) -> requests.Response:
    """`GET url` with the library's DPoP auth: `Authorization: DPoP`, a fresh proof with `ath`."""
    try:
        return session.get(url, auth=token)
    except InvalidUseDPoPNonceResponse as exc:
        # The library takes any 401 whose challenge starts with "DPoP" for a nonce request, and
        # raises when it holds no DPoP-Nonce: the refusal itself is what the report needs.
        return exc.response


def probe_api(report: Report, session: Session, url: str, token: DPoPToken) -> None:
    """Requests the API must refuse (RFC 9449 §7), made by hand around a good one."""
    sent = session.last("GET", url).request
    good_proof = sent.headers["DPoP"]
    access_token = token.access_token
    other_key = DPoPKey.generate()
    key = token.dpop_key
    origin = url.split("/", 3)
    other_url = f"{origin[0]}//{origin[2]}/public"
    probes = {
        # §11.1: a proof is accepted once.
        "replayed_proof": {"Authorization": f"DPoP {access_token}", "DPoP": good_proof},
        "no_proof": {"Authorization": f"DPoP {access_token}"},
        # §7.2: a bound token is no bearer token.
        "as_bearer": {"Authorization": f"Bearer {access_token}"},
        "proof_by_another_key": {
            "Authorization": f"DPoP {access_token}",
            "DPoP": str(other_key.proof(htm="GET", htu=url, ath=ath(access_token))),
        },
        "proof_for_another_method": {
            "Authorization": f"DPoP {access_token}",
            "DPoP": str(key.proof(htm="POST", htu=url, ath=ath(access_token))),
        },
        "proof_for_another_url": {
            "Authorization": f"DPoP {access_token}",
            "DPoP": str(key.proof(htm="GET", htu=other_url, ath=ath(access_token))),
        },
        "proof_without_ath": {
            "Authorization": f"DPoP {access_token}",
            "DPoP": str(key.proof(htm="GET", htu=url)),
        },
        "proof_for_another_token": {
            "Authorization": f"DPoP {access_token}",
            "DPoP": str(key.proof(htm="GET", htu=url, ath=ath(access_token + "x"))),
        },
    }
    seen = {}
    for name, headers in probes.items():
        response = session.get(url, headers=headers)
        seen[name] = answer(response)
        report.check(f"api refuses {name}", response.status_code == 401, 401, response.status_code)
    report["api_probes"] = seen


def token_summary(token: Any) -> dict[str, Any]:
    summary = {
        "class": type(token).__name__,
        "token_type": token.token_type,
        "access_token": token.access_token,
        "refresh_token": token.refresh_token,
        "scope": token.scope,
    }
    if isinstance(token, DPoPToken):
        summary["dpop_jkt"] = token.dpop_key.dpop_jkt
        summary["dpop_public_jwk"] = dict(token.dpop_key.public_jwk)
        summary["dpop_alg"] = token.dpop_key.alg
    return summary


def check_dpop_token(report: Report, name: str, token: Any) -> None:
    report.check(
        f"{name}: the library made a DPoPToken",
        isinstance(token, DPoPToken),
        "DPoPToken",
        type(token).__name__,
    )
    report.check(f"{name}: token_type", token.token_type == "DPoP", "DPoP", token.token_type)


def check_api_answer(
    report: Report, name: str, response: requests.Response, subject: str | None
) -> None:
    report.check(f"{name}: status", response.status_code == 200, 200, response.status_code)
    if subject is not None and response.status_code == 200:
        sub = response.json().get("sub")
        report.check(f"{name}: sub", sub == subject, subject, sub)


def dpop_client_credentials(args: argparse.Namespace) -> Report:
    report = Report("dpop-client-credentials")
    session = Session()
    client = discover(args, session, client_id=args.client_id, client_secret=args.client_secret)
    report["token_endpoint"] = client.token_endpoint
    token = client.client_credentials(scope=args.scope, dpop=True)
    report["token"] = token_summary(token)
    check_dpop_token(report, "token", token)

    # The token request's own proof, sent again with the same request (RFC 9449 §11.1).
    replay = session.send(session.last("POST", client.token_endpoint).request.copy())
    report["token_proof_replayed"] = answer(replay)
    error = error_code(replay)
    report.check(
        "token endpoint refuses a replayed proof",
        replay.status_code == 400 and error == "invalid_dpop_proof",
        [400, "invalid_dpop_proof"],
        [replay.status_code, error],
    )

    if args.api:
        first = call_api(session, args.api, token)
        report["api"] = answer(first)
        check_api_answer(report, "api with the library's DPoP auth", first, args.client_id)
        probe_api(report, session, args.api, token)
        again = call_api(session, args.api, token)
        report["api_again"] = answer(again)
        check_api_answer(report, "api again, a fresh proof", again, args.client_id)
    return report


class FormParser(HTMLParser):
    """The first form's action and its inputs' values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attributes.get("action") or ""
        elif tag == "input" and attributes.get("name"):
            self.fields[str(attributes["name"])] = attributes.get("value") or ""


def sign_in(session: Session, url: str, username: str, password: str) -> str:
    """Opens the authorization URL, signs in on the service's page, returns the redirect."""
    page = session.get(url, allow_redirects=False)
    if page.status_code != 200:
        raise RuntimeError(f"authorization page: {page.status_code} {page.text[:300]}")
    form = FormParser()
    form.feed(page.text)
    if form.action is None:
        raise RuntimeError(f"no sign-in form on the authorization page: {page.text[:300]}")
    fields = dict(form.fields, username=username, password=password)
    done = session.post(urljoin(page.url, form.action), data=fields, allow_redirects=False)
    location = done.headers.get("Location")
    if done.status_code not in (302, 303) or not location:
        raise RuntimeError(f"sign-in: {done.status_code} {done.text[:300]}")
    return location


def dpop_refresh(args: argparse.Namespace) -> Report:
    report = Report("dpop-refresh")
    session = Session()
    client = discover(args, session, client_id=args.client_id, redirect_uri=args.redirect_uri)
    # RFC 9449 §10: the library puts its key's thumbprint in the request as dpop_jkt.
    request = client.authorization_request(scope=args.scope, dpop=True)
    report["dpop_jkt_requested"] = parse_qs(str(request.uri).split("?", 1)[1]).get(
        "dpop_jkt", [None]
    )[0]
    callback = sign_in(session, str(request.uri), args.username, args.password)
    response = request.validate_callback(callback)  # state, and iss (RFC 9207)
    token = client.authorization_code(response)
    report["token"] = token_summary(token)
    check_dpop_token(report, "token", token)
    report.check(
        "token: has a refresh token", bool(token.refresh_token), True, bool(token.refresh_token)
    )

    if args.api:
        first = call_api(session, args.api, token)
        report["api"] = answer(first)
        check_api_answer(report, "api with the code's token", first, args.username)

    # §5: a public client's refresh token is bound; without a proof, or with another key's,
    # the refresh is refused and the token stays usable.
    refused = {}
    for name, dpop_key in (("no_proof", None), ("another_key", DPoPKey.generate())):
        try:
            client.token_request(
                {"grant_type": "refresh_token", "refresh_token": token.refresh_token},
                dpop_key=dpop_key,
            )
            refused[name] = {"refused": False}
        except EndpointError as exc:
            refused[name] = {
                "refused": True,
                "error": exc.error,
                "status": exc.response.status_code,
            }
        report.check(
            f"refresh with {name} is refused invalid_grant",
            refused[name].get("error") == "invalid_grant",
            "invalid_grant",
            refused[name].get("error"),
        )
    report["refresh_refused"] = refused

    # The library proves the refresh with the token's own key.
    refreshed = client.refresh_token(token)
    report["refreshed"] = token_summary(refreshed)
    check_dpop_token(report, "refreshed", refreshed)
    report.check(
        "refreshed: same key",
        isinstance(refreshed, DPoPToken) and refreshed.dpop_key is token.dpop_key,
        True,
        isinstance(refreshed, DPoPToken) and refreshed.dpop_key is token.dpop_key,
    )
    rotated = refreshed.refresh_token not in (None, token.refresh_token)
    report.check(
        "refreshed: the refresh token rotated",
        rotated,
        "a new refresh token",
        "a new refresh token" if rotated else refreshed.refresh_token,
    )
    if args.api:
        after = call_api(session, args.api, refreshed)
        report["api_after_refresh"] = answer(after)
        check_api_answer(report, "api with the refreshed token", after, args.username)
    return report


def load_private_jwk(path: str) -> jwskate.Jwk:
    with open(path, encoding="utf-8") as file:
        jwk = jwskate.Jwk(json.load(file))
    if not jwk.is_private:
        raise ValueError(f"{path}: not a private key")
    return jwk


def token_attempt(client: OAuth2Client, scope: str | None, **kwargs: Any) -> dict[str, Any]:
    """A client-credentials request; what came of it."""
    try:
        token = client.client_credentials(scope=scope, **kwargs)
    except EndpointError as exc:
        return {
            "ok": False,
            "status": exc.response.status_code,
            "error": exc.error,
            "description": exc.description,
        }
    return {"ok": True, "token": token_summary(token)}


def replay_refused(report: Report, name: str, session: Session, url: str) -> dict[str, Any]:
    """The last request to `url` sent again as it was: its assertion's jti is spent."""
    replay = session.send(session.last("POST", url).request.copy())
    error = error_code(replay)
    # RFC 6749 §5.2: invalid_client, 401 or 400 (the credentials were not in a header).
    report.check(
        f"{name}: a replayed assertion is refused invalid_client",
        replay.status_code in (400, 401) and error == "invalid_client",
        [[400, 401], "invalid_client"],
        [replay.status_code, error],
    )
    return answer(replay)


def assertion_sent(session: Session, url: str) -> dict[str, Any]:
    """The header and claims of the client assertion last sent to `url`."""
    body = parse_qs(str(session.last("POST", url).request.body))
    assertion = jwskate.SignedJwt(body["client_assertion"][0])
    return {
        "assertion_type": body.get("client_assertion_type", [None])[0],
        "client_id": body.get("client_id", [None])[0],
        "header": assertion.headers,
        "claims": assertion.claims,
    }


def private_key_jwt(args: argparse.Namespace) -> Report:
    report = Report("private-key-jwt")
    session = Session()
    jwk = load_private_jwk(args.private_jwk)

    # The library's defaults: aud = the URL of the endpoint it calls, a uuid4 jti, 60 s lifetime.
    client = discover(args, session, auth=PrivateKeyJwt(args.client_id, jwk))
    document = session.last("GET", oidc_configuration(args.issuer)).json()
    methods = document.get("token_endpoint_auth_methods_supported", [])
    report["token_endpoint_auth_methods_supported"] = methods
    report.check(
        "discovery lists private_key_jwt", "private_key_jwt" in methods, "private_key_jwt", methods
    )
    first = token_attempt(client, args.scope)
    report["token"] = first
    report.check("a token with the library's default assertion", first["ok"], True, first)
    if first["ok"]:
        report["assertion"] = assertion_sent(session, client.token_endpoint)
        report["assertion_replayed"] = replay_refused(
            report, "token endpoint", session, client.token_endpoint
        )

    # aud = the issuer (RFC 7523 §3 (3); the only value draft-ietf-oauth-rfc7523bis keeps).
    to_issuer = OAuth2Client(
        client.token_endpoint,
        auth=PrivateKeyJwt(args.client_id, jwk, aud=args.issuer),
        revocation_endpoint=client.revocation_endpoint,
        session=session,
        testing=True,
    )
    by_issuer = token_attempt(to_issuer, args.scope)
    report["token_aud_issuer"] = by_issuer
    report.check("a token with aud = the issuer", by_issuer["ok"], True, by_issuer)

    # private_key_jwt and DPoP together.
    bound = token_attempt(client, args.scope, dpop=True)
    report["token_dpop"] = bound
    bound_type = bound.get("token", {}).get("token_type")
    report.check("a DPoP-bound token with private_key_jwt", bound_type == "DPoP", "DPoP", bound)

    refusals = {
        "another_key": PrivateKeyJwt(
            args.client_id, jwskate.Jwk.generate(alg="ES256", kid=jwk.kid)
        ),
        "another_audience": PrivateKeyJwt(
            args.client_id, jwk, aud="https://elsewhere.example.test/token"
        ),
        "expired": PrivateKeyJwt(args.client_id, jwk, lifetime=-120),
        # The service takes assertions made for one request: exp at most 5 minutes ahead.
        "an_hour_long": PrivateKeyJwt(args.client_id, jwk, lifetime=3600),
        "another_client": PrivateKeyJwt(args.other_client_id, jwk),
    }
    refused = {}
    for name, auth in refusals.items():
        attempt = token_attempt(
            OAuth2Client(client.token_endpoint, auth=auth, session=session, testing=True),
            args.scope,
        )
        refused[name] = attempt
        report.check(
            f"refused: {name}",
            not attempt["ok"] and attempt.get("error") == "invalid_client",
            "invalid_client",
            attempt.get("error", "a token"),
        )
    report["refused"] = refused

    # Revocation (RFC 7009) with private_key_jwt: with the library's default audience (the
    # revocation endpoint's URL), then with the issuer; each request is then replayed.
    revocations = {}
    for name, revoker, attempt in (
        ("default_aud", client, first),
        ("aud_issuer", to_issuer, by_issuer),
    ):
        if not attempt["ok"]:
            continue
        access_token = attempt["token"]["access_token"]
        try:
            revoked = revoker.revoke_access_token(access_token)
            seen = {"ok": revoked is True, "access_token": access_token}
        except EndpointError as exc:
            seen = {
                "ok": False,
                "status": exc.response.status_code,
                "error": exc.error,
                "description": exc.description,
                "access_token": access_token,
            }
        report.check(f"revocation, {name}", seen["ok"], True, seen)
        seen["assertion"] = assertion_sent(session, client.revocation_endpoint)
        seen["replayed"] = replay_refused(
            report, f"revocation endpoint, {name}", session, client.revocation_endpoint
        )
        revocations[name] = seen
    report["revocation_endpoint"] = client.revocation_endpoint
    report["revocations"] = revocations

    if args.introspecting_api:
        introspect_as_api(report, args, session, client, revocations, bound)
    return report


def introspect_as_api(
    report: Report,
    args: argparse.Namespace,
    session: Session,
    client: OAuth2Client,
    revocations: dict[str, Any],
    bound: dict[str, Any],
) -> None:
    """Introspection (RFC 7662) by an API authenticating with private_key_jwt, library defaults
    (aud = the introspection endpoint's URL)."""
    api = OAuth2Client(
        client.token_endpoint,
        auth=PrivateKeyJwt(args.introspecting_api, load_private_jwk(args.api_private_jwk)),
        introspection_endpoint=client.introspection_endpoint,
        session=session,
        testing=True,
    )
    seen: dict[str, Any] = {}
    if bound["ok"]:
        bound_answer = api.introspect_token(bound["token"]["access_token"])
        seen["dpop_bound"] = bound_answer
        jkt = bound["token"]["dpop_jkt"]
        report.check(
            "introspection: the bound token is active",
            bound_answer.get("active") is True,
            True,
            bound_answer,
        )
        report.check(
            "introspection: its cnf.jkt is the library's key",
            bound_answer.get("cnf", {}).get("jkt") == jkt,
            jkt,
            bound_answer.get("cnf"),
        )
        report["introspection_assertion"] = assertion_sent(session, api.introspection_endpoint)
    for name, revoked in revocations.items():
        if revoked["ok"]:
            revoked_answer = api.introspect_token(revoked["access_token"])
            seen[f"revoked_{name}"] = revoked_answer
            report.check(
                f"introspection: revoked ({name}) is inactive",
                revoked_answer == {"active": False},
                {"active": False},
                revoked_answer,
            )
    report["introspection"] = seen
    report["introspection_assertion_replayed"] = replay_refused(
        report, "introspection endpoint", session, api.introspection_endpoint
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    cc = commands.add_parser(
        "dpop-client-credentials", help="a DPoP-bound client-credentials token, used at the API"
    )
    cc.add_argument("--client-id", required=True)
    cc.add_argument("--client-secret", required=True)

    refresh = commands.add_parser(
        "dpop-refresh", help="code with dpop_jkt, then bound refresh tokens (public client)"
    )
    refresh.add_argument("--client-id", required=True)
    refresh.add_argument("--redirect-uri", required=True)
    refresh.add_argument("--username", required=True)
    refresh.add_argument("--password", required=True)

    pkj = commands.add_parser(
        "private-key-jwt", help="RFC 7523 client authentication with PrivateKeyJwt"
    )
    pkj.add_argument("--client-id", required=True)
    pkj.add_argument(
        "--private-jwk",
        required=True,
        help="a file holding the client's private JWK (with kid, alg)",
    )
    pkj.add_argument(
        "--other-client-id",
        default="another-client",
        help="a client this key must not authenticate as",
    )
    pkj.add_argument("--introspecting-api", help="an API id that introspects with private_key_jwt")
    pkj.add_argument("--api-private-jwk", help="a file holding that API's private JWK")

    for command in (cc, refresh, pkj):
        command.add_argument("--issuer", required=True, help="the token service's issuer, exactly")
        command.add_argument("--scope", default=None)
    for command in (cc, refresh):
        command.add_argument(
            "--api", default=None, help="a URL of the example API to GET with the token"
        )

    args = parser.parse_args()
    if getattr(args, "introspecting_api", None) and not args.api_private_jwk:
        parser.error("--introspecting-api needs --api-private-jwk")
    flows = {
        "dpop-client-credentials": dpop_client_credentials,
        "dpop-refresh": dpop_refresh,
        "private-key-jwt": private_key_jwt,
    }
    try:
        report = flows[args.command](args)
    except Exception as exc:  # noqa: BLE001 - the message is the product here
        traceback.print_exc(file=sys.stderr)
        detail = f"{type(exc).__name__}: {exc}"
        response = getattr(exc, "response", None)
        if isinstance(response, requests.Response):
            detail += f" (HTTP {response.status_code}: {response.text[:500]})"
        print(f"{args.command} broke: {detail}", file=sys.stderr)
        return 3
    return report.emit()


if __name__ == "__main__":
    sys.exit(main())
