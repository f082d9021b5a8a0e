//! The pickle virtual machine: its stack, memo and the opcodes it executes.

use std::collections::HashMap;

use super::numpy::resolve_global;
use super::opcode::*;
use super::{kind_of, object_kind, Object, ObjectId, Value};

/// The state of a running pickle: the input position, the stack, the open MARKs, the memo and
/// the objects made so far.
pub(super) struct Machine<'a> {
    pub(super) input: &'a [u8],
    pub(super) position: usize,
    pub(super) stack: Vec<Value<'a>>,
    /// Stack lengths at each open MARK.
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u32, Value<'a>>,
    pub(super) objects: Vec<Object<'a>>,
    /// Total length of all `OwnedBytes`, kept at most the input length.
    pub(super) owned_bytes: usize,
}

/// The result of one step: an error message without the byte offset, which `parse` adds.
pub(super) type StepResult<T> = std::result::Result<T, String>;

impl<'a> Machine<'a> {
    /// Creates a machine at the start of `input` with an empty stack and memo.
    pub(super) fn new(input: &'a [u8]) -> Self {
        Machine {
            input,
            position: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            objects: Vec::new(),
            owned_bytes: 0,
        }
    }

    /// Executes one opcode whose argument bytes start at `self.position`.
    ///
    /// Returns the result of the pickle on STOP, `None` otherwise.
    pub(super) fn step(&mut self, opcode: u8) -> StepResult<Option<Value<'a>>> {
        match opcode {
            // Protocol 5 is rejected because numpy pickles arrays there with `_frombuffer` and
            // pickle buffers, which this reader does not rebuild.
            PROTO => {
                let protocol = self.take(1)?[0];
                if protocol > 4 {
                    return Err(format!("protocol {protocol} is not supported, only 2 to 4 are"));
                }
            }
            // An 8-byte frame length that only helps readers buffer, checked and ignored.
            FRAME => {
                let length = u64::from_le_bytes(self.take_array()?);
                self.check_length(length)?;
            }
            STOP => return self.pop().map(Some),
            MARK => self.marks.push(self.stack.len()),

            NONE => self.stack.push(Value::None),
            NEWTRUE => self.stack.push(Value::Bool(true)),
            NEWFALSE => self.stack.push(Value::Bool(false)),
            BININT1 => {
                let value = self.take(1)?[0];
                self.stack.push(Value::Int(i64::from(value)));
            }
            BININT2 => {
                let value = u16::from_le_bytes(self.take_array()?);
                self.stack.push(Value::Int(i64::from(value)));
            }
            BININT => {
                let value = i32::from_le_bytes(self.take_array()?);
                self.stack.push(Value::Int(i64::from(value)));
            }
            LONG1 => {
                let length = usize::from(self.take(1)?[0]);
                let bytes = self.take(length)?;
                self.stack.push(Value::Int(long_from_le_bytes(bytes)?));
            }
            BINFLOAT => {
                let value = f64::from_be_bytes(self.take_array()?);
                self.stack.push(Value::Float(value));
            }

            SHORT_BINSTRING | SHORT_BINBYTES => {
                let length = u64::from(self.take(1)?[0]);
                let bytes = self.take_checked(length)?;
                self.stack.push(Value::Bytes(bytes));
            }
            // A signed 4-byte length, unlike BINBYTES.
            BINSTRING => {
                let length = i32::from_le_bytes(self.take_array()?);
                let length =
                    u64::try_from(length).map_err(|_| format!("negative length {length}"))?;
                let bytes = self.take_checked(length)?;
                self.stack.push(Value::Bytes(bytes));
            }
            BINBYTES => {
                let length = u32::from_le_bytes(self.take_array()?);
                let bytes = self.take_checked(u64::from(length))?;
                self.stack.push(Value::Bytes(bytes));
            }
            BINBYTES8 => {
                let length = u64::from_le_bytes(self.take_array()?);
                let bytes = self.take_checked(length)?;
                self.stack.push(Value::Bytes(bytes));
            }
            SHORT_BINUNICODE => {
                let length = u64::from(self.take(1)?[0]);
                let text = self.take_text(length)?;
                self.stack.push(Value::Text(text));
            }
            BINUNICODE => {
                let length = u32::from_le_bytes(self.take_array()?);
                let text = self.take_text(u64::from(length))?;
                self.stack.push(Value::Text(text));
            }
            BINUNICODE8 => {
                let length = u64::from_le_bytes(self.take_array()?);
                let text = self.take_text(length)?;
                self.stack.push(Value::Text(text));
            }

            EMPTY_TUPLE => self.push_object(Object::Tuple(Vec::new())),
            TUPLE1..=TUPLE3 => {
                let count = usize::from(opcode - TUPLE1) + 1;
                let mut items = vec![Value::None; count];
                for item in items.iter_mut().rev() {
                    *item = self.pop()?;
                }
                self.push_object(Object::Tuple(items));
            }
            TUPLE => {
                let items = self.pop_mark()?;
                self.push_object(Object::Tuple(items));
            }
            EMPTY_LIST => self.push_object(Object::List(Vec::new())),
            LIST => {
                let items = self.pop_mark()?;
                self.push_object(Object::List(items));
            }
            EMPTY_DICT => self.push_object(Object::Dict(Vec::new())),
            DICT => {
                let items = self.pop_mark()?;
                let pairs = into_pairs(items)?;
                self.push_object(Object::Dict(pairs));
            }
            APPEND => {
                let item = self.pop()?;
                self.top_list()?.push(item);
            }
            APPENDS => {
                let items = self.pop_mark()?;
                self.top_list()?.extend(items);
            }
            SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.top_dict()?.push((key, value));
            }
            SETITEMS => {
                let items = self.pop_mark()?;
                let pairs = into_pairs(items)?;
                self.top_dict()?.extend(pairs);
            }

