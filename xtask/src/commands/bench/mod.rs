//! `bench`: per-key timings on this machine, side by side with OpenSSL and pkcs11-tool
//! (`--compare`), interleaved so that drift hits every column alike.
//!
//! The criterion benchmarks (`cargo bench --bench keygen`) give the fine-grained, statistically
//! checked figures; this command answers "how does it compare with what we use today".

mod args;
mod batch;
mod cli;
mod journal;
mod limits;
mod measure;
mod software;
mod token;

use anyhow::Result;
use serde_json::json;

pub use args::BenchArgs;
use args::Section;
use batch::{batch, print_scaling};
use measure::{Samples, fmt_stats, paired_overhead};
use software::software;
use token::token;

pub fn run(args: BenchArgs) -> Result<()> {
    let mut rows = Vec::new();
    if args.runs(Section::Software) {
        software(&args, &mut rows)?;
    }
    if args.runs(Section::Token) {
        token(&args, &mut rows)?;
    }
    let cli_rows = if args.runs(Section::Cli) {
        cli::cli(&args)?
    } else {
        Vec::new()
    };
    let (journal_cost, hosts) = if args.runs(Section::Journal) {
        let cost = journal::journal_cost(&args)?;
        let hosts = if args.hosts_jobs > 0 {
            journal::two_hosts(&args)?
        } else {
            None
        };
        (cost, hosts)
    } else {
        (None, None)
    };
    let batch = if args.runs(Section::Batch) {
        Some(batch(&args)?)
    } else {
        None
    };
    let (api_bound, token_bound) = if args.runs(Section::Limits) {
        let api = if args.limit_jobs > 0 {
            Some(limits::api_bound(&args)?)
        } else {
            None
        };
        let token = if args.token_bound_jobs > 0 {
            limits::token_bound(&args)?
        } else {
            None
        };
        (api, token)
    } else {
        (None, None)
    };
    if args.json {
        let doc: Vec<_> = rows
            .iter()
            .map(|r| {
                let stats = |s: &Samples| s.stats().map(|(mean, median, p90)| json!({"mean_ms": mean, "median_ms": median, "p90_ms": p90, "n": s.0.len()}));
                let paired = r.token_call.as_ref().and_then(|calls| paired_overhead(&r.ours, calls));
                json!({
                    "section": r.section,
                    "algorithm": r.algorithm.cli_name(),
                    "ours": stats(&r.ours),
                    "token_call_inside_ours": r.token_call.as_ref().and_then(stats),
                    "paired": paired.map(|(overhead_ms, ratio)| json!({"overhead_ms": overhead_ms, "ratio": ratio})),
                    "references": r.references.iter().map(|(name, s)| json!({"name": name, "stats": s.as_ref().and_then(stats)})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let batch_doc = batch.as_ref().map(|b| {
            json!({
                "throughput_keys_per_s": b.throughput.iter().map(|(w, k)| json!({"workers": w, "keys_per_s": k})).collect::<Vec<_>>(),
                "disk_flushes_per_s": b.disk_flushes.iter().map(|(t, r)| json!({"threads": t, "flushes_per_s": r})).collect::<Vec<_>>(),
                "peak_rss": b.memory.iter().map(|(j, rss, secs)| json!({"jobs": j, "max_rss_kib": rss, "seconds": secs})).collect::<Vec<_>>(),
            })
        });
        let limits_doc = api_bound.as_ref().map(|a| {
            json!({
                "jobs": a.jobs, "workers": a.workers, "requests": a.requests,
                "responses_429": a.refused, "failed_or_pending": a.failed,
                "wall_s": a.wall.as_secs_f64(), "least_s": a.least.as_secs_f64(),
                "ratio": a.wall.as_secs_f64() / a.least.as_secs_f64(),
            })
        });
        let token_doc = token_bound.as_ref().map(|t| {
            let bound = t.token.max(t.api).as_secs_f64();
            json!({
                "jobs": t.jobs, "done": t.done, "requests": t.requests, "responses_429": t.refused,
                "wall_s": t.wall.as_secs_f64(), "token_s": t.token.as_secs_f64(),
                "api_least_s": t.api.as_secs_f64(), "ratio": t.wall.as_secs_f64() / bound,
            })
        });
        let cli_doc: Vec<_> = cli_rows
            .iter()
            .map(|r| {
                let stats = |s: &Samples| s.stats().map(|(mean, median, p90)| json!({"mean_ms": mean, "median_ms": median, "p90_ms": p90, "n": s.0.len()}));
                json!({
                    "algorithm": r.algorithm.cli_name(),
                    "keygen_csr_out": stats(&r.one_process),
                    "token_generation_inside": stats(&r.token_call),
                    "keygen_then_csr": stats(&r.two_calls),
                    "pkcs11_tool_then_openssl_req": r.shell.as_ref().and_then(stats),
                    "speedup_over_shell": r.shell.as_ref().and_then(|s| r.speedup(s)),
                    "speedup_over_two_calls": r.speedup(&r.two_calls),
                    "floor_process": stats(&r.floor),
                    "least_one_process": stats(&r.least()),
                    "best_possible_speedup_over_shell": r.shell.as_ref().and_then(|s| r.best_possible_speedup(s)),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "per_key": doc, "cli": cli_doc, "batch": batch_doc, "api_bound": limits_doc, "token_bound": token_doc,
                "journal": journal_cost.as_ref().map(|costs| costs.iter().map(|c| json!({"backend": c.backend, "per_job_ms": c.per_job_ms})).collect::<Vec<_>>()),
                "hosts": hosts.as_ref().map(|h| json!({"jobs": h.jobs, "one_host_s": h.one_host.as_secs_f64(), "two_hosts_s": h.two_hosts.as_secs_f64(), "speedup": h.one_host.as_secs_f64() / h.two_hosts.as_secs_f64(), "responses_429": h.refused})),
            }))?
        );
        return Ok(());
    }
    println!("per-key times in ms (mean, median, p90); ratio = our mean / reference mean");
    for row in &rows {
        println!("\n{} {}", row.section, row.algorithm);
        println!(
            "  {:<28} {}",
            "codesign-kit",
            fmt_stats(&Some(row.ours.clone()))
        );
        if let Some(calls) = &row.token_call {
            let paired = paired_overhead(&row.ours, calls)
                .map(|(overhead_ms, ratio)| {
                    format!("  paired: +{overhead_ms:.2} ms per key, ratio {ratio:.3}")
                })
                .unwrap_or_default();
            println!(
                "  {:<28} {}{paired}",
                "  its C_GenerateKeyPair call",
                fmt_stats(&Some(calls.clone()))
            );
        }
        for (name, samples) in &row.references {
            let ratio = match (row.ours.stats(), samples.as_ref().and_then(Samples::stats)) {
                (Some((ours, _, _)), Some((theirs, _, _))) => {
                    format!("  ratio {:.2}", ours / theirs)
                }
                _ => String::new(),
            };
            println!("  {:<28} {}{ratio}", name, fmt_stats(samples));
        }
    }
    for row in &cli_rows {
        println!(
            "\nkeygen + CSR as whole processes (release binary, SoftHSM) {}: median ms; speedup = their median / ours",
            row.algorithm
        );
        let speedup = |s: &Samples| {
            row.speedup(s)
                .map(|x| format!("  one process is {x:.2}x faster"))
                .unwrap_or_default()
        };
        println!(
            "  {:<38} {}",
            "keygen --csr-out (one process)",
            fmt_stats(&Some(row.one_process.clone()))
        );
        println!(
            "  {:<38} {}",
            "  its C_GenerateKeyPair call",
            fmt_stats(&Some(row.token_call.clone()))
        );
        println!(
            "  {:<38} {}{}",
            "keygen, then csr (two processes)",
            fmt_stats(&Some(row.two_calls.clone())),
            speedup(&row.two_calls)
        );
        println!(
            "  {:<38} {}{}",
            "pkcs11-tool, then openssl req",
            fmt_stats(&row.shell),
            row.shell.as_ref().map(speedup).unwrap_or_default()
        );
        println!(
            "  {:<38} {}",
            "floor: token list (start, load, log in)",
            fmt_stats(&Some(row.floor.clone()))
        );
        println!(
            "  {:<38} {}{}",
            "least one process: floor + C_Generate…",
            fmt_stats(&Some(row.least())),
            row.shell
                .as_ref()
                .and_then(|s| row.best_possible_speedup(s))
                .map(|x| format!("  at best {x:.2}x faster than the shell pipeline"))
                .unwrap_or_default()
        );
    }
    if let Some(costs) = &journal_cost {
        println!(
            "\njournal writes of one job (its row, 4 begins, 8 ends, its step times), median of 3 rounds"
        );
        for c in costs {
            println!("  {:<50} {:>8.3} ms per job", c.backend, c.per_job_ms);
        }
        if let [lite, pg] = costs.as_slice() {
            println!(
                "  PostgreSQL / SQLite: {:.2}x",
                pg.per_job_ms / lite.per_job_ms
            );
        }
    }
    if let Some(h) = &hosts {
        println!(
            "\n{} RSA-3072 jobs on SoftHSM through one PostgreSQL journal, 2 workers a host, CertCentral's windows (best of 2 each)",
            h.jobs
        );
        println!(
            "  one host {:.1} s, two hosts {:.1} s: {:.2}x; {} answered 429",
            h.one_host.as_secs_f64(),
            h.two_hosts.as_secs_f64(),
            h.one_host.as_secs_f64() / h.two_hosts.as_secs_f64(),
            h.refused
        );
    }
    if let Some(batch) = batch {
        println!("\nbatch (P-256 software keys, emulator on loopback)");
        print_scaling(
            &batch.throughput,
            |workers, keys| format!("{workers} worker(s): {keys:.1} keys/s"),
            "worker",
        );
        print_scaling(
            &batch.disk_flushes,
            |threads, rate| format!("disk, {threads} thread(s): {rate:.0} fdatasync/s"),
            "thread",
        );
        for (jobs, rss, secs) in &batch.memory {
            match rss {
                Some(kib) => println!(
                    "  {jobs} jobs: peak RSS {:.1} MiB ({secs:.1} s)",
                    *kib as f64 / 1024.0
                ),
                None => println!(
                    "  {jobs} jobs: peak RSS not measured (/usr/bin/time missing) ({secs:.1} s)"
                ),
            }
        }
    }
    if let Some(a) = api_bound {
        println!(
            "\napi-bound batch ({} P-256 software-key jobs, {} workers, CertCentral's windows, ~150 ms answers)",
            a.jobs, a.workers
        );
        println!(
            "  {} requests in {:.1} s; the windows allow them in {:.1} s at best: ratio {:.3}; {} answered 429; {} job(s) not done",
            a.requests,
            a.wall.as_secs_f64(),
            a.least.as_secs_f64(),
            a.wall.as_secs_f64() / a.least.as_secs_f64(),
            a.refused,
            a.failed
        );
    }
    if let Some(t) = token_bound {
        let bound = t.token.max(t.api);
        println!(
            "\ntoken-bound batch ({} RSA-3072 jobs on SoftHSM, 2 workers, CertCentral's windows, ~150 ms answers)",
            t.jobs
        );
        println!(
            "  {} done in {:.1} s; the token's own generation {:.1} s, the windows' least time for {} requests {:.1} s: ratio {:.3} of the larger; {} answered 429",
            t.done,
            t.wall.as_secs_f64(),
            t.token.as_secs_f64(),
            t.requests,
            t.api.as_secs_f64(),
            t.wall.as_secs_f64() / bound.as_secs_f64(),
            t.refused
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::batch::{medians, one_two_alternating};
    use super::measure::{Samples, paired_overhead};
    use std::time::Duration;

    #[test]
    fn rounds_alternate_and_the_median_round_counts() {
        assert_eq!(
            one_two_alternating(3).collect::<Vec<_>>(),
            [1, 2, 2, 1, 1, 2]
        );
        let figures = [(2, 9.0), (1, 5.0), (1, 1.0), (2, 7.0), (1, 3.0), (2, 8.0)];
        assert_eq!(medians(&figures), [(1, 3.0), (2, 8.0)]);
    }

    #[test]
    fn the_paired_overhead_is_per_key_and_the_ratio_is_of_sums() {
        let ms =
            |values: &[u64]| Samples(values.iter().map(|&v| Duration::from_millis(v)).collect());
        let (overhead, ratio) = paired_overhead(&ms(&[110, 520]), &ms(&[100, 500])).unwrap();
        assert!((overhead - 15.0).abs() < 1e-9, "{overhead}");
        assert!((ratio - 630.0 / 600.0).abs() < 1e-9, "{ratio}");
        assert_eq!(paired_overhead(&ms(&[110]), &ms(&[100, 500])), None);
        assert_eq!(paired_overhead(&ms(&[]), &ms(&[])), None);
    }
}
