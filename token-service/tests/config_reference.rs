//! The configuration reference, `docs/configuration.md`, has an entry for every key the
//! configuration loader accepts, and none for a key it does not (issue 15).
//!
//! # Where the keys come from
//!
//! Not from a list kept by hand: the test asks the loader itself, through the public
//! [`Config::from_toml`]. Every table of the configuration refuses unknown keys
//! (`#[serde(deny_unknown_fields)]`), and serde's refusal carries the complete list of the keys
//! the table does accept (figment keeps it in its error as `Kind::UnknownField(found,
//! expected)`, with the path of the offending key). So a document holding only
//! `signing = { __probe__ = 1 }` is answered with the keys of `[signing]`, and
//! `clients = [{ __probe__ = 1 }]` with those of a `[[clients]]` entry. Starting from the top,
//! the test probes every key it learns of, in three shapes, to find the tables below it:
//!
//! - `key = { __probe__ = 1 }`: the key holds a table (a struct, or an `Option` of one);
//! - `key = [{ __probe__ = 1 }]`: it holds an array of tables (`Vec` of a struct);
//! - `key = { __name__ = { __probe__ = 1 } }`: it holds tables by name (a map of structs).
//!
//! Any other answer makes it a key with a value of its own (string, number, array of strings,
//! a free-form table such as `users[].attributes`, …): a documented key. Serde reads a table's
//! keys in order and stops at the first unknown one; `__probe__` is the only key of every
//! level, so required keys that are missing never get in the way.
//!
//! The raw configuration types are private to the crate, so a recording `serde::Deserializer`
//! driving them directly is out of reach of an integration test; probing the loader needs no
//! change to the crate, and it sees exactly what the loader accepts (renames included).
//!
//! # Enums, untagged and flattened fields
//!
//! - An enum (`token_format`, the elements of `grants`) answers a probe with serde's
//!   "unknown variant" and the list of its variants. Variants that are plain words (`"jwt"`)
//!   are values, not keys: the key is documented once, and its entry must name every word in
//!   backticks, so a new grant type or token format cannot go undocumented either. A variant
//!   carrying data is written as a key (`key = { variant = … }`), so it is probed like a key.
//! - An untagged enum answers with "data did not match any variant", which says nothing about
//!   the keys of its variants; a table that lets unknown keys through (no
//!   `deny_unknown_fields`, or an internally tagged enum) answers with a missing field instead
//!   of a list; a struct with a `#[serde(flatten)]` field refuses unknown keys with a bare
//!   message, without the list. The test stops with an explanation in these three cases
//!   rather than miss keys silently: teach it the new shape, or keep the configuration plain.
//!   (A table that lets unknown keys through and has no required key cannot be told apart from
//!   a free-form table; it would be taken for a value. Every table of the configuration must
//!   refuse unknown keys anyway, so that a misspelt key is an error.)
//!
//! # How a key is documented
//!
//! - A table has a level-2 heading that is its TOML header in backticks: ``## `[signing]` ``,
//!   ``## `[[clients]]` ``.
//! - Any other key has a level-3 heading that is its full path in backticks, and nothing else:
//!   ``### `issuer` ``, ``### `signing.rotation_period` ``, ``### `clients[].redirect_uris` ``
//!   (`[]`: an element of an array of tables; `<name>`: any name of a table of tables). It sits
//!   under the heading of its table; a top-level key under a heading that is not a table's.
//!   Level-3 headings serve for nothing else.
//! - Each key entry has the lines `- Type:`, `- Default:` and `- Example:`.
//! - Every ```` ```toml ```` block of the reference is a configuration the loader accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use scopegate_token_service::config::{Config, ConfigError};

/// The reference, read at compile time so that editing it rebuilds the test.
const REFERENCE: &str = include_str!("../../docs/configuration.md");
const REFERENCE_PATH: &str = "docs/configuration.md";

/// The key no table of the configuration has.
const PROBE: &str = "__probe__";
/// The name given to a table in a table of tables.
const NAME: &str = "__name__";

// ---- What the loader accepts ------------------------------------------------------------------

/// One step from the top of a configuration document down to a value.
#[derive(Debug, Clone)]
enum Step {
    /// The value of a key of a table.
    Key(String),
    /// The (first) element of an array.
    Element,
}

