//! Search spaces: named parameters, their ranges and their encoding in the unit cube.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The value of one parameter in a point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// An integer, from an `int:` or `logint:` range.
    Int(i64),
    /// A real number, from a `lin:` or `log:` range.
    Float(f64),
    /// One of the values of a `choice:`.
    Text(String),
}

impl Value {
    /// Returns the value as a real number (integers convert, text does not).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::Float(v) => Some(*v),
            Value::Text(_) => None,
        }
    }

    /// Returns the value as an integer (only `Int`, floats are not truncated).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// Returns the value as text (only `Text`).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// Writes integers and text as they are, and floats in the shortest form that reads back
    /// as the same number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Text(v) => f.write_str(v),
        }
    }
}

/// One point of a search space: parameter name to value.
pub type Point = BTreeMap<String, Value>;

/// Spacing of a numeric range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scale {
    /// Evenly spaced values.
    Linear,
    /// Evenly spaced logarithms, for quantities such as learning rates that span decades.
    Log,
}

/// One searched parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Param {
    /// A real number in `low..=high`.
    Float {
        /// Parameter name.
        name: String,
        /// Lower bound, included.
        low: f64,
        /// Upper bound, included.
        high: f64,
        /// Spacing of the range.
        scale: Scale,
    },
    /// An integer in `low..=high`.
    Int {
        /// Parameter name.
        name: String,
        /// Lower bound, included.
        low: i64,
        /// Upper bound, included.
        high: i64,
        /// Spacing of the range.
        scale: Scale,
    },
    /// One of a list of names, for example architectures.
    Choice {
        /// Parameter name.
        name: String,
        /// The values, in the order given.
        values: Vec<String>,
    },
}

impl Param {
    /// Parses a spec: `NAME=log:0.01..0.5` (log-scale real), `NAME=lin:0..0.3` (linear real),
    /// `NAME=int:64..256`, `NAME=logint:16..512`, `NAME=choice:resnet20,resnet32`, or
    /// `NAME=VALUE`, a choice with one value that fixes the parameter.
    ///
    /// # Errors
    ///
    /// [`Error::Spec`] naming the spec and the reason, for example
    /// `lr=log:-1..2: log scale needs low > 0, got -1`.
    pub fn parse(spec: &str) -> Result<Param> {
        let invalid = |reason: String| Error::Spec { spec: spec.to_string(), reason };

        let Some((name, body)) = spec.split_once('=') else {
            return Err(invalid("expected NAME=KIND:RANGE, for example lr=log:0.01..0.5".into()));
        };
        let name = name.trim();
        check_name(name).map_err(invalid)?;
        let name = name.to_string();
        let body = body.trim();

        let (kind, range) = match body.split_once(':') {
            Some((kind, range)) => (kind.trim(), range.trim()),
            None => ("", body),
        };
        match kind {
            "log" | "lin" => {
                let (low, high) = parse_range::<f64>(range).map_err(invalid)?;
                let scale = if kind == "log" { Scale::Log } else { Scale::Linear };
                check_float_range(low, high, scale).map_err(invalid)?;
                Ok(Param::Float { name, low, high, scale })
            }
            "int" | "logint" => {
                let (low, high) = parse_range::<i64>(range).map_err(invalid)?;
                let scale = if kind == "logint" { Scale::Log } else { Scale::Linear };
                check_int_range(low, high, scale).map_err(invalid)?;
                Ok(Param::Int { name, low, high, scale })
            }
            "choice" => {
                let values: Vec<String> = range.split(',').map(|v| v.trim().to_string()).collect();
                check_choices(&values).map_err(invalid)?;
                Ok(Param::Choice { name, values })
            }
            // A range with an unknown kind is most likely a typo such as `lg:0.01..0.5`.
            _ if !kind.is_empty() && range.contains("..") => Err(invalid(format!(
                "unknown kind {kind:?}; expected log, lin, int, logint or choice"
            ))),
            // No known kind: the whole body is one fixed value, which may itself contain ':'.
            _ => {
                if body.is_empty() {
                    return Err(invalid("missing value after '='".into()));
                }
                Ok(Param::Choice { name, values: vec![body.to_string()] })
            }
        }
    }

    /// Returns the parameter's name.
    pub fn name(&self) -> &str {
        match self {
            Param::Float { name, .. } | Param::Int { name, .. } | Param::Choice { name, .. } => {
                name
            }
        }
    }

