//! Unit tests of the journal module.
use super::sqlite::STEP_TIMES;
use super::*;
use crate::pipeline::plan::KeyLocation;
use rusqlite::params;

fn spec(id: &str) -> JobSpec {
    JobSpec {
        job_id: id.to_string(),
        algorithm: crate::keys::KeyAlgorithm::P256,
        subject: "CN=x".parse().unwrap(),
        location: KeyLocation::File {
            path: format!("{id}.pem").into(),
        },
        label: id.to_string(),
        renewal_of: None,
        reissue_of: None,
    }
}

#[test]
fn rows_survive_reopening_and_keep_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let journal = Journal::open(&path).unwrap();
    let mut row = journal.ensure(&spec("a")).unwrap();
    journal.ensure(&spec("b")).unwrap();
    assert_eq!(row.step, Step::Planned);
    assert_eq!(row.key_id.len(), 16);
    assert_eq!(row.alternative_order_id.len(), 32);
    // Ensuring again returns the same row: the IDs are chosen once.
    assert_eq!(journal.ensure(&spec("a")).unwrap(), row);
    journal.begin("a", Step::OrderSubmitted, "sending").unwrap();
    row.step = Step::OrderSubmitted;
    row.order_id = Some(42);
    journal.save(&row, "order 42").unwrap();
    row.step = Step::Done;
    row.state = JobState::Done;
    journal.save(&row, "").unwrap();
    drop(journal);

    let journal = Journal::open(&path).unwrap();
    assert!(journal.has_begun("a", Step::OrderSubmitted).unwrap());
    assert!(!journal.has_begun("a", Step::CertificateInstalled).unwrap());
    assert!(!journal.has_begun("b", Step::OrderSubmitted).unwrap());
    let back = journal.load("a").unwrap().unwrap();
    assert_eq!(back, row);
    assert_eq!(journal.unfinished().unwrap(), ["b"]);
    assert_eq!(journal.counts().unwrap(), (1, 0, 0, 1));
    assert!(journal.load("c").unwrap().is_none());
    let history: i64 = journal
        .sqlite()
        .lock()
        .query_row("SELECT COUNT(*) FROM history WHERE job_id = 'a'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(history, 4, "planned, begin and end of the order, done");
}

/// Reading a job's step times searches the history by job, whatever the history's size.
#[test]
fn step_times_use_the_history_index() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let plan: Vec<String> = journal
        .sqlite()
        .lock()
        .prepare(&format!("EXPLAIN QUERY PLAN {STEP_TIMES}"))
        .unwrap()
        .query_map(params!["a"], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|line| line.contains("USING INDEX history_by_job")),
        "{plan:?}"
    );
}

/// The journal and its write-ahead log are the owner's alone, whatever the umask; an empty
/// journal is removed by `discard_if_empty`, one with a job is kept.
#[test]
fn the_journal_is_private_and_an_empty_one_can_be_discarded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let journal = Journal::open(&path).unwrap();
    journal.ensure(&spec("a")).unwrap();
    for file in [path.clone(), dir.path().join("j.sqlite-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}: {mode:o}", file.display());
    }
    assert!(!journal.discard_if_empty().unwrap());
    assert!(path.exists());

    let empty = dir.path().join("empty.sqlite");
    assert!(Journal::open(&empty).unwrap().discard_if_empty().unwrap());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("empty"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A job's spec may change while nothing was made; after that, the change is refused.
#[test]
fn a_spec_changes_only_before_the_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let mut row = journal.ensure(&spec("a")).unwrap();
    let mut changed = spec("a");
    changed.algorithm = crate::keys::KeyAlgorithm::P384;
    journal.replace_unstarted_spec(&changed).unwrap();
    assert_eq!(journal.load("a").unwrap().unwrap().spec, changed);
    row.spec = changed.clone();
    row.step = Step::KeyGenerated;
    journal.save(&row, "made").unwrap();
    assert!(journal.replace_unstarted_spec(&spec("a")).is_err());
    assert_eq!(
        journal.in_flight().unwrap(),
        vec![("a".to_string(), Step::KeyGenerated, None)]
    );
    journal.begin("a", Step::KeyGenerated, "first").unwrap();
    journal.begin("a", Step::KeyGenerated, "second").unwrap();
    assert_eq!(
        journal
            .begun_detail("a", Step::KeyGenerated)
            .unwrap()
            .as_deref(),
        Some("second")
    );
    assert_eq!(journal.begun_detail("a", Step::Done).unwrap(), None);
}

/// A journal is held by one `Journal` at a time: a second run on the same plan is refused at
/// once, by name, and may open it when the first is done.
#[test]
fn a_journal_in_use_is_refused_until_it_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let first = Journal::open(&path).unwrap();
    first.ensure(&spec("a")).unwrap();
    let started = std::time::Instant::now();
    let err = Journal::open(&path).expect_err("the journal is held");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "refused at once"
    );
    drop(first);
    let second = Journal::open(&path).unwrap();
    assert!(second.load("a").unwrap().is_some());
}

/// Each write flushes SQLite's own log file, and says so when it cannot.
#[test]
fn writes_flush_the_write_ahead_log_and_fail_when_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.sqlite().wal_path, dir.path().join("j.sqlite-wal"));
    let before = std::fs::metadata(&journal.sqlite().wal_path).unwrap().len();
    journal.ensure(&spec("a")).unwrap();
    let after = std::fs::metadata(&journal.sqlite().wal_path).unwrap().len();
    assert!(
        after > before,
        "the commit went to the log we flush: {before} -> {after}"
    );

    let flushes = || journal.sqlite().flushed.lock().unwrap().flushes;
    // The begin of a key generation is flushed before it returns, with the insert before it;
    // a second flush with nothing new to cover does not touch the disk.
    let opened = flushes();
    journal.begin("a", Step::KeyGenerated, "").unwrap();
    assert_eq!(flushes(), opened + 1);
    journal.flush().unwrap();
    assert_eq!(flushes(), opened + 1, "nothing new was committed");
    // Its end, the steps that act on nothing outside and those safely done again wait for the
    // next flush...
    let mut row = journal.load("a").unwrap().unwrap();
    row.step = Step::KeyGenerated;
    journal.save(&row, "").unwrap();
    journal.begin("a", Step::CsrBuilt, "").unwrap();
    journal.begin("a", Step::CertificateInstalled, "").unwrap();
    journal.begin("a", Step::Done, "").unwrap();
    assert_eq!(flushes(), opened + 1);
    // ...or for the begin of an order...
    journal.begin("a", Step::OrderSubmitted, "").unwrap();
    assert_eq!(flushes(), opened + 2);
    // ...and a job that stops is flushed when it does.
    row.state = JobState::Failed;
    journal.save(&row, "").unwrap();
    assert_eq!(flushes(), opened + 3);

    std::fs::remove_file(&journal.sqlite().wal_path).unwrap();
    // A step that acts on nothing outside is committed and waits for the next flush...
    journal.begin("a", Step::CsrBuilt, "").unwrap();
    // ...one that does is flushed before it returns.
    let err = journal.begin("a", Step::KeyGenerated, "").unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot flush the journal's write-ahead log to disk"),
        "{err}"
    );
}
