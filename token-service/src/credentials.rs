//! The one check of a presented credential — a client's or an API's secret or signed
//! assertion, a user's password — at every entry point (`/token`, `/introspect`, `/revoke`, the sign-in and
//! password pages). A secret the service saw match before passes at once. Any other is counted
//! first ([`Throttle`](crate::throttle::Throttle)), then hashed on a bounded slot (Argon2id,
//! on the verifier's own threads); a right one takes its count back. Unknown ids and usernames
//! take as long as wrong secrets and get the same answer.

use std::sync::Arc;
use std::time::Duration;

use crate::State;
use crate::client_assertion::{self, Refusal};
use crate::config::keys::AssertionKeys;
use crate::config::{Api, Client};
use crate::secret::{Checked, Counted, SecretHash, decoy_hash};
use crate::store::StoreError;
use crate::telemetry::metrics;
use crate::throttle::{Admission, Limits};
use crate::users::Account;

/// The answer to a credential.
#[derive(Debug)]
#[must_use]
pub enum Verdict<T> {
    /// It is right.
    Accepted(T),
    /// It is not (the same answer whether the id or username exists or not).
    Wrong,
    /// Too many failed attempts: not checked; try again after `retry_after`.
    Throttled {
        /// Until the limit lifts.
        retry_after: Duration,
    },
    /// Every hashing slot stayed busy: not checked; try again shortly.
    Busy,
}

/// Checks the secret of client `id` (a public client never passes: it has none).
///
/// # Errors
///
/// [`StoreError`] if the store fails; the request is then refused.
pub async fn client(
    state: &State,
    id: &str,
    secret: &str,
    address: Option<&str>,
) -> Result<Verdict<Arc<Client>>, StoreError> {
    let client = state
        .registry()
        .client(id)
        .await?
        .filter(|client| !client.is_public());
    let hash = client.as_ref().and_then(|client| client.secret.clone());
    let limits = Limits::client_auth(id, address);
    let caller = [id, address.unwrap_or_default()];
    let verdict = check(state, Kind::Secret, hash.as_ref(), secret, caller, &limits).await?;
    Ok(counted("client_secret", accept(verdict, client)))
}

/// Checks client `id`'s `private_key_jwt` assertion against the keys it registered (a client
/// without keys never passes). No hash runs: the signature is the proof.
///
/// # Errors
///
/// [`StoreError`] if the store fails; the request is then refused.
pub async fn client_assertion(
    state: &State,
    id: &str,
    assertion: &str,
) -> Result<Verdict<Arc<Client>>, StoreError> {
    let Some(client) = state.registry().client(id).await? else {
        return Ok(counted("client_assertion", Verdict::Wrong));
    };
    let Some(keys) = &client.keys else {
        return Ok(counted("client_assertion", Verdict::Wrong));
    };
    let verdict = assertion_verdict(state, id, keys, assertion).await?;
    Ok(counted("client_assertion", accept(verdict, Some(client))))
}

/// The verdict on `party`'s assertion; a refusal is logged (a party whose `jwks_uri` cannot
/// be read at warn: its owner must hear of it).
async fn assertion_verdict(
    state: &State,
    party: &str,
    keys: &AssertionKeys,
    assertion: &str,
) -> Result<Verdict<()>, StoreError> {
    Ok(
        match client_assertion::verify(state, party, keys, assertion).await? {
            Ok(()) => Verdict::Accepted(()),
            Err(refusal @ Refusal::KeysUnavailable(_)) => {
                tracing::warn!(party, ?refusal, "a party's keys could not be read");
                Verdict::Wrong
            }
            Err(refusal) => {
                tracing::debug!(party, ?refusal, "client assertion refused");
                Verdict::Wrong
            }
        },
    )
}

/// Checks API `id`'s `private_key_jwt` assertion at `/introspect` (an API without keys never
/// passes).
///
/// # Errors
///
/// [`StoreError`] if the store fails; the request is then refused.
pub async fn api_assertion(
    state: &State,
    id: &str,
    assertion: &str,
) -> Result<Verdict<Arc<Api>>, StoreError> {
    let Some(api) = state.registry().api(id).await? else {
        return Ok(counted("api_assertion", Verdict::Wrong));
    };
    let Some(keys) = &api.keys else {
        return Ok(counted("api_assertion", Verdict::Wrong));
    };
    let verdict = assertion_verdict(state, id, keys, assertion).await?;
    Ok(counted("api_assertion", accept(verdict, Some(api))))
}

