//! `PoolConfig`: a pool's `Config` from TOML, JSON and the environment.

#![cfg(feature = "serde")]

use std::collections::BTreeSet;
use std::error::Error;
use std::time::Duration;

use livepool::config_file::{EnvError, PoolConfig};
use livepool::{BuildError, Config, IdleOrder, Pool};

mod support;
use support::FakeManager;

/// A `Config` with every setting away from its default, so a round trip
/// that dropped or mixed up any one of them shows.
fn unusual() -> Config {
    let mut c = Config::default();
    c.name = "orders-db".into();
    c.max_size = 33;
    c.min_idle = 3;
    c.wait_timeout = Duration::from_millis(2_500);
    c.connect_timeout = Duration::from_secs(7);
    c.validate_after = Duration::from_secs(90);
    c.heartbeat_timeout = Duration::from_millis(750);
    c.heartbeat_interval = None;
    c.heartbeat_jitter = 0.25;
    c.heartbeat_failures = 4;
    c.max_concurrent_probes = 5;
    c.idle_timeout = Some(Duration::from_secs(3_600 + 1_800));
    c.max_lifetime = None;
    c.idle_order = IdleOrder::Fifo;
    c.refill_backoff_min = Duration::from_micros(1_500);
    c.refill_backoff_max = Duration::from_secs(2 * 86_400);
    c.close_timeout = Duration::from_nanos(1);
    c
}

/// `Config` has no `PartialEq`; its `Debug` shows every field.
fn same(a: &Config, b: &Config) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[test]
fn toml_round_trip_keeps_every_setting() {
    let original = unusual();
    let text = toml::to_string(&PoolConfig::from(&original)).unwrap();
    let back: PoolConfig = toml::from_str(&text).unwrap();
    assert!(
        same(&back.into_config(), &original),
        "round trip through\n{text}\nchanged the config"
    );
    assert!(text.contains("heartbeat_interval = \"off\""), "{text}");
    assert!(text.contains("wait_timeout = \"2s 500ms\""), "{text}");
}

#[test]
fn json_round_trip_keeps_every_setting() {
    let original = unusual();
    let text = serde_json::to_string(&PoolConfig::from(&original)).unwrap();
    let back: PoolConfig = serde_json::from_str(&text).unwrap();
    assert!(same(&back.into_config(), &original), "{text}");
}

/// The guard against a field added to `Config` and not to `PoolConfig`: the
/// names `Config`'s own `Debug` shows must be exactly the settings written.
#[test]
fn every_config_field_is_a_setting() {
    let debug = format!("{:?}", Config::default());
    let inner = debug
        .strip_prefix("Config { ")
        .and_then(|s| s.strip_suffix(" }"))
        .unwrap();
    let config_fields: BTreeSet<&str> = inner
        .split(", ")
        .filter_map(|part| part.split_once(": ").map(|(name, _)| name))
        .collect();
    let written = serde_json::to_value(PoolConfig::from(&Config::default())).unwrap();
    let written: BTreeSet<&str> = written
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let declared: BTreeSet<&str> = PoolConfig::SETTINGS.iter().copied().collect();
    assert_eq!(config_fields, written);
    assert_eq!(declared, written);
}

#[test]
fn absent_settings_keep_their_defaults() {
    let config = toml::from_str::<PoolConfig>("max_size = 4")
        .unwrap()
        .into_config();
    let mut expected = Config::default();
    expected.max_size = 4;
    assert!(same(&config, &expected));
    assert!(same(
        &PoolConfig::default().into_config(),
        &Config::default()
    ));
}

fn wait_timeout(value: &str) -> Result<Duration, toml::de::Error> {
    let file: PoolConfig = toml::from_str(&format!("wait_timeout = {value:?}"))?;
    Ok(file.into_config().wait_timeout)
}

