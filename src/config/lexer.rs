//! nginx-style configuration syntax → a tree of directives, with `include` expanded.
//!
//! Syntax: words separated by white space, `;` ends a simple directive, `{ ... }` a block,
//! `#` starts a comment, "double" or 'single' quotes group a word (backslash escapes the next
//! character). Every directive remembers the file and line it came from for error messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a directive was written.
#[derive(Clone, Debug)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A configuration error, printed as `FILE:LINE: message`.
#[derive(Debug, Clone)]
pub struct ConfError {
    pub pos: Option<Pos>,
    pub msg: String,
}

impl std::fmt::Display for ConfError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{}: {}", p, self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for ConfError {}

pub(super) fn err<T>(pos: &Pos, msg: impl Into<String>) -> Result<T, ConfError> {
    Err(ConfError { pos: Some(pos.clone()), msg: msg.into() })
}

#[derive(Debug, Clone)]
pub(super) struct Directive {
    pub(super) name: String,
    pub(super) args: Vec<String>,
    pub(super) pos: Pos,
    pub(super) block: Option<Vec<Directive>>,
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

struct Lexer<'a> {
    src: &'a [u8],
    i: usize,
    line: usize,
    file: Arc<str>,
}

impl Lexer<'_> {
    fn pos(&self) -> Pos {
        Pos { file: self.file.clone(), line: self.line }
    }

    /// Next token and the line it started on; `None` at end of input.
    fn next(&mut self) -> Result<Option<(Tok, Pos)>, ConfError> {
        loop {
            let Some(&c) = self.src.get(self.i) else { return Ok(None) };
            match c {
                b'\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'#' => {
                    while self.i < self.src.len() && self.src[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
        let pos = self.pos();
        let c = self.src[self.i];
        let tok = match c {
            b';' => {
                self.i += 1;
                Tok::Semi
            }
            b'{' => {
                self.i += 1;
                Tok::Open
            }
            b'}' => {
                self.i += 1;
                Tok::Close
            }
            b'"' | b'\'' => {
                self.i += 1;
                let mut w = Vec::new();
                loop {
                    let Some(&d) = self.src.get(self.i) else {
                        return err(&pos, "unterminated quoted string");
                    };
                    self.i += 1;
                    match d {
                        _ if d == c => break,
                        b'\\' if self.i < self.src.len() => {
                            let e = self.src[self.i];
                            self.i += 1;
                            match e {
                                b'n' => w.push(b'\n'),
                                b't' => w.push(b'\t'),
                                b'r' => w.push(b'\r'),
                                _ => w.push(e),
                            }
                        }
                        b'\n' => {
                            self.line += 1;
                            w.push(d);
                        }
                        _ => w.push(d),
                    }
                }
                Tok::Word(utf8(w, &pos)?)
            }
            _ => {
                let start = self.i;
                while let Some(&d) = self.src.get(self.i) {
                    if matches!(d, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b'}' | b'"' | b'\'') {
                        break;
                    }
                    if d == b'\\' && self.i + 1 < self.src.len() {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                Tok::Word(utf8(self.src[start..self.i].to_vec(), &pos)?)
            }
        };
        Ok(Some((tok, pos)))
    }
}

fn utf8(w: Vec<u8>, pos: &Pos) -> Result<String, ConfError> {
    String::from_utf8(w).or_else(|_| err(pos, "invalid UTF-8 in configuration"))
}

/// A configuration file as it was read (for `pounce -T`).
pub type Source = (PathBuf, Vec<u8>);

/// How files are read: where relative `include` paths start, and whether to keep the text
/// of every file read.
struct Reader<'s> {
    /// The directory of the main configuration file: relative `include` paths are resolved
    /// against it, at any depth, as nginx resolves them against its conf prefix.
    conf_dir: PathBuf,
    sources: Option<&'s mut Vec<Source>>,
}

/// The directory of the main configuration file, made absolute.
fn conf_dir(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().map(|cwd| cwd.join(dir)).unwrap_or_else(|_| dir.to_path_buf())
    }
}

/// Reads and parses `path`, with its includes; `sources` receives the text of every file read.
pub(super) fn parse_file(path: &Path, sources: Option<&mut Vec<Source>>) -> Result<Vec<Directive>, ConfError> {
    let mut r = Reader { conf_dir: conf_dir(path), sources };
    r.parse_file_at(path, None, 0)
}

/// Parses configuration text that was read from `path` (named in error messages).
pub(super) fn parse_text(text: &[u8], path: &Path) -> Result<Vec<Directive>, ConfError> {
    let mut r = Reader { conf_dir: conf_dir(path), sources: None };
    r.parse_text_at(text, path, 0)
}

impl Reader<'_> {
    fn parse_file_at(&mut self, path: &Path, from: Option<&Pos>, depth: usize) -> Result<Vec<Directive>, ConfError> {
        let text = std::fs::read(path).map_err(|e| ConfError { pos: from.cloned(), msg: format!("cannot open \"{}\": {}", path.display(), e) })?;
        self.parse_text_at(&text, path, depth)
    }

    fn parse_text_at(&mut self, text: &[u8], path: &Path, depth: usize) -> Result<Vec<Directive>, ConfError> {
        // In reading order: a file before the files it includes.
        if let Some(s) = self.sources.as_deref_mut() {
            s.push((path.to_path_buf(), text.to_vec()));
        }
        let mut lx = Lexer { src: text, i: 0, line: 1, file: Arc::from(path.display().to_string()) };
        self.parse_block(&mut lx, false, depth)
    }
}

impl Reader<'_> {
    /// Parses directives up to a closing `}` (when `nested`) or the end of the input.
    fn parse_block(&mut self, lx: &mut Lexer, nested: bool, depth: usize) -> Result<Vec<Directive>, ConfError> {
        let mut out = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut start: Option<Pos> = None;
        loop {
            let Some((tok, pos)) = lx.next()? else {
                if !words.is_empty() {
                    return err(&lx.pos(), "unexpected end of file, expecting \";\" or \"}\"");
                }
                if nested {
                    return err(&lx.pos(), "unexpected end of file, expecting \"}\"");
                }
                return Ok(out);
            };
            match tok {
                Tok::Word(w) => {
                    if start.is_none() {
                        start = Some(pos);
                    }
                    words.push(w);
                }
                Tok::Semi => {
                    let Some(p) = start.take() else { return err(&pos, "unexpected \";\"") };
                    let name = words.remove(0);
                    let args = std::mem::take(&mut words);
                    if name == "include" {
                        if args.len() != 1 {
                            return err(&p, "invalid number of arguments in \"include\" directive");
                        }
                        if depth > 16 {
                            return err(&p, "include nesting too deep");
                        }
                        for file in expand_glob(&resolve(&self.conf_dir, &args[0]), &p)? {
                            out.extend(self.parse_file_at(&file, Some(&p), depth + 1)?);
                        }
                    } else {
                        out.push(Directive { name, args, pos: p, block: None });
                    }
                }
                Tok::Open => {
                    let Some(p) = start.take() else { return err(&pos, "unexpected \"{\"") };
                    let name = words.remove(0);
                    let args = std::mem::take(&mut words);
                    let block = self.parse_block(lx, true, depth)?;
                    out.push(Directive { name, args, pos: p, block: Some(block) });
                }
                Tok::Close => {
                    if !words.is_empty() {
                        return err(&pos, "unexpected \"}\", expecting \";\"");
                    }
                    if !nested {
                        return err(&pos, "unexpected \"}\"");
                    }
                    return Ok(out);
                }
            }
        }
    }
}

