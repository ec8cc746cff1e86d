//! Smithy RPC v2 CBOR (`smithy.protocols#rpcv2Cbor`): `POST /service/<Service>/operation/<Op>`
//! with `smithy-protocol: rpc-v2-cbor`, a CBOR map in and out.
//!
//! A request body decodes into the JSON value every handler already takes (tag-1 timestamps
//! become epoch seconds, byte strings base64 text), so no handler knows which protocol called
//! it; a response is encoded by the operation's output shape (timestamps tagged, blobs as
//! bytes, doubles as floats). Decoding must never panic, recurse without bound or allocate
//! more than the body's length justifies, whatever the bytes.

use crate::model::{Model, Shape};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

pub const CONTENT_TYPE: &str = "application/cbor";
/// The header that names the protocol on requests and responses alike.
pub const PROTOCOL_HEADER: &str = "smithy-protocol";
pub const PROTOCOL: &str = "rpc-v2-cbor";

/// How deep items may nest before a body is refused (guards the recursive walk; the model's
/// validator refuses shallower nesting still).
const MAX_DEPTH: usize = 128;

/// Tag 1: epoch-based date/time (RFC 8949 §3.4.2).
const TAG_EPOCH: u64 = 1;

const UNSIGNED: u8 = 0;
const NEGATIVE: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;
const SIMPLE: u8 = 7;
/// Additional information 31: an indefinite length (or, alone in major type 7, a break).
const INDEFINITE: u8 = 31;
const BREAK: u8 = 0xff;

/// Splits a request path into (service name, operation): the last four segments are
/// `service/<Service>/operation/<Op>`, after any prefix. A service named by its absolute
/// shape id (`com.amazonaws.cloudwatch.GraniteServiceVersion20100801`) is named by its shape
/// name; an operation must be a bare name.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let mut segments = path.rsplitn(5, '/');
    let (op, operation, service, literal) = (segments.next()?, segments.next()?, segments.next()?, segments.next()?);
    let service = service.rsplit('.').next().unwrap_or(service);
    let bare = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (literal == "service" && operation == "operation" && bare(service) && bare(op)).then_some((service, op))
}

/// Why a body is not CBOR the protocol allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body ends inside an item")]
    Truncated,
    #[error("bytes follow the body's item")]
    Trailing,
    #[error("items nest more than {MAX_DEPTH} deep")]
    TooDeep,
    #[error("{0}")]
    Invalid(&'static str),
}