/// How a table is written in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TableKind {
    /// `[name]`
    Table,
    /// `[[name]]`
    ArrayOfTables,
    /// `[name.<name>]`
    TableOfTables,
}

/// The keys the loader accepts, as the reference names them.
#[derive(Debug, Default)]
struct Schema {
    /// Keys with a value of their own: `issuer`, `signing.algorithm`, `clients[].grants`.
    keys: BTreeSet<String>,
    /// Tables, by the path their keys start with (`signing`, `clients[]`).
    tables: BTreeMap<String, TableKind>,
    /// Keys whose value is one word of a fixed set (`clients[].token_format`: `jwt`, `opaque`).
    words: BTreeMap<String, Vec<String>>,
}

/// What a probe at a place in the document found there.
#[derive(Debug)]
enum Found {
    /// A table that accepts these keys.
    Table(Vec<String>),
    /// An enum with these variants.
    Enum(Vec<String>),
    /// Anything else.
    Value,
}

/// A TOML string (also used for keys, which may always be quoted).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A configuration document that has `value` at `place` and nothing else.
fn document(place: &[Step], value: &str) -> String {
    let Some((Step::Key(first), below)) = place.split_first() else {
        panic!("a place in the document starts with a top-level key: {place:?}");
    };
    let value = below
        .iter()
        .rev()
        .fold(value.to_owned(), |inner, step| match step {
            Step::Key(key) => format!("{{ {} = {inner} }}", quoted(key)),
            Step::Element => format!("[{inner}]"),
        });
    format!("{} = {value}\n", quoted(first))
}

/// `place` as figment names it in its errors.
fn figment_path(place: &[Step]) -> Vec<String> {
    place
        .iter()
        .map(|step| match step {
            Step::Key(key) => key.clone(),
            Step::Element => "0".to_owned(),
        })
        .collect()
}

/// The names of `UnknownField("__probe__", ["a", "b"])` (the `Debug` form of figment's error
/// kind), for `variant` `UnknownField` or `UnknownVariant`; `None` for another kind.
fn names_in(kind: &str, variant: &str) -> Option<Vec<String>> {
    let list = kind
        .strip_prefix(variant)?
        .strip_prefix(&format!("({}, [", quoted(PROBE)))?;
    let list = list
        .strip_suffix("])")
        .unwrap_or_else(|| panic!("cannot read the names in the loader's error `{kind}`"));
    if list.is_empty() {
        return Some(Vec::new());
    }
    Some(
        list.split(", ")
            .map(|name| {
                name.strip_prefix('"')
                    .and_then(|name| name.strip_suffix('"'))
                    .unwrap_or_else(|| {
                        panic!("cannot read the names in the loader's error `{kind}`")
                    })
                    .to_owned()
            })
            .collect(),
    )
}

/// Loads `text`; the error the loader gives for it, as (figment path, `Debug` of the kind).
fn parse_error(text: &str) -> Option<(Vec<String>, String)> {
    match Config::from_toml(text) {
        Err(ConfigError::Parse(error)) => Some((error.path.clone(), format!("{:?}", error.kind))),
        _ => None,
    }
}

/// What the value at `place` is, found by giving it a table with the unknown key `__probe__`.
fn probe(place: &[Step], path: &str) -> Found {
    let mut at_probe = place.to_vec();
    at_probe.push(Step::Key(PROBE.to_owned()));
    let Some((error_path, kind)) = parse_error(&document(&at_probe, "1")) else {
        return Found::Value;
    };
    if error_path == figment_path(&at_probe) {
        if let Some(fields) = names_in(&kind, "UnknownField") {
            return Found::Table(fields);
        }
        if let Some(variants) = names_in(&kind, "UnknownVariant") {
            return Found::Enum(variants);
        }
    }
    if error_path == figment_path(place) || error_path == figment_path(&at_probe) {
        assert!(
            !kind.starts_with("MissingField"),
            "`{path}` answers the unknown key `{PROBE}` with {kind}: a table that lets unknown \
             keys through (give its type #[serde(deny_unknown_fields)], so that a misspelt key \
             is an error and this test can list its keys), or an internally tagged enum, whose \
             keys this test cannot see (teach it the new shape)"
        );
        assert!(
            !(kind.starts_with("Message") && kind.contains(PROBE)),
            "`{path}` refuses unknown keys without listing the ones it accepts ({kind}); \
             a #[serde(flatten)] field does that. Teach this test the new shape"
        );
        assert!(
            !(kind.starts_with("Message") && kind.contains("untagged enum")),
            "`{path}` holds an untagged enum ({kind}), whose keys this test cannot see. Teach \
             it the new shape"
        );
    }
    Found::Value
}

