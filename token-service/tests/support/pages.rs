//! Browser pages in-process: cookies, hidden form fields, redirects, the sign-in form.

use axum::body::Body;
use http::{Request, StatusCode, header};

use super::{Answer, TestService, form_encode};

/// `Set-Cookie` values of an answer.
pub fn set_cookies(answer: &Answer) -> Vec<String> {
    answer
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect()
}

/// `name=value` of the cookie `name` set by an answer.
pub fn cookie(answer: &Answer, name: &str) -> Option<String> {
    set_cookies(answer)
        .into_iter()
        .find(|cookie| cookie.starts_with(&format!("{name}=")))
        .map(|cookie| cookie.split(';').next().unwrap().to_owned())
}

/// The value of a hidden form field.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The query parameters of a redirect's `Location`.
pub fn location_params(answer: &Answer) -> (String, Vec<(String, String)>) {
    let location = answer.header("location").to_owned();
    let url = url::Url::parse(&location).unwrap();
    let params = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (location, params)
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

pub async fn get_with_cookies(service: &TestService, path: &str, cookies: &[String]) -> Answer {
    let mut request = Request::get(path);
    if !cookies.is_empty() {
        request = request.header(header::COOKIE, cookies.join("; "));
    }
    service.call(request.body(Body::empty()).unwrap()).await
}

pub struct LoginForm {
    pub nonce_cookie: String,
    pub csrf: String,
    pub request: String,
}

pub async fn login_form(service: &TestService, query: &str) -> LoginForm {
    let page = get_with_cookies(service, &format!("/authorize?{query}"), &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    LoginForm {
        nonce_cookie: cookie(&page, "scopegate_login")
            .or_else(|| cookie(&page, "__Host-scopegate_login"))
            .unwrap(),
        csrf: hidden(&page.text, "csrf"),
        request: hidden(&page.text, "request"),
    }
}

pub async fn submit(
    service: &TestService,
    form: &LoginForm,
    username: &str,
    password: &str,
) -> Answer {
    service.call(login_request(form, username, password)).await
}

/// The POST of the sign-in form.
pub fn login_request(form: &LoginForm, username: &str, password: &str) -> Request<Body> {
    let body = format!(
        "csrf={}&request={}&username={}&password={}",
        form_encode(&form.csrf),
        form_encode(&form.request),
        form_encode(username),
        form_encode(password)
    );
    Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, &form.nonce_cookie)
        .body(Body::from(body))
        .unwrap()
}

/// Signs jane in for the authorization request `query`; returns the code and the session
/// cookie.
pub async fn sign_in_jane(service: &TestService, query: &str) -> (String, String) {
    let form = login_form(service, query).await;
    let answer = submit(service, &form, "jane", "jane-password-1").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let (_, params) = location_params(&answer);
    (
        param(&params, "code").unwrap().to_owned(),
        cookie(&answer, "scopegate_session").unwrap(),
    )
}
