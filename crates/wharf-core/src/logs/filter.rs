//! CloudWatch Logs filter patterns for unstructured events (`FilterLogEvents`): the term
//! syntax of "Filter pattern syntax for metric filters, subscription filters, filter log
//! events, and Live Tail".
//!
//! - an empty pattern matches every event;
//! - `ERROR Exception` — every term must appear (case-sensitive);
//! - `"exact phrase"` — a quoted term is matched as written, spaces and symbols included;
//! - `?ERROR ?WARN` — any one of the `?` terms must appear;
//! - `ERROR -Exiting` — an event containing a `-` term does not match.
//!
//! JSON (`{ $.field = … }`), space-delimited (`[ip, user, …]`) and regular-expression
//! (`%…%`) patterns are refused with `InvalidParameterException` naming what is supported.

use wharf_types::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern {
    all: Vec<String>,
    any: Vec<String>,
    none: Vec<String>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid("filterPattern", message)
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern> {
        let trimmed = text.trim();
        if trimmed.starts_with('{') || trimmed.starts_with('[') || trimmed.starts_with('%') {
            return Err(invalid(format!(
                "Invalid filter pattern '{text}': Wharf supports term patterns (terms, \"quoted phrases\", ?any and -exclude terms); JSON, space-delimited and regular-expression patterns are not supported yet."
            )));
        }
        let mut p = Pattern::default();
        let mut chars = trimmed.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&first) = chars.peek() else { break };
            let kind = match first {
                '?' | '-' => {
                    chars.next();
                    first
                }
                _ => ' ',
            };
            let mut term = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some(e) => term.push(e),
                            None => break,
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => term.push(c),
                    }
                }
                if !closed {
                    return Err(invalid(format!("Invalid filter pattern '{text}': unterminated quoted term.")));
                }
                if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                    return Err(invalid(format!(
                        "Invalid filter pattern '{text}': a quoted term must be followed by a space."
                    )));
                }
            } else {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    if c == '"' {
                        return Err(invalid(format!(
                            "Invalid filter pattern '{text}': quotes must enclose a whole term."
                        )));
                    }
                    term.push(c);
                }
            }
            if term.is_empty() {
                if kind == ' ' {
                    // `""` matches everything, as an empty term does in CloudWatch.
                    continue;
                }
                return Err(invalid(format!("Invalid filter pattern '{text}': '{kind}' must be followed by a term.")));
            }
            match kind {
                '?' => p.any.push(term),
                '-' => p.none.push(term),
                _ => p.all.push(term),
            }
        }
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.any.is_empty() && self.none.is_empty()
    }

    pub fn matches(&self, message: &str) -> bool {
        self.all.iter().all(|t| message.contains(t.as_str()))
            && !self.none.iter().any(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, message: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(message)
    }

    #[test]
    fn empty_pattern_matches_everything() {
        assert!(m("", "anything"));
        assert!(m("   ", "anything"));
        assert!(m("\"\"", "anything"));
        assert!(Pattern::parse("").unwrap().is_empty());
    }

    #[test]
    fn plain_terms_must_all_appear_case_sensitively() {
        assert!(m("ERROR", "[ERROR 400] BAD REQUEST"));
        assert!(!m("ERROR", "[error 400] bad request"));
        assert!(m("ERROR 400", "[ERROR 400] BAD REQUEST"));
        assert!(m("400 ERROR", "[ERROR 400] BAD REQUEST"));
        assert!(!m("ERROR 401", "[ERROR 400] BAD REQUEST"));
    }

    #[test]
    fn quoted_phrases_match_exactly() {
        assert!(m("\"BAD REQUEST\"", "[ERROR 400] BAD REQUEST"));
        assert!(!m("\"REQUEST BAD\"", "[ERROR 400] BAD REQUEST"));
        assert!(m("\"[ERROR 400]\" REQUEST", "[ERROR 400] BAD REQUEST"));
        assert!(m(r#""say \"hi\"""#, r#"they say "hi" twice"#));
    }

    #[test]
    fn question_mark_terms_are_alternatives() {
        assert!(m("?ERROR ?WARN", "WARN disk 91%"));
        assert!(m("?ERROR ?WARN", "ERROR disk full"));
        assert!(!m("?ERROR ?WARN", "INFO fine"));
        assert!(m("?\"disk full\" ?oom", "kernel: oom killer"));
        // Required terms still apply alongside alternatives.
        assert!(m("disk ?ERROR ?WARN", "WARN disk 91%"));
        assert!(!m("disk ?ERROR ?WARN", "WARN memory 91%"));
    }

    #[test]
    fn minus_terms_exclude() {
        assert!(m("ERROR -Exiting", "ERROR retrying"));
        assert!(!m("ERROR -Exiting", "ERROR Exiting now"));
        assert!(!m("-\"shutting down\"", "server shutting down"));
    }

    #[test]
    fn unsupported_and_malformed_patterns_are_invalid_parameters() {
        for bad in ["{ $.level = \"ERROR\" }", "[ip, user]", "%ERR.*%", "\"open", "? ", "ab\"c\"", "\"a\"b"] {
            match Pattern::parse(bad) {
                Err(Error::InvalidParameter { field, .. }) => assert_eq!(field, "filterPattern"),
                other => panic!("{bad}: expected InvalidParameter, got {other:?}"),
            }
        }
    }
}
