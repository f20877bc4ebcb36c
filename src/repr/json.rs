//! Navigating JSON text for `->`, `->>`, `#>` and `#>>`.
//!
//! Values are found as slices of the text they came in. For `jsonb` that text
//! is Postgres's canonical output, so a slice of it is the canonical output of
//! the sub-value; for `json` Postgres also returns the sub-value's text as
//! written. Numbers and strings are never re-encoded.

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
