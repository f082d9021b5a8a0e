//! Tests of the restricted pickle reader on hand-assembled and fixture pickles.

use super::*;
use crate::source::fixtures::{pickle_dict, Item, PickleStyle};

fn parse_bytes(input: &[u8]) -> Result<Pickle<'_>> {
    parse(Path::new("batch"), input)
}

fn error_text(input: &[u8]) -> String {
    parse_bytes(input).unwrap_err().to_string()
}

#[test]
fn parse_fixture_dict_both_styles() {
    for style in [PickleStyle::Python2, PickleStyle::Python3] {
        let data: Vec<u8> = (0..6).collect();
        let entries = [
            ("data", Item::Array(vec![2, 3], data.clone())),
            ("labels", Item::Ints(vec![0, 255, 256, 70000, -1])),
            ("names", Item::Texts(vec!["cat".into(), "dog".into()])),
            ("count", Item::Int(7)),
        ];
        let bytes = pickle_dict(style, &entries);

        let pickle = parse_bytes(&bytes).unwrap();
        let root = pickle.root();

        let (shape, array) =
            pickle.u8_array(pickle.dict_get(root, "data").unwrap().unwrap()).unwrap();
        assert_eq!(shape, [2, 3], "{style:?}");
        assert_eq!(array, data, "{style:?}");
        let labels = pickle.int_list(pickle.dict_get(root, "labels").unwrap().unwrap()).unwrap();
        assert_eq!(labels, [0, 255, 256, 70000, -1], "{style:?}");
        let names = pickle.text_list(pickle.dict_get(root, "names").unwrap().unwrap()).unwrap();
        assert_eq!(names, ["cat", "dog"], "{style:?}");
        assert_eq!(pickle.dict_get(root, "count").unwrap(), Some(Value::Int(7)), "{style:?}");
        assert_eq!(pickle.dict_get(root, "absent").unwrap(), None, "{style:?}");
    }
}

#[test]
fn memo_shares_mutable_list() {
    // [] BINPUT 1, MARK 5 APPENDS, BINGET 1, TUPLE2, STOP: both items are the same list.
    let bytes = b"\x80\x02]q\x01(K\x05eh\x01\x86.";

    let pickle = parse_bytes(bytes).unwrap();
    let items = pickle.sequence(pickle.root()).unwrap();

    assert_eq!(items.len(), 2);
    assert_eq!(items[0], items[1]);
    assert_eq!(pickle.int_list(items[1]).unwrap(), [5]);
}

#[test]
fn python3_protocol2_codecs_bytes() {
    // What Python 3 writes for b"\x00\xff" under protocol 2: _codecs.encode("\x00\xff", "latin1").
    let mut bytes = b"\x80\x02c_codecs\nencode\nq\x00\
        X\x03\x00\x00\x00\x00\xc3\xbf\
        X\x06\x00\x00\x00latin1\x86R."
        .to_vec();

    let pickle = parse_bytes(&bytes).unwrap();

    assert_eq!(bytes_of(&pickle.objects, pickle.root()), Some(&[0x00, 0xff][..]));

    // U+0100 replaces U+00FF (both are 2 UTF-8 bytes) and has no latin1 byte.
    bytes.splice(26..28, "\u{100}".bytes());
    assert!(error_text(&bytes).contains("not latin1"));
}