            BINPUT => {
                let index = u32::from(self.take(1)?[0]);
                self.memo_put(index)?;
            }
            LONG_BINPUT => {
                let index = u32::from_le_bytes(self.take_array()?);
                self.memo_put(index)?;
            }
            MEMOIZE => {
                let index =
                    u32::try_from(self.memo.len()).map_err(|_| "memo is full".to_owned())?;
                self.memo_put(index)?;
            }
            BINGET => {
                let index = u32::from(self.take(1)?[0]);
                self.memo_get(index)?;
            }
            LONG_BINGET => {
                let index = u32::from_le_bytes(self.take_array()?);
                self.memo_get(index)?;
            }

            GLOBAL => {
                let module = self.take_line()?;
                let name = self.take_line()?;
                self.stack.push(Value::Global(resolve_global(module, name)?));
            }
            STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Text(module), Value::Text(name)) = (module, name) else {
                    return Err("module and name must be strings".to_owned());
                };
                self.stack.push(Value::Global(resolve_global(module, name)?));
            }
            REDUCE => {
                let arguments = self.pop()?;
                let callable = self.pop()?;
                let result = self.reduce(callable, arguments)?;
                self.stack.push(result);
            }
            BUILD => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
            }

            _ => return Err("unsupported opcode".to_owned()),
        }
        Ok(None)
    }

    fn remaining(&self) -> usize {
        self.input.len() - self.position
    }

    fn check_length(&self, length: u64) -> StepResult<usize> {
        match usize::try_from(length) {
            Ok(length) if length <= self.remaining() => Ok(length),
            _ => Err(format!(
                "length {length} runs past the end of the input ({} bytes left)",
                self.remaining()
            )),
        }
    }

    /// Takes `length` argument bytes, or returns an error if fewer remain.
    fn take(&mut self, length: usize) -> StepResult<&'a [u8]> {
        if length > self.remaining() {
            return Err(format!("needs {length} argument bytes, but {} remain", self.remaining()));
        }
        let bytes = &self.input[self.position..self.position + length];
        self.position += length;
        Ok(bytes)
    }

    fn take_checked(&mut self, length: u64) -> StepResult<&'a [u8]> {
        let length = self.check_length(length)?;
        self.take(length)
    }

    fn take_array<const N: usize>(&mut self) -> StepResult<[u8; N]> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn take_text(&mut self, length: u64) -> StepResult<&'a str> {
        let bytes = self.take_checked(length)?;
        std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8 in string: {e}"))
    }

    /// Takes a newline-terminated ASCII line, the argument format of GLOBAL.
    fn take_line(&mut self) -> StepResult<&'a str> {
        let rest = &self.input[self.position..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("line has no newline")?;
        let line = &rest[..end];
        self.position += end + 1;
        if !line.is_ascii() {
            return Err("non-ASCII global name".to_owned());
        }
        std::str::from_utf8(line).map_err(|e| e.to_string())
    }

    /// Pops the stack top. As in Python's unpickler, an open MARK hides the items below it.
    fn pop(&mut self) -> StepResult<Value<'a>> {
        let value = self.top()?;
        self.stack.pop();
        Ok(value)
    }

    fn pop_mark(&mut self) -> StepResult<Vec<Value<'a>>> {
        let mark = self.marks.pop().ok_or("no MARK is open")?;
        Ok(self.stack.split_off(mark))
    }

    /// Adds `object` to the object table and returns the value that refers to it.
    pub(super) fn add_object(&mut self, object: Object<'a>) -> Value<'a> {
        self.objects.push(object);
        Value::Object(ObjectId(self.objects.len() - 1))
    }

    fn push_object(&mut self, object: Object<'a>) {
        let value = self.add_object(object);
        self.stack.push(value);
    }

    /// Returns the stack top above the innermost open MARK.
    fn top(&self) -> StepResult<Value<'a>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&value) if self.stack.len() > floor => Ok(value),
            _ => Err("stack is empty".to_owned()),
        }
    }

    fn top_object(&mut self) -> StepResult<&mut Object<'a>> {
        match self.top()? {
            Value::Object(ObjectId(index)) => Ok(&mut self.objects[index]),
            other => Err(format!("stack top is {}, expected a container", kind_of(&other))),
        }
    }

    fn top_list(&mut self) -> StepResult<&mut Vec<Value<'a>>> {
        match self.top_object()? {
            Object::List(items) => Ok(items),
            other => Err(format!("stack top is {}, expected a list", object_kind(other))),
        }
    }

    fn top_dict(&mut self) -> StepResult<&mut Vec<(Value<'a>, Value<'a>)>> {
        match self.top_object()? {
            Object::Dict(pairs) => Ok(pairs),
            other => Err(format!("stack top is {}, expected a dict", object_kind(other))),
        }
    }

    fn memo_put(&mut self, index: u32) -> StepResult<()> {
        let top = self.top()?;
        self.memo.insert(index, top);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> StepResult<()> {
        let value = *self.memo.get(&index).ok_or_else(|| format!("memo has no entry {index}"))?;
        self.stack.push(value);
        Ok(())
    }

    pub(super) fn tuple_items(&self, value: Value<'a>) -> StepResult<&[Value<'a>]> {
        match value {
            Value::Object(ObjectId(index)) => match &self.objects[index] {
                Object::Tuple(items) => Ok(items),
                other => Err(format!("expected a tuple, found {}", object_kind(other))),
            },
            other => Err(format!("expected a tuple, found {}", kind_of(&other))),
        }
    }
}

/// Decodes a LONG1 argument: little-endian two's complement of at most 8 bytes.
fn long_from_le_bytes(bytes: &[u8]) -> StepResult<i64> {
    if bytes.len() > 8 {
        return Err(format!("{}-byte integer does not fit in 64 bits", bytes.len()));
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let mut buffer = if negative { [0xff; 8] } else { [0; 8] };
    buffer[..bytes.len()].copy_from_slice(bytes);
    Ok(i64::from_le_bytes(buffer))
}

fn into_pairs<'a>(items: Vec<Value<'a>>) -> StepResult<Vec<(Value<'a>, Value<'a>)>> {
    if !items.len().is_multiple_of(2) {
        return Err(format!("odd number {} of dict items", items.len()));
    }
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        pairs.push((key, value));
    }
    Ok(pairs)
}
