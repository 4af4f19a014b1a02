//! Compact JWS (RFC 7515) parsing and signature verification, with the header rules of
//! RFC 8725: the algorithm comes from an allow-list and must fit the key; header parameters that
//! would let the token pick its own key are refused.

use base64_simd::AsOut as _;
use smallvec::SmallVec;

use crate::algorithm::Algorithm;
use crate::error::InvalidToken;
use crate::json::{self, Member};
use crate::jwk::KeySet;

/// The shape of a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenShape {
    /// Three segments: a compact JWS.
    Jws,
    /// Five segments: a compact JWE.
    Jwe,
    /// Anything else: an opaque (reference) token, or junk.
    Other,
}

pub(crate) fn shape(token: &str) -> TokenShape {
    match dots(token).take(5).count() {
        2 => TokenShape::Jws,
        4 => TokenShape::Jwe,
        _ => TokenShape::Other,
    }
}

/// Where the separators are: `memchr` scans 32 bytes at a time, where `str::split` scans 8.
fn dots(token: &str) -> memchr::Memchr<'_> {
    memchr::memchr_iter(b'.', token.as_bytes())
}

/// The protected header, checked but not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<HeaderText>,
    pub(crate) typ: Option<HeaderText>,
}

/// A header string (`kid`, `typ`), kept inline when short — a key thumbprint is 43 bytes —
/// so that reading a header allocates nothing.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HeaderText(SmallVec<[u8; 46]>);

impl HeaderText {
    fn new(text: &str) -> Self {
        Self(SmallVec::from_slice(text.as_bytes()))
    }
}

impl std::ops::Deref for HeaderText {
    type Target = str;

    fn deref(&self) -> &str {
        // Made from a `str`, so this never falls back; a few nanoseconds on short text.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for HeaderText {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, formatter)
    }
}

/// A compact JWS whose signature has not been checked yet, every segment already decoded so
/// that a malformed token is refused before any key is looked up or fetched.
pub(crate) struct UntrustedJws<'a> {
    pub(crate) header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// The token itself never appears in debug output.
impl std::fmt::Debug for UntrustedJws<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UntrustedJws")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// The header, payload and signature segments of a compact JWS, if it has exactly three.
pub(crate) fn three_segments(token: &str) -> Option<[&str; 3]> {
    let mut dots = dots(token);
    let (first, second) = (dots.next()?, dots.next()?);
    if dots.next().is_some() {
        return None;
    }
    // A `.` is one byte in UTF-8: the cuts fall on character boundaries.
    Some([
        token.get(..first)?,
        token.get(first + 1..second)?,
        token.get(second + 1..)?,
    ])
}

/// The segments' encoding: base64url without padding, strict (a non-zero trailing bit is
/// refused, so a segment has one spelling). SIMD where the CPU has it: every uncached token's
/// three segments are decoded, and `base64`'s scalar decoder was a fifth of the cold path's
/// own cost.
const SEGMENTS: base64_simd::Base64 = base64_simd::URL_SAFE_NO_PAD;

/// Whether `segment` is, byte for byte, the encoding of `decoded`: the one spelling strict
/// decoding accepts. Encodes a chunk at a time on the stack: no allocation, whatever the size.
pub(crate) fn is_encoding_of(segment: &str, decoded: &[u8]) -> bool {
    /// Whole 3-byte groups, so that every chunk but the last encodes without a partial group;
    /// 4 KiB encoded (a chunk of 384 bytes was ~5 % slower on tokens of 6–33 KB).
    const CHUNK: usize = 3 * 1024;
    // Written before it is read: no need to zero it on every cache hit.
    let mut encoded = [std::mem::MaybeUninit::<u8>::uninit(); 4 * CHUNK / 3];
    let mut rest = segment.as_bytes();
    if rest.len() != SEGMENTS.encoded_length(decoded.len()) {
        return false;
    }
    for chunk in decoded.chunks(CHUNK) {
        let encoded = SEGMENTS.encode(chunk, encoded.as_mut_slice().as_out());
        let Some((presented, after)) = rest.split_at_checked(encoded.len()) else {
            return false;
        };
        if presented != &*encoded {
            return false;
        }
        rest = after;
    }
    rest.is_empty()
}

/// Decoded headers beyond this are refused (real ones are under 200 bytes).
const MAX_HEADER_BYTES: usize = 2048;
/// Headers up to this are decoded on the stack.
const SMALL_HEADER_BYTES: usize = 384;
/// The largest signature of a supported algorithm: RSA with an 8192-bit key.
const MAX_SIGNATURE_BYTES: usize = 1024;