#[test]
fn durations_are_read_as_people_write_them() {
    let cases = [
        ("15s", Duration::from_secs(15)),
        ("250ms", Duration::from_millis(250)),
        ("10min", Duration::from_secs(600)),
        ("10m", Duration::from_secs(600)),
        ("2h", Duration::from_secs(7_200)),
        ("1h 30m", Duration::from_secs(5_400)),
        ("1h30m", Duration::from_secs(5_400)),
        ("1day", Duration::from_secs(86_400)),
        ("1s 500ms", Duration::from_millis(1_500)),
        ("750us", Duration::from_micros(750)),
        ("20ns", Duration::from_nanos(20)),
        (" 5s ", Duration::from_secs(5)),
    ];
    for (text, expected) in cases {
        assert_eq!(wait_timeout(text).unwrap(), expected, "{text:?}");
    }
}

#[test]
fn a_duration_without_a_unit_is_refused() {
    for text in ["15", "fast", "", "-1s", "15 parsecs"] {
        let err = wait_timeout(text).unwrap_err().to_string();
        assert!(
            err.contains("expected a duration such as \"15s\""),
            "{text:?}: {err}"
        );
    }
    let err = toml::from_str::<PoolConfig>("wait_timeout = 15")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid type: integer `15`, expected a duration such as \"15s\""),
        "{err}"
    );
}

#[test]
fn off_turns_off_what_can_be_turned_off() {
    let file: PoolConfig = toml::from_str(
        r#"
        heartbeat_interval = "off"
        idle_timeout = "OFF"
        max_lifetime = "off"
        "#,
    )
    .unwrap();
    let config = file.into_config();
    assert_eq!(config.heartbeat_interval, None);
    assert_eq!(config.idle_timeout, None);
    assert_eq!(config.max_lifetime, None);

    let json: PoolConfig =
        serde_json::from_str(r#"{"idle_timeout": null, "max_size": null}"#).unwrap();
    let config = json.into_config();
    assert_eq!(
        config.idle_timeout, None,
        "null turns a switchable setting off"
    );
    assert_eq!(
        config.max_size,
        Config::default().max_size,
        "null elsewhere keeps the default"
    );

    let err = wait_timeout("off").unwrap_err().to_string();
    assert!(err.contains("this setting cannot be turned off"), "{err}");
}

#[test]
fn unknown_settings_are_refused_by_name() {
    let err = toml::from_str::<PoolConfig>("max_size = 4\nmax_sise = 16")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `max_sise`, expected one of `name`"),
        "{err}"
    );
    assert!(
        err.contains("line 2"),
        "the error points at the line: {err}"
    );

    let err = serde_json::from_str::<PoolConfig>(r#"{"heartbeat_intervall": "5s"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `heartbeat_intervall`"), "{err}");
}

#[test]
fn idle_order_is_lifo_or_fifo() {
    let config = toml::from_str::<PoolConfig>(r#"idle_order = "fifo""#)
        .unwrap()
        .into_config();
    assert_eq!(config.idle_order, IdleOrder::Fifo);
    let err = toml::from_str::<PoolConfig>(r#"idle_order = "random""#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown variant `random`, expected `lifo` or `fifo`"),
        "{err}"
    );
}

#[test]
fn environment_variables_state_settings_under_a_prefix() {
    let vars = [
        ("ORDERS_POOL_NAME", "orders"),
        ("ORDERS_POOL_MAX_SIZE", "16"),
        ("ORDERS_POOL_HEARTBEAT_JITTER", "0.2"),
        ("ORDERS_POOL_HEARTBEAT_FAILURES", " 2 "),
        ("ORDERS_POOL_WAIT_TIMEOUT", "2s"),
        ("ORDERS_POOL_IDLE_TIMEOUT", "5min"),
        ("ORDERS_POOL_MAX_LIFETIME", "off"),
        ("ORDERS_POOL_IDLE_ORDER", "fifo"),
        // Not ours: another prefix, or the prefix not followed by `_`.
        ("OTHER_POOL_MAX_SIZE", "99"),
        ("ORDERS_POOLS_MAX_SIZE", "99"),
        ("PATH", "/usr/bin"),
    ];
    let config = PoolConfig::from_vars("ORDERS_POOL", vars)
        .unwrap()
        .into_config();
    assert_eq!(config.name, "orders");
    assert_eq!(config.max_size, 16);
    assert_eq!(config.heartbeat_jitter, 0.2);
    assert_eq!(config.heartbeat_failures, 2);
    assert_eq!(config.wait_timeout, Duration::from_secs(2));
    assert_eq!(config.idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(config.max_lifetime, None);
    assert_eq!(config.idle_order, IdleOrder::Fifo);
}

#[test]
fn an_unknown_variable_under_the_prefix_is_refused_by_name() {
    for var in ["APP_MAX_SIZ", "APP_max_size"] {
        let err = PoolConfig::from_vars("APP", [(var, "16")]).unwrap_err();
        assert!(
            matches!(&err, EnvError::UnknownVariable { var: v, .. } if v == var),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("environment variable {var} names no pool setting")),
            "{text}"
        );
        assert!(text.contains("max_size"), "lists the settings: {text}");
    }
}

#[test]
fn an_invalid_value_names_its_variable_and_says_why() {
    let cases = [
        (
            "APP_MAX_SIZE",
            "sixteen",
            "\"sixteen\" is not a whole number, 0 or more",
        ),
        (
            "APP_HEARTBEAT_FAILURES",
            "-1",
            "\"-1\" is not a whole number from 0 to 4294967295",
        ),
        ("APP_WAIT_TIMEOUT", "15", "invalid duration \"15\""),
        ("APP_WAIT_TIMEOUT", "off", "cannot be turned off"),
        ("APP_IDLE_ORDER", "random", "unknown variant `random`"),
    ];
    for (var, value, cause) in cases {
        let err = PoolConfig::from_vars("APP", [(var, value)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("environment variable {var} has an invalid value")
        );
        let source = err.source().expect("the cause").to_string();
        assert!(source.contains(cause), "{var}={value}: {source}");
    }
}

#[cfg(unix)]
#[test]
fn a_value_that_is_not_unicode_is_refused() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let vars = [(
        OsString::from("APP_NAME"),
        OsString::from_vec(vec![0xff, 0xfe]),
    )];
    let err = PoolConfig::from_vars("APP", vars).unwrap_err();
    assert_eq!(
        err,
        EnvError::NotUnicode {
            var: "APP_NAME".into()
        }
    );
}

/// `from_env` reads the real environment. Setting a variable in this process
/// needs `unsafe` (the crate forbids it), so the test runs itself again as a
/// child process with the variables set, and the child checks.
#[test]
fn from_env_reads_the_process_environment() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "from_env_child", "--ignored", "--nocapture"])
        .env("LIVEPOOL_CONFIG_TEST_MAX_SIZE", "21")
        .env("LIVEPOOL_CONFIG_TEST_HEARTBEAT_INTERVAL", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );
}

