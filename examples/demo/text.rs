//! Small text helpers for aligned, readable terminal output.

use std::time::Duration;

/// Ids listed on one line before "+N".
const IDS_PER_LINE: usize = 4;

/// "#3 #4 #5" or "1 2", shortened with "+N" past `IDS_PER_LINE`.
pub fn list<T: std::fmt::Display>(items: &[T], prefix: &str) -> String {
    let mut parts: Vec<String> = items
        .iter()
        .take(IDS_PER_LINE)
        .map(|i| format!("{prefix}{i}"))
        .collect();
    if items.len() > IDS_PER_LINE {
        parts.push(format!("+{}", items.len() - IDS_PER_LINE));
    }
    parts.join(" ")
}

/// Cuts `text` to `width` characters, marking the cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// Splits `text` into lines of at most `width` characters at spaces.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// "1 call error", "3 call errors".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "3 ms", "812 ms", "1.004 s", "0.2 ms".
pub fn delay(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

/// "300 ms" for settings.
pub fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// "2 s", "1.5 s" for settings.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s} s")
    }
}
