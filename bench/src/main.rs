//! `livechat-bench`: see the library for what it does and `docs/benchmarks.md` for how to run it.

fn main() -> std::process::ExitCode {
    livechat_bench::main_exit()
}