    /// Checks that `v` is a value of this parameter: a number inside the range, an integer for
    /// an integer range, or one of the listed choices. The error names the parameter and value.
    pub fn check(&self, v: &Value) -> std::result::Result<(), String> {
        match (self, v) {
            (Param::Float { low, high, .. }, Value::Float(_) | Value::Int(_)) => {
                let x = v.as_f64().unwrap_or(f64::NAN);
                if x >= *low && x <= *high {
                    Ok(())
                } else {
                    Err(format!("{} = {x} is outside {low}..{high}", self.name()))
                }
            }
            (Param::Int { low, high, .. }, Value::Int(x)) => {
                if x >= low && x <= high {
                    Ok(())
                } else {
                    Err(format!("{} = {x} is outside {low}..{high}", self.name()))
                }
            }
            (Param::Choice { values, .. }, Value::Text(x)) => {
                if values.contains(x) {
                    Ok(())
                } else {
                    Err(format!("{} = {x:?} is not one of {values:?}", self.name()))
                }
            }
            _ => Err(format!("{} = {v} has the wrong kind for {self}", self.name())),
        }
    }

    /// Encodes a value in `[0, 1]`: `(v - low) / (high - low)` in the parameter's scale
    /// (logarithms for [`Scale::Log`]), and `index / (n - 1)` for a choice of `n` values (0 when
    /// `n` is 1). Values outside the range are clamped. A value that [`Param::check`] rejects
    /// (wrong kind, unknown choice) encodes as NaN.
    pub fn to_unit(&self, v: &Value) -> f64 {
        match self {
            Param::Float { low, high, scale, .. } => match v.as_f64() {
                Some(x) => unit_in_range(x, *low, *high, *scale),
                None => f64::NAN,
            },
            Param::Int { low, high, scale, .. } => match v.as_i64() {
                Some(x) => unit_in_range(x as f64, *low as f64, *high as f64, *scale),
                None => f64::NAN,
            },
            Param::Choice { values, .. } => {
                let Some(index) = v.as_str().and_then(|x| values.iter().position(|c| c == x))
                else {
                    return f64::NAN;
                };
                if values.len() == 1 {
                    0.0
                } else {
                    index as f64 / (values.len() - 1) as f64
                }
            }
        }
    }

    /// Decodes `u` (clamped to `[0, 1]`, NaN read as 0) into a value of this parameter.
    ///
    /// Reals map continuously. Integers and choices split `[0, 1]` into one equal bin per value
    /// (in the parameter's scale), so a uniform `u` gives every value the same chance, and
    /// `from_unit(to_unit(v)) == v` for every valid `v`.
    pub fn from_unit(&self, u: f64) -> Value {
        let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
        match self {
            Param::Float { low, high, scale, .. } => {
                Value::Float(value_in_range(u, *low, *high, *scale).clamp(*low, *high))
            }
            Param::Int { low, high, scale, .. } => {
                // Bin v covers [v, v + 1) in the scale, so the continuous range ends at high + 1.
                let x = value_in_range(u, *low as f64, *high as f64 + 1.0, *scale);
                Value::Int((x.floor() as i64).clamp(*low, *high))
            }
            Param::Choice { values, .. } => {
                let index = ((u * values.len() as f64).floor() as usize).min(values.len() - 1);
                Value::Text(values[index].clone())
            }
        }
    }

    /// Returns `points` values evenly spaced in the parameter's scale, both ends included (the
    /// middle of the range when `points` is 1). Integer ranges are rounded and deduplicated, so
    /// they may give fewer values. A choice gives all its values, whatever `points` is.
    pub fn grid(&self, points: usize) -> Vec<Value> {
        let fractions: Vec<f64> = match points {
            0 => Vec::new(),
            1 => vec![0.5],
            n => (0..n).map(|i| i as f64 / (n - 1) as f64).collect(),
        };
        match self {
            Param::Float { low, high, scale, .. } => fractions
                .iter()
                .map(|&u| Value::Float(value_in_range(u, *low, *high, *scale).clamp(*low, *high)))
                .collect(),
            Param::Int { low, high, scale, .. } => {
                let mut values: Vec<Value> = Vec::new();
                for &u in &fractions {
                    let x = value_in_range(u, *low as f64, *high as f64, *scale).round() as i64;
                    let v = Value::Int(x.clamp(*low, *high));
                    if !values.contains(&v) {
                        values.push(v);
                    }
                }
                values
            }
            Param::Choice { values, .. } => values.iter().cloned().map(Value::Text).collect(),
        }
    }
}

