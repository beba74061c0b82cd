//! The `ringfence` binary's library: configuration, wiring of the stores, the server
//! (`Application::build` binds its own port) and the command-line commands. `main` only
//! parses arguments and calls in here. This is the one crate that uses `anyhow`.

pub mod app;
pub mod backup;
pub mod commands;
pub mod config;
pub mod demo;
pub mod replay;
pub mod rotate;
pub mod telemetry;

pub use app::{Application, Resources};
pub use config::Config;
