use std::process::ExitCode;

fn main() -> ExitCode {
    livechat::cli::main()
}
