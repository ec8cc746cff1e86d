//! wharf-echo: the workload Wharf's end-to-end tests run as ECS tasks.
//!
//! With no arguments it is an HTTP server (`/`, `/health`, `/env`, `/peer`, `/exit`, `/work`, …)
//! whose misbehaviour is switched on by environment variables: crashing, exit codes, failing
//! health, slow start, CPU burn, memory growth, log lines and SIGTERM handling. With arguments it
//! runs small one-shot actions (`--exit 3`, `--healthcheck URL`, …) so command and entry point
//! overrides can be tested in a `scratch` image that has no shell. See docs/test-images.md.

mod client;
mod config;
mod http;
mod json;
mod load;
mod routes;

use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::exit;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;
use crate::http::{Read1, Response};
use crate::routes::State;

/// How long an idle keep-alive connection is kept (longer than load balancers' idle timeouts).
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);

const USAGE: &str = "\
usage: wharf-echo                  serve HTTP (configured by environment; see docs/test-images.md)
       wharf-echo ACTION...        run the actions in order, then exit 0:
  --healthcheck URL   GET URL; exit 0 on a 2xx/3xx answer, else 1
  --print-env         print the environment as KEY=VALUE lines
  --echo TEXT         print TEXT
  --sleep SECS        sleep (SIGTERM ends it, unless IGNORE_SIGTERM=1)
  --exit CODE         exit with CODE now
  --serve             serve HTTP (after the actions before it)
  --load URL [--connections N] [--close] [--seconds S]
                      GET URL from N connections (16) until SIGINT/SIGTERM (or S seconds),
                      a new connection per request with --close; print a JSON summary
                      with every failure and when it happened
  --version           print the version";

fn main() {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        exit(run_actions(&args, started));
    }
    serve(started)
}

fn env_vars() -> Vec<(String, String)> {
    std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect()
}

/// Runs argv actions in order; the exit code.
fn run_actions(args: &[String], started: Instant) -> i32 {
    let mut args = args.iter();
    let mut signals_installed = false;
    while let Some(arg) = args.next() {
        let mut value = |what: &str| match args.next() {
            Some(v) => Ok(v.clone()),
            None => Err(format!("{arg} needs {what}")),
        };
        let outcome = match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                Ok(())
            }
            "--version" => {
                println!("wharf-echo {}", env!("CARGO_PKG_VERSION"));
                Ok(())
            }
            "--print-env" => {
                let mut vars = env_vars();
                vars.sort();
                let mut out = std::io::stdout().lock();
                for (k, v) in vars {
                    let _ = writeln!(out, "{k}={v}");
                }
                Ok(())
            }
            "--echo" => value("TEXT").map(|text| println!("{text}")),
            "--exit" => match value("CODE").map(|c| c.parse::<i32>()) {
                Ok(Ok(code)) => return code,
                Ok(Err(_)) => Err("--exit needs an integer CODE".to_owned()),
                Err(e) => Err(e),
            },
            "--sleep" => value("SECS").and_then(|secs| {
                let d = secs.parse::<f64>().ok().and_then(|s| Duration::try_from_secs_f64(s).ok());
                let d = d.ok_or_else(|| format!("--sleep needs seconds, not {secs:?}"))?;
                if !signals_installed {
                    let ignore = env_vars().iter().any(|(k, v)| k == "IGNORE_SIGTERM" && (v == "1" || v == "true"));
                    handle_signals(ignore, Duration::ZERO);
                    signals_installed = true;
                }
                std::thread::sleep(d);
                Ok(())
            }),
            "--healthcheck" => match value("URL") {
                Ok(url) => return healthcheck(&url),
                Err(e) => Err(e),
            },
            "--serve" => serve(started),
            "--load" => return load_action(args.as_slice()),
            other => Err(format!("unknown argument {other:?}\n{USAGE}")),
        };
        if let Err(e) = outcome {
            eprintln!("wharf-echo: {e}");
            return 2;
        }
    }
    0
}

