use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: under the chat and store loads malloc and free were
/// a sixth of the server's samples (docs/benchmarks.md, "Efficiency (#15), second round").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    livechat::cli::main()
}
