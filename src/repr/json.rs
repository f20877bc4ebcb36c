//! JSON text: checking and canonicalizing input, and navigating values for
//! `->`, `->>`, `#>` and `#>>`.
//!
//! Input is checked as Postgres's JSON lexer checks it (`json` keeps the text
//! as written; `jsonb` is rewritten in Postgres's canonical form: keys sorted
//! by length then bytes, the last of duplicate keys kept, `", "` and `": "`
//! between items, numbers as `numeric` writes them). The parser keeps an
//! explicit stack, so nesting depth costs heap, not the worker's stack.
//!
//! Navigation finds values as slices of the text they came in. For `jsonb`
//! that text is the canonical output, so a slice of it is the canonical output
//! of the sub-value; for `json` Postgres also returns the sub-value's text as
//! written. Numbers and strings are never re-encoded.

use super::numeric::Numeric;
use super::write_json_string;

/// One parsed value; `span` is where its text lies in the input.
#[derive(Debug)]
pub struct Node {
    pub kind: Kind,
    pub span: (usize, usize),
}

#[derive(Debug)]
pub enum Kind {
    Null,
    Bool(bool),
    Number,
    /// The decoded string.
    String(String),
    /// Element node indexes.
    Array(Vec<usize>),
    /// Keys (decoded) and value node indexes, in input order.
    Object(Vec<(String, usize)>),
}

/// A parsed document: nodes in an arena, `root` the whole value.
#[derive(Debug)]
pub struct Doc {
    pub nodes: Vec<Node>,
    pub root: usize,
    /// Whether a string held `\u0000`, which `jsonb` (text) cannot hold.
    pub has_nul_escape: bool,
}

enum Frame {
    Array {
        start: usize,
        items: Vec<usize>,
    },
    Object {
        start: usize,
        items: Vec<(String, usize)>,
        key: String,
    },
}

struct Lexer<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    nul_escape: bool,
}

impl Lexer<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn token_error(&self) -> String {
        let rest = self.text.get(self.i..).unwrap_or("");
        if rest.is_empty() {
            return "The input string ended unexpectedly.".into();
        }
        let end = rest
            .char_indices()
            .find(|(i, c)| *i > 0 && !c.is_alphanumeric())
            .map_or(rest.len(), |(i, _)| i);
        format!("Token \"{}\" is invalid.", &rest[..end])
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.ws();
        if self.b.get(self.i) == Some(&byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.token_error())
        }
    }

    /// A string starting at the opening quote, decoded.
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        let mut high: Option<u32> = None;
        loop {
            let start = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            if self.i > start {
                if high.is_some() {
                    return Err("Unicode low surrogate must follow a high surrogate.".into());
                }
                out.push_str(&self.text[start..self.i]);
            }
            match self.b.get(self.i) {
                None => return Err("The input string ended unexpectedly.".into()),
                Some(b'"') => {
                    if high.is_some() {
                        return Err("Unicode low surrogate must follow a high surrogate.".into());
                    }
                    self.i += 1;
                    return Ok(out);
                }
                Some(&c) if c < 0x20 => {
                    return Err(format!("Character with value 0x{c:02x} must be escaped."))
                }
                _ => {}
            }
            // A backslash.
            let esc = *self
                .b
                .get(self.i + 1)
                .ok_or("The input string ended unexpectedly.")?;
            self.i += 2;
            if esc != b'u' && high.is_some() {
                return Err("Unicode low surrogate must follow a high surrogate.".into());
            }
            match esc {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let hex = self
                        .b
                        .get(self.i..self.i + 4)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                    let Some(hex) = hex else {
                        return Err("\"\\u\" must be followed by four hexadecimal digits.".into());
                    };
                    let code = hex
                        .iter()
                        .fold(0u32, |v, h| v * 16 + (*h as char).to_digit(16).unwrap_or(0));
                    self.i += 4;
                    match (code, high) {
                        (0xD800..=0xDBFF, None) => high = Some(code),
                        (0xD800..=0xDBFF, Some(_)) => {
                            return Err(
                                "Unicode high surrogate must not follow a high surrogate.".into()
                            )
                        }
                        (0xDC00..=0xDFFF, Some(h)) => {
                            high = None;
                            let c = 0x10000 + ((h - 0xD800) << 10) + (code - 0xDC00);
                            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                        }
                        (0xDC00..=0xDFFF, None) => {
                            return Err("Unicode low surrogate must follow a high surrogate.".into())
                        }
                        (_, Some(_)) => {
                            return Err("Unicode low surrogate must follow a high surrogate.".into())
                        }
                        (c, None) => {
                            if c == 0 {
                                self.nul_escape = true;
                            }
                            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                        }
                    }
                }
                _ => {
                    let c = self.text[self.i - 1..].chars().next().unwrap_or('?');
                    return Err(format!("Escape sequence \"\\{c}\" is invalid."));
                }
            }
        }
    }

    /// A number as JSON writes them (`-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`).
    fn number(&mut self) -> Result<(), String> {
        let start = self.i;
        let digits = |l: &mut Self| {
            let s = l.i;
            while l.b.get(l.i).is_some_and(u8::is_ascii_digit) {
                l.i += 1;
            }
            l.i > s
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let ok = match self.b.get(self.i) {
            Some(b'0') => {
                self.i += 1;
                true
            }
            Some(b'1'..=b'9') => digits(self),
            _ => false,
        };
        let mut ok = ok;
        if ok && self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            ok = digits(self);
        }
        if ok && matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            ok = digits(self);
        }
        // Trailing letters or digits make the whole token invalid.
        if !ok
            || self
                .b
                .get(self.i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c >= 0x80)
        {
            self.i = start;
            return Err(self.token_error());
        }
        Ok(())
    }

    fn word(&mut self, w: &str) -> bool {
        let end = self.i + w.len();
        if self.b.get(self.i..end) == Some(w.as_bytes())
            && !self
                .b
                .get(end)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c >= 0x80)
        {
            self.i = end;
            true
        } else {
            false
        }
    }
}

