//! A restricted pickle reader for the CIFAR python batches: dicts of numpy uint8 arrays, int
//! lists and strings, as written by Python 2 `cPickle` (protocol 2) and Python 3 (protocols 2 to
//! 4).
//!
//! The reader is a small pickle virtual machine that never calls anything. The only globals it
//! accepts are `numpy.core.multiarray._reconstruct` (also spelled `numpy._core.multiarray`),
//! `numpy.ndarray`, `numpy.dtype` and `_codecs.encode`. REDUCE and BUILD on them are
//! interpreted here to rebuild a C-order uint8 array, and `_codecs.encode(text, "latin1")`, which
//! Python 3 writes for bytes under protocol 2, is turned into those bytes. Every other global,
//! and every opcode outside the list in `Machine::step`, is rejected with its byte offset.
//!
//! Every length read from the input is checked against the bytes that remain before it is used,
//! and strings and bytes are borrowed from the input instead of copied.

mod machine;
mod numpy;
mod opcode;
#[cfg(test)]
mod tests;

use std::path::Path;

use machine::Machine;

use crate::error::{Error, Result};

/// Maximum number of opcodes per pickle, which bounds the memory that values can take up. It is
/// about 20 times the 200,362 opcodes that Python 2 `cPickle` writes for a dict laid out like
/// CIFAR-100 python `train` (50,000 images, filenames and two label lists).
const MAX_OPCODES: usize = 1 << 22;

/// A value on the pickle stack, in a container or in the memo.
///
/// Immutable scalars and strings are stored inline. Tuples, lists, dicts and numpy objects live
/// in [`Pickle`]'s object table, and values refer to them by [`ObjectId`], so that the memo and
/// the containers share one object as Python does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Value<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A Python 2 `str` or Python 3 `bytes`.
    Bytes(&'a [u8]),
    /// A unicode string.
    Text(&'a str),
    Global(Global),
    Object(ObjectId),
}

/// An index into the object table of a [`Pickle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ObjectId(usize);

/// The module globals a pickle may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Global {
    /// `numpy.core.multiarray._reconstruct`: creates an empty array that BUILD fills.
    Reconstruct,
    /// `numpy.ndarray`: only valid as the first argument of `_reconstruct`.
    Ndarray,
    /// `numpy.dtype`: only `dtype("u1")` is accepted.
    Dtype,
    /// `_codecs.encode`: only `encode(text, "latin1")` is accepted.
    CodecsEncode,
}

/// A mutable or heap-allocated object.
#[derive(Debug)]
enum Object<'a> {
    Tuple(Vec<Value<'a>>),
    List(Vec<Value<'a>>),
    /// Key-value pairs in insertion order. On lookup, a later pair with an equal key wins.
    Dict(Vec<(Value<'a>, Value<'a>)>),
    /// Bytes produced by `_codecs.encode`.
    OwnedBytes(Vec<u8>),
    /// A uint8 dtype, whose `built` turns true once BUILD has checked its state.
    Dtype {
        built: bool,
    },
    /// An array made by `_reconstruct`, which is `None` until BUILD sets its shape and data.
    Array(Option<Array<'a>>),
}

#[derive(Debug)]
struct Array<'a> {
    shape: Vec<usize>,
    /// A [`Value::Bytes`] or an [`Object::OwnedBytes`] of exactly `shape.iter().product()` bytes.
    data: Value<'a>,
}

/// A parsed pickle: its objects and the value that STOP returned.
#[derive(Debug)]
pub(super) struct Pickle<'a> {
    objects: Vec<Object<'a>>,
    root: Value<'a>,
}

/// Parses `input`, the contents of the file `path`, into a [`Pickle`].
///
/// # Errors
///
/// Returns [`Error::Format`] naming the byte offset and opcode of the first problem. Problems are
/// an unsupported opcode or global, a length past the end of the input, a stack or memo error,
/// an array that is not C-order uint8, a missing STOP, or bytes after STOP.
pub(super) fn parse<'a>(path: &Path, input: &'a [u8]) -> Result<Pickle<'a>> {
    let mut machine = Machine::new(input);

    for _ in 0..MAX_OPCODES {
        let offset = machine.position;
        let Some(&opcode) = input.get(offset) else {
            return Err(Error::format(
                path,
                format!("pickle ends at byte {offset} without a STOP opcode"),
            ));
        };
        machine.position += 1;

        let outcome = machine.step(opcode).map_err(|message| {
            Error::format(
                path,
                format!(
                    "pickle byte offset {offset}: opcode 0x{opcode:02x} ({}): {message}",
                    opcode::name(opcode)
                ),
            )
        })?;

        if let Some(root) = outcome {
            if machine.position != input.len() {
                return Err(Error::format(
                    path,
                    format!(
                        "pickle has {} bytes after the STOP opcode at byte offset {offset}",
                        input.len() - machine.position
                    ),
                ));
            }
            return Ok(Pickle { objects: machine.objects, root });
        }
    }

    Err(Error::format(path, format!("pickle has more than {MAX_OPCODES} opcodes")))
}

