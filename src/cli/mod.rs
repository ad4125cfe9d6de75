//! Command-line interface: argument parsing and one module per command family.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
