//! Durations as the configuration and the admin API write them: `60m`, `14d`, `1h 30m`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written like `60m`, `14d`, `1h 30m`.
#[derive(Debug, Clone, Copy)]
pub(super) struct HumanDuration(pub(super) Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map(Self).map_err(|error| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration like `60m`, `14d` or `30s` ({error})"
            ))
        })
    }
}

/// `#[serde(with = …)]` for an `Option<Duration>` written as text (absent = `None`).
pub(super) mod optional {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::HumanDuration;

    pub(in crate::config) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.collect_str(&humantime::format_duration(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<HumanDuration>::deserialize(deserializer).map(|text| text.map(|text| text.0))
    }
}
