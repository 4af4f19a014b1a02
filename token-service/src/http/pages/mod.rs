//! The browser pages, in one folder: the page kit ([`kit`]: layout, escaping, protective
//! headers, redirects to clients), CSRF ([`csrf`]), cookies ([`cookies`]), and each page —
//! `/authorize`, the sign-in, the required claims, sign-up, the password change and logout.
//! The rules they apply live in the domain: the authorization request in
//! [`crate::grant::authorization_request`], users in [`crate::directory`] and
//! [`crate::users`], sessions in [`crate::session`].
//!
//! Dependencies run one way: the pages use [`finish`] (complete a request), which uses
//! [`claims_form`]; those use the kit, CSRF and cookies; nothing below imports above.

mod authorize;
mod claims;
mod claims_form;
mod cookies;
mod csrf;
mod finish;
mod kit;
mod login;
mod logout;
mod password;
mod signup;

use axum::Router;
use axum::routing::{get, post};

pub(crate) use csrf::CsrfKey;

use crate::State;

/// What a page handler has: the service, and the CSRF key (the HTTP side's, not the domain's).
#[derive(Clone, Debug)]
pub(crate) struct Pages {
    state: State,
    csrf: CsrfKey,
}

impl std::ops::Deref for Pages {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

/// The pages' routes.
pub(crate) fn routes(state: State, csrf: CsrfKey) -> Router<State> {
    Router::new()
        .route("/authorize", get(authorize::authorize))
        .route("/login", post(login::login))
        .route("/claims", post(claims::submit))
        .route("/signup", get(signup::show).post(signup::create))
        .route("/logout", get(logout::logout).post(logout::confirm_logout))
        .route("/password", get(password::show).post(password::change))
        .route("/assets/login.css", get(kit::stylesheet))
        .with_state(Pages { state, csrf })
}
