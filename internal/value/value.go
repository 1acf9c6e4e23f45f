// Package value is krait's model of a Python object read from a target's
// memory: a tree of Values that the cpython package builds and the render
// package turns into text or JSON. It holds data only, never a memory handle.
package value

import "math/big"

// Kind says which Python type family a Value belongs to and therefore which
// of its fields are meaningful.
type Kind int

const (
	// Unreadable: Err says why; Addr is where krait tried to read.
	Unreadable Kind = iota
	None
	Bool  // Bool
	Int   // Int (Python 3 int, Python 2 int)
	Long  // Int (Python 2 long: repr has an L suffix)
	Float // Float
	Str   // Runes (Python 3 str)
	// Unicode is Python 2's unicode: Runes; repr u'…' with every non-ASCII
	// character escaped.
	Unicode
	// Bytes is Python 3 bytes (repr b'…') and Python 2 str (repr '…'):
	// Bytes. The renderer tells them apart by Value.Py2.
	Bytes
	List      // Items
	Tuple     // Items
	Set       // Items
	FrozenSet // Items
	Dict      // Pairs
	// Object is anything else: Type, Module, Addr and, where readable, Attrs.
	Object
	// Recursive marks a container met again inside itself. Type names that
	// container ("list", "dict", "tuple", …), which picks the repr CPython
	// prints for it: [...], {...}, (...), or ... for any other type.
	Recursive
)

// Value is one Python object as read from the target.
type Value struct {
	Kind Kind
	Addr uint64
	// Type is the type's name as Python reports it (tp_name, or the
	// qualified name for heap types), e.g. "int", "dict", "Order".
	Type string
	// Module is the type's __module__ for objects ("" for builtins).
	Module string
	// Py2 is set for values read from a Python 2 interpreter, whose reprs
	// differ (u'…', 123L, set([…])).
	Py2 bool
	// Summary, when set, is how krait shows an object it recognises (a
	// Django QuerySet, request or model instance) instead of the generic
	// <module.Class object at 0x…>.
	Summary string
	// OldStyle marks an instance of a Python 2 classic class (repr
	// <module.Class instance at 0x…>).
	OldStyle bool

	Bool  bool
	Int   *big.Int
	Float float64
	Runes []rune // str / unicode contents (may hold lone surrogates)
	Bytes []byte

	Items []*Value
	Pairs []Pair
	Attrs []Attr

	// Len is the object's true length (items, pairs, characters or bytes);
	// when it is larger than what was read, the value was truncated.
	Len int
	// Truncated is set when only a prefix of the contents was read
	// (length limit, depth limit).
	Truncated bool
	// Err is the reason a value (Kind Unreadable) could not be read.
	Err string
}

// Pair is one dict entry.
type Pair struct {
	Key, Value *Value
}

// Attr is one instance attribute (from the instance __dict__ or inline
// values).
type Attr struct {
	Name  string
	Value *Value
}
