//! Reading nginx.conf: directives ending in `;`, `{ }` blocks, `#` comments, single and double
//! quotes with backslash escapes, `include` relative to the main file's directory with globs;
//! into directives with their blocks, includes spliced in.

use std::{
    iter::Peekable,
    path::{Path, PathBuf},
    rc::Rc,
    str::Chars,
};

use crate::{
    diagnostics::{ImportError, Loc, Warnings},
    syntax,
};

/// A word, `;` or a brace.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

/// A token and the line it starts on.
#[derive(Clone, Debug, PartialEq)]
struct Token {
    tok: Tok,
    at: Loc,
}

/// Splits one file into tokens.
fn tokenize(text: &str, file: &Rc<Path>) -> Result<Vec<Token>, ImportError> {
    let mut lexer = Lexer {
        chars: text.chars().peekable(),
        line: 1,
        file,
    };
    let mut out = Vec::new();
    while let Some(&c) = lexer.chars.peek() {
        match c {
            '\n' => {
                lexer.line += 1;
                lexer.chars.next();
            }
            c if c.is_whitespace() => {
                lexer.chars.next();
            }
            '#' => lexer.comment(),
            ';' | '{' | '}' => {
                lexer.chars.next();
                let tok = match c {
                    ';' => Tok::Semi,
                    '{' => Tok::Open,
                    _ => Tok::Close,
                };
                out.push(Token {
                    tok,
                    at: lexer.at(lexer.line),
                });
            }
            '"' | '\'' => out.push(lexer.quoted(c)?),
            _ => out.push(lexer.word()),
        }
    }
    Ok(out)
}

/// The text being split, and the line it has reached.
struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    line: usize,
    file: &'a Rc<Path>,
}

impl Lexer<'_> {
    fn at(&self, line: usize) -> Loc {
        Loc {
            file: self.file.clone(),
            line,
        }
    }

    /// Skips a comment, up to the end of its line.
    fn comment(&mut self) {
        while let Some(&c) = self.chars.peek() {
            if c == '\n' {
                break;
            }
            self.chars.next();
        }
    }

    /// A string in `quote`s, which may span lines.
    fn quoted(&mut self, quote: char) -> Result<Token, ImportError> {
        let start = self.line;
        self.chars.next();
        let mut word = String::new();
        let mut closed = false;
        while let Some(ch) = self.chars.next() {
            match ch {
                q if q == quote => {
                    closed = true;
                    break;
                }
                '\\' => match self.chars.next() {
                    Some('t') => word.push('\t'),
                    Some('r') => word.push('\r'),
                    Some('n') => word.push('\n'),
                    Some(q @ ('"' | '\'' | '\\')) => word.push(q),
                    Some(other) => {
                        word.push('\\');
                        word.push(other);
                        if other == '\n' {
                            self.line += 1;
                        }
                    }
                    None => {}
                },
                '\n' => {
                    self.line += 1;
                    word.push('\n');
                }
                ch => word.push(ch),
            }
        }
        if !closed {
            return Err(ImportError::at(
                &self.at(start),
                "unterminated quoted string",
            ));
        }
        Ok(Token {
            tok: Tok::Word(word),
            at: self.at(start),
        })
    }

    /// An unquoted word, up to whitespace, `;` or a brace.
    fn word(&mut self) -> Token {
        let mut word = String::new();
        while let Some(&ch) = self.chars.peek() {
            if ch.is_whitespace() || ch == ';' || ch == '{' || ch == '}' {
                break;
            }
            self.chars.next();
            match ch {
                // An escaped character never ends the word; the backslash stays, as in
                // nginx's unquoted words (regexes such as `\.php$`).
                '\\' => {
                    word.push('\\');
                    if let Some(n) = self.chars.next() {
                        word.push(n);
                    }
                }
                // `${name}` is a variable, not a block.
                '$' if self.chars.peek() == Some(&'{') => {
                    word.push('$');
                    for n in self.chars.by_ref() {
                        word.push(n);
                        if n == '}' {
                            break;
                        }
                    }
                }
                ch => word.push(ch),
            }
        }
        Token {
            tok: Tok::Word(word),
            at: self.at(self.line),
        }
    }
}

