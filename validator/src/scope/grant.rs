//! [`grant`]: which of the scopes a client asked for it gets (the token service's rule).

use super::*;

/// Some requested scopes grant nothing to this client (RFC 6749 §5.2 `invalid_scope`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("requested scope not allowed for this client: {}", ScopeList(.scopes))]
pub struct Ungrantable {
    scopes: Vec<Scope>,
}

impl Ungrantable {
    /// Every requested scope that granted nothing.
    #[must_use]
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }
}

/// Decides which scopes a client gets for the scopes it requested (token-service side).
///
/// For each requested scope:
///
/// * `p:n` (suffix left out): every allowed scope `p:n:<suffix>` (`*` included), and `p:n`
///   itself if allowed;
/// * `p:n:s`: granted when `p:n:s` or `p:n:*` is allowed;
/// * `p:n:*`: granted only when `p:n:*` is allowed;
/// * plain: granted only when allowed as is.
///
/// The result is de-duplicated. What to grant when no `scope` parameter was sent is up to the
/// caller (the client's default scopes).
///
/// # Errors
///
/// [`Ungrantable`] listing every requested scope that grants nothing.
pub fn grant(requested: &ScopeSet, allowed: &ScopeSet) -> Result<ScopeSet, Ungrantable> {
    let mut granted = Vec::new();
    let mut ungrantable = Vec::new();
    for scope in requested {
        let before = granted.len();
        match scope.shape {
            Shape::Structured { name_end, .. } if name_end == scope.raw.len() => {
                granted.extend(
                    allowed
                        .starting_with(scope.as_str())
                        .filter(|allowed| allowed.covers(scope))
                        .cloned(),
                );
            }
            _ => {
                if allowed.covers(scope) {
                    granted.push(scope.clone());
                }
            }
        }
        if granted.len() == before {
            ungrantable.push(scope.clone());
        }
    }
    if ungrantable.is_empty() {
        Ok(ScopeSet::from_vec(granted))
    } else {
        Err(Ungrantable {
            scopes: ungrantable,
        })
    }
}
