//! A pool's [`Config`] from a configuration file or the environment (feature
//! `serde`).
//!
//! [`PoolConfig`] is the serde form of [`Config`]: every setting optional
//! (an absent one keeps [`Config::default`]'s value), durations written as a
//! person would (`"15s"`, `"250ms"`, `"10min"`, `"1h 30m"`), settings that
//! can be turned off (`heartbeat_interval`, `idle_timeout`, `max_lifetime`)
//! written `"off"` (or `null` in JSON), and unknown settings refused, so a
//! typo (`max_sise`) is an error that names it rather than a setting
//! silently left at its default.
//!
//! It deserializes from any serde format; embed it in your service's own
//! configuration struct, or load it alone:
//!
//! ```
//! use std::time::Duration;
//! use livepool::config_file::PoolConfig;
//!
//! let file: PoolConfig = toml::from_str(r#"
//!     name = "orders-db"
//!     max_size = 16
//!     wait_timeout = "2s"
//!     heartbeat_interval = "10s"
//!     heartbeat_timeout = "750ms"
//!     max_lifetime = "off"
//! "#)?;
//! let config = file.into_config();
//! assert_eq!(config.max_size, 16);
//! assert_eq!(config.heartbeat_timeout, Duration::from_millis(750));
//! assert_eq!(config.max_lifetime, None);
//! assert_eq!(config.min_idle, 0); // absent: the default
//!
//! let typo = toml::from_str::<PoolConfig>("max_sise = 16").unwrap_err();
//! assert!(typo.to_string().contains("unknown field `max_sise`"));
//! # Ok::<(), toml::de::Error>(())
//! ```
//!
//! and from environment variables, `PREFIX_SETTING` in upper case
//! ([`PoolConfig::from_env`]). Layer them with [`PoolConfig::overlay`]
//! (the environment over the file, say).
//!
//! Nothing here validates: [`Pool::new`](crate::Pool::new) checks the
//! resulting [`Config`] as it checks any other, and refuses a pool that
//! could not work with a [`BuildError`](crate::BuildError).

mod duration;
mod env;

use serde::{Deserialize, Serialize};

use crate::pool::{Config, IdleOrder};

pub use env::EnvError;

/// Declares [`PoolConfig`] from one list of [`Config`]'s fields, and from the
/// same list the conversions both ways, so no field can be in one and not
/// in the other.
///
/// How a field added to `Config` is caught: `From<&Config>` destructures
/// `Config` without `..` (allowed inside this crate despite its
/// `#[non_exhaustive]`), so a field missing from this list is a compile
/// error there, and a test serializes [`PoolConfig::from`] every default
/// and checks that every name in [`PoolConfig::SETTINGS`] comes out.
macro_rules! pool_config {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty $(=> $with:literal)?; )*) => {
        /// [`Config`] as a configuration file or the environment states it:
        /// every setting optional, absent ones keep their defaults. See the
        /// [module docs](self) for the formats.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[non_exhaustive]
        pub struct PoolConfig {
            $(
                $(#[$doc])*
                #[serde(default, skip_serializing_if = "Option::is_none" $(, with = $with)?)]
                pub $field: Option<$ty>,
            )*
        }

        impl PoolConfig {
            /// Every setting's name, as written in a file (and, in upper case
            /// after the prefix, in the environment).
            pub const SETTINGS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// `base` with every setting this one states put over it.
            pub fn apply_to(self, mut base: Config) -> Config {
                $(
                    if let Some(value) = self.$field {
                        base.$field = value;
                    }
                )*
                base
            }

            /// Every setting `over` states, put over this one's: a file's
            /// settings overlaid with the environment's, say.
            pub fn overlay(self, over: PoolConfig) -> PoolConfig {
                PoolConfig {
                    $($field: over.$field.or(self.$field),)*
                }
            }
        }

        impl From<&Config> for PoolConfig {
            /// Every setting stated: serialize it to write a complete file.
            fn from(config: &Config) -> Self {
                // No `..`: a field added to `Config` fails to compile here
                // until it is added to `pool_config!`.
                let Config { $($field),* } = config;
                PoolConfig {
                    $($field: Some($field.clone()),)*
                }
            }
        }
    };
}

pool_config! {
    /// `name`: a string.
    name: String;
    /// `max_size`: an integer, 1 or more.
    max_size: usize;
    /// `min_idle`: an integer, at most `max_size`.
    min_idle: usize;
    /// `wait_timeout`: a duration.
    wait_timeout: std::time::Duration => "duration::required";
    /// `connect_timeout`: a duration.
    connect_timeout: std::time::Duration => "duration::required";
    /// `validate_after`: a duration.
    validate_after: std::time::Duration => "duration::required";
    /// `heartbeat_timeout`: a duration.
    heartbeat_timeout: std::time::Duration => "duration::required";
    /// `heartbeat_interval`: a duration, or `"off"`.
    heartbeat_interval: Option<std::time::Duration> => "duration::switchable";
    /// `heartbeat_jitter`: a number, 0.0 to 0.5.
    heartbeat_jitter: f64;
    /// `heartbeat_failures`: an integer, 1 or more.
    heartbeat_failures: u32;
    /// `max_concurrent_probes`: an integer, 1 or more.
    max_concurrent_probes: usize;
    /// `idle_timeout`: a duration, or `"off"`.
    idle_timeout: Option<std::time::Duration> => "duration::switchable";
    /// `max_lifetime`: a duration, or `"off"`.
    max_lifetime: Option<std::time::Duration> => "duration::switchable";
    /// `idle_order`: `"lifo"` or `"fifo"`.
    idle_order: IdleOrder => "idle_order";
    /// `refill_backoff_min`: a duration.
    refill_backoff_min: std::time::Duration => "duration::required";
    /// `refill_backoff_max`: a duration.
    refill_backoff_max: std::time::Duration => "duration::required";
    /// `close_timeout`: a duration.
    close_timeout: std::time::Duration => "duration::required";
    /// `adaptive_heartbeat_floor`: a duration, or `"off"`.
    adaptive_heartbeat_floor: Option<std::time::Duration> => "duration::switchable";
    /// `leak_threshold`: a duration, or `"off"`.
    leak_threshold: Option<std::time::Duration> => "duration::switchable";
}

impl PoolConfig {
    /// [`Config::default`] with every setting this one states put over it.
    pub fn into_config(self) -> Config {
        self.apply_to(Config::default())
    }
}

impl From<PoolConfig> for Config {
    fn from(file: PoolConfig) -> Config {
        file.into_config()
    }
}

/// `idle_order` as the strings `"lifo"` and `"fifo"`: [`IdleOrder`] lives
/// in the pool core, which knows nothing of serde.
mod idle_order {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::pool::IdleOrder;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Name {
        Lifo,
        Fifo,
    }

    pub(super) fn serialize<S: Serializer>(
        order: &Option<IdleOrder>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        order
            .map(|order| match order {
                IdleOrder::Lifo => Name::Lifo,
                IdleOrder::Fifo => Name::Fifo,
            })
            .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<IdleOrder>, D::Error> {
        Ok(
            Option::<Name>::deserialize(deserializer)?.map(|name| match name {
                Name::Lifo => IdleOrder::Lifo,
                Name::Fifo => IdleOrder::Fifo,
            }),
        )
    }
}
