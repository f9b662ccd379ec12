//! One module per group of commands, and the CLI's edges: files and the terminal (`io`), where
//! PINs and the default module come from (`sources`), what a run shows while it works
//! (`progress`).

#[cfg(feature = "emulator")]
pub mod emulator;
pub mod io;
pub mod keys;
pub mod lifecycle;
pub mod order;
pub mod orders;
mod progress;
pub mod provision;
pub mod sources;
pub mod token;
