//! Unit tests of the plan module.
use super::*;

fn label(pattern: &str, n: u32) -> Result<String, String> {
    LabelPattern::parse(pattern).map(|p| p.label(n))
}

#[test]
fn labels_expand() {
    assert_eq!(label("cs-{n:03}", 7).unwrap(), "cs-007");
    assert_eq!(label("k{n}x", 12).unwrap(), "k12x");
    assert_eq!(label("plain", 1).unwrap(), "plain");
    assert!(label("cs-{n:x}", 1).is_err());
    assert!(label("cs-{n", 1).is_err());
    // Found by fuzzing: a huge width panicked inside format!.
    assert!(label("cs-{n:099993}", 1).is_err());
    assert!(label("cs-{n:00}", 1).is_err());
    let err = label("cs-{n}-{n:03}", 1).unwrap_err();
    assert!(err.contains("more than once"), "{err}");
}

const ORDER: &str = r#"
    [order]
    product = "code_signing_ev"
    [order.request]
    cs_provisioning_method = "email"
    skip_approval = true
    certificate = { signature_hash = "sha256" }
    order_validity = { years = 1 }
    organization = { id = 123456 }
"#;

fn parse_keys(keys: &str) -> Result<Plan, String> {
    Plan::parse(
        &format!("{ORDER}\n{keys}"),
        Path::new("/plans"),
        Path::new("plan.toml"),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn labels_that_would_fail_late_are_refused_at_load() {
    let group = |label: &str| {
        format!(
            "[[keys]]\ncount = 2\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = {}\nsubject = \"CN=Example Corp,C=US\"\n",
            toml::Value::String(label.to_string())
        )
    };
    // 300 bytes for a token label, 250 for a file stem: both too long to name files.
    let err = parse_keys(&group(&format!("{}{{n}}", "a".repeat(300)))).unwrap_err();
    assert!(err.contains("at most 128"), "{err}");
    let err = parse_keys(&group(&format!("{}{{n:03}}", "b".repeat(126)))).unwrap_err();
    assert!(err.contains("is 129 bytes"), "{err}");
    assert!(parse_keys(&group(&format!("{}{{n}}", "b".repeat(127)))).is_ok());
    for bad in ["evil\ncs-{n}", "cs-\u{202e}{n}", "a\u{0}b{n}", "dir/cs-{n}"] {
        let err = parse_keys(&group(bad)).unwrap_err();
        assert!(err.contains("labels may not hold"), "{bad:?}: {err}");
        assert!(!err.contains('\n') && !err.contains('\u{202e}'), "{err}");
    }
    let err = parse_keys(&group("cs-{n}-{n}")).unwrap_err();
    assert!(err.contains("more than once"), "{err}");
}

#[test]
fn relative_paths_stay_in_the_plan_directory() {
    let err = parse_keys(
        "[[keys]]\nalgorithm = \"p256\"\ndirectory = \"../../etc\"\nlabel = \"x\"\nsubject = \"CN=Example Corp,C=US\"\n",
    )
    .unwrap_err();
    assert!(
        err.contains("must stay inside the plan's directory"),
        "{err}"
    );
    let plan = parse_keys(
        "[[keys]]\nalgorithm = \"p256\"\ndirectory = \"/var/keys\"\nlabel = \"x\"\nsubject = \"CN=Example Corp,C=US\"\n",
    )
    .unwrap();
    let job = plan.jobs().next().unwrap();
    assert_eq!(
        job.location,
        KeyLocation::File {
            path: "/var/keys/x.pem".into()
        }
    );
    let plan = parse_keys(
        "[[keys]]\nalgorithm = \"p256\"\ndirectory = \"keys/a\"\nlabel = \"x\"\nsubject = \"CN=Example Corp,C=US\"\n",
    )
    .unwrap();
    assert_eq!(
        plan.jobs().next().unwrap().location,
        KeyLocation::File {
            path: "/plans/keys/a/x.pem".into()
        }
    );
    let body = Plan::parse(
        "[order]\nproduct = \"code_signing\"\nbody = \"../secret.json\"\n[[keys]]\nalgorithm = \"p256\"\ndirectory = \"k\"\nlabel = \"x\"\nsubject = \"CN=Example Corp,C=US\"\n",
        Path::new("/plans"),
        Path::new("plan.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(body.contains("order.body \"../secret.json\""), "{body}");
}

#[test]
fn the_number_of_jobs_is_capped_before_labels_are_made() {
    let huge: String = (0..30)
        .map(|i| {
            format!(
                "[[keys]]\ncount = 1000000\nstart = {}\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=A\"\nlabel = \"cs-{{n}}\"\nsubject = \"CN=Example Corp,C=US\"\n",
                i * 1_000_000 + 1
            )
        })
        .collect();
    let err = parse_keys(&huge).unwrap_err();
    assert!(
        err.contains("the plan holds 30000000 jobs; one plan may hold at most 1000000"),
        "{err}"
    );
}

#[test]
fn membership_is_found_from_the_patterns() {
    let plan = parse_keys(
        "[[keys]]\ncount = 40\nstart = 5\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=A\"\nlabel = \"cs-{n:03}-x\"\nsubject = \"CN=Example Corp,C=US\"\n\
         [[keys]]\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=A\"\nlabel = \"single\"\nsubject = \"CN=Example Corp,C=US\"\n",
    )
    .unwrap();
    for job in plan.jobs() {
        assert!(plan.contains(&job.job_id), "{}", job.job_id);
    }
    for absent in [
        "cs-004-x",
        "cs-045-x",
        "cs-5-x",
        "cs-0005-x",
        "cs-+05-x",
        "cs-005",
        "singles",
        "",
    ] {
        assert!(!plan.contains(absent), "{absent}");
    }
}

#[test]
fn labels_shared_across_groups_are_found() {
    let groups = "[[keys]]\ncount = 500\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=A\"\nlabel = \"cs-{n:03}\"\nsubject = \"CN=Example Corp,C=US\"\n\
                  [[keys]]\ncount = 10\nstart = 1000\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=A\"\nlabel = \"cs-{n}\"\nsubject = \"CN=Example Corp,C=US\"\n\
                  [[keys]]\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=A\"\nlabel = \"cs-042\"\nsubject = \"CN=Example Corp,C=US\"\n";
    let err = parse_keys(groups).unwrap_err();
    assert!(
        err.contains("label \"cs-042\" is used twice in the plan (keys[0] and keys[2])"),
        "{err}"
    );
    // {n:03} past 999 and {n} agree on 1000..: no clash below 1000.
    let err = parse_keys(
        &groups
            .replace("count = 500", "count = 1000")
            .replace("label = \"cs-042\"", "label = \"other\""),
    )
    .unwrap_err();
    assert!(err.contains("\"cs-1000\" is used twice"), "{err}");
    assert!(parse_keys(&groups.replace("label = \"cs-042\"", "label = \"other\"")).is_ok());
}

#[test]
fn a_plan_expands_lazily_and_refuses_every_problem_at_once() {
    let text = r#"
        [order]
        product = "code_signing_ev"
        [order.request]
        cs_provisioning_method = "email"
        skip_approval = true
        certificate = { signature_hash = "sha256" }
        order_validity = { years = 1 }
        organization = { id = 123456 }

        [[keys]]
        count = 40
        algorithm = "rsa3072"
        token = "pkcs11:token=A"
        label = "cs-{n:03}"
        subject = "CN=Example Corp,C=US"
    "#;
    let plan = Plan::parse(text, Path::new("."), Path::new("plan.toml")).unwrap();
    assert_eq!(plan.len(), 40);
    let jobs: Vec<JobSpec> = plan.jobs().collect();
    assert_eq!(jobs[0].label, "cs-001");
    assert_eq!(jobs[39].label, "cs-040");
    assert_eq!(
        plan.request
            .cs_provisioning_method
            .as_ref()
            .unwrap()
            .as_str(),
        "email"
    );

    let bad = r#"
        [order]
        product = "ssl"
        [order.request]
        alternative_order_id = "x"
        [[keys]]
        count = 2
        algorithm = "rsa2048"
        token = "pkcs11:token=A?pin-value=1234"
        label = "same"
        subject = "XX=1"
    "#;
    let err = Plan::parse(bad, Path::new("."), Path::new("plan.toml")).unwrap_err();
    let text = err.to_string();
    for says in [
        "order.product",
        "alternative_order_id",
        "keys[0].algorithm",
        "keys[0].subject",
        "must not hold a PIN",
        "needs {n}",
    ] {
        assert!(text.contains(says), "{says}: {text}");
    }
    assert!(!text.contains("1234"));
}

#[test]
fn a_named_digicert_token_takes_only_its_algorithms() {
    let group = |algorithm: &str, model: &str, place: &str| {
        format!(
            "[[keys]]\nalgorithm = \"{algorithm}\"\n{place}\nlabel = \"k{{n}}\"\nsubject = \"CN=Example Corp,C=US\"\ndigicert_token = \"{model}\"\n"
        )
    };
    let token = "token = \"pkcs11:token=e?module-path=/usr/lib/x.so\"";
    assert!(parse_keys(&group("p384", "5110-fips", token)).is_ok());
    assert!(parse_keys(&group("rsa4096", "5110-cc", token)).is_ok());
    let err = parse_keys(&group("rsa3072", "5110-cc", token)).unwrap_err();
    assert!(
        err.contains("keys[0].algorithm: DigiCert issues code signing certificates on a SafeNet eToken 5110 CC for RSA-4096 and ECC P-256 only, not RSA-3072"),
        "{err}"
    );
    let err = parse_keys(&group("p256", "5110", token)).unwrap_err();
    assert!(err.contains("keys[0].digicert_token"), "{err}");
    let err = parse_keys(&group("p256", "5110-cc", "directory = \"keys\"")).unwrap_err();
    assert!(err.contains("not on a token"), "{err}");
}

/// `[journal]`: a database without a password, or a file inside the plan's directory; a CA only
/// for a TLS database; every refusal names the field and the rule, and shows no password.
#[test]
fn a_plan_names_its_journal_without_a_password() {
    let keys = "[[keys]]\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = \"k\"\nsubject = \"CN=Example Corp,C=US\"\n";
    let with = |journal: &str| parse_keys(&format!("{keys}\n[journal]\n{journal}\n"));
    assert_eq!(parse_keys(keys).unwrap().journal, None);
    let plan = with(
        "database = \"postgres://signer@db.example.com/codesign?sslmode=require\"\nca = \"ca.pem\"",
    )
    .unwrap();
    let journal = plan.journal.unwrap();
    assert!(matches!(&journal.location, JournalLocation::Postgres(url) if url.uses_tls()));
    assert_eq!(journal.ca, Some(PathBuf::from("/plans/ca.pem")));
    let plan = with("file = \"shared.sqlite\"").unwrap();
    assert_eq!(
        plan.journal.unwrap().location,
        JournalLocation::File(PathBuf::from("/plans/shared.sqlite"))
    );
    for (journal, expected) in [
        (
            "database = \"postgres://signer:hunter2-pw@127.0.0.1/codesign\"",
            "a plan must not hold a password",
        ),
        (
            "database = \"host=/run/postgresql dbname=x password=hunter2-pw\"",
            "write a PostgreSQL URL",
        ),
        (
            "database = \"postgres://signer@db.example.com/codesign\"",
            "not this machine",
        ),
        (
            "database = \"postgres://signer@127.0.0.1/codesign\"\nca = \"ca.pem\"",
            "journal.ca is for a database reached with TLS",
        ),
        (
            "file = \"j.sqlite\"\nca = \"ca.pem\"",
            "journal.ca is for a database",
        ),
        (
            "file = \"../elsewhere.sqlite\"",
            "journal.file \"../elsewhere.sqlite\": a relative path must stay inside",
        ),
        ("", "journal: give exactly one of"),
        (
            "file = \"a\"\ndatabase = \"postgres://u@localhost/d\"",
            "journal: give exactly one of",
        ),
        ("url = \"postgres://u@localhost/d\"", "unknown field `url`"),
    ] {
        let err = with(journal).unwrap_err();
        assert!(err.contains(expected), "{journal}: {err}");
        assert!(!err.contains("hunter2-pw"), "{err}");
    }
}
