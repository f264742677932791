//! [`PoolConfig`] from environment variables: `PREFIX_SETTING`, the setting's
//! name in upper case, its value as it would be written in a file but with
//! no quotes (`ORDERS_POOL_WAIT_TIMEOUT=2s`, `ORDERS_POOL_MAX_LIFETIME=off`).
//!
//! Every variable under the prefix must name a setting: a misspelt one is
//! an error that names the variable, not a setting silently left at its
//! default. So give each pool a prefix of its own.

use std::error::Error;
use std::ffi::OsStr;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

use super::PoolConfig;

impl PoolConfig {
    /// The settings stated by this process's environment variables named
    /// `{prefix}_{SETTING}` (e.g. `prefix` `"ORDERS_POOL"`:
    /// `ORDERS_POOL_MAX_SIZE=16`, `ORDERS_POOL_IDLE_TIMEOUT=5min`).
    ///
    /// ```
    /// use livepool::config_file::PoolConfig;
    ///
    /// // Nothing set under this prefix: every setting keeps its default.
    /// let config = PoolConfig::from_env("NO_SUCH_POOL")?.into_config();
    /// assert_eq!(config.max_size, livepool::Config::default().max_size);
    /// # Ok::<(), livepool::config_file::EnvError>(())
    /// ```
    pub fn from_env(prefix: &str) -> Result<PoolConfig, EnvError> {
        Self::from_vars(prefix, std::env::vars_os())
    }

    /// Like [`from_env`](Self::from_env), from the given `(name, value)`
    /// pairs instead of the process environment: for tests, or variables
    /// read from elsewhere. Names outside `{prefix}_` are ignored.
    ///
    /// ```
    /// use std::time::Duration;
    /// use livepool::config_file::{EnvError, PoolConfig};
    ///
    /// let vars = [("APP_POOL_MAX_SIZE", "16"), ("APP_POOL_WAIT_TIMEOUT", "2s"), ("HOME", "/root")];
    /// let config = PoolConfig::from_vars("APP_POOL", vars)?.into_config();
    /// assert_eq!((config.max_size, config.wait_timeout), (16, Duration::from_secs(2)));
    ///
    /// let typo = PoolConfig::from_vars("APP_POOL", [("APP_POOL_MAX_SIZ", "16")]).unwrap_err();
    /// assert!(matches!(typo, EnvError::UnknownVariable { ref var, .. } if var == "APP_POOL_MAX_SIZ"));
    /// # Ok::<(), EnvError>(())
    /// ```
    pub fn from_vars<K, V>(
        prefix: &str,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<PoolConfig, EnvError>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut entries = Vec::new();
        for (name, value) in vars {
            // A name that is not Unicode cannot spell `{prefix}_{SETTING}`.
            let Some(name) = name.as_ref().to_str() else {
                continue;
            };
            let Some(setting) = name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('_'))
            else {
                continue;
            };
            let Some(value) = value.as_ref().to_str() else {
                return Err(EnvError::NotUnicode {
                    var: name.to_owned(),
                });
            };
            entries.push(Entry {
                var: name.to_owned(),
                // Upper case only, so two variables cannot state one setting.
                setting: (!setting.bytes().any(|b| b.is_ascii_lowercase()))
                    .then(|| setting.to_ascii_lowercase()),
                value: value.to_owned(),
            });
        }
        // The same order whatever order the environment came in, so the
        // first error reported is the same on every run.
        entries.sort_by(|a, b| a.var.cmp(&b.var));
        PoolConfig::deserialize(Vars { entries }).map_err(|e| e.into_env_error(prefix))
    }
}

/// Why the environment did not give a [`PoolConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvError {
    /// A variable under the prefix names no setting (a typo, or a prefix
    /// shared with something else).
    UnknownVariable {
        /// The variable, e.g. `ORDERS_POOL_MAX_SIZ`.
        var: String,
        /// The settings there are ([`PoolConfig::SETTINGS`]).
        settings: &'static [&'static str],
    },
    /// A variable under the prefix holds bytes that are not Unicode.
    NotUnicode {
        /// The variable.
        var: String,
    },
    /// A variable's value is not what its setting takes; the cause says why.
    InvalidValue {
        /// The variable.
        var: String,
        /// What is wrong with the value.
        source: InvalidValue,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::UnknownVariable { var, settings } => write!(
                f,
                "environment variable {var} names no pool setting (the settings are: {})",
                settings.join(", ")
            ),
            EnvError::NotUnicode { var } => {
                write!(f, "environment variable {var} is not valid Unicode")
            }
            EnvError::InvalidValue { var, .. } => {
                write!(f, "environment variable {var} has an invalid value")
            }
        }
    }
}

