#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    intercom_sspm::cli::main()
}