/// A directive, its arguments and its block.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Directive {
    pub(crate) at: Loc,
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    pub(crate) block: Option<Vec<Directive>>,
}

/// Directives that take a block; any other name followed by `{` is an error, as in nginx.
const BLOCKS: &[&str] = &[
    "events",
    "http",
    "stream",
    "mail",
    "server",
    "location",
    "upstream",
    "if",
    "map",
    "geo",
    "types",
    "limit_except",
    "split_clients",
    "match",
];

/// Groups tokens into directives and blocks.
fn parse(tokens: &[Token]) -> Result<Vec<Directive>, ImportError> {
    let mut pos = 0;
    block(tokens, &mut pos, None)
}

fn block(
    tokens: &[Token],
    pos: &mut usize,
    opened: Option<&Loc>,
) -> Result<Vec<Directive>, ImportError> {
    let mut list = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut start: Option<Loc> = None;
    while let Some(t) = tokens.get(*pos) {
        *pos += 1;
        match &t.tok {
            Tok::Word(w) => {
                start.get_or_insert_with(|| t.at.clone());
                words.push(w.clone());
            }
            Tok::Semi => {
                let Some(at) = start.take() else {
                    return Err(ImportError::at(&t.at, "unexpected \";\""));
                };
                let mut w = std::mem::take(&mut words).into_iter();
                list.push(Directive {
                    at,
                    name: w.next().unwrap_or_default(),
                    args: w.collect(),
                    block: None,
                });
            }
            Tok::Open => {
                let Some(at) = start.take() else {
                    return Err(ImportError::at(&t.at, "unexpected \"{\""));
                };
                let mut w = std::mem::take(&mut words).into_iter();
                let name = w.next().unwrap_or_default();
                if !BLOCKS.contains(&name.as_str()) {
                    let message = if t.at.line > at.line {
                        format!(
                            "\"{name}\" cannot open a block: is a \";\" missing at the end of line {}?",
                            at.line
                        )
                    } else {
                        format!("unknown block directive \"{name}\"")
                    };
                    return Err(ImportError::at(&at, message));
                }
                let inner = block(tokens, pos, Some(&t.at))?;
                list.push(Directive {
                    at,
                    name,
                    args: w.collect(),
                    block: Some(inner),
                });
            }
            Tok::Close => {
                if let Some(at) = start.take() {
                    return Err(ImportError::at(
                        &at,
                        format!(
                            "directive \"{}\" is not terminated by \";\"",
                            words.first().map_or("", String::as_str)
                        ),
                    ));
                }
                return match opened {
                    Some(_) => Ok(list),
                    None => Err(ImportError::at(&t.at, "unexpected \"}\": no block is open")),
                };
            }
        }
    }
    if let Some(at) = start {
        return Err(ImportError::at(
            &at,
            format!(
                "directive \"{}\" is not terminated by \";\" before the end of the file",
                words.first().map_or("", String::as_str)
            ),
        ));
    }
    match opened {
        Some(at) => Err(ImportError::at(
            at,
            "\"{\" is never closed (missing \"}\" before the end of the file)",
        )),
        None => Ok(list),
    }
}

/// The directives of a main nginx.conf, with the files its `include`s name spliced in.
pub(crate) fn read(path: &Path, warnings: &mut Warnings) -> Result<Vec<Directive>, ImportError> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    read_file(path, &base, &[], warnings)
}

/// Reads a file and splices the files its `include`s name (relative to `base`, the main file's
/// directory, as nginx resolves them against its configuration prefix).
fn read_file(
    path: &Path,
    base: &Path,
    stack: &[PathBuf],
    warnings: &mut Warnings,
) -> Result<Vec<Directive>, ImportError> {
    let text = syntax::read(path)?;
    let file: Rc<Path> = Rc::from(path);
    let list = parse(&tokenize(&text, &file)?)?;
    let mut stack = stack.to_vec();
    stack.push(syntax::canonical(path));
    splice(list, base, &stack, warnings)
}

