//! Checking a claim set — a JWT's (RFC 7519 §4.1, RFC 9068 §2.2) or an introspection
//! response's (RFC 7662 §2.2) — and building the principal.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::error::InvalidToken;
use crate::interned::Interned;
use crate::json::{self, Member};
use crate::principal::{ClaimText, NumericDate, Principal, RevocationCheck};
use crate::scope::ScopeSet;
use crate::token_type::TypeMarks;

/// What the claims are checked against.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    /// Thin (`Arc<String>`): every principal whose `iss` it is holds it.
    pub(crate) issuer: Arc<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: Duration,
    /// `dangerous_accept_any_audience`: the caller judges `aud` itself.
    pub(crate) any_audience: bool,
    /// `dangerous_accept_expired`: `exp` is still required, but not enforced.
    pub(crate) accept_expired: bool,
    /// `scope_claim`: the claim scopes are read from, as a dotted path
    /// (`realm_access.roles`); `None`: `scope`, else `scp`.
    pub(crate) scope_claim: Option<String>,
    /// Scope sets and audiences shared by the principals of this validator.
    pub(crate) interned: Arc<Interned>,
}

impl ClaimRules {
    /// The top-level member `scope_claim` starts at.
    fn scope_root(&self) -> Option<&str> {
        self.scope_claim
            .as_deref()
            .map(|path| path.split('.').next().unwrap_or(path))
    }
}

/// Where a claim set comes from: a JWT must carry `iss`, `aud` and `exp`; an introspection
/// response may leave them out (RFC 7662 §2.2), but what it says is checked the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Jwt,
    Introspection,
}

/// Reads and checks the claim set of a token whose signature has been verified. `signed` is
/// the token's `header.payload`; `payload` is its decoded payload, which the principal keeps
/// as its claim set (with the header, to tell this token from others on a cache hit). The
/// claims are read in one pass that builds only the registered ones.
pub(crate) fn check_jwt(
    signed: &str,
    payload: &[u8],
    rules: &ClaimRules,
    now: Duration,
) -> Result<(Principal, TypeMarks), InvalidToken> {
    let scope_root = rules.scope_root();
    let mut known = KnownClaims::default();
    json::for_each_member_where(
        payload,
        |name| KnownClaims::wants(name, scope_root),
        |name, value| known.offer(name, value, scope_root),
    )
    .map_err(|problem| InvalidToken::Json {
        part: "claims",
        problem,
    })?;
    let marks = known.type_marks();
    let headers = &rules.interned.headers;
    let header = signed.split_once('.').map_or(signed, |(header, _)| header);
    let principal = check(known, rules, now, Source::Jwt, |identifiers| {
        let shared = |header: &str| {
            headers
                .get_or_make(header, |header| {
                    Ok::<_, Infallible>(Arc::new(header.to_owned()))
                })
                .unwrap_or_else(|never| match never {})
        };
        // The strict pass read it as UTF-8 already: this cannot fail.
        let claims = std::str::from_utf8(payload).ok()?;
        ClaimText::jws(header, claims, shared, identifiers)
    })?;
    Ok((principal, marks))
}

/// Checks an introspection answer's claim set and builds the principal from it.
pub(crate) fn check_answer(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    now: Duration,
) -> Result<Principal, InvalidToken> {
    let known = KnownClaims::of_map(claims, rules.scope_root());
    check(known, rules, now, Source::Introspection, |identifiers| {
        ClaimText::json(claims, identifiers)
    })
}

/// What the access-token type rule reads of `claims`, gathered as [`check_jwt`] gathers it.
#[cfg(test)]
pub(crate) fn type_marks_of(claims: &Map<String, Value>) -> TypeMarks {
    KnownClaims::of_map(claims, None).type_marks()
}

/// A member of a parsed claim set, its string borrowed.
fn borrowed(value: &Value) -> Member<'_> {
    match value {
        Value::String(string) => Member::String(Cow::Borrowed(string)),
        other => Member::Other(other.clone()),
    }
}

