//! Reading keepalived.conf: one statement per line, `{ }` blocks, comments from `#` or `!`,
//! double-quoted strings, `include` with globs relative to the including file (textual, as
//! keepalived does it), into statements with their blocks.

use std::{
    path::{Path, PathBuf},
    rc::Rc,
};

use crate::{
    diagnostics::{ImportError, Loc, Warnings},
    syntax,
};

/// A word, a brace, or the end of a line.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    /// End of a line: keepalived statements end there.
    Eol,
}

/// A token and its line.
#[derive(Clone, Debug, PartialEq)]
struct Token {
    tok: Tok,
    at: Loc,
}

/// Splits one file into tokens (no include handling).
fn tokenize(text: &str, file: &Rc<Path>) -> Result<Vec<Token>, ImportError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = Loc {
            file: file.clone(),
            line: i + 1,
        };
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    chars.next();
                }
                // A comment runs to the end of the line (keepalived: `!` or `#` at a token start).
                '#' | '!' => break,
                '{' => {
                    chars.next();
                    out.push(Token {
                        tok: Tok::Open,
                        at: at.clone(),
                    });
                }
                '}' => {
                    chars.next();
                    out.push(Token {
                        tok: Tok::Close,
                        at: at.clone(),
                    });
                }
                '"' => {
                    chars.next();
                    let mut word = String::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => {
                                if let Some(n) = chars.next() {
                                    word.push(n);
                                }
                            }
                            c => word.push(c),
                        }
                    }
                    if !closed {
                        return Err(ImportError::at(&at, "unterminated quoted string"));
                    }
                    out.push(Token {
                        tok: Tok::Word(word),
                        at: at.clone(),
                    });
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || c == '{' || c == '}' || c == '"' {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    out.push(Token {
                        tok: Tok::Word(word),
                        at: at.clone(),
                    });
                }
            }
        }
        out.push(Token { tok: Tok::Eol, at });
    }
    Ok(out)
}

/// A statement: its words, and its block if it opens one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stmt {
    pub(crate) at: Loc,
    pub(crate) words: Vec<String>,
    pub(crate) block: Option<Vec<Stmt>>,
}

impl Stmt {
    pub(crate) fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    pub(crate) fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or(&[])
    }
}

/// The statements of a file and of every file it includes.
pub(crate) fn read(path: &Path, warnings: &mut Warnings) -> Result<Vec<Stmt>, ImportError> {
    statements(&read_tokens(path, &[], warnings)?)
}

/// Reads a file and every file it includes, as one token stream (keepalived includes textually).
fn read_tokens(
    path: &Path,
    stack: &[PathBuf],
    warnings: &mut Warnings,
) -> Result<Vec<Token>, ImportError> {
    let text = syntax::read(path)?;
    let mut stack = stack.to_vec();
    stack.push(syntax::canonical(path));
    let file: Rc<Path> = Rc::from(path);
    let tokens = tokenize(&text, &file)?;
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    let mut line_start = true;
    while i < tokens.len() {
        let t = &tokens[i];
        if line_start && t.tok == Tok::Word("include".into()) {
            let at = t.at.clone();
            let mut args = Vec::new();
            i += 1;
            while let Some(Token {
                tok: Tok::Word(w), ..
            }) = tokens.get(i)
            {
                args.push(w.clone());
                i += 1;
            }
            if args.len() != 1 {
                return Err(ImportError::at(
                    &at,
                    "include takes exactly one file or pattern",
                ));
            }
            let base = path.parent().unwrap_or(Path::new("."));
            let files = syntax::expand(&args[0], base);
            if files.is_empty() {
                warnings.add(&at, "include", format!("{:?} matches no file", args[0]));
            }
            for f in files {
                if !f.exists() {
                    warnings.add(&at, "include", format!("{} does not exist", f.display()));
                    continue;
                }
                syntax::check_include(&at, &f, &stack)?;
                out.extend(read_tokens(&f, &stack, warnings)?);
            }
            continue;
        }
        line_start = t.tok == Tok::Eol || t.tok == Tok::Open || t.tok == Tok::Close;
        out.push(t.clone());
        i += 1;
    }
    Ok(out)
}

/// Groups tokens into statements and blocks.
fn statements(tokens: &[Token]) -> Result<Vec<Stmt>, ImportError> {
    let mut pos = 0;
    let list = block(tokens, &mut pos, None)?;
    Ok(list)
}

