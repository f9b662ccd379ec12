//! One module per group of commands.

pub mod bench;
pub mod emulator;
pub mod fuzz;
pub mod io;
pub mod keys;
pub mod order;
pub mod provision;
pub mod sources;
pub mod test;
pub mod token;