impl<'a> Pickle<'a> {
    /// Returns the value the pickle evaluates to.
    pub(super) fn root(&self) -> Value<'a> {
        self.root
    }

    /// Returns the dict entries of `value`, or a message naming what it is instead.
    pub(super) fn dict_entries(
        &self,
        value: Value<'a>,
    ) -> std::result::Result<&[(Value<'a>, Value<'a>)], String> {
        match self.object(value) {
            Some(Object::Dict(pairs)) => Ok(pairs),
            _ => Err(format!("expected a dict, found {}", self.describe(value))),
        }
    }

    /// Looks up the string key `key`, stored as bytes or as text, in the dict `value`. The last of
    /// several equal keys wins, as in Python.
    pub(super) fn dict_get(
        &self,
        value: Value<'a>,
        key: &str,
    ) -> std::result::Result<Option<Value<'a>>, String> {
        let pairs = self.dict_entries(value)?;
        let found = pairs.iter().rev().find(|(k, _)| text_or_bytes(*k) == Some(key.as_bytes()));
        Ok(found.map(|&(_, v)| v))
    }

    /// Returns the string keys of the dict `value`, for messages.
    pub(super) fn dict_keys(&self, value: Value<'a>) -> Vec<String> {
        let Ok(pairs) = self.dict_entries(value) else {
            return Vec::new();
        };
        pairs
            .iter()
            .filter_map(|(k, _)| text_or_bytes(*k))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    /// Returns the shape and C-order data of the uint8 array `value`.
    pub(super) fn u8_array(
        &self,
        value: Value<'a>,
    ) -> std::result::Result<(&[usize], &[u8]), String> {
        match self.object(value) {
            Some(Object::Array(Some(array))) => {
                let data = bytes_of(&self.objects, array.data).ok_or("array data is not bytes")?;
                Ok((&array.shape, data))
            }
            _ => Err(format!("expected a numpy uint8 array, found {}", self.describe(value))),
        }
    }

    /// Returns the items of the list or tuple `value`.
    pub(super) fn sequence(&self, value: Value<'a>) -> std::result::Result<&[Value<'a>], String> {
        match self.object(value) {
            Some(Object::List(items) | Object::Tuple(items)) => Ok(items),
            _ => Err(format!("expected a list, found {}", self.describe(value))),
        }
    }

    /// Returns the items of the list or tuple of ints `value`.
    pub(super) fn int_list(&self, value: Value<'a>) -> std::result::Result<Vec<i64>, String> {
        let items = self.sequence(value)?;
        items
            .iter()
            .enumerate()
            .map(|(index, item)| match *item {
                Value::Int(number) => Ok(number),
                other => Err(format!("item {index} is {}, expected an int", self.describe(other))),
            })
            .collect()
    }

    /// Returns the items of the list or tuple of strings `value`, decoding bytes as UTF-8.
    pub(super) fn text_list(&self, value: Value<'a>) -> std::result::Result<Vec<String>, String> {
        let items = self.sequence(value)?;
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let bytes = text_or_bytes(*item).ok_or_else(|| {
                    format!("item {index} is {}, expected a string", self.describe(*item))
                })?;
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| format!("item {index} is not valid UTF-8"))
            })
            .collect()
    }

    /// Returns what kind of value `value` is, for messages: "an int", "a list", ...
    pub(super) fn describe(&self, value: Value<'a>) -> &'static str {
        match self.object(value) {
            Some(object) => object_kind(object),
            None => kind_of(&value),
        }
    }

    fn object(&self, value: Value<'a>) -> Option<&Object<'a>> {
        match value {
            Value::Object(ObjectId(index)) => self.objects.get(index),
            _ => None,
        }
    }
}

/// Returns the bytes of a [`Value::Bytes`] or of an [`Object::OwnedBytes`].
fn bytes_of<'s, 'a: 's>(objects: &'s [Object<'a>], value: Value<'a>) -> Option<&'s [u8]> {
    match value {
        Value::Bytes(bytes) => Some(bytes),
        Value::Object(ObjectId(index)) => match objects.get(index) {
            Some(Object::OwnedBytes(bytes)) => Some(bytes),
            _ => None,
        },
        _ => None,
    }
}

fn text_or_bytes(value: Value<'_>) -> Option<&[u8]> {
    match value {
        Value::Bytes(bytes) => Some(bytes),
        Value::Text(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn kind_of(value: &Value<'_>) -> &'static str {
    match value {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Bytes(_) => "bytes",
        Value::Text(_) => "a string",
        Value::Global(_) => "a global",
        Value::Object(_) => "an object",
    }
}

fn object_kind(object: &Object<'_>) -> &'static str {
    match object {
        Object::Tuple(_) => "a tuple",
        Object::List(_) => "a list",
        Object::Dict(_) => "a dict",
        Object::OwnedBytes(_) => "bytes",
        Object::Dtype { .. } => "a dtype",
        Object::Array(_) => "an array",
    }
}