impl Error for EnvError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            EnvError::InvalidValue { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What is wrong with one variable's value, in the words of the parser
/// that refused it ("invalid digit found in string", "invalid duration ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue(String);

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for InvalidValue {}

/// One variable under the prefix.
struct Entry {
    var: String,
    /// The setting it names: the variable less the prefix, in lower case;
    /// `None` if it was not all upper case.
    setting: Option<String>,
    value: String,
}

/// The deserializer's own error: which variable, and what went wrong.
#[derive(Debug)]
enum VarsError {
    Unknown(String),
    Value {
        var: String,
        message: String,
    },
    /// Raised by serde outside any one variable's value.
    Other(String),
}

impl VarsError {
    fn into_env_error(self, prefix: &str) -> EnvError {
        match self {
            VarsError::Unknown(var) => EnvError::UnknownVariable {
                var,
                settings: PoolConfig::SETTINGS,
            },
            VarsError::Value { var, message } => EnvError::InvalidValue {
                var,
                source: InvalidValue(message),
            },
            VarsError::Other(message) => EnvError::InvalidValue {
                var: format!("{prefix}_*"),
                source: InvalidValue(message),
            },
        }
    }
}

impl fmt::Display for VarsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarsError::Unknown(var) => write!(f, "unknown variable {var}"),
            VarsError::Value { var, message } => write!(f, "{var}: {message}"),
            VarsError::Other(message) => f.write_str(message),
        }
    }
}

impl Error for VarsError {}

impl de::Error for VarsError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        VarsError::Other(msg.to_string())
    }
}

/// The variables under the prefix, seen by serde as a struct of strings.
struct Vars {
    entries: Vec<Entry>,
}

impl<'de> de::Deserializer<'de> for Vars {
    type Error = VarsError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, VarsError> {
        visitor.visit_map(Settings {
            entries: self.entries.into_iter(),
            value: None,
        })
    }

    // Unknown names are found here, where the settings are known, so the
    // error can name the variable rather than the lower-cased setting.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, VarsError> {
        if let Some(unknown) = self
            .entries
            .iter()
            .find(|e| e.setting.as_deref().is_none_or(|s| !fields.contains(&s)))
        {
            return Err(VarsError::Unknown(unknown.var.clone()));
        }
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct Settings {
    entries: std::vec::IntoIter<Entry>,
    value: Option<(String, String)>,
}

impl<'de> MapAccess<'de> for Settings {
    type Error = VarsError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, VarsError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        let setting = entry.setting.as_deref().unwrap_or_default();
        let key =
            seed.deserialize(setting.into_deserializer())
                .map_err(|e: de::value::Error| VarsError::Value {
                    var: entry.var.clone(),
                    message: e.to_string(),
                })?;
        self.value = Some((entry.var, entry.value));
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, VarsError> {
        let (var, value) = self
            .value
            .take()
            .ok_or_else(|| VarsError::Other("a value was asked for before its name".into()))?;
        seed.deserialize(Value(&value))
            .map_err(|e| VarsError::Value { var, message: e.0 })
    }
}

/// One variable's value: a string, parsed into whatever type its setting
/// asks for.
struct Value<'a>(&'a str);

/// A value's error: only the message; the map adds the variable.
#[derive(Debug)]
struct ValueError(String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for ValueError {}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident: $ty:ty, $what:literal);* $(;)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
                let text = self.0.trim();
                let n: $ty = text
                    .parse()
                    .map_err(|e| ValueError(format!("{text:?} is not {}: {e}", $what)))?;
                visitor.$visit(n)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Value<'_> {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_str(self.0)
    }

    // A variable that is set states its setting: `Some`, whatever the value.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_some(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_enum(self.0.trim().into_deserializer())
    }

    parse_number! {
        deserialize_u8 => visit_u8: u8, "a whole number from 0 to 255";
        deserialize_u16 => visit_u16: u16, "a whole number from 0 to 65535";
        deserialize_u32 => visit_u32: u32, "a whole number from 0 to 4294967295";
        deserialize_u64 => visit_u64: u64, "a whole number, 0 or more";
        deserialize_i8 => visit_i8: i8, "a whole number";
        deserialize_i16 => visit_i16: i16, "a whole number";
        deserialize_i32 => visit_i32: i32, "a whole number";
        deserialize_i64 => visit_i64: i64, "a whole number";
        deserialize_f32 => visit_f32: f32, "a number";
        deserialize_f64 => visit_f64: f64, "a number";
        deserialize_bool => visit_bool: bool, "true or false";
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct
        newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}