/// Header parameters that name a key or certificate: honouring them would let the token choose
/// the key that verifies it (RFC 8725 §3.10), so their presence alone rejects the token.
const KEY_SELECTING_PARAMETERS: [&str; 4] = ["jku", "jwk", "x5u", "x5c"];

impl<'a> UntrustedJws<'a> {
    /// Splits and reads the header of a three-segment token; only `allowed` algorithms pass.
    pub(crate) fn parse(token: &'a str, allowed: &[Algorithm]) -> Result<Self, InvalidToken> {
        let Some(segments) = three_segments(token) else {
            return Err(InvalidToken::Malformed("a JWS has exactly three segments"));
        };
        Self::from_segments(token, segments, allowed)
    }

    /// [`parse`](Self::parse) for a token already split by [`three_segments`].
    pub(crate) fn from_segments(
        token: &'a str,
        [header, payload, signature]: [&'a str; 3],
        allowed: &[Algorithm],
    ) -> Result<Self, InvalidToken> {
        if header.is_empty() || signature.is_empty() {
            return Err(InvalidToken::Malformed("empty header or signature segment"));
        }
        let header_bytes = SEGMENTS
            .decoded_length(header.as_bytes())
            .ok()
            .filter(|length| *length <= MAX_HEADER_BYTES)
            .ok_or(InvalidToken::Malformed(
                "header is not base64url, or too long",
            ))?;
        // Real headers fit the small buffer; zeroing the largest one on every call cost more
        // than reading the header.
        let (mut small, mut large) = ([0u8; SMALL_HEADER_BYTES], Vec::new());
        let buffer = if header_bytes <= SMALL_HEADER_BYTES {
            &mut small[..]
        } else {
            large.resize(header_bytes, 0);
            &mut large[..]
        };
        let decoded_header = SEGMENTS
            .decode(header.as_bytes(), buffer.as_out())
            .map_err(|_| InvalidToken::Malformed("header is not base64url, or too long"))?;
        let header = read_header(decoded_header, allowed)?;
        if signature.len() > MAX_SIGNATURE_BYTES * 4 / 3 + 4 {
            return Err(InvalidToken::Malformed("signature is too long"));
        }
        let decoded_signature = SEGMENTS
            .decode_to_vec(signature)
            .map_err(|_| InvalidToken::Malformed("signature is not base64url"))?;
        let payload = SEGMENTS
            .decode_to_vec(payload)
            .map_err(|_| InvalidToken::Malformed("payload is not base64url"))?;
        let signing_input = &token[..token.len() - signature.len() - 1];
        Ok(Self {
            header,
            signing_input,
            payload,
            signature: decoded_signature,
        })
    }

    /// Verifies the signature with the key the header selects; returns that key's fingerprint.
    pub(crate) fn verify(&self, keys: &KeySet) -> Result<u64, InvalidToken> {
        let (key, verifier) = keys.select(self.header.kid.as_deref(), self.header.alg)?;
        verifier
            .verify_sig(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| InvalidToken::BadSignature)?;
        Ok(key.fingerprint())
    }

    /// The payload: claims only once [`verify`](Self::verify) has succeeded.
    pub(crate) fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The header and the payload, without copying either: see [`into_payload`](Self::into_payload).
    pub(crate) fn into_header_and_payload(self) -> (Header, Vec<u8>) {
        (self.header, self.payload)
    }

    /// `header.payload` as received: what the signature covers.
    pub(crate) fn signing_input(&self) -> &'a str {
        self.signing_input
    }
}

