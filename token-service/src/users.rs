//! People who sign in: users from the configuration (their `sub` is their username) and users
//! added to the store (a random `sub`), with their password check.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::secret::{CheckError, SecretHash, SecretVerifier};
use crate::store::{Store, StoreError};

/// The shortest password accepted for a new or changed password.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// A user — the one model, whether configured (read-only, `sub` = username) or stored (a
/// random `sub`): what the configuration file, the store, the CLI, the admin API and the pages
/// all read and write.
#[derive(Clone)]
pub struct Account {
    /// The `sub` of their tokens.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Argon2id hash of the password.
    pub password: SecretHash,
    /// Standard and custom claims.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Whether the account lives in the configuration (read-only here).
    pub configured: bool,
    /// When a stored user was created (seconds since the epoch); `None` when configured.
    pub created_at: Option<u64>,
    /// When a stored user last changed; `None` when configured.
    pub updated_at: Option<u64>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Account")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Checks a new password: long enough, not blank, not the username.
///
/// # Errors
///
/// A sentence for the person choosing it.
pub fn check_new_password(username: &str, password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.trim().is_empty() || password.eq_ignore_ascii_case(username) {
        return Err("the password must not be blank or the username".to_owned());
    }
    Ok(())
}

/// Checks a username chosen at sign-up: 3 to 64 letters, digits or `. _ - @ +` (an email
/// address fits).
///
/// # Errors
///
/// A sentence for the person choosing it.
pub fn check_new_username(username: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-@+".contains(c);
    if (3..=64).contains(&username.len()) && username.chars().all(allowed) {
        Ok(())
    } else {
        Err("the username must be 3 to 64 letters, digits or . _ - @ +".to_owned())
    }
}

/// The Argon2id hash of a password, computed off the async workers (it takes tens of
/// milliseconds). `None` if hashing could not run.
pub async fn hash_password(password: &str) -> Option<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || SecretHash::hash(&password).as_str().to_owned())
        .await
        .ok()
}

/// A new stored user: a random `sub` and the password's hash (the rules are
/// [`Directory::create_user`](crate::directory::Directory::create_user)'s). `None` if hashing
/// could not run.
pub async fn new_account(
    username: &str,
    password: &str,
    attributes: serde_json::Map<String, serde_json::Value>,
    now: u64,
) -> Option<Account> {
    let hash = hash_password(password).await?;
    Some(Account {
        id: crate::secret::random_token()[..22].to_owned(),
        username: username.to_owned(),
        password: SecretHash::parse(&hash).ok()?,
        attributes,
        configured: false,
        created_at: Some(now),
        updated_at: Some(now),
    })
}

/// A configured user: `sub` is the username.
#[must_use]
pub fn configured_account(
    username: String,
    password: SecretHash,
    attributes: serde_json::Map<String, serde_json::Value>,
) -> Account {
    Account {
        id: username.clone(),
        username,
        password,
        attributes,
        configured: true,
        created_at: None,
        updated_at: None,
    }
}

/// Why a password could not be set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The new password breaks the password rule (a sentence for the person).
    #[error("{0}")]
    Rule(String),
    /// The user lives in the configuration, read-only here.
    #[error("user `{0}` is defined in the configuration: change its password_hash there")]
    Configured(String),
    /// No stored user of this name.
    #[error("no stored user `{0}`")]
    Unknown(String),
    /// The password could not be hashed; nothing changed.
    #[error("the password could not be hashed; nothing was changed")]
    Hashing,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Configured and stored users.
#[derive(Clone)]
pub struct Users {
    configured: Arc<HashMap<String, Arc<Account>>>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Users")
            .field("configured", &self.configured.len())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// The configured users and the store.
    #[must_use]
    pub fn new(config: &Config, store: Arc<dyn Store>) -> Self {
        let _ = crate::secret::decoy_hash();
        Self {
            configured: Arc::new(
                config
                    .users
                    .iter()
                    .map(|user| (user.username.clone(), Arc::new(user.clone())))
                    .collect(),
            ),
            store,
        }
    }