/// Whether `variant` of the enum at `place` is a plain word (`token_format = "jwt"`): the
/// document holding just that word gets past `place`.
fn is_word(place: &[Step], variant: &str) -> bool {
    parse_error(&document(place, &quoted(variant)))
        .is_none_or(|(error_path, _)| !error_path.starts_with(&figment_path(place)))
}

/// Records `fields`, the keys of the table at `place` whose paths start with `prefix`.
fn explore_table(schema: &mut Schema, place: &[Step], prefix: &str, fields: &[String]) {
    for field in fields {
        let path = if prefix.is_empty() {
            field.clone()
        } else {
            format!("{prefix}.{field}")
        };
        let mut here = place.to_vec();
        here.push(Step::Key(field.clone()));
        explore_key(schema, &here, &path);
    }
}

/// Records the key at `place`, named `path`, and whatever is below it.
fn explore_key(schema: &mut Schema, place: &[Step], path: &str) {
    assert!(
        place.len() < 16,
        "`{path}`: the configuration nests deeper than this test expects"
    );
    let mut element = place.to_vec();
    element.push(Step::Element);
    let mut named = place.to_vec();
    named.push(Step::Key(NAME.to_owned()));
    let shapes = [
        (TableKind::Table, place.to_vec(), path.to_owned()),
        (TableKind::ArrayOfTables, element, format!("{path}[]")),
        (TableKind::TableOfTables, named, format!("{path}.<name>")),
    ];
    for (kind, at, prefix) in shapes {
        match probe(&at, path) {
            Found::Table(fields) => {
                schema.tables.insert(prefix.clone(), kind);
                explore_table(schema, &at, &prefix, &fields);
                return;
            }
            Found::Enum(variants) => {
                let (words, data): (Vec<String>, Vec<String>) = variants
                    .into_iter()
                    .partition(|variant| is_word(&at, variant));
                if !words.is_empty() {
                    schema.keys.insert(path.to_owned());
                    schema.words.insert(path.to_owned(), words);
                }
                if !data.is_empty() {
                    schema.tables.insert(prefix.clone(), kind);
                    explore_table(schema, &at, &prefix, &data);
                }
                return;
            }
            Found::Value => {}
        }
    }
    schema.keys.insert(path.to_owned());
}

/// Every key the loader accepts.
fn schema() -> Schema {
    let top = vec![Step::Key(PROBE.to_owned())];
    let Some((error_path, kind)) = parse_error(&document(&top, "1")) else {
        panic!("the loader accepted the unknown top-level key `{PROBE}`");
    };
    let fields = names_in(&kind, "UnknownField")
        .filter(|_| error_path == [PROBE])
        .unwrap_or_else(|| {
            panic!("the loader refused `{PROBE}` without listing the keys it accepts: {kind}")
        });
    let mut schema = Schema::default();
    explore_table(&mut schema, &[], "", &fields);
    schema
}

// ---- What the reference documents -------------------------------------------------------------

/// A key's entry in the reference.
#[derive(Debug)]
struct Entry {
    /// 1-based line of its heading.
    line: usize,
    /// The table heading it sits under (`[signing]`), `None` under another level-2 heading.
    table: Option<String>,
    /// The text up to the next heading.
    body: String,
}

#[derive(Debug, Default)]
struct Reference {
    /// Tables by header (`[signing]`, `[[clients]]`), with the line of their heading.
    tables: BTreeMap<String, usize>,
    /// Keys by path.
    keys: BTreeMap<String, Entry>,
    /// ```` ```toml ```` blocks, with the line they start on.
    toml_blocks: Vec<(usize, String)>,
    /// Headings that break the rules.
    problems: Vec<String>,
}

/// The text between backticks, when `heading` is exactly one code span.
fn code_span(heading: &str) -> Option<&str> {
    heading
        .strip_prefix('`')?
        .strip_suffix('`')
        .filter(|inner| !inner.is_empty() && !inner.contains('`'))
}