fn read_header(bytes: &[u8], allowed: &[Algorithm]) -> Result<Header, InvalidToken> {
    // One pass over the members, no map: the checks below then run in their usual order.
    let (mut alg, mut kid, mut typ, mut content_type) = (None, None, None, None);
    let mut key_selecting = [false; KEY_SELECTING_PARAMETERS.len()];
    let (mut crit, mut enc, mut zip, mut b64) = (false, false, false, false);
    // Strings are borrowed from the decoded header where they have no escapes.
    json::for_each_member(bytes, |name, value| match name {
        "alg" => alg = Some(value),
        "kid" => kid = Some(value),
        "typ" => typ = Some(value),
        "cty" => content_type = Some(value),
        "crit" => crit = true,
        "enc" => enc = true,
        "zip" => zip = true,
        "b64" => b64 = true,
        other => {
            if let Some(index) = KEY_SELECTING_PARAMETERS
                .iter()
                .position(|name| *name == other)
            {
                key_selecting[index] = true;
            }
        }
    })
    .map_err(|problem| InvalidToken::Json {
        part: "header",
        problem,
    })?;
    if let Some((name, _)) = KEY_SELECTING_PARAMETERS
        .iter()
        .zip(key_selecting)
        .find(|(_, present)| *present)
    {
        return Err(InvalidToken::ForbiddenHeader(name));
    }
    if crit {
        return Err(InvalidToken::UnknownCritical);
    }
    if enc {
        return Err(InvalidToken::Encrypted);
    }
    if zip {
        return Err(InvalidToken::ForbiddenHeader("zip"));
    }
    if b64 {
        return Err(InvalidToken::ForbiddenHeader("b64"));
    }
    if let Some(Member::String(content_type)) = &content_type {
        // A nested JWT would be a second token to verify, which access tokens never are.
        if content_type.eq_ignore_ascii_case("JWT") {
            return Err(InvalidToken::ForbiddenHeader("cty"));
        }
    }
    let alg = match alg {
        Some(Member::String(name)) => match Algorithm::from_name(&name) {
            Some(alg) if allowed.contains(&alg) => alg,
            _ => {
                return Err(InvalidToken::AlgorithmNotAllowed(
                    name.chars().take(32).collect(),
                ));
            }
        },
        Some(_) => return Err(header_problem("`alg` is not a string")),
        None => return Err(header_problem("no `alg`")),
    };
    Ok(Header {
        alg,
        kid: string_member(kid, "`kid` is not a string")?,
        typ: string_member(typ, "`typ` is not a string")?,
    })
}

fn string_member(
    value: Option<Member<'_>>,
    not_a_string: &'static str,
) -> Result<Option<HeaderText>, InvalidToken> {
    match value {
        None => Ok(None),
        Some(Member::String(value)) => Ok(Some(HeaderText::new(&value))),
        Some(Member::Other(_)) => Err(header_problem(not_a_string)),
    }
}