#[test]
#[ignore = "run by from_env_reads_the_process_environment, with its variables set"]
fn from_env_child() {
    let config = PoolConfig::from_env("LIVEPOOL_CONFIG_TEST")
        .unwrap()
        .into_config();
    assert_eq!(config.max_size, 21);
    assert_eq!(config.heartbeat_interval, None);
}

#[test]
fn the_environment_overlays_a_file() {
    let file: PoolConfig = toml::from_str("max_size = 4\nmin_idle = 2").unwrap();
    let env = PoolConfig::from_vars("APP", [("APP_MAX_SIZE", "8")]).unwrap();
    let config = file.overlay(env).into_config();
    assert_eq!((config.max_size, config.min_idle), (8, 2));
}

/// A file states what it likes; whether it could work is the pool's
/// build-time check, the same as for a `Config` written in code.
#[tokio::test]
async fn the_pool_checks_a_loaded_config_when_it_is_built() {
    let bad: PoolConfig =
        toml::from_str("heartbeat_interval = \"1s\"\nheartbeat_timeout = \"2s\"").unwrap();
    let err = Pool::new(FakeManager::new(), bad.into_config()).unwrap_err();
    assert_eq!(err, BuildError::HeartbeatTimeoutNotBelowInterval);

    let good: PoolConfig = toml::from_str("name = \"loaded\"\nmax_size = 2").unwrap();
    let pool = Pool::new(FakeManager::new(), good.into_config()).unwrap();
    assert_eq!(pool.config().name, "loaded");
    drop(pool.get().await.unwrap());
    assert_eq!(pool.status().idle, 1);
}
