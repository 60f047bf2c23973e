//! Logging through the host's `log` import.
//!
//! Inside wasm the message goes to the host (which tags it with the plugin's name; ask for the
//! "log" capability in [`crate::PluginInfo`]). Natively (unit tests, native benchmarks) the
//! import does not exist: messages go to stderr when `ALCF_PLUGIN_LOG` is set, else nowhere.

use crate::types::Level;

/// Sends one log line to the host.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::alcf::hpo::types::Level as L;
        let l = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        crate::bindings::alcf::hpo::log::log(l, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        if std::env::var_os("ALCF_PLUGIN_LOG").is_some() {
            eprintln!("[{level:?}] {message}");
        }
    }
}

/// `trace!("fmt", args..)`: log at trace level.
#[macro_export]
macro_rules! trace { ($($t:tt)*) => { $crate::logging::log($crate::Level::Trace, &format!($($t)*)) } }
/// `debug!("fmt", args..)`: log at debug level.
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::logging::log($crate::Level::Debug, &format!($($t)*)) } }
/// `info!("fmt", args..)`: log at info level.
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::logging::log($crate::Level::Info, &format!($($t)*)) } }
/// `warn!("fmt", args..)`: log at warn level.
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::logging::log($crate::Level::Warn, &format!($($t)*)) } }
/// `error!("fmt", args..)`: log at error level.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::logging::log($crate::Level::Error, &format!($($t)*)) } }