/// Decodes a request body into the JSON value handlers take. An empty body is an empty
/// structure (an operation without input sends none).
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let mut reader = Reader { bytes: body, at: 0 };
    let value = reader.item(0)?;
    if reader.at == body.len() { Ok(value) } else { Err(DecodeError::Trailing) }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.at).ok_or(DecodeError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).ok().filter(|&n| n <= self.remaining()).ok_or(DecodeError::Truncated)?;
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    /// The next byte is a break (it is consumed).
    fn at_break(&mut self) -> Result<bool, DecodeError> {
        match self.bytes.get(self.at) {
            Some(&BREAK) => {
                self.at += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(DecodeError::Truncated),
        }
    }

    /// The argument of an item head: the additional information itself, or the 1, 2, 4 or
    /// 8 bytes after the head.
    fn argument(&mut self, info: u8) -> Result<u64, DecodeError> {
        let width = match info {
            0..24 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(DecodeError::Invalid("reserved additional information")),
        };
        Ok(self.take(width)?.iter().fold(0, |n, &b| (n << 8) | u64::from(b)))
    }

    fn item(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let head = self.byte()?;
        let (major, info) = (head >> 5, head & 0x1f);
        Ok(match major {
            UNSIGNED => Value::Number(self.argument(info)?.into()),
            NEGATIVE => negative(self.argument(info)?),
            BYTES => Value::String(BASE64.encode(self.string(BYTES, info)?)),
            TEXT => Value::String(
                String::from_utf8(self.string(TEXT, info)?).map_err(|_| DecodeError::Invalid("text is not UTF-8"))?,
            ),
            ARRAY => {
                let mut items = Vec::new();
                if info == INDEFINITE {
                    while !self.at_break()? {
                        items.push(self.item(depth + 1)?);
                    }
                } else {
                    let n = self.argument(info)?;
                    // Each item takes at least a byte: a claimed length beyond the body is a lie.
                    items.reserve(usize::try_from(n).unwrap_or(usize::MAX).min(self.remaining()));
                    for _ in 0..n {
                        items.push(self.item(depth + 1)?);
                    }
                }
                Value::Array(items)
            }
            MAP => {
                let mut map = Map::new();
                if info == INDEFINITE {
                    while !self.at_break()? {
                        let key = self.key()?;
                        map.insert(key, self.item(depth + 1)?);
                    }
                } else {
                    for _ in 0..self.argument(info)? {
                        let key = self.key()?;
                        map.insert(key, self.item(depth + 1)?);
                    }
                }
                Value::Object(map)
            }
            TAG => {
                let tag = self.argument(info)?;
                let value = self.item(depth + 1)?;
                match (tag, value) {
                    (TAG_EPOCH, Value::Number(n)) => Value::Number(n),
                    (TAG_EPOCH, _) => return Err(DecodeError::Invalid("a timestamp (tag 1) is not a number")),
                    _ => return Err(DecodeError::Invalid("unsupported tag (only tag 1, timestamps, is)")),
                }
            }
            SIMPLE => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                // Null and undefined: both an absent member.
                22 | 23 => Value::Null,
                25 => float(half(u16::from_be_bytes([self.byte()?, self.byte()?]))),
                26 => float(f64::from(f32::from_bits(self.argument(info)? as u32))),
                27 => float(f64::from_bits(self.argument(info)?)),
                INDEFINITE => return Err(DecodeError::Invalid("a break outside an indefinite-length item")),
                _ => return Err(DecodeError::Invalid("unsupported simple value")),
            },
            // Three bits hold no other major type.
            _ => return Err(DecodeError::Invalid("unknown major type")),
        })
    }

    /// A map key: structure members and map keys are text.
    fn key(&mut self) -> Result<String, DecodeError> {
        let head = self.byte()?;
        if head >> 5 != TEXT {
            return Err(DecodeError::Invalid("a map key is not text"));
        }
        String::from_utf8(self.string(TEXT, head & 0x1f)?).map_err(|_| DecodeError::Invalid("text is not UTF-8"))
    }

    /// The content of a byte or text string, definite or in definite-length chunks of its
    /// own major type.
    fn string(&mut self, major: u8, info: u8) -> Result<Vec<u8>, DecodeError> {
        if info != INDEFINITE {
            let n = self.argument(info)?;
            return Ok(self.take(n)?.to_vec());
        }
        let mut out = Vec::new();
        while !self.at_break()? {
            let head = self.byte()?;
            if head >> 5 != major || head & 0x1f == INDEFINITE {
                return Err(DecodeError::Invalid("an indefinite-length string has a chunk of another kind"));
            }
            let n = self.argument(head & 0x1f)?;
            out.extend_from_slice(self.take(n)?);
        }
        Ok(out)
    }
}

/// Major type 1: -1 - n, beyond `i64` as a float.
fn negative(n: u64) -> Value {
    match i64::try_from(n) {
        Ok(n) => Value::Number((-1 - n).into()),
        Err(_) => float(-1.0 - n as f64),
    }
}

/// A float as JSON carries it: NaN and the infinities as AWS JSON's strings.
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// IEEE 754 half precision (RFC 8949 Appendix D).
fn half(bits: u16) -> f64 {
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + mantissa / 1024.0) * 2f64.powi(exponent - 15),
    };
    if bits & 0x8000 == 0 { magnitude } else { -magnitude }
}

/// Encodes a handler's `output` for operation `op` by the model's output shape. `None` for an
/// operation without output: its response has no body.
pub fn encode_output(model: &Model, op: &str, output: &Value) -> Option<Vec<u8>> {
    let shape = &model.operation(op)?.output.as_ref()?.shape;
    let mut encoder = Encoder { model, out: Vec::new() };
    encoder.shaped(shape, output, 0);
    Some(encoder.out)
}

/// The error body: `__type` (the error's absolute shape id) and `message`.
pub fn error_body(type_id: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    head(&mut out, MAP, 2);
    for text in ["__type", type_id, "message", message] {
        head(&mut out, TEXT, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }
    out
}

struct Encoder<'a> {
    model: &'a Model,
    out: Vec<u8>,
}