/// Checks the introspection secret of API `id` (an API with keys instead never passes).
///
/// # Errors
///
/// [`StoreError`] if the store fails; the request is then refused.
pub async fn api(
    state: &State,
    id: &str,
    secret: &str,
    address: Option<&str>,
) -> Result<Verdict<Arc<Api>>, StoreError> {
    let api = state.registry().api(id).await?;
    let hash = api.as_ref().and_then(|api| api.secret.clone());
    let limits = Limits::client_auth(id, address);
    let caller = [id, address.unwrap_or_default()];
    let verdict = check(state, Kind::Secret, hash.as_ref(), secret, caller, &limits).await?;
    Ok(counted("api_secret", accept(verdict, api)))
}

/// Checks a user's password (the sign-in and password pages).
///
/// # Errors
///
/// [`StoreError`] if the store fails; the request is then refused.
pub async fn password(
    state: &State,
    username: &str,
    password: &str,
    address: Option<&str>,
) -> Result<Verdict<Arc<Account>>, StoreError> {
    let account = state.users().find(username).await?;
    let hash = account.as_ref().map(|account| account.password.clone());
    let limits = Limits::sign_in(username, address);
    let caller = [username, address.unwrap_or_default()];
    let verdict = check(
        state,
        Kind::Password,
        hash.as_ref(),
        password,
        caller,
        &limits,
    )
    .await?;
    Ok(counted("password", accept(verdict, account)))
}

/// What is checked: a secret the service may remember (clients, APIs), or a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A remembered secret passes uncounted, unless this instance saw the caller refused.
    Secret,
    /// Always counted first: a password is never let through uncounted, so that a guesser
    /// past the limit cannot tell the right one by the answer.
    Password,
}

/// Whether `secret` matches `hash` (`None`: no such id; the decoy hash is checked instead, so
/// that it takes as long): remembered, or counted under `limits` and then hashed — once for
/// all the requests presenting the same secret at the same time, so that a client's burst of
/// requests with its right secret is one attempt, not many.
async fn check(
    state: &State,
    kind: Kind,
    hash: Option<&SecretHash>,
    secret: &str,
    caller: [&str; 2],
    limits: &Limits,
) -> Result<Verdict<()>, StoreError> {
    let (throttle, now) = (state.throttle(), state.now());
    let verifier = match kind {
        Kind::Secret => state.secrets(),
        Kind::Password => state.passwords(),
    };
    let hash = hash.unwrap_or_else(|| decoy_hash());
    if kind == Kind::Secret {
        if let Some(retry_after) = throttle.refused_here(limits, now) {
            return Ok(Verdict::Throttled { retry_after });
        }
        if verifier.remembers(hash, secret) {
            return Ok(Verdict::Accepted(()));
        }
    }
    let counted = throttle.admit(limits, now);
    let count = async move {
        Ok::<_, StoreError>(match counted.await? {
            Admission::Admitted(attempt) => Counted::Go(attempt),
            Admission::Refused { retry_after } => Counted::Refused(retry_after),
        })
    };
    let checked = verifier
        .check(hash, secret, &caller, count, |attempt| attempt.succeeded())
        .await
        .map_err(|error| {
            Arc::try_unwrap(error).unwrap_or_else(|shared| StoreError::Shared(shared.to_string()))
        })?;
    Ok(match checked {
        Checked::Right => Verdict::Accepted(()),
        Checked::Wrong => Verdict::Wrong,
        Checked::Refused(retry_after) => Verdict::Throttled { retry_after },
        Checked::Busy => Verdict::Busy,
    })
}

/// Counts `verdict` in the metrics, by `kind` of credential.
fn counted<T>(kind: &'static str, verdict: Verdict<T>) -> Verdict<T> {
    let result = match &verdict {
        Verdict::Accepted(_) => "accepted",
        Verdict::Wrong => "wrong",
        Verdict::Throttled { .. } => "throttled",
        Verdict::Busy => "busy",
    };
    metrics::credential_checked(kind, result);
    verdict
}

/// The verdict on a secret, for the party it was presented for (none: always wrong).
fn accept<T>(verdict: Verdict<()>, party: Option<T>) -> Verdict<T> {
    match (verdict, party) {
        (Verdict::Accepted(()), Some(party)) => Verdict::Accepted(party),
        (Verdict::Accepted(()) | Verdict::Wrong, _) => Verdict::Wrong,
        (Verdict::Throttled { retry_after }, _) => Verdict::Throttled { retry_after },
        (Verdict::Busy, _) => Verdict::Busy,
    }
}