fn header_problem(problem: &str) -> InvalidToken {
    InvalidToken::Json {
        part: "header",
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn header_parameters_are_read_and_checked() {
        let token = format!(
            "{}.e30.c2ln",
            b64(r#"{"alg":"ES256","kid":"k","typ":"at+jwt"}"#)
        );
        let jws = UntrustedJws::parse(&token, &Algorithm::ALL).unwrap();
        assert_eq!(jws.header.alg, Algorithm::ES256);
        assert_eq!(jws.header.kid.as_deref(), Some("k"));
        assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));

        for (header, expected) in [
            (
                r#"{"alg":"ES256","enc":"A256GCM"}"#,
                InvalidToken::Encrypted,
            ),
            (
                r#"{"alg":"ES256","zip":"DEF"}"#,
                InvalidToken::ForbiddenHeader("zip"),
            ),
            (
                r#"{"alg":"ES256","b64":false}"#,
                InvalidToken::ForbiddenHeader("b64"),
            ),
            (
                r#"{"alg":"ES256","cty":"JWT"}"#,
                InvalidToken::ForbiddenHeader("cty"),
            ),
            (
                r#"{"alg":"HS256"}"#,
                InvalidToken::AlgorithmNotAllowed("HS256".into()),
            ),
            (
                r#"{"alg":"es256"}"#,
                InvalidToken::AlgorithmNotAllowed("es256".into()),
            ),
        ] {
            let token = format!("{}.e30.c2ln", b64(header));
            assert_eq!(
                UntrustedJws::parse(&token, &Algorithm::ALL).unwrap_err(),
                expected,
                "{header}"
            );
        }
        for header in [
            r#"{"alg":1}"#,
            r#"{"kid":"k"}"#,
            r#"{"alg":"ES256","kid":7}"#,
            "[]",
            "{",
        ] {
            let token = format!("{}.e30.c2ln", b64(header));
            let error = UntrustedJws::parse(&token, &Algorithm::ALL).unwrap_err();
            assert!(
                matches!(error, InvalidToken::Json { part: "header", .. }),
                "{header}: {error:?}"
            );
        }
    }

    #[test]
    fn the_configured_allow_list_binds() {
        let token = format!("{}.e30.c2ln", b64(r#"{"alg":"ES256"}"#));
        let error = UntrustedJws::parse(&token, &[Algorithm::RS256]).unwrap_err();
        assert_eq!(error, InvalidToken::AlgorithmNotAllowed("ES256".into()));
    }

    #[test]
    fn long_headers_and_key_ids_are_read() {
        // Past the stack buffer (384 bytes) and past the inline key id (46): same result.
        for length in [46, 47, 500, 2000] {
            let kid = "k".repeat(length);
            let header = format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"at+jwt"}}"#);
            let token = format!("{}.e30.c2ln", b64(&header));
            let jws = UntrustedJws::parse(&token, &Algorithm::ALL).unwrap();
            assert_eq!(jws.header.kid.as_deref(), Some(kid.as_str()));
            assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
        }
        let kid = "k".repeat(2100);
        let token = format!(
            "{}.e30.c2ln",
            b64(&format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#))
        );
        assert_eq!(
            UntrustedJws::parse(&token, &Algorithm::ALL).unwrap_err(),
            InvalidToken::Malformed("header is not base64url, or too long")
        );
    }

    #[test]
    fn segments_have_one_spelling() {
        let header = b64(r#"{"alg":"ES256"}"#);
        assert!(UntrustedJws::parse(&format!("{header}.e30.c2ln"), &Algorithm::ALL).is_ok());
        // `e31` decodes to `{}` too in a lenient decoder: its last character carries a set bit
        // that no encoder writes. Padding and the standard alphabet's `+` `/` are refused too.
        for (token, problem) in [
            (format!("{header}.e31.c2ln"), "payload is not base64url"),
            (format!("{header}.e30=.c2ln"), "payload is not base64url"),
            (format!("{header}.e30.c2l"), "signature is not base64url"),
            (format!("{header}.e30.c2l+"), "signature is not base64url"),
            (format!("{header}.e30.c2l/"), "signature is not base64url"),
            (
                format!("{header}=.e30.c2ln"),
                "header is not base64url, or too long",
            ),
            (
                format!("{header}x.e30.c2ln"),
                "header is not base64url, or too long",
            ),
        ] {
            let error = UntrustedJws::parse(&token, &Algorithm::ALL).unwrap_err();
            assert_eq!(error, InvalidToken::Malformed(problem), "{token}");
        }
    }

    #[test]
    fn a_token_that_parses_has_bearer_syntax() {
        // The validator skips the `b64token` scan for a token that parses.
        let token = format!("{}.e30.c2ln", b64(r#"{"alg":"ES256"}"#));
        assert!(UntrustedJws::parse(&token, &Algorithm::ALL).is_ok());
        let mut variants = vec![
            format!("{token}="),
            format!("{token}=="),
            format!("{token} "),
        ];
        for position in 0..=token.len() {
            for other in (0..=127u8).map(char::from).chain(['é', '€']) {
                let mut variant = token.clone();
                variant.insert(position, other);
                variants.push(variant.clone());
                if position < token.len() {
                    variant.remove(position + other.len_utf8());
                    variants.push(variant);
                }
            }
        }
        let (mut parsed, mut refused) = (0, 0);
        for variant in &variants {
            if crate::introspect::is_b64token(variant) {
                parsed += usize::from(UntrustedJws::parse(variant, &Algorithm::ALL).is_ok());
            } else {
                assert!(
                    UntrustedJws::parse(variant, &Algorithm::ALL).is_err(),
                    "{variant:?} parsed"
                );
                refused += 1;
            }
        }
        // Both kinds were tried: some variants still parse, many break the syntax.
        assert!(
            parsed > 0 && refused > 1000,
            "{parsed} parsed, {refused} refused"
        );
    }

    proptest! {
        #[test]
        fn segments_are_what_split_gives(token in "(é|[a.]){0,12}") {
            let segments: Vec<&str> = token.split('.').collect();
            let expected = match segments.len() {
                3 => TokenShape::Jws,
                5 => TokenShape::Jwe,
                _ => TokenShape::Other,
            };
            prop_assert_eq!(shape(&token), expected);
            let three = three_segments(&token).map(Vec::from);
            prop_assert_eq!(three, (segments.len() == 3).then_some(segments));
        }

        #[test]
        fn parsing_never_panics(token in ".{0,300}") {
            let _ = shape(&token);
            let _ = UntrustedJws::parse(&token, &Algorithm::ALL);
        }

        #[test]
        fn parsing_a_json_header_never_panics(header in "\\{.{0,80}\\}", payload in "[A-Za-z0-9_-]{0,40}") {
            let token = format!("{}.{payload}.c2ln", b64(&header));
            let _ = UntrustedJws::parse(&token, &Algorithm::ALL);
        }

        #[test]
        fn reading_a_key_set_never_panics(document in ".{0,300}") {
            let _ = KeySet::from_jwks(document.as_bytes(), &Algorithm::ALL, 10);
            let wrapped = format!(r#"{{"keys":[{document}]}}"#);
            let _ = KeySet::from_jwks(wrapped.as_bytes(), &Algorithm::ALL, 10);
        }
    }
}