impl fmt::Display for Param {
    /// Writes the spec that [`Param::parse`] reads back as the same parameter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Float { name, low, high, scale } => {
                let kind = if *scale == Scale::Log { "log" } else { "lin" };
                write!(f, "{name}={kind}:{low}..{high}")
            }
            Param::Int { name, low, high, scale } => {
                let kind = if *scale == Scale::Log { "logint" } else { "int" };
                write!(f, "{name}={kind}:{low}..{high}")
            }
            Param::Choice { name, values } => write!(f, "{name}=choice:{}", values.join(",")),
        }
    }
}

/// A search space: the parameters in the order given, which is the order of the unit-cube axes,
/// of grid nesting and of table columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Space {
    /// The parameters, with unique names.
    pub params: Vec<Param>,
}

impl Space {
    /// Creates a space from parameters, in axis order.
    ///
    /// # Errors
    ///
    /// [`Error::Space`] when `params` is empty or two parameters share a name.
    pub fn new(params: Vec<Param>) -> Result<Space> {
        if params.is_empty() {
            return Err(Error::Space("no parameters to search; give at least one".into()));
        }
        for (i, param) in params.iter().enumerate() {
            if let Some(other) = params[..i].iter().find(|p| p.name() == param.name()) {
                return Err(Error::Space(format!(
                    "parameter {:?} is given twice: {other} and {param}",
                    param.name()
                )));
            }
        }
        Ok(Space { params })
    }

    /// Parses one spec per parameter (see [`Param::parse`]).
    ///
    /// # Errors
    ///
    /// The first invalid spec, or the errors of [`Space::new`].
    pub fn parse(specs: &[String]) -> Result<Space> {
        let params = specs.iter().map(|s| Param::parse(s)).collect::<Result<Vec<_>>>()?;
        Space::new(params)
    }

    /// Returns the number of parameters, the dimension of the unit cube.
    pub fn dims(&self) -> usize {
        self.params.len()
    }

    /// Encodes a point in the unit cube, one coordinate per parameter in space order.
    ///
    /// # Errors
    ///
    /// [`Error::Point`] naming a missing key, an extra key or a value the parameter rejects.
    pub fn encode(&self, p: &Point) -> Result<Vec<f64>> {
        let invalid = |reason: String| Error::Point { point: point_json(p), reason };

        if let Some(extra) = p.keys().find(|k| !self.params.iter().any(|q| q.name() == *k)) {
            return Err(invalid(format!("{extra:?} is not a parameter of the search space")));
        }
        let mut unit = Vec::with_capacity(self.params.len());
        for param in &self.params {
            let Some(v) = p.get(param.name()) else {
                return Err(invalid(format!("parameter {:?} is missing", param.name())));
            };
            param.check(v).map_err(invalid)?;
            unit.push(param.to_unit(v));
        }
        Ok(unit)
    }

    /// Decodes a unit-cube vector with one coordinate per parameter, in space order. Missing
    /// coordinates read as 0.
    pub fn decode(&self, u: &[f64]) -> Point {
        self.params
            .iter()
            .enumerate()
            .map(|(i, param)| {
                let ui = u.get(i).copied().unwrap_or(0.0);
                (param.name().to_string(), param.from_unit(ui))
            })
            .collect()
    }

    /// Returns the Cartesian product of each parameter's [`Param::grid`], with the first
    /// parameter varying slowest and the last fastest.
    pub fn grid(&self, points_per_axis: usize) -> Vec<Point> {
        let mut points = vec![Point::new()];
        for param in &self.params {
            let values = param.grid(points_per_axis);
            let mut next = Vec::with_capacity(points.len() * values.len());
            for point in &points {
                for v in &values {
                    let mut extended = point.clone();
                    extended.insert(param.name().to_string(), v.clone());
                    next.push(extended);
                }
            }
            points = next;
        }
        points
    }

    /// Draws a point uniformly in the unit cube, one `rng` draw per parameter in space order:
    /// uniform for linear ranges, log-uniform for log ranges, equal chances for choices.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Point {
        let u: Vec<f64> = self.params.iter().map(|_| rng.random::<f64>()).collect();
        self.decode(&u)
    }
}

/// Writes a point as compact JSON for error messages.
pub(crate) fn point_json(p: &Point) -> String {
    serde_json::to_string(p).unwrap_or_else(|_| format!("{p:?}"))
}