/// `--load URL [--connections N] [--close] [--seconds S]` (the rest of the arguments).
fn load_action(rest: &[String]) -> i32 {
    let parsed = (|| -> Result<load::Options, String> {
        let mut it = rest.iter();
        let url = it.next().ok_or("--load needs a URL")?;
        let url = client::Url::parse(url)?;
        let mut opts = load::Options { url, connections: 16, close: false, seconds: None };
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--connections" => {
                    opts.connections = value()?.parse().map_err(|_| "--connections needs a count".to_owned())?;
                }
                "--seconds" => {
                    opts.seconds = Some(value()?.parse().map_err(|_| "--seconds needs a number".to_owned())?);
                }
                "--close" => opts.close = true,
                other => return Err(format!("unknown --load option {other:?}")),
            }
        }
        Ok(opts)
    })();
    match parsed {
        Ok(opts) => load::run(opts),
        Err(e) => {
            eprintln!("wharf-echo: {e}\n{USAGE}");
            2
        }
    }
}

/// `--healthcheck URL`: 0 when the URL answers 2xx or 3xx within 5 s, else 1.
fn healthcheck(url: &str) -> i32 {
    let url = match client::Url::parse(url) {
        Ok(url) => url,
        Err(e) => {
            println!("healthcheck: {e}");
            return 1;
        }
    };
    match client::get(&url, Duration::from_secs(5)) {
        Ok(resp) if (200..400).contains(&resp.status) => {
            println!("healthcheck: {} {}", resp.status, String::from_utf8_lossy(&resp.body).trim());
            0
        }
        Ok(resp) => {
            println!("healthcheck: {} {}", resp.status, String::from_utf8_lossy(&resp.body).trim());
            1
        }
        Err(e) => {
            println!("healthcheck: {e}");
            1
        }
    }
}

/// SIGTERM (and SIGINT): say so, then exit 0 after `stop_delay` — or keep running if `ignore`.
fn handle_signals(ignore: bool, stop_delay: Duration) {
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wharf-echo: cannot handle signals: {e}");
            return;
        }
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let name = if signal == SIGTERM { "SIGTERM" } else { "SIGINT" };
            if ignore {
                println!("{name} received; ignoring it (IGNORE_SIGTERM=1)");
                continue;
            }
            println!("{name} received");
            if !stop_delay.is_zero() {
                println!("stopping in {:.3}s (STOP_DELAY_SECS)", stop_delay.as_secs_f64());
                std::thread::sleep(stop_delay);
            }
            println!("exiting with code 0");
            exit(0);
        }
    });
}

fn serve(started: Instant) -> ! {
    let config = match Config::from_env(env_vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wharf-echo: bad environment: {e}");
            exit(2);
        }
    };
    handle_signals(config.ignore_sigterm, config.stop_delay);
    println!("wharf-echo {} starting (version {})", env!("CARGO_PKG_VERSION"), config.version);

    if let Some(after) = config.crash_after {
        let code = config.exit_code.unwrap_or(1);
        std::thread::spawn(move || {
            std::thread::sleep(after.saturating_sub(started.elapsed()));
            println!("crashing with exit code {code} (CRASH_AFTER_SECS)");
            exit(code);
        });
    }
    if let Some(delay) = config.start_delay {
        println!("sleeping {:.3}s before listening (START_DELAY_SECS)", delay.as_secs_f64());
        std::thread::sleep(delay);
    }
    for n in 0..config.cpu_burn {
        std::thread::spawn(move || {
            println!("cpu burn thread {n} spinning (CPU_BURN)");
            loop {
                routes::busy(Duration::from_secs(1));
            }
        });
    }
    if config.memory_grow_mb_per_sec > 0 {
        let (rate, max) = (config.memory_grow_mb_per_sec, config.memory_max_mb);
        std::thread::spawn(move || grow_memory(rate, max));
    }

    let listener = match TcpListener::bind(config.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wharf-echo: cannot listen on {}: {e}", config.listen);
            exit(1);
        }
    };
    let local_addr = listener.local_addr().unwrap_or(config.listen);
    println!("listening on {local_addr} (version {})", config.version);

    let state = Arc::new(State::new(config, hostname(), local_addr, started));
    let lookup = Arc::clone(&state);
    std::thread::spawn(move || lookup.look_up_task_arn());
    let logs = Arc::clone(&state);
    std::thread::spawn(move || write_logs(&logs.config));

    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let state = Arc::clone(&state);
                std::thread::spawn(move || connection(&state, stream));
            }
            // Out of descriptors or an aborted handshake: carry on.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    exit(1)
}

