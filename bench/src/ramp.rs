//! `ramp`: the chat setup, then the total message rate (both ways, all chats) rises in steps
//! until a step's delivery p99 (either way) passes `--p99-limit`, or the step has errors,
//! loss, duplicates or skipped sends (a sender whose previous message was still unanswered
//! when its next was due). The last step that passed is the highest rate held. With
//! `--compare-socketio`, the same steps run against the Socket.IO relay in the same run.
//!
//! Each step is its own measurement: its messages are numbered apart from every other
//! step's (`step << 20`), it drains before the next begins, and its figures (delivery,
//! errors, CPU) are taken over that step alone.

use std::future::Future;
use std::sync::MutexGuard;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Progress;
use super::chat::{self, ChatOpts, Ledger, Live};
use super::client::SendPath;
use super::machine::{self, CpuMeter};
use super::report::Section;
use super::server::Target;
use super::socketio::{self, Conns, Relay};

#[derive(Debug, Clone)]
pub struct RampOpts {
    pub start_rate: f64,
    pub step: f64,
    pub step_duration: Duration,
    pub p99_limit: Duration,
    pub max_rate: f64,
    /// How long a step's acknowledged messages may take to arrive after its last send.
    pub drain: Duration,
    pub send: SendPath,
}

/// A chat load that can be driven at a given rate: livechat's or the relay's.
trait Load {
    fn senders(&self) -> usize;
    fn ledger(&self) -> MutexGuard<'_, Ledger>;
    fn spawn_senders(
        &self,
        first: tokio::time::Instant,
        interval: Duration,
        end: tokio::time::Instant,
        n0: u32,
    ) -> Vec<JoinHandle<()>>;
    fn drain(&self, limit: Duration) -> impl Future<Output = ()>;
}

struct Ours<'a> {
    live: &'a Live,
    send: SendPath,
}

impl Load for Ours<'_> {
    fn senders(&self) -> usize {
        2 * self.live.chats()
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.live.ledger()
    }

    fn spawn_senders(
        &self,
        first: tokio::time::Instant,
        interval: Duration,
        end: tokio::time::Instant,
        n0: u32,
    ) -> Vec<JoinHandle<()>> {
        self.live.spawn_senders(self.send, first, interval, end, n0)
    }

    fn drain(&self, limit: Duration) -> impl Future<Output = ()> {
        self.live.drain(limit)
    }
}

impl Load for Conns {
    fn senders(&self) -> usize {
        Conns::senders(self)
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        Conns::ledger(self)
    }

    fn spawn_senders(
        &self,
        first: tokio::time::Instant,
        interval: Duration,
        end: tokio::time::Instant,
        n0: u32,
    ) -> Vec<JoinHandle<()>> {
        Conns::spawn_senders(self, first, interval, end, n0)
    }

    fn drain(&self, limit: Duration) -> impl Future<Output = ()> {
        Conns::drain(self, limit)
    }
}

/// One step's figures.
#[derive(Debug)]
struct Step {
    rate: f64,
    acked_per_s: f64,
    /// Delivery p99 visitor → agent and agent → visitor, ms (None: no sample).
    p99_ms: [Option<f64>; 2],
    server_cores: Option<f64>,
    bench_cores: f64,
    errors: usize,
    first_error: Option<String>,
    lost: usize,
    duplicated: usize,
    skipped: usize,
}

