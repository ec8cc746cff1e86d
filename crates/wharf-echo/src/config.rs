//! The environment switches, parsed once at start. A malformed value is an error (the process
//! exits 2 saying which), so a typo in a test's task definition fails loudly.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `LISTEN` (full address) or `0.0.0.0:$PORT`; `PORT` defaults to 8080.
    pub listen: SocketAddr,
    /// `VERSION`, default `v1`.
    pub version: String,
    /// `CONTAINER_NAME`, default empty.
    pub container: String,
    /// `TASK_ARN`, else looked up from the task metadata endpoint.
    pub task_arn: Option<String>,
    /// `ECS_CONTAINER_METADATA_URI_V4`.
    pub metadata_uri: Option<String>,
    /// `CRASH_AFTER_SECS`: exit with `exit_code` this long after start.
    pub crash_after: Option<Duration>,
    /// `EXIT_CODE`, if set (crashes default to 1, `EXIT_AFTER_LOG` to 0).
    pub exit_code: Option<i32>,
    /// `UNHEALTHY=1`.
    pub unhealthy: bool,
    /// `UNHEALTHY_AFTER_SECS`.
    pub unhealthy_after: Option<Duration>,
    /// `START_DELAY_SECS`: sleep before listening.
    pub start_delay: Option<Duration>,
    /// `CPU_BURN`: threads spinning (`1` is one thread).
    pub cpu_burn: u32,
    /// `MEMORY_GROW_MB_PER_SEC`.
    pub memory_grow_mb_per_sec: u64,
    /// `MEMORY_MAX_MB`: stop growing here (default: never).
    pub memory_max_mb: Option<u64>,
    /// `LOG_BURST`: lines printed at once at start.
    pub log_burst: u64,
    /// `LOG_EVERY_MS`: interval between periodic lines.
    pub log_every: Option<Duration>,
    /// `LOG_LINES`: how many periodic lines (default: until stopped).
    pub log_lines: Option<u64>,
    /// `EXIT_AFTER_LOG=1`: exit once the burst and the periodic lines are printed.
    pub exit_after_log: bool,
    /// `STOP_DELAY_SECS`: time between SIGTERM and exit.
    pub stop_delay: Duration,
    /// `IGNORE_SIGTERM=1`.
    pub ignore_sigterm: bool,
    /// `LOG_REQUESTS=0` silences the per-request line.
    pub log_requests: bool,
    /// The whole environment, sorted, for `/env`.
    pub env: Vec<(String, String)>,
}

