use super::*;

use proptest::prelude::*;

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

fn set(s: &str) -> ScopeSet {
    ScopeSet::parse_space_separated(s).unwrap()
}

fn strings(scopes: &[Scope]) -> Vec<&str> {
    scopes.iter().map(Scope::as_str).collect()
}

const _: () = {
    const fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Scope>();
    assert_traits::<ScopeSet>();
    assert_traits::<Requirement>();
    assert_traits::<Insufficient>();
    assert_traits::<Ungrantable>();
    assert_traits::<ScopeError>();
    assert_traits::<Permission>();
};

/// Checks one row of the scope table, both through `Scope::covers` and `ScopeSet::covers`.
fn check_row(required: &str, satisfying: &[&str], not_satisfying: &[&str]) {
    let required = scope(required);
    for granted in satisfying {
        assert!(
            scope(granted).covers(&required),
            "{granted} should cover {required}"
        );
        assert!(
            set(granted).covers(&required),
            "{{{granted}}} should cover {required}"
        );
    }
    for granted in not_satisfying {
        assert!(
            !scope(granted).covers(&required),
            "{granted} should not cover {required}"
        );
    }
    let all_not = ScopeSet::from_scopes(not_satisfying.iter().map(|s| scope(s)));
    assert!(
        !all_not.covers(&required),
        "{all_not} should not cover {required}"
    );
}

#[test]
fn plain_openid_is_covered_only_by_itself_case_sensitively() {
    check_row("openid", &["openid"], &["OpenID", "openid:x"]);
}

#[test]
fn named_suffix_is_covered_by_itself_or_the_star_suffix() {
    check_row(
        "akamai:social_profile:read",
        &["akamai:social_profile:read", "akamai:social_profile:*"],
        &[
            "akamai:social_profile",
            "akamai:social_profile:write",
            "akamai:*:read",
        ],
    );
}

#[test]
fn star_suffix_is_covered_only_by_the_star_suffix() {
    check_row(
        "akamai:social_profile:*",
        &["akamai:social_profile:*"],
        &["akamai:social_profile:read"],
    );
}

#[test]
fn omitted_suffix_is_covered_by_the_resource_with_any_suffix() {
    check_row(
        "akamai:social_profile",
        &[
            "akamai:social_profile",
            "akamai:social_profile:read",
            "akamai:social_profile:write",
            "akamai:social_profile:delete",
            "akamai:social_profile:*",
            "akamai:social_profile:custom_1.x-y",
        ],
        &[
            "akamai:other:read",
            "akamai:social_profile_x:read",
            "akamai:social_profilex",
            "akamai:social_profile:a:b",
            "akamai:social",
            "other:social_profile:read",
        ],
    );
}

#[test]
fn plain_scopes_that_look_structured_match_only_themselves() {
    check_row(
        "akamai:*:read",
        &["akamai:*:read"],
        &["akamai:x:read", "akamai:*:*"],
    );
    check_row("a:b:c:d", &["a:b:c:d"], &["a:b", "a:b:*", "a:b:c"]);
    check_row(
        "https://x/y",
        &["https://x/y"],
        &["https://x/y/z", "https://x"],
    );
}

#[test]
fn structured_required_is_not_covered_by_lookalike_plain_grants() {
    assert!(!scope("a:b:c:d").covers(&scope("a:b")));
    assert!(!scope("a:b:c:d").covers(&scope("a:b:c")));
    assert!(!scope("a:b:*x").covers(&scope("a:b:x")));
}

#[test]
fn every_printable_ascii_but_space_quote_and_backslash_is_valid() {
    let all: String = (0x21u8..=0x7e)
        .filter(|b| *b != b'"' && *b != b'\\')
        .map(char::from)
        .collect();
    assert_eq!(scope(&all).as_str(), all);
}

