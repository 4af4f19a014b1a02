//! `/admin/users`: list, create, read, update attributes, set the password, delete. Users from
//! the configuration file are listed but read-only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{AdminError, object_body, string_member};
use crate::State;
use crate::users::Account;
use crate::users::PasswordError;

/// Longest attribute name.
const MAX_ATTRIBUTE_NAME: usize = 64;

/// Attribute names become claim sources: short identifiers only.
fn check_attribute_name(name: &str) -> Result<(), AdminError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_ATTRIBUTE_NAME
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(AdminError::invalid(
            format!("attributes.{name}"),
            format!("attribute names are 1 to {MAX_ATTRIBUTE_NAME} letters, digits or `_`"),
        ))
    }
}

/// `attributes` of a new user: an object of named values (no nulls).
fn new_attributes(object: &Map<String, Value>) -> Result<Map<String, Value>, AdminError> {
    match object.get("attributes") {
        None => Ok(Map::new()),
        Some(Value::Object(attributes)) => {
            for (name, value) in attributes {
                check_attribute_name(name)?;
                if value.is_null() {
                    return Err(AdminError::invalid(
                        format!("attributes.{name}"),
                        "must not be null",
                    ));
                }
            }
            Ok(attributes.clone())
        }
        Some(_) => Err(AdminError::invalid("attributes", "must be a JSON object")),
    }
}

fn stored_user_json(record: &Account) -> Value {
    json!({
        "username": record.username,
        "sub": record.id,
        "attributes": record.attributes,
        "source": "store",
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    })
}

fn configured_user_json(user: &Account) -> Value {
    json!({
        "username": user.username,
        "sub": user.username,
        "attributes": user.attributes,
        "source": "configuration",
    })
}

fn configured<'a>(state: &'a State, username: &str) -> Option<&'a Account> {
    state
        .config()
        .users
        .iter()
        .find(|user| user.username == username)
}

/// `GET /admin/users`: configured users, then stored ones.
pub(crate) async fn list_users(AxumState(state): AxumState<State>) -> Result<Response, AdminError> {
    let mut users: Vec<Value> = state
        .config()
        .users
        .iter()
        .map(configured_user_json)
        .collect();
    users.extend(
        state
            .store()
            .list_users()
            .await?
            .iter()
            .map(stored_user_json),
    );
    Ok(Json(json!({ "users": users })).into_response())
}

/// `GET /admin/users/{username}`.
pub(crate) async fn get_user(
    AxumState(state): AxumState<State>,
    Path(username): Path<String>,
) -> Result<Response, AdminError> {
    if let Some(user) = configured(&state, &username) {
        return Ok(Json(configured_user_json(user)).into_response());
    }
    match state.store().find_user_by_name(&username).await? {
        Some(record) => Ok(Json(stored_user_json(&record)).into_response()),
        None => Err(AdminError::not_found("user", &username)),
    }
}

/// `POST /admin/users` `{"username", "password", "attributes"?}` → 201 with the user.
pub(crate) async fn create_user(
    AxumState(state): AxumState<State>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let object = object_body(&body, &["username", "password", "attributes"])?;
    let username = string_member(&object, "username")?;
    let password = string_member(&object, "password")?;
    let attributes = new_attributes(&object)?;
    let record = state
        .directory()
        .create_user(username, password, attributes, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(stored_user_json(&record))).into_response())
}

/// 409 for a user of the configuration file: read-only here.
fn refuse_configured(state: &State, username: &str) -> Result<(), AdminError> {
    match configured(state, username) {
        Some(_) => Err(AdminError::conflict(format!(
            "user `{username}` is defined in the configuration file: change it there"
        ))),
        None => Ok(()),
    }
}

/// The stored user, or 409 for a configured one and 404 for an unknown one.
async fn stored_user(state: &State, username: &str) -> Result<Account, AdminError> {
    refuse_configured(state, username)?;
    state
        .store()
        .find_user_by_name(username)
        .await?
        .ok_or_else(|| AdminError::not_found("user", username))
}

/// `PATCH /admin/users/{username}` `{"attributes": {name: value | null}}`: merges the values
/// given (null removes one) into the user's attributes, all or nothing.
pub(crate) async fn update_user(
    AxumState(state): AxumState<State>,
    Path(username): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let object = object_body(&body, &["attributes"])?;
    let Some(Value::Object(changes)) = object.get("attributes") else {
        return Err(AdminError::invalid(
            "attributes",
            "is required, as a JSON object",
        ));
    };
    for name in changes.keys() {
        check_attribute_name(name)?;
    }
    let mut record = stored_user(&state, &username).await?;
    let now = state.now();
    // Merged in the store, so that a change made meanwhile (the user's own, on the
    // required-claims page, or another operator's) is kept.
    record.attributes = state
        .store()
        .merge_user_attributes(&username, changes, now)
        .await?
        .ok_or_else(|| AdminError::not_found("user", &username))?;
    record.updated_at = Some(now);
    Ok(Json(stored_user_json(&record)).into_response())
}

/// `PUT /admin/users/{username}/password` `{"password"}` → 204.
pub(crate) async fn set_password(
    AxumState(state): AxumState<State>,
    Path(username): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let object = object_body(&body, &["password"])?;
    let password = string_member(&object, "password")?;
    // An operator's reset ends every session of the user.
    match state
        .users()
        .set_password(&username, password, None, state.now())
        .await
    {
        Ok(()) => {}
        Err(PasswordError::Rule(reason)) => {
            return Err(AdminError::invalid("password", reason));
        }
        Err(PasswordError::Configured(_)) => {
            return Err(AdminError::conflict(format!(
                "user `{username}` is defined in the configuration file: change it there"
            )));
        }
        Err(PasswordError::Unknown(_)) => return Err(AdminError::not_found("user", &username)),
        Err(PasswordError::Hashing) => {
            return Err(AdminError::unavailable(
                "the password could not be hashed; nothing was changed",
            ));
        }
        Err(PasswordError::Store(error)) => return Err(error.into()),
    }
    tracing::info!(%username, "admin API: password set");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /admin/users/{username}` → 204; the user's sessions end and their refresh and
/// opaque access tokens are revoked with it.
pub(crate) async fn delete_user(
    AxumState(state): AxumState<State>,
    Path(username): Path<String>,
) -> Result<Response, AdminError> {
    state
        .directory()
        .delete_user(&username, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
