//! Postgres regular expressions (`~`, `~*`, `regexp_replace`,
//! `regexp_match`) on the `regex-automata` engine.
//!
//! Postgres's regexes are Spencer's ARE; the Rust engine is a Perl-style
//! leftmost-first one. They agree on the common core (literals, `.`,
//! bracket expressions, `\d \s \w`, anchors, greedy quantifiers, groups),
//! and a pattern is translated only when every construct in it is one where
//! they agree; anything else is refused, never approximated:
//!
//! - backreferences, lookaround, embedded options and `***` directors, the
//!   ARE-only escapes (`\m \M \y \Y \Z`, `\b` which is a backspace in ARE),
//!   `\x`/`\u` escapes (ARE reads any number of hex digits), POSIX classes
//!   and collating elements in brackets;
//! - where the span matched matters (`regexp_replace`, `regexp_match`):
//!   alternation, a quantified group and non-greedy quantifiers, since ARE
//!   takes the longest match of the whole pattern and Perl-style engines
//!   take the first alternative that matches.
//!
//! ARE's `.` and bracket expressions match a newline by default, so the
//! engine runs with `s` (dot matches newline); `^` and `$` are anchored at
//! the string's ends in both.

use std::cell::RefCell;
use std::collections::HashMap;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;

/// Compiled patterns kept per worker thread: a view's pattern is usually a
/// constant, evaluated for every row.
const CACHE_LIMIT: usize = 256;

thread_local! {
    static CACHE: RefCell<HashMap<(String, bool, bool), Regex>> = RefCell::new(HashMap::new());
}

/// Why a pattern is refused or invalid; the message is the error the view
/// fails with.
pub type Error = String;

/// The pattern compiled for matching; `spans`: its match span and groups
/// will be read (`regexp_replace`, `regexp_match`).
pub fn compile(pattern: &str, case_insensitive: bool, spans: bool) -> Result<Regex, Error> {
    let key = (pattern.to_string(), case_insensitive, spans);
    if let Some(re) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(re);
    }
    let translated = translate(pattern, spans)?;
    if case_insensitive && !pattern.is_ascii() {
        return Err(unsupported(
            "case-insensitive matching with a pattern that is not ASCII (Postgres folds case by the database's locale)",
        ));
    }
    let re = Regex::builder()
        .syntax(
            syntax::Config::new()
                .dot_matches_new_line(true)
                .case_insensitive(case_insensitive),
        )
        .build(&translated)
        .map_err(|e| {
            unsupported(&format!(
                "regular expression {pattern:?} ({})",
                e.to_string().lines().last().unwrap_or("")
            ))
        })?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_LIMIT {
            c.clear();
        }
        c.insert(key, re.clone());
    });
    Ok(re)
}

fn unsupported(what: &str) -> Error {
    format!("unsupported: {what}")
}

