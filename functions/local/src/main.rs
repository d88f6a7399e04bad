//! `greenhouse-relay serve`: the local (single-process) runtime. `greenhouse-relay listen`: a
//! callback receiver that checks and prints what the relay sends, for trying it out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use greenhouse_relay::{Config, scaled, start};
use relay_core::delivery;
use relay_core::network::NetworkPolicy;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "Greenhouse webhooks in, signed Cloud Elements notifications out")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, the ingest URL and the delivery worker on one port.
    Serve(Box<Serve>),
    /// Receive notifications as a callback: check their signatures, print one JSON line each.
    Listen(Listen),
}

#[derive(Parser)]
struct Listen {
    /// Where the receiver listens (the callback URL is http://ADDR/<any path>).
    #[arg(long, env = "RECEIVER_ADDR", default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    /// The instance's `event.notification.signature.key` (repeat it for several). Without one,
    /// notifications are accepted unchecked.
    #[arg(long = "signature-key", env = "SIGNATURE_KEY", hide_env_values = true)]
    signature_keys: Vec<String>,
}

#[derive(Parser)]
struct Serve {
    /// Where the API and the ingest URL listen.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:3000")]
    listen_addr: SocketAddr,
    /// The SQLite file that holds instances and the queue (created, with its folder, if absent).
    #[arg(long, env = "DATABASE_PATH", default_value = "data/greenhouse-relay.db")]
    database_path: PathBuf,
    /// The `User` secret of `Authorization: User <secret>, Organization <secret>`, which
    /// administers `/instances`. Prefer the environment: a flag shows in the process list.
    #[arg(long, env = "ADMIN_USER_SECRET", hide_env_values = true)]
    admin_user_secret: String,
    /// The `Organization` secret of that header.
    #[arg(long, env = "ADMIN_ORG_SECRET", hide_env_values = true)]
    admin_org_secret: String,
    /// Networks callbacks may reach although they are private/loopback (comma-separated CIDRs).
    #[arg(long, env = "CALLBACK_ALLOW_NETS", default_value = "127.0.0.0/8,::1/128")]
    callback_allow_nets: String,
    /// Allow plain http callbacks to the allow-listed networks.
    #[arg(long, env = "CALLBACK_ALLOW_HTTP", default_value_t = true, action = clap::ArgAction::Set)]
    callback_allow_http: bool,
    /// A PEM file of roots callbacks are also verified against (receivers behind a private CA).
    #[arg(long, env = "CALLBACK_CA_BUNDLE")]
    callback_ca_bundle: Option<PathBuf>,
    /// What `webhookUrl` starts with (e.g. a tunnel's https URL); default http://LISTEN_ADDR.
    #[arg(long, env = "PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    /// Callback requests in flight at once.
    #[arg(long, env = "DELIVERY_CONCURRENCY", default_value_t = 64)]
    delivery_concurrency: usize,
    /// Callback requests in flight at once for one instance (fairness between instances).
    #[arg(long, env = "DELIVERY_CONCURRENCY_PER_INSTANCE", default_value_t = 48)]
    delivery_concurrency_per_instance: usize,
    /// Multiplies every retry delay (1 in production; tests use small values).
    #[arg(long, env = "DELIVERY_TIME_SCALE", default_value_t = 1.0)]
    delivery_time_scale: f64,
    /// Per-attempt timeout in milliseconds.
    #[arg(long, env = "DELIVERY_TIMEOUT_MS", default_value_t = 15_000)]
    delivery_timeout_ms: u64,
    /// Milliseconds a client may take to send a request's headers (an idle connection is closed
    /// after as long), and then its body.
    #[arg(long, env = "HTTP_READ_TIMEOUT_MS", default_value_t = 30_000)]
    http_read_timeout_ms: u64,
    /// Delivered notifications are kept this many days.
    #[arg(long, env = "EVENT_RETENTION_DAYS", default_value_t = 30)]
    event_retention_days: u64,
    /// `json` (default) or `text`.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// Where to serve `GET /metrics` (Prometheus); not served without it. Unauthenticated: keep
    /// it on loopback or a private network.
    #[arg(long, env = "METRICS_ADDR")]
    metrics_addr: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = match Cli::parse().command {
        Command::Serve(args) => *args,
        Command::Listen(args) => return listen(args),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_format == "text" {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().json().flatten_event(true).with_env_filter(filter).init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn listen(args: Listen) -> std::process::ExitCode {
    let keys: Vec<String> = args.signature_keys.into_iter().filter(|k| !k.is_empty()).collect();
    let result = tokio::runtime::Runtime::new().map_err(|e| e.to_string()).and_then(|runtime| {
        runtime.block_on(async {
            let out: greenhouse_relay::listen::Output = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
            let listening = greenhouse_relay::listen::start(args.addr, keys.clone(), out).await?;
            let checking = match keys.len() {
                0 => "accepting notifications unchecked: no --signature-key".to_owned(),
                n => format!("checking signatures with {n} key(s)"),
            };
            eprintln!("listening on http://{}, {checking}; one JSON line per notification", listening.addr);
            wait_for_signal().await;
            listening.stop().await;
            Ok::<_, String>(())
        })
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Serve) -> Result<(), String> {
    let allow =
        NetworkPolicy::parse_allow_list(&args.callback_allow_nets).map_err(|e| format!("CALLBACK_ALLOW_NETS: {e}"))?;
    let mut config = Config::local(args.database_path, args.admin_user_secret, args.admin_org_secret);
    config.listen_addr = args.listen_addr;
    config.public_base_url = args
        .public_base_url
        .filter(|v| !v.is_empty())
        .map(|v| relay_core::api::public_base_url(&v).map_err(|e| format!("PUBLIC_BASE_URL {e}")))
        .transpose()?;
    config.policy = NetworkPolicy { allow, allow_http_to_allowed_nets: args.callback_allow_http };
    config.callback_ca_bundle = args.callback_ca_bundle.filter(|p| !p.as_os_str().is_empty());
    config.metrics_addr = args
        .metrics_addr
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<SocketAddr>().map_err(|_| format!("METRICS_ADDR `{v}` is not an address such as 127.0.0.1:9464"))
        })
        .transpose()?;
    if args.delivery_concurrency == 0 || args.delivery_concurrency_per_instance == 0 {
        return Err("DELIVERY_CONCURRENCY and DELIVERY_CONCURRENCY_PER_INSTANCE must be at least 1".into());
    }
    config.worker.concurrency = args.delivery_concurrency;
    config.worker.per_instance = args.delivery_concurrency_per_instance;
    if !delivery::RETENTION_DAYS.contains(&args.event_retention_days) {
        let (from, to) = delivery::RETENTION_DAYS.into_inner();
        return Err(format!("EVENT_RETENTION_DAYS must be from {from} to {to}"));
    }
    config.worker.retention = Duration::from_secs(args.event_retention_days * 24 * 3600);
    if !delivery::is_time_scale(args.delivery_time_scale) {
        return Err("DELIVERY_TIME_SCALE must be a number above 0".into());
    }
    config.worker = scaled(config.worker, args.delivery_time_scale);
    if !delivery::ATTEMPT_TIMEOUT_MS.contains(&args.delivery_timeout_ms) {
        let (from, to) = delivery::ATTEMPT_TIMEOUT_MS.into_inner();
        return Err(format!("DELIVERY_TIMEOUT_MS must be from {from} to {to}"));
    }
    config.attempt_timeout = Duration::from_millis(args.delivery_timeout_ms);
    if args.http_read_timeout_ms == 0 {
        return Err("HTTP_READ_TIMEOUT_MS must be at least 1".into());
    }
    config.read_timeout = Duration::from_millis(args.http_read_timeout_ms);
    tracing::info!(config = ?config, "starting");
    let running = start(config).await?;
    let stopper = running.stopper();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests and deliveries");
        let _ = stopper.send(true);
    });
    running.wait().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// `--help` explains every option of every subcommand, and the definitions are consistent
    /// (clap's own checks: unique names, valid defaults).
    #[test]
    fn every_option_has_its_help() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(!help.trim().is_empty(), "{} --{} has no help", sub.get_name(), arg.get_id());
            }
        }
    }
}
