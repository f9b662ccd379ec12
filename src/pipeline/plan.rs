//! Provisioning plans: many jobs described in a TOML file, expanded one at a time.
//!
//! ```toml
//! [order]
//! product = "code_signing_ev"
//! body = "order-body.json"        # CertCentral's JSON; certificate.csr is filled per job
//!
//! [[keys]]
//! count = 40
//! algorithm = "rsa3072"
//! token = "pkcs11:token=A?module-path=/usr/lib/softhsm/libsofthsm2.so"
//! label = "cs-{n:03}"             # cs-001 .. cs-040
//! subject = "CN=Example Corp,O=Example Corp,C=US"
//! # digicert_token = "5110-fips"  # the token is this DigiCert eToken: its algorithms are checked
//!
//! [[keys]]
//! algorithm = "p256"
//! directory = "keys"              # software keys, keys/<label>.pem
//! label = "build-signer"
//! subject = "CN=Example Corp,C=US"
//!
//! # Optional: the journal every host of this plan shares (`--journal` overrides it). A plan
//! # holds no password: PGPASSWORD or a password file (~/.pgpass, PGPASSFILE) gives it.
//! [journal]
//! database = "postgres://signer@db.example.com/codesign?sslmode=require"
//! ca = "db-ca.pem"                # the server's CA (else PGSSLROOTCERT, else the platform's)
//! # file = "plan.journal.sqlite"  # or a SQLite file, for one host
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::keys::files::{InputKind, read_input};
use crate::keys::pkcs11::Pkcs11Uri;
use crate::keys::{KeyAlgorithm, SubjectDn};
use crate::order::{OrderRequest, Product};
use crate::pipeline::error::PipelineError;
use crate::pipeline::journal::JournalLocation;

/// Where a job's key lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyLocation {
    /// On a PKCS#11 token (URI with token and module; no object or id).
    Token {
        /// The token's URI (never holds a `pin-value`: plans refuse it).
        uri: Box<Pkcs11Uri>,
    },
    /// A PKCS#8 PEM file (mode 0600).
    File {
        /// The key file.
        path: PathBuf,
    },
}

/// One key to provision, with its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Unique within the plan: the key label.
    pub job_id: String,
    /// Algorithm.
    pub algorithm: KeyAlgorithm,
    /// CSR subject.
    pub subject: SubjectDn,
    /// Where the key goes.
    pub location: KeyLocation,
    /// `CKA_LABEL` on a token; the file stem for software keys.
    pub label: String,
    /// The job whose certificate this one renews: a new order, carrying the old one's ID in
    /// `renewal_of_order_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_of: Option<Predecessor>,
    /// The job whose order this one reissues for its new key (no new order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_of: Option<Predecessor>,
}

/// The job a renewal or a reissue follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Predecessor {
    /// The job followed.
    pub job_id: String,
    /// Its order.
    pub order_id: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    order: OrderSection,
    keys: Vec<KeyGroup>,
    #[serde(default)]
    journal: Option<JournalSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalSection {
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    ca: Option<PathBuf>,
}

/// The journal a plan names (`[journal]`): where it is, and the CA certificates a TLS database's
/// server is checked against. A command line's `--journal` overrides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanJournal {
    /// A SQLite file (relative to the plan's directory) or a PostgreSQL database, never with a
    /// password.
    pub location: JournalLocation,
    /// A PEM file of CA certificates, for a database with `sslmode=require`.
    pub ca: Option<PathBuf>,
}

