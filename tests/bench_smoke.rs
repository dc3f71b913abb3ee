//! A short run of the load generator, so that it never rots.
//!
//! `livechat-bench` is a separate package of the workspace (`bench/`), and plain `cargo test`
//! builds and tests only this root package — `CARGO_BIN_EXE_livechat-bench` does not exist
//! here. So this test compiles the bench's library, which is the whole program but for a
//! three-line `main`, as a module, and runs it with its command line against the real
//! `livechat` binary of this package. (The bench's own unit tests come along and run too.)

#[allow(dead_code)]
#[path = "../bench/src/lib.rs"]
mod bench;

#[test]
fn a_short_bench_run_prints_every_figure_and_passes_its_checks() {
    let outcome = bench::run_args([
        "livechat-bench",
        "--quiet",
        "--server-bin",
        env!("CARGO_BIN_EXE_livechat"),
        "all",
        "--repeats",
        "2",
        "--sockets",
        "20",
        "--hold",
        "200ms",
        "--writers",
        "4",
        "--store-duration",
        "1s",
        "--visitors",
        "6",
        "--agents",
        "3",
        "--team-size",
        "3",
        "--accepters",
        "3",
        "--reconnects",
        "2",
        "--interval",
        "200ms",
        "--duration",
        "1500ms",
        "--reload-every",
        "300ms",
        "--reloads",
        "2",
        // The ramp: two short steps with a limit a loaded debug build keeps.
        "--start-rate",
        "20",
        "--step",
        "20",
        "--max-rate",
        "40",
        "--step-duration",
        "600ms",
        "--p99-limit",
        "2s",
    ])
    .expect("the bench runs");
    let out = &outcome.output;
    println!("{out}");
    let line = |label: &str| -> &str {
        outcome
            .line(label)
            .unwrap_or_else(|| panic!("no `{label}` in the output:\n{out}"))
    };
    for figure in [
        "fresh data: spawn → first 200 /healthz",
        "server binary size",
        "server RSS per socket (socket alone)",
        "durably stored messages per second",
        "writes per group commit (mean)",
        "bytes written per message: writer thread (livechat-writer)",
        "bytes written per message: checkpointer thread (livechat-checkpoint)",
        "bytes written per message: writer + checkpointer threads",
        "bytes written per message: whole server process (wchar, all threads)",
        "delivery visitor → agent",
        "delivery agent → visitor",
        "messages acknowledged per second",
        "server RSS per visitor socket and its chat",
        "save → new revision on /healthz",
        "step 1: 20 msg/s asked",
        "step 2: 40 msg/s asked",
        "highest rate held (msg/s asked)",
        "visitor send acknowledged (frame → ack frame)",
        "sends that fell back to HTTP (socket away)",
    ] {
        let l = line(figure);
        assert!(
            l.chars().any(|c| c.is_ascii_digit()) && !l.contains("no samples"),
            "`{figure}` has no figure: {l}"
        );
    }
    let ok = |check: &str| {
        let l = line(check);
        assert!(l.contains(" ok ("), "{l}");
    };
    ok("zero loss");
    ok("zero duplicates");
    ok("exactly one accept winner per request");
    ok("reconnect with after=N");
    ok("every acknowledged message stored, once");
    ok("no socket dropped by a reload");
    ok("every chat set up and accepted");
    // The default is the socket: every scenario that sends says so in its header.
    for scenario in ["== store", "== chat", "== ramp"] {
        let header = line(scenario);
        assert!(header.ends_with("(--send ws)"), "{header}");
    }
    assert!(line("acknowledged but never delivered").ends_with(" 0"));
    // Three agents accept each of the six requests at once: one wins, two are told 409.
    assert!(line("races with exactly one winner").ends_with(" 6"));
    assert!(line("losing accepts answered 409 already_taken").ends_with(" 12"));
    assert!(outcome.ok, "a check failed:\n{out}");
}

#[test]
fn uploads_during_the_chat_load_print_their_figures() {
    let outcome = bench::run_args([
        "livechat-bench",
        "--quiet",
        "--server-bin",
        env!("CARGO_BIN_EXE_livechat"),
        "chat",
        "--visitors",
        "4",
        "--agents",
        "2",
        "--team-size",
        "2",
        "--reconnects",
        "0",
        "--interval",
        "100ms",
        "--duration",
        "1500ms",
        "--uploaders",
        "4",
        "--upload-size",
        "200000",
        "--uploads-each",
        "2",
        "--send",
        "http",
    ])
    .expect("the bench runs");
    let out = &outcome.output;
    println!("{out}");
    let line = |label: &str| -> &str {
        outcome
            .line(label)
            .unwrap_or_else(|| panic!("no `{label}` in the output:\n{out}"))
    };
    assert!(line("uploads stored (201)").ends_with(" 8"), "{out}");
    assert!(line("== chat").ends_with("(--send http)"), "{out}");
    assert!(line("visitor send acknowledged (HTTP round trip)").contains("p99"));
    for figure in [
        "uploads per second",
        "upload (HTTP round trip)",
        "chat delivery without uploads",
        "chat delivery during uploads",
        "server RSS before the uploads",
        "server RSS peak during the uploads",
        "server RSS after the uploads",
    ] {
        let l = line(figure);
        assert!(
            l.chars().any(|c| c.is_ascii_digit()) && !l.contains("no samples"),
            "`{figure}` has no figure: {l}"
        );
    }
    assert!(line("every upload stored").contains(" ok ("), "{out}");
    assert!(outcome.ok, "a check failed:\n{out}");
}
