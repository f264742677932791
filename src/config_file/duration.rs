//! Durations as people write them: `"15s"`, `"250ms"`, `"10min"`,
//! `"1h 30m"` (humantime's syntax), and `"off"` for a setting that can be
//! turned off. A bare number is refused: `30` could be seconds or
//! milliseconds, and guessing wrong is a pool that waits 1000 times too long.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// The word that turns a switchable setting off.
const OFF: &str = "off";

const EXPECTED: &str = "a duration such as \"15s\", \"250ms\" or \"10min\"";

fn parse<E: de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        E::custom(format_args!(
            "invalid duration {text:?} ({e}); expected {EXPECTED}"
        ))
    })
}

fn format(duration: &Duration) -> String {
    humantime::format_duration(*duration).to_string()
}

/// Reads one duration string; `off` says whether `"off"` is allowed.
struct DurationVisitor {
    off: bool,
}

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.off {
            write!(f, "{EXPECTED}, or \"{OFF}\"")
        } else {
            f.write_str(EXPECTED)
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        if text.trim().eq_ignore_ascii_case(OFF) {
            return if self.off {
                Ok(None)
            } else {
                Err(E::custom(format_args!(
                    "this setting cannot be turned off; expected {EXPECTED}"
                )))
            };
        }
        parse(text).map(Some)
    }

    // `null` (JSON) turns a switchable setting off, and leaves any other at
    // its default, as an absent setting does.
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

/// A duration that must have a value (`wait_timeout`, ...).
pub(super) mod required {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => serializer.serialize_str(&format(d)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_option(DurationVisitor { off: false })
    }
}

/// A duration that `"off"` turns off (`heartbeat_interval`, ...): the outer
/// `Option` is whether the setting is stated, the inner one the setting.
pub(super) mod switchable {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        setting: &Option<Option<Duration>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match setting {
            Some(Some(d)) => serializer.serialize_str(&format(d)),
            Some(None) => serializer.serialize_str(OFF),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<Duration>>, D::Error> {
        deserializer
            .deserialize_option(DurationVisitor { off: true })
            .map(Some)
    }
}