impl JournalSection {
    /// The section checked: one location, no password, a CA only for a TLS database.
    fn check(self, base: &Path) -> Result<PlanJournal, String> {
        let location = match (self.database, self.file) {
            (Some(database), None) => {
                if !(database.starts_with("postgres://") || database.starts_with("postgresql://")) {
                    return Err(
                        "journal.database: write a PostgreSQL URL, postgres://USER@HOST/DATABASE (or give file = \"FILE\")"
                            .to_string(),
                    );
                }
                let url: crate::pipeline::journal::DatabaseUrl = database
                    .parse()
                    .map_err(|e: PipelineError| format!("journal.database: {e}"))?;
                if url.has_password() {
                    return Err(format!(
                        "journal.database {url}: a plan must not hold a password; give it in PGPASSWORD or a password file (~/.pgpass, or the file PGPASSFILE names)"
                    ));
                }
                JournalLocation::Postgres(url)
            }
            (None, Some(file)) => JournalLocation::File(plan_path(base, &file, "journal.file")?),
            _ => {
                return Err(
                    "journal: give exactly one of database = \"postgres://...\" or file = \"FILE\""
                        .to_string(),
                );
            }
        };
        let ca = match self.ca {
            None => None,
            Some(ca) => match &location {
                JournalLocation::Postgres(url) if url.uses_tls() => {
                    Some(plan_path(base, &ca, "journal.ca")?)
                }
                _ => {
                    return Err(
                        "journal.ca is for a database reached with TLS (sslmode=require in journal.database)"
                            .to_string(),
                    );
                }
            },
        };
        Ok(PlanJournal { location, ca })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderSection {
    product: String,
    #[serde(default)]
    body: Option<PathBuf>,
    #[serde(default)]
    request: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyGroup {
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "one")]
    start: u32,
    algorithm: String,
    subject: String,
    label: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    directory: Option<PathBuf>,
    /// The token is this DigiCert-supported SafeNet eToken (`5110-cc`, `5110-fips`,
    /// `5110plus-fips`): an algorithm DigiCert does not take on it makes the plan unusable.
    #[serde(default)]
    digicert_token: Option<String>,
}

/// The most jobs one `[[keys]]` group may hold.
pub const MAX_GROUP_JOBS: u32 = 1_000_000;

fn one() -> u32 {
    1
}

#[derive(Debug, Clone)]
struct Group {
    count: u32,
    start: u32,
    algorithm: KeyAlgorithm,
    subject: SubjectDn,
    label: LabelPattern,
    location: GroupLocation,
}

#[derive(Debug, Clone)]
enum GroupLocation {
    Token(Box<Pkcs11Uri>),
    Directory(PathBuf),
}

/// A checked plan: the order template and the key groups. Jobs are expanded lazily by
/// [`Plan::jobs`], so a plan of a million keys costs no more memory than one of ten.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The product ordered for every key.
    pub product: Product,
    /// The order body (without CSR).
    pub request: OrderRequest,
    /// The journal the plan names, if it names one.
    pub journal: Option<PlanJournal>,
    groups: Vec<Group>,
}

/// The most bytes a label may have: it is the key's `CKA_LABEL`, the job's name and a file name
/// (`<label>.pem`, `<label>.chain.pem`, `<label>.json.sig`), which must stay within the 255 bytes
/// most file systems allow.
pub const MAX_LABEL_BYTES: usize = 128;

/// The most jobs one plan may hold. Checking a plan keeps a 16-byte entry per job to prove the
/// labels unique (about 40 MB at the cap), whatever the labels' length.
pub const MAX_PLAN_JOBS: u64 = 1_000_000;

/// Characters a label must not hold: control characters, and the Unicode format characters that
/// reorder or hide text on a terminal ([`crate::keys::text::is_unsafe_char`]), which could make
/// one job's output look like another's; and `/`, since a label names files.
fn forbidden_in_label(c: char) -> bool {
    c == '/' || crate::keys::text::is_unsafe_char(c)
}

/// A label as written in a plan: fixed text around at most one `{n}` or `{n:0W}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LabelPattern {
    prefix: String,
    /// `None`: no number; `Some(0)`: `{n}`; `Some(w)`: `{n:0w}`.
    width: Option<usize>,
    suffix: String,
}

impl LabelPattern {
    /// Parses a label pattern; the message says what is wrong (it quotes the pattern escaped).
    fn parse(pattern: &str) -> Result<LabelPattern, String> {
        let quoted = pattern.escape_debug().to_string();
        let Some(start) = pattern.find("{n") else {
            return Ok(LabelPattern {
                prefix: pattern.to_string(),
                width: None,
                suffix: String::new(),
            });
        };
        let end = pattern[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| format!("label \"{quoted}\": unclosed {{n"))?;
        let spec = &pattern[start + 2..end];
        let width = match spec {
            "" => 0,
            s if s.starts_with(":0") => s[2..]
                .parse()
                .ok()
                .filter(|w| (1..=9).contains(w))
                .ok_or_else(|| {
                    format!("label \"{quoted}\": write {{n}} or {{n:0W}} with a width W of 1 to 9")
                })?,
            _ => return Err(format!("label \"{quoted}\": write {{n}} or {{n:03}}")),
        };
        let suffix = &pattern[end + 1..];
        if suffix.contains("{n") {
            return Err(format!(
                "label \"{quoted}\": holds {{n}} more than once; one number per label"
            ));
        }
        Ok(LabelPattern {
            prefix: pattern[..start].to_string(),
            width: Some(width),
            suffix: suffix.to_string(),
        })
    }

