package render

import (
	"strings"
	"testing"
	"unicode/utf8"

	"krait/internal/value"
)

// reprCase is one Value and the repr CPython prints for the object it
// stands for. The want strings were produced by the interpreters (3.6 to
// 3.13 for Python 3 cases, 2.7 for Python 2 ones, marked by Value.Py2) and
// TestReprAgainstPython checks them again wherever those are installed.
type reprCase struct {
	name string
	v    *value.Value
	// py is the Python expression building the object; empty means
	// pyExpr(v), "-" means the case is krait-only (no Python counterpart).
	py   string
	want string
}

func (c reprCase) expr() (string, bool) {
	switch c.py {
	case "-":
		return "", false
	case "":
		return pyExpr(c.v)
	}
	return c.py, true
}

// allControls is U+0000..U+001F and U+007F.
func allControls() []rune {
	var rs []rune
	for r := rune(0); r < 0x20; r++ {
		rs = append(rs, r)
	}
	return append(rs, 0x7f)
}

func runeRange(lo, hi rune) []rune {
	var rs []rune
	for r := lo; r <= hi; r++ {
		rs = append(rs, r)
	}
	return rs
}

func allBytes() string {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return string(b)
}

// Characters whose category is the same in every Unicode version from 9.0
// (Python 3.6) to 15.1 (Python 3.13), so every Python 3 agrees on them.
var stableRunes = []rune{
	'A', 'é', 0xa0, 0xad, 0xff, 0x100, 0x301, 0x378, 0x3a9, 0x416, 0x5d0, 0x627,
	0x600, 0x200b, 0x200e, 0x2028, 0x2029, 0x2060, 0x20ac, 0x3000, 0x4e2d,
	0xac00, 0xd7ff, 0xe000, 0xf8ff, 0xfeff, 0xfffd, 0xfffe, 0xffff,
	0x10000, 0x10348, 0x1d11e, 0x1f600, 0x1f9c0, 0x20000, 0x2a6d6, 0xe0001,
	0xe0100, 0xf0000, 0x10fffd, 0x10ffff,
}

