//! A person signing in over plain HTTP, as a browser would without one: the authorization
//! request, the sign-in form (its CSRF token and request, the login cookie), the redirect with
//! the code.

use reqwest::StatusCode;

/// A client that does not follow redirects (the code is in the first one).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `value` form-encoded.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The `name=value` of the cookie `name` an answer sets.
pub fn cookie(answer: &reqwest::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(|value| value.split(';').next().unwrap().to_owned())
}

/// The value of the hidden form field `name`.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].replace("&amp;", "&")
}

/// The code in a redirect to the client.
pub fn code_in(answer: &reqwest::Response) -> String {
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .expect("a code in the redirect")
}

/// Signs `username` in at the service at `base` for the authorization request `query`: the
/// session cookie and the code.
pub async fn sign_in(base: &str, query: &str, username: &str, password: &str) -> (String, String) {
    let page = http()
        .get(format!("{base}/authorize?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let login_cookie = cookie(&page, "scopegate_login").unwrap();
    let html = page.text().await.unwrap();
    let answer = http()
        .post(format!("{base}/login"))
        .header("cookie", login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&request={}&username={}&password={}",
            encode(&hidden(&html, "csrf")),
            encode(&hidden(&html, "request")),
            encode(username),
            encode(password),
        ))
        .send()
        .await
        .unwrap();
    let session = cookie(&answer, "scopegate_session").expect("signed in");
    (session, code_in(&answer))
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}