/// Checks the registered claims and builds the principal, its claim set made by `text`.
fn check(
    known: KnownClaims<'_>,
    rules: &ClaimRules,
    now: Duration,
    source: Source,
    text: impl FnOnce([Option<&str>; 5]) -> Option<ClaimText>,
) -> Result<Principal, InvalidToken> {
    let required = source == Source::Jwt;
    let issuer = match &known.iss {
        Some(Member::String(issuer)) if **issuer == *rules.issuer => {
            Some(Arc::clone(&rules.issuer))
        }
        Some(Member::String(_)) => return Err(InvalidToken::WrongIssuer),
        Some(Member::Other(_)) => return Err(claim("iss", "not a string")),
        None if required => return Err(claim("iss", "missing")),
        None => None,
    };
    let audiences = audiences(known.aud, required, &rules.interned)?;
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
    let expires_at = numeric_date(known.exp.as_ref(), "exp")?;
    match expires_at {
        Some(expires_at) if now >= expires_at + leeway && !rules.accept_expired => {
            return Err(InvalidToken::Expired);
        }
        None if required => return Err(claim("exp", "missing")),
        _ => {}
    }
    if let Some(not_before) = numeric_date(known.nbf.as_ref(), "nbf")?
        && now + leeway < not_before
    {
        return Err(InvalidToken::NotYetValid);
    }
    let issued_at = numeric_date(known.iat.as_ref(), "iat")?;
    if issued_at.is_some_and(|issued_at| now + leeway < issued_at) {
        return Err(InvalidToken::IssuedInFuture);
    }

    let interned = &rules.interned;
    let scopes = match &rules.scope_claim {
        None => scope_set(known.scope.as_ref().or(known.scp.as_ref()), interned)?,
        Some(path) => match known.scope_root.as_ref() {
            // A path of one name: the member itself.
            Some(root @ Member::String(_)) if !path.contains('.') => {
                scope_set(Some(root), interned)?
            }
            Some(Member::Other(root)) => {
                scope_set(claim_at(root, path).map(borrowed).as_ref(), interned)?
            }
            _ => Arc::default(),
        },
    };
    let subject = string_claim("sub", known.sub.as_ref())?;
    let client_id = string_claim("client_id", known.client_id.as_ref())?;
    let authorized_party = string_claim("azp", known.azp.as_ref())?;
    let token_id = string_claim("jti", known.jti.as_ref())?;
    // `sid` is read for revocation events only: a non-string one names no session.
    let session = known.sid.as_ref().and_then(Member::as_str);
    let key_thumbprint = check_confirmation(known.cnf.as_ref())?;
    let claims = text([
        subject,
        client_id.or(authorized_party),
        token_id,
        session,
        key_thumbprint,
    ])
    .ok_or(InvalidToken::Malformed("claim set too large"))?;
    Ok(Principal {
        scopes,
        audiences,
        expires_at: NumericDate::new(expires_at.map(to_duration)),
        issued_at: NumericDate::new(issued_at.map(to_duration)),
        issuer,
        claims,
        confirmed: known.cnf.is_some(),
        revocation_check: RevocationCheck::default(),
    })
}

/// The registered claims the checks read, kept from one pass over the claim set; the other
/// members are checked for syntax but never built.
/// Strings are borrowed from the claim set where they have no escapes.
#[derive(Default)]
struct KnownClaims<'a> {
    iss: Option<Member<'a>>,
    aud: Option<Member<'a>>,
    exp: Option<Member<'a>>,
    nbf: Option<Member<'a>>,
    iat: Option<Member<'a>>,
    scope: Option<Member<'a>>,
    scp: Option<Member<'a>>,
    sub: Option<Member<'a>>,
    client_id: Option<Member<'a>>,
    azp: Option<Member<'a>>,
    jti: Option<Member<'a>>,
    sid: Option<Member<'a>>,
    cnf: Option<Member<'a>>,
    /// The first member of `scope_claim`'s path, when one is configured.
    scope_root: Option<Member<'a>>,
    /// What the access-token type rule looks at.
    typ: Option<Member<'a>>,
    id_token_claim: bool,
    roles: bool,
}

impl<'a> KnownClaims<'a> {
    /// The registered claims of a parsed claim set, their strings borrowed.
    fn of_map(claims: &'a Map<String, Value>, scope_root: Option<&str>) -> Self {
        let mut known = Self::default();
        for (name, value) in claims {
            if Self::wants(name, scope_root) {
                known.offer(name, borrowed(value), scope_root);
            }
        }
        known
    }

    fn wants(name: &str, scope_root: Option<&str>) -> bool {
        matches!(
            name,
            "iss"
                | "aud"
                | "exp"
                | "nbf"
                | "iat"
                | "scope"
                | "scp"
                | "sub"
                | "client_id"
                | "azp"
                | "jti"
                | "sid"
                | "cnf"
                | "typ"
                | "nonce"
                | "at_hash"
                | "c_hash"
                | "roles"
        ) || scope_root == Some(name)
    }

