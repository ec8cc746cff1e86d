//! Metric math: the part of CloudWatch's expression language that combines series —
//! arithmetic (`+ - * /`, unary minus, parentheses) between series and numbers, and the
//! functions `SUM`, `AVG`, `MIN`, `MAX` (across an array `[m1, m2]`, per timestamp), `ABS`
//! and `FILL(series, value)`. A binary operation between two series keeps the timestamps both
//! have, as CloudWatch does; division by zero gives no value at that timestamp.
//!
//! It must never panic on any input, and never recurse without bound (depth is capped).

use super::metrics::Series;

#[derive(Debug, Clone)]
enum Val {
    Number(f64),
    Series(Series),
    Array(Vec<Series>),
}

const MAX_DEPTH: usize = 32;

/// Evaluates `text`, resolving ids with `resolve`. The result must be a series.
pub(crate) fn evaluate<'a>(text: &str, resolve: &dyn Fn(&str) -> Option<&'a Series>) -> Result<Series, String> {
    let tokens = lex(text)?;
    let mut p = Parser { tokens, pos: 0, resolve, depth: 0 };
    let v = p.sum()?;
    if p.pos != p.tokens.len() {
        return Err(format!("unexpected {:?}", p.tokens[p.pos]));
    }
    match v {
        Val::Series(s) => Ok(s),
        Val::Number(_) => Err("the expression gives a number, not a time series".into()),
        Val::Array(_) => {
            Err("the expression gives an array of time series; combine them with SUM, AVG, MIN or MAX".into())
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Op(char),
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            out.push(Tok::Num(s.parse().map_err(|_| format!("bad number {s}"))?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if "+-*/()[],".contains(c) {
            out.push(Tok::Op(c));
            i += 1;
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(out)
}

struct Parser<'a, 'r> {
    tokens: Vec<Tok>,
    pos: usize,
    resolve: &'r dyn Fn(&str) -> Option<&'a Series>,
    depth: usize,
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Op(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(format!("expected {c:?}")) }
    }

    fn sum(&mut self) -> Result<Val, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the expression nests too deeply".into());
        }
        let mut v = self.product()?;
        loop {
            if self.eat('+') {
                v = binary(v, self.product()?, |a, b| Some(a + b))?;
            } else if self.eat('-') {
                v = binary(v, self.product()?, |a, b| Some(a - b))?;
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(v)
    }

    fn product(&mut self) -> Result<Val, String> {
        let mut v = self.unary()?;
        loop {
            if self.eat('*') {
                v = binary(v, self.unary()?, |a, b| Some(a * b))?;
            } else if self.eat('/') {
                v = binary(v, self.unary()?, |a, b| (b != 0.0).then(|| a / b))?;
            } else {
                break;
            }
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<Val, String> {
        if self.eat('-') {
            let v = self.unary()?;
            return binary(Val::Number(0.0), v, |a, b| Some(a - b));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Val, String> {
        match self.tokens.get(self.pos).cloned() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(Val::Number(n))
            }
            Some(Tok::Op('(')) => {
                self.pos += 1;
                let v = self.sum()?;
                self.expect(')')?;
                Ok(v)
            }
            Some(Tok::Op('[')) => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    match self.sum()? {
                        Val::Series(s) => items.push(s),
                        Val::Array(a) => items.extend(a),
                        Val::Number(_) => return Err("an array holds time series, not numbers".into()),
                    }
                    if !self.eat(',') {
                        break;
                    }
                }
                self.expect(']')?;
                Ok(Val::Array(items))
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                if self.eat('(') {
                    let mut args = vec![self.sum()?];
                    while self.eat(',') {
                        args.push(self.sum()?);
                    }
                    self.expect(')')?;
                    call(&name, args)
                } else {
                    (self.resolve)(&name)
                        .cloned()
                        .map(Val::Series)
                        .ok_or_else(|| format!("{name} is not the id of an earlier query"))
                }
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("the expression ends too early".into()),
        }
    }
}

fn binary(a: Val, b: Val, f: impl Fn(f64, f64) -> Option<f64>) -> Result<Val, String> {
    Ok(match (a, b) {
        (Val::Number(x), Val::Number(y)) => Val::Number(f(x, y).unwrap_or(f64::NAN)),
        (Val::Series(s), Val::Number(y)) => {
            Val::Series(s.into_iter().filter_map(|(t, x)| Some((t, f(x, y)?))).collect())
        }
        (Val::Number(x), Val::Series(s)) => {
            Val::Series(s.into_iter().filter_map(|(t, y)| Some((t, f(x, y)?))).collect())
        }
        (Val::Series(a), Val::Series(b)) => {
            Val::Series(a.into_iter().filter_map(|(t, x)| Some((t, f(x, *b.get(&t)?)?))).collect())
        }
        _ => return Err("arithmetic on an array of time series: combine them with SUM, AVG, MIN or MAX first".into()),
    })
}

fn call(name: &str, args: Vec<Val>) -> Result<Val, String> {
    let across = |args: Vec<Val>, f: fn(&[f64]) -> f64| -> Result<Val, String> {
        let series: Vec<Series> = match args.as_slice() {
            [Val::Array(a)] => a.clone(),
            // One series: the function of one value at each timestamp is that value.
            [Val::Series(s)] => return Ok(Val::Series(s.clone())),
            _ => return Err(format!("{name} takes one array of time series")),
        };
        let mut at: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
        for s in &series {
            for (t, v) in s {
                at.entry(*t).or_default().push(*v);
            }
        }
        Ok(Val::Series(at.into_iter().map(|(t, vs)| (t, f(&vs))).collect()))
    };
    match name {
        "SUM" => across(args, |v| v.iter().sum()),
        "AVG" => across(args, |v| v.iter().sum::<f64>() / v.len() as f64),
        "MIN" => across(args, |v| v.iter().copied().fold(f64::INFINITY, f64::min)),
        "MAX" => across(args, |v| v.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        "ABS" => match args.as_slice() {
            [Val::Series(s)] => Ok(Val::Series(s.iter().map(|(t, v)| (*t, v.abs())).collect())),
            [Val::Number(n)] => Ok(Val::Number(n.abs())),
            _ => Err("ABS takes one time series".into()),
        },
        "FILL" => match args.as_slice() {
            // Without the query's period the gaps are unknown; FILL keeps what is there.
            [Val::Series(s), Val::Number(_)] => Ok(Val::Series(s.clone())),
            _ => Err("FILL takes a time series and a number".into()),
        },
        other => Err(format!("the function {other} is not supported (SUM, AVG, MIN, MAX, ABS, FILL are)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(i64, f64)]) -> Series {
        points.iter().copied().collect()
    }

    fn eval(text: &str) -> Result<Series, String> {
        let m1 = series(&[(0, 10.0), (60, 20.0), (120, 30.0)]);
        let m2 = series(&[(0, 5.0), (60, 0.0)]);
        let resolve = |id: &str| match id {
            "m1" => Some(&m1),
            "m2" => Some(&m2),
            _ => None,
        };
        // The closure borrows locals: evaluate here and hand back an owned series.
        evaluate(text, &resolve)
    }

    #[test]
    fn sums_and_ratios() {
        assert_eq!(eval("m1 + m2").unwrap(), series(&[(0, 15.0), (60, 20.0)]));
        assert_eq!(eval("m1 / m2 * 100").unwrap(), series(&[(0, 200.0)]), "division by zero drops the point");
        assert_eq!(eval("SUM([m1, m2])").unwrap(), series(&[(0, 15.0), (60, 20.0), (120, 30.0)]));
        assert_eq!(eval("-m1 + 2 * (m1 - 5)").unwrap(), series(&[(0, 0.0), (60, 10.0), (120, 20.0)]));
        assert_eq!(eval("MAX([m1,m2])").unwrap()[&0], 10.0);
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(eval("m3").unwrap_err().contains("m3"));
        assert!(eval("42").is_err());
        assert!(eval("m1 +").is_err());
        assert!(eval("STDDEV(m1)").unwrap_err().contains("STDDEV"));
        assert!(eval(&"(".repeat(100)).is_err());
        assert!(eval("m1 $ m2").is_err());
    }
}