fn unit_in_range(x: f64, low: f64, high: f64, scale: Scale) -> f64 {
    let u = match scale {
        Scale::Linear => (x - low) / (high - low),
        Scale::Log => (x.ln() - low.ln()) / (high.ln() - low.ln()),
    };
    u.clamp(0.0, 1.0)
}

fn value_in_range(u: f64, low: f64, high: f64, scale: Scale) -> f64 {
    // Exact ends, which exp(ln(x)) does not always give back.
    if u <= 0.0 {
        return low;
    }
    if u >= 1.0 {
        return high;
    }
    match scale {
        Scale::Linear => low + u * (high - low),
        Scale::Log => (low.ln() + u * (high.ln() - low.ln())).exp(),
    }
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("missing parameter name before '='".into());
    }
    let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid {
        return Err(format!(
            "parameter name {name:?} may contain only ASCII letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

fn parse_range<T: std::str::FromStr>(range: &str) -> std::result::Result<(T, T), String> {
    let Some((low, high)) = range.split_once("..") else {
        return Err(format!("expected a range LOW..HIGH, got {range:?}"));
    };
    let parse = |text: &str| {
        text.trim()
            .parse::<T>()
            .map_err(|_| format!("invalid bound {:?} in {range:?}", text.trim()))
    };
    Ok((parse(low)?, parse(high)?))
}

fn check_float_range(low: f64, high: f64, scale: Scale) -> std::result::Result<(), String> {
    if !low.is_finite() || !high.is_finite() {
        return Err(format!("bounds must be finite, got {low}..{high}"));
    }
    if scale == Scale::Log && low <= 0.0 {
        return Err(format!("log scale needs low > 0, got {low}"));
    }
    if low >= high {
        return Err(format!(
            "needs low < high, got {low}..{high}; fix a value with NAME=VALUE instead"
        ));
    }
    Ok(())
}

fn check_int_range(low: i64, high: i64, scale: Scale) -> std::result::Result<(), String> {
    if scale == Scale::Log && low <= 0 {
        return Err(format!("log scale needs low > 0, got {low}"));
    }
    if low >= high {
        return Err(format!(
            "needs low < high, got {low}..{high}; fix a value with NAME=VALUE instead"
        ));
    }
    // Bin arithmetic runs in f64, which is exact for integers up to 2^53.
    const LIMIT: i64 = 1 << 52;
    if low.abs() > LIMIT || high.abs() > LIMIT {
        return Err(format!("bounds must lie within -2^52..2^52, got {low}..{high}"));
    }
    Ok(())
}

fn check_choices(values: &[String]) -> std::result::Result<(), String> {
    if values.iter().any(|v| v.is_empty()) {
        return Err("empty value in the choice list".into());
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(format!("value {v:?} is listed twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn param(spec: &str) -> Param {
        Param::parse(spec).unwrap()
    }

    #[test]
    fn parse_each_kind() {
        assert_eq!(
            param("lr=log:0.01..0.5"),
            Param::Float { name: "lr".into(), low: 0.01, high: 0.5, scale: Scale::Log }
        );
        assert_eq!(
            param("strength = lin:0..0.3"),
            Param::Float { name: "strength".into(), low: 0.0, high: 0.3, scale: Scale::Linear }
        );
        assert_eq!(
            param("batch=int:64..256"),
            Param::Int { name: "batch".into(), low: 64, high: 256, scale: Scale::Linear }
        );
        assert_eq!(
            param("batch=logint:16..512"),
            Param::Int { name: "batch".into(), low: 16, high: 512, scale: Scale::Log }
        );
        assert_eq!(
            param("model=choice:resnet20,resnet32"),
            Param::Choice {
                name: "model".into(),
                values: vec!["resnet20".into(), "resnet32".into()]
            }
        );
        assert_eq!(
            param("wd=0.1"),
            Param::Choice { name: "wd".into(), values: vec!["0.1".into()] }
        );
    }

    #[test]
    fn parse_display_round_trip() {
        for spec in [
            "lr=log:0.01..0.5",
            "x=lin:-1.5..2",
            "b=int:-3..7",
            "b=logint:16..512",
            "m=choice:a,b,c",
            "m=choice:only",
        ] {
            let p = param(spec);
            assert_eq!(Param::parse(&p.to_string()).unwrap(), p, "{spec} -> {p}");
        }
    }

    #[test]
    fn parse_rejects_bad_specs() {
        let cases = [
            ("lr=log:-1..2", "lr=log:-1..2: log scale needs low > 0, got -1"),
            ("lr=log:0..2", "log scale needs low > 0, got 0"),
            ("lr", "expected NAME=KIND:RANGE"),
            ("=lin:0..1", "missing parameter name"),
            ("l r=lin:0..1", "may contain only"),
            ("x=lin:1..1", "needs low < high, got 1..1"),
            ("x=lin:2..1", "needs low < high, got 2..1"),
            ("x=lin:0..inf", "bounds must be finite"),
            ("x=lin:0-1", "expected a range LOW..HIGH"),
            ("x=lin:a..1", "invalid bound \"a\""),
            ("x=int:0.5..3", "invalid bound \"0.5\""),
            ("x=logint:0..8", "log scale needs low > 0, got 0"),
            ("x=choice:a,,b", "empty value"),
            ("x=choice:a,b,a", "value \"a\" is listed twice"),
            ("x=", "missing value"),
            ("lr=lg:0.01..0.5", "unknown kind \"lg\""),
        ];
        for (spec, expected) in cases {
            let message = Param::parse(spec).unwrap_err().to_string();
            assert!(message.contains(expected), "{spec}: {message:?} lacks {expected:?}");
            assert!(message.starts_with(spec), "{spec}: {message:?} does not name the spec");
        }
    }

    #[test]
    fn unit_round_trip_int_and_choice() {
        for spec in ["b=int:-3..7", "b=logint:16..512", "b=int:0..1", "b=logint:1..1000"] {
            let p = param(spec);
            let Param::Int { low, high, .. } = p else { unreachable!() };
            for v in low..=high {
                let u = p.to_unit(&Value::Int(v));
                assert!((0.0..=1.0).contains(&u), "{spec}: {v} -> {u}");
                assert_eq!(p.from_unit(u), Value::Int(v), "{spec}: {v} -> {u}");
            }
        }
        let p = param("m=choice:a,b,c,d");
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let u = p.to_unit(&Value::Text(name.into()));
            assert_eq!(u, i as f64 / 3.0);
            assert_eq!(p.from_unit(u), Value::Text(name.into()));
        }
        assert_eq!(param("m=x").to_unit(&Value::Text("x".into())), 0.0);
        assert!(p.to_unit(&Value::Text("e".into())).is_nan());
    }

    #[test]
    fn unit_encoding_of_log_range() {
        let p = param("lr=log:0.001..0.1");
        assert_eq!(p.to_unit(&Value::Float(0.001)), 0.0);
        assert_eq!(p.to_unit(&Value::Float(0.1)), 1.0);
        assert!((p.to_unit(&Value::Float(0.01)) - 0.5).abs() < 1e-12);
        let Value::Float(mid) = p.from_unit(0.5) else { panic!("not a float") };
        assert!((mid - 0.01).abs() < 1e-12, "{mid}");
        assert_eq!(p.from_unit(2.0), Value::Float(0.1));
        assert_eq!(p.from_unit(f64::NAN), Value::Float(0.001));
    }

    #[test]
    fn integer_bins_equally_likely() {
        // Uniform u over a 4-value linear range: each value takes a quarter of [0, 1].
        let p = param("b=int:1..4");
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let u = (i as f64 + 0.5) / 4000.0;
            let v = p.from_unit(u).as_i64().unwrap();
            counts[(v - 1) as usize] += 1;
        }
        assert_eq!(counts, [1000; 4]);
    }

    #[test]
    fn grid_counts_and_values() {
        let floats = param("x=lin:0..1").grid(5);
        assert_eq!(floats, [0.0, 0.25, 0.5, 0.75, 1.0].map(Value::Float).to_vec());

        let logs: Vec<f64> =
            param("lr=log:0.001..0.1").grid(3).iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(logs.len(), 3);
        assert!((logs[0] - 0.001).abs() < 1e-15);
        assert!((logs[1] - 0.01).abs() < 1e-12, "{logs:?}");
        assert!((logs[2] - 0.1).abs() < 1e-15);

        assert_eq!(param("x=lin:0..2").grid(1), vec![Value::Float(1.0)]);
        assert_eq!(param("b=logint:16..256").grid(3), [16, 64, 256].map(Value::Int).to_vec());
        // Rounding collapses duplicates.
        assert_eq!(param("b=int:0..2").grid(5), [0, 1, 2].map(Value::Int).to_vec());
        assert_eq!(param("m=choice:a,b,c").grid(2).len(), 3);
        assert!(param("x=lin:0..1").grid(0).is_empty());

        let space = Space::parse(&["a=lin:0..1".to_string(), "m=choice:p,q".to_string()]).unwrap();
        let grid = space.grid(3);
        assert_eq!(grid.len(), 6);
        assert_eq!(grid[0]["a"], Value::Float(0.0));
        assert_eq!(grid[0]["m"], Value::Text("p".into()));
        assert_eq!(grid[1]["m"], Value::Text("q".into()));
        assert_eq!(grid[5]["a"], Value::Float(1.0));
    }

    #[test]
    fn space_rejects_empty_and_duplicates() {
        let message = Space::new(Vec::new()).unwrap_err().to_string();
        assert!(message.contains("no parameters"), "{message}");
        let specs = ["lr=log:0.01..0.1".to_string(), "lr=lin:0..1".to_string()];
        let message = Space::parse(&specs).unwrap_err().to_string();
        assert!(message.contains("\"lr\" is given twice"), "{message}");
    }

    #[test]
    fn encode_names_missing_and_extra_keys() {
        let space = Space::parse(&["a=lin:0..1".to_string(), "b=int:1..3".to_string()]).unwrap();
        let mut point = Point::new();
        point.insert("a".into(), Value::Float(0.5));
        let message = space.encode(&point).unwrap_err().to_string();
        assert!(message.contains("parameter \"b\" is missing"), "{message}");

        point.insert("b".into(), Value::Int(2));
        assert_eq!(space.encode(&point).unwrap(), vec![0.5, 0.5]);

        point.insert("c".into(), Value::Int(2));
        let message = space.encode(&point).unwrap_err().to_string();
        assert!(message.contains("\"c\" is not a parameter"), "{message}");

        point.remove("c");
        point.insert("b".into(), Value::Int(9));
        let message = space.encode(&point).unwrap_err().to_string();
        assert!(message.contains("b = 9 is outside 1..3"), "{message}");

        point.insert("b".into(), Value::Float(2.0));
        let message = space.encode(&point).unwrap_err().to_string();
        assert!(message.contains("wrong kind"), "{message}");
    }

    #[test]
    fn value_json_round_trip() {
        let mut point = Point::new();
        point.insert("a".into(), Value::Float(1.0));
        point.insert("b".into(), Value::Int(3));
        point.insert("c".into(), Value::Text("resnet20".into()));
        point.insert("d".into(), Value::Float(0.1 + 0.2));
        let json = serde_json::to_string(&point).unwrap();
        let back: Point = serde_json::from_str(&json).unwrap();
        assert_eq!(back, point, "{json}");
    }

    #[test]
    fn log_uniform_sampling() {
        // Log-uniform on [1e-4, 1]: half the mass lies below the geometric mean 1e-2, where a
        // uniform draw would put only 1%.
        let space = Space::parse(&["lr=log:0.0001..1".to_string()]).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 20_000;
        let below =
            (0..n).filter(|_| space.sample(&mut rng)["lr"].as_f64().unwrap() < 0.01).count();
        let fraction = below as f64 / n as f64;
        println!("fraction below the geometric mean: {fraction:.4}");
        // The standard error of a binomial fraction at n = 20000 is 0.0035, so 0.02 is over 5
        // standard errors.
        assert!((fraction - 0.5).abs() < 0.02, "{fraction}");
    }

    proptest::proptest! {
        #[test]
        fn float_unit_round_trip(x in 0.001f64..100.0) {
            let p = param("x=log:0.001..100");
            let back = p.from_unit(p.to_unit(&Value::Float(x))).as_f64().unwrap();
            proptest::prop_assert!((back - x).abs() <= 1e-9 * x, "{x} -> {back}");
        }

        #[test]
        fn decode_gives_valid_points(u in proptest::collection::vec(-0.5f64..1.5, 4)) {
            let specs = ["a=lin:-1..1", "b=logint:16..512", "c=choice:x,y,z", "d=log:1e-5..1"];
            let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
            let space = Space::parse(&specs).unwrap();
            let point = space.decode(&u);
            let encoded = space.encode(&point).unwrap();
            proptest::prop_assert_eq!(space.decode(&encoded), point);
        }
    }
}