/// The pattern in the engine's syntax, or why it is refused.
fn translate(p: &str, spans: bool) -> Result<String, Error> {
    let refuse = |what: &str| Err(unsupported(&format!("{what} in regular expression {p:?}")));
    if p.starts_with("***") {
        return refuse("a *** director");
    }
    if spans {
        if let Some(alternatives) = literal_alternatives(p) {
            return Ok(alternatives);
        }
    }
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    // Whether the last thing written was a group's closing parenthesis
    // (a quantifier after it quantifies the group).
    let mut after_group = false;
    // Where each open group's text starts in `out`, and the last closed
    // group's text.
    let mut opens: Vec<usize> = Vec::new();
    let mut closed = String::new();
    while i < chars.len() {
        let c = chars[i];
        let was_group = after_group;
        after_group = false;
        match c {
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err("invalid regular expression: invalid escape \\ sequence".into());
                };
                if e.is_ascii_alphanumeric() {
                    match e {
                        'd' | 'D' | 's' | 'S' | 'w' | 'W' | 'n' | 't' | 'r' | 'f' | 'v' | 'A' => {
                            out.push('\\');
                            out.push(e);
                        }
                        _ => return refuse(&format!("the escape \\{e}")),
                    }
                } else if e.is_ascii() {
                    out.push('\\');
                    out.push(e);
                } else {
                    out.push(e);
                }
                i += 2;
            }
            '[' => {
                i = bracket(&chars, i, &mut out)
                    .map_err(|w| unsupported(&format!("{w} in regular expression {p:?}")))?;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    if chars.get(i + 2) != Some(&':') {
                        return refuse("lookaround or embedded options (?...)");
                    }
                    out.push_str("(?:");
                    opens.push(out.len());
                    i += 3;
                } else {
                    out.push('(');
                    opens.push(out.len());
                    i += 1;
                }
            }
            ')' => {
                if let Some(start) = opens.pop() {
                    closed = out[start..].to_string();
                }
                out.push(')');
                after_group = true;
                i += 1;
            }
            '|' if spans => return refuse("alternation (|) where the matched text is used"),
            '|' => {
                out.push('|');
                i += 1;
            }
            '*' | '+' | '?' | '{' => {
                if spans && was_group && !last_simple_group(&chars, i, &closed) {
                    return refuse("a quantified group (other than a last one without quantifiers inside) where the matched text is used");
                }
                if c == '{' {
                    let close = chars[i..].iter().position(|&x| x == '}').map(|k| i + k);
                    let Some(close) = close else {
                        return refuse("a { that is not a bound");
                    };
                    let inner: String = chars[i + 1..close].iter().collect();
                    let bounds: Vec<&str> = inner.split(',').collect();
                    let ok = !inner.is_empty()
                        && bounds.len() <= 2
                        && bounds.iter().enumerate().all(|(k, b)| {
                            (k == 1 && b.is_empty()) || b.parse::<u32>().is_ok_and(|n| n <= 255)
                        });
                    if !ok {
                        return refuse(&format!("the bound {{{inner}}}"));
                    }
                    out.push('{');
                    out.push_str(&inner);
                    out.push('}');
                    i = close + 1;
                } else {
                    out.push(c);
                    i += 1;
                }
                if chars.get(i) == Some(&'?') {
                    if spans {
                        return refuse("a non-greedy quantifier where the matched text is used");
                    }
                    out.push('?');
                    i += 1;
                }
                if matches!(chars.get(i), Some('*' | '+' | '{')) {
                    return Err("invalid regular expression: quantifier operand invalid".into());
                }
            }
            _ => {
                push_literal(c, &mut out);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A pattern that is only literal strings separated by `|` (`cat|dog`,
/// `\.|,`), none a prefix of another (ignoring case): at any position at
/// most one of them matches, so the first and the longest match agree.
fn literal_alternatives(p: &str) -> Option<String> {
    if !p.contains('|') {
        return None;
    }
    let mut alternatives: Vec<String> = vec![String::new()];
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '|' => alternatives.push(String::new()),
            '\\' => {
                let e = chars.next()?;
                if e.is_ascii_alphanumeric() {
                    return None;
                }
                alternatives.last_mut()?.push(e);
            }
            c if c.is_alphanumeric()
                || c == ' '
                || c == '_'
                || c == '-'
                || c == ','
                || c == ':'
                || c == '/'
                || c == '@'
                || c == '='
                || c == '\''
                || c == '"'
                || c == '!'
                || c == '%'
                || c == '&'
                || c == '#'
                || c == '~'
                || c == ';'
                || c == '<'
                || c == '>' =>
            {
                alternatives.last_mut()?.push(c)
            }
            _ => return None,
        }
    }
    let lower: Vec<String> = alternatives.iter().map(|a| a.to_lowercase()).collect();
    for (i, a) in lower.iter().enumerate() {
        if a.is_empty() {
            return None;
        }
        for (j, b) in lower.iter().enumerate() {
            if i != j && b.starts_with(a.as_str()) {
                return None;
            }
        }
    }
    let escaped: Vec<String> = alternatives
        .iter()
        .map(|a| {
            let mut out = String::new();
            for c in a.chars() {
                if regex_syntax_meta(c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        })
        .collect();
    Some(escaped.join("|"))
}

/// Whether the group just closed, quantified at `chars[at]`, is the last
/// thing in the pattern (but `$`) and has no quantifier inside: then taking
/// it as often as it matches is also the longest match, as ARE wants.
fn last_simple_group(chars: &[char], at: usize, group: &str) -> bool {
    let mut rest = at + 1;
    if chars.get(at) == Some(&'{') {
        match chars[at..].iter().position(|&c| c == '}') {
            Some(k) => rest = at + k + 1,
            None => return false,
        }
    }
    let tail: String = chars[rest..].iter().collect();
    (tail.is_empty() || tail == "$")
        && !group
            .chars()
            .any(|c| matches!(c, '*' | '+' | '?' | '{' | '('))
}

/// A character that stands for itself, escaped if the engine gives it a
/// meaning. Characters Postgres treats as operators are passed through.
fn push_literal(c: char, out: &mut String) {
    if matches!(c, '.' | '^' | '$') {
        out.push(c);
    } else if regex_syntax_meta(c) {
        out.push('\\');
        out.push(c);
    } else {
        out.push(c);
    }
}

fn regex_syntax_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

/// A bracket expression starting at `start` (`[`): written out with the
/// characters the engine reads specially inside a class (`[`, `&`, `~`, and
/// `-` other than in a range) escaped. Returns the index after it.
fn bracket(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("an unterminated bracket expression".into());
        };
        match c {
            ']' if !first => {
                out.push(']');
                return Ok(i + 1);
            }
            '[' if matches!(chars.get(i + 1), Some(':' | '=' | '.')) => {
                return Err("a character class or collating element ([: [= [.) in brackets".into());
            }
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err("an unterminated bracket expression".into());
                };
                if e.is_ascii_alphanumeric() {
                    if !matches!(e, 'd' | 's' | 'w' | 'n' | 't' | 'r' | 'f' | 'v') {
                        return Err(format!("the escape \\{e} in brackets"));
                    }
                    out.push('\\');
                    out.push(e);
                } else {
                    out.push('\\');
                    out.push(e);
                }
                i += 2;
            }
            '-' => {
                // A range between two characters; a leading or trailing
                // hyphen is literal.
                let next = chars.get(i + 1);
                if first || next == Some(&']') {
                    out.push_str("\\-");
                } else if next == Some(&'-') {
                    return Err("a range ending in - in brackets".into());
                } else {
                    out.push('-');
                }
                i += 1;
            }
            '[' | '&' | '~' | ']' | '^' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
        first = false;
    }
}