#[test]
fn long1_decodes_sign() {
    let cases: [(&[u8], i64); 5] = [
        (b"\x8a\x00", 0),
        (b"\x8a\x01\xff", -1),
        (b"\x8a\x02\x00\x80", -32768),
        (b"\x8a\x03\x00\x80\x00", 32768),
        (b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80", i64::MIN),
    ];
    for (opcode, expected) in cases {
        let mut bytes = opcode.to_vec();
        bytes.push(b'.');

        let pickle = parse_bytes(&bytes).unwrap();

        assert_eq!(pickle.root(), Value::Int(expected), "{opcode:?}");
    }
    assert!(error_text(b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.").contains("64 bits"));
}

#[test]
fn unknown_opcode_names_offset() {
    let message = error_text(b"\x80\x02}\xff.");

    assert!(message.contains("byte offset 3"), "{message}");
    assert!(message.contains("0xff"), "{message}");
    assert!(message.contains("unsupported opcode"), "{message}");
}

#[test]
fn object_opcodes_rejected() {
    // INST, OBJ, NEWOBJ and PERSID would create arbitrary objects.
    for (bytes, name) in [
        (&b"(i__main__\nC\n."[..], "INST"),
        (b"(o.", "OBJ"),
        (b"N)\x81.", "NEWOBJ"),
        (b"P1\n.", "PERSID"),
    ] {
        let message = error_text(bytes);

        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn length_past_end_rejected() {
    let cases: [&[u8]; 12] = [
        b"U\x05abc",
        b"C\x05abc",
        b"T\x05\x00\x00\x00abc",
        b"T\xff\xff\xff\xffabc",
        b"B\x00\x00\x00\x80abc",
        b"\x8e\xff\xff\xff\xff\xff\xff\xff\xffabc",
        b"X\x05\x00\x00\x00abc",
        b"\x8c\x05abc",
        b"\x8d\x05\x00\x00\x00\x00\x00\x00\x00abc",
        b"\x95\xff\xff\xff\xff\xff\xff\xff\x7f.",
        b"\x8a\x05\x01\x02",
        b"J\x01\x02",
    ];
    for bytes in cases {
        let message = error_text(bytes);

        assert!(message.contains("byte offset 0"), "{bytes:?}: {message}");
    }
    assert!(error_text(b"T\xff\xff\xff\xffabc").contains("negative length -1"));
    assert!(error_text(b"U\x05abc").contains("length 5 runs past the end"));
}

#[test]
fn truncated_fixture_never_panics() {
    let entries =
        [("data", Item::Array(vec![2, 3072], vec![9; 6144])), ("labels", Item::Ints(vec![1, 2]))];
    for style in [PickleStyle::Python2, PickleStyle::Python3] {
        let bytes = pickle_dict(style, &entries);
        for cut in 0..bytes.len() {
            if cut > 300 && cut < bytes.len() - 300 && cut % 97 != 0 {
                continue;
            }
            assert!(parse_bytes(&bytes[..cut]).is_err(), "{style:?} cut at {cut}");
        }
    }
}

#[test]
fn disallowed_globals_rejected() {
    let message = error_text(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.");
    assert!(message.contains("os.system is not allowed"), "{message}");

    let message = error_text(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.");
    assert!(message.contains("builtins.eval is not allowed"), "{message}");
}

#[test]
fn non_uint8_dtype_rejected() {
    let message = error_text(b"\x80\x02cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R.");

    assert!(message.contains("\"f4\" is not supported"), "{message}");
}

/// Returns a protocol-2 array pickle with the given shape tuple, Fortran flag and data.
fn array_pickle(shape: &[u8], fortran: u8, data: &[u8]) -> Vec<u8> {
    let mut bytes = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n\
        cnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01"
        .to_vec();
    bytes.extend_from_slice(shape);
    bytes.extend_from_slice(
        b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R\
        (K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
    );
    bytes.push(fortran);
    bytes.push(b'U');
    bytes.push(data.len() as u8);
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(b"tb.");
    bytes
}

#[test]
fn array_checks_layout() {
    let good = array_pickle(b"K\x02K\x03\x86", 0x89, &[1, 2, 3, 4, 5, 6]);
    let pickle = parse_bytes(&good).unwrap();
    assert_eq!(pickle.u8_array(pickle.root()).unwrap(), (&[2, 3][..], &[1, 2, 3, 4, 5, 6][..]));

    let fortran = array_pickle(b"K\x02K\x03\x86", 0x88, &[1, 2, 3, 4, 5, 6]);
    assert!(error_text(&fortran).contains("Fortran-order"));

    let short = array_pickle(b"K\x02K\x03\x86", 0x89, &[1, 2, 3, 4, 5]);
    let message = error_text(&short);
    assert!(message.contains("[2, 3] does not match its 5 data bytes"), "{message}");

    let negative = array_pickle(b"J\xff\xff\xff\xffK\x03\x86", 0x89, &[]);
    assert!(error_text(&negative).contains("array size -1"));
}

#[test]
fn stack_and_memo_errors() {
    let cases: [(&[u8], &str); 8] = [
        (b".", "stack is empty"),
        (b"e.", "no MARK is open"),
        (b"h\x07.", "memo has no entry 7"),
        (b"K\x01(a.", "stack is empty"),
        (b"K\x01K\x02a.", "expected a container"),
        (b")K\x01a.", "expected a list"),
        (b"}(K\x01u.", "odd number 1 of dict items"),
        (b"K\x01R.", "stack is empty"),
    ];
    for (bytes, expected) in cases {
        let message = error_text(bytes);

        assert!(message.contains(expected), "{bytes:?}: {message}");
    }
}

#[test]
fn stop_and_trailing_bytes() {
    assert!(error_text(b"\x80\x02N").contains("without a STOP"));
    assert!(error_text(b"N.N").contains("1 bytes after the STOP"));
    assert!(error_text(b"\x80\x05N.").contains("protocol 5 is not supported"));
}

#[test]
fn opcode_count_is_capped() {
    let bytes = vec![b'('; MAX_OPCODES + 1];

    assert!(error_text(&bytes).contains("more than"));
}