    fn has_number(&self) -> bool {
        self.width.is_some()
    }

    /// The label of job `n`.
    fn label(&self, n: u32) -> String {
        match self.width {
            None => self.prefix.clone(),
            Some(width) => format!("{}{n:0width$}{}", self.prefix, self.suffix),
        }
    }

    /// The number `n` whose label is `label` (1 for a pattern without a number, when equal).
    fn number_of(&self, label: &str) -> Option<u32> {
        let Some(width) = self.width else {
            return (label == self.prefix).then_some(1);
        };
        let digits = label
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        (format!("{n:0width$}") == digits).then_some(n)
    }

    /// Every problem of the labels `first..=last`, found from the pattern alone: characters and
    /// the longest label's length.
    fn problems(&self, last: u32) -> Vec<String> {
        let mut problems = Vec::new();
        let fixed = format!("{}{}", self.prefix, self.suffix);
        if let Some(c) = fixed.chars().find(|c| forbidden_in_label(*c)) {
            problems.push(format!(
                "label \"{}\" holds {}; labels may not hold control characters, '/', or characters that reorder or hide text",
                fixed.escape_debug(),
                c.escape_unicode()
            ));
        }
        let longest = self.label(last);
        if longest.is_empty() {
            problems.push("label must not be empty".to_string());
        } else if longest.len() > MAX_LABEL_BYTES {
            problems.push(format!(
                "label \"{}\" is {} bytes; a label may have at most {MAX_LABEL_BYTES} (it names the key on the token and its files)",
                longest.escape_debug(),
                longest.len()
            ));
        }
        problems
    }
}

/// Resolves a path of the plan: relative paths are relative to the plan's directory and must stay
/// inside it (no `..`); a path that leaves it must be written absolute.
fn plan_path(base: &Path, given: &Path, at: &str) -> Result<PathBuf, String> {
    if given.is_relative()
        && given
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "{at} \"{}\": a relative path must stay inside the plan's directory (no '..'); write an absolute path to go elsewhere",
            given.display().to_string().escape_debug()
        ));
    }
    let joined = base.join(given);
    Ok(std::path::absolute(&joined).unwrap_or(joined))
}