/// The flags of `regexp_replace`/`regexp_match`: (global, case-insensitive).
pub fn flags(f: &str, allow_global: bool, func: &str) -> Result<(bool, bool), Error> {
    let (mut global, mut ci) = (false, false);
    for c in f.chars() {
        match c {
            'g' if allow_global => global = true,
            'g' => {
                return Err(format!(
                    "{func}() does not support the \"global\" option (use the regexp_matches function instead)"
                ))
            }
            'i' => ci = true,
            'c' => ci = false,
            'n' | 'p' | 'w' | 's' | 't' | 'x' | 'b' | 'e' | 'q' | 'm' => {
                return Err(unsupported(&format!("the regular expression flag \"{c}\"")))
            }
            other => return Err(format!("invalid regular expression option: \"{other}\"")),
        }
    }
    Ok((global, ci))
}

/// `regexp_replace`: `\1`..`\9` in the replacement are groups, `\&` the
/// whole match, `\\` a backslash.
pub fn replace(re: &Regex, s: &str, replacement: &str, global: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    let mut caps = re.create_captures();
    let mut at = 0;
    while at <= s.len() {
        let input = regex_automata::Input::new(s).range(at..);
        re.search_captures(&input, &mut caps);
        let Some(m) = caps.get_match() else {
            break;
        };
        out.push_str(&s[last..m.start()]);
        let mut chars = replacement.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.peek().copied() {
                Some(d @ '1'..='9') => {
                    chars.next();
                    let g = d as usize - '0' as usize;
                    if let Some(span) = caps.get_group(g) {
                        out.push_str(&s[span.start..span.end]);
                    }
                }
                Some('&') => {
                    chars.next();
                    out.push_str(&s[m.start()..m.end()]);
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            }
        }
        last = m.end();
        if !global {
            break;
        }
        let Some(next) = search_after(s, &m) else {
            break;
        };
        if m.is_empty() {
            // The character stepped past after an empty match is kept.
            out.push_str(&s[m.end()..next]);
            last = next;
        }
        at = next;
    }
    out.push_str(&s[last.min(s.len())..]);
    out
}