fn block(
    tokens: &[Token],
    pos: &mut usize,
    opened: Option<&Loc>,
) -> Result<Vec<Stmt>, ImportError> {
    let mut list: Vec<Stmt> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut start: Option<Loc> = None;
    while let Some(t) = tokens.get(*pos) {
        *pos += 1;
        match &t.tok {
            Tok::Word(w) => {
                start.get_or_insert_with(|| t.at.clone());
                words.push(w.clone());
            }
            Tok::Eol => {
                if let Some(at) = start.take() {
                    list.push(Stmt {
                        at,
                        words: std::mem::take(&mut words),
                        block: None,
                    });
                }
            }
            Tok::Open => {
                let inner = block(tokens, pos, Some(&t.at))?;
                match start.take() {
                    Some(at) => list.push(Stmt {
                        at,
                        words: std::mem::take(&mut words),
                        block: Some(inner),
                    }),
                    // `{` alone on the line after its keyword.
                    None => match list.last_mut() {
                        Some(prev) if prev.block.is_none() => prev.block = Some(inner),
                        _ => {
                            return Err(ImportError::at(
                                &t.at,
                                "\"{\" without a keyword before it",
                            ));
                        }
                    },
                }
            }
            Tok::Close => {
                if let Some(at) = start.take() {
                    list.push(Stmt {
                        at,
                        words: std::mem::take(&mut words),
                        block: None,
                    });
                }
                return match opened {
                    Some(_) => Ok(list),
                    None => Err(ImportError::at(&t.at, "unexpected \"}\": no block is open")),
                };
            }
        }
    }
    if let Some(at) = start {
        list.push(Stmt {
            at,
            words,
            block: None,
        });
    }
    match opened {
        Some(at) => Err(ImportError::at(
            at,
            "\"{\" is never closed (missing \"}\" before the end of the file)",
        )),
        None => Ok(list),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<(Tok, usize)> {
        let file: Rc<Path> = Rc::from(Path::new("k.conf"));
        tokenize(text, &file)
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.tok, t.at.line))
            .collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn tokens_carry_lines_and_skip_comments() {
        assert_eq!(
            toks("! comment\nvrrp_instance VI_1 { # trailing\n  script \"/bin/check nginx\"\n}"),
            [
                (Tok::Eol, 1),
                (w("vrrp_instance"), 2),
                (w("VI_1"), 2),
                (Tok::Open, 2),
                (Tok::Eol, 2),
                (w("script"), 3),
                (w("/bin/check nginx"), 3),
                (Tok::Eol, 3),
                (Tok::Close, 4),
                (Tok::Eol, 4),
            ]
        );
    }

    #[test]
    fn braces_split_words_and_quotes_escape() {
        assert_eq!(
            toks("track_script {chk}\nauth_pass \"a\\\"b\""),
            [
                (w("track_script"), 1),
                (Tok::Open, 1),
                (w("chk"), 1),
                (Tok::Close, 1),
                (Tok::Eol, 1),
                (w("auth_pass"), 2),
                (w("a\"b"), 2),
                (Tok::Eol, 2),
            ]
        );
    }

    #[test]
    fn unterminated_quote_is_an_error_with_line() {
        let file: Rc<Path> = Rc::from(Path::new("k.conf"));
        let e = tokenize("a\nscript \"x", &file)
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("k.conf:2: unterminated quoted string"));
    }

    #[test]
    fn statements_nest_and_report_unclosed_blocks() {
        let file: Rc<Path> = Rc::from(Path::new("k.conf"));
        let t = tokenize("a {\n b 1\n c {\n  d\n }\n}\ne\n{\n}\n", &file).unwrap_or_default();
        let s = statements(&t).unwrap_or_default();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].words, ["a"]);
        let inner = s[0].block.clone().unwrap_or_default();
        assert_eq!(inner[0].words, ["b", "1"]);
        assert_eq!(inner[1].block.clone().unwrap_or_default()[0].at.line, 4);
        assert_eq!(s[1].words, ["e"]);
        assert!(
            s[1].block.is_some(),
            "an Allman-style brace attaches to the line before"
        );

        let t = tokenize("x {\n y {\n }\n", &file).unwrap_or_default();
        let e = statements(&t).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("k.conf:1: \"{\" is never closed (missing \"}\" before the end of the file)")
        );
        let t = tokenize("x\n}\n", &file).unwrap_or_default();
        let e = statements(&t).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("k.conf:2: unexpected \"}\": no block is open")
        );
    }
}
