//! REDUCE and BUILD for the accepted globals, which rebuild numpy uint8 arrays without calling
//! anything.

use super::machine::{Machine, StepResult};
use super::{
    bytes_of, kind_of, object_kind, text_or_bytes, Array, Global, Object, ObjectId, Value,
};

impl<'a> Machine<'a> {
    /// Interprets REDUCE for the accepted globals without calling anything.
    pub(super) fn reduce(
        &mut self,
        callable: Value<'a>,
        arguments: Value<'a>,
    ) -> StepResult<Value<'a>> {
        let Value::Global(global) = callable else {
            return Err(format!("cannot call {}", kind_of(&callable)));
        };
        let arguments = self.tuple_items(arguments)?;

        match global {
            Global::Reconstruct => {
                if arguments.len() != 3 || arguments[0] != Value::Global(Global::Ndarray) {
                    return Err(
                        "_reconstruct arguments must be (numpy.ndarray, shape, dtype)".to_owned()
                    );
                }
                Ok(self.add_object(Object::Array(None)))
            }
            Global::Dtype => {
                let descriptor = arguments.first().and_then(|&v| text_or_bytes(v));
                match descriptor {
                    Some(b"u1") | Some(b"|u1") => {}
                    Some(other) => {
                        return Err(format!(
                            "dtype {:?} is not supported, only uint8 (\"u1\") is",
                            String::from_utf8_lossy(other)
                        ));
                    }
                    None => return Err("dtype needs a type string argument".to_owned()),
                }
                Ok(self.add_object(Object::Dtype { built: false }))
            }
            Global::CodecsEncode => {
                let bytes = encode_latin1(arguments)?;
                self.owned_bytes += bytes.len();
                if self.owned_bytes > self.input.len() {
                    return Err("encoded bytes exceed the input size".to_owned());
                }
                Ok(self.add_object(Object::OwnedBytes(bytes)))
            }
            Global::Ndarray => {
                Err("numpy.ndarray may only be an argument of _reconstruct".to_owned())
            }
        }
    }

    /// Interprets BUILD: sets the state of an array or a dtype made by REDUCE.
    pub(super) fn build(&mut self, target: Value<'a>, state: Value<'a>) -> StepResult<()> {
        let Value::Object(ObjectId(index)) = target else {
            return Err(format!("cannot set the state of {}", kind_of(&target)));
        };

        match &self.objects[index] {
            Object::Array(None) => {
                let array = self.array_from_state(state)?;
                self.objects[index] = Object::Array(Some(array));
            }
            Object::Dtype { built: false } => {
                self.check_dtype_state(state)?;
                self.objects[index] = Object::Dtype { built: true };
            }
            other => return Err(format!("cannot set the state of {}", object_kind(other))),
        }
        Ok(())
    }

    /// Checks the array state `(version 1, shape, dtype, is_fortran, data)` written by numpy's
    /// `ndarray.__reduce__`.
    fn array_from_state(&self, state: Value<'a>) -> StepResult<Array<'a>> {
        let items = self.tuple_items(state)?;
        let [version, shape, dtype, is_fortran, data] = items else {
            return Err(format!("array state has {} items, expected 5", items.len()));
        };

        if *version != Value::Int(1) {
            return Err(format!("array state version {version:?} is not supported, expected 1"));
        }

        let shape: Vec<usize> = self
            .tuple_items(*shape)?
            .iter()
            .map(|dimension| match *dimension {
                Value::Int(size) => usize::try_from(size).map_err(|_| format!("array size {size}")),
                other => Err(format!("array size is {}", kind_of(&other))),
            })
            .collect::<StepResult<_>>()?;

        match *dtype {
            Value::Object(ObjectId(i))
                if matches!(self.objects[i], Object::Dtype { built: true }) => {}
            other => {
                return Err(format!("array dtype is {}, expected a uint8 dtype", kind_of(&other)))
            }
        }

        if !matches!(*is_fortran, Value::Bool(false) | Value::Int(0)) {
            return Err("Fortran-order arrays are not supported".to_owned());
        }

        let data_bytes = bytes_of(&self.objects, *data)
            .ok_or_else(|| format!("array data is {}, expected bytes", kind_of(data)))?;
        let length = data_bytes.len();
        let expected = shape.iter().try_fold(1usize, |product, &size| product.checked_mul(size));
        if expected != Some(length) {
            return Err(format!("array shape {shape:?} does not match its {length} data bytes"));
        }

        Ok(Array { shape, data: *data })
    }

    /// Checks the dtype state `(version, byte order, subarray, names, fields, ...)`.
    fn check_dtype_state(&self, state: Value<'a>) -> StepResult<()> {
        let items = self.tuple_items(state)?;
        let [Value::Int(3 | 4), order, Value::None, Value::None, Value::None, ..] = items else {
            return Err(format!("unsupported dtype state {items:?}"));
        };
        match text_or_bytes(*order) {
            Some(b"|" | b"<" | b">" | b"=") => Ok(()),
            _ => Err(format!("unsupported dtype byte order {order:?}")),
        }
    }
}

pub(super) fn resolve_global(module: &str, name: &str) -> StepResult<Global> {
    match (module, name) {
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
            Ok(Global::Reconstruct)
        }
        ("numpy", "ndarray") => Ok(Global::Ndarray),
        ("numpy", "dtype") => Ok(Global::Dtype),
        ("_codecs", "encode") => Ok(Global::CodecsEncode),
        _ => {
            Err(format!("global {module}.{name} is not allowed, only the numpy array globals are"))
        }
    }
}

/// Computes `_codecs.encode(text, "latin1")`: each character becomes one byte.
fn encode_latin1(arguments: &[Value<'_>]) -> StepResult<Vec<u8>> {
    let [Value::Text(text), Value::Text(encoding)] = arguments else {
        return Err("_codecs.encode arguments must be (text, encoding)".to_owned());
    };
    if !matches!(*encoding, "latin1" | "latin-1") {
        return Err(format!("_codecs.encode encoding {encoding:?} is not supported, only latin1"));
    }
    text.chars()
        .map(|c| u8::try_from(c).map_err(|_| format!("character {c:?} is not latin1")))
        .collect()
}
