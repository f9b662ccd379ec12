//! Software key generation per algorithm, beside `openssl genpkey`.

use std::process::Command;

use anyhow::Result;
use codesign_kit::keys::SoftwareKey;

use super::args::BenchArgs;
use super::measure::{Row, Samples, have, openssl_genpkey_args, run_quiet, time};

pub(super) fn software(args: &BenchArgs, rows: &mut Vec<Row>) -> Result<()> {
    let openssl = args.compare && have("openssl");
    for alg in args.algorithms()? {
        let n = args
            .iterations
            .unwrap_or(if alg.rsa_bits().is_some() { 30 } else { 200 });
        eprintln!("software {alg}: {n} keys per path");
        let (mut ours, mut theirs) = (Samples::default(), Samples::default());
        for _ in 0..n {
            ours.0.push(time(|| Ok(SoftwareKey::generate(alg)?))?.0);
            if openssl {
                theirs.0.push(
                    time(|| run_quiet(Command::new("openssl").args(openssl_genpkey_args(alg))))?.0,
                );
            }
        }
        let references = if args.compare {
            vec![("openssl genpkey", openssl.then_some(theirs))]
        } else {
            Vec::new()
        };
        rows.push(Row {
            section: "software keygen",
            algorithm: alg,
            ours,
            token_call: None,
            references,
        });
    }
    Ok(())
}
