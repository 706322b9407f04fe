use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use meshi::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Many small, long-lived allocations per socket fragment the system
/// allocator's arenas; mimalloc keeps an idle socket's footprint smaller.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "meshi", version, about = "Real-time chat and rooms server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve {
        #[command(flatten)]
        config: Config,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        config: Config,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let explicit_database = |name: &str| {
        matches
            .subcommand_matches(name)
            .and_then(|m| m.value_source("database_url"))
            .is_some_and(|source| source != clap::parser::ValueSource::DefaultValue)
    };
    match cli.command {
        None => {
            let config = Config::defaults();
            init_logs(config.log_format);
            run(config, false).await
        }
        Some(Command::Serve { config }) => {
            init_logs(config.log_format);
            run(config, explicit_database("serve")).await
        }
        Some(Command::Migrate { config }) => {
            init_logs(config.log_format);
            let store = meshi::store::Store::connect(&config.database_url).await?;
            store.migrate().await?;
            tracing::info!(backend = store.backend(), "migrations applied");
            Ok(())
        }
    }
}

async fn run(config: Config, explicit_database: bool) -> anyhow::Result<()> {
    config.validate(explicit_database)?;
    let listener =
        listen(config.addr).with_context(|| format!("cannot listen on {}", config.addr))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    meshi::serve(listener, config, shutdown_signal()).await?;
    Ok(())
}

/// Binds with a deep accept queue: bursts of thousands of connects
/// overflowed the usual 128 and cost clients a one-second SYN retry.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("MESHI_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn,sqlx=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