impl Step {
    /// Why this step did not hold, or None when it held.
    fn failed(&self, limit: Duration) -> Option<String> {
        let limit_ms = limit.as_secs_f64() * 1000.0;
        let mut why = Vec::new();
        for (p99, way) in self
            .p99_ms
            .iter()
            .zip(["visitor → agent", "agent → visitor"])
        {
            match p99 {
                Some(p) if *p > limit_ms => {
                    why.push(format!("delivery p99 {way} {p:.2} ms > {limit_ms} ms"))
                }
                Some(_) => {}
                None => why.push(format!("no delivery {way}")),
            }
        }
        if self.errors > 0 {
            why.push(format!(
                "{} error(s), first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        if self.lost > 0 {
            why.push(format!("{} lost", self.lost));
        }
        if self.duplicated > 0 {
            why.push(format!("{} duplicated", self.duplicated));
        }
        if self.skipped > 0 {
            why.push(format!("{} send(s) skipped", self.skipped));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    fn line(&self, limit: Duration) -> String {
        let ms = |p: Option<f64>| p.map_or("-".to_string(), |p| format!("{p:.2}"));
        let cpu = self
            .server_cores
            .map_or("?".to_string(), |c| format!("{c:.2}"));
        let verdict = match self.failed(limit) {
            None => "held".to_string(),
            Some(why) => format!("NOT held: {why}"),
        };
        format!(
            "{:.0} msg/s acked, p99 {} / {} ms (v→a / a→v), server CPU {cpu} cores, bench CPU {:.2} cores — {verdict}",
            self.acked_per_s,
            ms(self.p99_ms[0]),
            ms(self.p99_ms[1]),
            self.bench_cores
        )
    }
}

/// The steps: from `start_rate` up by `step` until one does not hold or `max_rate` is passed.
async fn steps(load: &impl Load, pid: Option<u32>, o: &RampOpts, progress: &Progress) -> Vec<Step> {
    let senders = load.senders();
    let mut done = Vec::new();
    if senders == 0 {
        return done;
    }
    let mut rate = o.start_rate;
    let mut k: u32 = 0;
    while rate <= o.max_rate && k < 4096 {
        let interval = Duration::from_secs_f64(senders as f64 / rate);
        progress.say(&format!(
            "ramp step {}: {rate:.0} msg/s ({senders} senders, one message each every {interval:?}) for {:?}",
            k + 1,
            o.step_duration
        ));
        {
            let mut l = load.ledger();
            *l = Ledger::default();
        }
        let server_cpu = pid.map(CpuMeter::start);
        let bench_cpu = CpuMeter::start(std::process::id());
        let first = tokio::time::Instant::now() + Duration::from_millis(50);
        let end = first + o.step_duration;
        for h in load.spawn_senders(first, interval, end, k << 20) {
            let _ = h.await;
        }
        // Over the step's length (its last send is due just before the end), or longer when
        // the senders ran late.
        let elapsed = first.elapsed().max(o.step_duration).as_secs_f64().max(1e-9);
        let server_cores = server_cpu.map(|c| c.cores());
        let bench_cores = bench_cpu.cores();
        load.drain(o.drain).await;
        let step = {
            let l = load.ledger();
            let acked = l.sent.values().filter(|a| **a).count();
            let p99 = |d: usize| {
                let s = l.delivery[d].summary();
                (s.count > 0).then_some(s.p99_ms)
            };
            Step {
                rate,
                acked_per_s: acked as f64 / elapsed,
                p99_ms: [p99(0), p99(1)],
                server_cores,
                bench_cores,
                errors: l.errors,
                first_error: l.first_errors.first().cloned(),
                lost: l.undelivered(),
                duplicated: l.received.values().filter(|n| **n > 1).count(),
                skipped: l.late_ticks,
            }
        };
        let held = step.failed(o.p99_limit).is_none();
        progress.say(&format!("ramp step {}: {}", k + 1, step.line(o.p99_limit)));
        done.push(step);
        if !held {
            break;
        }
        rate += o.step;
        k += 1;
    }
    done
}

/// The figures of a ramp: each step, the highest rate held and why the ramp stopped.
fn figures(s: &mut Section, steps: &[Step], o: &RampOpts) {
    for (k, step) in steps.iter().enumerate() {
        s.text(
            &format!("step_{}", k + 1),
            &format!("step {}: {:.0} msg/s asked", k + 1, step.rate),
            step.line(o.p99_limit),
        );
    }
    let held: Vec<&Step> = steps
        .iter()
        .take_while(|st| st.failed(o.p99_limit).is_none())
        .collect();
    s.num(
        "highest_rate_held",
        "highest rate held (msg/s asked)",
        held.last().map_or(0.0, |st| st.rate),
        "msg/s",
    );
    if let Some(best) = held.last() {
        s.num(
            "highest_rate_held_acked",
            "acknowledged at the highest rate held",
            best.acked_per_s,
            "msg/s",
        );
    }
    let stopped = match steps.last() {
        None => "no step ran (no chats)".to_string(),
        Some(last) => match last.failed(o.p99_limit) {
            Some(why) => format!("step {} ({:.0} msg/s): {why}", steps.len(), last.rate),
            None => format!("every step held up to --max-rate {:.0} msg/s", o.max_rate),
        },
    };
    s.text("stopped", "the ramp stopped at", stopped);
}

fn title(o: &RampOpts, chats: usize, agents: usize) -> String {
    format!(
        "{chats} chats, {agents} agents; the total rate from {:.0} msg/s up by {:.0} every {:?} until delivery p99 passes {:?} or a step has errors, loss or skipped sends; {}",
        o.start_rate,
        o.step,
        o.step_duration,
        o.p99_limit,
        o.send.describe()
    )
}

/// The ramp against livechat.
pub async fn livechat(
    target: &mut Target,
    c: &ChatOpts,
    o: &RampOpts,
    progress: &Progress,
) -> anyhow::Result<Section> {
    let load_start = machine::load_average();
    let mut live = chat::set_up(target, c, progress).await?;
    let setup_errors = live.setup_errors();
    let chats = live.chats();
    let done = steps(
        &Ours {
            live: &live,
            send: o.send,
        },
        target.pid,
        o,
        progress,
    )
    .await;
    live.close().await;
    let (dropped, why) = live.dropped();
    let alive = target.alive();
    let mut s = Section::new("ramp", title(o, chats, c.agents));
    report(&mut s, load_start, &done, o);
    s.check(
        "setup",
        "every chat set up and accepted",
        setup_errors.is_empty() && chats == c.visitors,
        if setup_errors.is_empty() {
            format!("{chats} of {}", c.visitors)
        } else {
            setup_errors.join("; ")
        },
    );
    s.check(
        "zero_dropped_sockets",
        "no socket dropped by the server",
        dropped == 0 && alive,
        if !alive {
            "the server exited".to_string()
        } else if why.is_empty() {
            format!("{dropped} dropped")
        } else {
            format!("{dropped} dropped: {why}")
        },
    );
    Ok(s)
}

/// The steps' figures and checks, between the machine's load at the start and at the end.
fn report(s: &mut Section, load_start: String, done: &[Step], o: &RampOpts) {
    s.text(
        "load_start",
        "machine load (1/5/15 min) at start",
        load_start,
    );
    figures(s, done, o);
    s.text(
        "load_end",
        "machine load (1/5/15 min) at end",
        machine::load_average(),
    );
    checks(s, done);
}

/// The same ramp against the Socket.IO relay.
pub async fn socketio(
    relay: &Relay,
    c: &ChatOpts,
    o: &RampOpts,
    progress: &Progress,
) -> anyhow::Result<Section> {
    let load_start = machine::load_average();
    let mut conns = Conns::connect(relay, c, progress).await?;
    let done = steps(&conns, Some(relay.pid), o, progress).await;
    conns.close().await;
    let dropped = conns.dropped();
    let mut s = Section::new(
        "ramp-socketio",
        format!(
            "the same ramp on the Socket.IO relay (Node.js {}): {} chats, {} agents, from {:.0} msg/s up by {:.0} every {:?}, p99 limit {:?}, emit → ack",
            socketio::node_version(),
            c.visitors,
            c.agents,
            o.start_rate,
            o.step,
            o.step_duration,
            o.p99_limit
        ),
    );
    report(&mut s, load_start, &done, o);
    s.check(
        "zero_dropped_sockets",
        "no socket dropped by the relay",
        dropped == 0,
        format!("{dropped} dropped"),
    );
    Ok(s)
}

/// Loss and duplicates are failures in any step; slowness, errors and skipped sends under a
/// rate too high are what ends the ramp, not a failed check.
fn checks(s: &mut Section, steps: &[Step]) {
    let lost: usize = steps.iter().map(|st| st.lost).sum();
    let duplicated: usize = steps.iter().map(|st| st.duplicated).sum();
    s.check(
        "zero_loss",
        "zero loss",
        lost == 0,
        format!("{lost} acknowledged messages never arrived"),
    );
    s.check(
        "zero_duplicates",
        "zero duplicates",
        duplicated == 0,
        format!("{duplicated} delivered more than once"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(p99: [Option<f64>; 2]) -> Step {
        Step {
            rate: 1000.0,
            acked_per_s: 1000.0,
            p99_ms: p99,
            server_cores: Some(0.5),
            bench_cores: 0.5,
            errors: 0,
            first_error: None,
            lost: 0,
            duplicated: 0,
            skipped: 0,
        }
    }

    #[test]
    fn a_step_holds_only_under_the_limit_both_ways_and_without_faults() {
        let limit = Duration::from_millis(10);
        assert_eq!(step([Some(3.0), Some(9.9)]).failed(limit), None);
        let slow = step([Some(3.0), Some(10.5)]).failed(limit).unwrap();
        assert!(slow.contains("agent → visitor 10.50 ms > 10 ms"), "{slow}");
        assert!(step([None, Some(1.0)]).failed(limit).is_some());
        let mut skipped = step([Some(1.0), Some(1.0)]);
        skipped.skipped = 3;
        assert!(skipped.failed(limit).unwrap().contains("3 send(s) skipped"));
        let mut s = Section::new("ramp", String::new());
        let opts = RampOpts {
            start_rate: 1000.0,
            step: 500.0,
            step_duration: Duration::from_secs(1),
            p99_limit: limit,
            max_rate: 5000.0,
            drain: Duration::from_secs(1),
            send: SendPath::Ws,
        };
        let mut second = step([Some(2.0), Some(12.0)]);
        second.rate = 1500.0;
        figures(&mut s, &[step([Some(1.0), Some(2.0)]), second], &opts);
        let held = s
            .figures
            .iter()
            .find(|f| f.key == "highest_rate_held")
            .unwrap();
        assert!(
            matches!(held.value, super::super::report::Shown::Num { value, .. } if value == 1000.0)
        );
    }
}
