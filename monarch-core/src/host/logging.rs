//! Logs a user can see: a `tracing` subscriber that writes to standard error.

/// Installs a `tracing` subscriber that writes the runtime's logs to standard
/// error, filtered by `RUST_LOG` (default: warnings and errors), unless the
/// program has set a subscriber already. `#[monarch::main]`, workers and the
/// `monarch` CLI call it; a worker's lines reach its controller with the
/// worker's prefix, as its output does.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
