use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use meshi::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Many small, long-lived allocations per socket fragment the system
/// allocator's arenas; mimalloc keeps an idle socket's footprint smaller.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "meshi", version = meshi::BUILD, about = "Real-time chat and rooms server")]
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
    /// Make an administrator. The first admin can come only from here:
    /// handles listed in MESHI_ADMIN_HANDLES cannot be registered.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Look at the configuration without starting anything.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration, every setting with where it came
    /// from and secrets redacted, and check it as `serve` would; exits
    /// non-zero when it is invalid.
    Check {
        #[command(flatten)]
        config: Config,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create a new account that is an admin. The password is read from
    /// --password-file, or else from the first line of standard input; it
    /// is never an argument, where other users of the machine could see it.
    Create {
        handle: String,
        /// File whose first line is the password.
        #[arg(long, value_name = "PATH")]
        password_file: Option<std::path::PathBuf>,
        /// Display name; the handle when omitted.
        #[arg(long)]
        display_name: Option<String>,
        #[command(flatten)]
        config: Config,
    },
    /// Make an existing account an admin.
    Promote {
        handle: String,
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
            run(config, Config::database_url_from_env()).await
        }
        Some(Command::Serve { config }) => {
            init_logs(config.log_format);
            run(config, explicit_database("serve")).await
        }
        Some(Command::Migrate { config }) => {
            init_logs(config.log_format);
            let store = meshi::app::open_store(&config, &config.tls_roots()?).await?;
            store.migrate().await?;
            tracing::info!(backend = store.backend(), "migrations applied");
            Ok(())
        }
        Some(Command::Admin { action }) => admin(action).await,
        Some(Command::Config {
            action: ConfigAction::Check { config },
        }) => {
            let given = matches
                .subcommand_matches("config")
                .and_then(|m| m.subcommand_matches("check"))
                .context("clap parsed `config check`")?;
            check_config(&config, given)
        }
    }
}

/// Prints each setting as `MESHI_NAME=value  (source)` and checks the
/// whole as `serve` would, keys read from their files included.
fn check_config(config: &Config, given: &clap::ArgMatches) -> anyhow::Result<()> {
    let mut settings = clap::Command::new("meshi");
    settings = <Config as clap::Args>::augment_args(settings);
    for arg in settings.get_arguments() {
        let id = arg.get_id().as_str();
        let name = arg
            .get_env()
            .map(|env| env.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("--{id}"));
        let values: Vec<String> = given
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let source = match given.value_source(id) {
            Some(clap::parser::ValueSource::EnvVariable) => "environment",
            Some(clap::parser::ValueSource::CommandLine) => "command line",
            Some(clap::parser::ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        println!("{name}={}  ({source})", redacted(&name, &values.join(",")));
    }
    let explicit_database = given
        .value_source("database_url")
        .is_some_and(|source| source != clap::parser::ValueSource::DefaultValue);
    config.validate(explicit_database)?;
    config.jwt_keys()?;
    config.tls_roots()?;
    for warning in config.production_warnings() {
        println!("warning: production: {warning}");
    }
    println!("the configuration is valid");
    Ok(())
}

/// A value fit to print: secrets hidden whole, a URL's password hidden.
fn redacted(name: &str, value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    let secret = ["SECRET", "PASSWORD", "TOKEN", "KEY"]
        .iter()
        .any(|word| name.contains(word))
        && !name.ends_with("_FILE");
    if secret {
        return "<redacted>".to_owned();
    }
    match value.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", redacted_url(rest)),
        None => value.to_owned(),
    }
}

/// A URL after its `scheme://`, with the password of its user part and any
/// `password=` of its query hidden, the rest (TLS settings among it) shown.
fn redacted_url(rest: &str) -> String {
    // The last `@` ends the user part, since a password may hold `@`, `/`
    // or `?` unescaped; a stray `@` later in the URL hides more, not less.
    let (user, rest) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => (format!("{user}:<redacted>@"), host),
            None => (format!("{userinfo}@"), host),
        },
        None => (String::new(), rest),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=<redacted>")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
        None => rest.to_owned(),
    };
    format!("{user}{rest}")
}

async fn admin(action: AdminAction) -> anyhow::Result<()> {
    let config = match &action {
        AdminAction::Create { config, .. } | AdminAction::Promote { config, .. } => config.clone(),
    };
    init_logs(config.log_format);
    let store = meshi::app::open_store(&config, &config.tls_roots()?).await?;
    store.migrate().await?;
    let accounts = meshi::auth::Accounts::new(store.clone(), config.into(), None);
    let outcome = match action {
        AdminAction::Create {
            handle,
            password_file,
            display_name,
            ..
        } => {
            let password = read_password(password_file.as_deref())?;
            let user = accounts
                .create_admin(&handle, &password, display_name.as_deref())
                .await
                .map_err(|err| match err {
                    meshi::error::Error::Conflict(_) => anyhow::anyhow!(
                        "the handle {handle} is taken; `meshi admin promote {handle}` makes \
                         that account admin, if it is yours"
                    ),
                    other => other.into(),
                })?;
            format!("created admin {} (id {})", user.handle, user.id)
        }
        AdminAction::Promote { handle, .. } => match accounts.promote_to_admin(&handle).await? {
            Some(user) => format!("{} (id {}) is now an admin", user.handle, user.id),
            None => format!("{handle} already is an admin"),
        },
    };
    store.close().await;
    println!("{outcome}");
    Ok(())
}

/// The first line of `file`, or of standard input without one.
fn read_password(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?,
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!(
                    "password (shown as typed; pipe it in or use --password-file to avoid that):"
                );
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line
        }
    };
    let password = text.lines().next().unwrap_or_default().to_owned();
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    Ok(password)
}

async fn run(config: Config, explicit_database: bool) -> anyhow::Result<()> {
    config.validate(explicit_database)?;
    for warning in config.production_warnings() {
        tracing::warn!("production: {warning}");
    }
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

/// Crates that log what passes through them at debug and trace: frames,
/// headers and bodies, and so `hello` tokens and passwords. They are held
/// at `info` whatever `MESHI_LOG` asks, so no filter an operator writes
/// puts a credential in the logs.
const CHATTY_CRATES: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "axum",
    "tower",
    "tower_http",
    "reqwest",
    "sqlx",
    "redis",
];

fn init_logs(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_env("MESHI_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn,sqlx=warn"));
    let cap = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO || !is_chatty(meta.target())
    });
    let logs = tracing_subscriber::registry().with(filter).with(cap);
    // Colour codes only for a person at a terminal: in a file or a log
    // collector they are noise that breaks searching.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match format {
        // Flat: the fields of the event and of the spans it is in (a
        // request's `request_id`, a socket's `conn_id` and `user_id`) side
        // by side, so one query finds every line of a request or a socket.
        LogFormat::Json => logs
            .with(
                json_subscriber::fmt::layer()
                    .flatten_event(true)
                    .flatten_span_list_on_top_level(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .init(),
        LogFormat::Text => logs
            .with(tracing_subscriber::fmt::layer().with_ansi(ansi))
            .init(),
    }
}

fn is_chatty(target: &str) -> bool {
    CHATTY_CRATES.iter().any(|krate| {
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
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
