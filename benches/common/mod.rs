//! What the `short_vs_long` and `heartbeat_scale` benches share: telling a
//! real run from `cargo test --benches`, the Markdown table both print, where
//! their summaries go, and how they give up on a fault.

#[allow(dead_code)] // each bench uses a part of it
pub mod child;

use std::fmt::{Display, Write as _};
use std::path::PathBuf;

/// True under `cargo bench`, false under `cargo test --benches` (cargo passes
/// `--bench` only to the former; criterion reads the same flags). A test run
/// checks that the bench works on a small scale, in seconds.
pub fn full_run() -> bool {
    let mut bench = false;
    let mut test = false;
    for arg in std::env::args() {
        bench |= arg == "--bench";
        test |= arg == "--test";
    }
    bench && !test
}

/// Reports a fault and ends the process with a failure status: a bench that
/// lost a request or a connection has nothing meaningful left to measure, and
/// going on would only print misleading numbers.
pub fn fail(context: &str, error: impl Display) -> ! {
    eprintln!("error: {context}: {error}");
    std::process::exit(1)
}

/// Where `cargo` puts its output: `CARGO_TARGET_DIR` if set, else the
/// package's own `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

/// Writes `text` to `target/<bench>-summary.md` and says where.
pub fn write_summary(bench: &str, text: &str) {
    let path = target_dir().join(format!("{bench}-summary.md"));
    let written = std::fs::create_dir_all(target_dir()).and_then(|()| std::fs::write(&path, text));
    match written {
        Ok(()) => println!("summary written to {}", path.display()),
        Err(e) => fail(&format!("writing {}", path.display()), e),
    }
}

/// A Markdown table, built row by row; printed to the terminal and written to
/// the summary as the same text.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends one row; cells beyond the header are kept, missing ones left empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as Markdown, columns padded so it also reads well as plain text.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .chain([&self.header])
                    .map(|r| cell(r, i).chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(3)
            })
            .collect();
        let line = |row: &[String]| {
            let mut out = String::from("|");
            for (i, width) in widths.iter().enumerate() {
                let _ = write!(out, " {:<width$} |", cell(row, i));
            }
            out.push('\n');
            out
        };
        let mut out = line(&self.header);
        out.push('|');
        for width in &widths {
            let _ = write!(out, "{}|", "-".repeat(width + 2));
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}
