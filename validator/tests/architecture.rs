//! The builder configures the modules; none of them reaches back into it (issue 17, item 7):
//! `config.rs` imports discovery, the caches and the rules, never the other way round.

#![allow(clippy::unwrap_used)]

#[test]
fn no_module_imports_the_builder_back() {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mut offenders, mut read) = (Vec::new(), 0);
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "config.rs" || name == "lib.rs" || !name.ends_with(".rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        read += 1;
        if text.contains("crate::config") || text.contains("super::config") {
            offenders.push(name);
        }
    }
    assert!(
        read >= 10,
        "only {read} modules found in {}",
        source.display()
    );
    assert!(
        offenders.is_empty(),
        "these modules import config back: {offenders:?}"
    );
}