/// `regexp_split_to_table`: the text between matches, as Postgres splits
/// it: a zero-length match at the start or end of the string, or right
/// after the previous match, is not a split point.
pub fn split(re: &Regex, s: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let (mut last, mut prev_end, mut at) = (0, 0, 0);
    while at <= s.len() {
        let Some(m) = re.search(&regex_automata::Input::new(s).range(at..)) else {
            break;
        };
        if m.start() < s.len() && m.end() > prev_end {
            pieces.push(s[last..m.start()].to_string());
            last = m.end();
        }
        prev_end = m.end();
        let Some(next) = search_after(s, &m) else {
            break;
        };
        at = next;
    }
    pieces.push(s[last..].to_string());
    pieces
}

/// `regexp_match`: the groups of the first match (the whole match if the
/// pattern has none), `None` for a group that took no part; `None` overall
/// without a match.
pub fn first_match(re: &Regex, s: &str) -> Option<Vec<Option<String>>> {
    matches(re, s, false).into_iter().next()
}

/// `regexp_matches`: the groups (as [`first_match`]) of the first match, or
/// with `global` of every match, left to right; a search goes on at the end
/// of the previous match, one character further after an empty one.
pub fn matches(re: &Regex, s: &str, global: bool) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    let mut caps = re.create_captures();
    let mut at = 0;
    while at <= s.len() {
        re.search_captures(&regex_automata::Input::new(s).range(at..), &mut caps);
        let Some(m) = caps.get_match() else {
            break;
        };
        let groups = caps.group_len();
        out.push(if groups <= 1 {
            vec![Some(s[m.start()..m.end()].to_string())]
        } else {
            (1..groups)
                .map(|g| caps.get_group(g).map(|sp| s[sp.start..sp.end].to_string()))
                .collect()
        });
        match search_after(s, &m) {
            Some(next) if global => at = next,
            _ => break,
        }
    }
    out
}

/// Where the search after match `m` of `s` goes on: at its end, or one
/// character further after an empty match (`None` past the end).
fn search_after(s: &str, m: &regex_automata::Match) -> Option<usize> {
    if !m.is_empty() {
        return Some(m.end());
    }
    s[m.end()..].chars().next().map(|c| m.end() + c.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_only_what_agrees() {
        assert_eq!(translate("a[b-d]+$", true).unwrap(), "a[b-d]+$");
        assert_eq!(translate("[[a&]", false).unwrap(), "[\\[a\\&]");
        assert_eq!(translate("x{2,3}", true).unwrap(), "x{2,3}");
        for refused in [
            "\\1",
            "(?=a)",
            "a|b*",
            "(ab)*c",
            "(a*)?",
            "a*?",
            "[[:alpha:]]",
            "\\y",
            "***=a",
            "a{300}",
        ] {
            assert!(translate(refused, true).is_err(), "{refused}");
        }
        assert_eq!(translate("a|b", false).unwrap(), "a|b");
        assert_eq!(translate("cat|dog|\\.", true).unwrap(), "cat|dog|\\.");
        assert!(translate("ab|abc", true).is_err());
        assert!(translate("a|(b)", true).is_err());
        let re = compile("a#|b-|c&|d~|e\\.", false, true).unwrap();
        assert_eq!(replace(&re, "a#b-c&d~e.ex", "_", true), "_____ex");
        assert!(translate("a+?", false).is_ok());
    }

    #[test]
    fn replaces_as_postgres() {
        let re = compile("x*", false, true).unwrap();
        assert_eq!(replace(&re, "abc", "-", true), "-a-b-c-");
        let re = compile("(b)(c)?", false, true).unwrap();
        assert_eq!(replace(&re, "abd", "[\\2\\1\\&\\\\]", false), "a[bb\\]d");
        let re = compile(".", false, true).unwrap();
        assert_eq!(first_match(&re, "\n"), Some(vec![Some("\n".into())]));
    }
}