impl Plan {
    /// Reads and checks a plan file. Every problem is reported at once; paths in the plan are
    /// relative to its directory.
    ///
    /// # Errors
    /// [`PipelineError::Plan`].
    pub fn load(path: &Path) -> Result<Plan, PipelineError> {
        let unreadable = |problem: String| PipelineError::Plan {
            path: path.to_path_buf(),
            problems: vec![problem],
        };
        // The error names the plan already; its own words are kept without the path again.
        let bytes = read_input(path, InputKind::Plan).map_err(|e| {
            unreadable(match e {
                crate::keys::KeysError::Io { action, cause, .. } => format!("{action}: {cause}"),
                other => other.to_string(),
            })
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| unreadable("the plan is not UTF-8 text".to_string()))?;
        Plan::parse(&text, path.parent().unwrap_or(Path::new(".")), path)
    }

    /// Parses plan text; `base` resolves relative paths, `path` names the plan in errors.
    ///
    /// # Errors
    /// [`PipelineError::Plan`].
    pub fn parse(text: &str, base: &Path, path: &Path) -> Result<Plan, PipelineError> {
        let fail = |problems: Vec<String>| PipelineError::Plan {
            path: path.to_path_buf(),
            problems,
        };
        let file: PlanFile = toml::from_str(text).map_err(|e| fail(vec![e.to_string()]))?;
        let mut problems = Vec::new();
        let product = Product::from(file.order.product.clone());
        if let Product::Other(p) = &product {
            problems.push(format!(
                "order.product \"{p}\" is not code_signing or code_signing_ev"
            ));
        }
        let request = match (&file.order.body, &file.order.request) {
            (Some(body), None) => match plan_path(base, body, "order.body") {
                Err(problem) => {
                    problems.push(problem);
                    OrderRequest::default()
                }
                Ok(body_path) => {
                    let json = read_input(&body_path, InputKind::OrderBody)
                        .map_err(|e| e.to_string())
                        .and_then(|bytes| {
                            String::from_utf8(bytes)
                                .map_err(|_| format!("{}: not UTF-8 text", body_path.display()))
                        });
                    match json {
                        Ok(json) => OrderRequest::from_json(&json).unwrap_or_else(|e| {
                            problems.push(format!("order.body {}: {e}", body_path.display()));
                            OrderRequest::default()
                        }),
                        Err(e) => {
                            problems.push(format!("order.body: {e}"));
                            OrderRequest::default()
                        }
                    }
                }
            },
            (None, Some(table)) => serde_json::to_value(table)
                .map_err(|e| e.to_string())
                .and_then(|v| serde_json::from_value::<OrderRequest>(v).map_err(|e| e.to_string()))
                .unwrap_or_else(|e| {
                    problems.push(format!("order.request: {e}"));
                    OrderRequest::default()
                }),
            _ => {
                problems.push(
                    "order: give exactly one of body = \"FILE.json\" or [order.request]"
                        .to_string(),
                );
                OrderRequest::default()
            }
        };
        if request.alternative_order_id.is_some() {
            problems.push(
                "order: alternative_order_id is set per job by the pipeline; remove it from the body".to_string(),
            );
        }
        let journal = file.journal.and_then(|section| {
            section
                .check(base)
                .map_err(|problem| problems.push(problem))
                .ok()
        });
        let total: u64 = file.keys.iter().map(|g| u64::from(g.count)).sum();
        if total > MAX_PLAN_JOBS {
            problems.push(format!(
                "the plan holds {total} jobs; one plan may hold at most {MAX_PLAN_JOBS} (split it into several plans)"
            ));
            return Err(fail(problems));
        }
        let mut groups = Vec::new();
        for (i, g) in file.keys.into_iter().enumerate() {
            let at = format!("keys[{i}]");
            let algorithm = match g.algorithm.parse::<KeyAlgorithm>() {
                Ok(a) => Some(a),
                Err(e) => {
                    problems.push(format!("{at}.algorithm: {e}"));
                    None
                }
            };
            match (&g.digicert_token, &g.token, algorithm) {
                (Some(_), None, _) => problems.push(format!(
                    "{at}.digicert_token names a token model, but the group's keys are not on a token"
                )),
                (Some(model), Some(_), algorithm) => {
                    match model.parse::<crate::keys::storage::DigicertToken>() {
                        Ok(model) => {
                            if let Some(Err(why)) = algorithm.map(|a| model.check(a)) {
                                problems.push(format!("{at}.algorithm: {why}"));
                            }
                        }
                        Err(e) => problems.push(format!("{at}.digicert_token: {e}")),
                    }
                }
                _ => {}
            }
            let subject = match g.subject.parse::<SubjectDn>() {
                Ok(subject) => Some(subject),
                Err(e) => {
                    problems.push(format!("{at}.subject: {e}"));
                    None
                }
            };
            if g.count == 0 || g.count > MAX_GROUP_JOBS {
                problems.push(format!("{at}.count must be 1 to {MAX_GROUP_JOBS}"));
                continue;
            }
            let Some(last) = g.start.checked_add(g.count - 1).filter(|l| *l < u32::MAX) else {
                problems.push(format!("{at}.start + count must stay below {}", u32::MAX));
                continue;
            };
            let label = match LabelPattern::parse(&g.label) {
                Ok(label) => label,
                Err(e) => {
                    problems.push(format!("{at}.{e}"));
                    continue;
                }
            };
            if g.count > 1 && !label.has_number() {
                problems.push(format!(
                    "{at}.label \"{}\" needs {{n}} or {{n:03}} for count {}",
                    g.label.escape_debug(),
                    g.count
                ));
            }
            for problem in label.problems(last) {
                problems.push(format!("{at}.{problem}"));
            }
            let location = match (&g.token, &g.directory) {
                (Some(uri), None) => match uri.parse::<Pkcs11Uri>() {
                    Ok(parsed) if parsed.pin_value.is_some() => {
                        problems.push(format!("{at}.token: a plan must not hold a PIN; use pin-source=file:... or PKCS11_PIN"));
                        None
                    }
                    Ok(parsed) if parsed.object.is_some() || parsed.id.is_some() => {
                        problems.push(format!(
                            "{at}.token: name the token only; object and id come from label"
                        ));
                        None
                    }
                    Ok(parsed) if parsed.token.is_none() && parsed.serial.is_none() => {
                        problems.push(format!(
                            "{at}.token: name the token with token=<label> or serial=<serial>"
                        ));
                        None
                    }
                    Ok(parsed) => Some(GroupLocation::Token(Box::new(parsed))),
                    Err(e) => {
                        problems.push(format!("{at}.token: {e}"));
                        None
                    }
                },
                (None, Some(dir)) => match plan_path(base, dir, &format!("{at}.directory")) {
                    Ok(dir) => Some(GroupLocation::Directory(dir)),
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                },
                _ => {
                    problems.push(format!(
                        "{at}: give exactly one of token = \"pkcs11:...\" or directory = \"DIR\""
                    ));
                    None
                }
            };
            if let (Some(algorithm), Some(location), Some(subject)) = (algorithm, location, subject)
            {
                groups.push(Group {
                    count: g.count,
                    start: g.start,
                    algorithm,
                    subject,
                    label,
                    location,
                });
            }
        }
        if problems.is_empty()
            && let Some(problem) = duplicate_label(&groups)
        {
            problems.push(problem);
        }
        if groups.is_empty() && problems.is_empty() {
            problems.push("the plan has no [[keys]]".to_string());
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(Plan {
            product,
            request,
            journal,
            groups,
        })
    }

    /// How many jobs the plan holds.
    pub fn len(&self) -> u64 {
        self.groups.iter().map(|g| u64::from(g.count)).sum()
    }

    /// Whether the plan holds no job.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The directories the plan's software keys go to, each once.
    pub fn key_directories(&self) -> Vec<&Path> {
        let mut directories: Vec<&Path> = Vec::new();
        for group in &self.groups {
            if let GroupLocation::Directory(dir) = &group.location
                && !directories.contains(&dir.as_path())
            {
                directories.push(dir);
            }
        }
        directories
    }

    /// Whether the plan holds a job of this ID (its label), found from the label patterns
    /// without expanding them.
    pub fn contains(&self, job_id: &str) -> bool {
        self.groups.iter().any(|g| {
            g.label
                .number_of(job_id)
                .is_some_and(|n| n >= g.start && n - g.start < g.count)
        })
    }

    /// The jobs, expanded one at a time.
    pub fn jobs(&self) -> impl Iterator<Item = JobSpec> + Clone + '_ {
        self.groups.iter().flat_map(|g| {
            (g.start..g.start + g.count).map(move |n| {
                let label = g.label.label(n);
                let location = match &g.location {
                    GroupLocation::Token(uri) => KeyLocation::Token { uri: uri.clone() },
                    GroupLocation::Directory(dir) => KeyLocation::File {
                        path: dir.join(format!("{label}.pem")),
                    },
                };
                JobSpec {
                    job_id: label.clone(),
                    algorithm: g.algorithm,
                    subject: g.subject.clone(),
                    location,
                    label,
                    renewal_of: None,
                    reissue_of: None,
                }
            })
        })
    }
}

/// The first label that two jobs share, as a problem; `None` when every label is unique.
///
/// Labels within one group differ (one number each, formatted alike). Across groups each label is
/// kept as a 64-bit keyed hash with the job that made it, and a hash seen twice is confirmed by
/// comparing the two labels themselves: exact, and 16 bytes per job whatever the labels' length.
fn duplicate_label(groups: &[Group]) -> Option<String> {
    use std::hash::BuildHasher;
    let hasher = std::collections::hash_map::RandomState::new();
    let mut seen: HashMap<u64, (u32, u32)> = HashMap::new();
    for (index, group) in groups.iter().enumerate() {
        let index = u32::try_from(index).ok()?;
        for n in group.start..group.start + group.count {
            let label = group.label.label(n);
            let hash = hasher.hash_one(&label);
            match seen.get(&hash) {
                None => {
                    seen.insert(hash, (index, n));
                }
                Some(&(other, other_n)) => {
                    let earlier = &groups[other as usize];
                    if other != index && earlier.label.label(other_n) == label {
                        return Some(format!(
                            "label \"{}\" is used twice in the plan (keys[{other}] and keys[{index}])",
                            label.escape_debug()
                        ));
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