#[test]
fn invalid_characters_are_rejected_with_their_position() {
    let cases: &[(&str, usize, char)] = &[
        ("a b", 1, ' '),
        ("a\"b", 1, '"'),
        ("ab\\", 2, '\\'),
        ("a\tb", 1, '\t'),
        ("\n", 0, '\n'),
        ("a\u{7f}", 1, '\u{7f}'),
        ("ab\u{0}", 2, '\u{0}'),
        ("xé", 1, 'é'),
        ("日本", 0, '日'),
    ];
    for (input, position, character) in cases {
        assert_eq!(
            Scope::parse(input),
            Err(ScopeError::InvalidCharacter {
                scope: (*input).to_owned(),
                position: *position,
                character: *character,
            }),
            "{input:?}"
        );
    }
}

#[test]
fn empty_scope_is_rejected() {
    assert_eq!(Scope::parse(""), Err(ScopeError::Empty));
}

#[test]
fn invalid_character_message_escapes_the_scope() {
    let message = Scope::parse("a\nb\u{1b}[31m").unwrap_err().to_string();
    assert!(
        !message.contains('\n') && !message.contains('\u{1b}'),
        "{message}"
    );
    assert!(message.contains(r#""a\nb\u{1b}[31m""#), "{message}");
    assert!(message.contains("at byte 1"), "{message}");
}

#[test]
fn scopes_are_classified_structured_or_plain() {
    /// (scope, prefix, name, suffix); prefix `None` means plain.
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<Suffix<'static>>,
    );
    let cases: &[Case] = &[
        ("openid", None, None, None),
        ("https://x/y", None, None, None),
        ("akamai:*:read", None, None, None),
        ("*:n", None, None, None),
        ("a:b:c:d", None, None, None),
        ("a::b", None, None, None),
        (":a", None, None, None),
        ("a:", None, None, None),
        ("a:b:", None, None, None),
        ("a:b:**", None, None, None),
        ("a:b:r*", None, None, None),
        ("a:b/c", None, None, None),
        ("p:n", Some("p"), Some("n"), None),
        ("p:n:*", Some("p"), Some("n"), Some(Suffix::All)),
        (
            "p:n:read",
            Some("p"),
            Some("n"),
            Some(Suffix::Named("read")),
        ),
        (
            "Ak-4.m_i:Social_Profile-2.0:x_y.z-1",
            Some("Ak-4.m_i"),
            Some("Social_Profile-2.0"),
            Some(Suffix::Named("x_y.z-1")),
        ),
    ];
    for (input, prefix, name, suffix) in cases {
        let parsed = scope(input);
        assert_eq!(parsed.is_structured(), prefix.is_some(), "{input}");
        assert_eq!(parsed.prefix(), *prefix, "{input}");
        assert_eq!(parsed.name(), *name, "{input}");
        assert_eq!(parsed.suffix(), *suffix, "{input}");
        assert_eq!(parsed.to_string(), *input);
    }
}

#[test]
fn suffix_displays_as_written() {
    assert_eq!(Suffix::All.to_string(), "*");
    assert_eq!(Suffix::Named("read").as_str(), "read");
}

#[test]
fn with_suffix_builds_a_structured_scope() {
    let built = scope("p:n").with_suffix("read").unwrap();
    assert_eq!(built, scope("p:n:read"));
    assert_eq!(built.suffix(), Some(Suffix::Named("read")));
    assert_eq!(built.name(), Some("n"));
    assert_eq!(
        scope("p:n").with_suffix("*").unwrap().suffix(),
        Some(Suffix::All)
    );
}

#[test]
fn with_suffix_rejects_plain_suffixed_and_invalid_input() {
    assert!(matches!(
        scope("openid").with_suffix("read"),
        Err(ScopeError::NotStructured { .. })
    ));
    assert!(matches!(
        scope("p:n:read").with_suffix("write"),
        Err(ScopeError::HasSuffix { .. })
    ));
    for bad in ["", "a:b", "a b", "**", "r*"] {
        assert_eq!(
            scope("p:n").with_suffix(bad),
            Err(ScopeError::InvalidSuffix {
                suffix: bad.to_owned()
            }),
            "{bad:?}"
        );
    }
}

#[test]
fn scope_from_str_and_display_round_trip() {
    let parsed: Scope = "p:n:*".parse().unwrap();
    assert_eq!(parsed.to_string(), "p:n:*");
    assert_eq!(format!("{parsed:?}"), r#"Scope("p:n:*")"#);
    assert!("a b".parse::<Scope>().is_err());
}

#[test]
fn scope_serde_is_a_validated_string() {
    assert_eq!(serde_json::to_string(&scope("p:n")).unwrap(), r#""p:n""#);
    assert_eq!(
        serde_json::from_str::<Scope>(r#""p:n""#).unwrap(),
        scope("p:n")
    );
    for bad in [r#""a b""#, r#""""#, "1", "null", r#"["a"]"#, "{}"] {
        assert!(serde_json::from_str::<Scope>(bad).is_err(), "{bad}");
    }
}

#[test]
fn permission_is_derived_from_case_sensitive_methods() {
    let cases = [
        ("GET", Some(Permission::Read)),
        ("HEAD", Some(Permission::Read)),
        ("OPTIONS", Some(Permission::Read)),
        ("POST", Some(Permission::Write)),
        ("PUT", Some(Permission::Write)),
        ("PATCH", Some(Permission::Write)),
        ("DELETE", Some(Permission::Delete)),
        ("get", None),
        ("Delete", None),
        ("TRACE", None),
        ("CONNECT", None),
        ("PROPFIND", None),
        ("", None),
    ];
    for (method, permission) in cases {
        assert_eq!(Permission::for_method(method), permission, "{method:?}");
    }
    assert_eq!(Permission::Read.as_str(), "read");
    assert_eq!(Permission::Write.as_str(), "write");
    assert_eq!(Permission::Delete.to_string(), "delete");
}

#[test]
fn scope_set_tolerates_repeated_leading_and_trailing_spaces() {
    let parsed = set("  b:x   a  b:x ");
    assert_eq!(strings(parsed.as_slice()), ["a", "b:x"]);
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed.to_string(), "a b:x");
    assert!(set("").is_empty());
    assert!(set("   ").is_empty());
}

#[test]
fn scope_set_rejects_other_whitespace_naming_the_element() {
    for (input, element) in [
        ("a b\tc d", "b\tc"),
        ("a\nb", "a\nb"),
        ("ok bad\"x", "bad\"x"),
        ("a\u{a0}b", "a\u{a0}b"),
    ] {
        match ScopeSet::parse_space_separated(input) {
            Err(ScopeError::InvalidCharacter { scope, .. }) => {
                assert_eq!(scope, element, "{input:?}");
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
}

#[test]
fn scope_set_contains_is_exact_and_covers_matches() {
    let granted = set("openid p:n:*");
    assert!(granted.contains(&scope("p:n:*")));
    assert!(!granted.contains(&scope("p:n:read")));
    assert!(granted.covers(&scope("p:n:read")));
    assert!(granted.covers(&scope("p:n")));
    assert!(!granted.covers(&scope("p:m")));
    assert!(!ScopeSet::new().covers(&scope("openid")));
}

#[test]
fn scope_set_collects_and_iterates() {
    let collected: ScopeSet = [scope("b"), scope("a"), scope("b")].into_iter().collect();
    assert_eq!(collected, set("a b"));
    assert_eq!((&collected).into_iter().count(), 2);
    assert_eq!(
        collected.iter().map(Scope::as_str).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(collected.clone().into_iter().count(), 2);
    assert_eq!("b a".parse::<ScopeSet>().unwrap(), collected);
    assert_eq!(ScopeSet::from_scopes([scope("a"), scope("b")]), collected);
}

#[test]
fn scope_set_serialises_as_a_space_separated_string() {
    assert_eq!(serde_json::to_string(&set("b a")).unwrap(), r#""a b""#);
    assert_eq!(serde_json::to_string(&ScopeSet::new()).unwrap(), r#""""#);
}

#[test]
fn scope_set_deserialises_from_a_string_or_an_array() {
    assert_eq!(
        serde_json::from_str::<ScopeSet>(r#"" a  p:n ""#).unwrap(),
        set("a p:n")
    );
    assert_eq!(
        serde_json::from_str::<ScopeSet>(r#"["p:n", "a", "a"]"#).unwrap(),
        set("a p:n")
    );
    assert!(serde_json::from_str::<ScopeSet>("[]").unwrap().is_empty());
    assert!(
        serde_json::from_str::<ScopeSet>(r#""""#)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn scope_set_rejects_arrays_with_a_space_inside_an_element() {
    let error = serde_json::from_str::<ScopeSet>(r#"["a b"]"#).unwrap_err();
    assert!(error.to_string().contains(r#""a b""#), "{error}");
    assert!(serde_json::from_str::<ScopeSet>(r#"["a", " b"]"#).is_err());
    assert!(serde_json::from_str::<ScopeSet>(r#"[""]"#).is_err());
}

#[test]
fn scope_set_rejects_non_strings_objects_and_numbers() {
    for bad in [
        "[1]",
        r#"["a", 1]"#,
        r#"["a", null]"#,
        r#"[["a"]]"#,
        r#"[{"a": 1}]"#,
        "{}",
        r#"{"scope": "a"}"#,
        "1",
        "1.5",
        "true",
        "null",
        r#""a\tb""#,
    ] {
        assert!(serde_json::from_str::<ScopeSet>(bad).is_err(), "{bad}");
    }
}

#[test]
fn all_of_needs_every_scope_and_reports_them_all() {
    let requirement = Requirement::all_of(["openid", "p:n:read"]).unwrap();
    assert!(requirement.check(&set("openid p:n:*"), "GET").is_ok());
    let error = requirement.check(&set("openid"), "GET").unwrap_err();
    assert_eq!(strings(error.required_scopes()), ["openid", "p:n:read"]);
    assert_eq!(
        error.to_string(),
        "insufficient scope: all of [openid p:n:read] are required"
    );
    assert!(requirement.check(&ScopeSet::new(), "GET").is_err());
}

#[test]
fn empty_all_of_is_refused_because_it_would_allow_everything() {
    let error = Requirement::all_of(Vec::<String>::new()).unwrap_err();
    assert!(matches!(error, ScopeError::EmptyRequirement(_)));
    assert!(
        error.to_string().contains("would allow every request"),
        "{error}"
    );
}

#[test]
fn any_of_needs_one_scope_and_reports_every_alternative() {
    let requirement = Requirement::any_of(["a:b:read", "c"]).unwrap();
    assert!(requirement.check(&set("c"), "GET").is_ok());
    assert!(requirement.check(&set("a:b:*"), "GET").is_ok());
    let error = requirement.check(&set("a:b:write"), "GET").unwrap_err();
    assert_eq!(strings(error.required_scopes()), ["a:b:read", "c"]);
    assert_eq!(
        error.to_string(),
        "insufficient scope: one of [a:b:read c] is required"
    );
}

#[test]
fn empty_any_of_is_refused() {
    let error = Requirement::any_of(Vec::<&str>::new()).unwrap_err();
    assert!(matches!(error, ScopeError::EmptyRequirement(_)));
    assert!(
        error.to_string().contains("any_of lists no scopes"),
        "{error}"
    );
}

#[test]
fn requirement_lists_with_invalid_scopes_are_refused() {
    assert!(matches!(
        Requirement::all_of(["ok", "not ok"]),
        Err(ScopeError::InvalidCharacter { .. })
    ));
    assert_eq!(Requirement::any_of([""]), Err(ScopeError::Empty));
    assert!(Requirement::policy([vec!["a"], vec!["b\\"]]).is_err());
}

#[test]
fn policy_is_satisfied_by_any_complete_alternative() {
    let requirement = Requirement::policy([vec!["a", "b"], vec!["p:n:write", "c"]]).unwrap();
    assert!(requirement.check(&set("a b"), "GET").is_ok());
    assert!(requirement.check(&set("p:n:* c"), "GET").is_ok());
    assert!(requirement.check(&set("a c"), "GET").is_err());
}

#[test]
fn policy_failure_reports_the_alternative_missing_the_fewest() {
    let requirement =
        Requirement::policy([vec!["a", "b", "c"], vec!["x", "y"], vec!["a", "z"]]).unwrap();
    let error = requirement.check(&set("a b"), "GET").unwrap_err();
    assert_eq!(strings(error.required_scopes()), ["a", "b", "c"]);
    assert_eq!(
        error.to_string(),
        "insufficient scope: no policy alternative is satisfied; the closest requires [a b c]"
    );
    let error = requirement.check(&set("x"), "GET").unwrap_err();
    assert_eq!(strings(error.required_scopes()), ["x", "y"]);
}

#[test]
fn policy_tie_reports_the_first_closest_alternative() {
    let requirement = Requirement::policy([vec!["x", "y"], vec!["a", "b"]]).unwrap();
    let error = requirement.check(&ScopeSet::new(), "GET").unwrap_err();
    assert_eq!(strings(error.required_scopes()), ["x", "y"]);
}

#[test]
fn empty_policy_denies_every_request() {
    let requirement = Requirement::policy(Vec::<Vec<&str>>::new()).unwrap();
    for granted in ["", "a", "p:n:* openid"] {
        let error = requirement.check(&set(granted), "GET").unwrap_err();
        assert!(error.required_scopes().is_empty());
        assert!(error.to_string().contains("no alternatives"), "{error}");
    }
}

#[test]
fn empty_alternative_in_a_policy_is_refused() {
    let error = Requirement::policy([vec!["a"], vec![]]).unwrap_err();
    assert!(matches!(error, ScopeError::EmptyRequirement(_)));
    assert!(
        error.to_string().contains("would allow every request"),
        "{error}"
    );
}

#[test]
fn a_requirement_names_every_scope_that_can_satisfy_it_once() {
    let names = |requirement: Requirement| -> Vec<String> {
        requirement
            .scopes_named()
            .iter()
            .map(|scope| scope.as_str().to_owned())
            .collect()
    };
    assert_eq!(
        names(Requirement::policy([vec!["a", "b"], vec!["b", "c"]]).unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        names(Requirement::method_derived("p:n").unwrap()),
        ["p:n:read", "p:n:write", "p:n:delete"]
    );
    assert!(names(Requirement::any_valid_token()).is_empty());
}

#[test]
fn any_valid_token_is_satisfied_even_without_scopes() {
    let requirement = Requirement::any_valid_token();
    assert!(requirement.check(&ScopeSet::new(), "GET").is_ok());
    assert!(requirement.check(&set("a"), "FOO").is_ok());
}

#[test]
fn method_derived_requires_the_permission_of_each_method() {
    let requirement = Requirement::method_derived("akamai:social_profile").unwrap();
    let cases = [
        ("GET", "read"),
        ("HEAD", "read"),
        ("OPTIONS", "read"),
        ("POST", "write"),
        ("PUT", "write"),
        ("PATCH", "write"),
        ("DELETE", "delete"),
    ];
    for (method, permission) in cases {
        let exact = format!("akamai:social_profile:{permission}");
        assert!(requirement.check(&set(&exact), method).is_ok(), "{method}");
        assert!(
            requirement
                .check(&set("akamai:social_profile:*"), method)
                .is_ok(),
            "{method}"
        );
        let error = requirement
            .check(&set("akamai:social_profile akamai:other:*"), method)
            .unwrap_err();
        assert_eq!(
            strings(error.required_scopes()),
            [exact.as_str()],
            "{method}"
        );
        assert_eq!(
            error.to_string(),
            format!("insufficient scope: method {method:?} requires [{exact}]")
        );
    }
    assert!(
        requirement
            .check(&set("akamai:social_profile:read"), "POST")
            .is_err()
    );
    assert!(
        requirement
            .check(&set("akamai:social_profile:write"), "DELETE")
            .is_err()
    );
}

#[test]
fn method_derived_denies_unknown_and_lowercase_methods() {
    let requirement = Requirement::method_derived("p:n").unwrap();
    for method in ["get", "TRACE", "FOO", "", "G\nET"] {
        let error = requirement.check(&set("p:n:* p:n"), method).unwrap_err();
        assert!(error.required_scopes().is_empty(), "{method:?}");
        let message = error.to_string();
        assert!(message.contains("maps to no permission"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn method_derived_needs_a_structured_scope_without_suffix() {
    assert!(matches!(
        Requirement::method_derived("openid"),
        Err(ScopeError::NotStructured { .. })
    ));
    assert!(matches!(
        Requirement::method_derived("p:n:read"),
        Err(ScopeError::HasSuffix { .. })
    ));
    assert!(matches!(
        Requirement::method_derived("p:n:*"),
        Err(ScopeError::HasSuffix { .. })
    ));
    assert!(matches!(
        Requirement::method_derived("p:*:read"),
        Err(ScopeError::NotStructured { .. })
    ));
    assert!(matches!(
        Requirement::method_derived("p n"),
        Err(ScopeError::InvalidCharacter { .. })
    ));
    assert_eq!(Requirement::method_derived(""), Err(ScopeError::Empty));
}

#[test]
fn requirements_describe_themselves_for_logs() {
    let cases = [
        (
            Requirement::all_of(["a", "b", "a"]).unwrap(),
            "all of [a b]",
        ),
        (Requirement::any_of(["b", "a"]).unwrap(), "any of [b a]"),
        (
            Requirement::policy([vec!["a", "b"], vec!["c"]]).unwrap(),
            "policy [a b] or [c]",
        ),
        (
            Requirement::policy(Vec::<Vec<&str>>::new()).unwrap(),
            "empty policy (denies every request)",
        ),
        (Requirement::any_valid_token(), "any valid token"),
        (
            Requirement::method_derived("p:n").unwrap(),
            "p:n:<read|write|delete by method>",
        ),
    ];
    for (requirement, expected) in cases {
        assert_eq!(requirement.describe(), expected);
        assert_eq!(requirement.to_string(), expected);
    }
}

#[test]
fn grant_without_suffix_gives_every_allowed_suffix() {
    let allowed = set("p:n:read p:n:write p:n:* p:n p:nx:read p:other:read openid");
    assert_eq!(
        grant(&set("p:n"), &allowed).unwrap(),
        set("p:n p:n:read p:n:write p:n:*")
    );
    assert_eq!(
        grant(&set("p:n"), &set("p:n:read")).unwrap(),
        set("p:n:read")
    );
}

#[test]
fn grant_named_suffix_via_exact_or_star() {
    assert_eq!(
        grant(&set("p:n:read"), &set("p:n:*")).unwrap(),
        set("p:n:read")
    );
    assert_eq!(
        grant(&set("p:n:read"), &set("p:n:read")).unwrap(),
        set("p:n:read")
    );
    assert!(grant(&set("p:n:read"), &set("p:n p:n:write")).is_err());
}

#[test]
fn grant_star_only_when_star_is_allowed() {
    assert_eq!(grant(&set("p:n:*"), &set("p:n:*")).unwrap(), set("p:n:*"));
    assert!(grant(&set("p:n:*"), &set("p:n p:n:read p:n:write p:n:delete")).is_err());
}

#[test]
fn grant_plain_only_when_allowed_as_is() {
    assert_eq!(
        grant(&set("openid"), &set("openid profile")).unwrap(),
        set("openid")
    );
    assert!(grant(&set("OpenID"), &set("openid")).is_err());
    assert!(grant(&set("akamai:*:read"), &set("akamai:x:read")).is_err());
}

#[test]
fn grant_deduplicates_overlapping_requests() {
    let granted = grant(&set("p:n p:n:read"), &set("p:n:read p:n:write")).unwrap();
    assert_eq!(granted, set("p:n:read p:n:write"));
    assert_eq!(granted.len(), 2);
}

#[test]
fn grant_names_every_ungrantable_scope_together() {
    let error = grant(&set("openid x p:n:read q:m p:n:*"), &set("openid p:n:read")).unwrap_err();
    assert_eq!(strings(error.scopes()), ["p:n:*", "q:m", "x"]);
    assert_eq!(
        error.to_string(),
        "requested scope not allowed for this client: p:n:* q:m x"
    );
}

#[test]
fn grant_of_nothing_requested_is_empty() {
    assert!(grant(&ScopeSet::new(), &set("openid")).unwrap().is_empty());
}

const VALID_SCOPE: &str = "[!#-\\[\\]-~]{1,24}";
const STRUCTURED_SCOPE: &str =
    "[A-Za-z0-9_.-]{1,8}:[A-Za-z0-9_.-]{1,8}(:([A-Za-z0-9_.-]{1,8}|\\*))?";
/// A small alphabet so that generated scopes often cover each other.
const OVERLAPPING_SCOPE: &str = "(a|b|ab|a:b)(:(a|b|ab)(:(r|w|\\*|r:w))?)?";

proptest! {
    #[test]
    fn scope_parse_never_panics(input in ".*") {
        let _ = Scope::parse(&input);
    }

    #[test]
    fn scope_parse_never_panics_on_printable_ascii(input in "[ -~]{0,64}") {
        if let Ok(parsed) = Scope::parse(&input) {
            prop_assert_eq!(parsed.as_str(), input.as_str());
        }
    }

    #[test]
    fn scope_set_parse_never_panics(input in ".*") {
        let _ = ScopeSet::parse_space_separated(&input);
    }

    #[test]
    fn scope_set_parse_never_panics_on_printable_ascii(input in "[ -~]{0,64}") {
        if let Ok(parsed) = ScopeSet::parse_space_separated(&input) {
            prop_assert_eq!(set(&parsed.to_string()), parsed);
        }
    }

    #[test]
    fn valid_scopes_parse_and_round_trip_through_display(input in VALID_SCOPE) {
        let parsed = Scope::parse(&input).unwrap();
        prop_assert_eq!(parsed.to_string(), input);
        prop_assert_eq!(&Scope::parse(parsed.as_str()).unwrap(), &parsed);
        let json = serde_json::to_string(&parsed).unwrap();
        prop_assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), parsed);
    }

    #[test]
    fn structured_scopes_are_classified_and_split_back(input in STRUCTURED_SCOPE) {
        let parsed = Scope::parse(&input).unwrap();
        prop_assert!(parsed.is_structured());
        let mut rebuilt = format!("{}:{}", parsed.prefix().unwrap(), parsed.name().unwrap());
        if let Some(suffix) = parsed.suffix() {
            rebuilt = format!("{rebuilt}:{suffix}");
        }
        prop_assert_eq!(rebuilt, input);
    }

    #[test]
    fn scope_sets_round_trip_through_display_and_json(
        inputs in proptest::collection::vec(VALID_SCOPE, 0..8),
    ) {
        let built = ScopeSet::from_scopes(inputs.iter().map(|s| scope(s)));
        prop_assert_eq!(&set(&built.to_string()), &built);
        let json = serde_json::to_string(&built).unwrap();
        prop_assert_eq!(&serde_json::from_str::<ScopeSet>(&json).unwrap(), &built);
        let array = serde_json::to_string(&inputs).unwrap();
        prop_assert_eq!(serde_json::from_str::<ScopeSet>(&array).unwrap(), built);
    }

    #[test]
    fn covers_is_reflexive(input in VALID_SCOPE) {
        let parsed = Scope::parse(&input).unwrap();
        prop_assert!(parsed.covers(&parsed));
    }

    #[test]
    fn covers_is_reflexive_for_structured_scopes(input in STRUCTURED_SCOPE) {
        let parsed = Scope::parse(&input).unwrap();
        prop_assert!(parsed.covers(&parsed));
    }

    #[test]
    fn set_covers_agrees_with_its_members(
        granted in proptest::collection::vec(OVERLAPPING_SCOPE, 0..6),
        required in OVERLAPPING_SCOPE,
    ) {
        let required = scope(&required);
        let members: Vec<Scope> = granted.iter().map(|s| scope(s)).collect();
        let expected = members.iter().any(|member| member.covers(&required));
        prop_assert_eq!(ScopeSet::from_scopes(members).covers(&required), expected);
    }

    #[test]
    fn granted_scopes_satisfy_what_was_requested(
        requested in proptest::collection::vec(OVERLAPPING_SCOPE, 0..4),
        allowed in proptest::collection::vec(OVERLAPPING_SCOPE, 0..6),
    ) {
        let requested = ScopeSet::from_scopes(requested.iter().map(|s| scope(s)));
        let allowed = ScopeSet::from_scopes(allowed.iter().map(|s| scope(s)));
        if let Ok(granted) = grant(&requested, &allowed) {
            for scope in &requested {
                prop_assert!(granted.covers(scope));
            }
            for scope in &granted {
                prop_assert!(allowed.covers(scope));
            }
        }
    }
}