    fn offer(&mut self, name: &str, value: Member<'a>, scope_root: Option<&str>) {
        if scope_root == Some(name) {
            self.scope_root = Some(value.clone());
        }
        let slot = match name {
            "iss" => &mut self.iss,
            "aud" => &mut self.aud,
            "exp" => &mut self.exp,
            "nbf" => &mut self.nbf,
            "iat" => &mut self.iat,
            "scope" => &mut self.scope,
            "scp" => &mut self.scp,
            "sub" => &mut self.sub,
            "client_id" => &mut self.client_id,
            "azp" => &mut self.azp,
            "jti" => &mut self.jti,
            "sid" => &mut self.sid,
            "cnf" => &mut self.cnf,
            "typ" => &mut self.typ,
            "nonce" | "at_hash" | "c_hash" => {
                self.id_token_claim = true;
                return;
            }
            "roles" => {
                self.roles = true;
                return;
            }
            _ => return,
        };
        *slot = Some(value);
    }

    fn type_marks(&self) -> TypeMarks {
        TypeMarks {
            id_token_claim: self.id_token_claim,
            typ_claim: self.typ.as_ref().map(|typ| {
                typ.as_str()
                    .is_some_and(|typ| typ.eq_ignore_ascii_case("Bearer"))
            }),
            grant_claim: self.scope.is_some() || self.scp.is_some() || self.roles,
        }
    }
}

/// `cnf` (RFC 7800 §3.1) names the key a token is bound to; with `jkt` (RFC 9449 §6.1), the
/// SHA-256 thumbprint of a DPoP key, which is returned. One that cannot be read is refused:
/// taking it for absent would turn a bound token into a bearer token.
fn check_confirmation<'a>(
    confirmation: Option<&'a Member<'_>>,
) -> Result<Option<&'a str>, InvalidToken> {
    let Some(confirmation) = confirmation else {
        return Ok(None);
    };
    let Member::Other(Value::Object(members)) = confirmation else {
        return Err(claim("cnf", "not an object"));
    };
    match members.get("jkt") {
        None => Ok(None),
        Some(Value::String(jkt)) if is_sha256_thumbprint(jkt) => Ok(Some(jkt)),
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

/// The value at a dotted `path` of nested objects (`realm_access.roles`), if there is one;
/// `root` is the value of the path's first member.
fn claim_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = root;
    for name in path.split('.').skip(1) {
        value = value.as_object()?.get(name)?;
    }
    Some(value)
}

/// A claim that must be a string when present.
fn string_claim<'a>(
    name: &'static str,
    value: Option<&'a Member<'_>>,
) -> Result<Option<&'a str>, InvalidToken> {
    match value {
        None => Ok(None),
        Some(Member::String(value)) => Ok(Some(value)),
        Some(Member::Other(_)) => Err(claim(name, "not a string")),
    }
}

/// The granted scopes: a space-separated string (shared with the principals granted the same)
/// or an array of scope tokens.
fn scope_set(
    granted: Option<&Member<'_>>,
    interned: &Interned,
) -> Result<Arc<ScopeSet>, InvalidToken> {
    let parsed = match granted {
        None => return Ok(Arc::default()),
        Some(Member::String(scopes)) => interned
            .scopes
            .get_or_make(scopes, |text| {
                ScopeSet::parse_space_separated(text).map(Arc::new)
            })
            .ok(),
        Some(Member::Other(value)) => ScopeSet::deserialize(value).map(Arc::new).ok(),
    };
    parsed.ok_or_else(|| {
        claim(
            "scope",
            "not a space-separated string or an array of valid scope tokens",
        )
    })
}

fn claim(name: &'static str, problem: &'static str) -> InvalidToken {
    InvalidToken::Claim { name, problem }
}

fn audiences(
    aud: Option<Member<'_>>,
    required: bool,
    interned: &Interned,
) -> Result<Arc<Vec<String>>, InvalidToken> {
    match aud {
        Some(Member::String(audience)) => interned.audiences.get_or_make(&audience, |audience| {
            Ok::<_, InvalidToken>(Arc::new(vec![audience.to_owned()]))
        }),
        Some(Member::Other(Value::Array(values))) if values.is_empty() => {
            Err(claim("aud", "empty array"))
        }
        Some(Member::Other(Value::Array(values))) => values
            .iter()
            .map(|value| value.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .map(Arc::new)
            .ok_or_else(|| claim("aud", "array holds a non-string")),
        Some(_) => Err(claim("aud", "not a string or an array of strings")),
        None if required => Err(claim("aud", "missing")),
        None => Ok(Arc::default()),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, integer or not. A string such as
/// `"123"` is a type error, not a date.
fn numeric_date(
    value: Option<&Member<'_>>,
    name: &'static str,
) -> Result<Option<f64>, InvalidToken> {
    match value {
        None => Ok(None),
        Some(Member::Other(Value::Number(number))) => match number.as_f64() {
            Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(Some(seconds)),
            _ => Err(claim(name, "not a non-negative NumericDate")),
        },
        Some(_) => Err(claim(name, "not a number")),
    }
}

fn to_duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}