impl Config {
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let mut env: Vec<(String, String)> = vars.into_iter().collect();
        env.sort();
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
        let num = |name: &str| -> Result<Option<u64>, String> {
            get(name).map(|v| v.parse().map_err(|_| format!("{name}={v:?}: expected a whole number"))).transpose()
        };
        let secs = |name: &str| -> Result<Option<Duration>, String> {
            get(name)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .ok_or_else(|| format!("{name}={v:?}: expected seconds (e.g. 5 or 0.5)"))
                })
                .transpose()
        };
        let flag = |name: &str| -> Result<bool, String> {
            match get(name).map(str::to_ascii_lowercase).as_deref() {
                None | Some("0" | "false" | "no" | "off") => Ok(false),
                Some("1" | "true" | "yes" | "on") => Ok(true),
                Some(v) => Err(format!("{name}={v:?}: expected 1 or 0")),
            }
        };

        let listen = match (get("LISTEN"), get("PORT")) {
            (Some(addr), _) => addr.parse().map_err(|_| format!("LISTEN={addr:?}: expected HOST:PORT"))?,
            (None, Some(port)) => {
                let port: u16 = port.parse().map_err(|_| format!("PORT={port:?}: expected a port number"))?;
                SocketAddr::from(([0, 0, 0, 0], port))
            }
            (None, None) => SocketAddr::from(([0, 0, 0, 0], 8080)),
        };
        let exit_code = get("EXIT_CODE")
            .map(|v| v.parse::<i32>().map_err(|_| format!("EXIT_CODE={v:?}: expected an integer")))
            .transpose()?;
        let cpu_burn = match get("CPU_BURN") {
            None => 0,
            Some(v) => v.parse().map_err(|_| format!("CPU_BURN={v:?}: expected a thread count (1 = one thread)"))?,
        };
        let config = Self {
            listen,
            version: get("VERSION").unwrap_or("v1").to_owned(),
            container: get("CONTAINER_NAME").unwrap_or("").to_owned(),
            task_arn: get("TASK_ARN").map(str::to_owned),
            metadata_uri: get("ECS_CONTAINER_METADATA_URI_V4").map(|u| u.trim_end_matches('/').to_owned()),
            crash_after: secs("CRASH_AFTER_SECS")?,
            exit_code,
            unhealthy: flag("UNHEALTHY")?,
            unhealthy_after: secs("UNHEALTHY_AFTER_SECS")?,
            start_delay: secs("START_DELAY_SECS")?,
            cpu_burn,
            memory_grow_mb_per_sec: num("MEMORY_GROW_MB_PER_SEC")?.unwrap_or(0),
            memory_max_mb: num("MEMORY_MAX_MB")?,
            log_burst: num("LOG_BURST")?.unwrap_or(0),
            log_every: num("LOG_EVERY_MS")?.filter(|&ms| ms > 0).map(Duration::from_millis),
            log_lines: num("LOG_LINES")?,
            exit_after_log: flag("EXIT_AFTER_LOG")?,
            stop_delay: secs("STOP_DELAY_SECS")?.unwrap_or_default(),
            ignore_sigterm: flag("IGNORE_SIGTERM")?,
            log_requests: get("LOG_REQUESTS").is_none_or(|v| v != "0" && !v.eq_ignore_ascii_case("false")),
            env: Vec::new(),
        };
        Ok(Self { env, ..config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_env(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn defaults() {
        let c = config(&[]).expect("config");
        assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(c.version, "v1");
        assert_eq!((c.crash_after, c.exit_code, c.unhealthy, c.cpu_burn), (None, None, false, 0));
        assert_eq!((c.log_burst, c.log_every, c.stop_delay, c.ignore_sigterm), (0, None, Duration::ZERO, false));
        assert!(c.log_requests);
    }

    #[test]
    fn switches() {
        let c = config(&[
            ("PORT", "9000"),
            ("VERSION", "v2"),
            ("CRASH_AFTER_SECS", "1.5"),
            ("EXIT_CODE", "-3"),
            ("UNHEALTHY", "true"),
            ("CPU_BURN", "2"),
            ("LOG_EVERY_MS", "100"),
            ("LOG_LINES", "3"),
            ("EXIT_AFTER_LOG", "1"),
            ("STOP_DELAY_SECS", "2"),
            ("IGNORE_SIGTERM", "yes"),
            ("LOG_REQUESTS", "0"),
            ("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/abc/"),
            ("EMPTY", ""),
        ])
        .expect("config");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.version, "v2");
        assert_eq!(c.crash_after, Some(Duration::from_millis(1500)));
        assert_eq!(c.exit_code, Some(-3));
        assert!(c.unhealthy && c.exit_after_log && c.ignore_sigterm && !c.log_requests);
        assert_eq!((c.cpu_burn, c.log_every, c.log_lines), (2, Some(Duration::from_millis(100)), Some(3)));
        assert_eq!(c.stop_delay, Duration::from_secs(2));
        assert_eq!(c.metadata_uri.as_deref(), Some("http://169.254.170.2/v4/abc"));
        assert_eq!(c.env.first().map(|(k, _)| k.as_str()), Some("CPU_BURN"), "sorted");
    }

    #[test]
    fn listen_beats_port() {
        let c = config(&[("LISTEN", "127.0.0.1:0"), ("PORT", "1")]).expect("config");
        assert_eq!(c.listen, "127.0.0.1:0".parse().expect("addr"));
    }

    #[test]
    fn rejects_malformed_values() {
        for (k, v) in [
            ("PORT", "http"),
            ("LISTEN", "8080"),
            ("CRASH_AFTER_SECS", "-1"),
            ("CRASH_AFTER_SECS", "soon"),
            ("EXIT_CODE", "1.5"),
            ("UNHEALTHY", "maybe"),
            ("MEMORY_GROW_MB_PER_SEC", "-5"),
        ] {
            let err = config(&[(k, v)]).expect_err(k);
            assert!(err.starts_with(k), "{err}");
        }
    }
}
