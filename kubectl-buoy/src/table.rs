//! Tables as kubectl prints them: a header row in capitals, then one row per line, columns
//! aligned by Go's tabwriter settings that kubectl's printers use (cells at least 6 wide, 3
//! spaces between columns, the last column unpadded).

use std::io::Write;

use tabwriter::TabWriter;

/// Renders `header` and `rows` (each as long as `header`); a tab or newline inside a cell is
/// written as a space, so that one cell stays one cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |c: &str| c.replace(['\t', '\n', '\r'], " ");
    let mut text = header.join("\t");
    text.push('\n');
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| clean(c)).collect();
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    let mut tw = TabWriter::new(Vec::new()).minwidth(6).padding(3);
    // Writing to memory cannot fail; the text is the input if it somehow did.
    if tw.write_all(text.as_bytes()).is_err() {
        return text;
    }
    match tw.into_inner() {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn columns_align_as_kubectls_do() {
        let table = render(
            &["NAME", "STATE", "MESSAGE"],
            &[
                vec!["web".into(), "Master".into(), "higher priority".into()],
                vec!["gateway-ab".into(), "Backup".into(), "a\tb\nc".into()],
            ],
        );
        assert_eq!(
            table,
            "NAME         STATE    MESSAGE\n\
             web          Master   higher priority\n\
             gateway-ab   Backup   a b c\n"
        );
    }
}
