//! Checking a claim set — a JWT's (RFC 7519 §4.1, RFC 9068 §2.2) or an introspection
//! response's (RFC 7662 §2.2) — and building the principal.

use std::time::Duration;

use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::error::InvalidToken;
use crate::json;
use crate::principal::{Principal, RevocationCheck};
use crate::scope::ScopeSet;

/// What the claims are checked against.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: Duration,
    /// `dangerous_accept_any_audience`: the caller judges `aud` itself.
    pub(crate) any_audience: bool,
    /// `dangerous_accept_expired`: `exp` is still required, but not enforced.
    pub(crate) accept_expired: bool,
    /// `scope_claim`: the claim scopes are read from, as a dotted path
    /// (`realm_access.roles`); `None`: `scope`, else `scp`.
    pub(crate) scope_claim: Option<String>,
}

/// Where a claim set comes from: a JWT must carry `iss`, `aud` and `exp`; an introspection
/// response may leave them out (RFC 7662 §2.2), but what it says is checked the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Jwt,
    Introspection,
}

/// Reads and checks the claim set of a token whose signature has been verified.
pub(crate) fn check_jwt(
    payload: &[u8],
    rules: &ClaimRules,
    now: Duration,
) -> Result<Principal, InvalidToken> {
    let claims = json::parse_object(payload).map_err(|problem| InvalidToken::Json {
        part: "claims",
        problem,
    })?;
    check(claims, rules, now, Source::Jwt)
}

/// Checks a claim set and builds the principal from it.
pub(crate) fn check(
    claims: Map<String, Value>,
    rules: &ClaimRules,
    now: Duration,
    source: Source,
) -> Result<Principal, InvalidToken> {
    let required = source == Source::Jwt;
    let known = KnownClaims::of(&claims);
    match known.iss {
        Some(Value::String(issuer)) if *issuer == rules.issuer => {}
        Some(Value::String(_)) => return Err(InvalidToken::WrongIssuer),
        Some(_) => return Err(claim("iss", "not a string")),
        None if required => return Err(claim("iss", "missing")),
        None => {}
    }
    let audiences = audiences(known.aud, required)?;
    if !rules.any_audience
        && (required || !audiences.is_empty())
        && !audiences
            .iter()
            .any(|audience| rules.audiences.contains(audience))
    {
        return Err(InvalidToken::WrongAudience);
    }

    let now = now.as_secs_f64();
    let leeway = rules.leeway.as_secs_f64();
    let expires_at = numeric_date(known.exp, "exp")?;
    match expires_at {
        Some(expires_at) if now >= expires_at + leeway && !rules.accept_expired => {
            return Err(InvalidToken::Expired);
        }
        None if required => return Err(claim("exp", "missing")),
        _ => {}
    }
    if let Some(not_before) = numeric_date(known.nbf, "nbf")?
        && now + leeway < not_before
    {
        return Err(InvalidToken::NotYetValid);
    }
    let issued_at = numeric_date(known.iat, "iat")?;
    if issued_at.is_some_and(|issued_at| now + leeway < issued_at) {
        return Err(InvalidToken::IssuedInFuture);
    }

    let granted = match &rules.scope_claim {
        None => known.scope.or(known.scp),
        Some(path) => claim_at(&claims, path),
    };
    let scopes = match granted {
        None => ScopeSet::default(),
        Some(value) => ScopeSet::deserialize(value).map_err(|_| {
            claim(
                "scope",
                "not a space-separated string or an array of valid scope tokens",
            )
        })?,
    };
    for (name, value) in [
        ("sub", known.sub),
        ("client_id", known.client_id),
        ("azp", known.azp),
        ("jti", known.jti),
    ] {
        if value.is_some_and(|value| !value.is_string()) {
            return Err(claim(name, "not a string"));
        }
    }
    check_confirmation(known.cnf)?;
    Ok(Principal {
        scopes,
        audiences,
        expires_at: expires_at.map(to_duration),
        issued_at: issued_at.map(to_duration),
        claims,
        revocation_check: RevocationCheck::default(),
    })
}