fn reference() -> Reference {
    let mut reference = Reference::default();
    let mut table: Option<String> = None;
    let mut current: Option<(String, Entry)> = None;
    let mut fence: Option<(usize, String, String)> = None;
    for (index, line) in REFERENCE.lines().enumerate() {
        let number = index + 1;
        if let Some((start, language, mut block)) = fence.take() {
            if line.trim_start().starts_with("```") {
                if language == "toml" {
                    reference.toml_blocks.push((start, block));
                }
            } else {
                block.push_str(line);
                block.push('\n');
                fence = Some((start, language, block));
            }
            if let Some((_, entry)) = &mut current {
                entry.body.push_str(line);
                entry.body.push('\n');
            }
            continue;
        }
        if let Some(language) = line.trim_start().strip_prefix("```") {
            fence = Some((number, language.trim().to_owned(), String::new()));
        }
        let level = line.bytes().take_while(|&byte| byte == b'#').count();
        let heading = line
            .get(level..)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::trim);
        let Some(heading) = heading.filter(|_| level > 0) else {
            if let Some((_, entry)) = &mut current {
                entry.body.push_str(line);
                entry.body.push('\n');
            }
            continue;
        };
        if let Some((path, entry)) = current.take() {
            reference.keys.insert(path, entry);
        }
        match level {
            2 => {
                table = code_span(heading)
                    .filter(|inner| inner.starts_with('[') && inner.ends_with(']'))
                    .map(str::to_owned);
                if let Some(header) = &table
                    && reference.tables.insert(header.clone(), number).is_some()
                {
                    reference
                        .problems
                        .push(format!("line {number}: `{header}` has a second heading"));
                }
            }
            3 => match code_span(heading) {
                Some(path) if reference.keys.contains_key(path) => reference
                    .problems
                    .push(format!("line {number}: `{path}` has a second entry")),
                Some(path) => {
                    current = Some((
                        path.to_owned(),
                        Entry {
                            line: number,
                            table: table.clone(),
                            body: String::new(),
                        },
                    ));
                }
                None => reference.problems.push(format!(
                    "line {number}: `{line}`: level-3 headings are for keys only, written \
                     ### `path.of.the_key`"
                )),
            },
            _ => {}
        }
    }
    if let Some((path, entry)) = current {
        reference.keys.insert(path, entry);
    }
    if let Some((start, _, _)) = fence {
        reference
            .problems
            .push(format!("line {start}: a code block is never closed"));
    }
    reference
}

/// How the reference writes the header of the table whose keys start with `prefix`.
fn header(prefix: &str, kind: TableKind) -> String {
    let name = prefix
        .strip_suffix("[]")
        .unwrap_or(prefix)
        .replace("[]", "");
    match kind {
        TableKind::ArrayOfTables => format!("[[{name}]]"),
        TableKind::Table | TableKind::TableOfTables => format!("[{name}]"),
    }
}

// ---- The tests -------------------------------------------------------------------------------