    /// A user by login name: configured ones first, then the store.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store fails.
    pub async fn find(&self, username: &str) -> Result<Option<Arc<Account>>, StoreError> {
        if let Some(account) = self.configured.get(username) {
            return Ok(Some(Arc::clone(account)));
        }
        match self.store.find_user_by_name(username).await? {
            Some(account) => Ok(Some(Arc::new(account))),
            None => Ok(None),
        }
    }

    /// Whether `username` is taken, by a configured or a stored user, ignoring ASCII case:
    /// `Jane` cannot sign up next to `jane`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store fails.
    pub async fn name_taken(&self, username: &str) -> Result<bool, StoreError> {
        if self
            .configured
            .keys()
            .any(|name| name.eq_ignore_ascii_case(username))
        {
            return Ok(true);
        }
        self.store.username_taken(username).await
    }

    /// Whether `username` is a configured user (read-only here).
    #[must_use]
    pub fn is_configured(&self, username: &str) -> bool {
        self.configured.contains_key(username)
    }

    /// Gives a stored user a new password — checked against the password rule, hashed off the
    /// async workers — and ends what the old one opened: every session of theirs except
    /// `keep_sid` (the one that made the change, if any) is ended, and every refresh token
    /// family not started in it is revoked with the access tokens of its grant. The one way a
    /// password changes: the password page, the admin API and the CLI all call it.
    ///
    /// # Errors
    ///
    /// [`PasswordError`]; nothing changes unless the password was set.
    pub async fn set_password(
        &self,
        username: &str,
        password: &str,
        keep_sid: Option<&str>,
        now: u64,
    ) -> Result<(), PasswordError> {
        check_new_password(username, password).map_err(PasswordError::Rule)?;
        if self.is_configured(username) {
            return Err(PasswordError::Configured(username.to_owned()));
        }
        let Some(user) = self.store.find_user_by_name(username).await? else {
            return Err(PasswordError::Unknown(username.to_owned()));
        };
        let hash = hash_password(password)
            .await
            .ok_or(PasswordError::Hashing)?;
        if !self.store.set_password(username, &hash, now).await? {
            return Err(PasswordError::Unknown(username.to_owned()));
        }
        // The new password is in force first: whoever held the old one cannot sign in again
        // while the rest is being ended.
        let others = |sid: &str| keep_sid != Some(sid);
        for sid in self.store.user_sessions(&user.id).await? {
            if others(&sid) {
                crate::session::end(&*self.store, &sid, now).await?;
            }
        }
        let mut revoked = 0;
        for (family, sid) in self.store.user_families(&user.id).await? {
            if others(&sid) {
                revoked += self.store.revoke_grant(&family, now).await?;
            }
        }
        tracing::info!(
            user = %user.id,
            access_tokens_revoked = revoked,
            "password changed; other sessions ended and their refresh tokens revoked"
        );
        Ok(())
    }

    /// A user by `sub` (configured users' `sub` is their username).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store fails.
    pub async fn find_by_id(&self, id: &str) -> Result<Option<Arc<Account>>, StoreError> {
        if let Some(account) = self.configured.get(id) {
            return Ok(Some(Arc::clone(account)));
        }
        match self.store.find_user_by_id(id).await? {
            Some(account) => Ok(Some(Arc::new(account))),
            None => Ok(None),
        }
    }

    /// The user if `password` is theirs. An unknown username takes as long as a wrong
    /// password and gives the same answer.
    ///
    /// # Errors
    ///
    /// [`CheckError`] if the store fails or no hashing slot frees up in time.
    pub async fn authenticate(
        &self,
        verifier: &SecretVerifier,
        username: &str,
        password: &str,
    ) -> Result<Option<Arc<Account>>, CheckError> {
        let account = self.find(username).await?;
        let hash = account.as_ref().map_or_else(
            || crate::secret::decoy_hash().clone(),
            |account| account.password.clone(),
        );
        let matches = verifier.verify(&hash, password).await?;
        Ok(account.filter(|_| matches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_passwords_must_be_long_and_not_the_username() {
        assert!(check_new_password("jane", "short").is_err());
        assert!(check_new_password("janedoe123", "JaneDoe123").is_err());
        assert!(check_new_password("jane", "          ").is_err());
        assert!(check_new_password("jane", "correct horse battery").is_ok());
    }
}
