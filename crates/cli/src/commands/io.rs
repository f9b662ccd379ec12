//! The CLI's edge with files and the terminal: `-` for standard input and output, capped reads,
//! outputs that never destroy an input or anything but a regular file, and text from untrusted
//! input made safe to print.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use codesign_kit::keys::files::{
    InputKind, Overwrite, check_target, read_input, read_limited, same_file, write_atomically,
};

use crate::UsageError;

/// Whether a path argument is `-` (standard input or output).
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads the input named by a path argument: `-` is standard input. Reads at most what `kind` may
/// hold.
pub fn read_arg(path: &Path, kind: InputKind) -> Result<Vec<u8>> {
    if is_stdio(path) {
        return Ok(read_limited(
            std::io::stdin().lock(),
            Path::new("standard input"),
            kind,
        )?);
    }
    Ok(read_input(path, kind)?)
}

/// Reads a text input (`-` is standard input), refusing what is not UTF-8.
pub fn read_text_arg(path: &Path, kind: InputKind) -> Result<String> {
    let bytes = read_arg(path, kind)?;
    String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "{}: the {} is not UTF-8 text",
            shown_path(path),
            kind.name()
        )
    })
}

/// Refuses more than one argument reading standard input.
pub fn at_most_one_stdin(args: &[(&str, Option<&Path>)]) -> Result<()> {
    let stdin: Vec<&str> = args
        .iter()
        .filter(|(_, p)| p.is_some_and(is_stdio))
        .map(|(flag, _)| *flag)
        .collect();
    if stdin.len() > 1 {
        return Err(UsageError(format!(
            "{} all read standard input ('-'); at most one may",
            stdin.join(" and ")
        ))
        .into());
    }
    Ok(())
}

/// Where a command writes its result: standard output (`-`) or a file.
#[derive(Debug, Clone)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// A file, written atomically.
    File(PathBuf),
}

impl Output {
    /// The output named by `--out`. `inputs` are the files the command reads: writing over one of
    /// them is refused, even with `--force`.
    pub fn new(flag: &str, path: &Path, inputs: &[&Path]) -> Result<Output> {
        if is_stdio(path) {
            return Ok(Output::Stdout);
        }
        if let Some(input) = inputs.iter().find(|input| same_file(input, path)) {
            return Err(UsageError(format!(
                "{flag} {} is the input {}; refusing to write over it",
                shown_path(path),
                shown_path(input)
            ))
            .into());
        }
        Ok(Output::File(path.to_path_buf()))
    }

    /// Whether the result goes to standard output (then reports go to standard error).
    pub fn is_stdout(&self) -> bool {
        matches!(self, Output::Stdout)
    }

    /// Fails now, before any slow or costly work, when the file could not be written later.
    pub fn check(&self, overwrite: Overwrite) -> Result<()> {
        if let Output::File(path) = self {
            check_target(path, overwrite)?;
        }
        Ok(())
    }

    /// Writes `bytes`: to standard output, or atomically to the file with `mode`.
    pub fn write(&self, bytes: &[u8], mode: u32, overwrite: Overwrite) -> Result<()> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)
                    .and_then(|()| out.flush())
                    .context("cannot write to standard output")
            }
            Output::File(path) => Ok(write_atomically(path, bytes, mode, overwrite)?),
        }
    }

    /// The output for messages.
    pub fn describe(&self) -> String {
        match self {
            Output::Stdout => "standard output".to_string(),
            Output::File(path) => shown_path(path),
        }
    }
}

/// `--force` as an [`Overwrite`].
pub fn overwrite(force: bool) -> Overwrite {
    if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    }
}

/// `text` with control and bidirectional characters written as `\u{..}` escapes (newlines and
/// tabs kept: the CLI's own messages have lines), so input cannot reorder or hide what a terminal
/// shows.
pub fn terminal_safe(text: &str) -> String {
    codesign_kit::keys::text::escape_unsafe(text, true)
}

/// A path for messages, escaped, line breaks too.
pub fn shown_path(path: &Path) -> String {
    codesign_kit::keys::text::shown_path(path)
}

/// Prints a command's `--json` result: one document, pretty-printed, on standard output; every
/// command says its result this way (snake_case names, RFC 3339 times, hex IDs in lower case).
pub fn print_json(doc: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(doc).context("cannot encode the JSON result")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("cannot write the result to standard output")?;
    Ok(())
}

/// Asks a question on the terminal and goes on only when the answer is `expected`. Without a
/// terminal, refuses with a usage error saying `what` needs confirming (or `--yes`).
pub fn confirm_on_terminal(
    what: &str,
    question: &str,
    expected: &str,
    refused: &str,
) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!("{what}; confirm on a terminal, or pass --yes")).into());
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("cannot read the confirmation")?;
    if answer.trim_end_matches(['\r', '\n']) != expected {
        return Err(UsageError(format!("not confirmed; {refused}")).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_characters_are_escaped() {
        assert_eq!(terminal_safe("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            terminal_safe("a\u{0}b\u{202E}c\rd\u{1b}[2J"),
            "a\\u{0000}b\\u{202e}c\\u{000d}d\\u{001b}[2J"
        );
    }

    #[test]
    fn an_output_over_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("k.pem");
        std::fs::write(&input, b"key").unwrap();
        let err = Output::new("--out", &input, &[&input]).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        assert!(Output::new("--out", &dir.path().join("new"), &[&input]).is_ok());
        assert!(
            Output::new("--out", Path::new("-"), &[&input])
                .unwrap()
                .is_stdout()
        );
    }

    #[test]
    fn reading_stops_at_the_cap() {
        let mut source = std::io::repeat(b'x');
        let err =
            read_limited(&mut source, Path::new("standard input"), InputKind::ApiKey).unwrap_err();
        assert!(err.to_string().contains("larger than 4096 bytes"), "{err}");
    }
}
