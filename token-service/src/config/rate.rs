//! A request rate, written `100/s`, `600/min` or `10000/h`: how many requests a client or an
//! API may make in that time, in a burst or spread out.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `requests` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// How many requests.
    pub requests: NonZeroU32,
    /// In how long.
    pub per: Duration,
}

impl RateLimit {
    /// A client's rate at `/token` unless configured: 100 a second.
    pub const DEFAULT_CLIENT: Self = Self {
        requests: NonZeroU32::MIN.saturating_add(99),
        per: Duration::from_secs(1),
    };
    /// An API's rate at `/introspect` unless configured: 1 000 a second.
    pub const DEFAULT_API: Self = Self {
        requests: NonZeroU32::MIN.saturating_add(999),
        per: Duration::from_secs(1),
    };
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wrong = || format!("`{text}` is not a rate like `100/s`, `600/min` or `10000/h`");
        let (count, unit) = text.trim().split_once('/').ok_or_else(wrong)?;
        let requests = count.trim().parse::<NonZeroU32>().map_err(|_| wrong())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(wrong()),
        };
        Ok(Self { requests, per })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(formatter, "{}/{unit}", self.requests)
    }
}

impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_and_write_alike_and_nonsense_is_refused() {
        for text in ["100/s", "600/min", "10000/h", "1/s"] {
            assert_eq!(text.parse::<RateLimit>().unwrap().to_string(), text);
        }
        assert_eq!(
            " 5 / min ".parse::<RateLimit>().unwrap().per,
            Duration::from_secs(60)
        );
        for bad in ["", "100", "0/s", "-1/s", "100/day", "x/s", "100/"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }
}