/// Serves one connection's requests until it closes or idles out.
fn connection(state: &State, stream: TcpStream) {
    let remote = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let req = match http::read_request(&mut reader, &mut writer) {
            Ok(Read1::Request(req)) => req,
            Ok(Read1::Invalid(e)) => {
                log_request(state, "-", "-", e.status());
                let _ = http::write_response(&mut writer, &Response::text(e.status(), e.message()), false, false);
                return;
            }
            Ok(Read1::Closed) | Err(_) => return,
        };
        state.requests.fetch_add(1, Ordering::Relaxed);
        let resp = routes::route(state, &req, remote);
        log_request(state, &req.method, &req.target, resp.status);
        let keep_alive = req.keep_alive() && resp.exit_after.is_none();
        if http::write_response(&mut writer, &resp, keep_alive, req.method == "HEAD").is_err() {
            return;
        }
        if let Some(code) = resp.exit_after {
            let _ = writer.shutdown(Shutdown::Write);
            println!("exiting with code {code} (POST /exit)");
            exit(code);
        }
        if !keep_alive {
            return;
        }
    }
}

fn log_request(state: &State, method: &str, target: &str, status: u16) {
    if state.config.log_requests {
        println!("{method} {target} {status}");
    }
}

/// `LOG_BURST` lines at once, then `LOG_LINES` lines every `LOG_EVERY_MS`, numbered `line <n>`
/// from 1; with `EXIT_AFTER_LOG`, exits afterwards.
fn write_logs(config: &Config) {
    let mut n = 0u64;
    if config.log_burst > 0 {
        let mut out = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        while n < config.log_burst {
            n += 1;
            let _ = writeln!(out, "line {n}");
        }
        let _ = out.flush();
    }
    if let Some(every) = config.log_every {
        let mut next = Instant::now();
        for _ in 0..config.log_lines.unwrap_or(u64::MAX) {
            next += every;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            n += 1;
            println!("line {n}");
        }
    }
    if config.exit_after_log {
        let code = config.exit_code.unwrap_or(0);
        println!("exiting with code {code} (EXIT_AFTER_LOG)");
        exit(code);
    }
}

/// Allocates and touches `rate` MiB per second (in tenths) until `max` MiB, holding on to it.
fn grow_memory(rate_mib: u64, max_mib: Option<u64>) {
    const MIB: u64 = 1024 * 1024;
    let step = usize::try_from(rate_mib * MIB / 10).unwrap_or(usize::MAX);
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut total: u64 = 0;
    let mut tick = 0u64;
    let mut next = Instant::now();
    loop {
        if max_mib.is_some_and(|max| total + step as u64 > max * MIB) {
            println!("memory: holding {} MiB (MEMORY_MAX_MB reached)", total / MIB);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        // Non-zero fill: every page is written, so it counts against the cgroup.
        held.push(vec![0x5a; step]);
        total += step as u64;
        tick += 1;
        if tick.is_multiple_of(10) {
            println!("memory: holding {} MiB (MEMORY_GROW_MB_PER_SEC={rate_mib})", total / MIB);
        }
        next += Duration::from_millis(100);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// The kernel's hostname (the container's), else `/etc/hostname`, else `$HOSTNAME`.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
