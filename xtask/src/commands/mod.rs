//! The developers' commands; the product's are in `codesign-kit-cli`.

pub mod bench;
pub mod demo;
pub mod fuzz;
pub mod test;
pub mod tokens;
