//! Where the keys that encrypt secrets at rest come from: `SCOPEGATE_ENCRYPTION_KEYS` or the
//! file `encryption_keys_file` names — never the configuration file itself, which is often kept
//! beside the database. See [`crate::sealing`].

use std::path::Path;

use super::{ConfigError, invalid};
use crate::sealing::Sealer;
use crate::secret::Secret;

/// The environment variable holding the keys, separated by commas or newlines, current first.
pub const KEYS_VARIABLE: &str = "SCOPEGATE_ENCRYPTION_KEYS";

/// The operator's keys from `file` (one per line; blank lines and `#` comments skipped) or from
/// `variable` (the value of [`KEYS_VARIABLE`]); neither: secrets are kept in clear.
pub(super) fn sealer(file: Option<&Path>, variable: Option<String>) -> Result<Sealer, ConfigError> {
    let (field, text) = match (file, variable) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "encryption_keys_file",
                format!("give the encryption keys in {KEYS_VARIABLE} or in a file, not both"),
            ));
        }
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|error| {
                invalid(
                    "encryption_keys_file",
                    format!("cannot read {}: {error}", path.display()),
                )
            })?;
            ("encryption_keys_file", text)
        }
        (None, Some(value)) => (KEYS_VARIABLE, value.replace(',', "\n")),
        (None, None) => return Ok(Sealer::clear()),
    };
    let keys: Vec<Secret> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| Secret::new(line.to_owned()))
        .collect();
    if keys.is_empty() {
        return Err(invalid(field, "holds no key"));
    }
    Sealer::new(&keys).map_err(|error| invalid(field, error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn keys_come_from_the_variable_or_a_file_current_first() {
        let from_variable = sealer(None, Some(format!("{B},{A}"))).unwrap();
        let only_b = Sealer::new(&[Secret::new(B.to_owned())]).unwrap();
        assert_eq!(from_variable.current_key_id(), only_b.current_key_id());

        let file = std::env::temp_dir().join(format!("scopegate-keys-{}", std::process::id()));
        std::fs::write(&file, format!("# current\n{B}\n\n{A}\n")).unwrap();
        let from_file = sealer(Some(&file), None).unwrap();
        assert_eq!(from_file.current_key_id(), only_b.current_key_id());
        let both = sealer(Some(&file), Some(A.to_owned())).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        std::fs::remove_file(&file).unwrap();

        assert!(sealer(None, None).unwrap().is_clear());
    }

    #[test]
    fn bad_keys_are_refused_naming_their_source_not_their_value() {
        let short = sealer(None, Some("tooshort".to_owned()))
            .unwrap_err()
            .to_string();
        assert!(
            short.contains(KEYS_VARIABLE) && short.contains("at least 32"),
            "{short}"
        );
        assert!(!short.contains("tooshort"), "{short}");
        let empty = sealer(None, Some(" , ".to_owned()))
            .unwrap_err()
            .to_string();
        assert!(empty.contains("holds no key"), "{empty}");
        let missing = sealer(Some(Path::new("/nonexistent/keys")), None)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("encryption_keys_file") && missing.contains("/nonexistent/keys"));
    }
}
