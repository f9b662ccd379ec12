//! What a run shows while it works: on a terminal, a bar of the jobs done with the counts of
//! done, pending and failed jobs, the rate, the time left and what each busy job is doing now;
//! elsewhere, plain lines (the library's [`PrintObserver`]).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use codesign_kit::pipeline::{JobOutcome, JobState, Observer, PrintObserver, RunSummary, Step};

/// How many busy jobs the bar names; the rest are counted.
const NAMED_BUSY_JOBS: usize = 4;

/// A run's progress display.
pub(crate) enum Progress {
    /// A bar on a terminal.
    Bar(Box<Bar>),
    /// Plain lines on stderr.
    Plain(PrintObserver),
}

/// The bar and what it counts.
pub(crate) struct Bar {
    bar: indicatif::ProgressBar,
    total: u64,
    started: Instant,
    state: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    done: u64,
    pending: u64,
    failed: u64,
    /// Each busy job and the step it works towards.
    busy: BTreeMap<String, Step>,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise; `total` jobs.
    pub(crate) fn new(total: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Plain(PrintObserver);
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} done  {elapsed_precise}  {wide_msg}",
        ) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress::Bar(Box::new(Bar {
            bar,
            total,
            started: Instant::now(),
            state: Mutex::new(Counts::default()),
        }))
    }

    /// Ends the display: a full bar only when every job is done; otherwise it stays where the
    /// done jobs put it, with what is left said.
    pub(crate) fn end(&self, summary: Option<&RunSummary>) {
        let Progress::Bar(bar) = self else { return };
        let counts = bar.counts();
        let said = format!(
            "{} done, {} pending, {} failed",
            counts.done, counts.pending, counts.failed
        );
        match summary {
            Some(s) if s.pending.is_empty() && s.failed.is_empty() => {
                bar.bar.finish_with_message(said)
            }
            _ => bar.bar.abandon_with_message(said),
        }
    }
}

impl Bar {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The message: counts, rate and time left, then the busy jobs.
    fn message(&self, counts: &Counts) -> String {
        let ended = counts.done + counts.pending + counts.failed;
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut text = format!(
            "done {}, pending {}, failed {}",
            counts.done, counts.pending, counts.failed
        );
        if ended > 0 && elapsed > 0.0 {
            let rate = ended as f64 / elapsed;
            let left = self.total.saturating_sub(ended) as f64 / rate;
            text.push_str(&format!(
                " | {rate:.1} jobs/s, about {} left",
                human_duration(left)
            ));
        }
        if !counts.busy.is_empty() {
            let named: Vec<String> = counts
                .busy
                .iter()
                .take(NAMED_BUSY_JOBS)
                .map(|(job, step)| format!("{job} {}", step.doing()))
                .collect();
            text.push_str(" | ");
            text.push_str(&named.join(", "));
            if counts.busy.len() > NAMED_BUSY_JOBS {
                text.push_str(&format!(" (+{} more)", counts.busy.len() - NAMED_BUSY_JOBS));
            }
        }
        text
    }

    fn update(&self, change: impl FnOnce(&mut Counts)) {
        let mut counts = self.counts();
        change(&mut counts);
        let message = self.message(&counts);
        self.bar.set_position(counts.done);
        self.bar.set_message(message);
    }
}

/// "2m 10s", "45s", "1h 5m".
fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

impl Observer for Progress {
    fn started(&self, job_id: &str, step: Step) {
        match self {
            Progress::Bar(bar) => bar.update(|c| {
                c.busy.insert(job_id.to_string(), step);
            }),
            Progress::Plain(plain) => plain.started(job_id, step),
        }
    }

    fn step(&self, job_id: &str, step: Step, detail: &str) {
        match self {
            // Between steps a job waits for a worker: it is not busy until its next step starts.
            Progress::Bar(bar) => bar.update(|c| {
                c.busy.remove(job_id);
            }),
            Progress::Plain(plain) => plain.step(job_id, step, detail),
        }
    }

    fn finished(&self, outcome: &JobOutcome) {
        match self {
            Progress::Bar(bar) => {
                if outcome.state != JobState::Done {
                    bar.bar.println(format!(
                        "{}: {} after {}{}",
                        outcome.job_id,
                        outcome.state.as_str(),
                        outcome.step.as_str(),
                        outcome
                            .note
                            .as_deref()
                            .map(|note| format!(": {note}"))
                            .unwrap_or_default()
                    ));
                }
                bar.update(|c| {
                    c.busy.remove(&outcome.job_id);
                    match outcome.state {
                        JobState::Done => c.done += 1,
                        JobState::Failed => c.failed += 1,
                        JobState::Pending | JobState::Open => c.pending += 1,
                    }
                });
            }
            Progress::Plain(plain) => plain.finished(outcome),
        }
    }

    fn notice(&self, text: &str) {
        match self {
            Progress::Bar(bar) => bar.bar.println(text),
            Progress::Plain(plain) => plain.notice(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(total: u64) -> Bar {
        Bar {
            bar: indicatif::ProgressBar::hidden(),
            total,
            started: Instant::now() - Duration::from_secs(10),
            state: Mutex::new(Counts::default()),
        }
    }

    fn outcome(job: &str, state: JobState) -> JobOutcome {
        JobOutcome {
            job_id: job.to_string(),
            state,
            step: Step::OrderSubmitted,
            order_id: None,
            certificate_id: None,
            note: None,
            key_generation_us: None,
            held_by: None,
        }
    }

    /// The bar counts done jobs only (a failed run does not look complete), names what each busy
    /// job does now (not its last finished step), and says the rate and the time left.
    #[test]
    fn the_bar_shows_busy_jobs_counts_and_time_left() {
        let progress = Progress::Bar(Box::new(bar(10)));
        let Progress::Bar(inner) = &progress else {
            unreachable!()
        };
        progress.started("cs-1", Step::KeyGenerated);
        progress.started("cs-2", Step::OrderIssued);
        let said = inner.message(&inner.counts());
        assert!(
            said.contains("cs-1 making its key") && said.contains("cs-2 waiting for issuance"),
            "{said}"
        );
        progress.step("cs-1", Step::KeyGenerated, "");
        progress.finished(&outcome("cs-2", JobState::Failed));
        progress.finished(&outcome("cs-3", JobState::Done));
        progress.finished(&outcome("cs-4", JobState::Pending));
        let said = inner.message(&inner.counts());
        assert!(said.starts_with("done 1, pending 1, failed 1"), "{said}");
        assert!(!said.contains("cs-1") && !said.contains("cs-2"), "{said}");
        // 3 ended in about 10 s: 0.3 jobs/s, 7 left: about 23 s.
        assert!(said.contains("0.3 jobs/s, about 2"), "{said}");
        assert_eq!(inner.bar.position(), 1, "only done jobs fill the bar");
        for n in 0..6 {
            progress.started(&format!("b-{n}"), Step::CsrBuilt);
        }
        let said = inner.message(&inner.counts());
        assert!(said.ends_with("(+2 more)"), "{said}");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(45.2), "45s");
        assert_eq!(human_duration(130.0), "2m 10s");
        assert_eq!(human_duration(3900.0), "1h 5m");
    }
}