/// The registered claims the checks read, found in one pass over the claim set rather than a
/// map lookup each: this runs on every verification.
#[derive(Default)]
struct KnownClaims<'a> {
    iss: Option<&'a Value>,
    aud: Option<&'a Value>,
    exp: Option<&'a Value>,
    nbf: Option<&'a Value>,
    iat: Option<&'a Value>,
    scope: Option<&'a Value>,
    scp: Option<&'a Value>,
    sub: Option<&'a Value>,
    client_id: Option<&'a Value>,
    azp: Option<&'a Value>,
    jti: Option<&'a Value>,
    cnf: Option<&'a Value>,
}

impl<'a> KnownClaims<'a> {
    fn of(claims: &'a Map<String, Value>) -> Self {
        let mut known = Self::default();
        for (name, value) in claims {
            let slot = match name.as_str() {
                "iss" => &mut known.iss,
                "aud" => &mut known.aud,
                "exp" => &mut known.exp,
                "nbf" => &mut known.nbf,
                "iat" => &mut known.iat,
                "scope" => &mut known.scope,
                "scp" => &mut known.scp,
                "sub" => &mut known.sub,
                "client_id" => &mut known.client_id,
                "azp" => &mut known.azp,
                "jti" => &mut known.jti,
                "cnf" => &mut known.cnf,
                _ => continue,
            };
            *slot = Some(value);
        }
        known
    }
}

/// `cnf` (RFC 7800 §3.1) names the key a token is bound to; with `jkt` (RFC 9449 §6.1), the
/// SHA-256 thumbprint of a DPoP key. One that cannot be read is refused: taking it for absent
/// would turn a bound token into a bearer token.
fn check_confirmation(confirmation: Option<&Value>) -> Result<(), InvalidToken> {
    let Some(confirmation) = confirmation else {
        return Ok(());
    };
    let Value::Object(members) = confirmation else {
        return Err(claim("cnf", "not an object"));
    };
    match members.get("jkt") {
        None => Ok(()),
        Some(Value::String(jkt)) if is_sha256_thumbprint(jkt) => Ok(()),
        Some(Value::String(_)) => Err(claim("cnf", "`jkt` is not a base64url SHA-256 thumbprint")),
        Some(_) => Err(claim("cnf", "`jkt` is not a string")),
    }
}

/// 32 bytes in unpadded base64url: 43 characters of its alphabet.
fn is_sha256_thumbprint(jkt: &str) -> bool {
    jkt.len() == 43
        && jkt
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// The value at a dotted `path` of nested objects (`realm_access.roles`), if there is one.
fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut names = path.split('.');
    let mut value = claims.get(names.next()?)?;
    for name in names {
        value = value.as_object()?.get(name)?;
    }
    Some(value)
}

fn claim(name: &'static str, problem: &'static str) -> InvalidToken {
    InvalidToken::Claim { name, problem }
}

fn audiences(aud: Option<&Value>, required: bool) -> Result<Vec<String>, InvalidToken> {
    match aud {
        Some(Value::String(audience)) => Ok(vec![audience.clone()]),
        Some(Value::Array(values)) if values.is_empty() => Err(claim("aud", "empty array")),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| value.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| claim("aud", "array holds a non-string")),
        Some(_) => Err(claim("aud", "not a string or an array of strings")),
        None if required => Err(claim("aud", "missing")),
        None => Ok(Vec::new()),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, integer or not. A string such as
/// `"123"` is a type error, not a date.
fn numeric_date(value: Option<&Value>, name: &'static str) -> Result<Option<f64>, InvalidToken> {
    match value {
        None => Ok(None),
        Some(Value::Number(number)) => match number.as_f64() {
            Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(Some(seconds)),
            _ => Err(claim(name, "not a non-negative NumericDate")),
        },
        Some(_) => Err(claim(name, "not a number")),
    }
}

fn to_duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}