/// Replaces the `include`s of `list` (and of its blocks) by the directives of their files.
fn splice(
    list: Vec<Directive>,
    base: &Path,
    stack: &[PathBuf],
    warnings: &mut Warnings,
) -> Result<Vec<Directive>, ImportError> {
    let mut out = Vec::new();
    for mut d in list {
        if d.name == "include" && d.block.is_none() {
            let [pattern] = d.args.as_slice() else {
                return Err(ImportError::at(&d.at, "include takes one file or pattern"));
            };
            for f in syntax::expand(pattern, base) {
                if !f.is_file() {
                    let why = if pattern.ends_with("mime.types") {
                        format!(
                            "{} cannot be read; MIME types matter only to serve files, which a proxy does not",
                            f.display()
                        )
                    } else {
                        format!(
                            "{} cannot be read, so its directives are not translated",
                            f.display()
                        )
                    };
                    warnings.add(&d.at, "include", why);
                    continue;
                }
                syntax::check_include(&d.at, &f, stack)?;
                out.extend(read_file(&f, base, stack, warnings)?);
            }
            continue;
        }
        if let Some(inner) = d.block.take() {
            d.block = Some(splice(inner, base, stack, warnings)?);
        }
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Rc<Path> {
        Rc::from(Path::new("n.conf"))
    }

    fn toks(text: &str) -> Vec<(Tok, usize)> {
        tokenize(text, &file())
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.tok, t.at.line))
            .collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn tokens_quotes_escapes_comments_lines() {
        assert_eq!(
            toks(
                "# c\nlog_format x '$a \"b\"' \"c\\\"d\";\nset $v ${x}y;{}\nlocation ~ \\.php$ {}"
            ),
            [
                (w("log_format"), 2),
                (w("x"), 2),
                (w("$a \"b\""), 2),
                (w("c\"d"), 2),
                (Tok::Semi, 2),
                (w("set"), 3),
                (w("$v"), 3),
                (w("${x}y"), 3),
                (Tok::Semi, 3),
                (Tok::Open, 3),
                (Tok::Close, 3),
                (w("location"), 4),
                (w("~"), 4),
                (w("\\.php$"), 4),
                (Tok::Open, 4),
                (Tok::Close, 4),
            ]
        );
        let e = tokenize("a;\nb \"x;\n", &file())
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("n.conf:2: unterminated quoted string"));
    }

    #[test]
    fn multi_line_quotes_keep_counting_lines() {
        assert_eq!(toks("a 'x\ny';\nb;")[3], (w("b"), 3));
    }

    fn err(text: &str) -> String {
        tokenize(text, &file())
            .and_then(|t| parse(&t))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn structure_errors_name_the_line() {
        assert_eq!(
            err("http {\n server {\n listen 80;\n }\n"),
            "n.conf:1: \"{\" is never closed (missing \"}\" before the end of the file)"
        );
        assert_eq!(
            err("server {\n listen 80\n}\n"),
            "n.conf:2: directive \"listen\" is not terminated by \";\""
        );
        assert_eq!(
            err("server {\n listen 80\n location / {\n }\n}"),
            "n.conf:2: \"listen\" cannot open a block: is a \";\" missing at the end of line 2?"
        );
        assert_eq!(err("htp {\n}"), "n.conf:1: unknown block directive \"htp\"");
        assert_eq!(err("a;\n}"), "n.conf:2: unexpected \"}\": no block is open");
        assert_eq!(err("a;\n;"), "n.conf:2: unexpected \";\"");
        assert_eq!(
            err("worker_processes 1"),
            "n.conf:1: directive \"worker_processes\" is not terminated by \";\" before the end of the file"
        );
    }

    #[test]
    fn parses_nested_blocks() {
        let t = tokenize(
            "http { upstream u { server a:1; } server { listen 80; } }",
            &file(),
        )
        .unwrap_or_default();
        let d = parse(&t).unwrap_or_default();
        assert_eq!(d[0].name, "http");
        let inner = d[0].block.clone().unwrap_or_default();
        assert_eq!(inner[0].args, ["u"]);
        assert_eq!(inner[1].name, "server");
    }
}
