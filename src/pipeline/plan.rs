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
//!
//! [[keys]]
//! algorithm = "p256"
//! directory = "keys"              # software keys, keys/<label>.pem
//! label = "build-signer"
//! subject = "CN=Example Corp,C=US"
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::keys::pkcs11::Pkcs11Uri;
use crate::keys::{KeyAlgorithm, SubjectDn};
use crate::order::{OrderRequest, Product};
use crate::pipeline::PipelineError;

/// Where a job's key lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyLocation {
    /// On a PKCS#11 token (URI with token and module; no object or id).
    Token {
        /// The token's URI (never holds a `pin-value`: plans refuse it).
        uri: String,
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
    /// CSR subject (RFC 4514 text).
    pub subject: String,
    /// Where the key goes.
    pub location: KeyLocation,
    /// `CKA_LABEL` on a token; the file stem for software keys.
    pub label: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    order: OrderSection,
    keys: Vec<KeyGroup>,
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
    subject: String,
    label: String,
    location: GroupLocation,
}

#[derive(Debug, Clone)]
enum GroupLocation {
    Token(String),
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
    groups: Vec<Group>,
}

/// Expands `{n}` and `{n:0W}` in a label pattern.
fn expand(pattern: &str, n: u32) -> Result<String, String> {
    let Some(start) = pattern.find("{n") else {
        return Ok(pattern.to_string());
    };
    let end = pattern[start..]
        .find('}')
        .map(|e| start + e)
        .ok_or_else(|| format!("label \"{pattern}\": unclosed {{n"))?;
    let spec = &pattern[start + 2..end];
    let number = match spec {
        "" => n.to_string(),
        s if s.starts_with(":0") => {
            let width: usize = s[2..]
                .parse()
                .ok()
                .filter(|w| (1..=9).contains(w))
                .ok_or_else(|| {
                    format!("label \"{pattern}\": write {{n}} or {{n:0W}} with a width W of 1 to 9")
                })?;
            format!("{n:0width$}")
        }
        _ => return Err(format!("label \"{pattern}\": write {{n}} or {{n:03}}")),
    };
    Ok(format!(
        "{}{number}{}",
        &pattern[..start],
        &pattern[end + 1..]
    ))
}

impl Plan {
    /// Reads and checks a plan file. Every problem is reported at once; paths in the plan are
    /// relative to its directory.
    ///
    /// # Errors
    /// [`PipelineError::Plan`].
    pub fn load(path: &Path) -> Result<Plan, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::Plan {
            path: path.to_path_buf(),
            problems: vec![format!("cannot read it: {e}")],
        })?;
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
            (Some(body), None) => {
                let body_path = base.join(body);
                match std::fs::read_to_string(&body_path) {
                    Ok(json) => OrderRequest::from_json(&json).unwrap_or_else(|e| {
                        problems.push(format!("order.body {}: {e}", body_path.display()));
                        OrderRequest::default()
                    }),
                    Err(e) => {
                        problems.push(format!(
                            "order.body {}: cannot read it: {e}",
                            body_path.display()
                        ));
                        OrderRequest::default()
                    }
                }
            }
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
        let mut groups = Vec::new();
        let mut labels = HashSet::new();
        for (i, g) in file.keys.into_iter().enumerate() {
            let at = format!("keys[{i}]");
            let algorithm = match g.algorithm.parse::<KeyAlgorithm>() {
                Ok(a) => Some(a),
                Err(e) => {
                    problems.push(format!("{at}.algorithm: {e}"));
                    None
                }
            };
            if let Err(e) = g.subject.parse::<SubjectDn>() {
                problems.push(format!("{at}.subject: {e}"));
            }
            if g.count == 0 || g.count > MAX_GROUP_JOBS {
                problems.push(format!("{at}.count must be 1 to {MAX_GROUP_JOBS}"));
                continue;
            }
            if g.start.checked_add(g.count).is_none() {
                problems.push(format!("{at}.start + count must stay below {}", u32::MAX));
                continue;
            }
            if g.count > 1 && !g.label.contains("{n") {
                problems.push(format!(
                    "{at}.label \"{}\" needs {{n}} or {{n:03}} for count {}",
                    g.label, g.count
                ));
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
                    Ok(_) => Some(GroupLocation::Token(uri.clone())),
                    Err(e) => {
                        problems.push(format!("{at}.token: {e}"));
                        None
                    }
                },
                (None, Some(dir)) => Some(GroupLocation::Directory(base.join(dir))),
                _ => {
                    problems.push(format!(
                        "{at}: give exactly one of token = \"pkcs11:...\" or directory = \"DIR\""
                    ));
                    None
                }
            };
            // Labels must be unique: check every one (cheap; strings only).
            for n in g.start..g.start + g.count {
                match expand(&g.label, n) {
                    Ok(label) => {
                        if label.is_empty() || label.contains('/') {
                            problems.push(format!(
                                "{at}.label: \"{label}\" must be non-empty and hold no '/'"
                            ));
                            break;
                        }
                        if !labels.insert(label.clone()) {
                            problems
                                .push(format!("{at}.label: \"{label}\" is used twice in the plan"));
                            break;
                        }
                    }
                    Err(e) => {
                        problems.push(format!("{at}.{e}"));
                        break;
                    }
                }
            }
            if let (Some(algorithm), Some(location)) = (algorithm, location) {
                groups.push(Group {
                    count: g.count,
                    start: g.start,
                    algorithm,
                    subject: g.subject,
                    label: g.label,
                    location,
                });
            }
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

    /// The jobs, expanded one at a time.
    pub fn jobs(&self) -> impl Iterator<Item = JobSpec> + Clone + '_ {
        self.groups.iter().flat_map(|g| {
            (g.start..g.start + g.count).map(move |n| {
                let label = expand(&g.label, n).expect("checked at load");
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
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_expand() {
        assert_eq!(expand("cs-{n:03}", 7).unwrap(), "cs-007");
        assert_eq!(expand("k{n}x", 12).unwrap(), "k12x");
        assert_eq!(expand("plain", 1).unwrap(), "plain");
        assert!(expand("cs-{n:x}", 1).is_err());
        assert!(expand("cs-{n", 1).is_err());
        // Found by fuzzing: a huge width panicked inside format!.
        assert!(expand("cs-{n:099993}", 1).is_err());
        assert!(expand("cs-{n:00}", 1).is_err());
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
}