#[test]
fn the_reference_documents_every_key_the_loader_accepts_and_no_other() {
    let schema = schema();
    let reference = reference();
    let mut problems = reference.problems.clone();

    let headers: BTreeMap<String, String> = schema
        .tables
        .iter()
        .map(|(prefix, kind)| (header(prefix, *kind), prefix.clone()))
        .collect();
    for header in headers.keys() {
        if !reference.tables.contains_key(header) {
            problems.push(format!(
                "the table `{header}` has no heading: add ## `{header}`"
            ));
        }
    }
    for (header, line) in &reference.tables {
        if !headers.contains_key(header) {
            problems.push(format!(
                "line {line}: `{header}` is not a table of the configuration"
            ));
        }
    }

    for path in &schema.keys {
        if reference.keys.contains_key(path) {
            continue;
        }
        let under = table_of(path, &schema).map_or_else(
            || "Top-level keys".to_owned(),
            |header| format!("`{header}`"),
        );
        problems.push(format!(
            "`{path}` has no entry: add ### `{path}` under {under}"
        ));
    }
    for (path, entry) in &reference.keys {
        let line = entry.line;
        if !schema.keys.contains(path) {
            problems.push(format!(
                "line {line}: `{path}` is not a key the configuration accepts"
            ));
            continue;
        }
        let expected = table_of(path, &schema);
        if entry.table != expected {
            let expected = expected.map_or_else(
                || "a heading that is not a table's".to_owned(),
                |header| format!("`{header}`"),
            );
            problems.push(format!("line {line}: `{path}` belongs under {expected}"));
        }
        for item in ["- Type:", "- Default:", "- Example:"] {
            if !entry.body.lines().any(|text| text.starts_with(item)) {
                problems.push(format!("line {line}: `{path}` has no `{item}` line"));
            }
        }
        for word in schema.words.get(path).into_iter().flatten() {
            if !entry.body.contains(&format!("`{word}`")) {
                problems.push(format!(
                    "line {line}: `{path}` does not name its value `{word}`"
                ));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{REFERENCE_PATH} does not match the configuration loader:\n  {}",
        problems.join("\n  ")
    );
}

/// The header of the table `path` belongs to, `None` for a top-level key.
fn table_of(path: &str, schema: &Schema) -> Option<String> {
    let (prefix, _) = path.rsplit_once('.')?;
    schema.tables.get(prefix).map(|kind| header(prefix, *kind))
}

#[test]
fn the_examples_of_the_reference_load() {
    let reference = reference();
    assert!(
        !reference.toml_blocks.is_empty(),
        "{REFERENCE_PATH} has no ```toml example"
    );
    for (line, block) in &reference.toml_blocks {
        if let Err(error) = Config::from_toml(block) {
            panic!("{REFERENCE_PATH}, the example on line {line} does not load: {error}");
        }
    }
}

/// The probing finds what the loader is known to accept: if serde or figment changed the form
/// of their errors, the first test would fail for every key rather than explain why.
#[test]
fn the_probe_finds_known_keys() {
    let schema = schema();
    for key in [
        "issuer",
        "signing.rotation_period",
        "defaults.code_ttl",
        "clients[].redirect_uris",
        "scopes[].claims",
        "users[].attributes",
    ] {
        assert!(schema.keys.contains(key), "`{key}` not found: {schema:#?}");
    }
    assert_eq!(schema.tables.get("signing"), Some(&TableKind::Table));
    assert_eq!(
        schema.tables.get("clients[]"),
        Some(&TableKind::ArrayOfTables)
    );
    assert!(
        !schema.keys.contains("clients"),
        "a table is not a value: {schema:#?}"
    );
    assert_eq!(
        schema
            .words
            .get("clients[].token_format")
            .map(Vec::as_slice),
        Some(["jwt".to_owned(), "opaque".to_owned()].as_slice())
    );
    assert!(
        schema
            .words
            .get("clients[].grants")
            .is_some_and(|words| words.iter().any(|word| word == "refresh_token")),
        "{schema:#?}"
    );
}

/// Every top-level key can be overridden with `SCOPEGATE_<KEY>`, as the reference says: the
/// service reads only the variables it knows to be configuration (the others belong to the
/// command line), and that list must grow with the configuration.
#[test]
fn every_top_level_key_can_be_overridden_from_the_environment() {
    let schema = schema();
    let top_level: BTreeSet<&str> = schema
        .keys
        .iter()
        .chain(schema.tables.keys())
        .map(|path| path.split(['.', '[']).next().unwrap_or_default())
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config: PathBuf = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "issuer = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:8080\"\nstorage = \"sqlite::memory:\"\n",
    )
    .expect("the configuration is written");
    let mut ignored = Vec::new();
    for key in top_level {
        // `<key>.probe = 1` fits no key: the start fails if and only if the variable is read.
        let variable = format!("SCOPEGATE_{}__PROBE", key.to_ascii_uppercase());
        let mut command = Command::new(env!("CARGO_BIN_EXE_token-service"));
        for (name, _) in std::env::vars_os() {
            if name
                .to_string_lossy()
                .to_ascii_uppercase()
                .starts_with("SCOPEGATE_")
            {
                command.env_remove(name);
            }
        }
        let output = command
            .arg("--config")
            .arg(&config)
            .args(["client", "list"])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .env(&variable, "1")
            .output()
            .expect("token-service runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let refused = output.status.code() == Some(2) && stderr.contains("environment variable");
        if !refused {
            ignored.push(format!(
                "{variable} (exit {:?}: {stderr})",
                output.status.code()
            ));
        }
    }
    assert!(
        ignored.is_empty(),
        "these top-level keys cannot be overridden from the environment:\n  {}",
        ignored.join("\n  ")
    );
}