/// Parses JSON text as Postgres's `json_in` accepts it (the message is the
/// detail Postgres gives).
pub fn parse(text: &str) -> Result<Doc, String> {
    let mut l = Lexer {
        text,
        b: text.as_bytes(),
        i: 0,
        nul_escape: false,
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let root = 'value: loop {
        // Parse one value start.
        l.ws();
        let start = l.i;
        let kind = match l.b.get(l.i) {
            Some(b'[') => {
                l.i += 1;
                l.ws();
                if l.b.get(l.i) == Some(&b']') {
                    l.i += 1;
                    Kind::Array(Vec::new())
                } else {
                    stack.push(Frame::Array {
                        start,
                        items: Vec::new(),
                    });
                    continue 'value;
                }
            }
            Some(b'{') => {
                l.i += 1;
                l.ws();
                match l.b.get(l.i) {
                    Some(b'}') => {
                        l.i += 1;
                        Kind::Object(Vec::new())
                    }
                    Some(b'"') => {
                        let key = l.string()?;
                        l.expect(b':')?;
                        stack.push(Frame::Object {
                            start,
                            items: Vec::new(),
                            key,
                        });
                        continue 'value;
                    }
                    _ => return Err(l.token_error()),
                }
            }
            Some(b'"') => Kind::String(l.string()?),
            Some(b'-' | b'0'..=b'9') => {
                l.number()?;
                Kind::Number
            }
            _ if l.word("true") => Kind::Bool(true),
            _ if l.word("false") => Kind::Bool(false),
            _ if l.word("null") => Kind::Null,
            _ => return Err(l.token_error()),
        };
        nodes.push(Node {
            kind,
            span: (start, l.i),
        });
        let mut done = nodes.len() - 1;
        // Hand the finished value to its container, closing containers as they end.
        loop {
            let Some(frame) = stack.last_mut() else {
                break 'value done;
            };
            match frame {
                Frame::Array { items, .. } => items.push(done),
                Frame::Object { items, key, .. } => items.push((std::mem::take(key), done)),
            }
            l.ws();
            match (l.b.get(l.i), &mut *frame) {
                (Some(b','), Frame::Array { .. }) => {
                    l.i += 1;
                    continue 'value;
                }
                (Some(b','), Frame::Object { key, .. }) => {
                    l.i += 1;
                    l.ws();
                    if l.b.get(l.i) != Some(&b'"') {
                        return Err(l.token_error());
                    }
                    *key = l.string()?;
                    l.expect(b':')?;
                    continue 'value;
                }
                (Some(b']'), Frame::Array { .. }) | (Some(b'}'), Frame::Object { .. }) => {
                    l.i += 1;
                    let (start, kind) = match stack.pop() {
                        Some(Frame::Array { start, items }) => (start, Kind::Array(items)),
                        Some(Frame::Object { start, items, .. }) => (start, Kind::Object(items)),
                        None => return Err(l.token_error()),
                    };
                    nodes.push(Node {
                        kind,
                        span: (start, l.i),
                    });
                    done = nodes.len() - 1;
                }
                _ => return Err(l.token_error()),
            }
        }
    };
    l.ws();
    if l.i != l.b.len() {
        return Err(l.token_error());
    }
    Ok(Doc {
        nodes,
        root,
        has_nul_escape: l.nul_escape,
    })
}

