package pymarshal

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"krait/internal/testkit"
)

// cases are made and encoded by each interpreter itself: for each, a line
// "NAME BASE64(marshal.dumps(v, 4)) JSON" where JSON is json.dumps of the
// same value (or of what krait must make of it).
const cases = `
import base64, json, marshal, sys
ev = {'kind': 'cache', 'op': 'get', 'alias': 'default', 'thread': 140234234234123, 't': 1764558000.123456,
      'ns': 12345, 'req': 7, 'view': 'shop.views.cities', 'file': '/srv/shop/views.py', 'line': 123,
      'key': 'cities:all', 'hit': True, 'size': None, 'stored': False}
shared = {'a': [1, 2]}
s = 'x' * 300
cases = [
    ('event', [ev, dict(ev, key='other'), dict(ev)], None),
    ('ints', [0, 1, -1, 2**31 - 1, -2**31, 2**31, -2**40, 2**52 + 1, 2**62, -(2**62)], None),
    ('bigint', 2**100, None),
    ('floats', [0.0, -0.0, 0.1, -1e300, 1e-300, 5e-324, 1.7976931348623157e308], None),
    ('nonfinite', [float('nan'), float('inf'), -float('inf')], [None, None, None]),
    ('strings', ['', 'a', 'abc' * 100, u'\u00e9\u20ac\U0001F600', u'caf\u00e9' * 80, sys.intern('interned')], None),
    ('surrogates', [u'a\ud800b', u'\udc80\udc81', u'\ud83d\ude00', u'x\udfffy'], None),
    ('refs', [shared, shared, [shared], s, s, (s, s)], None),
    ('tuples', ((), (1,), tuple(range(300))), None),
    ('nested', {'a': {'b': {'c': [[], {}, [[[]]]]}}}, None),
    ('keys', {1: 'one', None: 'none', 2.5: 'f', True: 't'}, None),
    ('bytes', [b'abc', b'\xff\xfe'], [u'abc', u'\ufffd\ufffd']),
    ('complex', [1+2j], [[1.0, 2.0]]),
    ('sets', [sorted(frozenset([3]))], None),
]
for name, v, want in cases:
    b = base64.b64encode(marshal.dumps(v, 4)).decode()
    print(name, b, json.dumps(v if want is None else want))
`

func TestDecodeRealPythons(t *testing.T) {
	for _, py := range testkit.AttachPythons(t) {
		out, err := exec.Command(py.Path, "-c", cases).Output()
		if err != nil {
			t.Fatalf("%s: %v", py.Name, err)
		}
		n := 0
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.SplitN(line, " ", 3)
			data, err := base64.StdEncoding.DecodeString(f[1])
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(data)
			if err != nil {
				t.Errorf("%s %s: %v", py.Name, f[0], err)
				continue
			}
			var want any
			if err := json.Unmarshal([]byte(f[2]), &want); err != nil {
				t.Fatalf("%s %s: %v", py.Name, f[0], err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s:\n got %#v\nwant %#v", py.Name, f[0], got, want)
			}
			n++
		}
		if n < 14 {
			t.Errorf("%s: %d cases", py.Name, n)
		}
	}
}

// TestDecodeBad: cut, damaged and hostile input is an error, never a panic
// or an allocation of what a size claims.
func TestDecodeBad(t *testing.T) {
	good := []byte("[\x02\x00\x00\x00\xe9\x01\x00\x00\x00z\x02ab")
	if v, err := Decode(good); err != nil || !reflect.DeepEqual(v, []any{1.0, "ab"}) {
		t.Fatalf("good: %v %v", v, err)
	}
	for i := 0; i < len(good); i++ {
		if _, err := Decode(good[:i]); !errors.Is(err, ErrFormat) {
			t.Errorf("cut at %d: %v", i, err)
		}
	}
	for _, b := range [][]byte{
		[]byte("[\xff\xff\xff\x7f"),                     // a list of 2^31-1 items
		[]byte("a\xff\xff\xff\x7f"),                     // a string of 2 GB
		[]byte("l\xff\xff\xff\x7f"),                     // an int of 2^31-1 digits
		[]byte("l\x00\x00\x00\x80"),                     // of -2^31 digits
		[]byte("r\x00\x00\x00\x00"),                     // a reference to nothing
		[]byte("\xdb\x01\x00\x00\x00r\x00\x00\x00\x00"), // a list holding itself
		[]byte("c"),                         // a code object
		[]byte("N N"),                       // trailing bytes
		bytes.Repeat([]byte(")\x01"), 5000), // nested too deep
		{'{', 'N'},                          // a dict cut short
	} {
		if v, err := Decode(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: %v, %v", b, v, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("[\x02\x00\x00\x00\xe9\x01\x00\x00\x00z\x02ab"))
	f.Add([]byte("{\xda\x04kind\xda\x05cache0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Decode(b)
	})
}