/// A path from the configuration: absolute as written, otherwise relative to the prefix.
pub(super) fn resolve(prefix: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        prefix.join(path)
    }
}

/// `*` and `?` wildcards in the last path component, sorted as nginx does. A pattern
/// without wildcards must name an existing file; one with wildcards may match nothing.
fn expand_glob(pattern: &Path, pos: &Pos) -> Result<Vec<PathBuf>, ConfError> {
    let name = pattern.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?']) {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir).map_err(|e| ConfError { pos: Some(pos.clone()), msg: format!("cannot read \"{}\": {}", dir.display(), e) })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|f| !f.starts_with('.') && wildcard(name.as_bytes(), f.as_bytes())))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

fn wildcard(pat: &[u8], s: &[u8]) -> bool {
    match pat.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| wildcard(&pat[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && wildcard(&pat[1..], &s[1..]),
        Some(c) => s.first() == Some(c) && wildcard(&pat[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Vec<Directive>, ConfError> {
        let mut lx = Lexer { src: s.as_bytes(), i: 0, line: 1, file: Arc::from("t.conf") };
        Reader { conf_dir: PathBuf::from("."), sources: None }.parse_block(&mut lx, false, 0)
    }

    #[test]
    fn tree_and_lines() {
        let d = parse_str("a 1;\n# c\nb \"x y\" 'z;' {\n  c;\n}\n").expect("parses");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].args, vec!["x y", "z;"]);
        assert_eq!(d[1].pos.line, 3);
        assert_eq!(d[1].block.as_ref().map(|b| b[0].pos.line), Some(4));
    }

    #[test]
    fn errors_have_lines() {
        assert_eq!(parse_str("a;\nb {\n").unwrap_err().to_string(), "t.conf:3: unexpected end of file, expecting \"}\"");
        assert_eq!(parse_str("a;\n}\n").unwrap_err().to_string(), "t.conf:2: unexpected \"}\"");
        assert_eq!(parse_str("a\n").unwrap_err().to_string(), "t.conf:2: unexpected end of file, expecting \";\" or \"}\"");
        assert!(parse_str("a \"b;\n").is_err());
    }

    #[test]
    fn globbing() {
        assert!(wildcard(b"*.conf", b"a.conf"));
        assert!(!wildcard(b"*.conf", b"a.con"));
        assert!(wildcard(b"a?c", b"abc"));
    }
}
