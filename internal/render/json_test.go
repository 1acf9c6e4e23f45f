package render

import (
	"encoding/json"
	"testing"

	"krait/internal/value"
)

func TestToJSON(t *testing.T) {
	items := truncated(1000, vList(vInt(1), vInt(2)))
	items.Addr = 0x7f0000002000
	customer := vObj("shop", "Customer", 0x7f0000003000,
		value.Attr{Name: "name", Value: vStr("Ann")})
	order := vObj("shop", "Order", 0x7f0000001000,
		value.Attr{Name: "id", Value: vInt(42)},
		value.Attr{Name: "items", Value: items},
		value.Attr{Name: "customer", Value: customer},
		value.Attr{Name: "note", Value: &value.Value{Kind: value.Unreadable, Addr: 0xdead, Err: "page not mapped"}},
		value.Attr{Name: "legacy", Value: vPy2Str("x")},
	)
	b, err := json.Marshal(ToJSON(order, Options{}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"Order","value":"\u003cshop.Order object at 0x7f0000001000\u003e","address":"0x7f0000001000","attributes":[` +
		`{"name":"id","type":"int","value":"42"},` +
		`{"name":"items","type":"list","value":"[1, 2, ...]","address":"0x7f0000002000","truncated":true,"length":1000},` +
		`{"name":"customer","type":"Customer","value":"\u003cshop.Customer object at 0x7f0000003000\u003e","address":"0x7f0000003000","attributes":[{"name":"name","type":"str","value":"'Ann'","length":3}]},` +
		`{"name":"note","type":"unreadable","value":"\u003cunreadable 0xdead: page not mapped\u003e","address":"0xdead","error":"page not mapped"},` +
		`{"name":"legacy","type":"str","value":"'x'","length":1}]}`
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
}

func TestToJSONEdges(t *testing.T) {
	// nil value.
	if j := ToJSON(nil, Options{}); j.Type != "unreadable" || j.Error == "" {
		t.Errorf("nil: %+v", j)
	}
	// Length falls back to what was read; MaxWidth applies to each repr.
	s := &value.Value{Kind: value.Str, Runes: []rune("abcdefgh")}
	if j := ToJSON(s, Options{MaxWidth: 6}); j.Length != 8 || j.Value != "'ab..." || j.Type != "str" {
		t.Errorf("str: %+v", j)
	}
	d := vDict(vInt(1), vInt(2))
	d.Len = 0
	if j := ToJSON(d, Options{}); j.Length != 1 {
		t.Errorf("dict: %+v", j)
	}
	// An object that holds itself (a Go-level cycle) is shown once.
	o := vObj("m", "Node", 0x10)
	o.Attrs = []value.Attr{{Name: "next", Value: o}}
	j := ToJSON(o, Options{})
	if len(j.Attributes) != 1 || len(j.Attributes[0].Attributes) != 0 || j.Attributes[0].Address != "0x10" {
		t.Errorf("cycle: %+v", j)
	}
	// Empty fields are left out.
	b, _ := json.Marshal(ToJSON(vNone(), Options{}))
	if string(b) != `{"type":"NoneType","value":"None"}` {
		t.Errorf("None: %s", b)
	}
}