var reprCases = []reprCase{
	// Python 3 scalars.
	{name: "none", v: vNone(), want: "None"},
	{name: "true", v: vBool(true), want: "True"},
	{name: "false", v: vBool(false), want: "False"},
	{name: "int 0", v: vInt(0), want: "0"},
	{name: "int -1", v: vInt(-1), want: "-1"},
	{name: "int max64", v: vBig("9223372036854775807"), want: "9223372036854775807"},
	{name: "int 2**64", v: vBig("18446744073709551616"), want: "18446744073709551616"},
	{name: "int -10**40", v: vBig("-10000000000000000000000000000000000000000"), want: "-10000000000000000000000000000000000000000"},
	{name: "float 1", v: vFloat(1), want: "1.0"},
	{name: "float 0.1", v: vFloat(0.1), want: "0.1"},
	{name: "float 1e16", v: vFloat(1e16), want: "1e+16"},
	{name: "float 1e-5", v: vFloat(1e-5), want: "1e-05"},
	{name: "float 1e-4", v: vFloat(1e-4), want: "0.0001"},
	{name: "float fixed 16 digits", v: vFloat(1234567890123456), want: "1234567890123456.0"},
	{name: "float -0", v: vFloat(negZero()), want: "-0.0"},
	{name: "float inf", v: vFloat(inf(1)), want: "inf"},
	{name: "float -inf", v: vFloat(inf(-1)), want: "-inf"},
	{name: "float nan", v: vFloat(nan()), want: "nan"},

	// Python 3 str.
	{name: "str empty", v: vStr(""), want: "''"},
	{name: "str ascii", v: vStr("hello, world"), want: "'hello, world'"},
	{name: "str single quote", v: vStr("it's"), want: `"it's"`},
	{name: "str double quote", v: vStr(`say "hi"`), want: `'say "hi"'`},
	{name: "str both quotes", v: vStr(`it's "x"`), want: `'it\'s "x"'`},
	{name: "str backslash", v: vStr(`a\b\\`), want: `'a\\b\\\\'`},
	{name: "str whitespace", v: vStr("a\tb\nc\rd e"), want: `'a\tb\nc\rd e'`},
	{name: "str controls", v: vRunes(allControls()...), want: `'\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f'`},
	{name: "str printable ascii", v: vRunes(runeRange(0x20, 0x7e)...), want: "' !\"#$%&\\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~'"},
	{name: "str latin-1", v: vRunes(runeRange(0x80, 0xff)...), want: `'\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0¡¢£¤¥¦§¨©ª«¬\xad®¯°±²³´µ¶·¸¹º»¼½¾¿ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõö÷øùúûüýþÿ'`},
	{name: "str mixed scripts", v: vStr("café Ωмега 中文 한글 עברית عربي"), want: "'café Ωмега 中文 한글 עברית عربي'"},
	{name: "str stable chars", v: vRunes(stableRunes...), want: `'Aé\xa0\xadÿĀ́\u0378ΩЖאا\u0600\u200b\u200e\u2028\u2029\u2060€\u3000中가\ud7ff\ue000\uf8ff\ufeff�\ufffe\uffff𐀀𐍈𝄞😀🧀𠀀𪛖\U000e0001󠄀\U000f0000\U0010fffd\U0010ffff'`},
	{name: "str astral", v: vStr("😀 𝄞 𐍈 \U00020000"), want: "'😀 𝄞 𐍈 \U00020000'"},
	{name: "str lone surrogates", v: vRunes('a', 0xd800, 'b', 0xdbff, 0xdc00, 0xdfff), want: `'a\ud800b\udbff\udc00\udfff'`},
	{name: "str surrogate pair halves", v: vRunes(0xd83d, 0xde00), want: `'\ud83d\ude00'`},
	{name: "str quote with unicode", v: vRunes('\'', 0xe9, 0x2028, '\''), want: `"'é\u2028'"`},

	// Python 3 bytes.
	{name: "bytes empty", v: vBytes(""), want: "b''"},
	{name: "bytes ascii", v: vBytes("abc"), want: "b'abc'"},
	{name: "bytes single quote", v: vBytes("it's"), want: `b"it's"`},
	{name: "bytes both quotes", v: vBytes(`'"`), want: `b'\'"'`},
	{name: "bytes all", v: vBytes(allBytes()), want: "b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\t\\n\\x0b\\x0c\\r\\x0e\\x0f\\x10\\x11\\x12\\x13\\x14\\x15\\x16\\x17\\x18\\x19\\x1a\\x1b\\x1c\\x1d\\x1e\\x1f !\"#$%&\\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\\x7f\\x80\\x81\\x82\\x83\\x84\\x85\\x86\\x87\\x88\\x89\\x8a\\x8b\\x8c\\x8d\\x8e\\x8f\\x90\\x91\\x92\\x93\\x94\\x95\\x96\\x97\\x98\\x99\\x9a\\x9b\\x9c\\x9d\\x9e\\x9f\\xa0\\xa1\\xa2\\xa3\\xa4\\xa5\\xa6\\xa7\\xa8\\xa9\\xaa\\xab\\xac\\xad\\xae\\xaf\\xb0\\xb1\\xb2\\xb3\\xb4\\xb5\\xb6\\xb7\\xb8\\xb9\\xba\\xbb\\xbc\\xbd\\xbe\\xbf\\xc0\\xc1\\xc2\\xc3\\xc4\\xc5\\xc6\\xc7\\xc8\\xc9\\xca\\xcb\\xcc\\xcd\\xce\\xcf\\xd0\\xd1\\xd2\\xd3\\xd4\\xd5\\xd6\\xd7\\xd8\\xd9\\xda\\xdb\\xdc\\xdd\\xde\\xdf\\xe0\\xe1\\xe2\\xe3\\xe4\\xe5\\xe6\\xe7\\xe8\\xe9\\xea\\xeb\\xec\\xed\\xee\\xef\\xf0\\xf1\\xf2\\xf3\\xf4\\xf5\\xf6\\xf7\\xf8\\xf9\\xfa\\xfb\\xfc\\xfd\\xfe\\xff'"},

	// Python 3 containers.
	{name: "list empty", v: vList(), want: "[]"},
	{name: "list one", v: vList(vInt(1)), want: "[1]"},
	{name: "list mixed", v: vList(vInt(1), vStr("a"), vNone(), vFloat(2.5), vBytes("b"), vBool(true)), want: "[1, 'a', None, 2.5, b'b', True]"},
	{name: "list nested", v: vList(vList(vInt(1), vInt(2)), vList(vInt(3), vList(vInt(4), vList()))), want: "[[1, 2], [3, [4, []]]]"},
	{name: "tuple empty", v: vTuple(), want: "()"},
	{name: "tuple one", v: vTuple(vInt(1)), want: "(1,)"},
	{name: "tuple two", v: vTuple(vInt(1), vStr("x")), want: "(1, 'x')"},
	{name: "tuple of empty tuple", v: vTuple(vTuple()), want: "((),)"},
	{name: "tuple nested", v: vTuple(vTuple(vInt(1)), vList(vTuple()), vTuple(vInt(2), vInt(3))), want: "((1,), [()], (2, 3))"},
	{name: "dict empty", v: vDict(), want: "{}"},
	{name: "dict one", v: vDict(vStr("a"), vInt(1)), want: "{'a': 1}"},
	{name: "dict mixed", v: vDict(vStr("a"), vInt(1), vStr("b"), vList(vInt(1), vInt(2)), vInt(3), vTuple(vInt(4)), vNone(), vBool(true), vFloat(1.5), vBytes("x")), want: "{'a': 1, 'b': [1, 2], 3: (4,), None: True, 1.5: b'x'}"},
	{name: "dict nested", v: vDict(vStr("k"), vDict(vStr("j"), vDict())), want: "{'k': {'j': {}}}"},
	{name: "set empty", v: vSet(), want: "set()"},
	{name: "set ints", v: vSet(vInt(1), vInt(2), vInt(3)), want: "{1, 2, 3}"},
	{name: "set one str", v: vSet(vStr("a")), want: "{'a'}"},
	{name: "set of tuple", v: vSet(vTuple(vInt(1), vInt(2))), want: "{(1, 2)}"},
	{name: "set of frozenset", v: vSet(vFrozen(vInt(1))), want: "{frozenset({1})}"},
	{name: "frozenset empty", v: vFrozen(), want: "frozenset()"},
	{name: "frozenset ints", v: vFrozen(vInt(1), vInt(2)), want: "frozenset({1, 2})"},
	{name: "set subclass empty", v: typed("MySet", vSet()), want: "MySet()"},
	{name: "set subclass", v: typed("MySet", vSet(vInt(1))), want: "MySet({1})"},
	{name: "frozenset subclass", v: typed("MyFrozenSet", vFrozen(vInt(1), vInt(2))), want: "MyFrozenSet({1, 2})"},
	{name: "frozenset subclass empty", v: typed("MyFrozenSet", vFrozen()), want: "MyFrozenSet()"},

	// Python 3 objects and recursion.
	{name: "object main", v: vObj("__main__", "Foo", 0x7f3a12345678), want: "<__main__.Foo object at 0x7f3a12345678>"},
	{name: "object qualname", v: vObj("pkg.mod", "Outer.Inner", 0x55d0c0ffee00), want: "<pkg.mod.Outer.Inner object at 0x55d0c0ffee00>"},
	{name: "object builtins", v: vObj("builtins", "object", 0x7f0000001000), want: "<object object at 0x7f0000001000>"},
	{name: "objects in list", v: vList(vObj("m", "A", 0x1000), vObj("m", "B", 0x2000)), want: "[<m.A object at 0x1000>, <m.B object at 0x2000>]"},
	{name: "recursive list", v: vList(vInt(1), vRec("list")), py: "rec_list()", want: "[1, [...]]"},
	{name: "recursive dict", v: vDict(vInt(1), vStr("a"), vInt(2), vRec("dict")), py: "rec_dict()", want: "{1: 'a', 2: {...}}"},
	{name: "recursive tuple", v: vTuple(vList(vRec("tuple"))), py: "rec_tuple()", want: "([(...)],)"},

	// Python 2.
	{name: "py2 none", v: py2(vNone()), want: "None"},
	{name: "py2 bool", v: py2(vList(vBool(true), vBool(false))), want: "[True, False]"},
	{name: "py2 int", v: py2(vInt(-42)), want: "-42"},
	{name: "py2 long", v: vLong("5"), want: "5L"},
	{name: "py2 long negative", v: vLong("-123"), want: "-123L"},
	{name: "py2 long big", v: vLong("123456789012345678901234567890"), want: "123456789012345678901234567890L"},
	{name: "py2 float", v: py2(vList(vFloat(0.1), vFloat(1e16), vFloat(1e-5), vFloat(negZero()), vFloat(1.0/3))), want: "[0.1, 1e+16, 1e-05, -0.0, 0.3333333333333333]"},
	{name: "py2 str", v: vPy2Str("abc"), want: "'abc'"},
	{name: "py2 str quotes", v: py2(vList(vPy2Str("it's"), vPy2Str(`'"`), vPy2Str(`"`))), want: `["it's", '\'"', '"']`},
	{name: "py2 str all bytes", v: vPy2Str(allBytes()), want: "'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\t\\n\\x0b\\x0c\\r\\x0e\\x0f\\x10\\x11\\x12\\x13\\x14\\x15\\x16\\x17\\x18\\x19\\x1a\\x1b\\x1c\\x1d\\x1e\\x1f !\"#$%&\\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\\x7f\\x80\\x81\\x82\\x83\\x84\\x85\\x86\\x87\\x88\\x89\\x8a\\x8b\\x8c\\x8d\\x8e\\x8f\\x90\\x91\\x92\\x93\\x94\\x95\\x96\\x97\\x98\\x99\\x9a\\x9b\\x9c\\x9d\\x9e\\x9f\\xa0\\xa1\\xa2\\xa3\\xa4\\xa5\\xa6\\xa7\\xa8\\xa9\\xaa\\xab\\xac\\xad\\xae\\xaf\\xb0\\xb1\\xb2\\xb3\\xb4\\xb5\\xb6\\xb7\\xb8\\xb9\\xba\\xbb\\xbc\\xbd\\xbe\\xbf\\xc0\\xc1\\xc2\\xc3\\xc4\\xc5\\xc6\\xc7\\xc8\\xc9\\xca\\xcb\\xcc\\xcd\\xce\\xcf\\xd0\\xd1\\xd2\\xd3\\xd4\\xd5\\xd6\\xd7\\xd8\\xd9\\xda\\xdb\\xdc\\xdd\\xde\\xdf\\xe0\\xe1\\xe2\\xe3\\xe4\\xe5\\xe6\\xe7\\xe8\\xe9\\xea\\xeb\\xec\\xed\\xee\\xef\\xf0\\xf1\\xf2\\xf3\\xf4\\xf5\\xf6\\xf7\\xf8\\xf9\\xfa\\xfb\\xfc\\xfd\\xfe\\xff'"},
	{name: "py2 unicode empty", v: vUni(), want: "u''"},
	{name: "py2 unicode ascii", v: vUni([]rune("it's")...), want: `u"it's"`},
	{name: "py2 unicode both quotes", v: vUni([]rune(`'"\`)...), want: `u'\'"\\'`},
	{name: "py2 unicode controls", v: vUni(allControls()...), want: `u'\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f'`},
	{name: "py2 unicode latin-1", v: vUni(runeRange(0x80, 0xff)...), want: `u'\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xaf\xb0\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xbb\xbc\xbd\xbe\xbf\xc0\xc1\xc2\xc3\xc4\xc5\xc6\xc7\xc8\xc9\xca\xcb\xcc\xcd\xce\xcf\xd0\xd1\xd2\xd3\xd4\xd5\xd6\xd7\xd8\xd9\xda\xdb\xdc\xdd\xde\xdf\xe0\xe1\xe2\xe3\xe4\xe5\xe6\xe7\xe8\xe9\xea\xeb\xec\xed\xee\xef\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\xfa\xfb\xfc\xfd\xfe\xff'`},
	{name: "py2 unicode wide", v: vUni(stableRunes...), want: `u'A\xe9\xa0\xad\xff\u0100\u0301\u0378\u03a9\u0416\u05d0\u0627\u0600\u200b\u200e\u2028\u2029\u2060\u20ac\u3000\u4e2d\uac00\ud7ff\ue000\uf8ff\ufeff\ufffd\ufffe\uffff\U00010000\U00010348\U0001d11e\U0001f600\U0001f9c0\U00020000\U0002a6d6\U000e0001\U000e0100\U000f0000\U0010fffd\U0010ffff'`},
	{name: "py2 unicode surrogate", v: vUni('a', 0xd800, 0xdfff), want: `u'a\ud800\udfff'`},
	{name: "py2 list", v: py2(vList(vInt(1), vUni('a'), vPy2Str("b"), vLong("2"))), want: "[1, u'a', 'b', 2L]"},
	{name: "py2 tuple one", v: py2(vTuple(vUni(0xe9))), want: `(u'\xe9',)`},
	{name: "py2 dict", v: py2(vDict(vInt(1), vPy2Str("a"), vInt(2), vUni('b'))), want: "{1: 'a', 2: u'b'}"},
	{name: "py2 set", v: py2(vSet(vInt(1), vInt(2))), want: "set([1, 2])"},
	{name: "py2 set empty", v: py2(vSet()), want: "set([])"},
	{name: "py2 frozenset", v: py2(vFrozen(vInt(1))), want: "frozenset([1])"},
	{name: "py2 frozenset empty", v: py2(vFrozen()), want: "frozenset([])"},
	{name: "py2 set subclass", v: py2(typed("MySet", vSet(vInt(3)))), want: "MySet([3])"},
	{name: "py2 object", v: py2(vObj("__main__", "Foo", 0x7f3a12345678)), want: "<__main__.Foo object at 0x7f3a12345678>"},
	{name: "py2 old-style instance", v: oldStyle(py2(vObj("__main__", "Old", 0x7f3a12345678))), want: "<__main__.Old instance at 0x7f3a12345678>"},
	{name: "py2 object builtin", v: py2(vObj("__builtin__", "object", 0x7f0000001000)), want: "<object object at 0x7f0000001000>"},
	{name: "py2 recursive list", v: py2(vList(vInt(1), vRec("list"))), py: "rec_list()", want: "[1, [...]]"},

	// krait-only forms.
	{name: "unreadable", v: &value.Value{Kind: value.Unreadable, Addr: 0x7f00dead0000, Err: "page not mapped"}, want: "<unreadable 0x7f00dead0000: page not mapped>"},
	{name: "unreadable no reason", v: &value.Value{Kind: value.Unreadable, Addr: 0x10}, want: "<unreadable 0x10>"},
	{name: "unreadable in list", v: vList(vInt(1), &value.Value{Kind: value.Unreadable, Addr: 0xbad, Err: "bad type"}), want: "[1, <unreadable 0xbad: bad type>]"},
	{name: "nil value", v: nil, want: "<unreadable 0x0: missing value>"},
	{name: "nil int", v: &value.Value{Kind: value.Int, Addr: 0x20}, want: "<unreadable 0x20: int without value>"},
	{name: "unknown kind", v: &value.Value{Kind: 99, Addr: 0x30}, want: "<unreadable 0x30: unknown kind 99>"},
	{name: "recursive other", v: vRec("OrderedDict"), want: "..."},
	{name: "recursive untyped", v: vRec(""), want: "..."},
	{name: "object no module no type", v: vObj("", "", 0xabc), py: "-", want: "<object object at 0xabc>"},
	{name: "truncated list", v: truncated(10, vList(vInt(1), vInt(2))), want: "[1, 2, ...]"},
	{name: "truncated empty list", v: truncated(10, vList()), want: "[...]"},
	{name: "truncated tuple one", v: truncated(3, vTuple(vInt(1))), want: "(1, ...)"},
	{name: "truncated dict", v: truncated(5, vDict(vStr("a"), vInt(1))), want: "{'a': 1, ...}"},
	{name: "truncated set", v: truncated(5, vSet(vInt(1))), want: "{1, ...}"},
	{name: "truncated empty set", v: truncated(5, vSet()), want: "{...}"},
	{name: "truncated frozenset", v: truncated(5, vFrozen(vInt(1))), want: "frozenset({1, ...})"},
	{name: "truncated py2 set", v: truncated(5, py2(vSet(vInt(1)))), want: "set([1, ...])"},
	{name: "truncated str", v: truncated(100, vStr("abcd")), want: "'abcd'..."},
	{name: "truncated str quote", v: truncated(100, vStr("it's")), want: `"it's"...`},
	{name: "truncated bytes", v: truncated(100, vBytes("ab")), want: "b'ab'..."},
	{name: "truncated py2 str", v: truncated(100, vPy2Str("ab")), want: "'ab'..."},
	{name: "truncated unicode", v: truncated(100, vUni('a', 0xe9)), want: `u'a\xe9'...`},
	{name: "truncated nested", v: vList(truncated(9, vList(vInt(1))), truncated(9, vStr("x"))), want: "[[1, ...], 'x'...]"},
	{name: "invalid runes", v: vRunes(-1, 0x110000, 0x7fffffff), want: `'\Uffffffff\U00110000\U7fffffff'`},
}

func TestRepr(t *testing.T) {
	for _, c := range reprCases {
		if got := Repr(c.v, Options{}); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// TestReprAgainstPython evaluates every case that has a Python counterpart
// in each interpreter found and checks that it prints the case's want
// (which Repr is checked against by TestRepr).
func TestReprAgainstPython(t *testing.T) {
	for _, p := range pythons(t) {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			var cases []reprCase
			var exprs []string
			for _, c := range reprCases {
				e, ok := c.expr()
				if !ok || c.v == nil || c.v.Py2 != (p.major == 2) {
					continue
				}
				cases = append(cases, c)
				exprs = append(exprs, e)
			}
			for i, got := range p.reprs(t, exprs) {
				if c := cases[i]; got != c.want {
					t.Errorf("%s: %s printed\n%q\nwant\n%q", cases[i].name, exprs[i], got, c.want)
				}
			}
		})
	}
}

func TestMaxWidth(t *testing.T) {
	long := vList()
	for i := 0; i < 100000; i++ {
		long.Items = append(long.Items, vStr("é"))
	}
	tests := []struct {
		v    *value.Value
		max  int
		want string
	}{
		{vStr("abc"), 0, "'abc'"},
		{vStr("abc"), -1, "'abc'"},
		{vStr("abc"), 5, "'abc'"},
		{vStr("abcd"), 5, "'a..."},
		{vStr("ééééé"), 6, "'éé..."},
		{vList(vInt(1), vInt(2), vInt(3)), 9, "[1, 2, 3]"},
		{vList(vInt(1), vInt(2), vInt(3)), 8, "[1, 2..."},
		{vStr("abcdef"), 3, "..."},
		{vStr("abcdef"), 2, ".."},
		{vStr("abcdef"), 1, "."},
		{long, 12, "['é', 'é'..."},
		{vRunes(0xd800, 0x10ffff), 9, `'\ud80...`},
	}
	for _, tt := range tests {
		got := Repr(tt.v, Options{MaxWidth: tt.max})
		if got != tt.want {
			t.Errorf("Repr(%s, MaxWidth %d) = %q, want %q", Repr(tt.v, Options{MaxWidth: 40}), tt.max, got, tt.want)
		}
		if tt.max > 0 && utf8.RuneCountInString(got) > tt.max {
			t.Errorf("%q is longer than %d runes", got, tt.max)
		}
	}
	// Every cut of a case is a prefix of the full repr plus "...".
	for _, c := range reprCases {
		full := []rune(Repr(c.v, Options{}))
		for w := 1; w <= len(full)+1; w++ {
			got := Repr(c.v, Options{MaxWidth: w})
			if w >= len(full) {
				if got != string(full) {
					t.Errorf("%s: MaxWidth %d cut %q", c.name, w, got)
				}
				continue
			}
			want := "..."[:min(w, 3)]
			if w > 3 {
				want = string(full[:w-3]) + "..."
			}
			if got != want {
				t.Errorf("%s: MaxWidth %d gave %q, want %q", c.name, w, got, want)
			}
		}
	}
}

func TestGoCycle(t *testing.T) {
	l := vList(vInt(1))
	d := vDict(vStr("l"), l)
	l.Items = append(l.Items, l, d)
	if got, want := Repr(l, Options{}), "[1, [...], {'l': [...]}]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// A value shared, not nested, is shown each time.
	shared := vTuple(vInt(7))
	if got, want := Repr(vList(shared, shared), Options{}), "[(7,), (7,)]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestTypeName(t *testing.T) {
	tests := []struct {
		v    *value.Value
		want string
	}{
		{nil, "unreadable"},
		{&value.Value{Kind: value.Unreadable}, "unreadable"},
		{&value.Value{Kind: value.None}, "NoneType"},
		{&value.Value{Kind: value.Bool}, "bool"},
		{&value.Value{Kind: value.Int}, "int"},
		{&value.Value{Kind: value.Long}, "long"},
		{&value.Value{Kind: value.Float}, "float"},
		{&value.Value{Kind: value.Str}, "str"},
		{&value.Value{Kind: value.Unicode}, "unicode"},
		{&value.Value{Kind: value.Bytes}, "bytes"},
		{&value.Value{Kind: value.Bytes, Py2: true}, "str"},
		{&value.Value{Kind: value.List}, "list"},
		{&value.Value{Kind: value.Tuple}, "tuple"},
		{&value.Value{Kind: value.Set}, "set"},
		{&value.Value{Kind: value.FrozenSet}, "frozenset"},
		{&value.Value{Kind: value.Dict}, "dict"},
		{&value.Value{Kind: value.Object}, "object"},
		{&value.Value{Kind: value.Recursive}, "object"},
		{&value.Value{Kind: value.Object, Type: "Order", Module: "shop"}, "Order"},
		{&value.Value{Kind: value.Dict, Type: "OrderedDict"}, "OrderedDict"},
		{&value.Value{Kind: value.Recursive, Type: "list"}, "list"},
	}
	for _, tt := range tests {
		if got := TypeName(tt.v); got != tt.want {
			t.Errorf("TypeName(%+v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

// TestReprASCIIForPy2 checks that Python 2 reprs are pure ASCII, as
// CPython 2's are.
func TestReprASCIIForPy2(t *testing.T) {
	for _, c := range reprCases {
		if c.v == nil || !c.v.Py2 {
			continue
		}
		got := Repr(c.v, Options{})
		if strings.IndexFunc(got, func(r rune) bool { return r >= 0x80 }) >= 0 {
			t.Errorf("%s: %q is not ASCII", c.name, got)
		}
	}
}

func oldStyle(v *value.Value) *value.Value { v.OldStyle = true; return v }