/// Checks `json` input.
pub fn validate(text: &str) -> Result<(), String> {
    parse(text).map(|_| ())
}

/// `jsonb` input: the canonical text Postgres stores and writes back.
pub fn to_jsonb(text: &str) -> Result<String, String> {
    let doc = parse(text)?;
    if doc.has_nul_escape {
        return Err(
            "unsupported Unicode escape sequence: \\u0000 cannot be converted to text".into(),
        );
    }
    enum Task<'d> {
        Node(usize),
        Text(&'static str),
        Key(&'d str),
    }
    let mut out = String::with_capacity(text.len());
    let mut tasks = vec![Task::Node(doc.root)];
    while let Some(task) = tasks.pop() {
        let i = match task {
            Task::Text(t) => {
                out.push_str(t);
                continue;
            }
            Task::Key(k) => {
                write_json_string(k, &mut out);
                out.push_str(": ");
                continue;
            }
            Task::Node(i) => i,
        };
        let node = &doc.nodes[i];
        match &node.kind {
            Kind::Null => out.push_str("null"),
            Kind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Kind::Number => {
                let token = &text[node.span.0..node.span.1];
                let n = Numeric::parse(token).map_err(|e| e.to_string())?;
                out.push_str(&n.to_string());
            }
            Kind::String(s) => write_json_string(s, &mut out),
            Kind::Array(items) => {
                out.push('[');
                tasks.push(Task::Text("]"));
                for (j, item) in items.iter().enumerate().rev() {
                    tasks.push(Task::Node(*item));
                    if j > 0 {
                        tasks.push(Task::Text(", "));
                    }
                }
            }
            Kind::Object(items) => {
                // Sorted by length then bytes; of equal keys the last one wins.
                let mut sorted: Vec<(usize, &(String, usize))> = items.iter().enumerate().collect();
                sorted.sort_by(|(ia, (a, _)), (ib, (b, _))| {
                    a.len()
                        .cmp(&b.len())
                        .then_with(|| a.cmp(b))
                        .then(ia.cmp(ib))
                });
                let mut kept: Vec<&(String, usize)> = Vec::with_capacity(sorted.len());
                for (_, item) in sorted {
                    match kept.last_mut() {
                        Some(last) if last.0 == item.0 => *last = item,
                        _ => kept.push(item),
                    }
                }
                out.push('{');
                tasks.push(Task::Text("}"));
                for (j, (key, value)) in kept.iter().enumerate().rev() {
                    tasks.push(Task::Node(*value));
                    tasks.push(Task::Key(key));
                    if j > 0 {
                        tasks.push(Task::Text(", "));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End of the string starting at `i` (which holds the opening quote).
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// End of the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The characters of a JSON string literal (with its quotes), unescaped.
pub fn unescape(lit: &str) -> Option<String> {
    let inner = lit.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                let mut code = u32::from_str_radix(&hex, 16).ok()?;
                if (0xD800..0xDC00).contains(&code) {
                    // A surrogate pair: \uD83D\uDE00.
                    let rest: String = chars.by_ref().take(6).collect();
                    let low = u32::from_str_radix(rest.strip_prefix("\\u")?, 16).ok()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                }
                out.push(char::from_u32(code)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// The value of `key` in an object (the last one, if repeated, as Postgres).
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut found = None;
    while i < b.len() && b[i] != b'}' {
        let kend = string_end(b, i)?;
        let k = unescape(&text[i..kend])?;
        i = skip_ws(b, kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let vstart = skip_ws(b, i + 1);
        let vend = value_end(b, vstart)?;
        if k == key {
            found = Some(&text[vstart..vend]);
        }
        i = skip_ws(b, vend);
        if b.get(i) == Some(&b',') {
            i = skip_ws(b, i + 1);
        }
    }
    found
}

/// Element `index` of an array; a negative index counts from the end.
pub fn element(text: &str, index: i64) -> Option<&str> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut items = Vec::new();
    while i < b.len() && b[i] != b']' {
        let end = value_end(b, i)?;
        items.push(&text[i..end]);
        i = skip_ws(b, end);
        if b.get(i) == Some(&b',') {
            i = skip_ws(b, i + 1);
        }
    }
    let at = if index < 0 {
        items.len() as i64 + index
    } else {
        index
    };
    usize::try_from(at).ok().and_then(|a| items.get(a).copied())
}

/// Follows a path of keys and array indexes (`#>`).
pub fn path<'a>(text: &'a str, steps: &[String]) -> Option<&'a str> {
    let mut cur = text.trim();
    for s in steps {
        let t = cur.trim_start();
        cur = if t.starts_with('[') {
            element(t, s.parse().ok()?)?
        } else {
            field(t, s)?
        };
    }
    Some(cur)
}

/// A value as `->>` gives it: strings unescaped, JSON null as SQL NULL, any
/// other value as its JSON text.
pub fn as_text(value: &str) -> Option<String> {
    let v = value.trim();
    if v == "null" {
        return None;
    }
    if v.starts_with('"') {
        return unescape(v);
    }
    Some(v.to_string())
}

/// Parses a Postgres text-array literal of path steps: `{a,b,0}`.
pub fn parse_path(lit: &str) -> Option<Vec<String>> {
    let inner = lit.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => cur.push(chars.next()?),
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    Some(out)
}

/// A JSON value as a tree, for the functions and operators that take
/// documents apart and build new ones (containment, deletion, `||`,
/// `jsonb_set`, `jsonb_strip_nulls`, `jsonb_pretty`). Numbers keep their
/// text; objects keep their members in input order (for `jsonb`, the
/// canonical order).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// How deep [`Value::parse`] follows nesting: the tree is built and walked
/// recursively, and a worker's stack is not Postgres's.
const MAX_TREE_DEPTH: usize = 1000;

impl Value {
    /// Parses JSON text (already checked: a stored json or jsonb value).
    pub fn parse(text: &str) -> Result<Value, String> {
        let doc = parse(text)?;
        Self::from_doc(&doc, text, doc.root, 0)
    }

    fn from_doc(doc: &Doc, text: &str, i: usize, depth: usize) -> Result<Value, String> {
        if depth > MAX_TREE_DEPTH {
            return Err(format!(
                "JSON value nested more than {MAX_TREE_DEPTH} levels deep (viewcast's limit)"
            ));
        }
        let node = &doc.nodes[i];
        Ok(match &node.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Number => Value::Number(text[node.span.0..node.span.1].to_string()),
            Kind::String(s) => Value::String(s.clone()),
            Kind::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|j| Self::from_doc(doc, text, *j, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Object(items) => Value::Object(
                items
                    .iter()
                    .map(|(k, j)| Ok((k.clone(), Self::from_doc(doc, text, *j, depth + 1)?)))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }

    pub fn is_scalar(&self) -> bool {
        !matches!(self, Value::Array(_) | Value::Object(_))
    }

    /// `jsonb_typeof`'s name of the value's kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Appends the value as compact JSON (`{"a":1,"b":[1,2]}`), the form
    /// Postgres's json functions write a rebuilt `json` value in.
    pub fn write_compact(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(n),
            Value::String(s) => write_json_string(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_compact(out);
                }
                out.push(']');
            }
            Value::Object(items) => {
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(k, out);
                    out.push(':');
                    v.write_compact(out);
                }
                out.push('}');
            }
        }
    }

    /// The value as `jsonb`'s canonical text.
    pub fn to_jsonb(&self) -> Result<String, String> {
        let mut s = String::new();
        self.write_compact(&mut s);
        to_jsonb(&s)
    }

    /// `jsonb_pretty`: four spaces per level, one member per line, and an
    /// empty container's brackets on two lines, as Postgres writes them.
    pub fn write_pretty(&self, level: usize, out: &mut String) {
        let indent = |n: usize, out: &mut String| {
            for _ in 0..n {
                out.push_str("    ");
            }
        };
        match self {
            Value::Array(items) => {
                out.push_str("[\n");
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    indent(level + 1, out);
                    v.write_pretty(level + 1, out);
                }
                if !items.is_empty() {
                    out.push('\n');
                }
                indent(level, out);
                out.push(']');
            }
            Value::Object(items) => {
                out.push_str("{\n");
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    indent(level + 1, out);
                    write_json_string(k, out);
                    out.push_str(": ");
                    v.write_pretty(level + 1, out);
                }
                if !items.is_empty() {
                    out.push('\n');
                }
                indent(level, out);
                out.push('}');
            }
            scalar => scalar.write_compact(out),
        }
    }

    /// Scalar equality as jsonb compares: numbers by value (`1.0` = `1`).
    pub fn scalar_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => match (Numeric::parse(a), Numeric::parse(b)) {
                (Ok(x), Ok(y)) => x.cmp_value(&y) == std::cmp::Ordering::Equal,
                _ => a == b,
            },
            (a, b) => a == b,
        }
    }

    /// `@>` as Postgres's `JsonbDeepContains`: every member of `other` is
    /// in `self`. At the top, an array contains a scalar that is one of its
    /// elements, and a scalar never contains an array.
    pub fn contains(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Array(items), b) if b.is_scalar() => items.iter().any(|a| a.scalar_eq(b)),
            (a, b) => a.contains_nested(b),
        }
    }

    fn contains_nested(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Object(mine), Value::Object(theirs)) => theirs.iter().all(|(k, vb)| {
                // The last of equal keys (json input) is the one that counts.
                match mine.iter().rev().find(|(mk, _)| mk == k) {
                    None => false,
                    Some((_, va)) if vb.is_scalar() => va.scalar_eq(vb),
                    Some((_, va)) => {
                        std::mem::discriminant(va) == std::mem::discriminant(vb)
                            && va.contains_nested(vb)
                    }
                }
            }),
            (Value::Array(mine), Value::Array(theirs)) => theirs.iter().all(|eb| {
                if eb.is_scalar() {
                    mine.iter().any(|ea| ea.is_scalar() && ea.scalar_eq(eb))
                } else {
                    mine.iter().any(|ea| {
                        std::mem::discriminant(ea) == std::mem::discriminant(eb)
                            && ea.contains_nested(eb)
                    })
                }
            }),
            (a, b) if a.is_scalar() && b.is_scalar() => a.scalar_eq(b),
            _ => false,
        }
    }

    /// `?`: a top-level key, an array's string element, or the string itself.
    pub fn has_key(&self, key: &str) -> bool {
        match self {
            Value::Object(items) => items.iter().any(|(k, _)| k == key),
            Value::Array(items) => items
                .iter()
                .any(|v| matches!(v, Value::String(s) if s == key)),
            Value::String(s) => s == key,
            _ => false,
        }
    }

    /// `jsonb - text`: drops a key, or an array's string elements equal to it.
    pub fn delete_key(self, key: &str) -> Result<Value, String> {
        Ok(match self {
            Value::Object(items) => {
                Value::Object(items.into_iter().filter(|(k, _)| k != key).collect())
            }
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .filter(|v| !matches!(v, Value::String(s) if s == key))
                    .collect(),
            ),
            _ => return Err("cannot delete from scalar".into()),
        })
    }

    /// `jsonb - integer`: drops an array element (negative: from the end).
    pub fn delete_index(self, index: i64) -> Result<Value, String> {
        match self {
            Value::Array(mut items) => {
                let n = items.len() as i64;
                let at = if index < 0 { n + index } else { index };
                if (0..n).contains(&at) {
                    items.remove(at as usize);
                }
                Ok(Value::Array(items))
            }
            Value::Object(_) => Err("cannot delete from object using integer index".into()),
            _ => Err("cannot delete from scalar".into()),
        }
    }

    /// `jsonb || jsonb`: two objects merge (the right's keys win), anything
    /// else concatenates as arrays, a non-array taken as a one-element array.
    pub fn concat(self, other: Value) -> Value {
        match (self, other) {
            (Value::Object(mut a), Value::Object(b)) => {
                for (k, v) in b {
                    a.retain(|(ak, _)| *ak != k);
                    a.push((k, v));
                }
                Value::Object(a)
            }
            (a, b) => {
                let mut items = match a {
                    Value::Array(items) => items,
                    other => vec![other],
                };
                match b {
                    Value::Array(more) => items.extend(more),
                    other => items.push(other),
                }
                Value::Array(items)
            }
        }
    }

    /// `jsonb_strip_nulls`: object members whose value is null, at any depth
    /// (array elements stay).
    pub fn strip_nulls(self) -> Value {
        match self {
            Value::Object(items) => Value::Object(
                items
                    .into_iter()
                    .filter(|(_, v)| *v != Value::Null)
                    .map(|(k, v)| (k, v.strip_nulls()))
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::strip_nulls).collect())
            }
            other => other,
        }
    }

    /// `jsonb #- path`: removes the member or element the path leads to;
    /// a path that leads nowhere changes nothing.
    pub fn delete_path(&mut self, path: &[Option<String>], level: usize) -> Result<(), String> {
        let Some((step, last)) = path_step(path, level)? else {
            return Ok(());
        };
        match self {
            Value::Object(items) => {
                if let Some(at) = items.iter().position(|(k, _)| k == step) {
                    if last {
                        items.remove(at);
                    } else {
                        items[at].1.delete_path(path, level + 1)?;
                    }
                }
            }
            Value::Array(items) => {
                let n = items.len() as i64;
                let at = array_step(step.trim_start(), step, level, n)?;
                if (0..n).contains(&at) {
                    if last {
                        items.remove(at as usize);
                    } else {
                        items[at as usize].delete_path(path, level + 1)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `jsonb_set(target, path, new, create_missing)`, as Postgres's
    /// `setPath`: a missing member on the way leaves the value unchanged; at
    /// the end, an object gets the key, an array the element (past either end:
    /// prepended or appended when `create`).
    pub fn set_path(
        &mut self,
        path: &[Option<String>],
        new: &Value,
        create: bool,
        level: usize,
    ) -> Result<(), String> {
        let Some((step, last)) = path_step(path, level)? else {
            return Ok(());
        };
        match self {
            Value::Object(items) => match items.iter_mut().find(|(k, _)| k == step) {
                Some((_, v)) if last => *v = new.clone(),
                Some((_, v)) => v.set_path(path, new, create, level + 1)?,
                None if last && create => items.push((step.to_string(), new.clone())),
                None => {}
            },
            Value::Array(items) => {
                let n = items.len() as i64;
                let at = array_step(step.trim(), step, level, n)?;
                if (0..n).contains(&at) {
                    let v = &mut items[at as usize];
                    if last {
                        *v = new.clone();
                    } else {
                        v.set_path(path, new, create, level + 1)?;
                    }
                } else if last && create {
                    if at < 0 {
                        items.insert(0, new.clone());
                    } else {
                        items.push(new.clone());
                    }
                }
            }
            _ => {
                if level == 0 {
                    return Err("cannot set path in scalar".into());
                }
            }
        }
        Ok(())
    }
}

/// The step of a path (`#-`, `jsonb_set`) at `level` and whether it is the
/// last one; `None` past the end. A NULL step is an error.
fn path_step(path: &[Option<String>], level: usize) -> Result<Option<(&str, bool)>, String> {
    match path.get(level) {
        None => Ok(None),
        Some(None) => Err(format!("path element at position {} is null", level + 1)),
        Some(Some(step)) => Ok(Some((step, level + 1 == path.len()))),
    }
}

/// A path step into an array of `n` elements as a position, negative ones
/// counting from the end (it may fall outside the array). `text` is the
/// step as the caller reads it as an integer.
fn array_step(text: &str, step: &str, level: usize, n: i64) -> Result<i64, String> {
    let index: i64 = text.parse().map_err(|_| {
        format!(
            "path element at position {} is not an integer: \"{step}\"",
            level + 1
        )
    })?;
    Ok(if index < 0 { n + index } else { index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigates_canonical_text() {
        let doc = r#"{"a": 1, "b": {"c": [10, "x\"y", null]}, "d": "h\u00e9"}"#;
        assert_eq!(field(doc, "a"), Some("1"));
        assert_eq!(field(doc, "b"), Some(r#"{"c": [10, "x\"y", null]}"#));
        assert_eq!(as_text(field(doc, "d").unwrap()).as_deref(), Some("hé"));
        let steps = parse_path("{b,c,1}").unwrap();
        assert_eq!(as_text(path(doc, &steps).unwrap()).as_deref(), Some("x\"y"));
        let last = parse_path("{b,c,-1}").unwrap();
        assert_eq!(path(doc, &last), Some("null"));
        assert_eq!(as_text("null"), None);
        assert_eq!(field(doc, "zz"), None);
        assert_eq!(element("[1, [2, 3]]", 1), Some("[2, 3]"));
        assert_eq!(element("[1]", 5), None);
        assert_eq!(field("[1]", "a"), None);
    }
}
