//! One module per group of commands.

pub mod keys;
pub mod test;
pub mod token;
