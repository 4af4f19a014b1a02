//! [`Requirement`]: what a route needs, and [`Insufficient`], why a token falls short.

use super::*;

/// The scopes a route needs, checked against the scopes a token was granted.
///
/// Built once at start-up from configuration; every constructor that takes scope strings fails
/// on bad input rather than at request time, and none builds a requirement that silently allows
/// everything except [`Requirement::any_valid_token`], which says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    kind: RequirementKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum RequirementKind {
    AllOf(Vec<Scope>),
    AnyOf(Vec<Scope>),
    /// OR of AND-sets; no alternatives denies everything.
    Policy(Vec<Vec<Scope>>),
    AnyValidToken,
    MethodDerived(Box<MethodScopes>),
}

/// `p:n` and its three method-derived scopes, built once so `check` does not allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MethodScopes {
    base: Scope,
    read: Scope,
    write: Scope,
    delete: Scope,
}

impl MethodScopes {
    const fn for_permission(&self, permission: Permission) -> &Scope {
        match permission {
            Permission::Read => &self.read,
            Permission::Write => &self.write,
            Permission::Delete => &self.delete,
        }
    }
}

/// Parses a configured list, dropping duplicates but keeping the configured order.
fn parse_list(scopes: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Vec<Scope>, ScopeError> {
    let mut parsed: Vec<Scope> = Vec::new();
    for scope in scopes {
        let scope = Scope::parse(scope.as_ref())?;
        if !parsed.contains(&scope) {
            parsed.push(scope);
        }
    }
    Ok(parsed)
}

impl Requirement {
    /// Every listed scope must be covered.
    ///
    /// # Errors
    ///
    /// A [`ScopeError`] for an invalid scope; [`ScopeError::EmptyRequirement`] for an empty
    /// list, which would allow every request (fail closed).
    pub fn all_of(scopes: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, ScopeError> {
        let scopes = parse_list(scopes)?;
        if scopes.is_empty() {
            return Err(ScopeError::EmptyRequirement(
                "all_of lists no scopes, which would allow every request; refused (fail closed)",
            ));
        }
        Ok(Self {
            kind: RequirementKind::AllOf(scopes),
        })
    }

    /// At least one listed scope must be covered.
    ///
    /// # Errors
    ///
    /// A [`ScopeError`] for an invalid scope; [`ScopeError::EmptyRequirement`] for an empty
    /// list, which is almost certainly a configuration mistake (to deny everything on purpose,
    /// use an empty [`Requirement::policy`]).
    pub fn any_of(scopes: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, ScopeError> {
        let scopes = parse_list(scopes)?;
        if scopes.is_empty() {
            return Err(ScopeError::EmptyRequirement(
                "any_of lists no scopes and could never be satisfied; refused as a likely \
                 mistake (an empty policy denies on purpose)",
            ));
        }
        Ok(Self {
            kind: RequirementKind::AnyOf(scopes),
        })
    }

    /// An OR of AND-sets: satisfied when every scope of at least one alternative is covered.
    ///
    /// A policy with no alternatives is allowed and denies every request.
    ///
    /// # Errors
    ///
    /// A [`ScopeError`] for an invalid scope; [`ScopeError::EmptyRequirement`] when an
    /// alternative lists no scopes, which would allow every request (fail closed).
    pub fn policy(
        alternatives: impl IntoIterator<Item = impl IntoIterator<Item = impl AsRef<str>>>,
    ) -> Result<Self, ScopeError> {
        let mut parsed: Vec<Vec<Scope>> = Vec::new();
        for alternative in alternatives {
            let alternative = parse_list(alternative)?;
            if alternative.is_empty() {
                return Err(ScopeError::EmptyRequirement(
                    "a policy alternative lists no scopes, which would allow every request; \
                     refused (fail closed)",
                ));
            }
            if !parsed.contains(&alternative) {
                parsed.push(alternative);
            }
        }
        Ok(Self {
            kind: RequirementKind::Policy(parsed),
        })
    }

    /// Satisfied by no token: what a route that must stay closed requires (an empty
    /// [`policy`](Self::policy)).
    #[must_use]
    pub const fn deny_all() -> Self {
        Self {
            kind: RequirementKind::Policy(Vec::new()),
        }
    }

    /// Satisfied by any valid token, whatever its scopes (even none).
    #[must_use]
    pub const fn any_valid_token() -> Self {
        Self {
            kind: RequirementKind::AnyValidToken,
        }
    }

    /// Requires `prefix:name:<permission>`, the permission coming from the HTTP method
    /// (see [`Permission::for_method`]). A method that maps to no permission is refused.
    ///
    /// # Errors
    ///
    /// A [`ScopeError`] for an invalid scope, [`ScopeError::NotStructured`] for a plain scope,
    /// [`ScopeError::HasSuffix`] when `prefix_name` already has a suffix.
    pub fn method_derived(prefix_name: &str) -> Result<Self, ScopeError> {
        let base = Scope::parse(prefix_name)?;
        let read = base.with_suffix(Permission::Read.as_str())?;
        let write = base.with_suffix(Permission::Write.as_str())?;
        let delete = base.with_suffix(Permission::Delete.as_str())?;
        Ok(Self {
            kind: RequirementKind::MethodDerived(Box::new(MethodScopes {
                base,
                read,
                write,
                delete,
            })),
        })
    }

    /// Checks the scopes a token was granted for a request with this HTTP method.
    ///
    /// Allocates only on failure.
    ///
    /// # Errors
    ///
    /// [`Insufficient`], carrying the scopes to name in the RFC 6750 §3 `scope` attribute of an
    /// `insufficient_scope` error.
    pub fn check(&self, granted: &ScopeSet, method: &str) -> Result<(), Insufficient> {
        match &self.kind {
            RequirementKind::AllOf(scopes) => {
                if scopes.iter().all(|scope| granted.covers(scope)) {
                    Ok(())
                } else {
                    Err(Insufficient::new(scopes.clone(), Reason::AllOf))
                }
            }
            RequirementKind::AnyOf(scopes) => {
                if scopes.iter().any(|scope| granted.covers(scope)) {
                    Ok(())
                } else {
                    Err(Insufficient::new(scopes.clone(), Reason::AnyOf))
                }
            }
            RequirementKind::Policy(alternatives) => {
                let mut closest: Option<(usize, &Vec<Scope>)> = None;
                for alternative in alternatives {
                    let missing = alternative
                        .iter()
                        .filter(|scope| !granted.covers(scope))
                        .count();
                    if missing == 0 {
                        return Ok(());
                    }
                    if closest.is_none_or(|(fewest, _)| missing < fewest) {
                        closest = Some((missing, alternative));
                    }
                }
                Err(match closest {
                    Some((_, alternative)) => {
                        Insufficient::new(alternative.clone(), Reason::PolicyClosest)
                    }
                    None => Insufficient::new(Vec::new(), Reason::EmptyPolicy),
                })
            }
            RequirementKind::AnyValidToken => Ok(()),
            RequirementKind::MethodDerived(scopes) => match Permission::for_method(method) {
                Some(permission) => {
                    let required = scopes.for_permission(permission);
                    if granted.covers(required) {
                        Ok(())
                    } else {
                        Err(Insufficient::new(
                            vec![required.clone()],
                            Reason::Method(method.to_owned()),
                        ))
                    }
                }
                // No scope would make this method acceptable: name none.
                None => Err(Insufficient::new(
                    Vec::new(),
                    Reason::UnknownMethod(method.to_owned()),
                )),
            },
        }
    }

    /// Every scope that can take part in satisfying this requirement, in order and without
    /// repeats: what a resource publishes as `scopes_supported` (RFC 9728). A method-derived
    /// requirement names its `read`, `write` and `delete` scopes;
    /// [`any_valid_token`](Self::any_valid_token) names none.
    #[must_use]
    pub fn scopes_named(&self) -> Vec<Scope> {
        let named: Vec<&Scope> = match &self.kind {
            RequirementKind::AllOf(scopes) | RequirementKind::AnyOf(scopes) => {
                scopes.iter().collect()
            }
            RequirementKind::Policy(alternatives) => alternatives.iter().flatten().collect(),
            RequirementKind::AnyValidToken => Vec::new(),
            RequirementKind::MethodDerived(scopes) => {
                vec![&scopes.read, &scopes.write, &scopes.delete]
            }
        };
        let mut unique: Vec<Scope> = Vec::with_capacity(named.len());
        for scope in named {
            if !unique.contains(scope) {
                unique.push(scope.clone());
            }
        }
        unique
    }

    /// A one-line description for logs, e.g. `all of [a b]`.
    #[must_use]
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RequirementKind::AllOf(scopes) => write!(f, "all of [{}]", ScopeList(scopes)),
            RequirementKind::AnyOf(scopes) => write!(f, "any of [{}]", ScopeList(scopes)),
            RequirementKind::Policy(alternatives) if alternatives.is_empty() => {
                f.write_str("empty policy (denies every request)")
            }
            RequirementKind::Policy(alternatives) => {
                f.write_str("policy ")?;
                for (i, alternative) in alternatives.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "[{}]", ScopeList(alternative))?;
                }
                Ok(())
            }
            RequirementKind::AnyValidToken => f.write_str("any valid token"),
            RequirementKind::MethodDerived(scopes) => {
                write!(f, "{}:<read|write|delete by method>", scopes.base)
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Reason {
    AllOf,
    AnyOf,
    PolicyClosest,
    EmptyPolicy,
    Method(String),
    UnknownMethod(String),
}

/// Renders the reason of an [`Insufficient`] together with its scopes.
struct Explain<'a>(&'a Reason, &'a [Scope]);

impl fmt::Display for Explain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scopes = ScopeList(self.1);
        match self.0 {
            Reason::AllOf => write!(f, "all of [{scopes}] are required"),
            Reason::AnyOf => write!(f, "one of [{scopes}] is required"),
            Reason::PolicyClosest => write!(
                f,
                "no policy alternative is satisfied; the closest requires [{scopes}]"
            ),
            Reason::EmptyPolicy => f.write_str("the policy has no alternatives and denies"),
            Reason::Method(method) => write!(f, "method {method:?} requires [{scopes}]"),
            Reason::UnknownMethod(method) => write!(
                f,
                "method {method:?} maps to no permission on [{scopes}]; denied (fail closed)"
            ),
        }
    }
}

/// The granted scopes do not satisfy a [`Requirement`] (RFC 6750 §3.1 `insufficient_scope`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("insufficient scope: {}", Explain(.reason, .required))]
pub struct Insufficient {
    required: Vec<Scope>,
    reason: Reason,
}

impl Insufficient {
    const fn new(required: Vec<Scope>, reason: Reason) -> Self {
        Self { required, reason }
    }

    /// The scopes to name in the RFC 6750 §3 `scope="…"` attribute: every scope of an `all_of`,
    /// every alternative of an `any_of`, the scopes of the policy alternative missing the
    /// fewest (none for an empty policy), `p:n:<permission>` for a method-derived requirement
    /// (none when the method maps to no permission: no scope would help).
    #[must_use]
    pub fn required_scopes(&self) -> &[Scope] {
        &self.required
    }
}