impl Encoder<'_> {
    fn shaped(&mut self, shape_name: &str, v: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            return self.out.push(0xf6);
        }
        match (self.model.shape(shape_name), v) {
            (Some(Shape::Structure { members, .. }), Value::Object(obj)) => {
                let present: Vec<_> = members
                    .iter()
                    .filter_map(|(name, r)| Some((name, r, obj.get(name).filter(|v| !v.is_null())?)))
                    .collect();
                head(&mut self.out, MAP, present.len() as u64);
                for (name, r, v) in present {
                    self.text(name);
                    self.shaped(&r.shape, v, depth + 1);
                }
            }
            (Some(Shape::List { member, .. }), Value::Array(items)) => {
                head(&mut self.out, ARRAY, items.len() as u64);
                for item in items {
                    self.shaped(&member.shape, item, depth + 1);
                }
            }
            (Some(Shape::Map { value, .. }), Value::Object(obj)) => {
                let present: Vec<_> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
                head(&mut self.out, MAP, present.len() as u64);
                for (k, v) in present {
                    self.text(k);
                    self.shaped(&value.shape, v, depth + 1);
                }
            }
            (Some(Shape::Timestamp), Value::Number(n)) => {
                head(&mut self.out, TAG, TAG_EPOCH);
                self.number(n, Numeric::Whole);
            }
            (Some(Shape::Timestamp), Value::String(s)) => {
                match wharf_types::parse_iso8601(s).and_then(Number::from_f64) {
                    Some(n) => {
                        head(&mut self.out, TAG, TAG_EPOCH);
                        self.number(&n, Numeric::Whole);
                    }
                    None => self.text(s),
                }
            }
            (Some(Shape::Blob), Value::String(s)) => {
                let bytes = BASE64.decode(s).unwrap_or_else(|_| s.as_bytes().to_vec());
                head(&mut self.out, BYTES, bytes.len() as u64);
                self.out.extend_from_slice(&bytes);
            }
            (Some(Shape::Integer { .. }), Value::Number(n)) => self.number(n, Numeric::Whole),
            (Some(Shape::Float), Value::Number(n)) => self.number(n, Numeric::Float),
            (_, v) => self.generic(v, depth),
        }
    }

    /// A value the model does not shape (or that does not fit its shape): as JSON would carry it.
    fn generic(&mut self, v: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            return self.out.push(0xf6);
        }
        match v {
            Value::Null => self.out.push(0xf6),
            Value::Bool(b) => self.out.push(if *b { 0xf5 } else { 0xf4 }),
            Value::Number(n) => self.number(n, Numeric::AsIs),
            Value::String(s) => self.text(s),
            Value::Array(items) => {
                head(&mut self.out, ARRAY, items.len() as u64);
                for item in items {
                    self.generic(item, depth + 1);
                }
            }
            Value::Object(obj) => {
                head(&mut self.out, MAP, obj.len() as u64);
                for (k, v) in obj {
                    self.text(k);
                    self.generic(v, depth + 1);
                }
            }
        }
    }

    fn text(&mut self, s: &str) {
        head(&mut self.out, TEXT, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A number in its smallest form: an integer as one (and a whole float too, for
    /// [`Numeric::Whole`]), a float as single precision when that loses nothing.
    fn number(&mut self, n: &Number, kind: Numeric) {
        let whole = match (kind, n.as_f64()) {
            (Numeric::Float, _) => None,
            (Numeric::Whole, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => n.as_i64(),
        };
        if let Some(u) = n.as_u64().filter(|_| kind != Numeric::Float) {
            return head(&mut self.out, UNSIGNED, u);
        }
        if let Some(i) = whole {
            return match u64::try_from(i) {
                Ok(u) => head(&mut self.out, UNSIGNED, u),
                Err(_) => head(&mut self.out, NEGATIVE, (-1 - i) as u64),
            };
        }
        let f = n.as_f64().unwrap_or_default();
        if f64::from(f as f32) == f {
            self.out.push(0xfa);
            self.out.extend_from_slice(&(f as f32).to_be_bytes());
        } else {
            self.out.push(0xfb);
            self.out.extend_from_slice(&f.to_be_bytes());
        }
    }
}

/// How a number is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numeric {
    /// As JSON has it: integers as integers, floats as floats.
    AsIs,
    /// An integer or timestamp member: whole floats as integers too.
    Whole,
    /// A `double` or `float` member: always a float.
    Float,
}

/// An item head: major type and argument, in the fewest bytes.
fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    if n < 24 {
        out.push(major | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[major | 24, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(major | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(major | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn decoded(s: &str) -> Value {
        decode(&hex(s)).unwrap()
    }

    /// RFC 8949 Appendix A's examples that the protocol allows.
    #[test]
    fn decodes_the_rfc_examples() {
        let cases = [
            ("00", json!(0)),
            ("17", json!(23)),
            ("1818", json!(24)),
            ("1903e8", json!(1000)),
            ("1b000000e8d4a51000", json!(1_000_000_000_000u64)),
            ("1bffffffffffffffff", json!(u64::MAX)),
            ("20", json!(-1)),
            ("3863", json!(-100)),
            ("3bffffffffffffffff", json!(-18_446_744_073_709_551_616.0)),
            ("f90000", json!(0.0)),
            ("f93c00", json!(1.0)),
            ("f97bff", json!(65504.0)),
            ("f90001", json!(5.960_464_477_539_063e-8)),
            ("f9c400", json!(-4.0)),
            ("fa47c35000", json!(100_000.0)),
            ("fb3ff199999999999a", json!(1.1)),
            ("f97c00", json!("Infinity")),
            ("f97e00", json!("NaN")),
            ("fbfff0000000000000", json!("-Infinity")),
            ("f4", json!(false)),
            ("f5", json!(true)),
            ("f6", Value::Null),
            ("f7", Value::Null),
            ("c11a514b67b0", json!(1_363_896_240)),
            ("c1fb41d452d9ec200000", json!(1_363_896_240.5)),
            ("4401020304", json!("AQIDBA==")),
            ("60", json!("")),
            ("62c3bc", json!("ü")),
            ("64f0908591", json!("𐅑")),
            ("80", json!([])),
            ("83010203", json!([1, 2, 3])),
            ("8301820203820405", json!([1, [2, 3], [4, 5]])),
            ("a0", json!({})),
            ("a26161016162820203", json!({"a": 1, "b": [2, 3]})),
            ("5f42010243030405ff", json!("AQIDBAU=")),
            ("7f657374726561646d696e67ff", json!("streaming")),
            ("9fff", json!([])),
            ("9f018202039f0405ffff", json!([1, [2, 3], [4, 5]])),
            ("83018202039f0405ff", json!([1, [2, 3], [4, 5]])),
            ("bf61610161629f0203ffff", json!({"a": 1, "b": [2, 3]})),
            ("bf6346756ef563416d7421ff", json!({"Fun": true, "Amt": -2})),
        ];
        for (bytes, want) in cases {
            assert_eq!(decoded(bytes), want, "{bytes}");
        }
    }

    /// What botocore 1.44 sends for `get_metric_statistics` (two timestamps, one with a
    /// fraction: an integer and a double under tag 1).
    #[test]
    fn decodes_a_botocore_request() {
        let body = "a7694e616d657370616365634170706a4d65747269634e616d65644869747369537461727454696d65c11a6553f1\
                    0067456e6454696d65c1fb41d954fc4020000066506572696f64183c6a53746174697374696373816353756d6a44\
                    696d656e73696f6e7381a2644e616d6564486f73746556616c75656161";
        assert_eq!(
            decoded(body),
            json!({"Namespace": "App", "MetricName": "Hits", "StartTime": 1_700_000_000u64, "EndTime": 1_700_000_000.5,
                   "Period": 60, "Statistics": ["Sum"], "Dimensions": [{"Name": "Host", "Value": "a"}]})
        );
    }

    #[test]
    fn refuses_what_the_protocol_does_not_allow() {
        let cases = [
            ("18", DecodeError::Truncated),
            ("62 61", DecodeError::Truncated),
            ("9f 01", DecodeError::Truncated),
            ("bb ffffffffffffffff", DecodeError::Truncated),
            ("9b ffffffffffffffff 00", DecodeError::Truncated),
            ("01 02", DecodeError::Trailing),
            ("1c", DecodeError::Invalid("reserved additional information")),
            ("ff", DecodeError::Invalid("a break outside an indefinite-length item")),
            ("f8 20", DecodeError::Invalid("unsupported simple value")),
            ("a1 01 02", DecodeError::Invalid("a map key is not text")),
            ("62 c3 28", DecodeError::Invalid("text is not UTF-8")),
            ("c1 61 61", DecodeError::Invalid("a timestamp (tag 1) is not a number")),
            ("c2 41 01", DecodeError::Invalid("unsupported tag (only tag 1, timestamps, is)")),
            ("5f 61 61 ff", DecodeError::Invalid("an indefinite-length string has a chunk of another kind")),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(&hex(bytes)), Err(want), "{bytes}");
        }
        let deep = [vec![0x81; 200], vec![0x00]].concat();
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
        assert_eq!(decode(b""), Ok(json!({})));
    }

    const MODEL: &str = r#"{
      "metadata": {"apiVersion": "2010-08-01", "protocol": "smithy-rpc-v2-cbor", "endpointPrefix": "monitoring"},
      "operations": {"Get": {"output": {"shape": "Out"}}, "Put": {}},
      "shapes": {
        "Out": {"type": "structure", "members": {"Label": {"shape": "S"}, "Points": {"shape": "Points"},
          "Data": {"shape": "B"}, "Tags": {"shape": "Tags"}, "Count": {"shape": "I"}}},
        "Points": {"type": "list", "member": {"shape": "Point"}},
        "Point": {"type": "structure", "members": {"Timestamp": {"shape": "T"}, "Sum": {"shape": "D"}}},
        "Tags": {"type": "map", "key": {"shape": "S"}, "value": {"shape": "S"}},
        "S": {"type": "string"}, "T": {"type": "timestamp"}, "D": {"type": "double"}, "B": {"type": "blob"},
        "I": {"type": "integer"}
      }}"#;

    #[test]
    fn encodes_output_by_its_shape() {
        let model = Model::from_json(MODEL).unwrap();
        let out = json!({
            "Label": "Hits",
            "Points": [{"Timestamp": 1_700_000_000, "Sum": 3}, {"Timestamp": 1_700_000_000.5, "Sum": 0.1}],
            "Data": "AQID",
            "Tags": {"k": "v", "gone": null},
            "Count": -2,
            "Unmodelled": 1,
            "Null": null
        });
        let want = "a5 654c6162656c 6448697473 \
                    66506f696e7473 82 \
                      a2 6954696d657374616d70 c1 1a6553f100 6353756d fa40400000 \
                      a2 6954696d657374616d70 c1 fb41d954fc40200000 6353756d fb3fb999999999999a \
                    6444617461 43010203 \
                    6454616773 a1 616b 6176 \
                    65436f756e74 21";
        assert_eq!(hex::encode(encode_output(&model, "Get", &out).unwrap()), hex::encode(hex(want)));
        assert_eq!(encode_output(&model, "Put", &json!({})), None);
        // What was encoded decodes to what a JSON client would have read (blobs aside).
        let back = decode(&encode_output(&model, "Get", &out).unwrap()).unwrap();
        assert_eq!(back["Points"][1], json!({"Timestamp": 1_700_000_000.5, "Sum": 0.1}));
        assert_eq!(back["Data"], json!("AQID"));
    }

    #[test]
    fn error_body_is_type_and_message() {
        let body = error_body("com.amazonaws.cloudwatch#InvalidParameterValueException", "bad");
        assert_eq!(
            decode(&body).unwrap(),
            json!({"__type": "com.amazonaws.cloudwatch#InvalidParameterValueException", "message": "bad"})
        );
    }

    #[test]
    fn paths_name_service_and_operation() {
        let cases = [
            (
                "/service/GraniteServiceVersion20100801/operation/ListMetrics",
                Some(("GraniteServiceVersion20100801", "ListMetrics")),
            ),
            ("/v1/service/Granite/operation/ListMetrics", Some(("Granite", "ListMetrics"))),
            ("/service/com.amazonaws.cloudwatch.Granite/operation/ListMetrics", Some(("Granite", "ListMetrics"))),
            ("/service/Granite/operation/com.amazonaws.cloudwatch#ListMetrics", None),
            ("/service/Granite/operation/", None),
            ("/service//operation/ListMetrics", None),
            ("/services/Granite/operation/ListMetrics", None),
            ("/", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(split_path(path), want, "{path}");
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite() && f.fract() != 0.0).prop_map(|f| json!(f)),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        /// Valid bodies with a few bytes changed: the decoder's error paths deep inside items.
        #[test]
        fn never_panics_on_damaged_bodies(
            value in json_value(),
            damage in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
        ) {
            let model = Model::from_json(MODEL).unwrap();
            let mut encoder = Encoder { model: &model, out: Vec::new() };
            encoder.generic(&value, 0);
            let mut bytes = encoder.out;
            for (at, b) in damage {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            let _ = decode(&bytes);
        }

        /// Whatever JSON a handler writes, CBOR carries it unchanged.
        #[test]
        fn round_trips_json(value in json_value()) {
            let model = Model::from_json(MODEL).unwrap();
            let mut encoder = Encoder { model: &model, out: Vec::new() };
            encoder.generic(&value, 0);
            let back = decode(&encoder.out).unwrap();
            proptest::prop_assert_eq!(back, value);
        }
    }
}
